//! The Observations tab as a practitioner sees it: empty states, the list (readable values,
//! newest first, filters by study, data type, patient and dates, nothing of another
//! organization), key paging, times in the viewer's zone, one observation's page, the chart,
//! and the CSV and FHIR NDJSON exports. Observations arrive as a device would send them: FHIR
//! batch bundles of Open mHealth data points, after consent through /api/v1.

mod common;

use std::cell::Cell;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::html::Page;
use common::*;
use reqwest::cookie::Jar;
use serde_json::{json, Value};

// ---- helpers ---------------------------------------------------------------------------------

const OMH: &str = "https://w3id.org/openmhealth";
/// Seeded scope ids (the foundation migration gives the 15 codes ids 1..15 in order).
const BP: i64 = 2;
const HR: i64 = 4;
const BP_CODE: &str = "omh:blood-pressure:4.0";
const HR_CODE: &str = "omh:heart-rate:2.0";
const STEPS_CODE: &str = "omh:step-count:3.0";
const UUID_SYSTEM: &str = "urn:ietf:rfc:3986";
const CSV_HEAD: &str = "id,patient_id,family_name,given_name,coding_system,coding_code,data_type,effective_start,effective_end,status,identifier_system,identifier_value,data_source_id,received";
const HEADERS: [&str; 8] = [
    "ID",
    "Patient",
    "Data type",
    "Value",
    "Effective",
    "Data source",
    "Status",
    "Received",
];

/// What one uploaded data point measured.
#[derive(Clone, Copy)]
enum Reading {
    Bp(i64, i64),
    Hr(i64),
}

fn example(file: &str) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/omh-examples");
    let text = std::fs::read_to_string(format!("{dir}/{file}")).expect("an OMH example");
    serde_json::from_str(&text).expect("example JSON")
}

/// An OMH data point: the shipped example with this uuid, reading and effective time.
fn point(r: Reading, uuid: &str, at: &str) -> Value {
    let mut doc = match r {
        Reading::Bp(..) => example("omh_blood-pressure_4-0.json"),
        Reading::Hr(_) => example("omh_heart-rate_2-0.json"),
    };
    doc["header"]["uuid"] = json!(uuid);
    doc["header"]["source_creation_date_time"] = json!(at);
    doc["body"]["effective_time_frame"] = json!({ "date_time": at });
    match r {
        Reading::Bp(s, d) => {
            doc["body"]["systolic_blood_pressure"]["value"] = json!(s);
            doc["body"]["diastolic_blood_pressure"]["value"] = json!(d);
        }
        Reading::Hr(h) => doc["body"]["heart_rate"]["value"] = json!(h),
    }
    doc
}

fn code_of(r: Reading) -> &'static str {
    match r {
        Reading::Bp(..) => BP_CODE,
        Reading::Hr(_) => HR_CODE,
    }
}

/// A practitioner of one organization: a browser whose cookies the test can add to, and a token.
struct Clinic<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    jar: Arc<Jar>,
    token: String,
    org: i64,
    device: i64,
    /// Uuids handed out so far, so every data point has its own.
    uuids: Cell<u32>,
}

/// A data source in the catalogue, made by the first-run administrator (a superuser).
async fn device(app: &TestApp, name: &str) -> i64 {
    let res = script()
        .post(app.at("/api/v1/data_sources"))
        .bearer_auth(app.token(app.admin_user_id()))
        .json(&json!({"name": name, "type": "personal_device"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "create data source");
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

/// A member of a new organization `name`, signed in, uploading with the data source `device`.
async fn clinic<'a>(app: &'a TestApp, name: &str, email: &str, device: i64) -> Clinic<'a> {
    let (uid, pid) = app.practitioner(email, false);
    let org = app.org(name, 0, &[(pid, "member")]);
    let secret = cohort::auth::code::create_link(&mut app.conn(), uid).unwrap();
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client.get(app.at(&format!("/auth/link/{secret}")));
    assert_eq!(res.send().await.unwrap().status(), 303, "signed in");
    Clinic {
        app,
        client,
        jar,
        token: app.token(uid),
        org,
        device,
        uuids: Cell::new(0),
    }
}

impl Clinic<'_> {
    async fn get(&self, path: &str) -> (u16, Page) {
        self.app.get_html(&self.client, path).await
    }

    /// The list page of this organization with `extra` query pairs; it must answer 200.
    async fn list(&self, extra: &str) -> Page {
        let (status, page) = self
            .get(&format!(
                "/observations?organization_id={}{extra}",
                self.org
            ))
            .await;
        assert_eq!(status, 200, "{extra}: {}", page.source);
        page
    }

    async fn api(&self, path: &str, body: Value) -> Value {
        let req = script().post(self.app.at(path)).bearer_auth(&self.token);
        let res = req.json(&body).send().await.unwrap();
        let status = res.status();
        let out: Value = res.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {out}");
        out
    }

    async fn patient(&self, family: &str, given: &str, email: &str) -> i64 {
        let body = json!({"organizationId": self.org, "telecomEmail": email,
                          "nameFamily": family, "nameGiven": given, "birthDate": "1980-01-01"});
        self.api("/api/v1/patients", body).await["id"]
            .as_i64()
            .unwrap()
    }

    /// A study requesting `scopes` with `patients` enrolled.
    async fn study(&self, name: &str, scopes: &[i64], patients: &[i64]) -> i64 {
        let body = json!({"name": name, "description": "About it.", "organization": self.org});
        let id = self.api("/api/v1/studies", body).await["id"]
            .as_i64()
            .unwrap();
        for s in scopes {
            let path = format!("/api/v1/studies/{id}/scope_requests");
            self.api(&path, json!({ "scopeCodeId": s })).await;
        }
        let path = format!("/api/v1/studies/{id}/patients");
        self.api(&path, json!({ "patientIds": patients })).await;
        id
    }

    /// Consent to share `codes` in `study`, recorded on the patient's behalf.
    async fn consent(&self, patient: i64, study: i64, codes: &[&str]) {
        let scopes: Vec<Value> = codes
            .iter()
            .map(|c| json!({"codingSystem": OMH, "codingCode": c, "consented": true}))
            .collect();
        let body = json!({"reason": "paper form signed 2026-03-02",
            "studyScopeConsents": [{"studyId": study, "scopeConsents": scopes}]});
        self.api(&format!("/api/v1/patients/{patient}/consents"), body)
            .await;
    }

    fn uuid(&self) -> String {
        let n = self.uuids.get() + 1;
        self.uuids.set(n);
        format!("{:08x}-0000-4000-8000-{n:012x}", self.org)
    }

    fn resource(&self, patient: i64, r: Reading, uuid: &str, at: &str) -> Value {
        let text = point(r, uuid, at).to_string();
        json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": OMH, "code": code_of(r)}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "device": {"reference": format!("Device/{}", self.device)},
            "valueAttachment": {"contentType": "application/json",
                "data": B64.encode(text)},
        })
    }

    /// Uploads (patient, reading, effective time) in one batch; every entry must be created.
    /// Returns the new ids and uuids in the same order.
    async fn upload(&self, points: &[(i64, Reading, &str)]) -> Vec<(i64, String)> {
        let mut uuids = Vec::new();
        let mut entry = Vec::new();
        for (patient, r, at) in points {
            let uuid = self.uuid();
            entry.push(json!({"resource": self.resource(*patient, *r, &uuid, at),
                              "request": {"method": "POST", "url": "Observation"}}));
            uuids.push(uuid);
        }
        let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": entry});
        let out = self.api("/FHIR/R5", bundle).await;
        let entries = out["entry"].as_array().unwrap();
        assert_eq!(entries.len(), points.len(), "{out}");
        entries
            .iter()
            .zip(uuids)
            .map(|(e, uuid)| {
                assert_eq!(e["response"]["status"], "201 Created", "{e}");
                let loc = e["response"]["location"].as_str().unwrap();
                (loc.rsplit('/').next().unwrap().parse().unwrap(), uuid)
            })
            .collect()
    }

    fn set_zone(&self, zone: &str) {
        let url = url::Url::parse(&self.app.url).unwrap();
        self.jar.add_cookie_str(&format!("tz={zone}; Path=/"), &url);
    }

    async fn export(&self, kind: &str, extra: &str) -> (u16, String, String, String) {
        let path = format!(
            "/observations/export.{kind}?organization_id={}{extra}",
            self.org
        );
        let res = self.client.get(self.app.at(&path)).send().await.unwrap();
        let header = |n: &str| {
            res.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let (ct, cd) = (header("content-type"), header("content-disposition"));
        (res.status().as_u16(), ct, cd, res.text().await.unwrap())
    }
}

/// The cells of column `n` (1-based) of the table, top to bottom.
fn column(page: &Page, n: usize) -> Vec<String> {
    page.texts(&format!("table.data tbody tr td:nth-child({n})"))
}

fn ids(page: &Page) -> Vec<i64> {
    column(page, 1).iter().map(|s| s.parse().unwrap()).collect()
}

fn said(page: &Page) -> String {
    page.text(".empty p")
}

fn heading(page: &Page) -> String {
    page.text(".empty h2")
}

fn lede(page: &Page) -> String {
    page.text(".lede")
}

fn options(page: &Page, select: &str) -> Vec<String> {
    page.texts(&format!("#{select} option"))
}

fn pager(page: &Page) -> String {
    page.text("nav.pagination p")
}

/// The link of the pagination nav with `rel`, if it is a link.
fn rel(page: &Page, rel: &str) -> Option<String> {
    page.attr(&format!("nav.pagination a[rel={rel}]"), "href")
}

fn newest_link(page: &Page) -> Option<String> {
    let sel = scraper::Selector::parse("nav.pagination a").unwrap();
    page.doc
        .select(&sel)
        .find(|a| a.text().collect::<String>().trim() == "Newest")
        .and_then(|a| a.value().attr("href").map(str::to_string))
}

/// The text of an element as written, whitespace kept.
fn raw(page: &Page, css: &str, nth: usize) -> String {
    let sel = scraper::Selector::parse(css).unwrap();
    let el = page.doc.select(&sel).nth(nth).expect(css);
    el.text().collect()
}

/// North with Ann Alvarez and Bob Brown (e-mail zeta@x.org), two studies and five readings;
/// South with one newer reading that North must never see.
struct World<'a> {
    north: Clinic<'a>,
    south: Clinic<'a>,
    ann: i64,
    bob: i64,
    sam: i64,
    /// Pressure requests blood pressure, Ann enrolled; Pulse requests both, Ann and Bob.
    pressure: i64,
    pulse: i64,
    /// Ann BP 120/80 (01-10), Ann HR 72 (01-11), Bob BP 130/85 (01-12), Bob HR 64 (01-13),
    /// Ann BP 118/76 (01-14); (id, uuid). Newest first: a3, b2, b1, a2, a1.
    a1: (i64, String),
    a2: (i64, String),
    b1: (i64, String),
    b2: (i64, String),
    a3: (i64, String),
    s1: i64,
}

async fn world(app: &TestApp) -> World<'_> {
    let omron = device(app, "Omron Cuff").await;
    let north = clinic(app, "North", "ana@x.org", omron).await;
    let ann = north.patient("Alvarez", "Ann", "ann@x.org").await;
    let bob = north.patient("Brown", "Bob", "zeta@x.org").await;
    let pressure = north.study("Pressure", &[BP], &[ann]).await;
    let pulse = north.study("Pulse", &[BP, HR], &[ann, bob]).await;
    north.consent(ann, pressure, &[BP_CODE]).await;
    north.consent(ann, pulse, &[HR_CODE]).await;
    north.consent(bob, pulse, &[BP_CODE, HR_CODE]).await;
    // Uploaded out of time order, so id order is not the list's order.
    let mut made = north
        .upload(&[
            (bob, Reading::Bp(130, 85), "2025-01-12T10:00:00Z"),
            (ann, Reading::Bp(120, 80), "2025-01-10T08:00:00Z"),
            (ann, Reading::Bp(118, 76), "2025-01-14T12:00:00Z"),
            (ann, Reading::Hr(72), "2025-01-11T09:00:00Z"),
            (bob, Reading::Hr(64), "2025-01-13T11:00:00Z"),
        ])
        .await
        .into_iter();
    let mut next = || made.next().unwrap();
    let (b1, a1, a3, a2, b2) = (next(), next(), next(), next(), next());
    let south = clinic(app, "South", "oz@y.org", omron).await;
    let sam = south.patient("Stone", "Sam", "sam@y.org").await;
    let s = south.study("Pressure", &[BP], &[sam]).await;
    south.consent(sam, s, &[BP_CODE]).await;
    let s1 = south
        .upload(&[(sam, Reading::Bp(140, 90), "2025-01-15T10:00:00Z")])
        .await[0]
        .0;
    World {
        north,
        south,
        ann,
        bob,
        sam,
        pressure,
        pulse,
        a1,
        a2,
        b1,
        b2,
        a3,
        s1,
    }
}

// ---- empty states ------------------------------------------------------------------------------

on_both_backends!(
    empty_states_say_why_and_what_to_do_next_and_every_input_is_labelled,
    |app: TestApp| async move {
        let omron = device(&app, "Omron Cuff").await;
        let north = clinic(&app, "North", "ana@x.org", omron).await;
        let ann = north.patient("Alvarez", "Ann", "ann@x.org").await;

        let page = north.list("").await;
        assert_eq!(heading(&page), "No observations yet");
        assert!(said(&page).contains("POST /FHIR/R5/Observation"));
        let next = format!("/studies?organization_id={}", north.org);
        assert_eq!(page.attr(".empty a.btn", "href"), Some(next));
        assert_eq!(page.text(".empty a.btn"), "Go to Studies");
        assert_eq!(lede(&page), "North · newest first · times in UTC");
        assert_eq!(page.count("table.data"), 0);
        assert_eq!(page.count("a[href^='/observations/export']"), 0);
        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());

        let study = north.study("Pressure", &[BP], &[ann]).await;
        north.consent(ann, study, &[BP_CODE]).await;
        north
            .upload(&[(ann, Reading::Bp(120, 80), "2025-01-10T08:00:00Z")])
            .await;
        let clear = format!("/observations?organization_id={}", north.org);
        for extra in [
            format!("&code={HR_CODE}"),
            "&from=2025-01-11".to_string(),
            "&to=2025-01-09".to_string(),
        ] {
            let page = north.list(&extra).await;
            assert_eq!(heading(&page), "No observation matches these filters");
            assert_eq!(
                said(&page),
                "Try another data type, a wider date range, or all studies."
            );
            assert_eq!(page.attr(".empty a.btn", "href").as_ref(), Some(&clear));
            assert_eq!(page.count("table.data"), 0, "{extra}");
            assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());
        }
        let page = north.list("&patient=nobody").await;
        assert_eq!(heading(&page), "Nothing to show");
        assert_eq!(said(&page), "No patient of North matches “nobody”.");
        assert_eq!(page.attr(".empty a.btn", "href"), Some(clear));
        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());

        // Dates that cannot be read, or run backwards, are refused.
        for extra in ["&from=2025-13-01", "&from=2025-02-01&to=2025-01-01"] {
            let path = format!("/observations?organization_id={}{extra}", north.org);
            assert_eq!(north.get(&path).await.0, 400, "{extra}");
        }

        // Someone in no organization is told how to get in.
        let (loner, _) = app.practitioner("lone@x.org", false);
        let client = app.signed_in(loner).await;
        let (status, page) = app.get_html(&client, "/observations").await;
        assert_eq!(status, 200);
        assert_eq!(heading(&page), "You are not in any organization yet");
        assert_eq!(
            page.attr(".empty a", "href").as_deref(),
            Some("/organizations")
        );
    }
);

// ---- the list ----------------------------------------------------------------------------------

on_both_backends!(
    the_list_shows_readable_values_newest_first_and_filters_by_study_type_patient_and_dates,
    |app: TestApp| async move {
        let w = world(&app).await;
        let n = &w.north;
        let page = n.list("").await;
        assert_eq!(page.texts("table.data thead th"), HEADERS);
        // Newest effective first.
        assert_eq!(ids(&page), [w.a3.0, w.b2.0, w.b1.0, w.a2.0, w.a1.0]);
        let row = |i: usize| {
            (1..=7)
                .map(|c| column(&page, c)[i].clone())
                .collect::<Vec<_>>()
        };
        let (a3, b2) = (w.a3.0, w.b2.0);
        let want = "Alvarez, Ann|Blood pressure|118/76 mmHg|2025-01-14 12:00|Omron Cuff|final";
        assert_eq!(row(0).join("|"), format!("{a3}|{want}"));
        let want = "Brown, Bob|Heart rate|64 beats/min|2025-01-13 11:00|Omron Cuff|final";
        assert_eq!(row(1).join("|"), format!("{b2}|{want}"));
        assert_eq!(column(&page, 4)[4], "120/80 mmHg");
        let patient_link = format!(
            "/observations?organization_id={}&patient_id={}",
            n.org, w.ann
        );
        let link = |c: usize| page.attr(&format!("tbody td:nth-child({c}) a"), "href");
        assert_eq!(link(2), Some(patient_link));
        assert_eq!(link(1), Some(format!("/observations/{a3}")));
        assert_eq!(pager(&page), "Showing 5 observations · page 1");
        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());
        let csv = format!(
            "/observations/export.csv?organization_id={}&page_size=20",
            n.org
        );
        assert_eq!(page.attr("a[download]", "href"), Some(csv));

        // A study: only its enrolled patients (not Bob) and its data types (not heart rate).
        let page = n.list(&format!("&study_id={}", w.pressure)).await;
        assert_eq!(ids(&page), [w.a3.0, w.a1.0]);
        assert_eq!(
            options(&page, "f-code"),
            ["All data types", "Blood pressure"]
        );
        assert_eq!(
            options(&page, "f-study_id"),
            ["All studies", "Pressure", "Pulse"]
        );
        let page = n.list(&format!("&study_id={}", w.pulse)).await;
        assert_eq!(ids(&page), [w.a3.0, w.b2.0, w.b1.0, w.a2.0, w.a1.0]);
        assert_eq!(
            options(&page, "f-code"),
            ["All data types", "Blood pressure", "Heart rate"]
        );
        let page = n
            .list(&format!("&study_id={}&code={HR_CODE}", w.pulse))
            .await;
        assert_eq!(ids(&page), [w.b2.0, w.a2.0]);

        // A data type.
        let page = n.list(&format!("&code={BP_CODE}")).await;
        assert_eq!(ids(&page), [w.a3.0, w.b1.0, w.a1.0]);
        assert_eq!(options(&page, "f-code").len(), 16, "all 15 types");

        // A patient by name, by e-mail, and by id; one match names the patient in the lede.
        let page = n.list("&patient=alvarez").await;
        assert_eq!(ids(&page), [w.a3.0, w.a2.0, w.a1.0]);
        assert_eq!(
            lede(&page),
            "North · Alvarez, Ann · newest first · times in UTC"
        );
        assert_eq!(ids(&n.list("&patient=zeta").await), [w.b2.0, w.b1.0]);
        let page = n.list("&patient=zeta%40x.org").await;
        assert_eq!(ids(&page), [w.b2.0, w.b1.0]);
        let page = n.list(&format!("&patient_id={}", w.ann)).await;
        assert_eq!(ids(&page), [w.a3.0, w.a2.0, w.a1.0]);
        let page = n
            .list(&format!("&patient_id={}&code={BP_CODE}", w.ann))
            .await;
        let chart = format!(
            "/observations/chart?organization_id={}&patient_id={}&code=omh%3Ablood-pressure%3A4.0",
            n.org, w.ann
        );
        assert_eq!(page.attr(".actions a.btn", "href"), Some(chart));

        // Dates, inclusive at both ends.
        let page = n.list("&from=2025-01-11&to=2025-01-13").await;
        assert_eq!(ids(&page), [w.b2.0, w.b1.0, w.a2.0]);
        assert_eq!(ids(&n.list("&from=2025-01-14").await), [w.a3.0]);
        assert_eq!(ids(&n.list("&to=2025-01-10").await), [w.a1.0]);

        // Never South's reading (the newest of all), whatever North asks for.
        let south = format!("/observations/{}", w.s1);
        for extra in ["", "&patient=stone", "&code=omh:blood-pressure:4.0"] {
            let page = n.list(extra).await;
            assert!(!ids(&page).contains(&w.s1), "{extra}");
            assert_eq!(page.count(&format!("a[href='{south}']")), 0);
            assert!(!page.source.contains("Stone"), "{extra}");
        }
        let page = n.list("&patient=stone").await;
        assert_eq!(said(&page), "No patient of North matches “stone”.");
        let path = format!("/observations?organization_id={}", w.south.org);
        let page = n.get(&path).await.1;
        assert!(lede(&page).starts_with("North ·"));
        assert_eq!(ids(&page), [w.a3.0, w.b2.0, w.b1.0, w.a2.0, w.a1.0]);
        let page = n.list(&format!("&patient_id={}", w.sam)).await;
        assert_eq!(said(&page), "That patient is not in this organization.");
        assert_eq!(page.count("table.data"), 0);
        // South sees its own only.
        assert_eq!(ids(&w.south.list("").await), [w.s1]);
    }
);

// ---- paging ------------------------------------------------------------------------------------

on_both_backends!(
    older_and_newer_walk_45_observations_by_key_without_repeating_a_row,
    |app: TestApp| async move {
        let omron = device(&app, "Omron Cuff").await;
        let n = clinic(&app, "North", "ana@x.org", omron).await;
        let ann = n.patient("Alvarez", "Ann", "ann@x.org").await;
        let study = n.study("Pulse", &[HR], &[ann]).await;
        n.consent(ann, study, &[HR_CODE]).await;
        // Three readings share each minute, so pages split runs of equal times.
        let times: Vec<String> = (0..45)
            .map(|i| format!("2025-02-01T10:{:02}:00Z", i / 3))
            .collect();
        let points: Vec<(i64, Reading, &str)> = times
            .iter()
            .enumerate()
            .map(|(i, t)| (ann, Reading::Hr(60 + i as i64), t.as_str()))
            .collect();
        let made: Vec<i64> = n.upload(&points).await.into_iter().map(|m| m.0).collect();
        // Newest first; equal times newest id first.
        let mut expected: Vec<(String, i64)> = times.iter().cloned().zip(made).collect();
        expected.sort_by(|a, b| b.cmp(a));
        let expected: Vec<i64> = expected.into_iter().map(|e| e.1).collect();

        let page1 = n.list("&page_size=20").await;
        assert_eq!(ids(&page1), expected[..20]);
        assert_eq!(pager(&page1), "Showing 20 observations · page 1");
        assert_eq!(rel(&page1, "prev"), None, "no Newer on the first page");
        assert_eq!(newest_link(&page1), None);
        assert_eq!(page1.count("nav.pagination [aria-disabled=true]"), 2);

        let page2 = n.get(&rel(&page1, "next").expect("Older")).await.1;
        assert_eq!(ids(&page2), expected[20..40]);
        assert_eq!(pager(&page2), "Showing 20 observations · page 2");
        let page3 = n.get(&rel(&page2, "next").expect("Older")).await.1;
        assert_eq!(ids(&page3), expected[40..]);
        assert_eq!(pager(&page3), "Showing 5 observations · page 3");
        assert_eq!(rel(&page3, "next"), None, "no Older on the last page");

        let mut seen: Vec<i64> = [&page1, &page2, &page3]
            .iter()
            .flat_map(|p| ids(p))
            .collect();
        assert_eq!(seen.len(), 45);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 45, "no row twice");

        // Back: Newer from page 3 is page 2 again, and from there the first page.
        let back2 = n.get(&rel(&page3, "prev").expect("Newer")).await.1;
        assert_eq!(ids(&back2), expected[20..40]);
        assert_eq!(pager(&back2), "Showing 20 observations · page 2");
        assert!(rel(&back2, "next").is_some(), "Older again from page 2");
        let back1 = n.get(&rel(&back2, "prev").expect("Newer")).await.1;
        assert_eq!(ids(&back1), expected[..20]);
        assert_eq!(pager(&back1), "Showing 20 observations · page 1");
        let newest = n.get(&newest_link(&page3).expect("Newest")).await.1;
        assert_eq!(ids(&newest), expected[..20]);
        assert_eq!(pager(&newest), "Showing 20 observations · page 1");

        // The links keep the filters.
        let older = rel(
            &n.list(&format!("&code={HR_CODE}&page_size=20")).await,
            "next",
        );
        assert!(older.unwrap().contains("code=omh%3Aheart-rate%3A2.0"));
        // A bigger page holds them all; an unknown size is 20.
        let all = n.list("&page_size=100").await;
        assert_eq!(ids(&all), expected);
        assert_eq!(rel(&all, "next"), None);
        assert_eq!(ids(&n.list("&page_size=7").await), expected[..20]);
    }
);

// ---- time zone ---------------------------------------------------------------------------------

on_both_backends!(
    times_and_dates_follow_the_tz_cookie_else_utc,
    |app: TestApp| async move {
        let omron = device(&app, "Omron Cuff").await;
        let n = clinic(&app, "North", "ana@x.org", omron).await;
        let ann = n.patient("Alvarez", "Ann", "ann@x.org").await;
        let study = n.study("Pulse", &[HR], &[ann]).await;
        n.consent(ann, study, &[HR_CODE]).await;
        let made = n
            .upload(&[
                (ann, Reading::Hr(70), "2025-01-15T14:30:00Z"),
                (ann, Reading::Hr(71), "2025-07-15T14:30:00Z"),
                // 21:00 on the 15th in New York, the 16th in UTC.
                (ann, Reading::Hr(72), "2025-01-16T02:00:00Z"),
            ])
            .await;
        let (winter, summer, late) = (made[0].0, made[1].0, made[2].0);

        let page = n.list("").await;
        assert_eq!(lede(&page), "North · newest first · times in UTC");
        assert_eq!(ids(&page), [summer, late, winter]);
        assert_eq!(
            column(&page, 5),
            ["2025-07-15 14:30", "2025-01-16 02:00", "2025-01-15 14:30"]
        );
        let day = "&from=2025-01-15&to=2025-01-15";
        assert_eq!(ids(&n.list(day).await), [winter]);

        n.set_zone("America/New_York");
        let page = n.list("").await;
        assert_eq!(
            lede(&page),
            "North · newest first · times in America/New_York"
        );
        assert_eq!(
            column(&page, 5),
            ["2025-07-15 10:30", "2025-01-15 21:00", "2025-01-15 09:30"]
        );
        assert_eq!(ids(&n.list(day).await), [late, winter], "a New York day");
        let (_, show) = n.get(&format!("/observations/{winter}")).await;
        assert_eq!(
            lede(&show),
            "Alvarez, Ann · 2025-01-15 09:30 (America/New_York)"
        );

        n.set_zone("Mars/Olympus_Mons");
        let page = n.list("").await;
        assert!(lede(&page).ends_with("times in UTC"));
        assert_eq!(column(&page, 5)[2], "2025-01-15 14:30");
    }
);

// ---- one observation ---------------------------------------------------------------------------

on_both_backends!(
    an_observation_page_shows_its_header_and_body_pretty_printed_and_only_to_its_organization,
    |app: TestApp| async move {
        let w = world(&app).await;
        let n = &w.north;
        let (id, uuid) = &w.a3;
        let (status, page) = n.get(&format!("/observations/{id}")).await;
        assert_eq!(status, 200, "{}", page.source);
        assert_eq!(page.text("h1"), "Blood pressure: 118/76 mmHg");
        assert_eq!(page.count("pre.json"), 2);
        let header = raw(&page, "pre.json", 0);
        assert!(header.contains(&format!("\n  \"uuid\": \"{uuid}\"")));
        assert!(header.contains("\"name\": \"blood-pressure\""), "{header}");
        let body = raw(&page, "pre.json", 1);
        assert!(body.contains("\"value\": 118"), "{body}");
        assert!(body.contains("\"value\": 76"), "{body}");
        assert!(body.contains("\"date_time\": \"2025-01-14T12:00:00Z\""));
        let props = page.texts("dl.props dd");
        assert_eq!(props[0], format!("Alvarez, Ann (ID {})", w.ann));
        assert_eq!(props[1], format!("Blood pressure {BP_CODE}"));
        assert_eq!(
            props[2..6],
            ["118/76 mmHg", "2025-01-14 12:00", "Omron Cuff", "final"]
        );
        assert_eq!(props[6], format!("{UUID_SYSTEM}|urn:uuid:{uuid}"));
        let chart = format!(
            "/observations/chart?organization_id={}&patient_id={}&code=omh%3Ablood-pressure%3A4.0",
            n.org, w.ann
        );
        assert_eq!(page.attr(".actions a.btn", "href"), Some(chart));
        assert_eq!(
            page.text(".actions a.btn"),
            "Chart blood pressure for this patient"
        );
        assert!(app
            .audit_actions()
            .contains(&"observation.read".to_string()));

        let (status, page) = n.get(&format!("/observations/{}", w.a2.0)).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "Heart rate: 72 beats/min");
        assert!(raw(&page, "pre.json", 1).contains("\"unit\": \"beats/min\""));

        // South's observation is not there for North, nor North's for South.
        let (status, page) = n.get(&format!("/observations/{}", w.s1)).await;
        assert_eq!(status, 404);
        assert!(!page.source.contains("Stone"));
        assert_eq!(w.south.get(&format!("/observations/{id}")).await.0, 404);
        assert_eq!(n.get("/observations/999999").await.0, 404);
        assert_eq!(w.south.get(&format!("/observations/{}", w.s1)).await.0, 200);
    }
);

// ---- chart -------------------------------------------------------------------------------------

on_both_backends!(
    a_chart_draws_one_line_per_series_with_its_unit_and_says_when_there_is_nothing,
    |app: TestApp| async move {
        let w = world(&app).await;
        let n = &w.north;
        let chart = |patient: i64, extra: &str| {
            format!(
                "/observations/chart?organization_id={}&patient_id={patient}{extra}",
                n.org
            )
        };
        let (status, page) = n.get(&chart(w.ann, &format!("&code={BP_CODE}"))).await;
        assert_eq!(status, 200, "{}", page.source);
        assert_eq!(page.text("h1"), "Blood pressure · Alvarez, Ann");
        assert_eq!(lede(&page), "Times in UTC · 2 readings");
        assert_eq!(page.count("svg.chart"), 1);
        assert_eq!(page.text("svg.chart > title"), "Blood pressure");
        assert_eq!(
            page.text("svg.chart > desc"),
            "4 readings from 2025-01-10 08:00 to 2025-01-14 12:00, between 76 and 120 mmHg."
        );
        assert_eq!(page.text("svg.chart text.chart-unit"), "mmHg");
        // Systolic and diastolic.
        assert_eq!(page.count("svg.chart path.chart-line"), 2);
        assert_eq!(page.count("svg.chart circle.chart-dot"), 4);
        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());

        let (status, page) = n.get(&chart(w.bob, &format!("&code={HR_CODE}"))).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("svg.chart > title"), "Heart rate");
        assert_eq!(page.text("svg.chart text.chart-unit"), "beats/min");
        assert_eq!(page.count("svg.chart path.chart-line"), 1);

        // Nothing of that type, or nothing in those dates.
        let (status, page) = n.get(&chart(w.bob, &format!("&code={STEPS_CODE}"))).await;
        assert_eq!(status, 200);
        assert_eq!(page.count("svg.chart"), 0);
        assert_eq!(heading(&page), "No readings to chart");
        assert_eq!(said(&page), "This patient has no step count readings.");
        let dates = format!("&code={BP_CODE}&from=2025-01-11&to=2025-01-13");
        let (_, page) = n.get(&chart(w.ann, &dates)).await;
        assert_eq!(page.count("svg.chart"), 0);
        assert_eq!(
            said(&page),
            "This patient has no blood pressure readings in these dates; widen the range."
        );
        let (_, page) = n.get(&chart(w.ann, "")).await;
        assert_eq!(heading(&page), "Choose a data type");

        // Another organization's patient, or none at all.
        let (status, page) = n.get(&chart(w.sam, &format!("&code={BP_CODE}"))).await;
        assert_eq!(status, 404);
        assert_eq!(page.count("svg.chart"), 0);
        let path = format!(
            "/observations/chart?organization_id={}&code={BP_CODE}",
            n.org
        );
        assert_eq!(n.get(&path).await.0, 400);
    }
);

// ---- exports -----------------------------------------------------------------------------------

on_both_backends!(
    exports_give_flat_csv_and_fhir_ndjson_of_the_filtered_set_and_are_audited,
    |app: TestApp| async move {
        let w = world(&app).await;
        let n = &w.north;
        // A family name a spreadsheet would run as a formula.
        let eve = n.patient("=cmd", "Eve", "eve@x.org").await;
        n.api(
            &format!("/api/v1/studies/{}/patients", w.pulse),
            json!({ "patientIds": [eve] }),
        )
        .await;
        n.consent(eve, w.pulse, &[BP_CODE]).await;
        let e1 = n
            .upload(&[(eve, Reading::Bp(101, 61), "2025-01-09T07:00:00Z")])
            .await[0]
            .0;
        let exports = |app: &TestApp| {
            let all = app.audit_actions();
            all.iter().filter(|a| *a == "observation.export").count()
        };
        assert_eq!(exports(&app), 0);

        let (status, ct, cd, body) = n.export("csv", &format!("&study_id={}", w.pulse)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(ct, "text/csv; charset=utf-8");
        assert!(cd.starts_with("attachment; filename=\"observations-") && cd.ends_with(".csv\""));
        let mut lines = body.lines();
        let want = format!("{CSV_HEAD},systolic_blood_pressure_value,systolic_blood_pressure_unit,diastolic_blood_pressure_value,diastolic_blood_pressure_unit,heart_rate_value,heart_rate_unit");
        assert_eq!(lines.next(), Some(want.as_str()));
        let mut reader = csv::Reader::from_reader(body.as_bytes());
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        let listed: Vec<i64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
        let mut by_id = vec![w.a1.0, w.a2.0, w.a3.0, w.b1.0, w.b2.0, e1];
        by_id.sort();
        let mut ids = listed.clone();
        ids.sort();
        assert_eq!(ids, by_id, "one row per observation");
        let keys: Vec<(String, i64)> = rows
            .iter()
            .map(|r| (r[7].clone(), r[0].parse().unwrap()))
            .collect();
        let mut oldest_first = keys.clone();
        oldest_first.sort();
        assert_eq!(keys, oldest_first, "oldest effective time first");
        let row = |id: i64| rows.iter().find(|r| r[0] == id.to_string()).unwrap();
        let a1 = row(w.a1.0);
        let (id, ann, uuid, dev) = (w.a1.0, w.ann, &w.a1.1, n.device);
        let want = format!("{id},{ann},Alvarez,Ann,{OMH},{BP_CODE},Blood pressure,2025-01-10T08:00:00+00:00,,final,{UUID_SYSTEM},urn:uuid:{uuid},{dev}");
        assert_eq!(a1[..13].join(","), want);
        assert!(
            a1[13].starts_with("20") && a1[13].ends_with("+00:00"),
            "received"
        );
        assert_eq!(a1[14..], ["120", "mmHg", "80", "mmHg", "", ""]);
        assert_eq!(row(w.b2.0)[14..], ["", "", "", "", "64", "beats/min"]);
        assert_eq!(row(e1)[2], "'=cmd", "a formula is defused");
        assert!(!body.contains(",=cmd,"));

        // Unfiltered: every North observation, South's never; value columns of every type.
        let (_, _, _, body) = n.export("csv", "").await;
        let head = body.lines().next().unwrap();
        assert!(
            head.starts_with(&format!(
                "{CSV_HEAD},blood_glucose_value,blood_glucose_unit,systolic_blood_pressure_value"
            )),
            "{head}"
        );
        assert!(head.contains(",heart_rate_value,heart_rate_unit,"));
        assert_eq!(body.lines().count(), 1 + 6);
        assert!(!body.contains("Stone"));
        assert!(!body.lines().any(|l| l.starts_with(&format!("{},", w.s1))));

        // NDJSON: one FHIR Observation per line, the filtered set.
        let (status, ct, cd, body) = n.export("ndjson", &format!("&code={HR_CODE}")).await;
        assert_eq!(status, 200);
        assert_eq!(ct, "application/fhir+ndjson");
        assert!(
            cd.starts_with("attachment; filename=\"observations-") && cd.ends_with(".ndjson\"")
        );
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let got: Vec<&str> = lines.iter().map(|o| o["id"].as_str().unwrap()).collect();
        let (lo, hi) = (w.a2.0.min(w.b2.0), w.a2.0.max(w.b2.0));
        assert_eq!(got, [lo.to_string(), hi.to_string()]);
        for o in &lines {
            assert_eq!(o["resourceType"], "Observation");
            assert_eq!(o["code"]["coding"][0]["code"], HR_CODE);
            assert_eq!(o["valueAttachment"]["contentType"], "application/json");
        }
        let a2 = &lines[usize::from(w.a2.0 > w.b2.0)];
        assert_eq!(a2["id"].as_str(), Some(w.a2.0.to_string().as_str()));
        assert_eq!(a2["subject"]["reference"], format!("Patient/{}", w.ann));
        assert_eq!(a2["device"]["reference"], format!("Device/{}", n.device));
        assert_eq!(a2["effectiveDateTime"], "2025-01-11T09:00:00+00:00");
        let data = a2["valueAttachment"]["data"].as_str().unwrap();
        let doc: Value = serde_json::from_slice(&B64.decode(data).unwrap()).unwrap();
        assert_eq!(doc, point(Reading::Hr(72), &w.a2.1, "2025-01-11T09:00:00Z"));
        let (_, _, _, body) = n.export("ndjson", &format!("&patient_id={}", w.ann)).await;
        assert_eq!(body.lines().count(), 3, "Ann's three");
        let (_, _, _, body) = n.export("ndjson", "").await;
        assert_eq!(body.lines().count(), 6);

        assert_eq!(exports(&app), 5, "each export is noted");
        // Nothing to export when the patient search finds no one; not noted.
        let (status, _, _, _) = n.export("csv", "&patient=nobody").await;
        assert_eq!(status, 400);
        assert_eq!(exports(&app), 5);
    }
);
