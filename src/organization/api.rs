//! /api/v1/organizations: the JHE-compatible JSON interface over the same domain calls.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use super::access::{Manager, OrgAccess, Viewer};
use super::{repo, Organization, Role, TreeNode};
use crate::api::{envelope, field, PageQuery};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/organizations", web::get().to(list))
        .route("/organizations", web::post().to(create))
        .route("/organizations/{id}", web::get().to(show))
        .route("/organizations/{id}", web::patch().to(update))
        .route("/organizations/{id}", web::delete().to(delete))
        .route("/organizations/{id}/tree", web::get().to(tree))
        .route("/organizations/{id}/users", web::get().to(users))
        .route("/organizations/{id}/user", web::post().to(add_user))
        .route(
            "/organizations/{id}/remove_user",
            web::delete().to(remove_user),
        );
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgJson {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub org_type: String,
    pub part_of: Option<i64>,
    pub current_user_role: Option<&'static str>,
    pub children: Vec<OrgJson>,
}

impl OrgJson {
    pub fn new(o: &Organization, role: Option<Role>) -> OrgJson {
        OrgJson {
            id: o.id,
            name: o.name.clone(),
            org_type: o.org_type.clone(),
            part_of: o.part_of,
            current_user_role: role.map(Role::as_str),
            children: Vec::new(),
        }
    }

    fn from_tree(n: &TreeNode) -> OrgJson {
        let mut j = OrgJson::new(&n.org, Some(n.role));
        j.children = n.children.iter().map(OrgJson::from_tree).collect();
        j
    }
}

async fn list(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    paging: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let (page, size) = paging.parse()?;
    let (orgs, roles) = state
        .db
        .run(move |conn| super::visible(conn, &user))
        .await?;
    let mut visible: Vec<&Organization> =
        orgs.iter().filter(|o| roles.contains_key(&o.id)).collect();
    visible.sort_by_key(|o| (o.name.to_lowercase(), o.id));
    let count = visible.len() as i64;
    let results = visible
        .into_iter()
        .skip(((page - 1) * size) as usize)
        .take(size as usize)
        .map(|o| OrgJson::new(o, roles.get(&o.id).copied()))
        .collect();
    Ok(HttpResponse::Ok().json(envelope(
        &req,
        &state.config.public_url,
        page,
        size,
        count,
        results,
    )?))
}

async fn show(
    access: OrgAccess<Viewer>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let role = access.scope.role();
    let org = state
        .db
        .run(move |conn| repo::get(conn, &access.scope))
        .await?;
    Ok(HttpResponse::Ok().json(OrgJson::new(&org, Some(role))))
}

fn text(body: &Value, camel: &str, snake: &str) -> Option<String> {
    field(body, camel, snake)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

async fn create(
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let name = text(&body, "name", "name").unwrap_or_default();
    let org_type = text(&body, "type", "type").unwrap_or_default();
    let part_of = match field(&body, "partOf", "part_of") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| {
                AppError::invalid(
                    "partOf",
                    "Use the id of the parent organization, or 0 for top level.",
                )
            })?,
    };
    let org = state
        .db
        .tx(move |conn| {
            let id = super::create(conn, &user, &name, &org_type, part_of)?;
            let org = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Organization"))?;
            Ok(org)
        })
        .await?;
    Ok(HttpResponse::Created().json(OrgJson::new(&org, Some(Role::Manager))))
}

async fn update(
    access: OrgAccess<Manager>,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let role = access.scope.role();
    let org = state
        .db
        .tx(move |conn| {
            let current = repo::get(conn, &access.scope)?;
            let name = text(&body, "name", "name").unwrap_or(current.name);
            let org_type = text(&body, "type", "type").unwrap_or(current.org_type);
            super::update(conn, &access.user, &access.scope, &name, &org_type)?;
            repo::get(conn, &access.scope)
        })
        .await?;
    Ok(HttpResponse::Ok().json(OrgJson::new(&org, Some(role))))
}

async fn delete(
    access: OrgAccess<Manager>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    state
        .db
        .tx(move |conn| super::delete(conn, &access.user, &access.scope))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn tree(
    access: OrgAccess<Viewer>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let org_id = access.scope.org_id();
    let (orgs, roles) = state
        .db
        .run(move |conn| super::visible(conn, &access.user))
        .await?;
    // The tree below this organization, as this caller sees it.
    let below: std::collections::BTreeMap<i64, Role> = roles
        .iter()
        .filter(|(id, _)| is_within(&orgs, **id, org_id))
        .map(|(k, v)| (*k, *v))
        .collect();
    let forest = super::build_tree(&orgs, &below);
    let node = forest
        .iter()
        .find(|n| n.org.id == org_id)
        .ok_or_else(|| AppError::not_found("Organization"))?;
    Ok(HttpResponse::Ok().json(OrgJson::from_tree(node)))
}

fn is_within(orgs: &[Organization], id: i64, ancestor: i64) -> bool {
    let mut cur = Some(id);
    for _ in 0..64 {
        match cur {
            Some(c) if c == ancestor => return true,
            Some(c) => cur = orgs.iter().find(|o| o.id == c).and_then(|o| o.part_of),
            None => return false,
        }
    }
    false
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberJson {
    id: i64,
    jhe_user_id: i64,
    practitioner_id: i64,
    email: String,
    first_name: String,
    last_name: String,
    role: String,
    organization_partitioner_role: String,
}

async fn users(
    access: OrgAccess<Viewer>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let members = state
        .db
        .run(move |conn| repo::members(conn, &access.scope))
        .await?;
    let out: Vec<MemberJson> = members
        .into_iter()
        .map(|m| MemberJson {
            id: m.user_id,
            jhe_user_id: m.user_id,
            practitioner_id: m.practitioner_id,
            email: m.email,
            first_name: m.first_name,
            last_name: m.last_name,
            organization_partitioner_role: m.role.clone(),
            role: m.role,
        })
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

fn jhe_user_id(body: &Value) -> Result<i64, AppError> {
    field(body, "jheUserId", "jhe_user_id")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| {
            AppError::invalid("jheUserId", "Give the practitioner's user id (jheUserId).")
        })
}

async fn add_user(
    access: OrgAccess<Manager>,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let user_id = jhe_user_id(&body)?;
    let role_text = text(
        &body,
        "organizationPartitionerRole",
        "organization_partitioner_role",
    )
    .or_else(|| text(&body, "role", "role"))
    .unwrap_or_else(|| "member".into());
    let role = Role::parse(&role_text).ok_or_else(|| {
        AppError::invalid(
            "organizationPartitionerRole",
            "Use manager, member or viewer.",
        )
    })?;
    let org_id = access.scope.org_id();
    let created = state
        .db
        .tx(move |conn| {
            let acc = crate::practitioner::repo::find_account(conn, user_id)?.ok_or_else(|| {
                AppError::invalid("jheUserId", "No practitioner with this id exists.")
            })?;
            let email = acc.user.email.clone();
            let pid = acc.practitioner_id.ok_or_else(|| {
                AppError::invalid("jheUserId", format!("{email} is a patient account."))
            })?;
            // Adding someone who is already a member sets their role: the call is idempotent.
            if repo::member_role(conn, &access.scope, pid)?.is_some() {
                super::change_role(conn, &access.user, &access.scope, pid, role)?;
                Ok(false)
            } else {
                super::add_member_by_id(conn, &access.user, &access.scope, pid, role, &email)?;
                Ok(true)
            }
        })
        .await?;
    let body = serde_json::json!({
        "organizationId": org_id, "jheUserId": user_id, "role": role.as_str(),
        "organizationPartitionerRole": role.as_str()
    });
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

async fn remove_user(
    access: OrgAccess<Manager>,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let user_id = jhe_user_id(&body)?;
    state
        .db
        .tx(move |conn| {
            let pid = crate::practitioner::repo::find_account(conn, user_id)?
                .and_then(|a| a.practitioner_id)
                .ok_or_else(|| AppError::not_found("Member"))?;
            super::remove_member(conn, &access.user, &access.scope, pid)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
