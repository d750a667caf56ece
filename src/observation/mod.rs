//! Observations: Open mHealth data points that patients' devices upload, as FHIR R5
//! Observation resources. Who may see which (the access filter of every list), and the upload
//! checks, in the order the compatibility page gives, each with its status and message.

pub mod api;
pub mod chart;
pub mod model;
pub mod omh;
pub mod pages;
pub mod repo;

use std::collections::{HashMap, HashSet};

use base64::Engine;
use serde_json::Value;

pub use model::{NewObservation, Observation};

use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::AppError;
use crate::organization::{self, Role};
use crate::util::now;

/// A data type as the exchange knows it.
#[derive(Clone, Debug)]
pub struct Concept {
    pub id: i64,
    pub system: String,
    pub code: String,
    pub text: String,
}

/// Every data type, by id and in id order.
pub struct Concepts {
    all: Vec<Concept>,
    by_id: HashMap<i64, usize>,
}

impl Concepts {
    pub fn new(all: Vec<Concept>) -> Concepts {
        let by_id = all.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
        Concepts { all, by_id }
    }

    pub fn all(&self) -> &[Concept] {
        &self.all
    }

    pub fn get(&self, id: i64) -> Option<&Concept> {
        self.by_id.get(&id).map(|i| &self.all[*i])
    }

    /// `system|code` or a bare code → the data type's id; None when unknown.
    pub fn find(&self, token: &str) -> Option<i64> {
        let (system, code) = match token.split_once('|') {
            Some((s, c)) => (Some(s), c),
            None => (None, token),
        };
        self.all
            .iter()
            .find(|c| c.code == code && system.is_none_or(|s| s.is_empty() || s == c.system))
            .map(|c| c.id)
    }
}

pub fn concepts(conn: &mut DbConnection) -> Result<Vec<Concept>, AppError> {
    Ok(repo::concepts(conn)?
        .into_iter()
        .map(|(id, system, code, text)| Concept {
            id,
            system,
            code,
            text,
        })
        .collect())
}

/// What a caller asked to see, before access is checked.
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    pub organization: Option<i64>,
    pub study: Option<i64>,
    pub patient: Option<i64>,
    pub concept: Option<i64>,
    pub from: Option<chrono::NaiveDateTime>,
    pub to: Option<chrono::NaiveDateTime>,
    pub updated_from: Option<chrono::NaiveDateTime>,
    pub updated_to: Option<chrono::NaiveDateTime>,
}

/// Turns what was asked into a filter the caller may see: observations of patients who share
/// an organization with them. A named organization, study or patient the caller cannot see is
/// reported as missing.
pub fn visible_filter(
    conn: &mut DbConnection,
    user: &CurrentUser,
    w: &Wanted,
) -> Result<repo::Filter, AppError> {
    let mut f = repo::Filter {
        orgs: None,
        study: w.study,
        patient: w.patient,
        patients: None,
        concept: w.concept,
        from: w.from,
        to: w.to,
        updated_from: w.updated_from,
        updated_to: w.updated_to,
    };
    if let Some(org) = w.organization {
        organization::authorize(conn, user, org, Role::Viewer)?;
        f.orgs = Some(vec![org]);
    }
    if let Some(s) = w.study {
        let (study, _) = crate::study::authorize(conn, user, s, Role::Viewer)?;
        if w.organization.is_some_and(|o| o != study.organization_id) {
            // The study's patients are all in its own organization: nothing matches.
            f.orgs = Some(Vec::new());
        }
    }
    if let Some(p) = w.patient.filter(|p| user.patient_id != Some(*p)) {
        crate::patient::authorize(conn, user, p, Role::Viewer)?;
    }
    // Nothing named: everything the caller may see.
    if w.organization.is_none() && w.study.is_none() && w.patient.is_none() {
        if let Some(own) = user.patient_id.filter(|_| user.practitioner_id.is_none()) {
            f.patient = Some(own);
        } else if !user.is_superuser() {
            f.orgs = Some(organization::visible(conn, user)?.1.into_keys().collect());
        }
    }
    Ok(f)
}

/// Why one uploaded observation was refused: the HTTP status and a message that says what to fix.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// `"<Type>/<id>"` → id.
fn reference(v: &Value, field: &str, kind: &str) -> Result<i64, Refusal> {
    let r = v
        .get(field)
        .and_then(|s| s.get("reference"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            refuse(
                400,
                format!("{field}.reference is required: give it as \"{kind}/<id>\"."),
            )
        })?;
    r.strip_prefix(kind)
        .and_then(|s| s.strip_prefix('/'))
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            refuse(
                400,
                format!("{field}.reference must look like \"{kind}/<id>\" with a whole-number id; got \"{r}\"."),
            )
        })
}

/// The system under which an upload without an identifier is known by its OMH header uuid.
pub const UUID_SYSTEM: &str = "urn:ietf:rfc:3986";

/// Checks and stores uploads for one caller. Everything the checks need about the batch's
/// patients, devices and identifiers is looked up first, in a few queries; the checks
/// themselves then touch no database.
pub struct Uploader<'a> {
    conn: &'a mut DbConnection,
    user: &'a CurrentUser,
    concepts: std::sync::Arc<Concepts>,
    /// Subject → may the caller upload for it (absent: the caller's own patient record).
    patients: HashMap<i64, Result<(), Refusal>>,
    devices: HashSet<i64>,
    /// (patient, data type) → studies where the patient consented: (name, status).
    consenting: HashMap<(i64, i64), Vec<(String, String)>>,
    taken: HashMap<(String, String), i64>,
    seen: HashSet<(String, String)>,
    /// Data points decoded before the upload reached the database, by resource position.
    decoded: Vec<Option<Decoded>>,
}

/// A data point decoded and validated ahead of the database checks (steps 7 and 8 need
/// nothing from the database): the code it was validated as, and the outcome.
pub struct Decoded {
    code: String,
    outcome: Result<(String, omh::Checked), Refusal>,
}

/// Below this many resources a batch is decoded on one thread.
const DECODE_SPLIT: usize = 200;

/// Decodes and validates each resource's data point as the data type its one coding names,
/// on every core for a large batch. An entry the checks will refuse before step 7 is decoded
/// for nothing, but decoding here keeps the one database writer free of this work.
pub fn decode(resources: &[Value]) -> Vec<Option<Decoded>> {
    let one = |r: &Value| {
        let code = match r.pointer("/code/coding").and_then(Value::as_array) {
            Some(codings) if codings.len() == 1 => codings[0].get("code")?.as_str()?,
            _ => return None,
        };
        Some(Decoded {
            code: code.to_string(),
            outcome: data_point(r, code),
        })
    };
    // The size first: a single upload never asks for the core count.
    if resources.len() < DECODE_SPLIT || cores() < 2 {
        return resources.iter().map(one).collect();
    }
    let threads = cores();
    let per = resources.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = resources
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The cores this process may use, read once: the standard library reads the cgroup's CPU
/// quota from /proc and /sys on every call (three files opened).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Steps 7 and 8: the attachment's base64 JSON, and its OMH validity as `code`.
fn data_point(r: &Value, code: &str) -> Result<(String, omh::Checked), Refusal> {
    let (text, doc) = attachment(r)?;
    let point = omh::validate(code, &doc)
        .map_err(|e| refuse(422, format!("The data point is not valid {code}: {e}.")))?;
    Ok((text, point))
}

/// The outcome of each entry of an upload, in order: the new observation or the refusal.
pub type Outcomes = Vec<Result<Observation, Refusal>>;

impl<'a> Uploader<'a> {
    /// `decoded` is what `decode` made of the resources about to be uploaded (or nothing:
    /// then each is decoded as it is checked).
    pub fn new(
        conn: &'a mut DbConnection,
        user: &'a CurrentUser,
        concepts: std::sync::Arc<Concepts>,
        decoded: Vec<Option<Decoded>>,
    ) -> Self {
        Uploader {
            conn,
            user,
            concepts,
            patients: HashMap::new(),
            devices: HashSet::new(),
            consenting: HashMap::new(),
            taken: HashMap::new(),
            seen: HashSet::new(),
            decoded,
        }
    }

    /// Checks every resource, stores the good ones in one go, and says what became of each.
    pub fn upload(mut self, resources: &[&Value]) -> Result<Outcomes, AppError> {
        self.prefetch(resources)?;
        let mut checked: Vec<Result<NewObservation, Refusal>> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| self.check(i, r))
            .collect();
        // Identifiers made from the data points' uuids: one look for those already stored.
        let derived: Vec<(String, String)> = checked
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .filter(|n| n.identifier_system == UUID_SYSTEM)
            .map(|n| (n.identifier_system.clone(), n.identifier_value.clone()))
            .collect();
        if !derived.is_empty() {
            let stored = repo::identifiers_used(self.conn, &derived)?;
            for c in checked.iter_mut() {
                let taken = match c {
                    Ok(n) => stored
                        .get(&(n.identifier_system.clone(), n.identifier_value.clone()))
                        .map(|id| (n.identifier_system.clone(), n.identifier_value.clone(), *id)),
                    Err(_) => None,
                };
                if let Some((s, v, id)) = taken {
                    *c = Err(used(&s, &v, id));
                }
            }
        }
        let good: Vec<&NewObservation> = checked.iter().filter_map(|c| c.as_ref().ok()).collect();
        // A batch touches seven indexes per row: keep their pages in memory until the commit
        // rather than spill them to the WAL and read them back.
        let cache = if good.len() > 100 { 65_536 } else { 0 };
        let made = crate::db::with_sqlite_cache(self.conn, cache, |c| repo::insert_many(c, &good))?;
        let mut out = Vec::with_capacity(checked.len());
        let mut ids = Vec::new();
        for c in checked {
            out.push(match c {
                Err(e) => Err(e),
                Ok(n) => {
                    let key = (n.identifier_system.clone(), n.identifier_value.clone());
                    match made.get(&key) {
                        Some(id) => {
                            ids.push(*id);
                            Ok(stored(*id, n))
                        }
                        None => Err(refuse(
                            409,
                            format!(
                                "An observation with identifier {}|{} already exists; each upload needs its own identifier.",
                                key.0, key.1
                            ),
                        )),
                    }
                }
            });
        }
        if !ids.is_empty() {
            // The token, when one was used, is named here: this event stands for the
            // request's token use too (see fhir::observation::upload).
            let mut a = Audit::by(self.user, "observation.create");
            if ids.len() == 1 {
                a = a.object("observation", ids[0]);
            }
            a.detail(serde_json::json!({
                "count": ids.len(),
                "first": ids.iter().min(),
                "last": ids.iter().max(),
                "api_token": self.user.token_id,
            }))
            .record(self.conn)?;
        }
        Ok(out)
    }

    /// The checks, in the documented order.
    fn check(&mut self, i: usize, r: &Value) -> Result<NewObservation, Refusal> {
        if r.get("resourceType").and_then(Value::as_str) != Some("Observation") {
            return Err(refuse(400, "resourceType must be \"Observation\"."));
        }
        // 1. subject, 2. access
        let patient_id = reference(r, "subject", "Patient")?;
        self.may_upload_for(patient_id)?;
        // 3. device
        let device = reference(r, "device", "Device")?;
        if !self.devices.contains(&device) {
            return Err(refuse(
                404,
                format!("Device/{device} not found: register the data source first (GET /FHIR/R5/Device/<id> shows one)."),
            ));
        }
        // 4. identifier already used
        let given = identifier(r);
        if let Some(id) = &given {
            self.identifier_free(id)?;
        }
        // 5. code: exactly one coding, a known one
        let concept = self.concept_of(r)?;
        // 6. consent
        self.consented(patient_id, &concept)?;
        // 7. base64 JSON, 8. OMH validity
        let (text, point) = match self.decoded.get_mut(i).and_then(Option::take) {
            Some(d) if d.code == concept.code => d.outcome?,
            _ => data_point(r, &concept.code)?,
        };
        let status = match r.get("status") {
            None | Some(Value::Null) => "final".to_string(),
            Some(Value::String(s)) if model::STATUSES.contains(&s.as_str()) => s.clone(),
            Some(_) => {
                return Err(refuse(
                    400,
                    format!("status must be one of {}.", model::STATUSES.join(", ")),
                ))
            }
        };
        let (system, value) = match given {
            Some(g) => g,
            None => {
                let key = (UUID_SYSTEM.to_string(), format!("urn:uuid:{}", point.uuid));
                self.identifier_free(&key)?;
                key
            }
        };
        self.seen.insert((system.clone(), value.clone()));
        Ok(NewObservation {
            patient_id,
            codeable_concept_id: concept.id,
            data_source_id: Some(device),
            status,
            identifier_system: system,
            identifier_value: value,
            effective_start: point.effective_start.naive_utc(),
            effective_end: point.effective_end.map(|e| e.naive_utc()),
            omh_data: text,
            at: now(),
        })
    }

    /// Looks up, for the whole batch at once: identifiers already used, who may upload for
    /// each subject, what each subject consented to, and which devices exist.
    fn prefetch(&mut self, resources: &[&Value]) -> Result<(), AppError> {
        let given: Vec<(String, String)> = resources.iter().filter_map(|r| identifier(r)).collect();
        self.taken = repo::identifiers_used(self.conn, &given)?;
        let ids = |field, kind| {
            let mut v: Vec<i64> = resources
                .iter()
                .filter_map(|r| reference(r, field, kind).ok())
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let patients = ids("subject", "Patient");
        let devices = ids("device", "Device");
        self.devices = crate::data_source::repo::existing(self.conn, &devices)?
            .into_iter()
            .collect();
        if patients.is_empty() {
            return Ok(());
        }
        if self.user.practitioner_id.is_some() || self.user.is_superuser() {
            let roles = organization::visible(self.conn, self.user)?.1;
            let mut best: HashMap<i64, Role> = HashMap::new();
            for (pid, org) in repo::organizations_of(self.conn, &patients)? {
                if let Some(r) = roles.get(&org) {
                    let e = best.entry(pid).or_insert(*r);
                    *e = (*e).max(*r);
                }
            }
            for pid in &patients {
                if self.user.patient_id == Some(*pid) {
                    continue;
                }
                let answer = match best.get(pid) {
                    None => Err(refuse(404, format!("Patient/{pid} not found in your organizations."))),
                    Some(r) if *r < Role::Member => Err(refuse(
                        403,
                        format!("You may not upload for Patient/{pid}: that needs the member or manager role in one of the patient's organizations; yours is {}.", r.as_str()),
                    )),
                    Some(_) => Ok(()),
                };
                self.patients.insert(*pid, answer);
            }
        }
        for (pid, concept, name, status) in repo::consents_of(self.conn, &patients)? {
            self.consenting
                .entry((pid, concept))
                .or_default()
                .push((name, status));
        }
        Ok(())
    }

    /// A practitioner's answer was prefetched; a patient uploads only for itself.
    fn may_upload_for(&self, patient_id: i64) -> Result<(), Refusal> {
        if self.user.patient_id == Some(patient_id) {
            return Ok(());
        }
        self.patients.get(&patient_id).cloned().unwrap_or_else(|| {
            Err(refuse(
                403,
                format!("A patient uploads only its own data, not Patient/{patient_id}'s."),
            ))
        })
    }

    fn identifier_free(&self, key: &(String, String)) -> Result<(), Refusal> {
        if let Some(id) = self.taken.get(key) {
            return Err(used(&key.0, &key.1, *id));
        }
        if self.seen.contains(key) {
            return Err(refuse(
                409,
                format!(
                    "The identifier {}|{} appears twice in this upload; each observation needs its own.",
                    key.0, key.1
                ),
            ));
        }
        Ok(())
    }

    fn concept_of(&self, r: &Value) -> Result<Concept, Refusal> {
        let codings = r
            .get("code")
            .and_then(|c| c.get("coding"))
            .and_then(Value::as_array)
            .ok_or_else(|| refuse(400, "code.coding is required: one coding with the data type's system and code, e.g. {\"system\": \"https://w3id.org/openmhealth\", \"code\": \"omh:heart-rate:2.0\"}."))?;
        if codings.len() != 1 {
            return Err(refuse(
                400,
                format!(
                    "code.coding must hold exactly one coding; it holds {}.",
                    codings.len()
                ),
            ));
        }
        let system = codings[0]
            .get("system")
            .and_then(Value::as_str)
            .unwrap_or("");
        let code = codings[0].get("code").and_then(Value::as_str).unwrap_or("");
        self.concepts
            .all()
            .iter()
            .find(|c| c.system == system && c.code == code)
            .cloned()
            .ok_or_else(|| {
                refuse(
                    400,
                    format!(
                        "Unknown code {system}|{code}. Known codes: {}.",
                        self.concepts
                            .all()
                            .iter()
                            .map(|c| c.code.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
    }

    fn consented(&self, patient_id: i64, c: &Concept) -> Result<(), Refusal> {
        let studies = self
            .consenting
            .get(&(patient_id, c.id))
            .map(Vec::as_slice)
            .unwrap_or_default();
        if studies.iter().any(|(_, status)| status == "active") {
            Ok(())
        } else if let Some((name, status)) = studies.first() {
            Err(refuse(
                403,
                format!("Patient/{patient_id} consented to share {} only in study \"{name}\", which is {status}; it takes no data until it is active again.", c.text),
            ))
        } else {
            Err(refuse(
                403,
                format!("Patient/{patient_id} has not consented to share {} ({}) in any study; the patient must consent before data is uploaded.", c.text, c.code),
            ))
        }
    }
}

/// The refusal of an identifier that an observation already holds.
fn used(system: &str, value: &str, id: i64) -> Refusal {
    refuse(
        409,
        format!("The identifier {system}|{value} is already used by Observation/{id}; each upload needs its own identifier."),
    )
}

fn stored(id: i64, n: NewObservation) -> Observation {
    Observation {
        id,
        patient_id: n.patient_id,
        codeable_concept_id: n.codeable_concept_id,
        data_source_id: n.data_source_id,
        status: n.status,
        identifier_system: Some(n.identifier_system),
        identifier_value: Some(n.identifier_value),
        effective_start: n.effective_start,
        effective_end: n.effective_end,
        omh_data: n.omh_data,
        created_at: n.at,
        last_updated: n.at,
    }
}

/// The first identifier with both a system and a value.
fn identifier(r: &Value) -> Option<(String, String)> {
    r.get("identifier")?.as_array()?.iter().find_map(|i| {
        let s = i.get("system")?.as_str()?.trim();
        let v = i.get("value")?.as_str()?.trim();
        (!s.is_empty() && !v.is_empty()).then(|| (s.to_string(), v.to_string()))
    })
}

/// The attachment's JSON document: the stored text and its parsed form.
fn attachment(r: &Value) -> Result<(String, Value), Refusal> {
    let a = r.get("valueAttachment").ok_or_else(|| {
        refuse(400, "valueAttachment is required: {\"contentType\": \"application/json\", \"data\": <base64 of the OMH JSON>}.")
    })?;
    if let Some(ct) = a.get("contentType").and_then(Value::as_str) {
        if !ct.starts_with("application/json") {
            return Err(refuse(
                400,
                format!("valueAttachment.contentType must be application/json; got \"{ct}\"."),
            ));
        }
    }
    let data = a.get("data").and_then(Value::as_str).ok_or_else(|| {
        refuse(
            400,
            "valueAttachment.data is required: the OMH JSON document, base64-encoded.",
        )
    })?;
    let cleaned: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(cleaned.as_bytes()))
        .map_err(|e| refuse(400, format!("valueAttachment.data is not base64: {e}.")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| refuse(400, "valueAttachment.data does not decode to UTF-8 text; encode the OMH JSON as UTF-8 before base64."))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| {
        refuse(
            400,
            format!("valueAttachment.data does not decode to JSON: {e}."),
        )
    })?;
    Ok((text, doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(codings: Value, data: &str) -> Value {
        json!({
            "resourceType": "Observation",
            "code": {"coding": codings},
            "valueAttachment": {"contentType": "application/json", "data": data},
        })
    }

    fn heart_rate(i: usize) -> String {
        let doc = json!({
            "header": {
                "uuid": format!("00000000-0000-4000-8000-{i:012x}"),
                "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "2.0"},
                "source_creation_date_time": "2025-01-01T09:00:00Z",
                "modality": "sensed"
            },
            "body": {
                "heart_rate": {"value": 60 + (i % 40), "unit": "beats/min"},
                "effective_time_frame": {"date_time": "2025-01-01T08:00:00Z"}
            }
        });
        base64::engine::general_purpose::STANDARD.encode(doc.to_string())
    }

    #[test]
    fn a_large_batch_is_decoded_in_order_with_each_outcome_in_place() {
        let code =
            json!([{"system": "https://w3id.org/openmhealth", "code": "omh:heart-rate:2.0"}]);
        let rs: Vec<Value> = (0..DECODE_SPLIT * 2 + 7)
            .map(|i| match i % 50 {
                // Not base64: refused at step 7, in place.
                3 => resource(code.clone(), "not base64!"),
                // Two codings: left for the checks, which refuse it at step 5.
                4 => resource(json!([code[0], code[0]]), &heart_rate(i)),
                _ => resource(code.clone(), &heart_rate(i)),
            })
            .collect();
        let decoded = decode(&rs);
        assert_eq!(decoded.len(), rs.len());
        for (i, d) in decoded.iter().enumerate() {
            match i % 50 {
                3 => {
                    let d = d.as_ref().expect("one coding: decoded");
                    let r = d.outcome.as_ref().expect_err("bad base64 is refused");
                    assert_eq!(r.status, 400);
                    assert!(r.message.contains("not base64"), "{}", r.message);
                }
                4 => assert!(d.is_none(), "entry {i} has two codings"),
                _ => {
                    let d = d.as_ref().expect("decoded");
                    assert_eq!(d.code, "omh:heart-rate:2.0");
                    let (_, point) = d.outcome.as_ref().expect("valid");
                    assert_eq!(point.uuid, format!("00000000-0000-4000-8000-{i:012x}"));
                }
            }
        }
    }

    #[test]
    fn an_invalid_point_is_refused_as_the_code_it_names() {
        let code =
            json!([{"system": "https://w3id.org/openmhealth", "code": "omh:blood-pressure:4.0"}]);
        let d = decode(&[resource(code, &heart_rate(0))]);
        let r = d[0]
            .as_ref()
            .expect("one coding: decoded")
            .outcome
            .as_ref()
            .expect_err("not a blood pressure");
        assert_eq!(r.status, 422);
        assert!(
            r.message.contains("omh:blood-pressure:4.0"),
            "{}",
            r.message
        );
    }
}
