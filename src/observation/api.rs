//! /api/v1/observations: the compatibility page's admin list, newest first.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::repo::Order;
use super::Wanted;
use crate::api::{envelope, id_param, PageQuery};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/observations", web::get().to(list));
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(alias = "organizationId")]
    organization_id: Option<String>,
    #[serde(alias = "studyId")]
    study_id: Option<String>,
    #[serde(alias = "patientId")]
    patient_id: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    id: i64,
    subject_patient_id: i64,
    patient_name_family: String,
    patient_name_given: String,
    jhe_user_id: i64,
    codeable_concept_id: i64,
    coding_system: String,
    coding_code: String,
    coding_text: String,
    last_updated: String,
    /// Passed through exactly as uploaded.
    omh_data: Box<serde_json::value::RawValue>,
}

async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let (page, size) = q.page.parse()?;
    let wanted = Wanted {
        organization: id_param(q.organization_id.as_ref(), "organization_id")?,
        study: id_param(q.study_id.as_ref(), "study_id")?,
        patient: id_param(q.patient_id.as_ref(), "patient_id")?,
        ..Wanted::default()
    };
    let st = state.clone();
    let (rows, count) = state
        .db
        .run(move |conn| {
            let f = super::visible_filter(conn, &user, &wanted)?;
            let count = super::repo::count(conn, &f)?;
            let rows = super::repo::page(
                conn,
                &f,
                Order::EffectiveDesc,
                None,
                (page - 1) * size,
                size,
            )?;
            let concepts = st.concepts(conn)?;
            let ids: Vec<i64> = rows.iter().map(|o| o.patient_id).collect();
            let people: HashMap<i64, crate::patient::model::Patient> =
                crate::patient::repo::find_many(conn, &ids)?
                    .into_iter()
                    .map(|p| (p.id, p))
                    .collect();
            let out = rows
                .into_iter()
                .map(|o| {
                    let c = concepts.get(o.codeable_concept_id);
                    let p = people.get(&o.patient_id);
                    Ok(Row {
                        id: o.id,
                        subject_patient_id: o.patient_id,
                        patient_name_family: p.map(|p| p.name_family.clone()).unwrap_or_default(),
                        patient_name_given: p.map(|p| p.name_given.clone()).unwrap_or_default(),
                        jhe_user_id: p.map(|p| p.user_id).unwrap_or_default(),
                        codeable_concept_id: o.codeable_concept_id,
                        coding_system: c.map(|c| c.system.clone()).unwrap_or_default(),
                        coding_code: c.map(|c| c.code.clone()).unwrap_or_default(),
                        coding_text: c.map(|c| c.text.clone()).unwrap_or_default(),
                        last_updated: crate::fhir::instant(o.last_updated),
                        omh_data: serde_json::value::RawValue::from_string(o.omh_data)
                            .or_else(|_| serde_json::value::RawValue::from_string("null".into()))
                            .map_err(AppError::internal)?,
                    })
                })
                .collect::<Result<Vec<Row>, AppError>>()?;
            Ok((out, count))
        })
        .await?;
    let env = envelope(&req, &state.config.public_url, page, size, count, rows)?;
    Ok(HttpResponse::Ok().json(env))
}
