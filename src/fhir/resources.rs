//! The FHIR resources observations point at: Patient (read and search), Group (a study),
//! Device (a data source) and Organization.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDate;
use serde_json::{json, Value};

use super::{
    bad, bundle, count_param, instant, link, ok, page_param, pairs, parse_id, ref_id, self_link,
    Fhir, CONTENT_TYPE,
};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::organization::Role;
use crate::startup::AppState;

// ---------------------------------------------------------------------------------------
// Patient, Group, Device, Organization

fn patient_resource(
    p: &crate::patient::model::Patient,
    ids: &[crate::patient::model::Identifier],
) -> Value {
    let mut telecom = vec![json!({"system": "email", "value": p.telecom_email})];
    if let Some(phone) = &p.telecom_phone {
        telecom.push(json!({"system": "phone", "value": phone}));
    }
    let mut r = json!({
        "resourceType": "Patient",
        "id": p.id.to_string(),
        "meta": {"lastUpdated": instant(p.updated_at)},
        "identifier": ids.iter().filter(|i| i.patient_id == p.id).map(|i| json!({"system": i.system, "value": i.value})).collect::<Vec<_>>(),
        "name": [{"family": p.name_family, "given": [p.name_given]}],
        "telecom": telecom,
    });
    if let Some(d) = p.birth_date {
        r["birthDate"] = json!(d.to_string());
    }
    r
}

pub(super) async fn read_patient(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, Fhir> {
    let id = parse_id(&id, "Patient")?;
    let r = state
        .db
        .run(move |conn| {
            if user.patient_id != Some(id) {
                crate::patient::authorize(conn, &user, id, Role::Viewer).map_err(|e| match e {
                    AppError::NotFound(_) => AppError::NotFound(format!("Patient/{id} not found.")),
                    other => other,
                })?;
            }
            let p = crate::patient::repo::find(conn, id)?
                .ok_or_else(|| AppError::NotFound(format!("Patient/{id} not found.")))?;
            let ids = crate::patient::repo::identifiers(conn, &[id])?;
            Ok(patient_resource(&p, &ids))
        })
        .await?;
    Ok(ok(&r))
}

pub(super) async fn search_patients(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<HttpResponse, Fhir> {
    let mut q = PatientSearch::default();
    let mut count = 20;
    let mut page = 1;
    for (k, v) in pairs(&req) {
        match k.as_str() {
            "family" => q.family = Some(v),
            "given" => q.given = Some(v),
            "name" => q.name = Some(v),
            "birthdate" => {
                q.birth_date = Some(NaiveDate::parse_from_str(v.trim_start_matches("eq"), "%Y-%m-%d").map_err(|_| {
                    bad(format!("birthdate must be a date YYYY-MM-DD; got \"{v}\"."))
                })?)
            }
            "identifier" => {
                q.identifier = Some(match v.split_once('|') {
                    Some((s, val)) => (Some(s.to_string()).filter(|s| !s.is_empty()), val.to_string()),
                    None => (None, v),
                })
            }
            "organization" => q.organization = Some(ref_id(&v, "Organization", "organization")?),
            "_id" => q.id = Some(ref_id(&v, "Patient", "_id")?),
            "_count" => count = count_param(&v)?,
            "_page" => page = page_param(&v)?,
            "_format" | "_total" => {}
            other => {
                return Err(bad(format!(
                    "Unknown search parameter \"{other}\" for Patient. Use family, given, name, birthdate, identifier, organization, _id, _count or _page."
                )))
            }
        }
    }
    let (rows, ids, total) = state
        .db
        .run(move |conn| {
            let orgs = crate::patient::list_scope(conn, &user, q.organization)?;
            let (rows, total) = find_patients(conn, &orgs, &q, (page - 1) * count, count)?;
            let ids = crate::patient::repo::identifiers(
                conn,
                &rows.iter().map(|p| p.id).collect::<Vec<_>>(),
            )?;
            Ok((rows, ids, total))
        })
        .await?;
    let mut links = vec![("self", self_link(&state, &req))];
    if page * count < total {
        links.push((
            "next",
            link(&state, &req, &[("_page", (page + 1).to_string())]),
        ));
    }
    if page > 1 {
        links.push((
            "previous",
            link(&state, &req, &[("_page", (page - 1).to_string())]),
        ));
    }
    let body = bundle(Some(total), &links, &rows, |out, p| {
        let _ = serde_json::to_writer(out, &patient_resource(p, &ids));
    });
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}

pub(super) async fn read_group(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, Fhir> {
    let id = parse_id(&id, "Group")?;
    let r = state
        .db
        .run(move |conn| {
            let (s, _) = crate::study::authorize(conn, &user, id, Role::Viewer).map_err(|e| match e {
                AppError::NotFound(_) => AppError::NotFound(format!("Group/{id} not found.")),
                other => other,
            })?;
            let members = crate::study::repo::members(conn, s.id)?;
            Ok(json!({
                "resourceType": "Group",
                "id": s.id.to_string(),
                "meta": {"lastUpdated": instant(s.updated_at)},
                "active": s.status == "active",
                "type": "person",
                "membership": "enumerated",
                "name": s.name,
                "description": s.description,
                "quantity": members.len(),
                "managingEntity": {"reference": format!("Organization/{}", s.organization_id)},
                "member": members.iter().map(|p| json!({"entity": {"reference": format!("Patient/{p}")}})).collect::<Vec<_>>(),
            }))
        })
        .await?;
    Ok(ok(&r))
}

pub(super) async fn read_device(
    state: web::Data<AppState>,
    _user: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, Fhir> {
    let id = parse_id(&id, "Device")?;
    let r = state
        .db
        .run(move |conn| {
            let d = crate::data_source::repo::find(conn, id)?
                .ok_or_else(|| AppError::NotFound(format!("Device/{id} not found.")))?;
            let scopes = crate::data_source::repo::scopes_of(conn, &[id])?;
            Ok(json!({
                "resourceType": "Device",
                "id": d.id.to_string(),
                "displayName": d.name,
                "name": [{"value": d.name, "type": "user-friendly-name"}],
                "type": [{"coding": [{"system": "https://cohort.example/data-source-type", "code": d.source_type}], "text": d.source_type.replace('_', " ")}],
                "property": scopes.iter().map(|(_, s)| json!({
                    "type": {"text": "supported scope"},
                    "valueCodeableConcept": {"coding": [{"system": s.coding_system, "code": s.coding_code, "display": s.text}]},
                })).collect::<Vec<_>>(),
            }))
        })
        .await?;
    Ok(ok(&r))
}

pub(super) async fn read_organization(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, Fhir> {
    let id = parse_id(&id, "Organization")?;
    let r = state
        .db
        .run(move |conn| {
            crate::organization::authorize(conn, &user, id, Role::Viewer).map_err(|e| match e {
                AppError::NotFound(_) => AppError::NotFound(format!("Organization/{id} not found.")),
                other => other,
            })?;
            let o = crate::organization::repo::find(conn, id)?
                .ok_or_else(|| AppError::NotFound(format!("Organization/{id} not found.")))?;
            let mut r = json!({
                "resourceType": "Organization",
                "id": o.id.to_string(),
                "active": true,
                "name": o.name,
                "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": o.org_type}]}],
            });
            if let Some(p) = o.part_of.filter(|p| *p != crate::organization::ROOT_ID) {
                r["partOf"] = json!({"reference": format!("Organization/{p}")});
            }
            Ok(r)
        })
        .await?;
    Ok(ok(&r))
}

/// Patient search as asked: every given condition must hold.
#[derive(Default, Debug)]
struct PatientSearch {
    id: Option<i64>,
    family: Option<String>,
    given: Option<String>,
    name: Option<String>,
    birth_date: Option<NaiveDate>,
    identifier: Option<(Option<String>, String)>,
    organization: Option<i64>,
}

diesel::define_sql_function! {
    /// Lower case, for case-insensitive matching on both backends.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// A page of the patients of `orgs` matching the search, by family name, with the total.
/// Names match case-insensitively at their start, as FHIR string search does.
fn find_patients(
    conn: &mut crate::db::DbConnection,
    orgs: &[i64],
    q: &PatientSearch,
    offset: i64,
    limit: i64,
) -> Result<(Vec<crate::patient::model::Patient>, i64), AppError> {
    use crate::db::schema::{
        patient_identifiers as pi, patient_organizations as po, patients as p,
    };
    use diesel::prelude::*;
    let starts = |s: &str| {
        let escaped = s
            .trim()
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}%")
    };
    let build = || {
        let mut b = p::table
            .filter(
                p::id.eq_any(
                    po::table
                        .filter(po::organization_id.eq_any(orgs.to_vec()))
                        .select(po::patient_id),
                ),
            )
            .into_boxed();
        if let Some(id) = q.id {
            b = b.filter(p::id.eq(id));
        }
        if let Some(f) = &q.family {
            b = b.filter(lower(p::name_family).like(starts(f)).escape('\\'));
        }
        if let Some(g) = &q.given {
            b = b.filter(lower(p::name_given).like(starts(g)).escape('\\'));
        }
        if let Some(n) = &q.name {
            b = b.filter(
                lower(p::name_family)
                    .like(starts(n))
                    .escape('\\')
                    .or(lower(p::name_given).like(starts(n)).escape('\\')),
            );
        }
        if let Some(d) = q.birth_date {
            b = b.filter(p::birth_date.eq(d));
        }
        if let Some((system, value)) = &q.identifier {
            let value = value.clone();
            b = match system {
                Some(sys) => b.filter(
                    p::id.eq_any(
                        pi::table
                            .filter(pi::system.eq(sys.clone()))
                            .filter(pi::value.eq(value))
                            .select(pi::patient_id),
                    ),
                ),
                None => b.filter(
                    p::id.eq_any(pi::table.filter(pi::value.eq(value)).select(pi::patient_id)),
                ),
            };
        }
        b
    };
    let total: i64 = build().count().get_result(conn)?;
    let rows = build()
        .select(crate::patient::model::Patient::as_select())
        .order((p::name_family, p::name_given, p::id))
        .offset(offset)
        .limit(limit)
        .load(conn)?;
    Ok((rows, total))
}
