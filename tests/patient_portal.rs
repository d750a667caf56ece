//! What patients meet without signing in, and the practitioner's side of it: the page an
//! invitation link opens (each study's questions, the patient's own answers, then how to
//! connect an app), study sign-up links (generic and personal, signed), asking a patient for
//! fresh data, and the registered apps an invitation can lead to.

mod common;

use common::html::Page;
use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use cohort::db::schema::{
    clients as cl, consents as cs, invitations as inv, patient_identifiers as pi,
    patient_organizations as po, patients as pt, study_patients as sp, update_requests as ur,
};

/// Seeded scope codes (the foundation migration gives them ids 1..15 in this order).
const BP: i64 = 2; // Blood pressure
const HR: i64 = 4; // Heart rate
const STEPS: i64 = 12; // Step count

// ---- helpers ---------------------------------------------------------------------------------

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
    async fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = script()
            .request(method, self.app.at(path))
            .bearer_auth(&self.token);
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

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, Value::Null).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, body).await
    }

    async fn patient(&self, org: i64, email: &str, birth: &str) -> i64 {
        let given = email.split('@').next().unwrap();
        let body = json!({"organizationId": org, "telecomEmail": email, "nameFamily": "Mensah",
                          "nameGiven": given, "birthDate": birth});
        let (status, out) = self.post("/api/v1/patients", body).await;
        assert_eq!(status, 201, "create patient: {out}");
        out["id"].as_i64().unwrap()
    }

    /// A study of `org` that requests `scopes`.
    async fn study(&self, org: i64, name: &str, scopes: &[i64]) -> i64 {
        let body = json!({"name": name, "description": format!("About {name}."),
                          "organization": org});
        let (status, out) = self.post("/api/v1/studies", body).await;
        assert_eq!(status, 201, "create study: {out}");
        let id = out["id"].as_i64().unwrap();
        for scope in scopes {
            let path = format!("/api/v1/studies/{id}/scope_requests");
            let (status, out) = self.post(&path, json!({"scopeCodeId": scope})).await;
            assert_eq!(status, 201, "request scope {scope}: {out}");
        }
        id
    }

    /// A data source in the catalogue (the token must be a superuser's).
    async fn source(&self, name: &str, scopes: &[i64]) -> i64 {
        let body = json!({"name": name, "type": "personal_device", "supportedScopes": scopes});
        let (status, out) = self.post("/api/v1/data_sources", body).await;
        assert_eq!(status, 201, "create data source: {out}");
        out["id"].as_i64().unwrap()
    }

    async fn accept(&self, study: i64, source: i64) {
        let path = format!("/api/v1/studies/{study}/data_sources");
        let (status, out) = self.post(&path, json!({"dataSourceId": source})).await;
        assert_eq!(status, 201, "accept data source: {out}");
    }

    async fn enrol(&self, study: i64, patients: &[i64]) {
        let path = format!("/api/v1/studies/{study}/patients");
        let (status, out) = self.post(&path, json!({"patientIds": patients})).await;
        assert_eq!(status, 200, "enrol {patients:?}: {out}");
    }

    async fn set_status(&self, study: i64, status: &str) {
        let path = format!("/api/v1/studies/{study}");
        let (code, out) = self.send("PATCH", &path, json!({"status": status})).await;
        assert_eq!(code, 200, "set {status}: {out}");
    }

    /// A new invitation link for the patient; returns its path, /invite/{token}.
    async fn invite(&self, patient: i64) -> String {
        let (status, out) = self
            .post("/api/v1/invitation", json!({"patient_id": patient}))
            .await;
        assert_eq!(status, 201, "invite: {out}");
        let link = out["invitationLink"].as_str().unwrap();
        link[link.find("/invite/").unwrap()..].to_string()
    }

    /// A personal sign-up link through the API; the whole answer.
    async fn personal_link(&self, study: i64, external_id: &str) -> (u16, Value) {
        let path = format!("/api/v1/studies/{study}/link");
        self.post(&path, json!({"externalId": external_id})).await
    }
}

/// A member of North Clinic: their API, the organization, their user id.
fn north(app: &TestApp) -> (Api<'_>, i64, i64) {
    let (uid, pid) = app.practitioner("mel@x.org", false);
    let org = app.org("North Clinic", 0, &[(pid, "member")]);
    (api(app, uid), org, uid)
}

fn token_of(path: &str) -> &str {
    &path[path.rfind('/').unwrap() + 1..]
}

/// The path of an absolute address on the test server.
fn local<'a>(app: &TestApp, url: &'a str) -> &'a str {
    assert!(url.starts_with(&app.url), "{url} is not on {}", app.url);
    &url[app.url.len()..]
}

/// The form field of one requested item on the invitation and sign-up pages.
fn field(study: i64, scope: i64) -> String {
    format!("a-{study}-{scope}")
}

/// Which radio of an item is checked: "yes", "no" or "" (none).
fn checked(page: &Page, study: i64, scope: i64) -> &'static str {
    let name = field(study, scope);
    for value in ["yes", "no"] {
        let css = format!("input[type=radio][name=\"{name}\"][value=\"{value}\"]");
        assert!(page.exists(&css), "no radio {css} in:\n{}", page.source);
        if page.attr(&css, "checked").is_some() {
            return value;
        }
    }
    ""
}

/// The href of the link whose text is `text`.
fn href_of(page: &Page, css: &str, text: &str) -> Option<String> {
    let sel = scraper::Selector::parse(css).unwrap();
    page.doc
        .select(&sel)
        .find(|e| e.text().collect::<String>().trim() == text)
        .and_then(|e| e.value().attr("href"))
        .map(str::to_string)
}

/// Opens `page` in `client` for its CSRF token and posts `fields` to the page itself.
async fn answer(
    app: &TestApp,
    client: &reqwest::Client,
    page: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    app.post_form(client, page, page, fields).await
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .unwrap_or_else(|| panic!("expected a redirect, got {}", res.status()))
        .to_str()
        .unwrap()
        .to_string()
}

async fn page_of(res: reqwest::Response) -> (u16, Page) {
    let status = res.status().as_u16();
    (status, Page::new(&res.text().await.unwrap()))
}

/// (scope, consented, actor) stored for one patient in one study.
fn stored(app: &TestApp, study: i64, patient: i64) -> Vec<(i64, bool, Option<i64>)> {
    cs::table
        .filter(cs::study_id.eq(study))
        .filter(cs::patient_id.eq(patient))
        .select((cs::codeable_concept_id, cs::consented, cs::actor_user_id))
        .order(cs::codeable_concept_id.asc())
        .load(&mut *app.conn())
        .unwrap()
}

fn user_of(app: &TestApp, patient: i64) -> i64 {
    pt::table
        .find(patient)
        .select(pt::user_id)
        .first(&mut *app.conn())
        .unwrap()
}

fn patient_by_email(app: &TestApp, email: &str) -> Option<i64> {
    pt::table
        .filter(pt::telecom_email.eq(email))
        .select(pt::id)
        .first(&mut *app.conn())
        .optional()
        .unwrap()
}

fn patient_count(app: &TestApp) -> i64 {
    pt::table.count().get_result(&mut *app.conn()).unwrap()
}

fn enrolled(app: &TestApp, study: i64, patient: i64) -> bool {
    let n: i64 = sp::table
        .filter(sp::study_id.eq(study))
        .filter(sp::patient_id.eq(patient))
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    n == 1
}

fn count_of(app: &TestApp, action: &str) -> usize {
    app.audit_actions().iter().filter(|a| *a == action).count()
}

/// (coding code, consented) of each decided scope of `study` in the consents API answer.
fn decided(body: &Value, study: i64) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = body["studies"]
        .as_array()
        .unwrap_or_else(|| panic!("no studies in {body}"))
        .iter()
        .filter(|s| s["id"].as_i64() == Some(study))
        .flat_map(|s| s["scopeConsents"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| {
            Some((
                c["code"]["codingCode"].as_str()?.to_string(),
                c["consented"].as_bool()?,
            ))
        })
        .collect();
    out.sort();
    out
}

/// The generic sign-up link of a study as its page shows it to a signed-in member.
async fn signup_link(app: &TestApp, user_id: i64, study: i64) -> String {
    let client = app.signed_in(user_id).await;
    let (status, page) = app.get_html(&client, &format!("/studies/{study}")).await;
    assert_eq!(status, 200);
    page.text("#signup code#signup-link")
}

/// Joins through a sign-up link (GET for the form and its CSRF token, POST to its action).
async fn join(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let (status, form) = app.get_html(client, path).await;
    assert_eq!(status, 200, "the sign-up form opens:\n{}", form.source);
    let action = form.attr("form", "action").expect("the form has an action");
    app.post_form(client, path, &action, fields).await
}

fn details<'a>(email: &'a str, given: &'a str, birth: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("email", email),
        ("given", given),
        ("family", "Boateng"),
        ("birth", birth),
    ]
}

// ---- the invitation page -----------------------------------------------------------------------

on_both_backends!(
    a_link_that_does_not_open_says_why_unknown_replaced_used_or_expired,
    |app: TestApp| async move {
        let (mel, org, _) = north(&app);
        let ama = mel.patient(org, "ama@x.org", "1980-01-01").await;

        let (status, page) = app.get_html(&browser(), "/invite/not-a-real-token").await;
        assert_eq!(status, 404);
        assert_eq!(page.text("h1"), "This link is not valid");
        let res = script()
            .get(app.at("/invite/not-a-real-token/qr.svg"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "no QR code for an unknown link");

        // A newer link replaces the first.
        let first = mel.invite(ama).await;
        let second = mel.invite(ama).await;
        let (status, page) = app.get_html(&browser(), &first).await;
        assert_eq!(status, 410);
        assert!(page.text("main").contains("newer link"), "{}", page.source);
        assert!(!page.exists("form"), "nothing to answer on a replaced link");

        // An app redeemed the second: it no longer opens.
        let res = script()
            .post(app.at(&format!("/api/v1/invitation/{}", token_of(&second))))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "the app redeems the link");
        let (status, page) = app.get_html(&browser(), &second).await;
        assert_eq!(status, 409);
        assert!(
            page.text("main").contains("already used"),
            "{}",
            page.source
        );

        // A third link runs out: it says on which day and whom to ask.
        let third = mel.invite(ama).await;
        let past = cohort::util::now() - chrono::Duration::days(3);
        {
            let mut c = app.conn();
            let last: i64 = inv::table
                .select(inv::id)
                .order(inv::id.desc())
                .first(&mut c)
                .unwrap();
            diesel::update(inv::table.find(last))
                .set(inv::expires_at.eq(past))
                .execute(&mut c)
                .unwrap();
        }
        let (status, page) = app.get_html(&browser(), &third).await;
        assert_eq!(status, 410);
        let expected = format!(
            "This link expired on {}; ask North Clinic for a new one.",
            past.format("%Y-%m-%d")
        );
        assert!(page.text("main").contains(&expected), "{}", page.source);
    }
);

on_both_backends!(
    the_page_shows_each_open_study_of_the_inviting_organization_with_its_questions,
    |app: TestApp| async move {
        let (muid, mpid) = app.practitioner("mel@x.org", false);
        let (suid, spid) = app.practitioner("sam@x.org", false);
        let (root, _) = app.practitioner("root@x.org", true);
        let north = app.org("North Clinic", 0, &[(mpid, "member")]);
        let south = app.org("South Clinic", 0, &[(spid, "member")]);
        let (mel, sam, su) = (api(&app, muid), api(&app, suid), api(&app, root));
        let ama = mel.patient(north, "ama@x.org", "1980-01-01").await;
        cohort::patient::repo::link(&mut app.conn(), ama, south).unwrap();

        let sleep = mel.study(north, "Sleep", &[HR, BP]).await;
        let walk = mel.study(north, "Walk", &[STEPS]).await;
        let archive = mel.study(north, "Archive", &[HR]).await;
        let _diet = mel.study(north, "Diet", &[HR]).await; // North's, but Ama is not enrolled
        let elsewhere = sam.study(south, "Elsewhere", &[HR]).await;
        let fitbit = su.source("Fitbit", &[HR, BP]).await;
        let omron = su.source("Omron", &[BP]).await;
        mel.accept(sleep, omron).await;
        mel.accept(sleep, fitbit).await;
        for s in [sleep, walk, archive] {
            mel.enrol(s, &[ama]).await;
        }
        sam.enrol(elsewhere, &[ama]).await;
        mel.set_status(walk, "paused").await;
        mel.set_status(archive, "closed").await;

        let path = mel.invite(ama).await;
        let (status, page) = app.get_html(&browser(), &path).await;
        assert_eq!(status, 200, "{}", page.source);
        assert_eq!(page.text("h1"), "Your invitation from North Clinic");
        assert_eq!(
            page.texts("section.study h2"),
            ["Sleep", "Walk"],
            "North's studies Ama takes part in, closed ones hidden, by name"
        );
        let main = page.text("main");
        for hidden in ["Archive", "Diet", "Elsewhere"] {
            assert!(!main.contains(hidden), "{hidden} is not shown: {main}");
        }

        let in_sleep = format!("section[aria-labelledby=\"study-{sleep}\"]");
        let in_walk = format!("section[aria-labelledby=\"study-{walk}\"]");
        let mut legends = page.texts(&format!("{in_sleep} legend"));
        legends.sort();
        assert_eq!(legends.len(), 2, "{legends:?}");
        assert!(legends[0].starts_with("Blood pressure"), "{legends:?}");
        assert!(legends[1].starts_with("Heart rate"), "{legends:?}");
        assert!(page
            .text(&format!("{in_walk} legend"))
            .starts_with("Step count"));
        for (study, scope) in [(sleep, HR), (sleep, BP), (walk, STEPS)] {
            assert_eq!(checked(&page, study, scope), "", "nothing answered yet");
        }
        for s in [sleep, walk] {
            for v in ["yes", "no"] {
                let css = format!("button[type=submit][name=all][value=\"{s}:{v}\"]");
                assert!(page.exists(&css), "{css}");
            }
        }
        let sleep_text = page.text(&in_sleep);
        assert!(sleep_text.contains("From: Fitbit, Omron."), "{sleep_text}");
        assert!(!sleep_text.contains("paused"), "{sleep_text}");
        let walk_text = page.text(&in_walk);
        assert!(walk_text.contains("paused"), "{walk_text}");
        assert!(
            walk_text.contains("From the device or app you connect."),
            "{walk_text}"
        );

        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());
        assert!(page.exists("input[type=hidden][name=csrf_token]"));
        assert_eq!(
            page.attr("link[rel=stylesheet]", "href").as_deref(),
            Some("/static/css/portal.css")
        );
        assert!(!page.exists("script"), "no JavaScript");
        assert!(
            !page.exists("#how") && !page.exists("#connect"),
            "no answer yet"
        );

        // South's link to the same patient shows South's study only.
        let theirs = sam.invite(ama).await;
        let (status, page) = app.get_html(&browser(), &theirs).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "Your invitation from South Clinic");
        assert_eq!(page.texts("section.study h2"), ["Elsewhere"]);
        let (status, _) = app.get_html(&browser(), &path).await;
        assert_eq!(status, 200, "South's link does not replace North's");
    }
);

on_both_backends!(
    a_patient_in_no_study_is_told_there_is_nothing_to_answer,
    |app: TestApp| async move {
        let (mel, org, _) = north(&app);
        let ama = mel.patient(org, "ama@x.org", "1980-01-01").await;
        mel.study(org, "Sleep", &[HR]).await;
        let path = mel.invite(ama).await;
        let (status, page) = app.get_html(&browser(), &path).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "Your invitation from North Clinic");
        assert!(
            page.text("main").contains("not taking part in any study"),
            "{}",
            page.source
        );
        assert!(!page.exists("form") && !page.exists("input[type=radio]"));
    }
);

on_both_backends!(
    names_typed_by_staff_are_shown_as_text_not_markup_on_patient_pages,
    |app: TestApp| async move {
        let (mel, org, uid) = north(&app);
        let ama = mel.patient(org, "ama@x.org", "1980-01-01").await;
        let name = "<script>alert(1)</script> & <b>Sleep</b>";
        let sleep = mel.study(org, name, &[HR]).await;
        mel.enrol(sleep, &[ama]).await;
        let path = mel.invite(ama).await;
        let (status, page) = app.get_html(&browser(), &path).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("section.study h2"), name);
        assert!(!page.exists("script") && !page.exists("main b"));
        let link = signup_link(&app, uid, sleep).await;
        let (status, page) = app.get_html(&browser(), local(&app, &link)).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), format!("Join {name}"));
        assert!(!page.exists("script") && !page.exists("main b"));
    }
);

on_both_backends!(
    answers_are_stored_as_the_patients_own_consent_and_then_the_app_connection_is_offered,
    |app: TestApp| async move {
        let (mel, org, _) = north(&app);
        let ama = mel.patient(org, "ama@x.org", "1980-01-01").await;
        let sleep = mel.study(org, "Sleep", &[HR, BP]).await;
        mel.enrol(sleep, &[ama]).await;
        let path = mel.invite(ama).await;
        let client = browser();

        let (hr, bp) = (field(sleep, HR), field(sleep, BP));
        let res = answer(
            &app,
            &client,
            &path,
            &[(hr.as_str(), "yes"), (bp.as_str(), "no")],
        )
        .await;
        assert_eq!(res.status(), 303);
        assert_eq!(location(&res), path);
        let (status, page) = app.follow(&client, res).await;
        assert_eq!(status, 200);
        assert_eq!(page.text(".flash-success"), "Your answers are saved.");
        assert_eq!(
            (checked(&page, sleep, HR), checked(&page, sleep, BP)),
            ("yes", "no")
        );

        let me = Some(user_of(&app, ama));
        assert_eq!(
            stored(&app, sleep, ama),
            [(BP, false, me), (HR, true, me)],
            "the patient is the actor"
        );
        assert_eq!(count_of(&app, "consent.patient"), 1);

        // With a yes: how the data travels, and how to connect an app.
        assert!(page
            .text("#how h2")
            .contains("How your data reaches the study"));
        assert!(page.text("#connect h2").contains("Connect an app"));
        let link = app.at(&path);
        assert_eq!(
            href_of(&page, "#connect a", &link).as_deref(),
            Some(link.as_str())
        );
        let qr = format!("{path}/qr.svg");
        assert_eq!(
            page.attr("#connect img", "src").as_deref(),
            Some(qr.as_str())
        );
        assert!(page
            .attr("#connect img", "alt")
            .is_some_and(|a| !a.is_empty()));
        let res = client.get(app.at(&qr)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "image/svg+xml");
        assert!(res.text().await.unwrap().contains("<svg"));

        // The flash is said once.
        let (_, again) = app.get_html(&client, &path).await;
        assert!(!again.exists(".flash"), "{}", again.source);

        // The study team reads the patient's decisions.
        let (status, body) = mel.get(&format!("/api/v1/patients/{ama}/consents")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            decided(&body, sleep),
            [
                ("omh:blood-pressure:4.0".to_string(), false),
                ("omh:heart-rate:2.0".to_string(), true)
            ]
        );
    }
);

on_both_backends!(
    coming_back_changes_an_answer_and_sending_the_same_answers_changes_nothing,
    |app: TestApp| async move {
        let (mel, org, _) = north(&app);
        let ama = mel.patient(org, "ama@x.org", "1980-01-01").await;
        let sleep = mel.study(org, "Sleep", &[HR, BP]).await;
        mel.enrol(sleep, &[ama]).await;
        let path = mel.invite(ama).await;
        let (hr, bp) = (field(sleep, HR), field(sleep, BP));

        let res = answer(
            &app,
            &browser(),
            &path,
            &[(hr.as_str(), "no"), (bp.as_str(), "no")],
        )
        .await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.get_html(&browser(), &path).await;
        assert!(page.exists("#how"), "answered");
        assert!(
            page.text("#how").contains("not said yes to anything"),
            "{}",
            page.text("#how")
        );
        assert!(!page.exists("#connect"), "no app to connect without a yes");

        // Later, in another browser: heart rate becomes a yes.
        let client = browser();
        let res = answer(
            &app,
            &client,
            &path,
            &[(hr.as_str(), "yes"), (bp.as_str(), "no")],
        )
        .await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.follow(&client, res).await;
        assert_eq!(page.text(".flash-success"), "Your answers are saved.");
        assert_eq!(checked(&page, sleep, HR), "yes");
        let me = Some(user_of(&app, ama));
        assert_eq!(stored(&app, sleep, ama), [(BP, false, me), (HR, true, me)]);
        assert!(page.exists("#connect"));

        // The same answers again.
        let res = answer(
            &app,
            &client,
            &path,
            &[(hr.as_str(), "yes"), (bp.as_str(), "no")],
        )
        .await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.follow(&client, res).await;
        assert!(!page.exists(".flash-success"));
        assert!(
            page.text(".flash-info").starts_with("Nothing changed"),
            "{}",
            page.source
        );
        assert_eq!(
            count_of(&app, "consent.patient"),
            2,
            "no event for no change"
        );
    }
);

on_both_backends!(
    yes_to_all_answers_every_item_of_that_study_only,
    |app: TestApp| async move {
        let (mel, org, _) = north(&app);
        let ama = mel.patient(org, "ama@x.org", "1980-01-01").await;
        let sleep = mel.study(org, "Sleep", &[HR, BP]).await;
        let walk = mel.study(org, "Walk", &[HR, STEPS]).await;
        mel.enrol(sleep, &[ama]).await;
        mel.enrol(walk, &[ama]).await;
        let path = mel.invite(ama).await;
        let client = browser();
        let me = Some(user_of(&app, ama));

        let all = format!("{sleep}:yes");
        let res = answer(&app, &client, &path, &[("all", all.as_str())]).await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.follow(&client, res).await;
        assert_eq!(page.text(".flash-success"), "Your answers are saved.");
        assert_eq!(stored(&app, sleep, ama), [(BP, true, me), (HR, true, me)]);
        assert!(
            stored(&app, walk, ama).is_empty(),
            "the other study is untouched"
        );
        assert_eq!(
            (checked(&page, walk, HR), checked(&page, walk, STEPS)),
            ("", "")
        );

        // No to all in Walk; a radio of Sleep sent with it still counts.
        let all = format!("{walk}:no");
        let bp = field(sleep, BP);
        let res = answer(
            &app,
            &client,
            &path,
            &[(bp.as_str(), "no"), ("all", all.as_str())],
        )
        .await;
        assert_eq!(res.status(), 303);
        assert_eq!(
            stored(&app, walk, ama),
            [(HR, false, me), (STEPS, false, me)]
        );
        assert_eq!(stored(&app, sleep, ama), [(BP, false, me), (HR, true, me)]);
    }
);

/// Form fields to send, the status expected, and why.
type Case = (Vec<(String, &'static str)>, u16, &'static str);

on_both_backends!(
    forged_or_mangled_answers_are_refused_and_change_nothing,
    |app: TestApp| async move {
        let (muid, mpid) = app.practitioner("mel@x.org", false);
        let (suid, spid) = app.practitioner("sam@x.org", false);
        let north = app.org("North Clinic", 0, &[(mpid, "member")]);
        let south = app.org("South Clinic", 0, &[(spid, "member")]);
        let (mel, sam) = (api(&app, muid), api(&app, suid));
        let ama = mel.patient(north, "ama@x.org", "1980-01-01").await;
        cohort::patient::repo::link(&mut app.conn(), ama, south).unwrap();
        let sleep = mel.study(north, "Sleep", &[HR, BP]).await;
        let diet = mel.study(north, "Diet", &[HR]).await;
        let elsewhere = sam.study(south, "Elsewhere", &[HR]).await;
        mel.enrol(sleep, &[ama]).await;
        sam.enrol(elsewhere, &[ama]).await;
        let path = mel.invite(ama).await;
        let hr = field(sleep, HR);

        // Without the page's CSRF token, or with another one.
        let client = browser();
        let (status, _) = app.get_html(&client, &path).await;
        assert_eq!(status, 200);
        let res = client
            .post(app.at(&path))
            .form(&[(hr.as_str(), "yes")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "no CSRF token");
        let res = client
            .post(app.at(&path))
            .form(&[("csrf_token", "forged"), (hr.as_str(), "yes")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "a wrong CSRF token");

        let cases: Vec<Case> = vec![
            (vec![("a-x-1".into(), "yes")], 400, "a mangled field"),
            (
                vec![("a-1".into(), "yes")],
                400,
                "a field without its scope",
            ),
            (
                vec![(hr.clone(), "yes"), (field(diet, HR), "yes")],
                400,
                "a study of the organization Ama is not enrolled in",
            ),
            (
                vec![(hr.clone(), "yes"), (field(sleep, STEPS), "yes")],
                400,
                "a scope the study does not ask for",
            ),
            (
                vec![(hr.clone(), "yes"), (field(elsewhere, HR), "yes")],
                400,
                "another organization's study",
            ),
        ];
        for (fields, expected, why) in cases {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let res = answer(&app, &client, &path, &fields).await;
            assert_eq!(res.status().as_u16(), expected, "{why}");
        }
        let all = format!("{diet}:yes");
        let res = answer(&app, &client, &path, &[("all", all.as_str())]).await;
        assert!(res.status().is_client_error(), "yes to all of {diet}");
        for study in [sleep, diet, elsewhere] {
            assert!(
                stored(&app, study, ama).is_empty(),
                "one bad item changes nothing"
            );
        }
        assert_eq!(count_of(&app, "consent.patient"), 0);
    }
);

on_both_backends!(
    a_registered_app_is_offered_with_the_invitation_code_in_its_link,
    |app: TestApp| async move {
        {
            let mut c = app.conn();
            diesel::insert_into(cl::table)
                .values((
                    cl::name.eq("CommonHealth"),
                    cl::client_id.eq("commonhealth-android"),
                    cl::redirect_uri.eq("org.commonhealth://callback"),
                    cl::invitation_url_template
                        .eq("https://links.commonhealth.org/jhe?code=CODE&v=1"),
                    cl::created_at.eq(cohort::util::now()),
                ))
                .execute(&mut c)
                .unwrap();
        }
        let (mel, org, _) = north(&app);
        let ama = mel.patient(org, "ama@x.org", "1980-01-01").await;
        let sleep = mel.study(org, "Sleep", &[HR]).await;
        mel.enrol(sleep, &[ama]).await;
        let path = mel.invite(ama).await;
        let client = browser();
        let (_, page) = app.get_html(&client, &path).await;
        assert!(
            href_of(&page, "a", "Open in CommonHealth").is_none(),
            "offered once the patient said yes"
        );

        let hr = field(sleep, HR);
        let res = answer(&app, &client, &path, &[(hr.as_str(), "yes")]).await;
        let (_, page) = app.follow(&client, res).await;
        let expected = format!(
            "https://links.commonhealth.org/jhe?code={}&v=1",
            token_of(&path)
        );
        assert_eq!(
            href_of(&page, "#connect a", "Open in CommonHealth"),
            Some(expected)
        );
        assert!(
            href_of(&page, "#connect a", "Open in Cohort").is_none(),
            "Cohort's own page is the link itself"
        );
    }
);

// ---- study sign-up: the console and the API ----------------------------------------------------

on_both_backends!(
    the_study_page_shows_the_signed_signup_link_its_qr_code_and_a_personal_link_once,
    |app: TestApp| async move {
        let (mel, org, uid) = north(&app);
        let sleep = mel.study(org, "Sleep", &[HR]).await;
        let client = app.signed_in(uid).await;
        let page_path = format!("/studies/{sleep}");
        let (status, page) = app.get_html(&client, &page_path).await;
        assert_eq!(status, 200);
        let link = page.text("#signup code#signup-link");
        let prefix = app.at(&format!("/join/{sleep}?sig="));
        assert!(link.starts_with(&prefix), "{link}");
        let sig = &link[prefix.len()..];
        assert!(
            sig.len() == 32 && sig.chars().all(|c| c.is_ascii_hexdigit()),
            "{sig}"
        );
        let qr = format!("/studies/{sleep}/signup.svg");
        assert!(page.exists(&format!("#signup img[src=\"{qr}\"]")));
        let res = client.get(app.at(&qr)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "image/svg+xml");
        assert!(res.text().await.unwrap().contains("<svg"));
        let (status, _) = app.get_html(&browser(), local(&app, &link)).await;
        assert_eq!(status, 200, "the link opens the sign-up form");
        let (ouid, opid) = app.practitioner("oz@x.org", false);
        app.org("South Clinic", 0, &[(opid, "member")]);
        let other = app.signed_in(ouid).await;
        let res = other.get(app.at(&qr)).send().await.unwrap();
        assert_eq!(res.status(), 404, "not another organization's QR code");

        // A personal link, shown once.
        let action = format!("/studies/{sleep}/signup-links");
        let res = app
            .post_form(&client, &page_path, &action, &[("external_id", "P-0042")])
            .await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.follow(&client, res).await;
        assert!(page.text(".flash-success").contains("P-0042"));
        let personal = page.text("#signup code#personal-link");
        assert!(
            personal.starts_with(&app.at(&format!("/join/{sleep}?ref=P-0042&sig="))),
            "{personal}"
        );
        let (_, again) = app.get_html(&client, &page_path).await;
        assert!(!again.exists("#personal-link"), "shown only once");
        let (status, form) = app.get_html(&browser(), local(&app, &personal)).await;
        assert_eq!(status, 200);
        assert!(form.text("main").contains("participant P-0042"));

        // Without an identifier: said what to give.
        let res = app
            .post_form(&client, &page_path, &action, &[("external_id", "  ")])
            .await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.follow(&client, res).await;
        assert!(
            page.text(".flash-error").contains("external identifier"),
            "{}",
            page.source
        );
        assert!(!page.exists("#personal-link"));
    }
);

on_both_backends!(
    the_api_makes_personal_links_for_active_studies_of_ones_own_organizations,
    |app: TestApp| async move {
        let (mel, org, _) = north(&app);
        let (suid, spid) = app.practitioner("sam@x.org", false);
        let south = app.org("South Clinic", 0, &[(spid, "member")]);
        let sam = api(&app, suid);
        let sleep = mel.study(org, "Sleep", &[HR]).await;
        let walk = mel.study(org, "Walk", &[STEPS]).await;
        let theirs = sam.study(south, "Elsewhere", &[HR]).await;
        mel.set_status(walk, "paused").await;

        let (status, out) = mel.personal_link(sleep, "P-1").await;
        assert_eq!(status, 201, "{out}");
        assert_eq!(out["studyId"].as_i64(), Some(sleep));
        assert_eq!(out["externalId"], "P-1");
        let url = out["url"].as_str().unwrap();
        let prefix = app.at(&format!("/join/{sleep}?ref=P-1&sig="));
        assert!(url.starts_with(&prefix), "{url}");
        let sig = &url[prefix.len()..];
        assert!(sig.len() == 32 && sig.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(app.audit_actions().contains(&"study.link".to_string()));

        assert_eq!(mel.personal_link(walk, "P-2").await.0, 409, "paused");
        assert_eq!(mel.personal_link(sleep, "").await.0, 400, "empty");
        assert_eq!(mel.personal_link(sleep, "   ").await.0, 400, "blank");
        assert_eq!(
            mel.personal_link(theirs, "P-3").await.0,
            404,
            "another organization's study"
        );
    }
);

// ---- study sign-up: the public form -----------------------------------------------------------

on_both_backends!(
    joining_through_the_generic_link_makes_an_enrolled_patient_with_the_answers_given,
    |app: TestApp| async move {
        let (mel, org, uid) = north(&app);
        let sleep = mel.study(org, "Sleep", &[HR, BP]).await;
        let link = signup_link(&app, uid, sleep).await;
        let path = local(&app, &link).to_string();
        let client = browser();

        let (status, form) = app.get_html(&client, &path).await;
        assert_eq!(status, 200);
        assert_eq!(form.text("h1"), "Join Sleep");
        for (name, kind) in [
            ("email", "email"),
            ("given", "text"),
            ("family", "text"),
            ("birth", "date"),
        ] {
            assert_eq!(
                form.attr(&format!("input[name={name}]"), "type").as_deref(),
                Some(kind),
                "{name}"
            );
        }
        for scope in [HR, BP] {
            assert_eq!(checked(&form, sleep, scope), "");
        }
        assert_eq!(form.unlabelled_inputs(), Vec::<String>::new());
        assert!(!form.exists("script"));

        let (hr, bp) = (field(sleep, HR), field(sleep, BP));
        let mut fields = details("Kofi@Example.org", "Kofi", "1985-05-06");
        fields.extend([(hr.as_str(), "yes"), (bp.as_str(), "no")]);
        let res = join(&app, &client, &path, &fields).await;
        assert_eq!(res.status(), 303);
        let to = location(&res);
        assert!(to.starts_with("/invite/"), "{to}");
        let (status, page) = app.follow(&client, res).await;
        assert_eq!(status, 200);
        assert!(
            page.text(".flash-success").contains("You joined Sleep"),
            "{}",
            page.source
        );
        assert_eq!(page.text("h1"), "Your invitation from North Clinic");
        assert_eq!(
            (checked(&page, sleep, HR), checked(&page, sleep, BP)),
            ("yes", "no")
        );

        let kofi = patient_by_email(&app, "kofi@example.org").expect("a new patient");
        let (given, family, birth): (String, String, Option<chrono::NaiveDate>) = pt::table
            .find(kofi)
            .select((pt::name_given, pt::name_family, pt::birth_date))
            .first(&mut *app.conn())
            .unwrap();
        assert_eq!(
            (given.as_str(), family.as_str(), birth),
            (
                "Kofi",
                "Boateng",
                chrono::NaiveDate::from_ymd_opt(1985, 5, 6)
            )
        );
        let orgs: Vec<i64> = po::table
            .filter(po::patient_id.eq(kofi))
            .select(po::organization_id)
            .load(&mut *app.conn())
            .unwrap();
        assert_eq!(orgs, [org], "a patient of the study's organization");
        assert!(enrolled(&app, sleep, kofi));
        let me = Some(user_of(&app, kofi));
        assert_eq!(stored(&app, sleep, kofi), [(BP, false, me), (HR, true, me)]);
        let actions = app.audit_actions();
        for a in ["study.join", "consent.patient"] {
            assert!(actions.contains(&a.to_string()), "{a} in {actions:?}");
        }
        let (_, body) = mel.get(&format!("/api/v1/patients/{kofi}/consents")).await;
        assert_eq!(
            decided(&body, sleep),
            [
                ("omh:blood-pressure:4.0".to_string(), false),
                ("omh:heart-rate:2.0".to_string(), true)
            ]
        );
    }
);

on_both_backends!(
    an_existing_patient_is_matched_by_email_and_birth_date_not_duplicated,
    |app: TestApp| async move {
        let (mel, org, uid) = north(&app);
        let ama = mel.patient(org, "ama@x.org", "1980-01-01").await;
        let sleep = mel.study(org, "Sleep", &[HR]).await;
        let link = signup_link(&app, uid, sleep).await;
        let path = local(&app, &link).to_string();
        let before = patient_count(&app);

        // Another birth date: refused, said on the birth date.
        let client = browser();
        let res = join(
            &app,
            &client,
            &path,
            &details("ama@x.org", "Ama", "1981-02-03"),
        )
        .await;
        let (status, page) = page_of(res).await;
        assert_eq!(status, 400);
        assert_eq!(
            page.attr("input[name=birth]", "aria-invalid").as_deref(),
            Some("true")
        );
        assert!(
            page.text("#f-birth-error").contains("details differ"),
            "{}",
            page.source
        );
        assert!(!enrolled(&app, sleep, ama));

        // The same e-mail and birth date: matched.
        let hr = field(sleep, HR);
        let mut fields = details("ama@x.org", "Ama", "1980-01-01");
        fields.push((hr.as_str(), "yes"));
        let res = join(&app, &client, &path, &fields).await;
        let (status, page) = page_of(res).await;
        assert_eq!(status, 200, "{}", page.source);
        assert!(page.text("main").contains("We found your existing record"));
        assert_eq!(patient_count(&app), before, "not duplicated");
        assert!(enrolled(&app, sleep, ama));
        let me = Some(user_of(&app, ama));
        assert_eq!(stored(&app, sleep, ama), [(HR, true, me)]);
    }
);

on_both_backends!(
    a_personal_link_gives_its_identifier_and_refuses_someone_else,
    |app: TestApp| async move {
        let (mel, org, _) = north(&app);
        let sleep = mel.study(org, "Sleep", &[HR]).await;
        let (_, out) = mel.personal_link(sleep, "P-1").await;
        let path = local(&app, out["url"].as_str().unwrap()).to_string();

        let res = join(
            &app,
            &browser(),
            &path,
            &details("kofi@x.org", "Kofi", "1985-05-06"),
        )
        .await;
        assert_eq!(res.status(), 303, "joined");
        let kofi = patient_by_email(&app, "kofi@x.org").unwrap();
        let ids: Vec<(String, String)> = pi::table
            .filter(pi::patient_id.eq(kofi))
            .select((pi::system, pi::value))
            .load(&mut *app.conn())
            .unwrap();
        assert_eq!(
            ids,
            [(
                format!("urn:cohort:study:{sleep}:participant"),
                "P-1".to_string()
            )]
        );
        assert!(enrolled(&app, sleep, kofi));

        let before = patient_count(&app);
        let res = join(
            &app,
            &browser(),
            &path,
            &details("efua@x.org", "Efua", "1990-03-04"),
        )
        .await;
        let (status, page) = page_of(res).await;
        assert_eq!(status, 400);
        assert!(
            page.text("#f-email-error")
                .contains("already used by someone else"),
            "{}",
            page.source
        );
        assert_eq!(
            page.attr("input[name=email]", "aria-invalid").as_deref(),
            Some("true")
        );
        assert_eq!(patient_count(&app), before);
        assert!(patient_by_email(&app, "efua@x.org").is_none());
    }
);

on_both_backends!(
    a_personal_link_does_not_let_someone_with_only_the_email_change_the_answers,
    |app: TestApp| async move {
        let (mel, org, _) = north(&app);
        let sleep = mel.study(org, "Sleep", &[HR]).await;
        let (_, out) = mel.personal_link(sleep, "P-1").await;
        let path = local(&app, out["url"].as_str().unwrap()).to_string();
        let hr = field(sleep, HR);
        let mut fields = details("kofi@x.org", "Kofi", "1985-05-06");
        fields.push((hr.as_str(), "yes"));
        let res = join(&app, &browser(), &path, &fields).await;
        assert_eq!(res.status(), 303, "Kofi joined");
        let kofi = patient_by_email(&app, "kofi@x.org").unwrap();
        let me = Some(user_of(&app, kofi));
        assert_eq!(stored(&app, sleep, kofi), [(HR, true, me)]);

        // Someone else with the forwarded link and Kofi's e-mail, but not his birth date:
        // as with the generic link, the details must agree before anything is changed.
        let mut fields = details("kofi@x.org", "Kofi", "1999-09-09");
        fields.push((hr.as_str(), "no"));
        let res = join(&app, &browser(), &path, &fields).await;
        let (status, page) = page_of(res).await;
        assert_eq!(
            stored(&app, sleep, kofi),
            [(HR, true, me)],
            "Kofi's answer stands"
        );
        assert_eq!(status, 400, "{}", page.source);
        assert!(page.text("#f-birth-error").contains("details differ"));
    }
);

on_both_backends!(
    a_personal_link_with_spaces_and_ampersands_in_its_identifier_works_end_to_end,
    |app: TestApp| async move {
        let (mel, org, _) = north(&app);
        let sleep = mel.study(org, "Sleep", &[HR]).await;
        let (status, out) = mel.personal_link(sleep, "Site A&B / 7").await;
        assert_eq!(status, 201, "{out}");
        let path = local(&app, out["url"].as_str().unwrap()).to_string();
        let (status, form) = app.get_html(&browser(), &path).await;
        assert_eq!(status, 200, "{path}");
        assert!(form.text("main").contains("participant Site A&B / 7"));
        let res = join(
            &app,
            &browser(),
            &path,
            &details("kofi@x.org", "Kofi", "1985-05-06"),
        )
        .await;
        assert_eq!(
            res.status(),
            303,
            "the form's own action keeps the signature valid"
        );
        let kofi = patient_by_email(&app, "kofi@x.org").unwrap();
        let value: String = pi::table
            .filter(pi::patient_id.eq(kofi))
            .select(pi::value)
            .first(&mut *app.conn())
            .unwrap();
        assert_eq!(value, "Site A&B / 7");
    }
);

on_both_backends!(
    the_answers_chosen_on_the_signup_form_survive_a_validation_error,
    |app: TestApp| async move {
        let (mel, org, uid) = north(&app);
        let sleep = mel.study(org, "Sleep", &[HR, BP]).await;
        let link = signup_link(&app, uid, sleep).await;
        let path = local(&app, &link).to_string();
        let (hr, bp) = (field(sleep, HR), field(sleep, BP));
        let mut fields = details("kofi.example.org", "Kofi", "1985-05-06");
        fields.extend([(hr.as_str(), "yes"), (bp.as_str(), "no")]);
        let res = join(&app, &browser(), &path, &fields).await;
        let (status, page) = page_of(res).await;
        assert_eq!(status, 400);
        assert!(page.exists("#f-email-error"));
        assert_eq!(
            page.attr("input[name=given]", "value").as_deref(),
            Some("Kofi")
        );
        assert_eq!(
            (checked(&page, sleep, HR), checked(&page, sleep, BP)),
            ("yes", "no"),
            "fixing the e-mail must not silently drop the choices already made"
        );
    }
);

on_both_backends!(
    an_altered_signup_link_or_a_study_not_taking_people_in_is_refused,
    |app: TestApp| async move {
        let (mel, org, uid) = north(&app);
        let sleep = mel.study(org, "Sleep", &[HR]).await;
        let walk = mel.study(org, "Walk", &[HR]).await;
        let link = signup_link(&app, uid, sleep).await;
        let path = local(&app, &link).to_string();
        let sig = &path[path.find("sig=").unwrap() + 4..];
        let (_, out) = mel.personal_link(sleep, "P-1").await;
        let personal = local(&app, out["url"].as_str().unwrap()).to_string();

        let flipped = format!(
            "{}{}",
            &sig[..31],
            if sig.ends_with('0') { '1' } else { '0' }
        );
        let altered = [
            format!("/join/{sleep}?sig={flipped}"),
            personal.replace("ref=P-1", "ref=P-2"),
            format!("/join/{walk}?sig={sig}"),
            format!("/join/{sleep}?ref=P-1&sig={sig}"),
            format!("/join/{sleep}"),
            format!("/join/x{sleep}?sig={sig}"),
        ];
        for bad in &altered {
            let (status, page) = app.get_html(&browser(), bad).await;
            assert_eq!(status, 404, "{bad}");
            assert_eq!(page.text("h1"), "This sign-up link is not valid", "{bad}");
        }

        // Someone has the form open when the team pauses the study.
        let client = browser();
        let (status, form) = app.get_html(&client, &path).await;
        assert_eq!(status, 200);
        let csrf = form.attr("input[name=csrf_token]", "value").unwrap();
        let action = form.attr("form", "action").unwrap();
        mel.set_status(sleep, "paused").await;
        let (status, page) = app.get_html(&browser(), &path).await;
        assert_eq!(status, 409);
        assert_eq!(page.text("h1"), "Enrolment is paused");
        let mut fields = details("kofi@x.org", "Kofi", "1985-05-06");
        fields.push(("csrf_token", &csrf));
        let res = client
            .post(app.at(&action))
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 409);
        assert!(patient_by_email(&app, "kofi@x.org").is_none());

        mel.set_status(sleep, "closed").await;
        let (status, page) = app.get_html(&browser(), &path).await;
        assert_eq!(status, 410);
        assert_eq!(page.text("h1"), "This study has closed");
    }
);

on_both_backends!(
    invalid_signup_details_are_marked_each_with_its_message,
    |app: TestApp| async move {
        let (mel, org, uid) = north(&app);
        let sleep = mel.study(org, "Sleep", &[HR]).await;
        let link = signup_link(&app, uid, sleep).await;
        let path = local(&app, &link).to_string();
        let client = browser();
        let before = patient_count(&app);

        let fields = [
            ("email", "not-an-email"),
            ("given", " "),
            ("family", ""),
            ("birth", "1990-13-01"),
        ];
        let res = join(&app, &client, &path, &fields).await;
        let (status, page) = page_of(res).await;
        assert_eq!(status, 400);
        assert!(page
            .text(".flash-error")
            .contains("correct the fields marked below"));
        for (name, message) in [
            ("email", "Enter your e-mail address"),
            ("given", "Enter your given name"),
            ("family", "Enter your family name"),
            ("birth", "Enter your birth date as"),
        ] {
            let input = format!("input[name={name}]");
            assert_eq!(
                page.attr(&input, "aria-invalid").as_deref(),
                Some("true"),
                "{name}"
            );
            let error = format!("f-{name}-error");
            assert!(page.text(&format!("#{error}")).contains(message), "{name}");
            assert!(
                page.attr(&input, "aria-describedby")
                    .is_some_and(|d| d.split(' ').any(|id| id == error)),
                "{name}'s message is tied to it"
            );
        }
        assert_eq!(
            page.attr("input[name=email]", "value").as_deref(),
            Some("not-an-email"),
            "what was typed stays"
        );
        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());

        // A birth date in the future; only that field is marked.
        let tomorrow = (cohort::util::now() + chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string();
        let res = join(
            &app,
            &client,
            &path,
            &details("kofi@x.org", "Kofi", &tomorrow),
        )
        .await;
        let (status, page) = page_of(res).await;
        assert_eq!(status, 400);
        assert!(page
            .text("#f-birth-error")
            .contains("cannot be in the future"));
        assert!(!page.exists("#f-email-error"));
        assert_eq!(page.attr("input[name=email]", "aria-invalid"), None);

        // A staff account's e-mail.
        let res = join(
            &app,
            &client,
            &path,
            &details("mel@x.org", "Mel", "1980-01-01"),
        )
        .await;
        let (status, page) = page_of(res).await;
        assert_eq!(status, 400);
        assert!(
            page.text("#f-email-error").contains("staff account"),
            "{}",
            page.source
        );
        assert_eq!(patient_count(&app), before, "nobody was added");
        assert!(!app.audit_actions().contains(&"study.join".to_string()));
    }
);

// ---- asking for fresh data ---------------------------------------------------------------------

/// Posts the patient page's "Ask for fresh data" form for `study`.
async fn ask(
    app: &TestApp,
    client: &reqwest::Client,
    patient: i64,
    org: i64,
    study: i64,
) -> reqwest::Response {
    let page = format!("/patients/{patient}?organization_id={org}");
    let action = format!("/patients/{patient}/update-requests");
    let (org, study) = (org.to_string(), study.to_string());
    app.post_form(
        client,
        &page,
        &action,
        &[
            ("organization_id", org.as_str()),
            ("study_id", study.as_str()),
        ],
    )
    .await
}

on_both_backends!(
    asking_for_fresh_data_says_the_patient_must_act_until_an_app_is_connected,
    |app: TestApp| async move {
        let (mel, org, uid) = north(&app);
        let ama = mel.patient(org, "ama@x.org", "1980-01-01").await;
        let sleep = mel.study(org, "Sleep", &[HR]).await;
        let walk = mel.study(org, "Walk", &[HR]).await;
        mel.enrol(sleep, &[ama]).await;
        mel.enrol(walk, &[ama]).await;
        mel.set_status(walk, "paused").await;
        let client = app.signed_in(uid).await;
        let outcomes = |study: i64| -> Vec<String> {
            ur::table
                .filter(ur::study_id.eq(study))
                .filter(ur::patient_id.eq(ama))
                .select(ur::outcome)
                .order(ur::id.asc())
                .load(&mut *app.conn())
                .unwrap()
        };

        let res = ask(&app, &client, ama, org, sleep).await;
        assert_eq!(res.status(), 303);
        let to = location(&res);
        assert!(to.ends_with("#invitations"), "{to}");
        let (_, landed) = app.follow(&client, res).await;
        assert!(
            landed.text(".flash-info").contains("must act"),
            "{}",
            landed.source
        );
        assert_eq!(outcomes(sleep), ["PATIENT_ACTION_NEEDED"]);
        assert!(app
            .audit_actions()
            .contains(&"update_request.create".to_string()));

        let res = ask(&app, &client, ama, org, walk).await;
        assert_eq!(res.status(), 303);
        let (_, landed) = app.follow(&client, res).await;
        assert!(
            landed.text(".flash-error").contains("paused"),
            "{}",
            landed.source
        );
        assert!(outcomes(walk).is_empty(), "nothing asked of a paused study");

        // Ama says yes and connects an app: the app sees the next request.
        let path = mel.invite(ama).await;
        let token = token_of(&path).to_string();
        let hr = field(sleep, HR);
        let res = answer(&app, &browser(), &path, &[(hr.as_str(), "yes")]).await;
        assert_eq!(res.status(), 303);
        connect(&app, &token, "cohort").await;
        let res = ask(&app, &client, ama, org, sleep).await;
        let (_, landed) = app.follow(&client, res).await;
        assert!(
            landed.text(".flash-success").contains("nothing more to do"),
            "{}",
            landed.source
        );
        assert_eq!(
            outcomes(sleep),
            ["PATIENT_ACTION_NEEDED", "IN_PROGRESS_NO_ACTION_NEEDED"]
        );
    }
);

// ---- registered apps ---------------------------------------------------------------------------

/// What an app does with an invitation: redeems it, then trades the code (with PKCE) for a
/// patient token, which it returns.
async fn connect(app: &TestApp, token: &str, client_id: &str) -> String {
    let res = script()
        .post(app.at(&format!("/api/v1/invitation/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the app redeems the invitation");
    let out: Value = res.json().await.unwrap();
    let grant = &out["grant"];
    assert_eq!(grant["client_id"], client_id);
    let verifier = cohort::portal::oauth::verifier_of(token);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", grant["code"].as_str().unwrap()),
        ("client_id", client_id),
        ("redirect_uri", grant["redirect_uri"].as_str().unwrap()),
        ("code_verifier", verifier.as_str()),
    ];
    let res = script()
        .post(app.at("/o/token/"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the app connects");
    let out: Value = res.json().await.unwrap();
    out["access_token"].as_str().unwrap().to_string()
}

fn client_id_of(app: &TestApp, client_id: &str) -> Option<i64> {
    cl::table
        .filter(cl::client_id.eq(client_id))
        .select(cl::id)
        .first(&mut *app.conn())
        .optional()
        .unwrap()
}

fn app_form<'a>(name: &'a str, client_id: &'a str, template: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", name),
        ("client_id", client_id),
        ("redirect_uri", "org.commonhealth://callback"),
        ("invitation_url_template", template),
    ]
}

on_both_backends!(
    superusers_register_and_remove_apps_and_the_default_one_stays,
    |app: TestApp| async move {
        let (root, _) = app.practitioner("root@x.org", true);
        let (mel, org, member) = north(&app);
        let theirs = app.signed_in(member).await;
        let (status, _) = app.get_html(&theirs, "/apps").await;
        assert_eq!(status, 403, "members do not manage apps");
        let res = app
            .post_form(
                &theirs,
                "/organizations",
                "/apps",
                &app_form("Sneaky", "sneaky", "https://x.org/CODE"),
            )
            .await;
        assert_eq!(res.status(), 403);
        assert!(client_id_of(&app, "sneaky").is_none());

        let su = app.signed_in(root).await;
        let (status, page) = app.get_html(&su, "/apps").await;
        assert_eq!(status, 200);
        let rows = page.texts("table.data tbody tr");
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(rows[0].contains("Cohort") && rows[0].contains("default"));
        let default = client_id_of(&app, "cohort").expect("the default app");
        assert!(!page.exists(&format!("form[action=\"/apps/{default}/delete\"]")));
        let (status, modal) = app.get_html(&su, "/apps?modal=create").await;
        assert_eq!(status, 200);
        assert!(modal.exists("input[name=invitation_url_template]"));
        assert_eq!(modal.unlabelled_inputs(), Vec::<String>::new());
        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());

        // Without CODE in the link: refused, said why, what was typed kept.
        let res = app
            .post_form(
                &su,
                "/apps?modal=create",
                "/apps",
                &app_form("CommonHealth", "commonhealth-android", "https://ch.org/jhe"),
            )
            .await;
        let (status, page) = page_of(res).await;
        assert_eq!(status, 400);
        assert!(
            page.text("main, body")
                .contains("with CODE where the invitation code goes"),
            "{}",
            page.source
        );
        assert_eq!(
            page.attr("input[name=client_id]", "value").as_deref(),
            Some("commonhealth-android")
        );
        assert!(client_id_of(&app, "commonhealth-android").is_none());

        let template = "https://ch.org/jhe/CODE";
        let res = app
            .post_form(
                &su,
                "/apps?modal=create",
                "/apps",
                &app_form("CommonHealth", "commonhealth-android", template),
            )
            .await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.follow(&su, res).await;
        assert!(page
            .text(".flash-success")
            .contains("Registered CommonHealth"));
        let listed = page.text("table.data tbody");
        assert!(
            listed.contains("CommonHealth") && listed.contains(template),
            "{listed}"
        );
        let added = client_id_of(&app, "commonhealth-android").expect("stored");

        // The same client_id again, and the default's.
        for taken in ["commonhealth-android", "cohort"] {
            let res = app
                .post_form(
                    &su,
                    "/apps?modal=create",
                    "/apps",
                    &app_form("Other", taken, "https://o.org/CODE"),
                )
                .await;
            let (status, page) = page_of(res).await;
            assert_eq!(status, 409, "{taken}");
            assert!(page.source.contains("already registered"), "{taken}");
        }
        let count: i64 = cl::table.count().get_result(&mut *app.conn()).unwrap();
        assert_eq!(count, 2);

        // A patient connects through it.
        let ama = mel.patient(org, "ama@x.org", "1980-01-01").await;
        let body = json!({"patient_id": ama, "client_id": "commonhealth-android"});
        let (status, out) = mel.post("/api/v1/invitation", body).await;
        assert_eq!(status, 201, "{out}");
        let link = out["invitationLink"].as_str().unwrap();
        let access = connect(&app, token_of(link), "commonhealth-android").await;
        let me = || {
            script()
                .get(app.at("/api/v1/patients/me"))
                .bearer_auth(&access)
                .send()
        };
        assert_eq!(
            me().await.unwrap().status(),
            200,
            "the app reads its patient"
        );

        // The default one cannot be removed; a registered one can.
        let res = app
            .post_form(&su, "/apps", &format!("/apps/{default}/delete"), &[])
            .await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.follow(&su, res).await;
        assert!(
            page.text(".flash-error").contains("default app"),
            "{}",
            page.source
        );
        assert!(client_id_of(&app, "cohort").is_some());
        let res = app
            .post_form(&su, "/apps", &format!("/apps/{added}/delete"), &[])
            .await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.follow(&su, res).await;
        assert!(page.text(".flash-success").contains("Removed CommonHealth"));
        assert!(client_id_of(&app, "commonhealth-android").is_none());
        assert!(!page.text("table.data tbody").contains("CommonHealth"));
        assert_eq!(
            me().await.unwrap().status(),
            401,
            "its patients' tokens stop at once"
        );
        let actions = app.audit_actions();
        for a in ["client.create", "client.delete"] {
            assert!(actions.contains(&a.to_string()), "{a}");
        }
    }
);

on_both_backends!(
    an_app_link_with_a_script_scheme_is_refused_whatever_its_case,
    |app: TestApp| async move {
        let (root, _) = app.practitioner("root@x.org", true);
        let su = app.signed_in(root).await;
        for (n, template) in [
            "javascript://%0Aalert(document.cookie)//CODE",
            "JavaScript://%0Aalert(document.cookie)//CODE",
            "JAVASCRIPT://%0Aalert(document.cookie)//CODE",
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("evil-{n}");
            let res = app
                .post_form(
                    &su,
                    "/apps?modal=create",
                    "/apps",
                    &app_form("Evil", &id, template),
                )
                .await;
            assert_eq!(res.status(), 400, "{template} is refused");
            assert!(
                client_id_of(&app, &id).is_none(),
                "{template} is not stored"
            );
        }
    }
);
