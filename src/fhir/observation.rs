//! FHIR Observations: the resource as written out, search (paged by key), read, upload and
//! batch upload. The checks themselves are `observation::Uploader`'s.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};

use super::{
    bad, bundle, count_param, date_bounds, instant, link, narrow, ok, outcome, outcome_response,
    page_param, pairs, parse_id, ref_id, self_link, Fhir, CONTENT_TYPE, MAX_BATCH,
};
use crate::auth::{Bearer, CurrentUser};
use crate::error::AppError;
use crate::observation::repo::{Filter, Key, Order};
use crate::observation::{self as obs, Concepts, Observation, Refusal, Uploader, Wanted};
use crate::organization::Role;
use crate::startup::AppState;

// ---------------------------------------------------------------------------------------
// Resources

/// Writes one Observation resource as JSON, by hand: an export writes a thousand a page,
/// and going through serde meant building each value (the base64 of the document among
/// them) as a String first and then scanning it again for characters to escape.
/// Text from the database goes through serde_json's escaping; times, numbers and base64
/// need none.
pub fn write_observation(out: &mut Vec<u8>, o: &Observation, concepts: &Concepts) {
    let (system, code, display) = match concepts.get(o.codeable_concept_id) {
        Some(c) => (c.system.as_str(), c.code.as_str(), c.text.as_str()),
        None => ("", "", ""),
    };
    out.extend_from_slice(b"{\"resourceType\":\"Observation\",\"id\":\"");
    push_int(out, o.id);
    out.extend_from_slice(b"\",\"meta\":{\"lastUpdated\":\"");
    out.extend_from_slice(instant(o.last_updated).as_bytes());
    out.extend_from_slice(b"\"},\"identifier\":[");
    if let (Some(s), Some(v)) = (&o.identifier_system, &o.identifier_value) {
        out.extend_from_slice(b"{\"system\":");
        push_str(out, s);
        out.extend_from_slice(b",\"value\":");
        push_str(out, v);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"status\":");
    push_str(out, &o.status);
    out.extend_from_slice(b",\"code\":{\"coding\":[{\"system\":");
    push_str(out, system);
    out.extend_from_slice(b",\"code\":");
    push_str(out, code);
    out.extend_from_slice(b",\"display\":");
    push_str(out, display);
    out.extend_from_slice(b"}]},");
    match o.effective_end {
        Some(end) => {
            out.extend_from_slice(b"\"effectivePeriod\":{\"start\":\"");
            out.extend_from_slice(instant(o.effective_start).as_bytes());
            out.extend_from_slice(b"\",\"end\":\"");
            out.extend_from_slice(instant(end).as_bytes());
            out.extend_from_slice(b"\"},");
        }
        None => {
            out.extend_from_slice(b"\"effectiveDateTime\":\"");
            out.extend_from_slice(instant(o.effective_start).as_bytes());
            out.extend_from_slice(b"\",");
        }
    }
    out.extend_from_slice(b"\"subject\":{\"reference\":\"Patient/");
    push_int(out, o.patient_id);
    out.extend_from_slice(b"\"},");
    if let Some(d) = o.data_source_id {
        out.extend_from_slice(b"\"device\":{\"reference\":\"Device/");
        push_int(out, d);
        out.extend_from_slice(b"\"},");
    }
    out.extend_from_slice(b"\"valueAttachment\":{\"contentType\":\"application/json\",\"data\":\"");
    // Straight into the output: base64's alphabet needs no escaping.
    let at = out.len();
    out.resize(
        at + base64::encoded_len(o.omh_data.len(), true).unwrap_or(0),
        0,
    );
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(o.omh_data.as_bytes(), &mut out[at..])
        .unwrap_or(0);
    out.truncate(at + written);
    out.extend_from_slice(b"\"}}");
}

/// A JSON string, escaped.
fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn push_int(out: &mut Vec<u8>, n: i64) {
    use std::io::Write;
    let _ = write!(out, "{n}");
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
        // Oldest first: every filter has an index in this order, so pages cost the same
        // however deep.
        order: Order::EffectiveAsc,
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

/// GET /FHIR/R5/Observation: a searchset Bundle. Pages after the first follow a key (the
/// `_cursor` of the next link), so each costs what the first did.
pub(super) async fn search(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<HttpResponse, Fhir> {
    let s = parse_observation_search(&pairs(&req))?;
    let (order, count, page, cursor) = (s.order, s.count, s.page, s.cursor);
    let st = state.clone();
    let (rows, total, concepts) = state
        .db
        .run(move |conn| {
            let concepts = st.concepts(conn)?;
            let mut wanted = s.wanted;
            if let Some(code) = &s.code {
                // A code this exchange does not know matches nothing.
                wanted.concept = Some(concepts.find(code).unwrap_or(-1));
            }
            let f: Filter = obs::visible_filter(conn, &user, &wanted)?;
            let total = match &cursor {
                Some((t, _)) => *t,
                None => obs::repo::count(conn, &f)?,
            };
            let rows = match &cursor {
                Some((_, key)) => obs::repo::page(conn, &f, order, Some(key), 0, count + 1)?,
                None => obs::repo::page(conn, &f, order, None, (page - 1) * count, count + 1)?,
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

pub(super) async fn read(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, Fhir> {
    let id = parse_id(&id, "Observation")?;
    let st = state.clone();
    let (o, concepts) = state
        .db
        .run(move |conn| {
            let missing = || AppError::NotFound(format!("Observation/{id} not found."));
            let o = obs::repo::find(conn, id)?.ok_or_else(missing)?;
            if user.patient_id != Some(o.patient_id) {
                crate::patient::authorize(conn, &user, o.patient_id, Role::Viewer).map_err(
                    |e| match e {
                        AppError::NotFound(_) => missing(),
                        other => other,
                    },
                )?;
            }
            Ok((o, st.concepts(conn)?))
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

/// An upload of more data points than this runs as a write of its own (`Db::tx_alone_if`).
const LARGE_UPLOAD: usize = 100;

/// Uploads `resources` as the token's holder: the token check, the upload checks and the
/// insert in one transaction. Each upload is one trip to the database writer, not two, and
/// the writer does no work that does not need the database: the data points are decoded and
/// validated before, and the request's JSON is freed after.
async fn upload(
    state: &web::Data<AppState>,
    caller: Bearer,
    resources: Vec<Value>,
) -> Result<(obs::Outcomes, std::sync::Arc<Concepts>), Fhir> {
    let resources = std::sync::Arc::new(resources);
    let decoded = if resources.len() > 1 {
        // A batch's decoding takes milliseconds: off the request's worker thread.
        let r = resources.clone();
        web::block(move || obs::decode(&r))
            .await
            .map_err(|e| Fhir(AppError::internal(format!("decoding the batch: {e}"))))?
    } else {
        obs::decode(&resources)
    };
    let st = state.clone();
    let held = resources.clone();
    let work = move |conn: &mut crate::db::DbConnection| {
        let (user, event) = match caller.authenticate(conn)? {
            Ok(found) => found,
            Err(refused) => return Ok((Err(refused), None)),
        };
        let refs: Vec<&Value> = held.iter().collect();
        let known = st.concepts(conn)?;
        let out = Uploader::new(conn, &user, known.clone(), decoded).upload(&refs)?;
        // An upload that stored something is audited with its token already; one that
        // stored nothing is still a use of the token.
        let event = (!out.iter().any(|o| o.is_ok())).then_some(event);
        Ok((Ok((out, known)), event))
    };
    let (answer, event) = state
        .db
        .tx_alone_if(resources.len() > LARGE_UPLOAD, work)
        .await?;
    drop(resources);
    if let Some(event) = event {
        state.audit_queue.push(event);
    }
    Ok(answer?)
}

pub(super) async fn create(
    state: web::Data<AppState>,
    caller: Bearer,
    body: web::Bytes,
) -> Result<HttpResponse, Fhir> {
    let resource = json_body(&body)?;
    let (mut outcomes, concepts) = upload(&state, caller, vec![resource]).await?;
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

pub(super) async fn batch(
    state: web::Data<AppState>,
    caller: Bearer,
    body: web::Bytes,
) -> Result<HttpResponse, Fhir> {
    let mut b = json_body(&body)?;
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
    // Entries and resources are moved out of the body, not copied.
    let entries = match b.get_mut("entry").map(Value::take) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    if entries.len() > MAX_BATCH {
        return Err(bad(format!(
            "A batch holds at most {MAX_BATCH} entries; this one has {}. Split it.",
            entries.len()
        )));
    }
    // Entries that are not Observation creates are answered without touching the database.
    let mut answers: Vec<Option<Value>> = vec![None; entries.len()];
    let mut uploads: Vec<(usize, Value)> = Vec::new();
    for (i, mut e) in entries.into_iter().enumerate() {
        let method = e
            .pointer("/request/method")
            .and_then(Value::as_str)
            .unwrap_or("POST");
        let url = e
            .pointer("/request/url")
            .and_then(Value::as_str)
            .unwrap_or("Observation");
        let create =
            method.eq_ignore_ascii_case("POST") && url.trim_start_matches('/') == "Observation";
        match e.get_mut("resource").map(Value::take) {
            Some(r) if create => {
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
    let (positions, resources): (Vec<usize>, Vec<Value>) = uploads.into_iter().unzip();
    let (outcomes, _) = upload(&state, caller, resources).await?;
    let answered = positions.into_iter().zip(outcomes);
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
