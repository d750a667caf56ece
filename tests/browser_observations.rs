//! The Observations tab in a real browser (headless Chromium through chromedriver): readable
//! values, the filter form driven with the keyboard only, visible focus, key paging with the
//! Older and Newer links, one observation's JSON, the chart, and the `tz` cookie the console's
//! script sets from the browser's own time zone. Data arrives as a device would send it: a
//! FHIR batch of Open mHealth data points, after consent through /api/v1.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::webdriver::Browser;
use common::*;
use serde_json::{json, Value};

const OMH: &str = "https://w3id.org/openmhealth";
/// Seeded scope ids (the foundation migration gives the 15 codes ids 1..15 in order).
const BP: i64 = 2;
const HR: i64 = 4;
const BP_CODE: &str = "omh:blood-pressure:4.0";
const HR_CODE: &str = "omh:heart-rate:2.0";
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

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

/// A POST to the API with `token`; it must succeed.
async fn api(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let res = script()
        .post(app.at(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let out: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {out}");
    out
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

async fn patient(app: &TestApp, token: &str, org: i64, name: (&str, &str), email: &str) -> i64 {
    let body = json!({"organizationId": org, "telecomEmail": email,
        "nameFamily": name.0, "nameGiven": name.1, "birthDate": "1980-01-01"});
    api(app, token, "/api/v1/patients", body).await["id"]
        .as_i64()
        .unwrap()
}

/// A study of `org` requesting `scopes` with `patients` enrolled.
async fn study(
    app: &TestApp,
    token: &str,
    org: i64,
    name: &str,
    scopes: &[i64],
    patients: &[i64],
) -> i64 {
    let body = json!({"name": name, "description": "About it.", "organization": org});
    let id = api(app, token, "/api/v1/studies", body).await["id"]
        .as_i64()
        .unwrap();
    for s in scopes {
        let path = format!("/api/v1/studies/{id}/scope_requests");
        api(app, token, &path, json!({ "scopeCodeId": s })).await;
    }
    let path = format!("/api/v1/studies/{id}/patients");
    api(app, token, &path, json!({ "patientIds": patients })).await;
    id
}

/// Consent to share blood pressure and heart rate in `study`, recorded on the patient's behalf.
async fn consent(app: &TestApp, token: &str, patient: i64, study: i64) {
    let scopes: Vec<Value> = [BP_CODE, HR_CODE]
        .iter()
        .map(|c| json!({"codingSystem": OMH, "codingCode": c, "consented": true}))
        .collect();
    let body = json!({"reason": "paper form signed 2026-03-02",
        "studyScopeConsents": [{"studyId": study, "scopeConsents": scopes}]});
    let path = format!("/api/v1/patients/{patient}/consents");
    api(app, token, &path, body).await;
}

/// Uploads (patient, reading, effective time) in one FHIR batch; every entry must be created.
/// Returns the new ids in the same order.
async fn upload(
    app: &TestApp,
    token: &str,
    device: i64,
    points: &[(i64, Reading, String)],
) -> Vec<i64> {
    let entry: Vec<Value> = points
        .iter()
        .enumerate()
        .map(|(n, (patient, r, at))| {
            let uuid = format!("0000beef-0000-4000-8000-{n:012x}");
            let code = match r {
                Reading::Bp(..) => BP_CODE,
                Reading::Hr(_) => HR_CODE,
            };
            let resource = json!({
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": OMH, "code": code}]},
                "subject": {"reference": format!("Patient/{patient}")},
                "device": {"reference": format!("Device/{device}")},
                "valueAttachment": {"contentType": "application/json",
                    "data": B64.encode(point(*r, &uuid, at).to_string())},
            });
            json!({"resource": resource, "request": {"method": "POST", "url": "Observation"}})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": entry});
    let out = api(app, token, "/FHIR/R5", bundle).await;
    let entries = out["entry"].as_array().unwrap();
    assert_eq!(entries.len(), points.len(), "{out}");
    entries
        .iter()
        .map(|e| {
            assert_eq!(e["response"]["status"], "201 Created", "{e}");
            let loc = e["response"]["location"].as_str().unwrap();
            loc.rsplit('/').next().unwrap().parse().unwrap()
        })
        .collect()
}

// ---- browser helpers ---------------------------------------------------------------------------

/// What has keyboard focus: tag, id, text, href, its focus styles, and whether it matches `css`.
async fn focused(browser: &Browser, css: &str) -> Value {
    let css = serde_json::to_string(css).unwrap();
    browser
        .execute_async(&format!(
            "var el = document.activeElement;
             if (!el || el === document.body) {{ arguments[0](null); return; }}
             var s = getComputedStyle(el);
             arguments[0]({{tag: el.tagName.toLowerCase(), id: el.id,
               text: (el.innerText || el.value || '').trim().slice(0, 40),
               href: el.getAttribute('href'), outline: s.outlineStyle,
               outlineWidth: s.outlineWidth, shadow: s.boxShadow,
               focusVisible: el.matches(':focus-visible'), hit: el.matches({css})}});"
        ))
        .await
}

/// Presses Tab until the focused element matches `css` (at most `max` times); returns it.
/// Fails with the path the focus took when it never gets there.
async fn tab_to(browser: &Browser, css: &str, max: usize) -> Value {
    let mut path = Vec::new();
    for _ in 0..max {
        browser.keys(TAB).await;
        let f = focused(browser, css).await;
        if f["hit"] == true {
            return f;
        }
        path.push(format!(
            "{}#{} {:?}",
            f["tag"].as_str().unwrap_or("?"),
            f["id"].as_str().unwrap_or(""),
            f["text"].as_str().unwrap_or("")
        ));
    }
    panic!("{max} Tabs never reached {css}; focus went {path:#?}");
}

/// Waits up to 5 s for the address to contain `want`.
async fn wait_url(browser: &Browser, want: &str) -> String {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let url = browser.current_url().await;
        if url.contains(want) {
            return url;
        }
        assert!(
            std::time::Instant::now() < until,
            "the address never had {want:?}: {url}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The table's rows, each as its cells' texts.
async fn rows(browser: &Browser) -> Vec<Vec<String>> {
    browser.wait_for("table.data tbody tr").await;
    let v = browser
        .execute_async(
            "arguments[0](Array.from(document.querySelectorAll('table.data tbody tr'),
               r => Array.from(r.cells, c => c.innerText.trim())))",
        )
        .await;
    serde_json::from_value(v).expect("rows of cells")
}

fn ids(rows: &[Vec<String>]) -> Vec<i64> {
    rows.iter().map(|r| r[0].parse().unwrap()).collect()
}

/// Where a screenshot goes: target/screenshots/`name`, the folder made if need be.
fn shot(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots"));
    std::fs::create_dir_all(dir).expect("screenshot folder");
    dir.join(name)
}

// ---- the test ----------------------------------------------------------------------------------

#[actix_web::test]
async fn a_member_filters_pages_opens_and_charts_observations_with_the_keyboard() {
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let omron = device(&app, "Omron Cuff").await;
    let (uid, pid) = app.practitioner("ana@x.org", false);
    let org = app.org("North Clinic", 0, &[(pid, "member")]);
    let token = app.token(uid);
    let ann = patient(&app, &token, org, ("Alvarez", "Ann"), "ann@x.org").await;
    let bob = patient(&app, &token, org, ("Brown", "Bob"), "bob@x.org").await;
    let vitals = study(&app, &token, org, "Vitals", &[BP, HR], &[ann, bob]).await;
    // A second study, so choosing Vitals in the form is a real choice.
    study(&app, &token, org, "Sleep", &[HR], &[ann]).await;
    consent(&app, &token, ann, vitals).await;
    consent(&app, &token, bob, vitals).await;

    // 28 readings an hour apart from 2025-02-01 00:00 UTC, Ann and Bob by turns; every fifth
    // is blood pressure, the other 23 heart rate.
    let plan: Vec<(i64, Reading, String)> = (0..28i64)
        .map(|i| {
            let who = if i % 2 == 0 { ann } else { bob };
            let r = if i % 5 == 4 {
                Reading::Bp(110 + i, 70 + i)
            } else {
                Reading::Hr(60 + i)
            };
            (
                who,
                r,
                format!("2025-02-{:02}T{:02}:00:00Z", 1 + i / 24, i % 24),
            )
        })
        .collect();
    let made = upload(&app, &token, omron, &plan).await;
    let newest_first: Vec<usize> = (0..plan.len()).rev().collect();
    let heart: Vec<usize> = newest_first
        .iter()
        .copied()
        .filter(|i| matches!(plan[*i].1, Reading::Hr(_)))
        .collect();
    let heart_ids: Vec<i64> = heart.iter().map(|i| made[*i]).collect();
    assert_eq!(heart_ids.len(), 23);

    let secret = cohort::auth::code::create_link(&mut app.conn(), uid).unwrap();
    browser.goto(&app.at(&format!("/auth/link/{secret}"))).await;

    // The first page with times sets the `tz` cookie from the browser's zone (and redraws).
    let list = app.at(&format!("/observations?organization_id={org}"));
    browser.goto(&list).await;
    let zone = browser
        .execute_async("arguments[0](Intl.DateTimeFormat().resolvedOptions().timeZone)")
        .await;
    let zone = zone.as_str().expect("the browser has a zone").to_string();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let cookie = loop {
        let c = browser
            .execute_async(
                "var m = document.cookie.match(/(?:^|; )tz=([^;]*)/);
                 arguments[0](m ? decodeURIComponent(m[1]) : null)",
            )
            .await;
        if let Some(c) = c.as_str() {
            break c.to_string();
        }
        assert!(std::time::Instant::now() < until, "no tz cookie was set");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(cookie, zone, "the cookie holds the browser's zone");
    browser.goto(&list).await;
    let lede = browser.text(".lede").await;
    assert!(lede.contains("times in "), "{lede}");
    assert_eq!(
        lede,
        format!("North Clinic · newest first · times in {zone}")
    );

    // Readable values, newest first: the 20 newest of all 28.
    let all = rows(&browser).await;
    assert_eq!(all.len(), 20);
    let want: Vec<i64> = newest_first[..20].iter().map(|i| made[*i]).collect();
    assert_eq!(ids(&all), want);
    assert_eq!(all[0][1], "Brown, Bob");
    assert_eq!(all[0][2], "Heart rate");
    assert_eq!(all[0][3], "87 beats/min");
    assert_eq!(all[0][5], "Omron Cuff");
    assert_eq!(all[0][6], "final");
    // Index 24 (Ann, 134/94) is the newest blood pressure: the fourth row.
    assert_eq!(
        all[3][1..4],
        ["Alvarez, Ann", "Blood pressure", "134/94 mmHg"]
    );
    let mmhg = all.iter().filter(|r| r[3].ends_with(" mmHg")).count();
    assert_eq!(mmhg, 4, "{all:#?}");
    if ["UTC", "Etc/UTC", "Etc/GMT", "GMT"].contains(&zone.as_str()) {
        assert_eq!(all[0][4], "2025-02-02 03:00");
    }
    let list_png = shot("observations-list.png");
    browser.screenshot(&list_png).await;

    // Keyboard only: Tab to the study select, type to choose Vitals, Tab to the data type,
    // type to choose Heart rate, Tab to Show and press Enter.
    let f = tab_to(&browser, "#f-study_id", 30).await;
    assert_eq!(f["focusVisible"], true, "{f}");
    assert_ne!(
        f["shadow"], "none",
        "a focused select shows the focus ring: {f}"
    );
    browser.keys("Vit").await;
    let chosen = browser
        .execute_async("arguments[0](document.querySelector('#f-study_id').value)")
        .await;
    assert_eq!(chosen, json!(vitals.to_string()), "typing chose Vitals");
    tab_to(&browser, "#f-code", 5).await;
    browser.keys("Heart").await;
    let chosen = browser
        .execute_async("arguments[0](document.querySelector('#f-code').value)")
        .await;
    assert_eq!(chosen, json!(HR_CODE), "typing chose Heart rate");
    let show = tab_to(&browser, "form[role=search] button[type=submit]", 15).await;
    assert_eq!(show["text"], "Show");
    assert_eq!(show["focusVisible"], true, "{show}");
    assert_ne!(
        show["shadow"], "none",
        "the focused button has a ring: {show}"
    );
    browser.keys(ENTER).await;
    let url = wait_url(&browser, "code=omh%3Aheart-rate%3A2.0").await;
    assert!(url.contains(&format!("study_id={vitals}")), "{url}");

    let page1 = rows(&browser).await;
    assert_eq!(ids(&page1), heart_ids[..20]);
    for r in &page1 {
        assert_eq!(r[2], "Heart rate", "{r:?}");
        assert!(r[3].ends_with(" beats/min"), "{r:?}");
    }
    assert_eq!(
        browser.text("nav.pagination p").await,
        "Showing 20 observations · page 1"
    );
    // The form keeps what was chosen.
    let kept = browser
        .execute_async(
            "arguments[0]([document.querySelector('#f-study_id').value,
                           document.querySelector('#f-code').value])",
        )
        .await;
    assert_eq!(kept, json!([vitals.to_string(), HR_CODE]));

    // Older, by keyboard: its link shows a focus outline.
    let older = tab_to(&browser, "nav.pagination a[rel=next]", 80).await;
    assert_eq!(older["text"], "Older");
    assert_eq!(older["focusVisible"], true, "{older}");
    assert_ne!(older["outline"], "none", "a visible focus outline: {older}");
    assert_eq!(older["outline"], "solid", "{older}");
    assert_eq!(older["outlineWidth"], "2px", "{older}");
    browser.keys(ENTER).await;
    wait_url(&browser, "after=").await;
    let page2 = rows(&browser).await;
    assert_eq!(ids(&page2), heart_ids[20..]);
    assert_eq!(
        browser.text("nav.pagination p").await,
        "Showing 3 observations · page 2"
    );
    assert_eq!(
        browser.source().await.matches("rel=\"next\"").count(),
        0,
        "no Older link on the last page"
    );

    // And back with Newer.
    let newer = tab_to(&browser, "nav.pagination a[rel=prev]", 40).await;
    assert_eq!(newer["text"], "Newer");
    assert_ne!(newer["outline"], "none", "{newer}");
    browser.keys(ENTER).await;
    // Newer from page 2 is the first page itself, the filters kept.
    browser
        .wait_for_text("nav.pagination p", "Showing 20 observations · page 1")
        .await;
    let url = browser.current_url().await;
    assert!(!url.contains("after=") && !url.contains("before="), "{url}");
    assert!(
        url.contains(&format!("study_id={vitals}&code=omh%3Aheart-rate%3A2.0")),
        "{url}"
    );
    assert_eq!(ids(&rows(&browser).await), heart_ids[..20]);

    // The newest heart rate's page, through its ID link.
    let first = heart[0];
    let id_link = tab_to(&browser, "table.data tbody td:first-child a", 30).await;
    assert_eq!(id_link["text"], made[first].to_string());
    assert_ne!(id_link["outline"], "none", "{id_link}");
    browser.keys(ENTER).await;
    wait_url(&browser, &format!("/observations/{}", made[first])).await;
    browser.wait_for("pre.json").await;
    assert_eq!(browser.text("h1").await, "Heart rate: 87 beats/min");
    let pres = browser
        .execute_async(
            "arguments[0](Array.from(document.querySelectorAll('pre.json'), p => {
               var r = p.getBoundingClientRect(), s = getComputedStyle(p);
               return {w: r.width, h: r.height, display: s.display, visibility: s.visibility,
                       text: p.textContent};
             }))",
        )
        .await;
    let pres = pres.as_array().expect("pre blocks");
    assert_eq!(pres.len(), 2, "header and body");
    for p in pres {
        assert!(p["w"].as_f64().unwrap() > 100.0, "{p}");
        assert!(p["h"].as_f64().unwrap() > 20.0, "{p}");
        assert_ne!(p["display"], "none", "{p}");
        assert_eq!(p["visibility"], "visible", "{p}");
    }
    let body = pres[1]["text"].as_str().unwrap();
    assert!(body.contains("\"value\": 87"), "{body}");
    assert!(
        body.contains("\"date_time\": \"2025-02-02T03:00:00Z\""),
        "{body}"
    );
    assert!(pres[0]["text"]
        .as_str()
        .unwrap()
        .contains("\"name\": \"heart-rate\""));

    // The chart link, by keyboard.
    let chart = tab_to(&browser, ".actions a.btn", 20).await;
    assert_eq!(chart["text"], "Chart heart rate for this patient");
    assert_eq!(chart["focusVisible"], true, "{chart}");
    browser.keys(ENTER).await;
    wait_url(&browser, "/observations/chart?").await;
    browser.wait_for("svg.chart").await;
    let bobs_beats = heart.iter().filter(|i| plan[**i].0 == bob).count();
    assert_eq!(bobs_beats, 12);
    assert_eq!(browser.text("h1").await, "Heart rate · Brown, Bob");
    assert_eq!(
        browser.text(".lede").await,
        format!("Times in {zone} · {bobs_beats} readings")
    );
    let svg = browser
        .execute_async(
            "var s = document.querySelector('svg.chart'), r = s.getBoundingClientRect();
             var unit = s.querySelector('text.chart-unit');
             arguments[0]({w: r.width, h: r.height, display: getComputedStyle(s).display,
               lines: Array.from(s.querySelectorAll('path.chart-line'), p => p.getAttribute('d')),
               dots: s.querySelectorAll('circle.chart-dot').length,
               unit: unit && unit.textContent,
               title: s.querySelector('title') && s.querySelector('title').textContent})",
        )
        .await;
    assert!(svg["w"].as_f64().unwrap() > 300.0, "{svg}");
    assert!(svg["h"].as_f64().unwrap() > 100.0, "{svg}");
    assert_ne!(svg["display"], "none", "{svg}");
    let lines = svg["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "one series for heart rate: {svg}");
    assert!(lines[0].as_str().unwrap().starts_with('M'), "{svg}");
    assert_eq!(svg["dots"], bobs_beats, "{svg}");
    assert_eq!(svg["unit"], "beats/min");
    assert_eq!(svg["title"], "Heart rate");
    let chart_png = shot("observations-chart.png");
    browser.screenshot(&chart_png).await;
    eprintln!(
        "screenshots: {} and {}",
        list_png.display(),
        chart_png.display()
    );
}
