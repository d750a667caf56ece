//! The patient's side of /api/v1 (`patients/me`, its consents and update requests), and
//! the practitioner calls that reach patients: personal sign-up links and data-update
//! requests.

use actix_web::{web, HttpResponse};
use chrono::Duration;
use diesel::prelude::*;
use serde_json::{json, Value};

use crate::api::field;
use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::schema::{consents, studies, update_requests};
use crate::db::DbConnection;
use crate::error::AppError;
use crate::organization::Role;
use crate::startup::AppState;
use crate::study::Status;

/// Registered before the patients and studies routes: `patients/me` is not an id.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/patients/me", web::get().to(me))
        .route("/patients/me/update_requests", web::get().to(my_requests))
        .route("/studies/{id}/link", web::post().to(personal_link))
        .route(
            "/studies/{id}/patients/{patient_id}/update_request",
            web::post().to(update_request),
        );
}

/// A patient named in a path: a number, or `me` for a patient's own token.
pub fn patient_ref(user: &CurrentUser, raw: &str) -> Result<i64, AppError> {
    if raw == "me" {
        return user.own_patient().ok_or_else(|| {
            AppError::NotFound(
                "Only a patient's own token has /patients/me; name the patient by id.".into(),
            )
        });
    }
    raw.parse()
        .map_err(|_| AppError::NotFound(format!("No patient has the id {raw}.")))
}

async fn me(user: CurrentUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let id = patient_ref(&user, "me")?;
    let json = state
        .db
        .run(move |conn| {
            let p = crate::patient::repo::find(conn, id)?
                .ok_or_else(|| AppError::not_found("Patient"))?;
            Ok(crate::patient::api::to_json(conn, &user, vec![p])?.pop())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

/// The answer to a request for fresh data.
pub const NO_ACTION: &str = "IN_PROGRESS_NO_ACTION_NEEDED";
pub const ACTION: &str = "PATIENT_ACTION_NEEDED";

/// Asks a patient of a study for fresh data. The app sees the request when it next calls
/// (`IN_PROGRESS_NO_ACTION_NEEDED`) if the patient has a live app and consented to something
/// the study asks for; otherwise the patient must act (`PATIENT_ACTION_NEEDED`).
pub fn request_update(
    conn: &mut DbConnection,
    user: &CurrentUser,
    study_id: i64,
    patient_id: i64,
) -> Result<(i64, &'static str), AppError> {
    let (study, scope) = crate::study::authorize(conn, user, study_id, Role::Member)?;
    crate::patient::authorize(conn, user, patient_id, Role::Viewer)?;
    let patient = crate::patient::repo::find(conn, patient_id)?
        .ok_or_else(|| AppError::not_found("Patient"))?;
    if !crate::consent::repo::is_enrolled(conn, study.id, patient_id)? {
        return Err(AppError::BadRequest(format!(
            "{} {} is not enrolled in {}; enrol them before asking for data.",
            patient.name_given, patient.name_family, study.name
        )));
    }
    match study.status() {
        Status::Active => {}
        s => {
            return Err(AppError::Conflict(format!(
                "{} is {}, so it collects no data. Set its status to active first.",
                study.name,
                s.as_str()
            )))
        }
    }
    let consented: bool = diesel::select(diesel::dsl::exists(
        consents::table
            .filter(consents::study_id.eq(study.id))
            .filter(consents::patient_id.eq(patient_id))
            .filter(consents::consented.eq(true)),
    ))
    .get_result(conn)?;
    let outcome = if consented && super::has_live_app(conn, patient.user_id)? {
        NO_ACTION
    } else {
        ACTION
    };
    let t = crate::util::now();
    let id: i64 = diesel::insert_into(update_requests::table)
        .values((
            update_requests::study_id.eq(study.id),
            update_requests::patient_id.eq(patient_id),
            update_requests::requested_by_user_id.eq(Some(user.id())),
            update_requests::outcome.eq(outcome),
            update_requests::created_at.eq(t),
        ))
        .returning(update_requests::id)
        .get_result(conn)?;
    Audit::by(user, "update_request.create")
        .object("patient", patient_id)
        .org(scope.org_id())
        .detail(json!({"studyId": study.id, "updateRequest": id, "status": outcome}))
        .record(conn)?;
    Ok((id, outcome))
}

fn path_id(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.parse()
        .map_err(|_| AppError::NotFound(format!("No {what} has the id {raw}.")))
}

async fn update_request(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (s, p) = path.into_inner();
    let (study_id, patient_id) = (path_id(&s, "study")?, path_id(&p, "patient")?);
    let (id, outcome) = state
        .db
        .tx(move |conn| request_update(conn, &user, study_id, patient_id))
        .await?;
    Ok(HttpResponse::Created().json(json!({
        "id": id,
        "studyId": study_id,
        "patientId": patient_id,
        "status": outcome,
    })))
}

/// How long a request stays in the app's list.
const REQUEST_DAYS: i64 = 30;

async fn my_requests(
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let id = patient_ref(&user, "me")?;
    let rows = state
        .db
        .tx(move |conn| {
            let t = crate::util::now();
            type Row = (
                i64,
                i64,
                String,
                chrono::NaiveDateTime,
                Option<chrono::NaiveDateTime>,
            );
            let rows: Vec<Row> = update_requests::table
                .inner_join(studies::table)
                .filter(update_requests::patient_id.eq(id))
                .filter(update_requests::created_at.gt(t - Duration::days(REQUEST_DAYS)))
                .select((
                    update_requests::id,
                    update_requests::study_id,
                    studies::name,
                    update_requests::created_at,
                    update_requests::seen_at,
                ))
                .order(update_requests::created_at.desc())
                .load(conn)?;
            let study_ids: Vec<i64> = rows.iter().map(|r| r.1).collect();
            let granted: Vec<(i64, String)> = consents::table
                .inner_join(crate::db::schema::codeable_concepts::table)
                .filter(consents::patient_id.eq(id))
                .filter(consents::study_id.eq_any(study_ids))
                .filter(consents::consented.eq(true))
                .select((
                    consents::study_id,
                    crate::db::schema::codeable_concepts::coding_code,
                ))
                .load(conn)?;
            diesel::update(
                update_requests::table
                    .filter(update_requests::patient_id.eq(id))
                    .filter(update_requests::seen_at.is_null()),
            )
            .set(update_requests::seen_at.eq(Some(t)))
            .execute(conn)?;
            Ok(rows
                .into_iter()
                .map(|(rid, sid, name, at, seen)| {
                    json!({
                        "id": rid,
                        "studyId": sid,
                        "studyName": name,
                        "requestedAt": crate::util::rfc3339(at),
                        "seenAt": seen.map(crate::util::rfc3339),
                        "scopes": granted.iter().filter(|g| g.0 == sid).map(|g| g.1.clone()).collect::<Vec<_>>(),
                    })
                })
                .collect::<Vec<Value>>())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "count": rows.len(),
        "next": null,
        "previous": null,
        "results": rows,
    })))
}

/// A personal sign-up link for one external identifier; only for an active study.
pub fn make_link(
    conn: &mut DbConnection,
    user: &CurrentUser,
    state: &AppState,
    study_id: i64,
    raw_reference: &str,
) -> Result<String, AppError> {
    let (study, scope) = crate::study::authorize(conn, user, study_id, Role::Member)?;
    let reference = super::signup::check_reference(raw_reference)
        .map_err(|m| AppError::invalid("externalId", m))?;
    crate::study::require_active(&study, "participants")?;
    let url = super::signup::link(
        &state.config.public_url,
        state.secret(),
        study.id,
        Some(&reference),
    );
    Audit::by(user, "study.link")
        .object("study", study.id)
        .org(scope.org_id())
        .detail(json!({"externalId": reference}))
        .record(conn)?;
    Ok(url)
}

async fn personal_link(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let study_id = path_id(&id, "study")?;
    let reference = field(&body, "externalId", "external_id")
        .map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        })
        .unwrap_or_default();
    let st = state.clone();
    let r = reference.clone();
    let url = state
        .db
        .tx(move |conn| make_link(conn, &user, &st, study_id, &r))
        .await?;
    Ok(HttpResponse::Created().json(json!({
        "studyId": study_id,
        "externalId": reference.trim(),
        "url": url,
    })))
}
