//! /api/v1/studies: the JHE-compatible JSON interface over the same domain calls.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::{DataSource, Scope, Study, StudyInput};
use super::repo;
use crate::api::{envelope, field, PageQuery};
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::AppError;
use crate::organization::{self, Role};
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/studies", web::get().to(list))
        .route("/studies", web::post().to(create))
        .route("/studies/{id}", web::get().to(show))
        .route("/studies/{id}", web::patch().to(update))
        .route("/studies/{id}", web::delete().to(delete))
        .route("/studies/{id}/patients", web::get().to(patients))
        .route("/studies/{id}/patients", web::post().to(enrol))
        .route("/studies/{id}/patients", web::delete().to(unenrol))
        .route(
            "/studies/{id}/scope_requests",
            web::get().to(scope_requests),
        )
        .route("/studies/{id}/scope_requests", web::post().to(add_scope))
        .route(
            "/studies/{id}/scope_requests",
            web::delete().to(remove_scope),
        )
        .route("/studies/{id}/data_sources", web::get().to(data_sources))
        .route("/studies/{id}/data_sources", web::post().to(add_source))
        .route(
            "/studies/{id}/data_sources",
            web::delete().to(remove_source),
        );
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ScopeJson {
    pub id: i64,
    pub coding_system: String,
    pub coding_code: String,
    pub text: String,
}

impl From<&Scope> for ScopeJson {
    fn from(s: &Scope) -> ScopeJson {
        ScopeJson {
            id: s.id,
            coding_system: s.coding_system.clone(),
            coding_code: s.coding_code.clone(),
            text: s.text.clone(),
        }
    }
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct SourceJson {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub source_type: String,
    pub supported_scopes: Vec<ScopeJson>,
}

impl SourceJson {
    pub fn new(d: &DataSource, scopes: Vec<ScopeJson>) -> SourceJson {
        SourceJson {
            id: d.id,
            name: d.name.clone(),
            source_type: d.source_type.clone(),
            supported_scopes: scopes,
        }
    }
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct StudyOrgJson {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub org_type: String,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct StudyJson {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub organization: StudyOrgJson,
    pub icon_url: Option<String>,
    pub status: String,
    pub scope_requests: Vec<ScopeJson>,
    pub data_sources: Vec<SourceJson>,
}

/// The JSON of several studies in a handful of queries.
pub fn to_json(conn: &mut DbConnection, studies: &[Study]) -> Result<Vec<StudyJson>, AppError> {
    let ids: Vec<i64> = studies.iter().map(|s| s.id).collect();
    let mut scopes: BTreeMap<i64, Vec<ScopeJson>> = BTreeMap::new();
    for (sid, sc) in repo::scope_requests(conn, &ids)? {
        scopes.entry(sid).or_default().push((&sc).into());
    }
    let chosen = repo::data_sources_of(conn, &ids)?;
    let source_ids: Vec<i64> = chosen.iter().map(|(_, d)| d.id).collect();
    let supplied = crate::data_source::repo::scopes_by_source(conn, &source_ids)?;
    let mut sources: BTreeMap<i64, Vec<SourceJson>> = BTreeMap::new();
    for (sid, d) in &chosen {
        sources.entry(*sid).or_default().push(SourceJson::new(
            d,
            supplied
                .get(&d.id)
                .map(|scopes| scopes.iter().map(ScopeJson::from).collect())
                .unwrap_or_default(),
        ));
    }
    let org_ids: Vec<i64> = studies.iter().map(|s| s.organization_id).collect();
    let orgs: BTreeMap<i64, StudyOrgJson> = organization::repo::find_many(conn, &org_ids)?
        .into_iter()
        .map(|o| {
            (
                o.id,
                StudyOrgJson {
                    id: o.id,
                    name: o.name,
                    org_type: o.org_type,
                },
            )
        })
        .collect();
    Ok(studies
        .iter()
        .map(|s| StudyJson {
            id: s.id,
            name: s.name.clone(),
            description: s.description.clone(),
            organization: orgs
                .get(&s.organization_id)
                .cloned()
                .unwrap_or(StudyOrgJson {
                    id: s.organization_id,
                    name: String::new(),
                    org_type: String::new(),
                }),
            icon_url: s.icon_url.clone(),
            status: s.status.clone(),
            scope_requests: scopes.remove(&s.id).unwrap_or_default(),
            data_sources: sources.remove(&s.id).unwrap_or_default(),
        })
        .collect())
}

fn one(conn: &mut DbConnection, s: &Study) -> Result<StudyJson, AppError> {
    to_json(conn, std::slice::from_ref(s))?
        .pop()
        .ok_or_else(|| AppError::not_found("Study"))
}

/// An id given as a JSON number or a numeric string.
fn id_in(body: &Value, camel: &str, snake: &str) -> Option<i64> {
    field(body, camel, snake).and_then(|v| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .or_else(|| v.get("id").and_then(Value::as_i64))
    })
}

fn text(body: &Value, camel: &str, snake: &str) -> Result<Option<String>, AppError> {
    match field(body, camel, snake) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(String::new())),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AppError::invalid(camel, "Give this as text.")),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(alias = "organizationId")]
    organization_id: Option<String>,
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(flatten)]
    paging: PageQuery,
}

async fn list(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let (page, size) = query.paging.parse()?;
    let org_id = match query.organization_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<i64>()
                .map_err(|_| AppError::invalid("organizationId", "Use a whole-number id."))?,
        ),
    };
    let status = match query.status.trim() {
        "" => None,
        s => Some(
            super::Status::parse(s)
                .ok_or_else(|| AppError::invalid("status", "Use active, paused or closed."))?,
        ),
    };
    let q = query.q.clone();
    let (count, results) = state
        .db
        .run(move |conn| {
            let orgs: Vec<i64> = match org_id {
                Some(o) => vec![organization::authorize(conn, &user, o, Role::Viewer)?.org_id()],
                None => organization::visible(conn, &user)?.1.into_keys().collect(),
            };
            let (page_rows, count) = repo::list(conn, &orgs, &q, status, (page - 1) * size, size)?;
            Ok((count, to_json(conn, &page_rows)?))
        })
        .await?;
    Ok(HttpResponse::Ok().json(envelope(
        &req,
        &state.config.public_url,
        page,
        size,
        count,
        results,
    )?))
}

fn input_from(body: &Value, base: Option<&Study>) -> Result<StudyInput, AppError> {
    Ok(StudyInput {
        name: text(body, "name", "name")?
            .unwrap_or_else(|| base.map(|s| s.name.clone()).unwrap_or_default()),
        description: text(body, "description", "description")?
            .unwrap_or_else(|| base.map(|s| s.description.clone()).unwrap_or_default()),
        icon_url: text(body, "iconUrl", "icon_url")?
            .unwrap_or_else(|| base.and_then(|s| s.icon_url.clone()).unwrap_or_default()),
        status: text(body, "status", "status")?
            .unwrap_or_else(|| base.map(|s| s.status.clone()).unwrap_or_default()),
    })
}

async fn create(
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let org_id = id_in(&body, "organization", "organization")
        .or_else(|| id_in(&body, "organizationId", "organization_id"))
        .ok_or_else(|| {
            AppError::invalid(
                "organization",
                "Give the id of the organization the study belongs to.",
            )
        })?;
    let input = input_from(&body, None)?;
    let json = organization::act(
        &state.db,
        &user,
        org_id,
        Role::Member,
        move |conn, user, scope| {
            let id = super::create(conn, user, scope, &input)?;
            let s = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Study"))?;
            one(conn, &s)
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(json))
}

async fn show(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let json = state
        .db
        .run(move |conn| {
            let (s, _) = super::authorize(conn, &user, id, Role::Viewer)?;
            one(conn, &s)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

async fn update(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let json = super::act(
        &state.db,
        &user,
        id.into_inner(),
        move |conn, user, scope, s| {
            // Checked once the caller may change the study, so it tells an outsider nothing.
            if id_in(&body, "organization", "organization").is_some_and(|o| o != s.organization_id)
            {
                return Err(AppError::invalid(
                    "organization",
                    "A study stays in its organization; create a new study in the other one.",
                ));
            }
            let input = input_from(&body, Some(s))?;
            super::update(conn, user, scope, s, &input)?;
            let s = repo::find(conn, s.id)?.ok_or_else(|| AppError::not_found("Study"))?;
            one(conn, &s)
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(json))
}

async fn delete(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    super::act(&state.db, &user, id.into_inner(), |conn, user, scope, s| {
        super::delete(conn, user, scope, s)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn patients(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    paging: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let (page, size) = paging.parse()?;
    let id = id.into_inner();
    let (count, results) = state
        .db
        .tx(move |conn| {
            let (s, scope) = super::authorize(conn, &user, id, Role::Viewer)?;
            let all = crate::consent::repo::Filter::new(crate::consent::Only::All, None, &[]);
            let (rows, count) =
                crate::consent::repo::page(conn, s.id, all, (page - 1) * size, size)?;
            crate::audit::Audit::by(&user, "study.patients.list")
                .object("study", s.id)
                .org(scope.org_id())
                .detail(serde_json::json!({"count": rows.len()}))
                .record(conn)?;
            Ok((count, crate::patient::api::to_json(conn, &user, rows)?))
        })
        .await?;
    Ok(HttpResponse::Ok().json(envelope(
        &req,
        &state.config.public_url,
        page,
        size,
        count,
        results,
    )?))
}

/// `patientIds` (or `patient_ids`) as a list of whole numbers.
fn patient_ids(body: &Value) -> Result<Vec<i64>, AppError> {
    let bad = || {
        AppError::invalid(
            "patientIds",
            "Give the patients as a list of ids, such as {\"patientIds\": [10001, 10002]}.",
        )
    };
    match field(body, "patientIds", "patient_ids") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .ok_or_else(bad)
            })
            .collect(),
        _ => Err(bad()),
    }
}

async fn enrol(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let ids = patient_ids(&body)?;
    let n = ids.iter().collect::<std::collections::BTreeSet<_>>().len();
    let added = super::act(
        &state.db,
        &user,
        id.into_inner(),
        move |conn, user, scope, s| super::enrol(conn, user, scope, s, &ids),
    )
    .await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"enrolled": added, "alreadyEnrolled": n - added.min(n)})))
}

async fn unenrol(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let ids = patient_ids(&body)?;
    let removed = super::act(
        &state.db,
        &user,
        id.into_inner(),
        move |conn, user, scope, s| super::unenrol(conn, user, scope, s, &ids),
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"removed": removed})))
}

async fn scope_requests(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let json = state
        .db
        .run(move |conn| {
            let (s, _) = super::authorize(conn, &user, id, Role::Viewer)?;
            Ok(repo::requested(conn, s.id)?
                .iter()
                .map(ScopeJson::from)
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

fn scope_id_in(body: &Value) -> Result<i64, AppError> {
    id_in(body, "scopeCodeId", "scope_code_id").ok_or_else(|| {
        AppError::invalid(
            "scopeCodeId",
            "Give the scope's id, such as {\"scopeCodeId\": 4}; GET /api/v1/data_sources/all_scopes lists them.",
        )
    })
}

/// Adds a scope request or data source: 201 when added, 200 when it was there already.
async fn add_item(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: i64,
    item: super::Item,
) -> Result<HttpResponse, AppError> {
    let (added, json) = super::act(&state.db, &user, id, move |conn, user, scope, s| {
        let added = super::add(conn, user, scope, s, item)?;
        Ok((added, one(conn, s)?))
    })
    .await?;
    Ok(if added {
        HttpResponse::Created().json(json)
    } else {
        HttpResponse::Ok().json(json)
    })
}

async fn remove_item(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: i64,
    item: super::Item,
) -> Result<HttpResponse, AppError> {
    super::act(&state.db, &user, id, move |conn, user, scope, s| {
        super::remove(conn, user, scope, s, item)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn add_scope(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let item = super::Item::Scope(scope_id_in(&body)?);
    add_item(state, user, id.into_inner(), item).await
}

async fn remove_scope(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let item = super::Item::Scope(scope_id_in(&body)?);
    remove_item(state, user, id.into_inner(), item).await
}

async fn data_sources(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let json = state
        .db
        .run(move |conn| {
            let (s, _) = super::authorize(conn, &user, id, Role::Viewer)?;
            Ok(one(conn, &s)?.data_sources)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

fn source_id_in(body: &Value) -> Result<i64, AppError> {
    id_in(body, "dataSourceId", "data_source_id").ok_or_else(|| {
        AppError::invalid(
            "dataSourceId",
            "Give the data source's id, such as {\"dataSourceId\": 70001}; GET /api/v1/data_sources lists them.",
        )
    })
}

async fn add_source(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let item = super::Item::Source(source_id_in(&body)?);
    add_item(state, user, id.into_inner(), item).await
}

async fn remove_source(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let item = super::Item::Source(source_id_in(&body)?);
    remove_item(state, user, id.into_inner(), item).await
}
