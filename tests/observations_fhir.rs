//! /FHIR/R5 and /api/v1/observations as a script sees them: the upload checks in their
//! documented order with their statuses and messages, batch Bundles, Observation search with
//! its filters and keyset paging, the reads of the resources observations point at, and the
//! JHE admin list.

mod common;

use std::collections::HashSet;

use base64::Engine;
use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use cohort::db::schema::observations as o;

// ---- helpers ---------------------------------------------------------------------------------

const OMH: &str = "https://w3id.org/openmhealth";
const BP: i64 = 2;
const HEART: i64 = 4;
const BP_CODE: &str = "omh:blood-pressure:4.0";
const HEART_CODE: &str = "omh:heart-rate:2.0";
const BP_KIND: &str = "blood-pressure_4-0";
const HEART_KIND: &str = "heart-rate_2-0";
const OBS: &str = "/FHIR/R5/Observation";
const FHIR_JSON: &str = "application/fhir+json";
const ROW_KEYS: &str = "codeableConceptId codingCode codingSystem codingText id jheUserId \
    lastUpdated omhData patientNameFamily patientNameGiven subjectPatientId";

/// An example data point exactly as the file holds it.
fn example(kind: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/omh-examples");
    let path = format!("{dir}/omh_{kind}.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An example data point with its own uuid (number `n`) and effective time.
fn point(kind: &str, n: u32, at: &str) -> Value {
    let mut v: Value = serde_json::from_str(&example(kind)).unwrap();
    v["header"]["uuid"] = json!(format!("aaaa1234-1a2b-3c4d-5e6f-{n:012}"));
    v["body"]["effective_time_frame"] = json!({ "date_time": at });
    v
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// An Observation resource carrying `text`, the OMH JSON as sent, without an identifier.
fn resource(patient: i64, device: i64, code: &str, text: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "code": {"coding": [{"system": OMH, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "device": {"reference": format!("Device/{device}")},
        "valueAttachment": {"contentType": "application/json", "data": b64(text)},
    })
}

fn obs(patient: i64, device: i64, kind: &str, n: u32, at: &str) -> Value {
    let code = if kind == BP_KIND { BP_CODE } else { HEART_CODE };
    resource(patient, device, code, &point(kind, n, at).to_string())
}

/// `base` with a JSON merge patch (RFC 7386) applied: null removes a key.
fn merged(base: &Value, patch: &Value) -> Value {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            let mut out = b.clone();
            for (k, v) in p {
                let next = merged(out.get(k).unwrap_or(&Value::Null), v);
                match v.is_null() {
                    true => out.remove(k),
                    false => out.insert(k.clone(), next),
                };
            }
            Value::Object(out)
        }
        _ => patch.clone(),
    }
}

fn batch(resources: &[Value]) -> Value {
    let entries: Vec<Value> = resources
        .iter()
        .map(|r| json!({"resource": r, "request": {"method": "POST", "url": "Observation"}}))
        .collect();
    json!({"resourceType": "Bundle", "type": "batch", "entry": entries})
}

/// A path with an encoded query string.
fn query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    format!("{path}?{}", s.finish())
}

/// The id at the end of a location such as http://…/FHIR/R5/Observation/12.
fn tail_id(location: &str) -> i64 {
    location.rsplit('/').next().unwrap().parse().unwrap()
}

fn stored_count(app: &TestApp) -> i64 {
    o::table.count().get_result(&mut *app.conn()).unwrap()
}

/// Some fields of an object (names split by spaces), as a JSON list, to compare in one go.
fn pick(v: &Value, keys: &str) -> Value {
    Value::Array(keys.split_whitespace().map(|k| v[k].clone()).collect())
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

struct Reply {
    status: u16,
    body: Value,
    location: Option<String>,
    content_type: String,
}

impl Reply {
    /// The reply is an OperationOutcome with this status whose diagnostics hold `says`.
    fn refused(&self, status: u16, says: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.content_type, FHIR_JSON);
        let msg = diagnostics(&self.body);
        assert!(msg.contains(says), "{msg:?} lacks {says:?}");
    }

    /// The reply has this status and is FHIR JSON.
    fn is(&self, status: u16) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.content_type, FHIR_JSON);
    }
}

/// The diagnostics of an OperationOutcome, checking its shape.
fn diagnostics(body: &Value) -> &str {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let issue = &body["issue"][0];
    let kind = pick(issue, "severity code");
    assert_eq!(kind, json!(["error", "processing"]));
    issue["diagnostics"].as_str().unwrap()
}

/// A script with a personal API token, or none.
struct Api<'a> {
    app: &'a TestApp,
    token: Option<String>,
}

impl Api<'_> {
    async fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>, ctype: &str) -> Reply {
        let url = Some(path.to_string()).filter(|p| p.starts_with("http"));
        let url = url.unwrap_or_else(|| self.app.at(path));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = script().request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", ctype).body(b);
        }
        let res = req.send().await.unwrap();
        let headers = res.headers();
        let header = |n: &str| Some(headers.get(n)?.to_str().ok()?.to_string());
        let (location, content_type) = (header("location"), header("content-type"));
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let body = match text.is_empty() {
            true => Value::Null,
            false => serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        };
        let content_type = content_type.unwrap_or_default();
        Reply {
            status,
            body,
            location,
            content_type,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, "").await
    }

    /// A GET that must be refused with an OperationOutcome.
    async fn refuses(&self, path: &str, status: u16, says: &str) {
        self.get(path).await.refused(status, says);
    }

    /// A FHIR client's POST: JSON sent as application/fhir+json.
    async fn fhir(&self, path: &str, body: &Value) -> Reply {
        let bytes = body.to_string().into_bytes();
        self.send("POST", path, Some(bytes), FHIR_JSON).await
    }

    /// A REST call that must answer `status`; returns the body.
    async fn expect(&self, method: &str, path: &str, body: Value, status: u16) -> Value {
        let bytes = body.to_string().into_bytes();
        let ctype = "application/json";
        let r = self.send(method, path, Some(bytes), ctype).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        r.body
    }

    /// Uploads one Observation, which must be accepted; returns the stored resource.
    async fn upload(&self, r: &Value) -> Value {
        let reply = self.fhir(OBS, r).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body
    }

    /// Uploads a batch whose entries must all be accepted; returns (id, lastModified) of each.
    async fn upload_all(&self, resources: &[Value]) -> Vec<(i64, String)> {
        let r = self.fhir("/FHIR/R5", &batch(resources)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let answers = entries(&r.body);
        assert_eq!(answers.len(), resources.len());
        let made = |e: &Value| {
            let res = &e["response"];
            assert_eq!(res["status"], "201 Created", "{e}");
            let at = res["lastModified"].as_str().unwrap().to_string();
            (tail_id(res["location"].as_str().unwrap()), at)
        };
        answers.iter().map(made).collect()
    }

    /// A patient with an MRN identifier; returns (id, jheUserId).
    async fn patient(&self, org: i64, family: &str, given: &str, mrn: &str) -> (i64, i64) {
        let email = format!("{}@x.org", given.to_lowercase());
        let body = json!({"organizationId": org, "nameFamily": family, "nameGiven": given,
                          "telecomEmail": email, "birthDate": "1980-01-01",
                          "identifiers": [{"system": "urn:mrn", "value": mrn}]});
        let out = self.expect("POST", "/api/v1/patients", body, 201).await;
        let id = |k: &str| out[k].as_i64().unwrap();
        (id("id"), id("jheUserId"))
    }

    /// An active study requesting `scopes` with `patients` enrolled; returns its id.
    async fn study(&self, org: i64, name: &str, scopes: &[i64], patients: &[i64]) -> i64 {
        let body = json!({"name": name, "description": "Readings.", "organization": org});
        let id = self.expect("POST", "/api/v1/studies", body, 201).await["id"].as_i64();
        let path = format!("/api/v1/studies/{}", id.unwrap());
        let (asks, enrols) = (format!("{path}/scope_requests"), format!("{path}/patients"));
        for s in scopes {
            let scope = json!({ "scopeCodeId": s });
            self.expect("POST", &asks, scope, 201).await;
        }
        let body = json!({ "patientIds": patients });
        self.expect("POST", &enrols, body, 200).await;
        id.unwrap()
    }

    /// Records the patient's consent to share `codes` in the study.
    async fn consent(&self, patient: i64, study: i64, codes: &[&str]) {
        let scopes: Vec<Value> = codes
            .iter()
            .map(|c| json!({"codingSystem": OMH, "codingCode": c, "consented": true}))
            .collect();
        let body = json!({"reason": "paper form signed 2026-03-02",
                          "studyScopeConsents": [{"studyId": study, "scopeConsents": scopes}]});
        let path = format!("/api/v1/patients/{patient}/consents");
        self.expect("POST", &path, body, 200).await;
    }

    /// Every page of a search, following `next` links from `first`.
    async fn pages(&self, first: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut url = Some(first.to_string());
        while let Some(u) = url {
            let r = self.get(&u).await;
            assert_eq!(r.status, 200, "{u}: {}", r.body);
            url = link(&r.body, "next");
            out.push(r.body);
            assert!(out.len() < 20, "the next links never end");
        }
        out
    }

    /// The ids one search with one parameter finds.
    async fn find(&self, key: &str, value: &str) -> Vec<i64> {
        self.found(&[(key, value)]).await
    }

    /// The ids of the Observations a one-page search finds, in order (upload order unless
    /// the search sorts).
    async fn found(&self, pairs: &[(&str, &str)]) -> Vec<i64> {
        let mut pairs = pairs.to_vec();
        if !pairs.iter().any(|(k, _)| *k == "_sort") {
            pairs.push(("_sort", "_id"));
        }
        pairs.push(("_count", "1000"));
        let r = self.get(&query(OBS, &pairs)).await;
        assert_eq!(r.status, 200, "{pairs:?}: {}", r.body);
        let ids = entry_ids(&r.body);
        assert_eq!(r.body["total"], json!(ids.len()), "{pairs:?}");
        ids
    }
}

fn api(app: &TestApp, user: i64) -> Api<'_> {
    let token = Some(app.token(user));
    Api { app, token }
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    let links = bundle["link"].as_array();
    let links = links.unwrap_or_else(|| panic!("no link list in {bundle}"));
    let found = links.iter().find(|l| l["relation"] == relation);
    found.map(|l| l["url"].as_str().unwrap().to_string())
}

fn entries(bundle: &Value) -> &Vec<Value> {
    let list = bundle["entry"].as_array();
    list.unwrap_or_else(|| panic!("no entry list in {bundle}"))
}

fn entry_ids(bundle: &Value) -> Vec<i64> {
    let id = |e: &Value| e["resource"]["id"].as_str().unwrap().parse().unwrap();
    entries(bundle).iter().map(id).collect()
}

/// North (mel a member, val a viewer) and South (oz a member); ann in North and bob in South,
/// each enrolled in an active study of their organization requesting blood pressure and heart
/// rate, consenting to both; one device that a superuser registered.
struct World<'a> {
    north: i64,
    south: i64,
    mel: Api<'a>,
    val: Api<'a>,
    oz: Api<'a>,
    su: Api<'a>,
    nobody: Api<'a>,
    device: i64,
    ann: i64,
    ann_user: i64,
    bob: i64,
    study: i64,
    south_study: i64,
}

async fn world(app: &TestApp) -> World<'_> {
    let (mel_u, mel) = app.practitioner("mel@x.org", false);
    let (val_u, val) = app.practitioner("val@x.org", false);
    let (oz_u, oz) = app.practitioner("oz@x.org", false);
    let (su_u, _) = app.practitioner("su@x.org", true);
    let north = app.org("North", 0, &[(mel, "member"), (val, "viewer")]);
    let south = app.org("South", 0, &[(oz, "member")]);
    let (mel, oz, su) = (api(app, mel_u), api(app, oz_u), api(app, su_u));
    let body = json!({"name": "Omron", "type": "personal_device", "supportedScopes": [BP, HEART]});
    let device = su.expect("POST", "/api/v1/data_sources", body, 201).await["id"].as_i64();
    let (ann, ann_user) = mel.patient(north, "Ames", "Ann", "A-1").await;
    let (bob, _) = oz.patient(south, "Bower", "Bob", "B-1").await;
    let study = mel.study(north, "Heart study", &[BP, HEART], &[ann]).await;
    mel.consent(ann, study, &[BP_CODE, HEART_CODE]).await;
    let south_study = oz.study(south, "South study", &[BP, HEART], &[bob]).await;
    oz.consent(bob, south_study, &[BP_CODE, HEART_CODE]).await;
    let (val, nobody) = (api(app, val_u), Api { app, token: None });
    let device = device.unwrap();
    World {
        north,
        south,
        mel,
        val,
        oz,
        su,
        nobody,
        device,
        ann,
        ann_user,
        bob,
        study,
        south_study,
    }
}

// ---- upload checks ---------------------------------------------------------------------------

/// Faulty uploads, one a line, in the order of the checks: who sends it, the status, a JSON
/// merge patch on a good blood-pressure resource and a part of the message. $NAMEs stand for
/// ids and attachment data.
const FAULTS: &str = r#"
mel | 400 | {"resourceType": "Patient"} | resourceType must be "Observation".
mel | 400 | {"subject": null} | subject.reference is required: give it as "Patient/<id>".
mel | 400 | {"subject": {"reference": "Patient/abc"}} | subject.reference must look like "Patient/<id>" with a whole-number id; got "Patient/abc".
mel | 404 | {"subject": {"reference": "Patient/$BOB"}} | Patient/$BOB not found in your organizations.
val | 403 | {} | You may not upload for Patient/$ANN: that needs the member or manager role in one of the patient's organizations; yours is viewer.
mel | 400 | {"device": null} | device.reference is required: give it as "Device/<id>".
mel | 400 | {"device": {"reference": "Patient/$ANN"}} | device.reference must look like "Device/<id>"
mel | 404 | {"device": {"reference": "Device/999999"}} | Device/999999 not found: register the data source first
mel | 409 | {"identifier": [{"system": "urn:omron", "value": "hr-1"}]} | The identifier urn:omron|hr-1 is already used by Observation/$HR;
mel | 400 | {"code": null} | code.coding is required
mel | 400 | {"code": {"coding": [{"system": "$OMH", "code": "omh:blood-pressure:4.0"}, {"system": "$OMH", "code": "omh:heart-rate:2.0"}]}} | code.coding must hold exactly one coding; it holds 2.
mel | 400 | {"code": {"coding": [{"system": "$OMH", "code": "omh:nope:1.0"}]}} | Unknown code https://w3id.org/openmhealth|omh:nope:1.0. Known codes: omh:blood-glucose:4.0,
mel | 400 | {"code": {"coding": [{"system": "urn:other", "code": "omh:blood-pressure:4.0"}]}} | Unknown code urn:other|omh:blood-pressure:4.0.
mel | 403 | {"code": {"coding": [{"system": "$OMH", "code": "omh:body-temperature:4.0"}]}} | Patient/$ANN has not consented to share Body temperature (omh:body-temperature:4.0) in any study
mel | 403 | {"subject": {"reference": "Patient/$CY"}} | Patient/$CY consented to share Blood pressure only in study "Winter study", which is paused;
mel | 400 | {"valueAttachment": {"data": "%%not base64%%"}} | valueAttachment.data is not base64
mel | 400 | {"valueAttachment": {"data": "$NOTJSON"}} | valueAttachment.data does not decode to JSON
mel | 422 | {"valueAttachment": {"data": "$NODIA"}} | The data point is not valid omh:blood-pressure:4.0: body.diastolic_blood_pressure is required.
mel | 400 | {"status": "done"} | status must be one of registered, preliminary, final,
"#;

/// Uploads with two faults: the earlier check answers.
const TWO_FAULTS: &str = r#"
mel | 404 | {"device": {"reference": "Device/999999"}, "valueAttachment": {"data": "%%"}} | Device/999999 not found
mel | 404 | {"subject": {"reference": "Patient/$BOB"}, "device": null} | Patient/$BOB not found in your organizations.
val | 403 | {"device": {"reference": "Device/999999"}} | yours is viewer
mel | 409 | {"identifier": [{"system": "urn:omron", "value": "hr-1"}], "code": null} | is already used by Observation/$HR;
mel | 400 | {"code": {"coding": []}, "valueAttachment": {"data": "%%"}} | code.coding must hold exactly one coding; it holds 0.
mel | 403 | {"code": {"coding": [{"system": "$OMH", "code": "omh:body-temperature:4.0"}]}, "valueAttachment": {"data": "$EMPTY"}} | has not consented
mel | 400 | {"status": "done", "valueAttachment": {"data": "$HALF"}} | does not decode to JSON
mel | 422 | {"status": "done", "valueAttachment": {"data": "$NODIA"}} | The data point is not valid
"#;

on_both_backends!(
    each_upload_check_answers_in_order_with_its_status_and_message,
    |app: TestApp| async move {
        let w = world(&app).await;
        let (ann, dev, mel) = (w.ann, w.device, &w.mel);
        // Cy consented to blood pressure only in a study that is then paused.
        let (cy, _) = mel.patient(w.north, "Carr", "Cy", "C-1").await;
        let winter = mel.study(w.north, "Winter study", &[BP], &[cy]).await;
        mel.consent(cy, winter, &[BP_CODE]).await;
        let path = format!("/api/v1/studies/{winter}");
        let out = mel.expect("PATCH", &path, json!({"status": "paused"}), 200);
        let out = out.await;
        assert_eq!(out["status"], "paused");

        // A heart-rate reading under an identifier of the device's own.
        let mut hr = obs(ann, dev, HEART_KIND, 4, "2025-01-01T00:04:00-08:00");
        hr["identifier"] = json!([{"system": "urn:omron", "value": "hr-1"}]);
        let hr_id = mel.upload(&hr).await["id"].as_str().unwrap().to_string();

        let mut no_dia = point(BP_KIND, 9, "2025-01-02T08:00:00Z");
        let drop_dia = json!({"diastolic_blood_pressure": null});
        no_dia["body"] = merged(&no_dia["body"], &drop_dia);
        let vars = [
            ("$ANN", ann.to_string()),
            ("$BOB", w.bob.to_string()),
            ("$CY", cy.to_string()),
            ("$HR", hr_id),
            ("$OMH", OMH.to_string()),
            ("$NOTJSON", b64("systolic 120")),
            ("$NODIA", b64(&no_dia.to_string())),
            ("$EMPTY", b64("{}")),
            ("$HALF", b64("[1")),
        ];
        let fill = |s: &str| vars.iter().fold(s.to_string(), |s, (k, v)| s.replace(k, v));
        let text = example(BP_KIND);
        let good = resource(ann, dev, BP_CODE, &text);
        let table = fill(FAULTS) + &fill(TWO_FAULTS);
        for line in table.lines().filter(|l| !l.is_empty()) {
            let cells: Vec<&str> = line.splitn(4, " | ").collect();
            let who = if cells[0] == "val" { &w.val } else { mel };
            let patch: Value = serde_json::from_str(cells[2]).expect(line);
            let reply = who.fhir(OBS, &merged(&good, &patch)).await;
            assert_eq!(reply.status.to_string(), cells[1], "{line}: {}", reply.body);
            reply.refused(reply.status, cells[3]);
        }
        assert_eq!(stored_count(&app), 1, "no refused upload was stored");

        // The good one, sent as application/json this time: a 201 echoing what was stored.
        let bytes = good.to_string().into_bytes();
        let r = mel.send("POST", OBS, Some(bytes), "application/json").await;
        r.is(201);
        let b = &r.body;
        let id = b["id"].as_str().unwrap();
        let location = format!("{}/FHIR/R5/Observation/{id}", app.url);
        assert_eq!(r.location.as_deref(), Some(location.as_str()));
        let uuid = "urn:uuid:aaaa1234-1a2b-3c4d-5e6f-000000000002";
        let keys = "resourceType status code subject device effectiveDateTime identifier";
        let coding = json!([{"system": OMH, "code": BP_CODE, "display": "Blood pressure"}]);
        let (patient, device) = (format!("Patient/{ann}"), format!("Device/{dev}"));
        let expected = json!(["Observation", "final", {"coding": coding},
                              {"reference": patient}, {"reference": device},
                              "2025-01-01T08:02:00+00:00",
                              [{"system": "urn:ietf:rfc:3986", "value": uuid}]]);
        assert_eq!(pick(b, keys), expected, "status final when not given");
        assert!(b.get("effectivePeriod").is_none(), "{b}");
        assert!(b["meta"]["lastUpdated"].as_str().unwrap().starts_with("20"));
        assert_eq!(b["valueAttachment"]["contentType"], "application/json");
        let data = b["valueAttachment"]["data"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(data);
        let decoded = String::from_utf8(decoded.unwrap()).unwrap();
        assert_eq!(decoded, text, "exactly as sent");
        let read = mel.get(&location).await;
        assert_eq!((read.status, &read.body), (200, b), "reads back the same");

        // The same data point again, still without an identifier: its uuid is taken.
        // (Caught by the insert's conflict, not the identifier check, so no id is named.)
        let again = mel.fhir(OBS, &good).await;
        again.refused(409, &format!("identifier urn:ietf:rfc:3986|{uuid} "));
        assert_eq!(stored_count(&app), 2);
    }
);

// ---- batch -----------------------------------------------------------------------------------

on_both_backends!(
    a_batch_answers_each_entry_in_order_and_stores_the_good_ones,
    |app: TestApp| async move {
        let w = world(&app).await;
        let (ann, dev, mel) = (w.ann, w.device, &w.mel);
        let first = obs(ann, dev, BP_KIND, 101, "2025-02-01T08:00:00Z");
        let mut unknown_device = obs(ann, dev, BP_KIND, 102, "2025-02-02T08:00:00Z");
        unknown_device["device"]["reference"] = json!("Device/999999");
        let uploads = [
            first.clone(),
            unknown_device,
            obs(ann, dev, HEART_KIND, 103, "2025-02-03T08:00:00Z"),
            first, // the same data point twice in one batch
            obs(ann, dev, BP_KIND, 104, "2025-02-04T08:00:00Z"),
        ];
        let r = mel.fhir("/FHIR/R5", &batch(&uploads)).await;
        r.is(200);
        let shape = pick(&r.body, "resourceType type");
        assert_eq!(shape, json!(["Bundle", "batch-response"]));
        let answers = entries(&r.body);
        let status = |e: &Value| e["response"]["status"].as_str().unwrap().to_string();
        let statuses: Vec<String> = answers.iter().map(status).collect();
        let created = "201 Created";
        let expected = [created, "404 Not Found", created, "409 Conflict", created];
        assert_eq!(statuses, expected);
        let mut made = Vec::new();
        let prefix = format!("{}/FHIR/R5/Observation/", app.url);
        for i in [0, 2, 4] {
            let res = &answers[i]["response"];
            let location = res["location"].as_str().unwrap();
            assert!(location.starts_with(&prefix), "{location}");
            assert!(res["lastModified"].as_str().unwrap().starts_with("20"));
            assert!(res.get("outcome").is_none());
            made.push(tail_id(location));
        }
        let said = |i: usize| diagnostics(&answers[i]["response"]["outcome"]).to_string();
        assert!(said(1).contains("Device/999999 not found"), "{}", said(1));
        let twice = "urn:uuid:aaaa1234-1a2b-3c4d-5e6f-000000000101 appears twice in this upload";
        assert!(said(3).contains(twice), "{}", said(3));
        assert_eq!(stored_count(&app), 3);

        // The good ones are searchable, in upload order.
        assert_eq!(mel.find("patient", &ann.to_string()).await, made);
        let heart = format!("{OMH}|{HEART_CODE}");
        assert_eq!(mel.find("code", &heart).await, vec![made[1]]);

        // Only batch Bundles are taken.
        let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": []});
        let r = mel.fhir("/FHIR/R5", &transaction).await;
        r.refused(400, "The Bundle's type must be \"batch\"");
        let not_a_bundle = json!({"resourceType": "Observation"});
        let r = mel.fhir("/FHIR/R5", &not_a_bundle).await;
        r.refused(400, "POST /FHIR/R5 takes a Bundle");
        let junk = Some(b"{not json".to_vec());
        let r = mel.send("POST", "/FHIR/R5", junk, FHIR_JSON).await;
        r.refused(400, "The body is not JSON");
        assert_eq!(stored_count(&app), 3, "refused bundles stored nothing");
    }
);

// ---- search ----------------------------------------------------------------------------------

/// The effective day of ann's i-th upload: a permutation of 1..=22, so ids and dates disagree.
fn day_of(i: u32) -> u32 {
    (i * 7) % 22 + 1
}

/// Every third of ann's uploads is a heart rate, the rest blood pressure.
fn kind_of(i: u32) -> &'static str {
    [BP_KIND, BP_KIND, HEART_KIND][i as usize % 3]
}

/// Searches refused with a 400: the query and a part of the message.
const BAD_SEARCHES: &str = r#"
_count=0 | _count must be a whole number from 1 to 1000.
_count=1001 | _count must be a whole number from 1 to 1000.
_count=ten | _count must be a whole number from 1 to 1000.
colour=red | Unknown search parameter "colour" for Observation.
date=yesterday | date: "yesterday" is not a date
date=ne2025-01-01 | date: the prefix ne is not supported
_sort=colour | _sort "colour" is not supported
_cursor=nonsense | _cursor is not one this server made
patient=abc | patient must be a Patient id
"#;

on_both_backends!(
    observation_search_pages_by_links_filters_and_shows_only_the_callers_organizations,
    |app: TestApp| async move {
        let w = world(&app).await;
        let (ann, bob, dev, mel) = (w.ann, w.bob, w.device, &w.mel);
        let at = |i: u32, day: u32| format!("2025-01-{day:02}T08:{i:02}:00Z");
        let ann_obs = |range: std::ops::Range<u32>| -> Vec<Value> {
            let one = |i| obs(ann, dev, kind_of(i), i + 1, &at(i, day_of(i)));
            range.map(one).collect()
        };
        let mut made = mel.upload_all(&ann_obs(0..12)).await;
        actix_web::rt::time::sleep(std::time::Duration::from_millis(30)).await;
        let second = mel.upload_all(&ann_obs(12..22)).await;
        let second_from = second[0].1.clone();
        made.extend(second);
        let ids: Vec<i64> = made.iter().map(|(id, _)| *id).collect();
        let bob_obs = |i| obs(bob, dev, BP_KIND, 500 + i, &at(i, i + 1));
        let bobs: Vec<Value> = (0..6).map(bob_obs).collect();
        let bob_ids: Vec<i64> = w.oz.upload_all(&bobs).await.iter().map(|x| x.0).collect();

        // The default order, ten a page, following next links to the end.
        let base = format!("{}{OBS}?", app.url);
        let pages = mel.pages(&query(OBS, &[("_count", "10")])).await;
        let sizes: Vec<usize> = pages.iter().map(|p| entries(p).len()).collect();
        assert_eq!(sizes, [10, 10, 2]);
        let mut seen = Vec::new();
        let searchset = json!(["Bundle", "searchset", 22]);
        for (n, p) in pages.iter().enumerate() {
            assert_eq!(pick(p, "resourceType type total"), searchset, "page {n}");
            for l in p["link"].as_array().unwrap() {
                let url = l["url"].as_str().unwrap();
                assert!(url.starts_with(&base), "page {n}: {url} is not absolute");
            }
            assert!(link(p, "self").is_some());
            assert_eq!(link(p, "next").is_some(), n < 2, "page {n}");
            assert_eq!(link(p, "previous").is_some(), n > 0, "page {n}");
            if let Some(next) = link(p, "next") {
                let page = format!("_page={}", n + 2);
                let has = |s: &str| next.contains(s);
                assert!(has(&page) && has("_cursor=") && has("_count=10"), "{next}");
            }
            for e in entries(p) {
                let subject = &e["resource"]["subject"]["reference"];
                assert_eq!(subject, &json!(format!("Patient/{ann}")));
            }
            seen.extend(entry_ids(p));
        }
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 22, "none twice");
        assert_eq!(sorted(seen), ids, "every one of ann's");

        // Newest effective first, across pages.
        let newest = query(OBS, &[("_count", "10"), ("_sort", "-date")]);
        let pages = mel.pages(&newest).await;
        let day =
            |e: &Value| e["resource"]["effectiveDateTime"].as_str().unwrap()[8..10].to_string();
        let days: Vec<String> = pages.iter().flat_map(entries).map(day).collect();
        let expected: Vec<String> = (1..=22).rev().map(|d| format!("{d:02}")).collect();
        assert_eq!(days, expected);

        // An empty result still has its entry and link lists.
        let r = mel.get(&query(OBS, &[("date", "lt2000-01-01")])).await;
        r.is(200);
        assert_eq!(pick(&r.body, "total entry"), json!([0, []]));
        let links = r.body["link"].as_array().unwrap();
        assert_eq!(links.len(), 1, "{}", r.body);
        assert_eq!(links[0]["relation"], "self");
        assert!(links[0]["url"].as_str().unwrap().starts_with(&base));

        // Filters.
        let which = |keep: &dyn Fn(u32) -> bool| -> Vec<i64> {
            (0..22u32)
                .filter(|i| keep(*i))
                .map(|i| ids[i as usize])
                .collect()
        };
        let (a, s, n) = (ann.to_string(), w.study.to_string(), w.north.to_string());
        let in_group = "patient._has:Group:member:_id";
        assert_eq!(mel.find("patient", &a).await, ids);
        assert_eq!(mel.find("patient", &format!("Patient/{ann}")).await, ids);
        assert_eq!(mel.find(in_group, &s).await, ids);
        // A study shows only the data types it requests.
        let bp_only = mel.study(w.north, "BP only", &[BP], &[ann]).await;
        let bps = which(&|i| kind_of(i) == BP_KIND);
        assert_eq!(bps.len(), 15);
        assert_eq!(mel.find(in_group, &bp_only.to_string()).await, bps);
        assert_eq!(mel.find("patient.organization", &n).await, ids);
        let heart = which(&|i| kind_of(i) == HEART_KIND);
        let (hr, nope) = (format!("{OMH}|{HEART_CODE}"), format!("{OMH}|omh:nope:1.0"));
        assert_eq!(mel.find("code", &hr).await, heart);
        assert_eq!(mel.find("code", HEART_CODE).await, heart);
        assert_eq!(mel.find("code", &nope).await, Vec::<i64>::new());
        let mid = mel
            .found(&[("date", "ge2025-01-10"), ("date", "lt2025-01-15")])
            .await;
        assert_eq!(mid, which(&|i| (10..15).contains(&day_of(i))));
        let third = mel.find("date", "2025-01-03").await;
        assert_eq!(third, which(&|i| day_of(i) == 3));
        let late = mel.find("_lastUpdated", &format!("ge{second_from}")).await;
        assert_eq!(late, ids[12..].to_vec());
        assert_eq!(mel.find("_lastUpdated", "ge2000-01-01").await, ids);
        let by_date = mel.found(&[("_sort", "-date"), ("code", HEART_CODE)]).await;
        let mut want = heart.clone();
        let day_of_id = |id: &i64| day_of(ids.iter().position(|x| x == id).unwrap() as u32);
        want.sort_by_key(|id| std::cmp::Reverse(day_of_id(id)));
        assert_eq!(by_date, want);
        let ignored = mel.found(&[("_source", "x"), ("_format", "json")]).await;
        assert_eq!(ignored, ids);

        // Other organizations' patients stay out of sight, whoever asks.
        assert_eq!(w.oz.found(&[]).await, bob_ids);
        let everyone = sorted([ids.clone(), bob_ids].concat());
        assert_eq!(w.su.found(&[]).await, everyone);
        let theirs = query(OBS, &[("patient", &bob.to_string())]);
        mel.refuses(&theirs, 404, "Patient not found.").await;
        let theirs = query(OBS, &[("patient.organization", &w.south.to_string())]);
        mel.refuses(&theirs, 404, "Organization not found.").await;

        // Bad requests.
        for line in BAD_SEARCHES.lines().filter(|l| !l.is_empty()) {
            let (q, says) = line.split_once(" | ").unwrap();
            mel.refuses(&format!("{OBS}?{q}"), 400, says).await;
        }
        assert_eq!(w.nobody.get(OBS).await.status, 401);
    }
);

// ---- reads -----------------------------------------------------------------------------------

on_both_backends!(
    reads_of_observations_patients_groups_devices_and_the_capability_statement,
    |app: TestApp| async move {
        let w = world(&app).await;
        let (ann, bob, dev, mel) = (w.ann, w.bob, w.device, &w.mel);
        let mine = obs(ann, dev, BP_KIND, 1, "2025-03-01T08:00:00Z");
        let mine = mel.upload(&mine).await;
        let theirs = obs(bob, dev, HEART_KIND, 2, "2025-03-01T08:00:00Z");
        let theirs = w.oz.upload(&theirs).await;
        // A superuser may upload for anyone.
        w.su.upload(&obs(bob, dev, BP_KIND, 3, "2025-03-02T08:00:00Z"))
            .await;
        let (mine_id, theirs_id) = (mine["id"].as_str().unwrap(), theirs["id"].as_str().unwrap());

        let r = mel.get(&format!("{OBS}/{mine_id}")).await;
        r.is(200);
        assert_eq!(r.body, mine);
        let says = format!("Observation/{theirs_id} not found.");
        mel.refuses(&format!("{OBS}/{theirs_id}"), 404, &says).await;
        let says = "Observation/999999 not found.";
        mel.refuses(&format!("{OBS}/999999"), 404, says).await;
        mel.refuses(&format!("{OBS}/abc"), 404, "Observation/abc not found")
            .await;
        assert_eq!(w.oz.get(&format!("{OBS}/{theirs_id}")).await.body, theirs);
        assert_eq!(w.nobody.get(&format!("{OBS}/{mine_id}")).await.status, 401);

        // Patient.
        let r = mel.get(&format!("/FHIR/R5/Patient/{ann}")).await;
        r.is(200);
        let keys = "resourceType id name identifier birthDate telecom";
        let expected = json!(["Patient", ann.to_string(), [{"family": "Ames", "given": ["Ann"]}],
                              [{"system": "urn:mrn", "value": "A-1"}], "1980-01-01",
                              [{"system": "email", "value": "ann@x.org"}]]);
        assert_eq!(pick(&r.body, keys), expected);
        let says = format!("Patient/{bob} not found.");
        mel.refuses(&format!("/FHIR/R5/Patient/{bob}"), 404, &says)
            .await;

        // Patient search: names match at their start, any case; identifiers exactly.
        let (carl, _) = mel.patient(w.north, "Amsel", "Carl", "C-9").await;
        let in_north = format!("organization={}", w.north);
        let cases: Vec<(&str, Vec<i64>)> = vec![
            ("family=am", vec![ann, carl]),
            ("family=AMES", vec![ann]),
            ("family=bower", vec![]),
            ("identifier=urn:mrn|A-1", vec![ann]),
            ("identifier=C-9", vec![carl]),
            ("identifier=urn:other|A-1", vec![]),
            ("identifier=urn:mrn|B-1", vec![]),
            ("given=ca&family=am", vec![carl]),
            ("name=car", vec![carl]),
            ("birthdate=1980-01-01", vec![ann, carl]),
            ("birthdate=1990-01-01", vec![]),
            (&in_north, vec![ann, carl]),
        ];
        for (q, want) in cases {
            let r = mel.get(&format!("/FHIR/R5/Patient?{q}")).await;
            r.is(200);
            let shape = pick(&r.body, "type total");
            assert_eq!(shape, json!(["searchset", want.len()]), "{q}");
            assert_eq!(entry_ids(&r.body), want, "{q}");
        }
        let r = mel.get("/FHIR/R5/Patient?family=am&_count=1").await;
        assert_eq!(r.body["total"], 2);
        assert_eq!(entry_ids(&r.body), vec![ann]);
        let next = link(&r.body, "next").expect("a next link");
        let absolute = format!("{}/FHIR/R5/Patient?", app.url);
        assert!(next.starts_with(&absolute), "{next}");
        assert_eq!(entry_ids(&mel.get(&next).await.body), vec![carl]);
        let says = "Unknown search parameter \"shoe\" for Patient";
        mel.refuses("/FHIR/R5/Patient?shoe=9", 400, says).await;

        // Group: a study and its members.
        let r = mel.get(&format!("/FHIR/R5/Group/{}", w.study)).await;
        r.is(200);
        let keys = "resourceType id name quantity active member managingEntity";
        let member = json!([{"entity": {"reference": format!("Patient/{ann}")}}]);
        let managed = json!({"reference": format!("Organization/{}", w.north)});
        let id = w.study.to_string();
        let expected = json!(["Group", id, "Heart study", 1, true, member, managed]);
        assert_eq!(pick(&r.body, keys), expected);
        let says = format!("Group/{} not found.", w.south_study);
        let path = format!("/FHIR/R5/Group/{}", w.south_study);
        mel.refuses(&path, 404, &says).await;

        // Device: a data source with the scopes it supports.
        let r = mel.get(&format!("/FHIR/R5/Device/{dev}")).await;
        r.is(200);
        let expected = json!(["Device", dev.to_string(), "Omron"]);
        assert_eq!(pick(&r.body, "resourceType id displayName"), expected);
        let code = |p: &Value| p["valueCodeableConcept"]["coding"][0]["code"].clone();
        let props = r.body["property"].as_array().unwrap();
        let codes: Vec<Value> = props.iter().map(code).collect();
        assert_eq!(json!(codes), json!([BP_CODE, HEART_CODE]));
        let says = "Device/999999 not found.";
        mel.refuses("/FHIR/R5/Device/999999", 404, says).await;

        // Organization.
        let r = mel.get(&format!("/FHIR/R5/Organization/{}", w.north)).await;
        r.is(200);
        let expected = json!(["Organization", "North"]);
        assert_eq!(pick(&r.body, "resourceType name"), expected);
        let says = format!("Organization/{} not found.", w.south);
        let path = format!("/FHIR/R5/Organization/{}", w.south);
        mel.refuses(&path, 404, &says).await;

        // The capability statement needs no token.
        let r = w.nobody.get("/FHIR/R5/metadata").await;
        r.is(200);
        let head = pick(&r.body, "resourceType fhirVersion");
        assert_eq!(head, json!(["CapabilityStatement", "5.0.0"]));
        let kind = |x: &Value| x["type"].as_str().unwrap().to_string();
        let resources = r.body["rest"][0]["resource"].as_array().unwrap();
        let types: Vec<String> = resources.iter().map(kind).collect();
        let expected = "Device Group Observation Organization Patient";
        assert_eq!(sorted(types).join(" "), expected);
        let says = "GET /FHIR/R5/Encounter is not part of this FHIR server";
        mel.refuses("/FHIR/R5/Encounter", 404, says).await;
    }
);

// ---- /api/v1/observations --------------------------------------------------------------------

on_both_backends!(
    the_api_list_passes_omh_data_through_newest_effective_first_with_absolute_page_links,
    |app: TestApp| async move {
        let w = world(&app).await;
        let (ann, dev, mel) = (w.ann, w.device, &w.mel);
        // Uploaded out of date order, so the list's order is its own doing.
        let mut points = Vec::new();
        let days = ["2025-04-02", "2025-04-03", "2025-04-01"];
        for (i, d) in days.iter().enumerate() {
            let p = point(BP_KIND, 700 + i as u32, &format!("{d}T08:00:00Z"));
            let text = serde_json::to_string_pretty(&p).unwrap();
            mel.upload(&resource(ann, dev, BP_CODE, &text)).await;
            points.push(p);
        }
        let theirs = obs(w.bob, dev, HEART_KIND, 800, "2025-04-05T08:00:00Z");
        w.oz.upload(&theirs).await;

        let list = "/api/v1/observations";
        let r = mel.get(list).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["count"], 3, "only North's patients");
        let rows = r.body["results"].as_array().unwrap();
        let order: Vec<&Value> = rows.iter().map(|x| &x["omhData"]).collect();
        let newest_first = [&points[1], &points[0], &points[2]];
        assert_eq!(order, newest_first);
        let row = &rows[0];
        let keys = row.as_object().unwrap().keys();
        let keys: Vec<&str> = keys.map(|k| k.as_str()).collect();
        assert_eq!(sorted(keys).join(" "), ROW_KEYS);
        let who = "subjectPatientId patientNameFamily patientNameGiven jheUserId";
        let who = pick(row, who);
        assert_eq!(who, json!([ann, "Ames", "Ann", w.ann_user]));
        let what = pick(row, "codeableConceptId codingSystem codingCode codingText");
        assert_eq!(what, json!([BP, OMH, BP_CODE, "Blood pressure"]));
        assert!(row["lastUpdated"].as_str().unwrap().starts_with("20"));

        // Two a page; the links are absolute and keep the other parameters.
        let r = mel.get(&format!("{list}?pageSize=2")).await;
        assert_eq!(r.body["results"].as_array().unwrap().len(), 2);
        let next = r.body["next"].as_str().expect("a next link").to_string();
        assert_eq!(next, format!("{}{list}?pageSize=2&page=2", app.url));
        assert_eq!(r.body["previous"], Value::Null);
        let r = mel.get(&next).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let rows = r.body["results"].as_array().unwrap();
        assert_eq!((rows.len(), &rows[0]["omhData"]), (1, &points[2]));
        let previous = format!("{}{list}?pageSize=2&page=1", app.url);
        assert_eq!(pick(&r.body, "next previous"), json!([null, previous]));

        // Filters, and what others see.
        let mine = format!("{list}?patient_id={ann}&study_id={}", w.study);
        assert_eq!(mel.get(&mine).await.body["count"], 3);
        let r = w.oz.get(list).await;
        assert_eq!(pick(&r.body, "count"), json!([1]), "{}", r.body);
        assert_eq!(r.body["results"][0]["subjectPatientId"], w.bob);
        assert_eq!(w.su.get(list).await.body["count"], 4);
        assert_eq!(w.nobody.get(list).await.status, 401);
    }
);
