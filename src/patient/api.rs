//! /api/v1/patients: the JHE-compatible JSON interface, scoped to the caller's organizations.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::{Identifier, Patient, PatientInput};
use super::repo::{self, ListFilter, Sort};
use crate::api::{envelope, field, id_param, PageQuery};
use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::AppError;
use crate::organization::api::OrgJson;
use crate::organization::{self, Role};
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/patients", web::get().to(list))
        .route("/patients", web::post().to(create))
        .route("/patients/global_lookup", web::get().to(global_lookup))
        .route("/patients/{id}", web::get().to(show))
        .route("/patients/{id}", web::patch().to(update))
        .route("/patients/{id}", web::delete().to(delete))
        .route(
            "/patients/{id}/global_add_organization",
            web::patch().to(global_add_organization),
        );
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentifierJson {
    id: i64,
    system: String,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientJson {
    id: i64,
    jhe_user_id: i64,
    identifiers: Vec<IdentifierJson>,
    name_family: String,
    name_given: String,
    birth_date: Option<String>,
    telecom_phone: Option<String>,
    telecom_email: String,
    organizations: Vec<OrgJson>,
}

/// Builds the JSON for patients in two queries, showing only organizations the caller sees.
pub fn to_json(
    conn: &mut DbConnection,
    user: &CurrentUser,
    patients: Vec<Patient>,
) -> Result<Vec<PatientJson>, AppError> {
    let ids: Vec<i64> = patients.iter().map(|p| p.id).collect();
    let mut idents: BTreeMap<i64, Vec<Identifier>> = BTreeMap::new();
    for i in repo::identifiers(conn, &ids)? {
        idents.entry(i.patient_id).or_default().push(i);
    }
    let (_, visible) = organization::visible(conn, user)?;
    // A patient sees its own organizations, with no role in them.
    let own = user.own_patient();
    let mut orgs: BTreeMap<i64, Vec<OrgJson>> = BTreeMap::new();
    for (pid, org, _) in repo::organizations_of(conn, &ids)? {
        if let Some(role) = visible.get(&org.id) {
            orgs.entry(pid)
                .or_default()
                .push(OrgJson::new(&org, Some(*role)));
        } else if own == Some(pid) {
            orgs.entry(pid).or_default().push(OrgJson::new(&org, None));
        }
    }
    Ok(patients
        .into_iter()
        .map(|p| PatientJson {
            id: p.id,
            jhe_user_id: p.user_id,
            identifiers: idents
                .remove(&p.id)
                .unwrap_or_default()
                .into_iter()
                .map(|i| IdentifierJson {
                    id: i.id,
                    system: i.system,
                    value: i.value,
                })
                .collect(),
            name_family: p.name_family,
            name_given: p.name_given,
            birth_date: p.birth_date.map(|d| d.to_string()),
            telecom_phone: p.telecom_phone,
            telecom_email: p.telecom_email,
            organizations: orgs.remove(&p.id).unwrap_or_default(),
        })
        .collect())
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(alias = "organizationId")]
    organization_id: Option<String>,
    #[serde(alias = "studyId")]
    study_id: Option<String>,
    #[serde(alias = "patientId")]
    patient_id: Option<String>,
    #[serde(alias = "patientIdentifierValue")]
    patient_identifier_value: Option<String>,
    q: Option<String>,
    #[serde(flatten)]
    paging: PageQuery,
}

async fn list(
    req: HttpRequest,
    caller: crate::auth::Bearer,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let (page, size) = query.paging.parse()?;
    let org_id = id_param(query.organization_id.as_ref(), "organizationId")?;
    let study_id = id_param(query.study_id.as_ref(), "studyId")?;
    let patient_id = id_param(query.patient_id.as_ref(), "patientId")?;
    let identifier_value = query
        .patient_identifier_value
        .clone()
        .filter(|v| !v.is_empty());
    let terms = super::search::query_terms(query.q.as_deref().unwrap_or(""));
    // A page near the start without a search is a few index lookups: no trip to the pool.
    let short = terms.is_empty() && page * size <= 1000;
    // The token is checked in the same trip to the database as the list.
    let (user, (count, results, shown)) = caller
        .read(&state, short, move |conn, user| {
            let org_ids = match study_id {
                Some(s) => {
                    // A study the caller cannot see reads as missing, whatever else is asked.
                    let (study, scope) = crate::study::authorize(conn, user, s, Role::Viewer)?;
                    if org_id.is_some_and(|o| o != study.organization_id) {
                        return Err(AppError::invalid(
                            "studyId",
                            "That study belongs to another organization.",
                        ));
                    }
                    vec![scope.org_id()]
                }
                None => super::list_scope(conn, user, org_id)?,
            };
            let filter = ListFilter {
                org_ids,
                terms,
                patient_id,
                identifier_value,
                study_id,
                ..ListFilter::default()
            };
            let (rows, count) =
                repo::list(conn, &filter, Sort::FamilyName, (page - 1) * size, size)?;
            let shown = rows.len();
            Ok((count, to_json(conn, user, rows)?, shown))
        })
        .await?;
    // A read's audit row goes through the batched queue: a write per request would make
    // every other connection start its next read with a cold cache.
    state
        .audit_queue
        .push(Audit::by(&user, "patient.list").detail(
            serde_json::json!({"organizationId": org_id, "studyId": study_id, "count": shown}),
        ));
    Ok(HttpResponse::Ok().json(envelope(
        &req,
        &state.config.public_url,
        page,
        size,
        count,
        results,
    )?))
}

fn text(body: &Value, camel: &str, snake: &str) -> Option<String> {
    field(body, camel, snake).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn identifiers(body: &Value) -> Result<Option<Vec<(String, String)>>, AppError> {
    match body.get("identifiers") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(
            items
                .iter()
                .map(|i| {
                    (
                        i.get("system")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        i.get("value")
                            .map(|v| {
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string())
                            })
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        )),
        Some(_) => Err(AppError::invalid(
            "identifiers",
            "Give a list of {\"system\", \"value\"} objects.",
        )),
    }
}

fn input_from(body: &Value, base: Option<&Patient>) -> Result<(PatientInput, bool), AppError> {
    let keep =
        |camel: &str, snake: &str, current: String| text(body, camel, snake).unwrap_or(current);
    let ids = identifiers(body)?;
    let replace = ids.is_some();
    Ok((
        PatientInput {
            email: keep(
                "telecomEmail",
                "telecom_email",
                base.map(|p| p.telecom_email.clone()).unwrap_or_default(),
            ),
            name_family: keep(
                "nameFamily",
                "name_family",
                base.map(|p| p.name_family.clone()).unwrap_or_default(),
            ),
            name_given: keep(
                "nameGiven",
                "name_given",
                base.map(|p| p.name_given.clone()).unwrap_or_default(),
            ),
            birth_date: keep(
                "birthDate",
                "birth_date",
                base.and_then(|p| p.birth_date)
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            ),
            phone: keep(
                "telecomPhone",
                "telecom_phone",
                base.and_then(|p| p.telecom_phone.clone())
                    .unwrap_or_default(),
            ),
            identifiers: ids.unwrap_or_default(),
        },
        replace,
    ))
}

async fn create(
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let org_id = field(&body, "organizationId", "organization_id")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| {
            AppError::invalid(
                "organizationId",
                "Give the id of the organization the patient joins.",
            )
        })?;
    let (input, _) = input_from(&body, None)?;
    let json = organization::act(
        &state.db,
        &user,
        org_id,
        Role::Member,
        move |conn, user, scope| {
            let id = super::create(conn, user, scope, &input)?;
            let p = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Patient"))?;
            Ok(to_json(conn, user, vec![p])?.pop())
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(json))
}

#[derive(Deserialize)]
struct LookupQuery {
    #[serde(default)]
    email: String,
}

async fn global_lookup(
    user: CurrentUser,
    state: web::Data<AppState>,
    q: web::Query<LookupQuery>,
) -> Result<HttpResponse, AppError> {
    let email = q.email.clone();
    if email.trim().is_empty() {
        return Err(AppError::invalid(
            "email",
            "Give the e-mail address to look up.",
        ));
    }
    let found = state
        .db
        .tx(move |conn| {
            let Some(p) = repo::find_by_email(conn, &email)? else {
                return Ok(Vec::new());
            };
            // Unlike JHE, a practitioner only finds patients of their own organizations.
            let Ok(scope) = super::authorize(conn, &user, p.id, Role::Viewer) else {
                return Ok(Vec::new());
            };
            Audit::by(&user, "patient.lookup")
                .object("patient", p.id)
                .org(scope.org_id())
                .record(conn)?;
            to_json(conn, &user, vec![p])
        })
        .await?;
    Ok(HttpResponse::Ok().json(found))
}

async fn show(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let json = state
        .db
        .tx(move |conn| {
            let scope = super::authorize(conn, &user, id, Role::Viewer)?;
            let p = super::read(conn, &user, &scope, id)?;
            Ok(to_json(conn, &user, vec![p])?.pop())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

#[derive(Deserialize)]
struct OrgParam {
    #[serde(alias = "organizationId")]
    organization_id: Option<String>,
}

/// The organization a change applies in: the one named, or the caller's best one.
fn scope_for(
    conn: &mut DbConnection,
    user: &CurrentUser,
    patient_id: i64,
    org: Option<i64>,
    needed: Role,
) -> Result<organization::OrgScope, AppError> {
    match org {
        Some(o) => {
            let scope = organization::authorize(conn, user, o, needed)?;
            if !repo::is_linked(conn, patient_id, o)? {
                return Err(AppError::not_found("Patient"));
            }
            Ok(scope)
        }
        None => super::authorize(conn, user, patient_id, needed),
    }
}

async fn update(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    q: web::Query<OrgParam>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let org = id_param(q.organization_id.as_ref(), "organizationId")?;
    let json = state
        .db
        .tx(move |conn| {
            let scope = scope_for(conn, &user, id, org, Role::Member)?;
            let current = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Patient"))?;
            if let Some(e) = text(&body, "telecomEmail", "telecom_email") {
                if crate::util::normalize_email(&e) != current.telecom_email {
                    return Err(AppError::invalid(
                        "telecomEmail",
                        "The e-mail is the patient's sign-in and is changed on its own, confirmed, in the console.",
                    ));
                }
            }
            let (input, replace) = input_from(&body, Some(&current))?;
            super::update(conn, &user, &scope, id, &input, replace)?;
            let p = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Patient"))?;
            Ok(to_json(conn, &user, vec![p])?.pop())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

async fn delete(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    q: web::Query<OrgParam>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let org = id_param(q.organization_id.as_ref(), "organizationId")?.ok_or_else(|| {
        AppError::invalid(
            "organizationId",
            "Name the organization to remove the patient from (?organizationId=).",
        )
    })?;
    state
        .db
        .tx(move |conn| {
            let scope = scope_for(conn, &user, id, Some(org), Role::Member)?;
            super::remove(conn, &user, &scope, id)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn global_add_organization(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    q: web::Query<OrgParam>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let org = id_param(q.organization_id.as_ref(), "organizationId")?.ok_or_else(|| {
        AppError::invalid(
            "organizationId",
            "Name the organization to add the patient to (?organizationId=).",
        )
    })?;
    let json = state
        .db
        .tx(move |conn| {
            // The caller must already see the patient somewhere, and be a member where it goes.
            super::authorize(conn, &user, id, Role::Viewer)?;
            let scope = organization::authorize(conn, &user, org, Role::Member)?;
            super::add_to_organization(conn, &user, &scope, id)?;
            let p = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Patient"))?;
            Ok(to_json(conn, &user, vec![p])?.pop())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json))
}
