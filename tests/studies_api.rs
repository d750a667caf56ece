//! /api/v1/studies (with its scope requests, data sources and enrolments), the data source
//! catalogue and /api/v1/patients/{id}/consents as a script sees them: the JHE shapes,
//! validation messages, the role matrix, refusals that say what to do, the audit trail, and
//! the consent totals the database triggers keep.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use cohort::db::schema::{
    audit_events as ae, consents as c, observations as o, studies as st, study_counts as sc,
    study_patients as sp, study_scope_counts as ssc, study_scope_requests as ssr,
};

// ---- helpers ---------------------------------------------------------------------------------

const STUDIES: &str = "/api/v1/studies";
const SOURCES: &str = "/api/v1/data_sources";
const OMH: &str = "https://w3id.org/openmhealth";
/// Seeded scope ids: the foundation migration inserts the 15 codes in a fixed order.
const BP: i64 = 2;
const HEART: i64 = 4;
const STEPS: i64 = 12;
const BP_CODE: &str = "omh:blood-pressure:4.0";
const HEART_CODE: &str = "omh:heart-rate:2.0";
const STEPS_CODE: &str = "omh:step-count:3.0";
const REASON: &str = "paper form signed 2026-03-02";
const SAME_ORG: &str = "Patient and study must be from the same Organization";

/// A script with a personal API token.
struct Api<'a> {
    app: &'a TestApp,
    token: String,
}

fn api(app: &TestApp, user_id: i64) -> Api<'_> {
    Api {
        app,
        token: app.token(user_id),
    }
}

impl Api<'_> {
    async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, Value::Null).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, body).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("PATCH", path, body).await
    }

    async fn delete(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("DELETE", path, body).await
    }

    /// A JSON call; a null body sends none, and an empty answer reads as null.
    async fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            self.app.at(path)
        };
        let mut req = script().request(method, url).bearer_auth(&self.token);
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        if text.is_empty() {
            return (status, Value::Null);
        }
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, value)
    }

    /// Creates a study and returns its id, failing loudly if the server refuses.
    async fn study(&self, org: i64, name: &str) -> i64 {
        let body = json!({"name": name, "description": format!("About {name}."),
                          "organization": org});
        let (status, out) = self.post(STUDIES, body).await;
        assert_eq!(status, 201, "create study: {out}");
        out["id"].as_i64().unwrap()
    }

    /// A study that requests `scopes`.
    async fn study_asking(&self, org: i64, name: &str, scopes: &[i64]) -> i64 {
        let id = self.study(org, name).await;
        for scope in scopes {
            let (status, out) = self
                .post(&sub(id, "scope_requests"), json!({"scopeCodeId": scope}))
                .await;
            assert_eq!(status, 201, "request scope {scope}: {out}");
        }
        id
    }

    async fn patient(&self, org: i64, email: &str) -> i64 {
        let given = email.split('@').next().unwrap();
        let body = json!({"organizationId": org, "telecomEmail": email, "nameFamily": "Tester",
                          "nameGiven": given, "birthDate": "1980-01-01"});
        let (status, out) = self.post("/api/v1/patients", body).await;
        assert_eq!(status, 201, "create patient: {out}");
        out["id"].as_i64().unwrap()
    }

    /// Enrols patients, which must answer 200; returns the answer.
    async fn enrol(&self, study: i64, patients: &[i64]) -> Value {
        let (status, out) = self
            .post(&sub(study, "patients"), json!({"patientIds": patients}))
            .await;
        assert_eq!(status, 200, "enrol {patients:?}: {out}");
        out
    }

    async fn record(&self, patient: i64, study: i64, choices: &[(&str, bool)]) -> (u16, Value) {
        self.post(&consents_of(patient), decisions(study, choices))
            .await
    }

    async fn record_body(&self, patient: i64, body: Value) -> (u16, Value) {
        self.post(&consents_of(patient), body).await
    }

    /// Records decisions, which must be accepted.
    async fn decide(&self, patient: i64, study: i64, choices: &[(&str, bool)]) -> Value {
        let (status, out) = self.record(patient, study, choices).await;
        assert_eq!(
            status, 200,
            "record {choices:?} for {patient} in {study}: {out}"
        );
        out
    }

    /// Clears decisions back to pending, which must be accepted.
    async fn clear(&self, patient: i64, study: i64, codes: &[&str]) {
        let choices: Vec<(&str, bool)> = codes.iter().map(|c| (*c, true)).collect();
        let (status, out) = self
            .delete(&consents_of(patient), decisions(study, &choices))
            .await;
        assert_eq!((status, &out), (204, &Value::Null), "clear {codes:?}");
    }
}

fn one(study: i64) -> String {
    format!("{STUDIES}/{study}")
}

fn sub(study: i64, what: &str) -> String {
    format!("{STUDIES}/{study}/{what}")
}

fn consents_of(patient: i64) -> String {
    format!("/api/v1/patients/{patient}/consents")
}

/// A consent body for one study: (coding code, consented) per scope, with the reason.
fn decisions(study: i64, choices: &[(&str, bool)]) -> Value {
    let scopes: Vec<Value> = choices.iter().map(choice).collect();
    json!({"reason": REASON, "studyScopeConsents": [{"studyId": study, "scopeConsents": scopes}]})
}

fn choice(&(code, yes): &(&str, bool)) -> Value {
    json!({"codingSystem": OMH, "codingCode": code, "consented": yes})
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn detail(body: &Value) -> &str {
    body["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail in {body}"))
}

/// Name, description and status of a study.
fn fields(study: &Value) -> [&str; 3] {
    [
        s(study, "name"),
        s(study, "description"),
        s(study, "status"),
    ]
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The messages of a validation 400 for one field: `{"field": ["msg", ...]}`.
fn messages(body: &Value, field: &str) -> String {
    let list = body[field].as_array();
    let list = list.unwrap_or_else(|| panic!("no message list for {field} in {body}"));
    assert!(!list.is_empty(), "an empty message list for {field}");
    let all: Vec<&str> = list.iter().map(|m| m.as_str().unwrap()).collect();
    all.join(" ")
}

fn list_of(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}"))
}

fn ids(list: &Value) -> Vec<i64> {
    list_of(list)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

fn names(list: &Value) -> Vec<&str> {
    list_of(list).iter().map(|r| s(r, "name")).collect()
}

/// The keys of a JSON object, sorted and joined by spaces.
fn keys(v: &Value) -> String {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    let mut k: Vec<&str> = obj.keys().map(String::as_str).collect();
    k.sort();
    k.join(" ")
}

/// The coding codes of a list of scopes.
fn codes(list: &Value) -> Vec<&str> {
    list_of(list).iter().map(|sc| s(sc, "codingCode")).collect()
}

/// (code, consented, consentedTime is set) of each entry of a `scopeConsents` list.
fn cells(list: &Value) -> Vec<(&str, Option<bool>, bool)> {
    list_of(list).iter().map(cell).collect()
}

fn cell(x: &Value) -> (&str, Option<bool>, bool) {
    (
        s(&x["code"], "codingCode"),
        consented(x),
        x["consentedTime"].is_string(),
    )
}

fn consented(cell: &Value) -> Option<bool> {
    cell["consented"].as_bool()
}

/// (scope id, consented) stored for one patient in one study.
fn stored(app: &TestApp, study: i64, patient: i64) -> Vec<(i64, bool)> {
    let q = c::table
        .filter(c::study_id.eq(study))
        .filter(c::patient_id.eq(patient))
        .select((c::codeable_concept_id, c::consented))
        .order(c::codeable_concept_id);
    q.load(&mut *app.conn()).unwrap()
}

fn enrolled(app: &TestApp, study: i64) -> Vec<i64> {
    let q = sp::table
        .filter(sp::study_id.eq(study))
        .select(sp::patient_id)
        .order(sp::patient_id);
    q.load(&mut *app.conn()).unwrap()
}

/// An observation row as an upload would leave it.
fn upload(app: &TestApp, patient: i64, scope: i64) {
    let t = cohort::util::now();
    diesel::insert_into(o::table)
        .values((
            o::patient_id.eq(patient),
            o::codeable_concept_id.eq(scope),
            o::data_source_id.eq(None::<i64>),
            o::status.eq("final"),
            o::omh_data.eq(r#"{"header": {}, "body": {}}"#),
            o::created_at.eq(t),
            o::last_updated.eq(t),
        ))
        .execute(&mut *app.conn())
        .expect("observation");
}

/// The details of the audit events with this action, oldest first.
fn audited(app: &TestApp, action: &str) -> Vec<(Option<String>, Option<i64>, Value)> {
    let q = ae::table
        .filter(ae::action.eq(action))
        .select((ae::object_id, ae::organization_id, ae::detail))
        .order(ae::id.asc());
    let rows: Vec<(Option<String>, Option<i64>, Option<String>)> =
        q.load(&mut *app.conn()).unwrap();
    let parse = |d: Option<String>| serde_json::from_str(&d.unwrap_or_default()).unwrap();
    rows.into_iter().map(|(o, g, d)| (o, g, parse(d))).collect()
}

/// North with a manager, a member and a viewer; South with a member of its own.
struct Team<'a> {
    north: i64,
    south: i64,
    mia: Api<'a>,
    mel: Api<'a>,
    val: Api<'a>,
    oz: Api<'a>,
}

fn team(app: &TestApp) -> Team<'_> {
    let (mia_u, mia) = app.practitioner("mia@x.org", false);
    let (mel_u, mel) = app.practitioner("mel@x.org", false);
    let (val_u, val) = app.practitioner("val@x.org", false);
    let (oz_u, oz) = app.practitioner("oz@x.org", false);
    let north = app.org(
        "North",
        0,
        &[(mia, "manager"), (mel, "member"), (val, "viewer")],
    );
    let south = app.org("South", 0, &[(oz, "member")]);
    Team {
        north,
        south,
        mia: api(app, mia_u),
        mel: api(app, mel_u),
        val: api(app, val_u),
        oz: api(app, oz_u),
    }
}

// ---- create, read, update --------------------------------------------------------------------

on_both_backends!(
    a_member_creates_a_study_and_gets_the_jhe_shape_back,
    |app: TestApp| async move {
        let t = team(&app);
        let body = json!({"name": " Sleep and BP ", "description": "Nightly readings.",
                          "organization": t.north, "iconUrl": "https://example.org/icon.png"});
        let (status, out) = t.mel.post(STUDIES, body).await;
        assert_eq!(status, 201, "{out}");
        let expected = "dataSources description iconUrl id name organization scopeRequests status";
        assert_eq!(keys(&out), expected, "camelCase keys");
        let id = out["id"].as_i64().expect("an integer id");
        assert_eq!(s(&out, "name"), "Sleep and BP", "trimmed");
        assert_eq!(s(&out, "description"), "Nightly readings.");
        assert_eq!(s(&out, "iconUrl"), "https://example.org/icon.png");
        assert_eq!(s(&out, "status"), "active", "active unless told otherwise");
        assert_eq!(
            out["organization"],
            json!({"id": t.north, "name": "North", "type": "team"})
        );
        assert_eq!(
            (&out["scopeRequests"], &out["dataSources"]),
            (&json!([]), &json!([]))
        );
        let (status, read) = t.mel.get(&one(id)).await;
        assert_eq!((status, &read), (200, &out), "reads back the same");

        // The organization as a string id, snake_case, an explicit status, no icon.
        let paused = json!({"name": "Later", "description": "Starts in spring.",
                            "organization_id": t.north.to_string(), "status": "Paused"});
        let (status, out) = t.mia.post(STUDIES, paused).await;
        assert_eq!(status, 201, "{out}");
        assert_eq!(
            (s(&out, "status"), &out["iconUrl"]),
            ("paused", &Value::Null)
        );
        assert_eq!(out["organization"]["id"].as_i64(), Some(t.north));
        let row = st::table.find(out["id"].as_i64().unwrap());
        let row: (i64, String) = row
            .select((st::organization_id, st::status))
            .first(&mut *app.conn())
            .unwrap();
        assert_eq!(row, (t.north, "paused".to_string()));
    }
);

on_both_backends!(
    each_bad_study_field_is_refused_with_a_message_under_its_name,
    |app: TestApp| async move {
        let t = team(&app);
        let good = || {
            json!({"name": "Sleep", "description": "Nightly readings.", "organization": t.north,
                   "iconUrl": "https://example.org/i.png"})
        };
        let web_address = "https://";
        let cases: Vec<(&str, Value, &str)> = vec![
            ("name", json!(""), "Enter a name"),
            ("name", json!("   "), "Enter a name"),
            ("name", json!("x".repeat(201)), "200 characters"),
            ("name", json!(12), "text"),
            ("description", json!(""), "Describe the study"),
            ("iconUrl", json!("ftp://example.org/i.png"), web_address),
            ("iconUrl", json!("javascript:alert(1)"), web_address),
            ("iconUrl", json!("example.org/i.png"), web_address),
            ("iconUrl", json!("http://"), web_address),
            ("status", json!("done"), "active, paused or closed"),
        ];
        for (field, value, says) in cases {
            let mut body = good();
            body[field] = value.clone();
            let (status, out) = t.mel.post(STUDIES, body).await;
            assert_eq!(status, 400, "{field}={value}: {out}");
            let msg = messages(&out, field);
            assert!(
                msg.contains(says),
                "{field}={value}: {msg:?} lacks {says:?}"
            );
        }
        // Every bad field at once: a message under each.
        let all_bad = json!({"name": "", "description": " ", "organization": t.north,
                             "iconUrl": "javascript:alert(1)", "status": "done"});
        let (status, out) = t.mel.post(STUDIES, all_bad).await;
        assert_eq!(status, 400, "{out}");
        assert_eq!(keys(&out), "description iconUrl name status");

        let mut body = good();
        body.as_object_mut().unwrap().remove("organization");
        let (status, out) = t.mel.post(STUDIES, body).await;
        assert_eq!(status, 400, "{out}");
        assert!(messages(&out, "organization").contains("organization"));
        let count: i64 = st::table.count().get_result(&mut *app.conn()).unwrap();
        assert_eq!(count, 0, "nothing was stored");
        t.mel.study(t.north, "Fine").await; // and a good body is fine

        // http:// is allowed as well as https://.
        let mut body = good();
        body["iconUrl"] = json!("http://example.org/i.png");
        assert_eq!(t.mel.post(STUDIES, body).await.0, 201);
    }
);

on_both_backends!(
    patch_changes_only_what_is_sent_and_a_study_stays_in_its_organization,
    |app: TestApp| async move {
        let t = team(&app);
        let body = json!({"name": "Sleep", "description": "Nightly readings.",
                          "organization": t.north, "iconUrl": "https://example.org/i.png"});
        let (_, before) = t.mel.post(STUDIES, body).await;
        let id = before["id"].as_i64().unwrap();
        let path = one(id);

        let (status, after) = t.mel.patch(&path, json!({"description": "Weekly."})).await;
        assert_eq!(status, 200, "{after}");
        let mut expected = before.clone();
        expected["description"] = json!("Weekly.");
        assert_eq!(after, expected, "only the description changed");

        let (status, out) = t
            .mia
            .patch(&path, json!({"status": "closed", "iconUrl": ""}))
            .await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(
            (s(&out, "status"), &out["iconUrl"]),
            ("closed", &Value::Null),
            "icon cleared"
        );

        let bad = [
            (json!({"iconUrl": "javascript:alert(1)"}), "iconUrl"),
            (json!({"name": ""}), "name"),
            (json!({"status": "finished"}), "status"),
            (
                json!({"organization": t.south, "name": "Moved"}),
                "organization",
            ),
        ];
        for (body, field) in bad {
            let (status, out) = t.mel.patch(&path, body.clone()).await;
            assert_eq!(status, 400, "{body}: {out}");
            messages(&out, field);
        }
        let (_, now) = t.mel.get(&path).await;
        assert_eq!(
            fields(&now),
            ["Sleep", "Weekly.", "closed"],
            "refused changes left nothing"
        );
        assert_eq!(now["organization"]["id"].as_i64(), Some(t.north));
        // Naming its own organization is fine.
        let (status, out) = t
            .mel
            .patch(&path, json!({"organization": t.north, "name": "Rest"}))
            .await;
        assert_eq!((status, s(&out, "name")), (200, "Rest"), "{out}");
        assert_eq!(
            t.mel.patch(&one(999_999), json!({"name": "X"})).await.0,
            404
        );
    }
);

// ---- list ------------------------------------------------------------------------------------

on_both_backends!(
    the_study_list_pages_filters_by_organization_and_status_and_searches_every_word,
    |app: TestApp| async move {
        let t = team(&app);
        for (name, description) in [
            ("Step challenge", "Walk more; 100% optional."),
            ("Sleep and heart", "Nightly heart rate."),
            ("Blood pressure", "Morning cuff readings."),
            ("asthma", "Peak flow and sleep."),
        ] {
            let body = json!({"name": name, "description": description, "organization": t.north});
            assert_eq!(t.mel.post(STUDIES, body).await.0, 201);
        }
        let body = json!({"name": "Zeta", "description": "Later.", "organization": t.north,
                          "status": "paused"});
        assert_eq!(t.mel.post(STUDIES, body).await.0, 201);
        let southern = t.oz.study(t.south, "Southern sleep").await;

        let all = [
            "asthma",
            "Blood pressure",
            "Sleep and heart",
            "Step challenge",
            "Zeta",
        ];
        for query in [
            String::new(),
            format!("?organization_id={}", t.north),
            format!("?organizationId={}", t.north),
        ] {
            let (status, out) = t.mel.get(&format!("{STUDIES}{query}")).await;
            assert_eq!(status, 200, "{query}: {out}");
            assert_eq!(out["count"].as_i64(), Some(5), "{query}");
            assert_eq!(
                names(&out["results"]),
                all,
                "{query}: by name, ignoring case"
            );
            assert_eq!(s(&out["results"][0]["organization"], "name"), "North");
        }
        let (status, out) = t.oz.get(STUDIES).await;
        assert_eq!(
            (status, ids(&out["results"])),
            (200, vec![southern]),
            "only South's"
        );
        let (status, out) = t
            .mel
            .get(&format!("{STUDIES}?organization_id={}", t.south))
            .await;
        assert_eq!(status, 404, "an organization mel is not in: {out}");

        let search = |q: &str| format!("{STUDIES}?organization_id={}&q={}", t.north, urlencode(q));
        let cases: Vec<(&str, Vec<&str>)> = vec![
            ("sleep", vec!["asthma", "Sleep and heart"]),
            ("SLEEP heart", vec!["Sleep and heart"]),
            ("heart sleep", vec!["Sleep and heart"]),
            ("cuff", vec!["Blood pressure"]),
            ("0%", vec!["Step challenge"]),
            ("10%", vec![]),
            ("ep_a", vec![]),
            ("sleep nothing", vec![]),
        ];
        for (q, expected) in cases {
            let (status, out) = t.mel.get(&search(q)).await;
            assert_eq!(status, 200, "q={q}: {out}");
            assert_eq!(names(&out["results"]), expected, "q={q:?}");
            assert_eq!(
                out["count"].as_u64(),
                Some(expected.len() as u64),
                "q={q:?}"
            );
        }
        let (_, out) = t.mel.get(&format!("{STUDIES}?status=paused")).await;
        assert_eq!(names(&out["results"]), ["Zeta"]);
        assert_eq!(t.mel.get(&format!("{STUDIES}?status=done")).await.0, 400);
        assert_eq!(
            t.mel.get(&format!("{STUDIES}?organization_id=abc")).await.0,
            400
        );

        // Paging: absolute links that keep the filter, and no page past the end.
        let (status, first) = t.mel.get(&format!("{STUDIES}?pageSize=2&q=e")).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(
            (first["count"].as_i64(), names(&first["results"]).len()),
            (Some(5), 2)
        );
        assert!(first["previous"].is_null());
        let next = s(&first, "next");
        assert!(
            next.starts_with(&format!("{}{STUDIES}?", app.url)),
            "absolute: {next}"
        );
        assert!(next.contains("pageSize=2") && next.contains("q=e") && next.contains("page=2"));
        let (_, second) = t.mel.get(next).await;
        let (_, third) = t.mel.get(s(&second, "next")).await;
        assert_eq!(names(&third["results"]), ["Zeta"]);
        assert!(third["next"].is_null());
        assert!(s(&third, "previous").contains("page=2"));
        let mut seen = names(&first["results"]);
        seen.extend(names(&second["results"]));
        seen.extend(names(&third["results"]));
        assert_eq!(seen, all, "each study once, in order");
        let (status, out) = t.mel.get(&format!("{STUDIES}?pageSize=2&page=4")).await;
        assert_eq!((status, out), (404, json!({"detail": "Invalid page."})));
        for bad in ["pageSize=0", "page_size=1001", "page=0"] {
            assert_eq!(t.mel.get(&format!("{STUDIES}?{bad}")).await.0, 400, "{bad}");
        }
    }
);

on_both_backends!(
    the_study_search_finds_a_name_with_an_accented_capital_in_any_case,
    |app: TestApp| async move {
        let t = team(&app);
        let id = t.mel.study(t.north, "Étude du sommeil").await;
        for q in ["Étude", "étude", "ÉTUDE"] {
            let path = format!("{STUDIES}?q={}", urlencode(q));
            let (status, out) = t.mel.get(&path).await;
            assert_eq!(status, 200, "{out}");
            assert_eq!(
                ids(&out["results"]),
                vec![id],
                "q={q:?} finds Étude du sommeil"
            );
        }
    }
);

// ---- who may do what -------------------------------------------------------------------------

on_both_backends!(
    managers_and_members_write_viewers_only_read_and_outsiders_are_told_nothing,
    |app: TestApp| async move {
        let t = team(&app);
        let (mia, mel, val, oz) = (&t.mia, &t.mel, &t.val, &t.oz);
        let john = mel.patient(t.north, "john@x.org").await;
        let body = |name: &str| json!({"name": name, "description": "D.", "organization": t.north});

        // Create.
        let (status, out) = val.post(STUDIES, body("By viewer")).await;
        assert_eq!(status, 403, "{out}");
        assert!(detail(&out).contains("role"), "says why: {out}");
        let (status, out) = oz.post(STUDIES, body("By outsider")).await;
        assert_eq!(status, 404, "North does not exist for an outsider: {out}");
        let by_mia = mia.study(t.north, "By manager").await;
        let id = mel.study(t.north, "By member").await;
        assert_eq!(
            mia.post(&sub(id, "scope_requests"), json!({"scopeCodeId": HEART}))
                .await
                .0,
            201
        );

        // Reads.
        for what in ["", "/scope_requests", "/data_sources", "/patients"] {
            let path = format!("{}{what}", one(id));
            for who in [mia, mel, val] {
                assert_eq!(who.get(&path).await.0, 200, "{path}");
            }
            let (status, out) = oz.get(&path).await;
            assert_eq!(status, 404, "{path}: {out}");
            assert!(!detail(&out).contains("role"), "404, not a hint: {out}");
        }
        let (_, listed) = val.get(STUDIES).await;
        assert_eq!(listed["count"].as_i64(), Some(2), "a viewer lists them");
        let (_, listed) = oz.get(STUDIES).await;
        assert_eq!(
            listed["count"].as_i64(),
            Some(0),
            "an outsider lists none of them"
        );

        // Writes: viewers 403, outsiders 404, members and managers succeed.
        let enrol = json!({"patientIds": [john]});
        let scope = json!({"scopeCodeId": STEPS});
        for (who, status) in [(val, 403), (oz, 404)] {
            let writes = [
                ("PATCH", one(id), json!({"name": "Renamed"})),
                ("POST", sub(id, "patients"), enrol.clone()),
                ("POST", sub(id, "scope_requests"), scope.clone()),
                (
                    "DELETE",
                    sub(id, "scope_requests"),
                    json!({"scopeCodeId": HEART}),
                ),
                ("POST", sub(id, "data_sources"), json!({"dataSourceId": 1})),
                ("DELETE", one(id), Value::Null),
            ];
            for (method, path, body) in writes {
                let (got, out) = who.send(method, &path, body).await;
                assert_eq!(got, status, "{method} {path}: {out}");
            }
        }
        let (_, now) = mel.get(&one(id)).await;
        assert_eq!(s(&now, "name"), "By member", "nothing changed");
        assert_eq!(codes(&now["scopeRequests"]), [HEART_CODE]);
        assert!(enrolled(&app, id).is_empty());

        assert_eq!(mel.patch(&one(id), json!({"name": "Renamed"})).await.0, 200);
        assert_eq!(
            mia.patch(&one(by_mia), json!({"name": "Renamed too"}))
                .await
                .0,
            200
        );
        assert_eq!(mel.enrol(id, &[john]).await["enrolled"], 1);

        // Consents: a viewer may read but not record; an outsider sees no patient.
        let (status, out) = val.record(john, id, &[(HEART_CODE, true)]).await;
        assert_eq!(status, 403, "{out}");
        let (status, out) = oz.record(john, id, &[(HEART_CODE, true)]).await;
        assert_eq!(status, 404, "{out}");
        assert!(stored(&app, id, john).is_empty());
        assert_eq!(val.get(&consents_of(john)).await.0, 200);
        assert_eq!(oz.get(&consents_of(john)).await.0, 404);
        mia.decide(john, id, &[(HEART_CODE, true)]).await;
        mel.decide(john, id, &[(HEART_CODE, false)]).await;
        assert_eq!(stored(&app, id, john), [(HEART, false)]);

        for (who, status) in [(val, 403), (oz, 404)] {
            let (got, out) = who.delete(&sub(id, "patients"), enrol.clone()).await;
            assert_eq!(got, status, "unenrol: {out}");
        }
        assert_eq!(enrolled(&app, id), vec![john]);
        assert_eq!(mel.delete(&sub(id, "patients"), enrol.clone()).await.0, 200);

        // Delete.
        assert_eq!(mel.delete(&one(id), Value::Null).await, (204, Value::Null));
        assert_eq!(mia.delete(&one(by_mia), Value::Null).await.0, 204);
        assert_eq!(mel.get(&one(id)).await.0, 404);

        // No token at all.
        let anon = script();
        let kept = mel.study(t.north, "Kept").await;
        for path in [STUDIES.to_string(), one(kept), consents_of(john)] {
            let res = anon.get(app.at(&path)).send().await.unwrap();
            assert_eq!(res.status(), 401, "{path}");
            assert!(res.json::<Value>().await.unwrap()["detail"].is_string());
        }
        let res = anon
            .post(app.at(STUDIES))
            .json(&body("Anon"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let res = anon.delete(app.at(&one(kept))).send().await.unwrap();
        assert_eq!(res.status(), 401);
        let res = anon
            .get(app.at(&format!("{SOURCES}/all_scopes")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(mel.get(&one(kept)).await.0, 200, "still there");
    }
);

on_both_backends!(
    an_outsider_cannot_tell_a_study_exists_by_trying_to_move_it,
    |app: TestApp| async move {
        let t = team(&app);
        let id = t.mel.study(t.north, "Sleep").await;
        let move_it = json!({"name": "Mine", "organization": t.south});
        let (status, out) = t.oz.patch(&one(id), move_it.clone()).await;
        let (missing, _) = t.oz.patch(&one(999_999), move_it).await;
        assert_eq!(missing, 404);
        assert_eq!(
            (status, &out),
            (404, &json!({"detail": "Study not found."})),
            "the same answer as for a study that does not exist"
        );
    }
);

// ---- delete ----------------------------------------------------------------------------------

on_both_backends!(
    a_study_its_patients_uploaded_data_for_is_not_deleted_and_the_message_says_to_close_it,
    |app: TestApp| async move {
        let t = team(&app);
        let john = t.mel.patient(t.north, "john@x.org").await;
        let ann = t.mel.patient(t.north, "ann@x.org").await;
        let sleep = t.mel.study_asking(t.north, "Sleep", &[HEART]).await;
        let steps = t.mel.study_asking(t.north, "Steps", &[STEPS]).await;
        t.mel.enrol(sleep, &[john]).await;
        t.mel.enrol(steps, &[john, ann]).await;
        t.mel.decide(john, sleep, &[(HEART_CODE, true)]).await;
        t.mel.decide(john, steps, &[(STEPS_CODE, true)]).await;
        t.mel.decide(ann, steps, &[(STEPS_CODE, false)]).await;
        upload(&app, john, HEART);

        let (status, out) = t.mel.delete(&one(sleep), Value::Null).await;
        assert_eq!(status, 409, "{out}");
        let d = detail(&out);
        assert!(d.contains("Sleep cannot be deleted"), "{d}");
        assert!(d.contains("1 observation"), "{d}");
        assert!(d.contains("Close the study"), "{d}");
        assert_eq!(t.mel.get(&one(sleep)).await.0, 200, "still there");
        assert_eq!(enrolled(&app, sleep), vec![john]);
        assert_eq!(stored(&app, sleep, john), [(HEART, true)]);
        // Closing it does not make the data go away, so it still cannot be deleted.
        let (status, _) = t.mel.patch(&one(sleep), json!({"status": "closed"})).await;
        assert_eq!(status, 200);
        assert_eq!(t.mel.delete(&one(sleep), Value::Null).await.0, 409);

        // Steps does not ask for heart rate: john's upload does not hold it back.
        let (status, out) = t.mel.delete(&one(steps), Value::Null).await;
        assert_eq!((status, out), (204, Value::Null));
        assert_eq!(t.mel.get(&one(steps)).await.0, 404);
        assert!(enrolled(&app, steps).is_empty(), "enrolments went with it");
        let left: i64 = c::table
            .filter(c::study_id.eq(steps))
            .count()
            .get_result(&mut *app.conn())
            .unwrap();
        assert_eq!(left, 0, "consents went with it");
        let counters: i64 = sc::table
            .find(steps)
            .count()
            .get_result(&mut *app.conn())
            .unwrap();
        assert_eq!(counters, 0, "and its totals");
        assert_eq!(
            enrolled(&app, sleep),
            vec![john],
            "the other study is untouched"
        );
        assert_eq!(stored(&app, sleep, john), [(HEART, true)]);
        let uploads: i64 = o::table.count().get_result(&mut *app.conn()).unwrap();
        assert_eq!(uploads, 1, "observations are kept");
        let deleted = audited(&app, "study.delete");
        assert_eq!(deleted.len(), 1);
        assert_eq!(deleted[0].0.as_deref(), Some(steps.to_string().as_str()));
        assert_eq!(deleted[0].2["enrolments"], 2);
        assert_eq!(deleted[0].2["consents"], 2);
    }
);

// ---- scope requests and data sources of a study ----------------------------------------------

on_both_backends!(
    a_scope_is_requested_once_listed_and_withdrawn,
    |app: TestApp| async move {
        let t = team(&app);
        let id = t.mel.study(t.north, "Sleep").await;
        let path = sub(id, "scope_requests");
        assert_eq!(t.mel.get(&path).await, (200, json!([])));

        let (status, out) = t.mel.post(&path, json!({"scopeCodeId": HEART})).await;
        assert_eq!(status, 201, "added: {out}");
        assert_eq!(out["id"].as_i64(), Some(id), "the study comes back");
        let heart = json!({"id": HEART, "codingSystem": OMH, "codingCode": HEART_CODE,
                           "text": "Heart rate"});
        assert_eq!(out["scopeRequests"], json!([heart]));
        let (status, out) = t.mel.post(&path, json!({"scopeCodeId": HEART})).await;
        assert_eq!(status, 200, "already there: {out}");
        assert_eq!(codes(&out["scopeRequests"]), [HEART_CODE]);
        let (status, out) = t
            .mel
            .post(&path, json!({"scope_code_id": STEPS.to_string()}))
            .await;
        assert_eq!(status, 201, "snake_case, as a string: {out}");
        let rows: i64 = ssr::table
            .filter(ssr::study_id.eq(id))
            .count()
            .get_result(&mut *app.conn())
            .unwrap();
        assert_eq!(rows, 2, "one row per scope");

        let (status, listed) = t.val.get(&path).await;
        assert_eq!(status, 200);
        assert_eq!(
            ids(&listed),
            vec![HEART, STEPS],
            "a bare list, in scope order"
        );
        assert_eq!(listed[0], heart);

        for body in [
            json!({"scopeCodeId": 999}),
            json!({"scopeCodeId": "abc"}),
            json!({}),
        ] {
            let (status, out) = t.mel.post(&path, body.clone()).await;
            assert_eq!(status, 400, "{body}: {out}");
            assert!(
                messages(&out, "scopeCodeId").contains("all_scopes"),
                "{out}"
            );
        }
        assert_eq!(t.mel.get(&path).await.1, listed, "unchanged");

        let (status, out) = t.mel.delete(&path, json!({"scopeCodeId": HEART})).await;
        assert_eq!((status, out), (204, Value::Null));
        assert_eq!(ids(&t.mel.get(&path).await.1), vec![STEPS]);
        let (_, study) = t.mel.get(&one(id)).await;
        assert_eq!(codes(&study["scopeRequests"]), [STEPS_CODE]);
    }
);

/// A data source in the catalogue, made by a superuser; returns its id.
async fn source(su: &Api<'_>, name: &str, kind: &str, scopes: &[i64]) -> i64 {
    let body = json!({"name": name, "type": kind, "supportedScopes": scopes});
    let (status, out) = su.post(SOURCES, body).await;
    assert_eq!(status, 201, "create data source: {out}");
    out["id"].as_i64().unwrap()
}

on_both_backends!(
    a_data_source_is_accepted_once_listed_and_removed_and_the_catalogue_keeps_it_while_used,
    |app: TestApp| async move {
        let t = team(&app);
        let (su_u, _) = app.practitioner("su@x.org", true);
        let su = api(&app, su_u);
        let fitbit = source(&su, "Fitbit", "personal_device", &[HEART, STEPS]).await;
        let omron = source(&su, "Omron", "medical_device", &[BP]).await;
        let id = t.mel.study(t.north, "Sleep").await;
        let path = sub(id, "data_sources");
        assert_eq!(t.mel.get(&path).await, (200, json!([])));

        let (status, out) = t.mel.post(&path, json!({"dataSourceId": omron})).await;
        assert_eq!(status, 201, "{out}");
        let (status, out) = t.mel.post(&path, json!({"data_source_id": fitbit})).await;
        assert_eq!(status, 201, "snake_case: {out}");
        let (status, out) = t.mel.post(&path, json!({"dataSourceId": fitbit})).await;
        assert_eq!(status, 200, "already there: {out}");
        assert_eq!(
            names(&out["dataSources"]),
            ["Fitbit", "Omron"],
            "by name, once each"
        );
        let fit = &out["dataSources"][0];
        assert_eq!(
            (fit["id"].as_i64(), s(fit, "type")),
            (Some(fitbit), "personal_device")
        );
        assert_eq!(codes(&fit["supportedScopes"]), [HEART_CODE, STEPS_CODE]);
        let (status, listed) = t.val.get(&path).await;
        assert_eq!((status, &listed), (200, &out["dataSources"]), "a bare list");

        for body in [json!({"dataSourceId": 999_999}), json!({})] {
            let (status, out) = t.mel.post(&path, body.clone()).await;
            assert_eq!(status, 400, "{body}: {out}");
            messages(&out, "dataSourceId");
        }

        // The catalogue keeps a source while a study accepts it.
        let (status, out) = su.delete(&format!("{SOURCES}/{omron}"), Value::Null).await;
        assert_eq!(status, 409, "{out}");
        let d = detail(&out);
        assert!(
            d.contains("Omron cannot be deleted") && d.contains("1 study"),
            "{d}"
        );
        assert_eq!(su.get(&format!("{SOURCES}/{omron}")).await.0, 200);
        let (status, out) = t
            .mel
            .delete(&format!("{SOURCES}/{omron}"), Value::Null)
            .await;
        assert_eq!(status, 403, "only superusers: {out}");

        let (status, out) = t.mel.delete(&path, json!({"dataSourceId": omron})).await;
        assert_eq!((status, out), (204, Value::Null));
        assert_eq!(names(&t.mel.get(&path).await.1), ["Fitbit"]);
        let (status, _) = su.delete(&format!("{SOURCES}/{omron}"), Value::Null).await;
        assert_eq!(status, 204, "no longer used");
        assert_eq!(su.get(&format!("{SOURCES}/{omron}")).await.0, 404);
    }
);

on_both_backends!(
    the_catalogue_lists_the_fifteen_seeded_scopes_and_only_superusers_add_sources,
    |app: TestApp| async move {
        let t = team(&app);
        let (su_u, _) = app.practitioner("su@x.org", true);
        let su = api(&app, su_u);

        let (status, scopes) = t.val.get(&format!("{SOURCES}/all_scopes")).await;
        assert_eq!(status, 200, "{scopes}");
        let list = list_of(&scopes);
        assert_eq!(
            ids(&scopes),
            (1..=15).collect::<Vec<i64>>(),
            "a bare list, by id"
        );
        let heart = json!({"id": 4, "codingSystem": OMH, "codingCode": HEART_CODE,
                           "text": "Heart rate"});
        assert_eq!(list[3], heart);
        let last = json!({"id": 15, "codingSystem": "https://w3id.org/ieee1752",
                          "codingCode": "ieee:sleep-stage-summary:1.0",
                          "text": "Sleep stage summary"});
        assert_eq!(list[14], last);
        assert!(list[..14].iter().all(|sc| s(sc, "codingSystem") == OMH));

        let empty = json!({"count": 0, "next": null, "previous": null, "results": []});
        assert_eq!(t.mel.get(SOURCES).await, (200, empty));

        let fitbit = json!({"name": "Fitbit", "type": "personal_device",
                            "supportedScopes": [HEART, STEPS]});
        let (status, out) = t.mel.post(SOURCES, fitbit.clone()).await;
        assert_eq!(status, 403, "{out}");
        assert!(detail(&out).contains("superusers"), "{out}");
        let (status, out) = su.post(SOURCES, fitbit.clone()).await;
        assert_eq!(status, 201, "{out}");
        let id = out["id"].as_i64().expect("an integer id");
        let steps = list[11].clone();
        let expected = json!({"id": id, "name": "Fitbit", "type": "personal_device",
                              "supportedScopes": [heart, steps]});
        assert_eq!(out, expected);

        let cases: Vec<(Value, &str, &str)> = vec![
            (fitbit.clone(), "name", "already in the catalogue"),
            (
                json!({"name": " Fitbit ", "type": "patient_app"}),
                "name",
                "already",
            ),
            (json!({"name": "", "type": "patient_app"}), "name", "name"),
            (
                json!({"name": "Watch", "type": "smartwatch"}),
                "type",
                "personal_device",
            ),
            (json!({"name": "Watch"}), "type", "medical_device"),
            (
                json!({"name": "Watch", "type": "patient_app", "supportedScopes": [999]}),
                "supportedScopes",
                "999",
            ),
        ];
        for (body, field, says) in cases {
            let (status, out) = su.post(SOURCES, body.clone()).await;
            assert_eq!(status, 400, "{body}: {out}");
            let msg = messages(&out, field);
            assert!(msg.contains(says), "{body}: {msg:?} lacks {says:?}");
        }
        // Scopes may also be given as the objects all_scopes lists.
        let omron =
            json!({"name": "Omron", "type": "medical_device", "supportedScopes": [{"id": BP}]});
        let (status, out) = su.post(SOURCES, omron).await;
        assert_eq!(
            (status, codes(&out["supportedScopes"])),
            (201, vec![BP_CODE]),
            "{out}"
        );

        let (status, out) = t.val.get(SOURCES).await;
        assert_eq!(status, 200);
        assert_eq!(out["count"].as_i64(), Some(2));
        assert_eq!(names(&out["results"]), ["Fitbit", "Omron"]);
        assert_eq!(out["results"][0], expected);
        let (_, first) = t.val.get(&format!("{SOURCES}?pageSize=1")).await;
        let next = s(&first, "next");
        assert!(
            next.starts_with(&format!("{}{SOURCES}?", app.url)),
            "{next}"
        );
        assert_eq!(names(&t.val.get(next).await.1["results"]), ["Omron"]);
        let (status, out) = t.val.get(&format!("{SOURCES}?page=2")).await;
        assert_eq!((status, out), (404, json!({"detail": "Invalid page."})));
    }
);

// ---- enrolment -------------------------------------------------------------------------------

on_both_backends!(
    enrolment_takes_patients_of_the_study_organization_once_and_only_while_active,
    |app: TestApp| async move {
        let t = team(&app);
        let a = t.mel.patient(t.north, "a@x.org").await;
        let b = t.mel.patient(t.north, "b@x.org").await;
        let cy = t.mel.patient(t.north, "c@x.org").await;
        let z = t.oz.patient(t.south, "z@x.org").await;
        let sleep = t.mel.study_asking(t.north, "Sleep", &[HEART]).await;
        let walk = t.mel.study_asking(t.north, "Walk", &[STEPS]).await;
        let path = sub(sleep, "patients");

        let out = t.mel.enrol(sleep, &[a, b]).await;
        assert_eq!(out, json!({"enrolled": 2, "alreadyEnrolled": 0}));
        let (status, out) = t.mel.post(&path, json!({"patient_ids": [b, cy]})).await;
        assert_eq!(
            (status, out),
            (200, json!({"enrolled": 1, "alreadyEnrolled": 1}))
        );
        let out = t.mel.enrol(sleep, &[a, b, cy]).await;
        assert_eq!(
            out,
            json!({"enrolled": 0, "alreadyEnrolled": 3}),
            "a no-op, not an error"
        );
        assert_eq!(enrolled(&app, sleep), vec![a, b, cy], "each once");

        for who in [vec![z], vec![a, z], vec![999_999]] {
            let (status, out) = t.mel.post(&path, json!({"patientIds": who})).await;
            assert_eq!((status, out), (400, json!({"detail": SAME_ORG})), "{who:?}");
        }
        let walkers = t
            .mel
            .post(&sub(walk, "patients"), json!({"patientIds": [a, z]}))
            .await;
        assert_eq!(walkers.0, 400);
        assert!(enrolled(&app, walk).is_empty(), "all or nothing");
        for body in [
            json!({"patientIds": []}),
            json!({}),
            json!({"patientIds": ["x"]}),
        ] {
            let (status, out) = t.mel.post(&path, body.clone()).await;
            assert_eq!(status, 400, "{body}: {out}");
            messages(&out, "patientIds");
        }

        // The list: a paged envelope of patient JSON, by id.
        let (status, page) = t.val.get(&format!("{path}?pageSize=2")).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            (page["count"].as_i64(), ids(&page["results"])),
            (Some(3), vec![a, b])
        );
        assert_eq!(s(&page["results"][0], "telecomEmail"), "a@x.org");
        assert_eq!(
            page["results"][0]["organizations"][0]["id"].as_i64(),
            Some(t.north)
        );
        let next = s(&page, "next");
        assert!(next.starts_with(&format!("{}{path}?", app.url)), "{next}");
        assert_eq!(ids(&t.val.get(next).await.1["results"]), vec![cy]);
        let (status, out) = t.val.get(&format!("{path}?pageSize=2&page=3")).await;
        assert_eq!((status, out), (404, json!({"detail": "Invalid page."})));

        // Removal takes the patient's decisions in this study, and only those.
        t.mel.enrol(walk, &[a]).await;
        t.mel.decide(a, sleep, &[(HEART_CODE, true)]).await;
        t.mel.decide(b, sleep, &[(HEART_CODE, false)]).await;
        t.mel.decide(a, walk, &[(STEPS_CODE, true)]).await;
        let (status, out) = t.mel.delete(&path, json!({"patientIds": [a]})).await;
        assert_eq!((status, out), (200, json!({"removed": 1})));
        assert_eq!(enrolled(&app, sleep), vec![b, cy]);
        assert!(
            stored(&app, sleep, a).is_empty(),
            "a's decisions in Sleep are gone"
        );
        assert_eq!(stored(&app, sleep, b), [(HEART, false)], "b's stay");
        assert_eq!(stored(&app, walk, a), [(STEPS, true)], "a's in Walk stay");
        assert_eq!(enrolled(&app, walk), vec![a]);
        assert_eq!(t.val.get(&path).await.1["count"].as_i64(), Some(2));
        let (status, out) = t.mel.delete(&path, json!({"patient_ids": [a]})).await;
        assert_eq!(
            (status, out),
            (200, json!({"removed": 0})),
            "not enrolled: no error"
        );
        let (_, consents) = t.mel.get(&consents_of(a)).await;
        assert_eq!(
            names(&consents["studies"]),
            ["Walk"],
            "Sleep no longer listed"
        );

        // Paused or closed: no new enrolments, and the message says why.
        for status_now in ["paused", "closed"] {
            let (got, _) = t
                .mel
                .patch(&one(sleep), json!({"status": status_now}))
                .await;
            assert_eq!(got, 200);
            let (status, out) = t.mel.post(&path, json!({"patientIds": [a]})).await;
            assert_eq!(status, 409, "{status_now}: {out}");
            let d = detail(&out);
            assert!(d.contains(&format!("Sleep is {status_now}")), "{d}");
            assert!(d.contains("active"), "says how to fix it: {d}");
            let again = t.mel.enrol(sleep, &[b]).await;
            assert_eq!(
                again,
                json!({"enrolled": 0, "alreadyEnrolled": 1}),
                "{status_now}"
            );
        }
        assert_eq!(enrolled(&app, sleep), vec![b, cy], "a was not enrolled");
        t.mel.patch(&one(sleep), json!({"status": "active"})).await;
        assert_eq!(t.mel.enrol(sleep, &[a]).await["enrolled"], 1);
    }
);

on_both_backends!(
    a_patient_listed_twice_in_one_request_is_enrolled_once_and_counted_once,
    |app: TestApp| async move {
        let t = team(&app);
        let a = t.mel.patient(t.north, "a@x.org").await;
        let sleep = t.mel.study(t.north, "Sleep").await;
        let out = t.mel.enrol(sleep, &[a, a]).await;
        assert_eq!(enrolled(&app, sleep), vec![a]);
        assert_eq!(
            out,
            json!({"enrolled": 1, "alreadyEnrolled": 0}),
            "a was not enrolled before"
        );
    }
);

// ---- consents --------------------------------------------------------------------------------

on_both_backends!(
    consents_are_recorded_with_a_reason_read_back_in_the_jhe_shape_and_cleared_to_pending,
    |app: TestApp| async move {
        let t = team(&app);
        let john = t.mel.patient(t.north, "john@x.org").await;
        let sleep = t.mel.study_asking(t.north, "Sleep", &[HEART, STEPS]).await;
        let walk = t.mel.study_asking(t.north, "Walk", &[STEPS]).await;
        t.mel.enrol(sleep, &[john]).await;
        t.mel.enrol(walk, &[john]).await;

        let (status, before) = t.val.get(&consents_of(john)).await;
        assert_eq!(status, 200, "{before}");
        let top = "consolidatedConsentedScopes patient studies studiesPendingConsent";
        assert_eq!(keys(&before), top);
        assert_eq!(before["patient"]["id"].as_i64(), Some(john));
        assert_eq!(s(&before["patient"], "telecomEmail"), "john@x.org");
        assert_eq!(
            (&before["consolidatedConsentedScopes"], &before["studies"]),
            (&json!([]), &json!([]))
        );
        let pending = &before["studiesPendingConsent"];
        assert_eq!(names(pending), ["Sleep", "Walk"]);
        let study_keys = "dataSources description id name organization pendingScopeConsents";
        assert_eq!(keys(&pending[0]), study_keys);
        assert_eq!(
            pending[0]["organization"],
            json!({"id": t.north, "name": "North", "type": "team"})
        );
        let cell = &pending[0]["pendingScopeConsents"][0];
        assert_eq!(keys(cell), "code consented consentedTime");
        assert_eq!(
            (&cell["consented"], &cell["consentedTime"]),
            (&Value::Null, &Value::Null)
        );
        assert_eq!(cell["code"]["id"].as_i64(), Some(HEART));
        let waiting = cells(&pending[0]["pendingScopeConsents"]);
        assert_eq!(
            waiting,
            [(HEART_CODE, None, false), (STEPS_CODE, None, false)]
        );

        // Record one decision: the answer is what GET shows.
        let (status, out) = t.mel.record(john, sleep, &[(HEART_CODE, true)]).await;
        assert_eq!(status, 200, "{out}");
        let (_, read) = t.mel.get(&consents_of(john)).await;
        assert_eq!(out, read, "POST answers with the GET shape");
        assert_eq!(names(&out["studiesPendingConsent"]), ["Sleep", "Walk"]);
        assert_eq!(
            cells(&out["studiesPendingConsent"][0]["pendingScopeConsents"]),
            [(STEPS_CODE, None, false)]
        );
        assert_eq!(names(&out["studies"]), ["Sleep"]);
        let decided = &out["studies"][0];
        assert_eq!(
            keys(decided),
            "dataSources description id name organization scopeConsents"
        );
        assert_eq!(
            cells(&decided["scopeConsents"]),
            [(HEART_CODE, Some(true), true)]
        );
        let time = s(&decided["scopeConsents"][0], "consentedTime");
        let at = chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339 with an offset");
        let age = chrono::Utc::now().signed_duration_since(at);
        assert!(age.num_seconds().abs() < 120, "recorded just now: {time}");
        assert_eq!(codes(&out["consolidatedConsentedScopes"]), [HEART_CODE]);
        let row = |app: &TestApp| -> (i64, chrono::NaiveDateTime, Option<String>) {
            let q = c::table
                .filter(c::study_id.eq(sleep))
                .filter(c::patient_id.eq(john))
                .filter(c::codeable_concept_id.eq(HEART));
            let q = q.select((c::id, c::consented_at, c::reason));
            q.first(&mut *app.conn()).unwrap()
        };
        let first = row(&app);
        assert_eq!(first.2.as_deref(), Some(REASON), "the reason is kept");

        // The same again is a no-op: one row, its time unchanged.
        let (status, again) = t.mel.record(john, sleep, &[(HEART_CODE, true)]).await;
        assert_eq!((status, &again), (200, &out), "{again}");
        assert_eq!(stored(&app, sleep, john), [(HEART, true)]);
        assert_eq!(row(&app), first, "not rewritten");

        // PATCH, two studies in one body, snake_case keys.
        let body = json!({"reason": "phone call", "study_scope_consents": [
            {"study_id": sleep, "scope_consents": [
                {"coding_system": OMH, "coding_code": STEPS_CODE, "consented": false}]},
            {"studyId": walk, "scopeConsents": [{"codingCode": STEPS_CODE, "consented": true}]}]});
        let (status, out) = t.mel.patch(&consents_of(john), body).await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["studiesPendingConsent"], json!([]), "nothing pending");
        assert_eq!(names(&out["studies"]), ["Sleep", "Walk"]);
        let sleep_cells = cells(&out["studies"][0]["scopeConsents"]);
        assert_eq!(
            sleep_cells,
            [
                (HEART_CODE, Some(true), true),
                (STEPS_CODE, Some(false), true)
            ]
        );
        assert_eq!(
            codes(&out["consolidatedConsentedScopes"]),
            [HEART_CODE, STEPS_CODE],
            "consented somewhere, once each"
        );
        assert_eq!(stored(&app, walk, john), [(STEPS, true)]);

        // A changed mind: declined now, at a new time.
        t.mel.decide(john, sleep, &[(HEART_CODE, false)]).await;
        assert_eq!(stored(&app, sleep, john), [(HEART, false), (STEPS, false)]);
        assert!(row(&app).1 > first.1, "a new decision time");

        // Without a reason nothing is recorded.
        for reason in [Value::Null, json!(""), json!("   ")] {
            let mut body = decisions(sleep, &[(HEART_CODE, true)]);
            body["reason"] = reason.clone();
            let (status, out) = t.mel.record_body(john, body).await;
            assert_eq!(status, 400, "reason={reason}: {out}");
            assert!(messages(&out, "reason").contains("Say why"), "{out}");
        }
        assert_eq!(stored(&app, sleep, john), [(HEART, false), (STEPS, false)]);

        // DELETE with the same body clears a decision: back to pending, not declined.
        t.mel.clear(john, sleep, &[HEART_CODE]).await;
        assert_eq!(stored(&app, sleep, john), [(STEPS, false)]);
        let (_, out) = t.mel.get(&consents_of(john)).await;
        assert_eq!(names(&out["studiesPendingConsent"]), ["Sleep"]);
        let back = cells(&out["studiesPendingConsent"][0]["pendingScopeConsents"]);
        assert_eq!(back, [(HEART_CODE, None, false)]);
        assert_eq!(
            cells(&out["studies"][0]["scopeConsents"]),
            [(STEPS_CODE, Some(false), true)]
        );
        assert_eq!(
            codes(&out["consolidatedConsentedScopes"]),
            [STEPS_CODE],
            "from Walk"
        );
        t.mel.clear(john, sleep, &[HEART_CODE]).await; // clearing a pending one is fine
    }
);

on_both_backends!(
    a_consent_for_an_unrequested_scope_or_an_unenrolled_patient_is_refused_and_changes_nothing,
    |app: TestApp| async move {
        let t = team(&app);
        let john = t.mel.patient(t.north, "john@x.org").await;
        let ann = t.mel.patient(t.north, "ann@x.org").await;
        let sleep = t.mel.study_asking(t.north, "Sleep", &[HEART, STEPS]).await;
        let walk = t.mel.study_asking(t.north, "Walk", &[STEPS]).await;
        t.mel.enrol(sleep, &[john]).await;
        t.mel.enrol(walk, &[john]).await;

        let (status, out) = t.mel.record(john, sleep, &[(BP_CODE, true)]).await;
        assert_eq!(status, 400, "{out}");
        let d = detail(&out);
        assert!(d.contains("Sleep does not request"), "{d}");
        assert!(
            d.contains(HEART_CODE) && d.contains(STEPS_CODE),
            "lists what it requests: {d}"
        );
        let (status, out) = t.mel.record(john, sleep, &[("omh:nope:1.0", true)]).await;
        assert_eq!(status, 400, "{out}");
        assert!(detail(&out).contains("not a known scope"), "{out}");
        let (status, out) = t.mel.record(ann, sleep, &[(HEART_CODE, true)]).await;
        assert_eq!(status, 400, "{out}");
        let d = detail(&out);
        assert!(
            d.contains("not enrolled in Sleep") && d.contains("enrol"),
            "{d}"
        );
        let (status, _) = t.mel.record(john, 999_999, &[(HEART_CODE, true)]).await;
        assert_eq!(status, 404, "an unknown study");

        // One bad entry in a body changes nothing, not even the good ones before it.
        let mut body = decisions(sleep, &[(HEART_CODE, true), (STEPS_CODE, true)]);
        let bad = json!({"studyId": walk,
                         "scopeConsents": [{"codingCode": HEART_CODE, "consented": true}]});
        body["studyScopeConsents"].as_array_mut().unwrap().push(bad);
        let (status, out) = t.mel.record_body(john, body).await;
        assert_eq!(status, 400, "{out}");
        assert!(detail(&out).contains("Walk does not request"), "{out}");

        let shapes = [
            json!({"reason": REASON}),
            json!({"reason": REASON, "studyScopeConsents": []}),
            json!({"reason": REASON, "studyScopeConsents": [{"studyId": sleep}]}),
            json!({"reason": REASON, "studyScopeConsents": [{"studyId": sleep,
                   "scopeConsents": [{"codingCode": HEART_CODE}]}]}),
        ];
        for body in shapes {
            let (status, out) = t.mel.record_body(john, body.clone()).await;
            assert_eq!(status, 400, "{body}: {out}");
            messages(&out, "studyScopeConsents");
        }
        let total: i64 = c::table.count().get_result(&mut *app.conn()).unwrap();
        assert_eq!(total, 0, "nothing was recorded");
        assert!(audited(&app, "consent.record").is_empty());
        let (_, out) = t.mel.get(&consents_of(john)).await;
        assert_eq!(out["studies"], json!([]));
    }
);

on_both_backends!(
    recording_a_consent_is_audited_with_the_reason_and_a_repeat_is_not,
    |app: TestApp| async move {
        let t = team(&app);
        let john = t.mel.patient(t.north, "john@x.org").await;
        let sleep = t.mel.study_asking(t.north, "Sleep", &[HEART]).await;
        t.mel.enrol(sleep, &[john]).await;
        t.mel.decide(john, sleep, &[(HEART_CODE, true)]).await;
        t.mel.decide(john, sleep, &[(HEART_CODE, true)]).await;
        let events = audited(&app, "consent.record");
        assert_eq!(events.len(), 1, "the repeat changed nothing: {events:?}");
        let (object, org, d) = &events[0];
        assert_eq!(
            (object.as_deref(), *org),
            (Some(john.to_string().as_str()), Some(t.north))
        );
        assert_eq!(s(d, "reason"), REASON);
        assert_eq!(d["studyId"].as_i64(), Some(sleep));
        assert_eq!(
            d["changes"],
            json!([{"scope": HEART_CODE, "from": null, "to": true}])
        );

        let mut body = decisions(sleep, &[(HEART_CODE, false)]);
        body["reason"] = json!("withdrew by phone");
        let (status, _) = t.mel.delete(&consents_of(john), body).await;
        assert_eq!(status, 204);
        let events = audited(&app, "consent.record");
        assert_eq!(events.len(), 2);
        assert_eq!(s(&events[1].2, "reason"), "withdrew by phone");
        assert_eq!(
            events[1].2["changes"],
            json!([{"scope": HEART_CODE, "from": true, "to": null}])
        );
    }
);

// ---- totals kept by triggers -----------------------------------------------------------------

/// (enrolled, responded, [(scope, consented, declined)] leaving out all-zero scopes).
type Totals = (i64, i64, Vec<(i64, i64, i64)>);

/// What the trigger-kept counters say about a study (zeros when it has no counter row).
fn kept(app: &TestApp, study: i64) -> Totals {
    let mut conn = app.conn();
    let q = sc::table.find(study).select((sc::enrolled, sc::responded));
    let (enrolled, responded) = q.first(&mut *conn).optional().unwrap().unwrap_or((0, 0));
    let q = ssc::table
        .filter(ssc::study_id.eq(study))
        .select((ssc::codeable_concept_id, ssc::consented, ssc::declined))
        .order(ssc::codeable_concept_id);
    let mut scopes: Vec<(i64, i64, i64)> = q.load(&mut *conn).unwrap();
    scopes.retain(|(_, c, d)| (*c, *d) != (0, 0));
    (enrolled, responded, scopes)
}

/// The same totals counted from the enrolment and consent rows themselves.
fn counted(app: &TestApp, study: i64) -> Totals {
    let enrolled = enrolled(app, study);
    let q = c::table.filter(c::study_id.eq(study)).select((
        c::patient_id,
        c::codeable_concept_id,
        c::consented,
    ));
    let rows: Vec<(i64, i64, bool)> = q.load(&mut *app.conn()).unwrap();
    let responded: BTreeSet<i64> = rows
        .iter()
        .map(|r| r.0)
        .filter(|p| enrolled.contains(p))
        .collect();
    let mut per: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (_, scope, yes) in rows {
        let e = per.entry(scope).or_default();
        if yes {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let scopes = per.into_iter().map(|(s, (c, d))| (s, c, d)).collect();
    (enrolled.len() as i64, responded.len() as i64, scopes)
}

/// The rows say what the script expects, and the counters agree with the rows.
fn check(app: &TestApp, when: &str, expected: &[(i64, Totals)]) {
    for (study, want) in expected {
        let rows = counted(app, *study);
        assert_eq!(&rows, want, "{when}: study {study}, counted from the rows");
        assert_eq!(
            kept(app, *study),
            rows,
            "{when}: study {study}, the counters"
        );
        let q = sp::table
            .filter(sp::study_id.eq(*study))
            .select((sp::patient_id, sp::decisions));
        let per_enrolment: Vec<(i64, i64)> = q.load(&mut *app.conn()).unwrap();
        for (patient, decisions) in per_enrolment {
            let made = stored(app, *study, patient).len() as i64;
            assert_eq!(decisions, made, "{when}: decisions of {patient} in {study}");
        }
    }
}

on_both_backends!(
    study_totals_kept_by_triggers_match_the_enrolments_and_consents_they_count,
    |app: TestApp| async move {
        let (uid, mel) = app.practitioner("mel@x.org", false);
        let north = app.org("North", 0, &[(mel, "member")]);
        let south = app.org("South", 0, &[(mel, "member")]);
        let mel = api(&app, uid);
        let sleep = mel.study_asking(north, "Sleep", &[HEART, STEPS]).await;
        let walk = mel.study_asking(north, "Walk", &[STEPS]).await;
        let far = mel.study_asking(south, "Far", &[HEART]).await;
        let none = (0, 0, vec![]);
        check(
            &app,
            "new studies",
            &[
                (sleep, none.clone()),
                (walk, none.clone()),
                (far, none.clone()),
            ],
        );
        let counter_rows: i64 = sc::table
            .filter(sc::study_id.eq_any([sleep, walk, far]))
            .count()
            .get_result(&mut *app.conn())
            .unwrap();
        assert_eq!(counter_rows, 3, "each new study has its counter row");

        let p: Vec<i64> = {
            let mut v = Vec::new();
            for i in 1..=4 {
                v.push(mel.patient(north, &format!("p{i}@x.org")).await);
            }
            v
        };
        let add = format!(
            "/api/v1/patients/{}/global_add_organization?organizationId={south}",
            p[3]
        );
        assert_eq!(mel.patch(&add, Value::Null).await.0, 200);

        mel.enrol(sleep, &p).await; // one multi-row insert
        mel.enrol(walk, &[p[0], p[1]]).await;
        mel.enrol(far, &[p[3]]).await;
        check(
            &app,
            "enrolled",
            &[
                (sleep, (4, 0, vec![])),
                (walk, (2, 0, vec![])),
                (far, (1, 0, vec![])),
            ],
        );

        mel.decide(p[0], sleep, &[(HEART_CODE, true), (STEPS_CODE, true)])
            .await;
        mel.decide(p[1], sleep, &[(HEART_CODE, false)]).await;
        mel.decide(p[2], sleep, &[(STEPS_CODE, true)]).await;
        mel.decide(p[3], sleep, &[(HEART_CODE, true)]).await;
        mel.decide(p[0], walk, &[(STEPS_CODE, false)]).await;
        mel.decide(p[1], walk, &[(STEPS_CODE, true)]).await;
        mel.decide(p[3], far, &[(HEART_CODE, true)]).await;
        let walk_both = (2, 2, vec![(STEPS, 1, 1)]);
        let far_one = (1, 1, vec![(HEART, 1, 0)]);
        check(
            &app,
            "decided",
            &[
                (sleep, (4, 4, vec![(HEART, 2, 1), (STEPS, 2, 0)])),
                (walk, walk_both.clone()),
                (far, far_one.clone()),
            ],
        );

        mel.decide(p[1], sleep, &[(HEART_CODE, true)]).await;
        mel.decide(p[2], sleep, &[(STEPS_CODE, false)]).await;
        mel.decide(p[0], sleep, &[(HEART_CODE, true)]).await; // a repeat
        check(
            &app,
            "changed minds",
            &[(sleep, (4, 4, vec![(HEART, 3, 0), (STEPS, 1, 1)]))],
        );

        mel.clear(p[2], sleep, &[STEPS_CODE]).await;
        check(
            &app,
            "cleared",
            &[(sleep, (4, 3, vec![(HEART, 3, 0), (STEPS, 1, 0)]))],
        );

        let out = mel
            .delete(&sub(sleep, "patients"), json!({"patientIds": [p[0], p[2]]}))
            .await;
        assert_eq!(out, (200, json!({"removed": 2})));
        check(
            &app,
            "unenrolled two",
            &[
                (sleep, (2, 2, vec![(HEART, 2, 0)])),
                (walk, walk_both.clone()),
            ],
        );

        // Out of North: its enrolments and decisions there go, those in South stay.
        let remove = |id: i64, org: i64| format!("/api/v1/patients/{id}?organizationId={org}");
        assert_eq!(mel.delete(&remove(p[3], north), Value::Null).await.0, 204);
        check(
            &app,
            "p4 left North",
            &[
                (sleep, (1, 1, vec![(HEART, 1, 0)])),
                (walk, walk_both),
                (far, far_one.clone()),
            ],
        );
        // Out of the last organization: the record goes, with decisions in two studies.
        assert_eq!(mel.delete(&remove(p[1], north), Value::Null).await.0, 204);
        check(
            &app,
            "p2 removed",
            &[
                (sleep, none.clone()),
                (walk, (1, 1, vec![(STEPS, 0, 1)])),
                (far, far_one),
            ],
        );
        assert_eq!(mel.delete(&remove(p[3], south), Value::Null).await.0, 204);
        check(&app, "p4 removed", &[(far, none.clone())]);

        // Enrol again after all that: the counters start from where the rows are.
        mel.enrol(sleep, &[p[0], p[2]]).await;
        mel.decide(p[2], sleep, &[(HEART_CODE, false), (STEPS_CODE, true)])
            .await;
        check(
            &app,
            "back again",
            &[(sleep, (2, 1, vec![(HEART, 0, 1), (STEPS, 1, 0)]))],
        );
    }
);
