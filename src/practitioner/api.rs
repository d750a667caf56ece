//! /api/v1/users/profile and the superuser-only /api/v1/practitioners.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use super::model::User;
use super::{repo, NewPractitionerInput};
use crate::api::{envelope, field, PageQuery};
use crate::auth::{CurrentUser, Superuser};
use crate::error::AppError;
use crate::organization::Role;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/users/profile", web::get().to(profile))
        .route("/practitioners", web::get().to(list))
        .route("/practitioners", web::post().to(create));
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProfileJson {
    id: i64,
    email: String,
    first_name: String,
    last_name: String,
    patient: Option<Value>,
    user_type: String,
    is_superuser: bool,
}

async fn profile(user: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(ProfileJson {
        id: user.user.id,
        email: user.user.email.clone(),
        first_name: user.user.first_name.clone(),
        last_name: user.user.last_name.clone(),
        patient: user.patient_id.map(|id| serde_json::json!({ "id": id })),
        user_type: user.user.user_type.clone(),
        is_superuser: user.user.is_superuser,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PractitionerJson {
    id: i64,
    jhe_user_id: i64,
    telecom_email: String,
    name_given: String,
    name_family: String,
    is_superuser: bool,
}

impl PractitionerJson {
    fn new(id: i64, u: &User) -> PractitionerJson {
        PractitionerJson {
            id,
            jhe_user_id: u.id,
            telecom_email: u.email.clone(),
            name_given: u.first_name.clone(),
            name_family: u.last_name.clone(),
            is_superuser: u.is_superuser,
        }
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(flatten)]
    paging: PageQuery,
}

async fn list(
    req: HttpRequest,
    _su: Superuser,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let (page, size) = query.paging.parse()?;
    let q = query.q.clone();
    let (rows, total) = state
        .db
        .run(move |conn| repo::list(conn, &q, (page - 1) * size, size))
        .await?;
    let results = rows
        .iter()
        .map(|(id, u)| PractitionerJson::new(*id, u))
        .collect();
    Ok(HttpResponse::Ok().json(envelope(
        &req,
        &state.config.public_url,
        page,
        size,
        total,
        results,
    )?))
}

async fn create(
    Superuser(actor): Superuser,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let text = |c: &str, s: &str| {
        field(&body, c, s)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let organization_id = match field(&body, "organizationId", "organization_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| AppError::invalid("organizationId", "Use an organization id."))?,
        ),
    };
    let role_text = text("role", "role");
    let role = if role_text.is_empty() {
        Role::Member
    } else {
        Role::parse(&role_text)
            .ok_or_else(|| AppError::invalid("role", "Use manager, member or viewer."))?
    };
    let input = NewPractitionerInput {
        email: text("telecomEmail", "telecom_email"),
        first_name: text("nameGiven", "name_given"),
        last_name: text("nameFamily", "name_family"),
        organization_id,
        role,
        superuser: field(&body, "isSuperuser", "is_superuser")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    };
    if input.email.trim().is_empty() {
        return Err(AppError::invalid(
            "telecomEmail",
            "Enter the practitioner's e-mail address.",
        ));
    }
    let (json, _) = state
        .db
        .tx(move |conn| {
            let (user_id, pid) = super::create(conn, &actor, &input)?;
            let acc = repo::find_account(conn, user_id)?
                .ok_or_else(|| AppError::not_found("Practitioner"))?;
            Ok((PractitionerJson::new(pid, &acc.user), ()))
        })
        .await?;
    Ok(HttpResponse::Created().json(json))
}
