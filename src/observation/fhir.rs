//! /FHIR/R5: the capability statement, Observation search, read and upload (one by one or in
//! a batch Bundle), and reads of the resources observations point at: Patient, Group (a
//! study), Device (a data source) and Organization. Errors are OperationOutcomes.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use base64::Engine;
use chrono::{NaiveDate, NaiveDateTime, SecondsFormat};
use serde::Serialize;
use serde_json::{json, Value};

use super::repo::{Filter, Key, Order};
use super::{Concept, Observation, Refusal, Uploader, Wanted};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::organization::Role;
use crate::startup::AppState;

pub const CONTENT_TYPE: &str = "application/fhir+json";
/// Largest body a batch may send.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Most entries in one batch Bundle.
pub const MAX_BATCH: usize = 5000;
pub const MAX_COUNT: i64 = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .route("", web::post().to(batch))
        .route("/", web::post().to(batch))
        .route("/metadata", web::get().to(metadata))
        .route("/Observation", web::get().to(search_observations))
        .route("/Observation", web::post().to(create_observation))
        .route("/Observation/{id}", web::get().to(read_observation))
        .route("/Patient", web::get().to(search_patients))
        .route("/Patient/{id}", web::get().to(read_patient))
        .route("/Group/{id}", web::get().to(read_group))
        .route("/Device/{id}", web::get().to(read_device))
        .route("/Organization/{id}", web::get().to(read_organization))
        .default_service(web::to(not_found));
}

/// An error as FHIR clients expect it: an OperationOutcome with the status.
#[derive(Debug)]
pub struct Fhir(pub AppError);

impl From<AppError> for Fhir {
    fn from(e: AppError) -> Fhir {
        Fhir(e)
    }
}

impl std::fmt::Display for Fhir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.user_message())
    }
}

impl ResponseError for Fhir {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        match &self.0 {
            AppError::Unauthenticated(_) | AppError::Internal(_) => self.0.error_response(),
            other => outcome_response(other.status_code(), &other.user_message()),
        }
    }
}

pub fn outcome(message: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": message}]
    })
}

fn outcome_response(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(CONTENT_TYPE)
        .json(outcome(message))
}

fn bad(message: impl Into<String>) -> Fhir {
    Fhir(AppError::BadRequest(message.into()))
}

fn ok(body: &impl Serialize) -> HttpResponse {
    HttpResponse::Ok().content_type(CONTENT_TYPE).json(body)
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    outcome_response(
        StatusCode::NOT_FOUND,
        &format!(
            "{} {} is not part of this FHIR server; GET /FHIR/R5/metadata lists what is.",
            req.method(),
            req.path()
        ),
    )
}

pub fn instant(t: NaiveDateTime) -> String {
    t.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn parse_id(s: &str, kind: &str) -> Result<i64, Fhir> {
    s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        Fhir(AppError::NotFound(format!(
            "{kind}/{s} not found: ids are whole numbers."
        )))
    })
}

// ---------------------------------------------------------------------------------------
// Resources

#[derive(Serialize)]
struct Reference {
    reference: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    last_updated: String,
}

#[derive(Serialize)]
struct Coding<'a> {
    system: &'a str,
    code: &'a str,
    display: &'a str,
}

#[derive(Serialize)]
struct Code<'a> {
    coding: [Coding<'a>; 1],
}

#[derive(Serialize)]
struct Identifier<'a> {
    system: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct Period {
    start: String,
    end: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Attachment {
    content_type: &'static str,
    data: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObservationResource<'a> {
    resource_type: &'static str,
    id: String,
    meta: Meta,
    identifier: Vec<Identifier<'a>>,
    status: &'a str,
    code: Code<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_period: Option<Period>,
    subject: Reference,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<Reference>,
    value_attachment: Attachment,
}

/// Data types by id, for naming codings.
pub struct Concepts(HashMap<i64, Concept>);

impl Concepts {
    pub fn new(all: Vec<Concept>) -> Concepts {
        Concepts(all.into_iter().map(|c| (c.id, c)).collect())
    }

    pub fn get(&self, id: i64) -> Option<&Concept> {
        self.0.get(&id)
    }

    /// `system|code` or a bare code → the data type's id; None when unknown.
    pub fn find(&self, token: &str) -> Option<i64> {
        let (system, code) = match token.split_once('|') {
            Some((s, c)) => (Some(s), c),
            None => (None, token),
        };
        self.0
            .values()
            .find(|c| c.code == code && system.is_none_or(|s| s.is_empty() || s == c.system))
            .map(|c| c.id)
    }
}

/// Writes one Observation resource as JSON.
pub fn write_observation(out: &mut Vec<u8>, o: &Observation, concepts: &Concepts) {
    let unknown = Concept {
        id: o.codeable_concept_id,
        system: String::new(),
        code: String::new(),
        text: String::new(),
    };
    let c = concepts.get(o.codeable_concept_id).unwrap_or(&unknown);
    let (effective_date_time, effective_period) = match o.effective_end {
        Some(end) => (
            None,
            Some(Period {
                start: instant(o.effective_start),
                end: instant(end),
            }),
        ),
        None => (Some(instant(o.effective_start)), None),
    };
    let r = ObservationResource {
        resource_type: "Observation",
        id: o.id.to_string(),
        meta: Meta {
            last_updated: instant(o.last_updated),
        },
        identifier: match (&o.identifier_system, &o.identifier_value) {
            (Some(s), Some(v)) => vec![Identifier {
                system: s,
                value: v,
            }],
            _ => Vec::new(),
        },
        status: &o.status,
        code: Code {
            coding: [Coding {
                system: &c.system,
                code: &c.code,
                display: &c.text,
            }],
        },
        effective_date_time,
        effective_period,
        subject: Reference {
            reference: format!("Patient/{}", o.patient_id),
        },
        device: o.data_source_id.map(|d| Reference {
            reference: format!("Device/{d}"),
        }),
        value_attachment: Attachment {
            content_type: "application/json",
            data: base64::engine::general_purpose::STANDARD.encode(o.omh_data.as_bytes()),
        },
    };
    // Serializing plain structs into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &r);
}

// ---------------------------------------------------------------------------------------
// Search parameters

/// The query string as pairs, keys kept as sent (FHIR keys hold dots and colons).
fn pairs(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A date or date-time search value with its prefix, as a half-open range [from, to).
fn date_bounds(
    name: &str,
    raw: &str,
) -> Result<(Option<NaiveDateTime>, Option<NaiveDateTime>), Fhir> {
    let (prefix, value) = match raw.get(..2) {
        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &raw[2..]),
        Some("ne" | "sa" | "eb" | "ap") => {
            return Err(bad(format!(
                "{name}: the prefix {} is not supported; use eq, ge, gt, le or lt.",
                &raw[..2]
            )))
        }
        _ => ("eq", raw),
    };
    // The range the value names: a whole day for a date, one instant for a date-time.
    let (start, end) = if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let s = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        (s, s + chrono::Duration::days(1))
    } else if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        let t = t.naive_utc();
        (t, t + chrono::Duration::microseconds(1))
    } else {
        return Err(bad(format!(
            "{name}: \"{value}\" is not a date (YYYY-MM-DD) or a date-time with an offset (2025-01-31T08:00:00Z)."
        )));
    };
    Ok(match prefix {
        "ge" => (Some(start), None),
        "gt" => (Some(end), None),
        "le" => (None, Some(end)),
        "lt" => (None, Some(start)),
        _ => (Some(start), Some(end)),
    })
}

fn narrow(slot: &mut Option<NaiveDateTime>, v: Option<NaiveDateTime>, later: bool) {
    if let Some(v) = v {
        *slot = Some(match *slot {
            Some(cur) if later => cur.max(v),
            Some(cur) => cur.min(v),
            None => v,
        });
    }
}

fn count_param(v: &str) -> Result<i64, Fhir> {
    v.parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_COUNT).contains(n))
        .ok_or_else(|| {
            bad(format!(
                "_count must be a whole number from 1 to {MAX_COUNT}."
            ))
        })
}

fn page_param(v: &str) -> Result<i64, Fhir> {
    v.parse::<i64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| bad("_page must be a whole number from 1."))
}

fn ref_id(v: &str, kind: &str, name: &str) -> Result<i64, Fhir> {
    let bare = v
        .strip_prefix(kind)
        .and_then(|s| s.strip_prefix('/'))
        .unwrap_or(v);
    bare.parse::<i64>().ok().ok_or_else(|| {
        bad(format!(
            "{name} must be a {kind} id (a whole number) or {kind}/<id>; got \"{v}\"."
        ))
    })
}

/// Observation search as asked.
struct ObservationSearch {
    wanted: Wanted,
    code: Option<String>,
    order: Order,
    count: i64,
    page: i64,
    cursor: Option<(i64, Key)>,
}

fn parse_observation_search(params: &[(String, String)]) -> Result<ObservationSearch, Fhir> {
    let mut s = ObservationSearch {
        wanted: Wanted::default(),
        code: None,
        order: Order::IdAsc,
        count: 20,
        page: 1,
        cursor: None,
    };
    let mut cursor = None;
    for (k, v) in params {
        match k.as_str() {
            "patient" | "subject" => s.wanted.patient = Some(ref_id(v, "Patient", k)?),
            "patient._has:Group:member:_id" => s.wanted.study = Some(ref_id(v, "Group", k)?),
            "patient.organization" => s.wanted.organization = Some(ref_id(v, "Organization", k)?),
            "code" => s.code = Some(v.clone()),
            "date" => {
                let (from, to) = date_bounds(k, v)?;
                narrow(&mut s.wanted.from, from, true);
                narrow(&mut s.wanted.to, to, false);
            }
            "_lastUpdated" => {
                let (from, to) = date_bounds(k, v)?;
                narrow(&mut s.wanted.updated_from, from, true);
                narrow(&mut s.wanted.updated_to, to, false);
            }
            "_sort" => {
                s.order = match v.as_str() {
                    "date" => Order::EffectiveAsc,
                    "-date" => Order::EffectiveDesc,
                    "_lastUpdated" => Order::UpdatedAsc,
                    "-_lastUpdated" => Order::UpdatedDesc,
                    "_id" => Order::IdAsc,
                    other => {
                        return Err(bad(format!(
                            "_sort \"{other}\" is not supported; use date, -date, _lastUpdated, -_lastUpdated or _id."
                        )))
                    }
                }
            }
            "_count" => s.count = count_param(v)?,
            "_page" => s.page = page_param(v)?,
            "_cursor" => cursor = Some(v.clone()),
            "_format" | "_total" => {}
            k if k.starts_with("_source") => {}
            other => {
                return Err(bad(format!(
                    "Unknown search parameter \"{other}\" for Observation. Use patient, patient._has:Group:member:_id, patient.organization, code, date, _lastUpdated, _sort, _count or _page."
                )))
            }
        }
    }
    if let Some(c) = cursor {
        let parsed = c
            .split_once('~')
            .and_then(|(t, k)| Some((t.parse::<i64>().ok()?, Key::decode(k, s.order)?)));
        s.cursor = Some(parsed.ok_or_else(|| {
            bad("_cursor is not one this server made; follow the bundle's next link as given.")
        })?);
    }
    Ok(s)
}

/// An absolute link to this search with some parameters replaced.
fn link(state: &AppState, req: &HttpRequest, set: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        if !set.iter().any(|(name, _)| *name == k) && k != "_cursor" {
            s.append_pair(&k, &v);
        }
    }
    for (k, v) in set {
        s.append_pair(k, v);
    }
    format!("{}{}?{}", state.config.public_url, req.path(), s.finish())
}

fn self_link(state: &AppState, req: &HttpRequest) -> String {
    if req.query_string().is_empty() {
        format!("{}{}", state.config.public_url, req.path())
    } else {
        format!(
            "{}{}?{}",
            state.config.public_url,
            req.path(),
            req.query_string()
        )
    }
}

/// Writes a searchset Bundle around entries written by `entry`.
fn bundle<T>(
    total: Option<i64>,
    links: &[(&str, String)],
    items: &[T],
    mut entry: impl FnMut(&mut Vec<u8>, &T),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + items.len() * 900);
    out.extend_from_slice(b"{\"resourceType\":\"Bundle\",\"type\":\"searchset\"");
    if let Some(t) = total {
        out.extend_from_slice(format!(",\"total\":{t}").as_bytes());
    }
    out.extend_from_slice(b",\"link\":[");
    for (i, (rel, url)) in links.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &json!({"relation": rel, "url": url}));
    }
    out.extend_from_slice(b"],\"entry\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"resource\":");
        entry(&mut out, item);
        out.extend_from_slice(b"}");
    }
    out.extend_from_slice(b"]}");
    out
}

// ---------------------------------------------------------------------------------------
// Handlers

async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let search = |params: &[(&str, &str)]| -> Vec<Value> {
        params
            .iter()
            .map(|(n, t)| json!({"name": n, "type": t}))
            .collect()
    };
    let read = |t: &str| json!({"type": t, "interaction": [{"code": "read"}]});
    ok(&json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-21",
        "kind": "instance",
        "software": {"name": "Cohort", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Cohort FHIR R5", "url": format!("{}/FHIR/R5", state.config.public_url)},
        "fhirVersion": "5.0.0",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": {"description": "Send Authorization: Bearer <token>; tokens are made on the Profile page."},
            "resource": [
                {
                    "type": "Observation",
                    "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}],
                    "searchParam": search(&[
                        ("patient", "reference"),
                        ("patient._has:Group:member:_id", "token"),
                        ("patient.organization", "reference"),
                        ("code", "token"),
                        ("date", "date"),
                        ("_lastUpdated", "date"),
                    ]),
                },
                {
                    "type": "Patient",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "searchParam": search(&[
                        ("family", "string"),
                        ("given", "string"),
                        ("name", "string"),
                        ("birthdate", "date"),
                        ("identifier", "token"),
                        ("organization", "reference"),
                    ]),
                },
                read("Group"),
                read("Organization"),
                read("Device"),
            ],
            "interaction": [{"code": "batch"}],
        }],
    }))
}

async fn search_observations(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<HttpResponse, Fhir> {
    let s = parse_observation_search(&pairs(&req))?;
    let (order, count, page, cursor) = (s.order, s.count, s.page, s.cursor);
    let (rows, total, concepts) = state
        .db
        .run(move |conn| {
            let concepts = Concepts::new(super::concepts(conn)?);
            let mut wanted = s.wanted;
            if let Some(code) = &s.code {
                // A code this exchange does not know matches nothing.
                wanted.concept = Some(concepts.find(code).unwrap_or(-1));
            }
            let f: Filter = super::visible_filter(conn, &user, &wanted)?;
            let total = match &cursor {
                Some((t, _)) => *t,
                None => super::repo::count(conn, &f)?,
            };
            let rows = match &cursor {
                Some((_, key)) => super::repo::page(conn, &f, order, Some(key), 0, count + 1)?,
                None => super::repo::page(conn, &f, order, None, (page - 1) * count, count + 1)?,
            };
            Ok((rows, total, concepts))
        })
        .await?;
    let more = rows.len() as i64 > count;
    let rows = &rows[..rows.len().min(count as usize)];
    let mut links = vec![("self", self_link(&state, &req))];
    if more {
        if let Some(last) = rows.last() {
            let key = order.key_of(last).encode();
            links.push((
                "next",
                link(
                    &state,
                    &req,
                    &[
                        ("_page", (page + 1).to_string()),
                        ("_cursor", format!("{total}~{key}")),
                    ],
                ),
            ));
        }
    }
    if page > 1 {
        links.push((
            "previous",
            link(&state, &req, &[("_page", (page - 1).to_string())]),
        ));
    }
    let body = bundle(Some(total), &links, rows, |out, o| {
        write_observation(out, o, &concepts)
    });
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}

async fn read_observation(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, Fhir> {
    let id = parse_id(&id, "Observation")?;
    let (o, concepts) = state
        .db
        .run(move |conn| {
            let missing = || AppError::NotFound(format!("Observation/{id} not found."));
            let o = super::repo::find(conn, id)?.ok_or_else(missing)?;
            let f = super::visible_filter(
                conn,
                &user,
                &Wanted {
                    patient: Some(o.patient_id),
                    ..Wanted::default()
                },
            )
            .map_err(|e| match e {
                AppError::NotFound(_) => missing(),
                other => other,
            });
            f?;
            Ok((o, Concepts::new(super::concepts(conn)?)))
        })
        .await?;
    let mut body = Vec::with_capacity(1024);
    write_observation(&mut body, &o, &concepts);
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}

/// Reads a JSON body whatever its content type claims (FHIR clients send application/fhir+json).
fn json_body(body: &[u8]) -> Result<Value, Fhir> {
    serde_json::from_slice(body).map_err(|e| bad(format!("The body is not JSON: {e}.")))
}

fn refusal_status(r: &Refusal) -> StatusCode {
    StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST)
}

async fn create_observation(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: web::Bytes,
) -> Result<HttpResponse, Fhir> {
    let resource = json_body(&body)?;
    let (mut outcomes, concepts) = state
        .db
        .tx(move |conn| {
            let out = Uploader::new(conn, &user)?.upload(&[&resource])?;
            Ok((out, Concepts::new(super::concepts(conn)?)))
        })
        .await?;
    match outcomes.pop() {
        Some(Ok(o)) => {
            let mut body = Vec::with_capacity(1024);
            write_observation(&mut body, &o, &concepts);
            Ok(HttpResponse::Created()
                .content_type(CONTENT_TYPE)
                .insert_header((
                    "Location",
                    format!("{}/FHIR/R5/Observation/{}", state.config.public_url, o.id),
                ))
                .body(body))
        }
        Some(Err(r)) => Ok(outcome_response(refusal_status(&r), &r.message)),
        None => Err(Fhir(AppError::internal("upload gave no outcome"))),
    }
}

async fn batch(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: web::Bytes,
) -> Result<HttpResponse, Fhir> {
    let b = json_body(&body)?;
    if b.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(bad(
            "POST /FHIR/R5 takes a Bundle: resourceType must be \"Bundle\".",
        ));
    }
    if b.get("type").and_then(Value::as_str) != Some("batch") {
        return Err(bad(
            "The Bundle's type must be \"batch\" (transactions are not supported).",
        ));
    }
    let entries = b
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if entries.len() > MAX_BATCH {
        return Err(bad(format!(
            "A batch holds at most {MAX_BATCH} entries; this one has {}. Split it.",
            entries.len()
        )));
    }
    // Entries that are not Observation creates are answered without touching the database.
    let mut answers: Vec<Option<Value>> = vec![None; entries.len()];
    let mut uploads: Vec<(usize, Value)> = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let method = e
            .pointer("/request/method")
            .and_then(Value::as_str)
            .unwrap_or("POST");
        let url = e
            .pointer("/request/url")
            .and_then(Value::as_str)
            .unwrap_or("Observation");
        let resource = e.get("resource").cloned();
        match resource {
            Some(r) if method.eq_ignore_ascii_case("POST") && url.trim_start_matches('/') == "Observation" => {
                uploads.push((i, r))
            }
            _ => {
                answers[i] = Some(refused(&Refusal {
                    status: 400,
                    message: "Each batch entry must be {\"resource\": <Observation>, \"request\": {\"method\": \"POST\", \"url\": \"Observation\"}}.".into(),
                }))
            }
        }
    }
    let public = state.config.public_url.clone();
    let answered = state
        .db
        .tx(move |conn| {
            let refs: Vec<&Value> = uploads.iter().map(|(_, r)| r).collect();
            let out = Uploader::new(conn, &user)?.upload(&refs)?;
            Ok(uploads
                .into_iter()
                .map(|(i, _)| i)
                .zip(out)
                .collect::<Vec<_>>())
        })
        .await?;
    for (i, o) in answered {
        answers[i] = Some(match o {
            Ok(o) => json!({
                "response": {
                    "status": "201 Created",
                    "location": format!("{public}/FHIR/R5/Observation/{}", o.id),
                    "lastModified": instant(o.last_updated),
                }
            }),
            Err(r) => refused(&r),
        });
    }
    Ok(ok(&json!({
        "resourceType": "Bundle",
        "type": "batch-response",
        "entry": answers.into_iter().map(|a| a.unwrap_or(Value::Null)).collect::<Vec<_>>(),
    })))
}

fn refused(r: &Refusal) -> Value {
    let status = refusal_status(r);
    json!({
        "response": {
            "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")),
            "outcome": outcome(&r.message),
        }
    })
}

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
        r["birthDate"] = json!(d.format("%Y-%m-%d").to_string());
    }
    r
}

async fn read_patient(
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

async fn search_patients(
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

async fn read_group(
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

async fn read_device(
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

async fn read_organization(
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
