//! /api/v1/patients/{id}/consents: a patient's decisions per study and scope, read and
//! recorded through the JHE-compatible JSON interface.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use super::StudyConsents;
use crate::api::field;
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::AppError;
use crate::organization::Role;
use crate::startup::AppState;
use crate::study::api::{ScopeJson, SourceJson, StudyOrgJson};
use crate::study::{self, Scope};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/patients/{id}/consents", web::get().to(show))
        .route("/patients/{id}/consents", web::post().to(record))
        .route("/patients/{id}/consents", web::patch().to(record))
        .route("/patients/{id}/consents", web::delete().to(clear))
        .route("/studies/{id}/consent_totals", web::get().to(totals));
}

/// The consent review's totals as JSON: per scope and overall, response rate, invitations.
async fn totals(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let t = state
        .db
        .run(move |conn| {
            let (s, _) = study::authorize(conn, &user, id, Role::Viewer)?;
            let requested: Vec<Scope> = study::repo::requested(conn, s.id)?;
            super::totals(conn, &s, &requested)
        })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "enrolled": t.enrolled,
        "scopes": t.scopes.iter().map(|st| serde_json::json!({
            "code": ScopeJson::from(&st.scope),
            "consented": st.consented,
            "declined": st.declined,
            "pending": st.pending,
        })).collect::<Vec<_>>(),
        "consented": t.consented,
        "declined": t.declined,
        "pending": t.pending,
        "responded": t.responded,
        "invited": t.invited,
        "invitedResponded": t.invited_responded,
        "responseRate": t.response_rate(),
        "invitations": {"issued": t.issued, "redeemed": t.redeemed, "expired": t.expired, "open": t.open},
    })))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopeConsentJson {
    code: ScopeJson,
    consented: Option<bool>,
    consented_time: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StudyConsentJson {
    id: i64,
    name: String,
    description: String,
    organization: StudyOrgJson,
    data_sources: Vec<SourceJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_scope_consents: Option<Vec<ScopeConsentJson>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope_consents: Option<Vec<ScopeConsentJson>>,
}

fn consents_json(
    conn: &mut DbConnection,
    user: &CurrentUser,
    patient_id: i64,
) -> Result<Value, AppError> {
    let (p, visible) = if user.own_patient() == Some(patient_id) {
        // A patient reading its own consents: every organization that holds it.
        let p = crate::patient::repo::find(conn, patient_id)?
            .ok_or_else(|| AppError::not_found("Patient"))?;
        let visible: BTreeMap<i64, Role> = crate::patient::repo::org_ids_of(conn, patient_id)?
            .into_iter()
            .map(|o| (o, Role::Viewer))
            .collect();
        (p, visible)
    } else {
        let scope = crate::patient::authorize(conn, user, patient_id, Role::Viewer)?;
        let p = crate::patient::read(conn, user, &scope, patient_id)?;
        (p, crate::organization::visible(conn, user)?.1)
    };
    let all = super::of_patient(conn, &visible, patient_id)?;
    let studies: Vec<study::Study> = all.iter().map(|s| s.study.clone()).collect();
    let mut described: BTreeMap<i64, study::api::StudyJson> = study::api::to_json(conn, &studies)?
        .into_iter()
        .map(|j| (j.id, j))
        .collect();
    let cell_json = |c: &super::Cell| ScopeConsentJson {
        code: (&c.scope).into(),
        consented: c.decision.map(|d| d.0),
        consented_time: c.decision.map(|d| crate::util::rfc3339(d.1)),
    };
    let mut consolidated: BTreeMap<i64, Scope> = BTreeMap::new();
    let (mut pending, mut responded) = (Vec::new(), Vec::new());
    for StudyConsents { study, cells } in &all {
        for c in cells {
            if c.decision.is_some_and(|d| d.0) {
                consolidated.insert(c.scope.id, c.scope.clone());
            }
        }
        let Some(j) = described.remove(&study.id) else {
            continue;
        };
        let base = |pending_cells: Option<Vec<ScopeConsentJson>>,
                    decided: Option<Vec<ScopeConsentJson>>| StudyConsentJson {
            id: j.id,
            name: j.name.clone(),
            description: j.description.clone(),
            organization: j.organization.clone(),
            data_sources: j.data_sources.clone(),
            pending_scope_consents: pending_cells,
            scope_consents: decided,
        };
        let waiting: Vec<ScopeConsentJson> = cells
            .iter()
            .filter(|c| c.decision.is_none())
            .map(cell_json)
            .collect();
        let decided: Vec<ScopeConsentJson> = cells
            .iter()
            .filter(|c| c.decision.is_some())
            .map(cell_json)
            .collect();
        if !waiting.is_empty() {
            pending.push(base(Some(waiting), None));
        }
        if !decided.is_empty() {
            responded.push(base(None, Some(decided)));
        }
    }
    let patient = crate::patient::api::to_json(conn, user, vec![p])?.pop();
    Ok(serde_json::json!({
        "patient": patient,
        "consolidatedConsentedScopes": consolidated.values().map(ScopeJson::from).collect::<Vec<_>>(),
        "studiesPendingConsent": pending,
        "studies": responded,
    }))
}

pub(crate) async fn show(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = crate::portal::api::patient_ref(&user, &id)?;
    let json = state
        .db
        .tx(move |conn| consents_json(conn, &user, id))
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

/// The body's `studyScopeConsents`: (study id, [(scope, consented)]).
type Wanted = Vec<(i64, Vec<(Option<String>, String, Option<bool>)>)>;

fn wanted(body: &Value, clearing: bool) -> Result<Wanted, AppError> {
    let bad = |msg: &str| AppError::invalid("studyScopeConsents", msg.to_string());
    let Some(Value::Array(studies)) = field(body, "studyScopeConsents", "study_scope_consents")
    else {
        return Err(bad("Give {\"studyScopeConsents\": [{\"studyId\": 1, \"scopeConsents\": [{\"codingSystem\": \"https://w3id.org/openmhealth\", \"codingCode\": \"omh:heart-rate:2.0\", \"consented\": true}]}]}."));
    };
    if studies.is_empty() {
        return Err(bad("List at least one study."));
    }
    studies
        .iter()
        .map(|s| {
            let sid = field(s, "studyId", "study_id")
                .and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|t| t.parse().ok())))
                .ok_or_else(|| bad("Each entry needs a whole-number studyId."))?;
            let Some(Value::Array(items)) = field(s, "scopeConsents", "scope_consents") else {
                return Err(bad("Each entry needs a scopeConsents list."));
            };
            let scopes = items
                .iter()
                .map(|i| {
                    let code = field(i, "codingCode", "coding_code")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("Each scope needs its codingCode, such as omh:heart-rate:2.0."))?;
                    let system = field(i, "codingSystem", "coding_system")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    let consented = if clearing {
                        None
                    } else {
                        Some(i.get("consented").and_then(Value::as_bool).ok_or_else(|| {
                            bad("Each scope needs \"consented\": true or false; DELETE clears a decision.")
                        })?)
                    };
                    Ok((system, code.to_string(), consented))
                })
                .collect::<Result<Vec<_>, AppError>>()?;
            Ok((sid, scopes))
        })
        .collect()
}

/// The scope a body names by code, or the 400 that says where the codes are listed.
fn known_scope(
    conn: &mut DbConnection,
    system: Option<&str>,
    code: &str,
) -> Result<Scope, AppError> {
    study::repo::find_scope_by_code(conn, system, code)?.ok_or_else(|| {
        AppError::BadRequest(format!(
            "{code} is not a known scope; GET /api/v1/data_sources/all_scopes lists them."
        ))
    })
}

/// A patient's own decisions through its app: the patient is the actor, and no reason is
/// asked (the decision is theirs, not recorded on their behalf).
fn apply_own(
    conn: &mut DbConnection,
    user: &CurrentUser,
    patient_id: i64,
    wanted: &Wanted,
) -> Result<(), AppError> {
    let patient = crate::patient::repo::find(conn, patient_id)?
        .ok_or_else(|| AppError::not_found("Patient"))?;
    let mut changes = Vec::new();
    for (study_id, scopes) in wanted {
        for (system, code, consented) in scopes {
            let sc = known_scope(conn, system.as_deref(), code)?;
            changes.push((*study_id, sc.id, *consented));
        }
    }
    let via = crate::portal::Via {
        channel: "app",
        ip: user.ip.clone(),
        token_id: user.token_id,
    };
    crate::portal::decide(conn, &patient, None, &changes, &via)?;
    Ok(())
}

/// Applies the body to each study, all in one transaction: one bad entry changes nothing.
fn apply(
    conn: &mut DbConnection,
    user: &CurrentUser,
    patient_id: i64,
    wanted: &Wanted,
    reason: &str,
) -> Result<(), AppError> {
    for (study_id, scopes) in wanted {
        let (s, scope) = study::authorize(conn, user, *study_id, Role::Member)?;
        let mut changes = Vec::new();
        for (system, code, consented) in scopes {
            let sc = known_scope(conn, system.as_deref(), code)?;
            changes.push((sc.id, *consented));
        }
        super::record(conn, user, &scope, &s, patient_id, &changes, reason)?;
    }
    Ok(())
}

fn reason_of(body: &Value) -> String {
    body.get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

pub(crate) async fn record(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let id = crate::portal::api::patient_ref(&user, &id)?;
    let w = wanted(&body, false)?;
    let reason = reason_of(&body);
    let json = state
        .db
        .tx(move |conn| {
            if user.own_patient() == Some(id) {
                apply_own(conn, &user, id, &w)?;
            } else {
                crate::patient::authorize(conn, &user, id, Role::Viewer)?;
                apply(conn, &user, id, &w, &reason)?;
            }
            consents_json(conn, &user, id)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

pub(crate) async fn clear(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let id = crate::portal::api::patient_ref(&user, &id)?;
    let w = wanted(&body, true)?;
    let reason = reason_of(&body);
    state
        .db
        .tx(move |conn| {
            if user.own_patient() == Some(id) {
                return apply_own(conn, &user, id, &w);
            }
            crate::patient::authorize(conn, &user, id, Role::Viewer)?;
            apply(conn, &user, id, &w, &reason)
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
