//! /FHIR/R5: the capability statement, and what every FHIR handler shares: errors as
//! OperationOutcomes, search parameters, absolute links and searchset Bundles. Observations
//! (search, read, upload, batch) are in `observation`; the resources they point at (Patient,
//! Group for a study, Device for a data source, Organization) in `resources`.

pub mod observation;
pub mod resources;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use chrono::{NaiveDate, NaiveDateTime, SecondsFormat};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::AppError;
use crate::startup::AppState;

pub use observation::write_observation;

pub const CONTENT_TYPE: &str = "application/fhir+json";
/// Largest body a batch may send.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Most entries in one batch Bundle.
pub const MAX_BATCH: usize = 5000;
pub const MAX_COUNT: i64 = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY))
        .route("", web::post().to(observation::batch))
        .route("/", web::post().to(observation::batch))
        .route("/metadata", web::get().to(metadata))
        .route("/Observation", web::get().to(observation::search))
        .route("/Observation", web::post().to(observation::create))
        .route("/Observation/{id}", web::get().to(observation::read))
        .route("/Patient", web::get().to(resources::search_patients))
        .route("/Patient/{id}", web::get().to(resources::read_patient))
        .route("/Group/{id}", web::get().to(resources::read_group))
        .route("/Device/{id}", web::get().to(resources::read_device))
        .route(
            "/Organization/{id}",
            web::get().to(resources::read_organization),
        )
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

pub(crate) fn outcome_response(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(CONTENT_TYPE)
        .json(outcome(message))
}

pub(crate) fn bad(message: impl Into<String>) -> Fhir {
    Fhir(AppError::BadRequest(message.into()))
}

pub(crate) fn ok(body: &impl Serialize) -> HttpResponse {
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

/// A UTC time as FHIR writes an instant: `2026-01-01T08:00:00+00:00`, with as many decimals
/// as the time has (none, 3, 6 or 9), exactly as chrono's RFC 3339 form. Written digit by
/// digit: an export writes three of these per observation, and chrono's formatter was a
/// twentieth of the export's time.
pub fn instant(t: NaiveDateTime) -> String {
    match crate::db::time::digits(t, 'T') {
        Some(mut s) => {
            s.push_str("+00:00");
            s
        }
        // Years outside four digits and leap seconds: chrono knows their forms.
        None => t.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, false),
    }
}

pub(crate) fn parse_id(s: &str, kind: &str) -> Result<i64, Fhir> {
    s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        Fhir(AppError::NotFound(format!(
            "{kind}/{s} not found: ids are whole numbers."
        )))
    })
}

// ---------------------------------------------------------------------------------------
// Search parameters

/// The query string as pairs, keys kept as sent (FHIR keys hold dots and colons).
pub(crate) fn pairs(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A date or date-time search value with its prefix, as a half-open range [from, to).
pub(crate) fn date_bounds(
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

pub(crate) fn narrow(slot: &mut Option<NaiveDateTime>, v: Option<NaiveDateTime>, later: bool) {
    if let Some(v) = v {
        *slot = Some(match *slot {
            Some(cur) if later => cur.max(v),
            Some(cur) => cur.min(v),
            None => v,
        });
    }
}

pub(crate) fn count_param(v: &str) -> Result<i64, Fhir> {
    v.parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_COUNT).contains(n))
        .ok_or_else(|| {
            bad(format!(
                "_count must be a whole number from 1 to {MAX_COUNT}."
            ))
        })
}

pub(crate) fn page_param(v: &str) -> Result<i64, Fhir> {
    v.parse::<i64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| bad("_page must be a whole number from 1."))
}

pub(crate) fn ref_id(v: &str, kind: &str, name: &str) -> Result<i64, Fhir> {
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

/// An absolute link to this search with some parameters replaced.
pub(crate) fn link(state: &AppState, req: &HttpRequest, set: &[(&str, String)]) -> String {
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

pub(crate) fn self_link(state: &AppState, req: &HttpRequest) -> String {
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
pub(crate) fn bundle<T>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_read_as_chrono_writes_them() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 2).expect("a real date");
        let at = |y, m, d, h| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .and_then(|d| d.and_hms_opt(h, 59, 59))
                .expect("a real time")
        };
        let mut times = vec![
            at(1, 1, 1, 0),
            at(9999, 12, 31, 23),
            // Years chrono writes itself.
            at(-44, 3, 15, 12),
            at(12026, 3, 15, 12),
            // A leap second.
            day.and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                .expect("chrono's leap second"),
        ];
        for nanos in [
            0,
            1,
            999,
            1_000,
            120_000,
            5_000_000,
            123_456_789,
            999_999_999,
        ] {
            times.push(day.and_hms_nano_opt(8, 5, 9, nanos).expect("a real time"));
        }
        for t in times {
            assert_eq!(
                instant(t),
                t.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, false),
                "{t:?}"
            );
        }
    }
}
