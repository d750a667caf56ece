//! The pages patients open, in a real browser (headless Chromium through chromedriver), at a
//! desktop size and at a phone's 390 × 844: every state of an invitation link, answering with
//! the keyboard only, a study's sign-up link, the whole path from invitation to an app's
//! upload seen on the console, what the invitation page weighs, and the rarer pages: a
//! personal sign-up link, a known patient joining, a paused or closed study's link, the page
//! an app lands on once connected, and an invitation with no study to answer. Nobody signs in
//! on these pages; the practitioner's side is set up through /api/v1 as a script would.

mod common;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use base64::Engine;
use common::webdriver::Browser;
use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

const OMH: &str = "https://w3id.org/openmhealth";
/// Seeded scope ids (the foundation migration gives the 15 codes ids 1..15 in order).
const BP: i64 = 2;
const HR: i64 = 4;
const HR_CODE: &str = "omh:heart-rate:2.0";
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";
const SPACE: &str = "\u{E00D}";
const LEFT: &str = "\u{E012}";
const RIGHT: &str = "\u{E014}";
const DESKTOP: (i64, i64) = (1280, 900);
const PHONE: (i64, i64) = (390, 844);
/// The smallest comfortable touch target (WCAG 2.5.5, Apple's guidelines), in CSS pixels.
const TOUCH: f64 = 44.0;

/// One browser at a time: five Chromiums at once on a small machine make waits time out.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- the practitioner's side, through the API ---------------------------------------------------

/// A POST to the API with `token`; it must succeed.
async fn api(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    api_as(app, token, reqwest::Method::POST, path, body).await
}

/// A PATCH to the API with `token`, such as a study's new status; it must succeed.
async fn api_patch(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    api_as(app, token, reqwest::Method::PATCH, path, body).await
}

/// A call to the API with `token` and a JSON body; it must succeed.
async fn api_as(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let res = script()
        .request(method, app.at(path))
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

async fn patient(app: &TestApp, token: &str, org: i64, name: (&str, &str), email: &str) -> i64 {
    let body = json!({"organizationId": org, "telecomEmail": email,
        "nameFamily": name.0, "nameGiven": name.1, "birthDate": "1980-01-01"});
    api(app, token, "/api/v1/patients", body).await["id"]
        .as_i64()
        .unwrap()
}

/// An active study of `org` requesting `scopes`, from `sources`, with `patients` enrolled.
async fn study(
    app: &TestApp,
    token: &str,
    org: i64,
    name: &str,
    (scopes, sources): (&[i64], &[i64]),
    patients: &[i64],
) -> i64 {
    let body = json!({"name": name, "description": "Nightly readings, for six weeks.",
        "organization": org});
    let out = api(app, token, "/api/v1/studies", body).await;
    assert_eq!(out["status"], "active", "{out}");
    let id = out["id"].as_i64().unwrap();
    for s in scopes {
        let path = format!("/api/v1/studies/{id}/scope_requests");
        api(app, token, &path, json!({ "scopeCodeId": s })).await;
    }
    for d in sources {
        let path = format!("/api/v1/studies/{id}/data_sources");
        api(app, token, &path, json!({ "dataSourceId": d })).await;
    }
    if !patients.is_empty() {
        let path = format!("/api/v1/studies/{id}/patients");
        api(app, token, &path, json!({ "patientIds": patients })).await;
    }
    id
}

/// A data source in the catalogue, made by the first-run administrator (a superuser).
async fn device(app: &TestApp, name: &str, scopes: &[i64]) -> i64 {
    let token = app.token(app.admin_user_id());
    let body = json!({"name": name, "type": "personal_device", "supportedScopes": scopes});
    api(app, &token, "/api/v1/data_sources", body).await["id"]
        .as_i64()
        .unwrap()
}

struct Invitation {
    id: i64,
    link: String,
    token: String,
}

/// An invitation issued through the API (not e-mailed).
async fn invite(app: &TestApp, token: &str, patient: i64) -> Invitation {
    let out = api(
        app,
        token,
        "/api/v1/invitation",
        json!({ "patient_id": patient }),
    )
    .await;
    let link = out["invitationLink"].as_str().unwrap().to_string();
    assert!(link.starts_with(&app.at("/invite/")), "{link}");
    Invitation {
        id: out["id"].as_i64().unwrap(),
        token: link[link.rfind('/').unwrap() + 1..].to_string(),
        link,
    }
}

/// What an app does with a link: POST /api/v1/invitation/{token}, no auth.
async fn redeem(app: &TestApp, token: &str) -> (u16, Value) {
    let res = script()
        .post(app.at(&format!("/api/v1/invitation/{token}")))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// (scope id, consented) of the patient's answers in the study, by scope.
fn answers(app: &TestApp, study: i64, patient: i64) -> Vec<(i64, bool)> {
    use cohort::db::schema::consents as c;
    c::table
        .filter(c::study_id.eq(study).and(c::patient_id.eq(patient)))
        .select((c::codeable_concept_id, c::consented))
        .order(c::codeable_concept_id.asc())
        .load(&mut *app.conn())
        .unwrap()
}

// ---- browser helpers ---------------------------------------------------------------------------

/// Evaluates a JavaScript expression in the page.
async fn js(browser: &Browser, expr: &str) -> Value {
    browser
        .execute_async(&format!("arguments[0]({expr})"))
        .await
}

/// Waits up to 5 s for a JavaScript expression to be truthy; returns its value.
async fn js_until(browser: &Browser, expr: &str, what: &str) -> Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let v = js(browser, expr).await;
        if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
            return v;
        }
        assert!(
            std::time::Instant::now() < until,
            "{what}: {expr} stays {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Where a screenshot goes: target/screenshots/`name`, the folder made if need be.
fn shot(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/target/screenshots"));
    std::fs::create_dir_all(dir).expect("screenshot folder");
    dir.join(name)
}

/// Sizes the window so that the page's viewport is `w` × `h` CSS pixels.
async fn viewport(browser: &Browser, (w, h): (i64, i64)) {
    let inner = "[window.innerWidth, window.innerHeight]";
    browser.set_window_size(w, h).await;
    let got = js(browser, inner).await;
    let (iw, ih) = (got[0].as_i64().unwrap(), got[1].as_i64().unwrap());
    if (iw, ih) != (w, h) {
        // Whatever frame the window has around the page, add it.
        browser.set_window_size(2 * w - iw, 2 * h - ih).await;
    }
    let want = json!([w, h]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = js(browser, inner).await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "the viewport stays {got}, not {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// At phone size: nothing scrolls sideways, and every button, choice and text field is at
/// least 44 px tall. Returns how many controls were measured.
async fn fits_a_phone(browser: &Browser, name: &str) -> usize {
    let m = js(
        browser,
        "(function () {
           var d = document.documentElement;
           var seen = e => { var r = e.getBoundingClientRect(), s = getComputedStyle(e);
             return r.width > 1 && r.height > 1 && s.visibility !== 'hidden' && s.display !== 'none'; };
           var wide = Array.from(document.querySelectorAll('body *')).filter(seen)
             .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
             .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''));
           var controls = Array.from(document.querySelectorAll(
               'button, a.btn, input[type=submit], label.choice, .field input')).filter(seen)
             .map(e => ({what: e.tagName.toLowerCase() + (e.className ? '.' + e.className : ''),
                         text: (e.innerText || e.name || '').trim().slice(0, 40),
                         h: e.getBoundingClientRect().height}));
           return {scrollWidth: d.scrollWidth, innerWidth: window.innerWidth,
                   bodyScrollWidth: document.body.scrollWidth, wide: wide, controls: controls};
         })()",
    )
    .await;
    let inner = m["innerWidth"].as_i64().unwrap();
    assert_eq!(inner, PHONE.0, "{name}: {m}");
    assert!(
        m["scrollWidth"].as_i64().unwrap() <= inner,
        "{name}: the page scrolls sideways on a phone: {m}"
    );
    let controls = m["controls"].as_array().unwrap();
    let short: Vec<&Value> = controls
        .iter()
        .filter(|c| c["h"].as_f64().unwrap() < TOUCH - 0.01)
        .collect();
    assert!(
        short.is_empty(),
        "{name}: controls under {TOUCH}px tall on a phone: {short:#?}"
    );
    controls.len()
}

/// Screenshots the page as it is at desktop size and at phone size (portal-`name`-desktop.png
/// and portal-`name`-phone.png), checking the phone layout; leaves the window at desktop size.
/// Returns how many controls the phone check measured.
async fn both_sizes(browser: &Browser, name: &str) -> usize {
    viewport(browser, DESKTOP).await;
    browser
        .screenshot(&shot(&format!("portal-{name}-desktop.png")))
        .await;
    viewport(browser, PHONE).await;
    let controls = fits_a_phone(browser, name).await;
    browser
        .screenshot(&shot(&format!("portal-{name}-phone.png")))
        .await;
    viewport(browser, DESKTOP).await;
    controls
}

/// The HTTP status of the page the browser shows (Navigation Timing).
async fn page_status(browser: &Browser) -> i64 {
    js(
        browser,
        "performance.getEntriesByType('navigation')[0].responseStatus",
    )
    .await
    .as_i64()
    .unwrap_or(0)
}

/// A page that says a link does not open: its status, heading (also the title) and message.
async fn refused(browser: &Browser, status: i64, heading: &str, says: &str) -> String {
    assert_eq!(browser.text("h1").await, heading);
    assert_eq!(js(browser, "document.title").await, json!(heading));
    let body = browser.text("main p[role=alert]").await;
    assert!(body.contains(says), "{heading}: {body:?} lacks {says:?}");
    assert_eq!(page_status(browser).await, status, "{heading}");
    let forms = js(browser, "document.forms.length").await;
    assert_eq!(forms, json!(0), "{heading}: nothing to fill in");
    body
}

/// The radio buttons of the page as [name, value, checked].
async fn radios(browser: &Browser) -> Value {
    js(
        browser,
        "Array.from(document.querySelectorAll('input[type=radio]'), r => [r.name, r.value, r.checked])",
    )
    .await
}

/// Scrolls the QR code into view (it loads lazily) and waits until it has loaded.
async fn qr_loads(browser: &Browser) -> Value {
    js(
        browser,
        "document.querySelector('#connect img.qr').scrollIntoView({block: 'center'})",
    )
    .await;
    js_until(
        browser,
        "(function () { var i = document.querySelector('#connect img.qr');
           return i.complete && i.naturalWidth > 0 && {w: i.naturalWidth, h: i.naturalHeight,
             shown: i.getBoundingClientRect().width, alt: i.alt, src: i.getAttribute('src')}; })()",
        "the QR code loads",
    )
    .await
}

/// What has keyboard focus: tag, name, value, text, its outline, and whether it matches `css`.
async fn focused(browser: &Browser, css: &str) -> Value {
    let css = serde_json::to_string(css).unwrap();
    js(
        browser,
        &format!(
            "(function () {{ var el = document.activeElement;
               if (!el || el === document.body) return null;
               var s = getComputedStyle(el), r = el.getBoundingClientRect();
               return {{tag: el.tagName.toLowerCase(), name: el.name || '', value: el.value || '',
                 checked: !!el.checked, text: (el.innerText || '').trim().slice(0, 40),
                 outline: s.outlineStyle, outlineWidth: parseFloat(s.outlineWidth) || 0,
                 focusVisible: el.matches(':focus-visible'), left: r.left, top: r.top,
                 hit: el.matches({css})}}; }})()"
        ),
    )
    .await
}

/// The focus can be seen: `:focus-visible` matches and draws an outline.
fn visible_focus(f: &Value) {
    assert_eq!(f["focusVisible"], true, "{f}");
    assert_ne!(
        f["outline"], "none",
        "the focused element has no outline: {f}"
    );
    assert!(
        f["outlineWidth"].as_f64().unwrap() > 0.0,
        "the focus outline has no width: {f}"
    );
}

/// Presses Tab until the focused element matches `css` (at most `max` times); returns it.
async fn tab_to(browser: &Browser, css: &str, max: usize) -> Value {
    let mut path = Vec::new();
    for _ in 0..max {
        browser.keys(TAB).await;
        let f = focused(browser, css).await;
        if f["hit"] == true {
            return f;
        }
        path.push(format!(
            "{} {} {:?}",
            f["tag"].as_str().unwrap_or("?"),
            f["name"].as_str().unwrap_or(""),
            f["text"].as_str().unwrap_or("")
        ));
    }
    panic!("{max} Tabs never reached {css}; focus went {path:#?}");
}

/// Types an ISO date into a date field the way a person does: digits in the order the
/// browser's language shows them (month, day, year in en-US).
async fn type_date(browser: &Browser, css: &str, iso: &str) {
    let order = js(
        browser,
        "new Intl.DateTimeFormat(navigator.language).formatToParts(new Date(2001, 1, 3))
           .filter(p => ['year', 'month', 'day'].includes(p.type)).map(p => p.type)",
    )
    .await;
    let digits: String = order
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match p.as_str().unwrap() {
            "year" => &iso[0..4],
            "month" => &iso[5..7],
            _ => &iso[8..10],
        })
        .collect();
    browser.fill(css, &digits).await;
    let value = js(
        browser,
        &format!(
            "document.querySelector({}).value",
            serde_json::to_string(css).unwrap()
        ),
    )
    .await;
    assert_eq!(value, json!(iso), "typed {digits} in the order {order}");
}

/// The page's resources as the browser fetched them: the document and everything it loaded.
async fn weight(browser: &Browser) -> Value {
    js(
        browser,
        "(function () {
           var all = performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'));
           return {origin: location.origin, entries: all.map(e => ({name: e.name, type: e.initiatorType || e.entryType,
             transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize})),
             refs: Array.from(document.querySelectorAll('[src], [href], [action]'),
               e => new URL(e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('action'), location.href).origin),
             scripts: document.scripts.length};
         })()",
    )
    .await
}

/// Sums a page's weight, checks that everything came from the app itself and that it is
/// light; prints the figures. Returns (requests, bytes transferred, bytes decoded).
fn weigh(name: &str, w: &Value, app: &TestApp) -> (usize, i64, i64) {
    let origin = w["origin"].as_str().unwrap();
    assert_eq!(origin, app.url);
    let entries = w["entries"].as_array().unwrap();
    for e in entries {
        let url = url::Url::parse(e["name"].as_str().unwrap()).unwrap();
        assert_eq!(
            url.origin().ascii_serialization(),
            origin,
            "{name}: a request left the app: {e}"
        );
    }
    for r in w["refs"].as_array().unwrap() {
        assert_eq!(r, origin, "{name}: the page points elsewhere: {w}");
    }
    assert_eq!(w["scripts"], 0, "{name}: the patient pages need no script");
    let sum = |k: &str| entries.iter().map(|e| e[k].as_i64().unwrap_or(0)).sum();
    let (transfer, decoded): (i64, i64) = (sum("transfer"), sum("decoded"));
    println!(
        "page weight, {name}: {} requests, {transfer} bytes transferred, {decoded} bytes decoded",
        entries.len()
    );
    for e in entries {
        println!(
            "  {:>6} transferred {:>6} decoded  {} ({})",
            e["transfer"], e["decoded"], e["name"], e["type"]
        );
    }
    assert!(transfer < 50_000, "{name}: {transfer} bytes transferred");
    assert!(decoded < 50_000, "{name}: {decoded} bytes decoded");
    (entries.len(), transfer, decoded)
}

// ---- 1. every state of an invitation link --------------------------------------------------------

#[actix_web::test]
async fn every_state_of_an_invitation_link_reads_well_on_a_desktop_and_on_a_phone() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (uid, pid) = app.practitioner("mel@example.org", false);
    let org = app.org("North Clinic", 0, &[(pid, "member")]);
    let token = app.token(uid);
    let ama = patient(&app, &token, org, ("Mensah", "Ama"), "ama@example.org").await;
    let ben = patient(&app, &token, org, ("Bell", "Ben"), "ben@example.org").await;
    let cy = patient(&app, &token, org, ("Cole", "Cy"), "cy@example.org").await;
    let dee = patient(&app, &token, org, ("Dunn", "Dee"), "dee@example.org").await;
    let people = [ama, ben, cy, dee];
    let sleep = study(&app, &token, org, "Sleep", (&[BP, HR], &[]), &people).await;

    // A link nobody issued.
    browser.goto(&app.at("/invite/nope")).await;
    refused(
        &browser,
        404,
        "This link is not valid",
        "Check that you opened the whole link",
    )
    .await;
    both_sizes(&browser, "unknown").await;

    // A link past its date.
    let old = invite(&app, &token, ben).await;
    let past = cohort::util::now() - chrono::Duration::days(3);
    {
        use cohort::db::schema::invitations as i;
        diesel::update(i::table.find(old.id))
            .set(i::expires_at.eq(past))
            .execute(&mut *app.conn())
            .unwrap();
    }
    browser.goto(&old.link).await;
    let body = refused(&browser, 410, "This link has expired", "expired on").await;
    assert_eq!(
        body,
        format!(
            "This link expired on {}; ask North Clinic for a new one.",
            past.format("%Y-%m-%d")
        )
    );
    both_sizes(&browser, "expired").await;

    // A link a newer one replaced; the newer one opens.
    let first = invite(&app, &token, cy).await;
    let second = invite(&app, &token, cy).await;
    browser.goto(&first.link).await;
    let body = refused(
        &browser,
        410,
        "This link was replaced by a newer one",
        "newer link",
    )
    .await;
    assert!(
        body.starts_with("North Clinic sent you a newer link."),
        "{body}"
    );
    both_sizes(&browser, "replaced").await;
    browser.goto(&second.link).await;
    assert_eq!(
        browser.text("h1").await,
        "Your invitation from North Clinic"
    );

    // A link an app has used.
    let used = invite(&app, &token, dee).await;
    let (status, grant) = redeem(&app, &used.token).await;
    assert_eq!(status, 200, "{grant}");
    assert!(grant["grant"]["code"].is_string(), "{grant}");
    browser.goto(&used.link).await;
    let body = refused(
        &browser,
        409,
        "This link was already used",
        "no longer opens",
    )
    .await;
    assert!(body.contains("ask North Clinic for a new link"), "{body}");
    both_sizes(&browser, "used").await;

    // A valid link: the study and one yes / no choice per requested item, none answered.
    let link = invite(&app, &token, ama).await;
    browser.goto(&link.link).await;
    assert_eq!(page_status(&browser).await, 200);
    assert_eq!(
        browser.text("h1").await,
        "Your invitation from North Clinic"
    );
    assert_eq!(
        js(&browser, "document.title").await,
        json!("Your invitation from North Clinic")
    );
    let lede = browser.text("main > p").await;
    assert!(
        lede.starts_with("North Clinic asks whether you agree to share health data"),
        "{lede}"
    );
    assert_eq!(browser.text("section.study h2").await, "Sleep");
    let (bp_name, hr_name) = (format!("a-{sleep}-{BP}"), format!("a-{sleep}-{HR}"));
    let mut choices: Vec<(String, String, bool)> =
        serde_json::from_value(radios(&browser).await).unwrap();
    choices.sort();
    let none = |name: &str| {
        [
            (name.to_string(), "no".to_string(), false),
            (name.to_string(), "yes".to_string(), false),
        ]
    };
    let want: Vec<_> = none(&bp_name).into_iter().chain(none(&hr_name)).collect();
    assert_eq!(choices, want, "yes and no for each requested item");
    let legends = js(
        &browser,
        "Array.from(document.querySelectorAll('fieldset.item legend'), l => l.innerText.trim())",
    )
    .await;
    assert_eq!(
        legends,
        json!([
            "Blood pressure (Not answered yet)",
            "Heart rate (Not answered yet)"
        ])
    );
    assert_eq!(
        js(&browser, "!!document.querySelector('#how, #connect')").await,
        json!(false),
        "nothing to connect before any answer"
    );
    let controls = both_sizes(&browser, "valid").await;
    assert!(
        controls >= 7,
        "4 choices and 3 buttons measured: {controls}"
    );

    // Yes to heart rate, no to blood pressure, with the mouse; saved.
    browser
        .click(&format!("input[name='{hr_name}'][value=yes]"))
        .await;
    browser
        .click(&format!("input[name='{bp_name}'][value=no]"))
        .await;
    assert_eq!(browser.text("button.btn-primary").await, "Save my answers");
    browser.click("button.btn-primary").await;
    let flash = browser
        .wait_for_text(".flash-success", "Your answers are saved.")
        .await;
    assert_eq!(flash, "Your answers are saved.");
    assert_eq!(
        js(
            &browser,
            "document.querySelector('.flash-success').getAttribute('role')"
        )
        .await,
        json!("status")
    );
    assert_eq!(answers(&app, sleep, ama), [(BP, false), (HR, true)]);
    assert!(browser.current_url().await.ends_with(&link.token));
    let how = browser.text("#how").await;
    assert!(how.starts_with("How your data reaches the study"), "{how}");
    assert!(
        how.contains("only the kinds of data you said yes to"),
        "{how}"
    );
    let connect = browser.text("#connect").await;
    assert!(connect.starts_with("Connect an app"), "{connect}");
    assert_eq!(browser.text("#connect a.link").await, link.link);
    let qr = qr_loads(&browser).await;
    assert!(qr["w"].as_i64().unwrap() > 0, "{qr}");
    assert!(qr["shown"].as_f64().unwrap() >= 150.0, "{qr}");
    assert_eq!(qr["alt"], "QR code of this link, for your phone");
    assert_eq!(qr["src"], format!("/invite/{}/qr.svg", link.token));
    js(&browser, "window.scrollTo(0, 0)").await;
    both_sizes(&browser, "saved").await;
    // The QR code and the link on a phone, where they are further down.
    viewport(&browser, PHONE).await;
    let qr = qr_loads(&browser).await;
    assert!(qr["shown"].as_f64().unwrap() >= 150.0, "{qr}");
    browser
        .screenshot(&shot("portal-saved-connect-phone.png"))
        .await;
    let answered = js(
        &browser,
        "Array.from(document.querySelectorAll('fieldset.item legend'), l => l.innerText.trim())",
    )
    .await;
    assert_eq!(
        answered,
        json!(["Blood pressure", "Heart rate"]),
        "no item is pending any more"
    );
}

// ---- 2. keyboard only --------------------------------------------------------------------------

#[actix_web::test]
async fn a_patient_answers_and_saves_with_the_keyboard_only_and_always_sees_the_focus() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (uid, pid) = app.practitioner("mel@example.org", false);
    let org = app.org("North Clinic", 0, &[(pid, "member")]);
    let token = app.token(uid);
    let ama = patient(&app, &token, org, ("Mensah", "Ama"), "ama@example.org").await;
    let sleep = study(&app, &token, org, "Sleep", (&[BP, HR], &[]), &[ama]).await;
    let link = invite(&app, &token, ama).await;
    viewport(&browser, DESKTOP).await;
    browser.goto(&link.link).await;
    browser.wait_for("form").await;
    let (bp_name, hr_name) = (format!("a-{sleep}-{BP}"), format!("a-{sleep}-{HR}"));

    // The first Tab shows the skip link, on screen.
    browser.keys(TAB).await;
    let skip = focused(&browser, "a.skip").await;
    assert_eq!(skip["hit"], true, "the skip link comes first: {skip}");
    assert_eq!(skip["text"], "Skip to content");
    assert!(skip["left"].as_f64().unwrap() >= 0.0, "on screen: {skip}");
    visible_focus(&skip);

    // Tab to the first item's Yes; Space chooses it; the arrows move the choice.
    let yes = tab_to(&browser, "input[type=radio]", 5).await;
    assert_eq!(
        (&yes["name"], &yes["value"]),
        (&json!(bp_name), &json!("yes"))
    );
    visible_focus(&yes);
    browser.keys(SPACE).await;
    let f = focused(&browser, "input[type=radio]").await;
    assert_eq!(
        (&f["value"], &f["checked"]),
        (&json!("yes"), &json!(true)),
        "{f}"
    );
    browser.keys(RIGHT).await;
    let f = focused(&browser, "input[type=radio]").await;
    assert_eq!(
        (&f["value"], &f["checked"]),
        (&json!("no"), &json!(true)),
        "{f}"
    );
    visible_focus(&f);
    browser.keys(LEFT).await;
    let f = focused(&browser, "input[type=radio]").await;
    assert_eq!(
        (&f["value"], &f["checked"]),
        (&json!("yes"), &json!(true)),
        "{f}"
    );

    // Tab to the second item, arrow to No.
    let next = tab_to(&browser, &format!("input[name='{hr_name}']"), 1).await;
    visible_focus(&next);
    browser.keys(RIGHT).await;
    let f = focused(&browser, "input[type=radio]").await;
    assert_eq!((&f["name"], &f["value"]), (&json!(hr_name), &json!("no")));
    assert_eq!(f["checked"], true, "{f}");
    assert!(answers(&app, sleep, ama).is_empty(), "nothing saved yet");

    // Past "Yes to all" and "No to all" to Save; Enter saves the two answers.
    let save = tab_to(&browser, "button.btn-primary", 4).await;
    assert_eq!(save["text"], "Save my answers");
    visible_focus(&save);
    browser
        .screenshot(&shot("portal-keyboard-save-focused.png"))
        .await;
    browser.keys(ENTER).await;
    browser
        .wait_for_text(".flash-success", "Your answers are saved.")
        .await;
    assert_eq!(answers(&app, sleep, ama), [(BP, true), (HR, false)]);
    let mut kept: Vec<(String, String, bool)> =
        serde_json::from_value(radios(&browser).await).unwrap();
    kept.sort();
    let on = |n: &str, v: &str, c: bool| (n.to_string(), v.to_string(), c);
    assert_eq!(
        kept,
        [
            on(&bp_name, "no", false),
            on(&bp_name, "yes", true),
            on(&hr_name, "no", true),
            on(&hr_name, "yes", false),
        ],
        "the page shows the saved answers"
    );

    // The links further down take the focus visibly too.
    let own = tab_to(&browser, "#connect a.link", 12).await;
    visible_focus(&own);
    browser
        .screenshot(&shot("portal-keyboard-link-focused.png"))
        .await;
}

// ---- 3. a study's sign-up link -----------------------------------------------------------------

#[actix_web::test]
async fn someone_joins_a_study_through_its_sign_up_link_after_fixing_the_birth_date() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (uid, pid) = app.practitioner("mel@example.org", false);
    let org = app.org("North Clinic", 0, &[(pid, "member")]);
    let token = app.token(uid);
    let sleep = study(&app, &token, org, "Sleep", (&[HR], &[]), &[]).await;

    // The generic link, as the console's study page shows it.
    let console = app.signed_in(uid).await;
    let (status, page) = app.get_html(&console, &format!("/studies/{sleep}")).await;
    assert_eq!(status, 200);
    let signup = page.text("code#signup-link");
    assert!(
        signup.starts_with(&app.at(&format!("/join/{sleep}?sig="))),
        "{signup}"
    );

    // A link with one character of its signature changed is refused.
    let last = signup.chars().last().unwrap();
    let other = if last == '0' { '1' } else { '0' };
    let tampered = format!("{}{other}", &signup[..signup.len() - 1]);
    browser.goto(&tampered).await;
    refused(
        &browser,
        404,
        "This sign-up link is not valid",
        "The link was changed or is incomplete.",
    )
    .await;
    both_sizes(&browser, "join-tampered").await;

    // The form, on a phone.
    browser.goto(&signup).await;
    assert_eq!(page_status(&browser).await, 200);
    assert_eq!(browser.text("h1").await, "Join Sleep");
    let intro = browser.text("main > p").await;
    assert!(
        intro.starts_with("North Clinic runs this study."),
        "{intro}"
    );
    let hr_name = format!("a-{sleep}-{HR}");
    assert_eq!(
        radios(&browser).await,
        json!([[hr_name, "yes", false], [hr_name, "no", false]])
    );
    both_sizes(&browser, "join-form").await;
    viewport(&browser, PHONE).await;

    // A birth date in the future: the form comes back with the error beside the field.
    browser.fill("#f-email", "Ama.Mensah@Example.org").await;
    browser.fill("#f-given", "Ama").await;
    browser.fill("#f-family", "Mensah").await;
    type_date(&browser, "#f-birth", "2099-01-01").await;
    browser
        .click(&format!("input[name='{hr_name}'][value=yes]"))
        .await;
    browser.click("button.btn-primary").await;
    let flash = browser.wait_for_text(".flash-error", "correct").await;
    assert_eq!(flash, "Please correct the fields marked below.");
    assert_eq!(page_status(&browser).await, 400);
    assert_eq!(
        browser.text("#f-birth-error").await,
        "A birth date cannot be in the future."
    );
    let birth = js(
        &browser,
        "(function () { var i = document.querySelector('#f-birth');
           return {invalid: i.getAttribute('aria-invalid'), describedBy: i.getAttribute('aria-describedby'),
             value: i.value, marked: i.closest('.field').classList.contains('invalid')}; })()",
    )
    .await;
    assert_eq!(
        birth,
        json!({"invalid": "true", "describedBy": "f-birth-hint f-birth-error",
               "value": "2099-01-01", "marked": true})
    );
    let kept = js(
        &browser,
        "['#f-email', '#f-given', '#f-family'].map(s => document.querySelector(s).value)",
    )
    .await;
    assert_eq!(kept, json!(["Ama.Mensah@Example.org", "Ama", "Mensah"]));
    assert_eq!(
        js(
            &browser,
            "document.querySelectorAll('.field.invalid').length"
        )
        .await,
        json!(1),
        "only the birth date is marked"
    );
    // WCAG 3.3.7: what the person chose before the error is still chosen.
    let kept_choice = radios(&browser).await;
    fits_a_phone(&browser, "join-error").await;
    browser
        .screenshot(&shot("portal-join-error-phone.png"))
        .await;
    viewport(&browser, DESKTOP).await;
    browser
        .screenshot(&shot("portal-join-error-desktop.png"))
        .await;
    viewport(&browser, PHONE).await;
    assert!(
        answers_of_email(&app, "ama.mensah@example.org").is_none(),
        "nobody joined yet"
    );

    // A real birth date and yes to heart rate: joined, on the new patient's own page.
    type_date(&browser, "#f-birth", "1980-04-23").await;
    browser
        .click(&format!("input[name='{hr_name}'][value=yes]"))
        .await;
    browser.click("button.btn-primary").await;
    let flash = browser.wait_for_text(".flash-success", "You joined").await;
    assert_eq!(
        flash,
        "You joined Sleep. Thank you. North Clinic now has your details and your answers."
    );
    let url = browser.current_url().await;
    assert!(url.starts_with(&app.at("/invite/")), "{url}");
    assert_eq!(
        browser.text("h1").await,
        "Your invitation from North Clinic"
    );
    assert_eq!(
        radios(&browser).await,
        json!([[hr_name, "yes", true], [hr_name, "no", false]])
    );
    let (ama, birth) = answers_of_email(&app, "ama.mensah@example.org").expect("a new patient");
    assert_eq!(birth, chrono::NaiveDate::from_ymd_opt(1980, 4, 23));
    assert_eq!(answers(&app, sleep, ama), [(HR, true)]);
    assert!(browser.text("#connect").await.contains("Connect an app"));
    both_sizes(&browser, "joined").await;

    assert_eq!(
        kept_choice,
        json!([[hr_name, "yes", true], [hr_name, "no", false]]),
        "the yes chosen before the birth date error is still chosen when the form comes back (WCAG 3.3.7)"
    );
}

/// The patient with this e-mail: (id, birth date).
fn answers_of_email(app: &TestApp, email: &str) -> Option<(i64, Option<chrono::NaiveDate>)> {
    use cohort::db::schema::patients as p;
    p::table
        .filter(p::telecom_email.eq(email))
        .select((p::id, p::birth_date))
        .first(&mut *app.conn())
        .optional()
        .unwrap()
}

// ---- 4. the whole path -------------------------------------------------------------------------

#[actix_web::test]
async fn a_patient_says_yes_an_app_connects_and_uploads_and_the_practitioner_sees_the_reading() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let polar = device(&app, "Polar H10", &[HR]).await;
    let (uid, pid) = app.practitioner("mel@example.org", false);
    let org = app.org("North Clinic", 0, &[(pid, "member")]);
    let token = app.token(uid);
    let ama = patient(&app, &token, org, ("Mensah", "Ama"), "ama@example.org").await;
    let sleep = study(&app, &token, org, "Sleep", (&[HR], &[polar]), &[ama]).await;
    let link = invite(&app, &token, ama).await;

    // The patient, on a phone, says yes.
    {
        let Some(phone) = Browser::start().await else {
            return;
        };
        viewport(&phone, PHONE).await;
        phone.goto(&link.link).await;
        assert_eq!(phone.text("h1").await, "Your invitation from North Clinic");
        let study_text = phone.text("section.study").await;
        assert!(study_text.contains("From: Polar H10."), "{study_text}");
        phone
            .click(&format!("input[name='a-{sleep}-{HR}'][value=yes]"))
            .await;
        phone.click("button.btn-primary").await;
        phone
            .wait_for_text(".flash-success", "Your answers are saved.")
            .await;
        qr_loads(&phone).await;
        phone.screenshot(&shot("portal-path-yes-phone.png")).await;
        assert_eq!(answers(&app, sleep, ama), [(HR, true)]);

        // The app redeems the link and trades the code, with PKCE, for a patient token.
        let (status, grant) = redeem(&app, &link.token).await;
        assert_eq!(status, 200, "{grant}");
        let g = &grant["grant"];
        assert_eq!(g["client_id"], "cohort", "{grant}");
        assert_eq!(g["grant_type"], "authorization_code", "{grant}");
        assert_eq!(grant["token_endpoint"], app.at("/o/token/"));
        let res = script()
            .post(app.at("/o/token/"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", g["code"].as_str().unwrap()),
                ("client_id", g["client_id"].as_str().unwrap()),
                (
                    "code_verifier",
                    &URL_SAFE_NO_PAD.encode(link.token.as_bytes()),
                ),
            ])
            .send()
            .await
            .unwrap();
        let status = res.status();
        let tokens: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{tokens}");
        assert_eq!(tokens["token_type"], "Bearer");
        let access = tokens["access_token"].as_str().unwrap().to_string();

        // It uploads a heart rate as Ama, from the study's device.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/omh-examples");
        let text = std::fs::read_to_string(format!("{dir}/omh_heart-rate_2-0.json")).unwrap();
        let mut point: Value = serde_json::from_str(&text).unwrap();
        point["header"]["uuid"] = json!("0000beef-0000-4000-8000-00000000a11a");
        point["header"]["source_creation_date_time"] = json!("2025-02-01T06:30:00Z");
        point["body"]["effective_time_frame"] = json!({"date_time": "2025-02-01T06:30:00Z"});
        point["body"]["heart_rate"]["value"] = json!(58);
        let resource = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": OMH, "code": HR_CODE}]},
            "subject": {"reference": format!("Patient/{ama}")},
            "device": {"reference": format!("Device/{polar}")},
            "valueAttachment": {"contentType": "application/json",
                "data": B64.encode(point.to_string())},
        });
        let res = script()
            .post(app.at("/FHIR/R5/Observation"))
            .bearer_auth(&access)
            .header("content-type", "application/fhir+json")
            .body(resource.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status();
        let made: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "{made}");
        assert_eq!(made["subject"]["reference"], format!("Patient/{ama}"));

        // The link has done its work: it no longer opens.
        phone.goto(&link.link).await;
        refused(&phone, 409, "This link was already used", "no longer opens").await;
        phone.screenshot(&shot("portal-path-used-phone.png")).await;
    }

    // The practitioner, signed in at a desk, finds it on the Observations tab.
    let Some(desk) = Browser::start().await else {
        return;
    };
    viewport(&desk, DESKTOP).await;
    let secret = cohort::auth::code::create_link(&mut app.conn(), uid).unwrap();
    desk.goto(&app.at(&format!("/auth/link/{secret}"))).await;
    desk.goto(&app.at(&format!("/observations?organization_id={org}")))
        .await;
    desk.wait_for("table.data tbody tr").await;
    let rows = js(
        &desk,
        "Array.from(document.querySelectorAll('table.data tbody tr'),
           r => Array.from(r.cells, c => c.innerText.trim()))",
    )
    .await;
    let rows: Vec<Vec<String>> = serde_json::from_value(rows).unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let row = &rows[0];
    assert_eq!(
        row[1..4],
        ["Mensah, Ama", "Heart rate", "58 beats/min"],
        "{row:?}"
    );
    assert_eq!(row[5..7], ["Polar H10", "final"], "{row:?}");
    desk.screenshot(&shot("portal-path-observations.png")).await;
}

// ---- 5. page weight ----------------------------------------------------------------------------

#[actix_web::test]
async fn the_invitation_page_is_light_and_loads_nothing_from_elsewhere() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (uid, pid) = app.practitioner("mel@example.org", false);
    let org = app.org("North Clinic", 0, &[(pid, "member")]);
    let token = app.token(uid);
    let ama = patient(&app, &token, org, ("Mensah", "Ama"), "ama@example.org").await;
    let sleep = study(&app, &token, org, "Sleep", (&[BP, HR], &[]), &[ama]).await;
    let link = invite(&app, &token, ama).await;

    // As first opened, from a browser that has never seen the app.
    browser.goto(&link.link).await;
    js_until(
        &browser,
        "document.readyState === 'complete'",
        "the page loads",
    )
    .await;
    let first = weigh("invitation as opened", &weight(&browser).await, &app);
    assert!(first.0 >= 2, "the document and its style sheet: {first:?}");

    // After answering, with the QR code loaded.
    browser
        .click(&format!("input[name='a-{sleep}-{HR}'][value=yes]"))
        .await;
    browser.click("button.btn-primary").await;
    browser
        .wait_for_text(".flash-success", "Your answers are saved.")
        .await;
    qr_loads(&browser).await;
    let after = weigh("invitation after saving", &weight(&browser).await, &app);
    assert!(
        after.0 >= 3,
        "the document, style sheet and QR code: {after:?}"
    );
}

// ---- 6. a personal link, someone already known, a paused and a closed study ----------------------

/// A page that tells, without error, that something went well: its heading (also the title),
/// status 200, no alert and nothing to fill in. Returns the message under the heading.
async fn told(browser: &Browser, heading: &str) -> String {
    assert_eq!(browser.text("h1").await, heading);
    assert_eq!(js(browser, "document.title").await, json!(heading));
    assert_eq!(page_status(browser).await, 200, "{heading}");
    assert_eq!(
        js(browser, "document.querySelectorAll('[role=alert]').length").await,
        json!(0),
        "{heading}: nothing went wrong"
    );
    assert_eq!(
        js(browser, "document.forms.length").await,
        json!(0),
        "{heading}: nothing to fill in"
    );
    browser.text("main > h1 + p").await
}

/// The patient's identifiers as (system, value).
fn identifiers(app: &TestApp, patient: i64) -> Vec<(String, String)> {
    use cohort::db::schema::patient_identifiers as pi;
    pi::table
        .filter(pi::patient_id.eq(patient))
        .select((pi::system, pi::value))
        .order(pi::id.asc())
        .load(&mut *app.conn())
        .unwrap()
}

/// How many patient records have this e-mail.
fn records_of_email(app: &TestApp, email: &str) -> i64 {
    use cohort::db::schema::patients as p;
    p::table
        .filter(p::telecom_email.eq(email))
        .count()
        .get_result(&mut *app.conn())
        .unwrap()
}

/// The studies the patient is enrolled in.
fn studies_of(app: &TestApp, patient: i64) -> Vec<i64> {
    use cohort::db::schema::study_patients as sp;
    sp::table
        .filter(sp::patient_id.eq(patient))
        .select(sp::study_id)
        .order(sp::study_id.asc())
        .load(&mut *app.conn())
        .unwrap()
}

/// Fills the sign-up form: e-mail, given and family name, birth date, and yes to `yes`.
async fn sign_up(
    browser: &Browser,
    (email, given, family): (&str, &str, &str),
    birth: &str,
    yes: &str,
) {
    browser.fill("#f-email", email).await;
    browser.fill("#f-given", given).await;
    browser.fill("#f-family", family).await;
    type_date(browser, "#f-birth", birth).await;
    browser
        .click(&format!("input[name='{yes}'][value=yes]"))
        .await;
    browser.click("button.btn-primary").await;
}

#[actix_web::test]
async fn a_personal_link_a_known_patient_and_a_paused_then_closed_study_on_the_sign_up_link() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (uid, pid) = app.practitioner("mel@example.org", false);
    let org = app.org("North Clinic", 0, &[(pid, "member")]);
    let token = app.token(uid);
    // Ama is already North Clinic's patient (born 1980-01-01), in no study yet.
    let ama = patient(&app, &token, org, ("Mensah", "Ama"), "ama@example.org").await;
    let sleep = study(&app, &token, org, "Sleep", (&[HR], &[]), &[]).await;
    let hr_name = format!("a-{sleep}-{HR}");
    let console = app.signed_in(uid).await;
    let (status, page) = app.get_html(&console, &format!("/studies/{sleep}")).await;
    assert_eq!(status, 200);
    let signup = page.text("code#signup-link");
    assert!(
        signup.starts_with(&app.at(&format!("/join/{sleep}?sig="))),
        "{signup}"
    );

    // A personal link for participant P-9, as a script asks for it.
    let out = api(
        &app,
        &token,
        &format!("/api/v1/studies/{sleep}/link"),
        json!({"externalId": "P-9"}),
    )
    .await;
    assert_eq!(out["externalId"], "P-9", "{out}");
    let personal = out["url"].as_str().unwrap().to_string();
    assert!(
        personal.starts_with(&app.at(&format!("/join/{sleep}?ref=P-9&sig="))),
        "{personal}"
    );
    browser.goto(&personal).await;
    assert_eq!(page_status(&browser).await, 200);
    assert_eq!(browser.text("h1").await, "Join Sleep");
    assert_eq!(
        browser.text("main p.note").await,
        "This link is personal: it joins you as participant P-9."
    );
    assert_eq!(
        radios(&browser).await,
        json!([[hr_name, "yes", false], [hr_name, "no", false]])
    );
    both_sizes(&browser, "join-personal").await;

    // Ben joins through it on a phone: a new patient holding P-9, on his own invitation page.
    viewport(&browser, PHONE).await;
    sign_up(
        &browser,
        ("ben.bell@example.org", "Ben", "Bell"),
        "1975-06-02",
        &hr_name,
    )
    .await;
    let flash = browser.wait_for_text(".flash-success", "You joined").await;
    assert_eq!(
        flash,
        "You joined Sleep. Thank you. North Clinic now has your details and your answers."
    );
    let (ben, _) = answers_of_email(&app, "ben.bell@example.org").expect("a new patient");
    assert_ne!(ben, ama);
    let url = browser.current_url().await;
    let landed = url
        .strip_prefix(&app.at("/invite/"))
        .unwrap_or_else(|| panic!("not an invitation page: {url}"));
    let inv = cohort::invitation::repo::find_by_token(&mut app.conn(), landed)
        .unwrap()
        .expect("the page's invitation");
    assert_eq!(
        (inv.patient_id, inv.organization_id),
        (ben, org),
        "the new patient's own invitation"
    );
    assert_eq!(
        browser.text("h1").await,
        "Your invitation from North Clinic"
    );
    assert_eq!(browser.text("section.study h2").await, "Sleep");
    assert_eq!(
        radios(&browser).await,
        json!([[hr_name, "yes", true], [hr_name, "no", false]])
    );
    assert_eq!(answers(&app, sleep, ben), [(HR, true)]);
    assert_eq!(
        identifiers(&app, ben),
        [(
            format!("urn:cohort:study:{sleep}:participant"),
            "P-9".to_string()
        )]
    );
    both_sizes(&browser, "joined-personal").await;

    // Ama joins through the generic link with her e-mail (typed in capitals) and birth date:
    // her record is found, not doubled, and she is told so instead of being sent a new page.
    browser.goto(&signup).await;
    assert_eq!(browser.text("h1").await, "Join Sleep");
    assert_eq!(
        js(&browser, "document.querySelectorAll('p.note').length").await,
        json!(0),
        "the generic link is nobody's"
    );
    sign_up(
        &browser,
        ("Ama@Example.org", "Ama", "Mensah"),
        "1980-01-01",
        &hr_name,
    )
    .await;
    browser.wait_for_text("h1", "You joined").await;
    let body = told(&browser, "You joined Sleep").await;
    assert_eq!(
        body,
        "We found your existing record and added you to Sleep. Your answers are saved. \
         North Clinic will send you a link to connect an app."
    );
    assert_eq!(records_of_email(&app, "ama@example.org"), 1, "not doubled");
    assert_eq!(studies_of(&app, ama), [sleep]);
    assert_eq!(answers(&app, sleep, ama), [(HR, true)]);
    both_sizes(&browser, "joined-existing").await;

    // Paused: neither link takes anyone in.
    let out = api_patch(
        &app,
        &token,
        &format!("/api/v1/studies/{sleep}"),
        json!({"status": "paused"}),
    )
    .await;
    assert_eq!(out["status"], "paused", "{out}");
    browser.goto(&signup).await;
    let body = refused(
        &browser,
        409,
        "Enrolment is paused",
        "not taking new participants",
    )
    .await;
    assert_eq!(
        body,
        "Sleep is not taking new participants at the moment. Try again later, or ask North Clinic."
    );
    both_sizes(&browser, "join-paused").await;
    browser.goto(&personal).await;
    refused(
        &browser,
        409,
        "Enrolment is paused",
        "not taking new participants",
    )
    .await;

    // Closed.
    let out = api_patch(
        &app,
        &token,
        &format!("/api/v1/studies/{sleep}"),
        json!({"status": "closed"}),
    )
    .await;
    assert_eq!(out["status"], "closed", "{out}");
    browser.goto(&signup).await;
    let body = refused(&browser, 410, "This study has closed", "has ended").await;
    assert_eq!(body, "Sleep has ended and takes no new participants.");
    both_sizes(&browser, "join-closed").await;
    browser.goto(&personal).await;
    refused(&browser, 410, "This study has closed", "has ended").await;
    assert_eq!(studies_of(&app, ben), [sleep], "nobody else joined");
}

// ---- 7. around the invitation: an app connected, nothing to answer -------------------------------

#[actix_web::test]
async fn the_page_an_app_lands_on_and_an_invitation_with_no_study_of_that_organization() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };

    // Where Cohort's own app sends the patient once it has connected.
    browser.goto(&app.at("/invite/connected")).await;
    let body = told(&browser, "Your app is connected").await;
    assert_eq!(
        body,
        "You can close this page. Your app now sends what you agreed to share."
    );
    both_sizes(&browser, "connected").await;

    // Bo is a patient of North Clinic and of South Clinic, enrolled in a study of South only.
    let (uid, pid) = app.practitioner("mel@example.org", false);
    let north = app.org("North Clinic", 0, &[(pid, "member")]);
    let south = app.org("South Clinic", 0, &[(pid, "member")]);
    let token = app.token(uid);
    let bo = patient(&app, &token, north, ("Baker", "Bo"), "bo@example.org").await;
    let path = format!("/api/v1/patients/{bo}/global_add_organization?organizationId={south}");
    api_patch(&app, &token, &path, json!({})).await;
    let steps = study(&app, &token, south, "Steps", (&[HR], &[]), &[bo]).await;
    assert_eq!(studies_of(&app, bo), [steps]);

    // North Clinic invites Bo (through a practitioner of North only, so the link is North's).
    let (nora, nora_pid) = app.practitioner("nora@example.org", false);
    {
        use cohort::db::schema::practitioner_organizations as po;
        diesel::insert_into(po::table)
            .values((
                po::practitioner_id.eq(nora_pid),
                po::organization_id.eq(north),
                po::role.eq("member"),
                po::created_at.eq(cohort::util::now()),
            ))
            .execute(&mut *app.conn())
            .unwrap();
    }
    let out = api(
        &app,
        &app.token(nora),
        "/api/v1/invitation",
        json!({ "patient_id": bo }),
    )
    .await;
    assert_eq!(out["organizationId"], north, "{out}");
    let link = out["invitationLink"].as_str().unwrap().to_string();
    browser.goto(&link).await;
    assert_eq!(page_status(&browser).await, 200);
    assert_eq!(
        browser.text("h1").await,
        "Your invitation from North Clinic"
    );
    assert_eq!(
        browser.text("main p.note").await,
        "You are not taking part in any study of North Clinic yet, so there is nothing to answer. \
         North Clinic will let you know when there is."
    );
    let rest = js(
        &browser,
        "({forms: document.forms.length, studies: document.querySelectorAll('section.study').length,
           radios: document.querySelectorAll('input[type=radio]').length,
           connect: !!document.querySelector('#how, #connect'),
           alerts: document.querySelectorAll('[role=alert]').length})",
    )
    .await;
    assert_eq!(
        rest,
        json!({"forms": 0, "studies": 0, "radios": 0, "connect": false, "alerts": 0}),
        "South Clinic's study is not shown on North Clinic's link"
    );
    both_sizes(&browser, "no-studies").await;
}
