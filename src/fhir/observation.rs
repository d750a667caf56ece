//! FHIR Observations: the resource as written out, search (paged by key), read, upload and
//! batch upload. The checks themselves are `observation::Uploader`'s.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use super::{
    bad, bundle, count_param, date_bounds, instant, link, narrow, ok, outcome, outcome_response,
    page_param, pairs, parse_id, ref_id, self_link, Fhir, CONTENT_TYPE, MAX_BATCH,
};
use crate::auth::{Bearer, CurrentUser};
use crate::error::AppError;
use crate::observation::repo::{Filter, Key, Order};
use crate::observation::{self as obs, Concept, Concepts, Observation, Refusal, Uploader, Wanted};
use crate::organization::Role;
use crate::startup::AppState;

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
    let (answer, event) = state
        .db
        .tx(move |conn| {
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
        })
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
