//! The Patients tab where patients meet studies: the Study and Consent filters with their
//! columns, enrolling and removing patients in bulk, the Studies section of a patient's page,
//! the invitation sent as a patient is created, and the API's list of a study's patients.

mod common;

use chrono::{NaiveDate, NaiveDateTime};
use common::html::Page;
use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use cohort::db::schema::{
    consents as cs, invitations as inv, patient_organizations as po, study_patients as sp,
};
use cohort::study::{Status, ValidStudy};

/// Seeded scope codes (the foundation migration gives them ids 1..15 in this order).
const BP: i64 = 2; // Blood pressure
const HR: i64 = 4; // Heart rate
const STEPS: i64 = 12; // Step count

// ---- helpers ---------------------------------------------------------------------------------

/// A signed-in practitioner with a browser and an API token.
struct Ui<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    token: String,
}

async fn ui(app: &TestApp, user_id: i64) -> Ui<'_> {
    let client = app.signed_in(user_id).await;
    let token = app.token(user_id);
    Ui { app, client, token }
}

type Fields<'a> = [(&'a str, &'a str)];

impl Ui<'_> {
    async fn get(&self, path: &str) -> (u16, Page) {
        self.app.get_html(&self.client, path).await
    }

    /// Submits a form with the CSRF token of `page`; the raw answer.
    async fn submit(&self, page: &str, action: &str, fields: &Fields<'_>) -> reqwest::Response {
        self.app.post_form(&self.client, page, action, fields).await
    }

    /// Where the user lands: the page after a redirect, or the page shown.
    async fn landed(&self, res: reqwest::Response) -> (u16, Page) {
        if res.status() == 303 {
            return self.app.follow(&self.client, res).await;
        }
        let status = res.status().as_u16();
        (status, Page::new(&res.text().await.unwrap()))
    }

    /// Opens the list at `path` and sends its bulk form as a browser would: its hidden
    /// fields (the list's filters and the CSRF token) plus what the user chose in `extra`.
    async fn bulk(&self, path: &str, extra: &Fields<'_>) -> reqwest::Response {
        let (_, page) = self.get(path).await;
        assert!(page.exists("form#bulk"), "no bulk form at {path}");
        let mut form = hidden_fields(&page, "form#bulk");
        form.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let req = self.client.post(self.app.at("/patients/bulk"));
        req.form(&form).send().await.unwrap()
    }

    /// A bulk action on the checked `ids` of the list at `path`; the page it lands on.
    async fn bulk_on(&self, path: &str, action: &str, study: i64, ids: &[i64]) -> (u16, Page) {
        let study = study.to_string();
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        let mut fields = vec![("action", action), ("bulk_study_id", study.as_str())];
        fields.extend(ids.iter().map(|i| ("ids", i.as_str())));
        let res = self.bulk(path, &fields).await;
        self.landed(res).await
    }

    /// A JSON GET to the API: status and body.
    async fn api_get(&self, path: &str) -> (u16, Value) {
        let req = script().get(self.app.at(path)).bearer_auth(&self.token);
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    /// Creates a patient through the API and returns its id.
    async fn patient(&self, org: i64, email: &str, family: &str, given: &str) -> i64 {
        let body = json!({"organizationId": org, "telecomEmail": email,
                          "nameFamily": family, "nameGiven": given});
        let req = script().post(self.app.at("/api/v1/patients"));
        let res = req.bearer_auth(&self.token).json(&body).send().await;
        let res = res.unwrap();
        let status = res.status();
        let out: Value = res.json().await.unwrap();
        assert!(status.is_success(), "{status} {out}");
        out["id"].as_i64().unwrap()
    }

    /// Adds a patient to another organization through the API.
    async fn also_in(&self, patient: i64, org: i64) {
        let path =
            format!("/api/v1/patients/{patient}/global_add_organization?organizationId={org}");
        let req = script().patch(self.app.at(&path)).bearer_auth(&self.token);
        let res = req.json(&json!({})).send().await.unwrap();
        assert!(res.status().is_success(), "{}", res.status());
    }
}

/// A member of a new organization North, signed in.
async fn member_of_north(app: &TestApp) -> (Ui<'_>, i64) {
    let (uid, ana) = app.practitioner("ana@x.org", false);
    let north = app.org("North", 0, &[(ana, "member")]);
    (ui(app, uid).await, north)
}

/// The administrator, who can reach every organization.
async fn admin(app: &TestApp) -> Ui<'_> {
    ui(app, app.admin_user_id()).await
}

fn list(org: i64, extra: &str) -> String {
    format!("/patients?organization_id={org}{extra}")
}

fn show(id: i64, org: i64) -> String {
    format!("/patients/{id}?organization_id={org}")
}

/// A study made directly in the database.
fn study(app: &TestApp, org: i64, name: &str, status: Status) -> i64 {
    let s = ValidStudy {
        name: name.into(),
        description: "For the tests.".into(),
        icon_url: None,
        status,
    };
    cohort::study::repo::insert(&mut app.conn(), org, &s).unwrap()
}

/// Makes the study request these scopes.
fn requests(app: &TestApp, study: i64, scopes: &[i64]) {
    for scope in scopes {
        let added = cohort::study::repo::add_scope_request(&mut app.conn(), study, *scope);
        assert!(added.unwrap(), "a new request");
    }
}

/// Enrols patients directly in the database (the bulk form is tested on its own).
fn enrol(app: &TestApp, study: i64, ids: &[i64]) {
    cohort::study::repo::enrol(&mut app.conn(), study, ids).unwrap();
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
    let day = NaiveDate::from_ymd_opt(y, m, d).unwrap();
    day.and_hms_opt(h, min, 0).unwrap()
}

/// A decision recorded at `when`.
fn decision(app: &TestApp, study: i64, patient: i64, scope: i64, yes: bool, when: NaiveDateTime) {
    let who = (cs::study_id.eq(study), cs::patient_id.eq(patient));
    let what = (cs::codeable_concept_id.eq(scope), cs::consented.eq(yes));
    let t = (
        cs::consented_at.eq(when),
        cs::created_at.eq(when),
        cs::updated_at.eq(when),
    );
    let q = diesel::insert_into(cs::table).values((who, what, t));
    q.execute(&mut *app.conn()).unwrap();
}

/// Decisions now, one per scope: `marks` reads "✓✗" for consented, declined.
fn decide(app: &TestApp, study: i64, patient: i64, marks: &[(i64, char)]) {
    let now = cohort::util::now();
    for (scope, mark) in marks {
        decision(app, study, patient, *scope, *mark == '✓', now);
    }
}

/// An invitation from `org`, made `age` days ago and expiring `left` days from now.
fn invitation(app: &TestApp, org: i64, patient: i64, status: &str, age: i64, left: i64) {
    let t = cohort::util::now();
    let who = (inv::patient_id.eq(patient), inv::organization_id.eq(org));
    let what = (
        inv::token_hash.eq(cohort::util::random_token(16)),
        inv::status.eq(status),
        inv::send_email.eq(false),
    );
    let when = (
        inv::created_at.eq(t - chrono::Duration::days(age)),
        inv::expires_at.eq(t + chrono::Duration::days(left)),
        inv::last_updated.eq(t),
    );
    let q = diesel::insert_into(inv::table).values((who, what, when));
    q.execute(&mut *app.conn()).unwrap();
}

/// The patients enrolled in a study, by id.
fn enrolled(app: &TestApp, study: i64) -> Vec<i64> {
    let q = sp::table.filter(sp::study_id.eq(study));
    let q = q.select(sp::patient_id).order(sp::patient_id.asc());
    q.load(&mut *app.conn()).unwrap()
}

fn decisions_of(app: &TestApp, study: i64, patient: i64) -> i64 {
    let q = cs::table.filter(cs::study_id.eq(study).and(cs::patient_id.eq(patient)));
    q.count().get_result(&mut *app.conn()).unwrap()
}

fn archive(app: &TestApp, patient: i64, org: i64) {
    let link = po::patient_id.eq(patient).and(po::organization_id.eq(org));
    let q = diesel::update(po::table.filter(link));
    let q = q.set(po::archived_at.eq(Some(cohort::util::now())));
    q.execute(&mut *app.conn()).unwrap();
}

/// The invitations of a patient: (organization, status, by e-mail).
fn invitations_of(app: &TestApp, patient: i64) -> Vec<(i64, String, bool)> {
    let q = inv::table
        .filter(inv::patient_id.eq(patient))
        .order(inv::id);
    let q = q.select((inv::organization_id, inv::status, inv::send_email));
    q.load(&mut *app.conn()).unwrap()
}

/// The CSS for the cells of the list's column headed `name`.
fn cells(page: &Page, name: &str) -> String {
    let heads = page.texts("table.data thead th");
    let n = heads.iter().position(|h| h == name);
    let n = n.unwrap_or_else(|| panic!("no column {name} in {heads:?}")) + 1;
    format!("table.data tbody tr td:nth-child({n})")
}

fn column(page: &Page, name: &str) -> Vec<String> {
    page.texts(&cells(page, name))
}

/// The family names of the list's rows, in order (none without a table).
fn families(page: &Page) -> Vec<String> {
    match page.exists("table.data") {
        true => page.texts(&format!("{} > a", cells(page, "Family name"))),
        false => Vec::new(),
    }
}

/// The Consent column as seen: "✓ 2 ✗ 0 … 1" per row.
fn consent_marks(page: &Page) -> Vec<String> {
    let marks = page.texts(&format!("{} span[title]", cells(page, "Consent")));
    marks.chunks(3).map(|row| row.join(" ")).collect()
}

/// The Consent column as a screen reader says it: "2 consented, 0 declined, 1 pending".
fn consent_spoken(page: &Page) -> Vec<String> {
    let said = page.texts(&format!("{} .visually-hidden", cells(page, "Consent")));
    let said = said.iter().map(|s| s.trim_start_matches(':').trim());
    said.map(str::to_string).collect()
}

/// Every hidden input of a form, the CSRF token included, as the browser sends them.
fn hidden_fields(page: &Page, form: &str) -> Vec<(String, String)> {
    let sel = scraper::Selector::parse(&format!("{form} input[type=hidden][name]")).unwrap();
    let named = page.doc.select(&sel).map(|e| e.value());
    let named = named.map(|v| (v.attr("name").unwrap(), v.attr("value").unwrap_or("")));
    named.map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// The option a select shows: the selected one, or else the first, as a browser does.
fn shown(page: &Page, select: &str) -> String {
    let selected = format!("{select} option[selected]");
    match page.exists(&selected) {
        true => page.text(&selected),
        false => page.text(&format!("{select} option")),
    }
}

/// The query of a link, as (name, value) pairs.
fn query_of(link: &str) -> Vec<(String, String)> {
    let url = url::Url::parse("http://x.test")
        .unwrap()
        .join(link)
        .unwrap();
    let pairs = url
        .query_pairs()
        .map(|(k, v)| (k.to_string(), v.to_string()));
    pairs.collect()
}

/// The `name` attribute of every element matching `css`.
fn attrs(page: &Page, css: &str, name: &str) -> Vec<String> {
    let found = scraper::Selector::parse(css).unwrap();
    let values = page.doc.select(&found).filter_map(|e| e.value().attr(name));
    values.map(str::to_string).collect()
}

/// The rows of a table, each as its cells' folded texts.
fn table_rows(page: &Page, table: &str) -> Vec<Vec<String>> {
    let (tr, td) = (
        scraper::Selector::parse(&format!("{table} tbody tr")).unwrap(),
        scraper::Selector::parse("td").unwrap(),
    );
    let fold = |e: scraper::ElementRef| {
        let t = e.text().collect::<Vec<_>>().join(" ");
        t.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let row = |r: scraper::ElementRef| r.select(&td).map(fold).collect();
    page.doc.select(&tr).map(row).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The .eml files the app wrote to its outbox (no SMTP server configured).
fn outbox(app: &TestApp) -> Vec<String> {
    let dir = app.data_dir.join("outbox");
    let files = std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok()).collect::<Vec<_>>());
    let files = files.unwrap_or_default().into_iter().map(|e| e.path());
    let eml = files.filter(|p| p.extension().is_some_and(|x| x == "eml"));
    eml.map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

/// The invitation link in an e-mail (quoted-printable soft breaks undone).
fn link_in(message: &str) -> String {
    let unfolded = message.replace("=\r\n", "").replace("=\n", "");
    let start = unfolded.find("/invite/").expect("a link in the message") + "/invite/".len();
    let token: String = unfolded[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    format!("/invite/{token}")
}

/// The Sleep fixture in `org`: Sleep requests blood pressure, heart rate and step count.
///
/// ```text
///          BP  HR  Steps   in Sleep
///   Ames   ✓   ✓   ✓       consented
///   Bell   ✓   ✗   ✓       declined
///   Cole   ✓   ✓   .       pending
///   Dunn   ✗   .   .       declined and pending
///   Eady   .   .   .       pending
///   Fox    .   .   .       pending (but consented to everything in Walk)
///   Gray   ✓   ✓   ✓       archived: not in the usual list
///   Hale                   not enrolled (consented to everything in Walk)
/// ```
struct Sleep {
    id: i64,
    walk: i64,
    p: [i64; 8],
}

const ALL_SIX: [&str; 6] = ["Ames", "Bell", "Cole", "Dunn", "Eady", "Fox"];

async fn sleep(web: &Ui<'_>, org: i64) -> Sleep {
    let app = web.app;
    let id = study(app, org, "Sleep", Status::Active);
    let walk = study(app, org, "Walk", Status::Active);
    requests(app, id, &[BP, HR, STEPS]);
    requests(app, walk, &[BP, HR, STEPS]);
    let mut p = [0; 8];
    let names = [
        "Ames", "Bell", "Cole", "Dunn", "Eady", "Fox", "Gray", "Hale",
    ];
    for (i, family) in names.iter().enumerate() {
        let email = format!("{}@x.org", family.to_lowercase());
        p[i] = web.patient(org, &email, family, "Pat").await;
    }
    enrol(app, id, &p[..7]);
    enrol(app, walk, &[p[5], p[7]]);
    decide(app, id, p[0], &[(BP, '✓'), (HR, '✓'), (STEPS, '✓')]);
    decide(app, id, p[1], &[(BP, '✓'), (HR, '✗'), (STEPS, '✓')]);
    decide(app, id, p[2], &[(BP, '✓'), (HR, '✓')]);
    decide(app, id, p[3], &[(BP, '✗')]);
    decide(app, id, p[6], &[(BP, '✓'), (HR, '✓'), (STEPS, '✓')]);
    for who in [p[5], p[7]] {
        decide(app, walk, who, &[(BP, '✓'), (HR, '✓'), (STEPS, '✓')]);
    }
    archive(app, p[6], org);
    Sleep { id, walk, p }
}

// ---- the Study selector and its columns --------------------------------------------------------

on_both_backends!(
    the_study_selector_offers_every_study_of_the_organization_and_starts_at_all_patients,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let south = app.org("South", 0, &[]);
        let mut ids = vec![study(&app, north, "alpha", Status::Active)];
        for i in 1..=23 {
            let status = if i == 5 {
                Status::Paused
            } else {
                Status::Active
            };
            ids.push(study(&app, north, &format!("Study {i:02}"), status));
        }
        ids.push(study(&app, north, "Zeta", Status::Closed));
        study(&app, south, "Secret", Status::Active);
        web.patient(north, "ada@x.org", "Ames", "Ada").await;

        let (status, page) = web.get(&list(north, "")).await;
        assert_eq!(status, 200);
        let mut want = strings(&["All patients", "alpha"]);
        want.extend((1..=23).map(|i| format!("Study {i:02}")));
        want.push("Zeta".into());
        assert_eq!(page.texts("#f-study_id option"), want, "all 25, by name");
        let values = attrs(&page, "#f-study_id option", "value");
        let mut ids_s = vec![String::new()];
        ids_s.extend(ids.iter().map(i64::to_string));
        assert_eq!(values, ids_s);
        assert!(!page.exists("#f-study_id option[selected]"));
        assert_eq!(shown(&page, "#f-study_id"), "All patients");
        assert!(
            !page.exists("#f-consent"),
            "no consent filter without a study"
        );
        let heads = page.texts("table.data thead th");
        assert!(!heads.contains(&"Consent".to_string()), "{heads:?}");
        assert!(!heads.contains(&"Last invitation".to_string()), "{heads:?}");
        assert!(!page.source.contains("Secret"), "South's study");

        // The bulk bar offers the same studies, saying which take no enrolments.
        let bulk = page.texts("#f-bulk_study_id option");
        assert_eq!(bulk.len(), 25);
        assert_eq!(bulk[5], "Study 05 (paused)");
        assert_eq!(bulk[24], "Zeta (closed)");
        assert_eq!(bulk[6], "Study 06");
        let actions = page.texts("#f-action option");
        assert!(
            actions.contains(&"Enrol in study…".to_string()),
            "{actions:?}"
        );
        assert!(actions.contains(&"Remove from study…".to_string()));

        let chosen = list(north, &format!("&study_id={}", ids[7]));
        let (_, page) = web.get(&chosen).await;
        assert_eq!(page.text("#f-study_id option[selected]"), "Study 07");
        assert_eq!(page.text("#f-consent option[selected]"), "Any");
        let options = page.texts("#f-consent option");
        assert_eq!(
            options,
            ["Any", "Consented to all", "Declined any", "Pending"]
        );
    }
);

on_both_backends!(
    choosing_a_study_lists_only_its_patients_with_their_consent_and_last_invitation_here,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let south = app.org("South", 0, &[]);
        let root = admin(&app).await;
        let id = study(&app, north, "Sleep", Status::Active);
        let walk = study(&app, north, "Walk", Status::Active);
        requests(&app, id, &[BP, HR]);
        requests(&app, walk, &[BP, HR]);
        let ames = web.patient(north, "ames@x.org", "Ames", "Ada").await;
        let bell = web.patient(north, "bell@x.org", "Bell", "Ben").await;
        let cole = web.patient(north, "cole@x.org", "Cole", "Cy").await;
        let dunn = web.patient(north, "dunn@x.org", "Dunn", "Dee").await;
        let eady = web.patient(north, "eady@x.org", "Eady", "Eve").await;
        for who in [ames, dunn] {
            root.also_in(who, south).await;
        }
        enrol(&app, id, &[ames, bell, cole, dunn]);
        enrol(&app, walk, &[dunn, eady]);
        decide(&app, id, ames, &[(BP, '✓'), (HR, '✓')]);
        decide(&app, id, bell, &[(BP, '✓'), (HR, '✗')]);
        decide(&app, id, cole, &[(HR, '✓')]);
        // Dunn's decisions in Walk are not Sleep's.
        decide(&app, walk, dunn, &[(BP, '✓'), (HR, '✗')]);
        // Ames: the latest of North's links is open; South's newer one is not North's.
        invitation(&app, north, ames, "cancelled", 3, 4);
        invitation(&app, north, ames, "issued", 1, 6);
        invitation(&app, south, ames, "redeemed", 0, 7);
        invitation(&app, north, bell, "issued", 10, -1);
        invitation(&app, north, cole, "redeemed", 2, 5);
        invitation(&app, south, dunn, "issued", 0, 7);
        invitation(&app, north, eady, "issued", 0, 7);

        let (status, page) = web.get(&list(north, &format!("&study_id={id}"))).await;
        assert_eq!(status, 200);
        assert_eq!(families(&page), ["Ames", "Bell", "Cole", "Dunn"]);
        assert_eq!(page.text(".lede"), "North · 4 patients");
        let heads = page.texts("table.data thead th");
        let n = heads.len();
        assert_eq!(heads[n - 2..], ["Consent", "Last invitation"], "at the end");
        assert_eq!(
            consent_marks(&page),
            ["✓ 2 ✗ 0 … 0", "✓ 1 ✗ 1 … 0", "✓ 1 ✗ 0 … 1", "✓ 0 ✗ 0 … 2"]
        );
        assert_eq!(
            consent_spoken(&page),
            [
                "2 consented, 0 declined, 0 pending",
                "1 consented, 1 declined, 0 pending",
                "1 consented, 0 declined, 1 pending",
                "0 consented, 0 declined, 2 pending",
            ]
        );
        let last = column(&page, "Last invitation");
        assert_eq!(last, ["issued", "expired", "redeemed", "never"]);
        let badges = page.texts(&format!("{} .badge", cells(&page, "Last invitation")));
        assert_eq!(
            badges,
            ["issued", "expired", "redeemed"],
            "never is no badge"
        );

        // Walk: Dunn's own decisions there, and Eady who is in Walk only.
        let (_, page) = web.get(&list(north, &format!("&study_id={walk}"))).await;
        assert_eq!(families(&page), ["Dunn", "Eady"]);
        assert_eq!(consent_marks(&page), ["✓ 1 ✗ 1 … 0", "✓ 0 ✗ 0 … 2"]);
        assert_eq!(column(&page, "Last invitation"), ["never", "issued"]);

        // A study that asks for nothing yet says so instead of counting.
        let diet = study(&app, north, "Diet", Status::Active);
        enrol(&app, diet, &[eady]);
        let (_, page) = web.get(&list(north, &format!("&study_id={diet}"))).await;
        assert_eq!(column(&page, "Consent"), ["nothing requested"]);

        // Back to all patients: everyone, and no study columns.
        let (_, page) = web.get(&list(north, "&study_id=")).await;
        assert_eq!(families(&page), ["Ames", "Bell", "Cole", "Dunn", "Eady"]);
        assert!(!page
            .texts("table.data thead th")
            .contains(&"Consent".into()));
    }
);

on_both_backends!(
    a_study_of_another_organization_in_the_address_is_ignored_without_an_error_or_a_trace,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let south = app.org("South", 0, &[]);
        let root = admin(&app).await;
        let ames = web.patient(north, "ames@x.org", "Ames", "Ada").await;
        let bell = web.patient(north, "bell@x.org", "Bell", "Ben").await;
        let zed = root.patient(south, "zed@x.org", "Zed", "Zoe").await;
        root.also_in(ames, south).await;
        let secret = study(&app, south, "Secret", Status::Active);
        requests(&app, secret, &[BP]);
        enrol(&app, secret, &[ames, zed]);
        decide(&app, secret, ames, &[(BP, '✗')]);
        let sleep = study(&app, north, "Sleep", Status::Active);
        enrol(&app, sleep, &[bell]);
        let gone = study(&app, north, "Gone", Status::Active);
        cohort::study::repo::delete(&mut app.conn(), gone).unwrap();

        let (_, plain) = web.get(&list(north, "")).await;
        for extra in [
            format!("&study_id={secret}"),
            format!("&study_id={secret}&consent=declined"),
            "&study_id=999999".to_string(),
            "&study_id=abc".to_string(),
            format!("&study_id={gone}"),
        ] {
            let (status, page) = web.get(&list(north, &extra)).await;
            assert_eq!(status, 200, "{extra}");
            assert_eq!(families(&page), ["Ames", "Bell"], "{extra}: all of North");
            assert_eq!(page.text(".lede"), plain.text(".lede"), "{extra}");
            assert!(!page.exists("#f-study_id option[selected]"), "{extra}");
            assert!(!page.exists("#f-consent"), "{extra}");
            let heads = page.texts("table.data thead th");
            assert!(!heads.contains(&"Consent".to_string()), "{extra}");
            assert!(!page.source.contains("Secret"), "{extra}");
            assert!(!page.source.contains("Zed"), "{extra}");
        }

        assert_eq!(enrolled(&app, secret), [ames.min(zed), ames.max(zed)]);
    }
);

on_both_backends!(
    all_matching_on_a_list_whose_study_was_ignored_acts_on_the_patients_it_shows,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let south = app.org("South", 0, &[]);
        let root = admin(&app).await;
        let ames = web.patient(north, "ames@x.org", "Ames", "Ada").await;
        web.patient(north, "bell@x.org", "Bell", "Ben").await;
        root.also_in(ames, south).await;
        let secret = study(&app, south, "Secret", Status::Active);
        enrol(&app, secret, &[ames]);
        // A study deleted since the address was bookmarked is ignored the same way.
        let gone = study(&app, north, "Gone", Status::Active);
        cohort::study::repo::delete(&mut app.conn(), gone).unwrap();

        for (stale, tag) in [(secret, "seen"), (gone, "kept")] {
            let path = list(north, &format!("&study_id={stale}"));
            let (_, page) = web.get(&path).await;
            assert_eq!(families(&page), ["Ames", "Bell"]);
            let label = page.text("label[for=f-all_matching]");
            assert_eq!(label, "All 2 matching this list");
            let fields = [("action", "add_tag"), ("tag", tag), ("all_matching", "on")];
            let res = web.bulk(&path, &fields).await;
            let (status, page) = web.landed(res).await;
            let title = page.text("title");
            let answer = (status, title.as_str());
            assert_eq!(answer, (200, "Patients · Cohort"), "study {stale}");
            let said = format!("Tagged 2 patients “{tag}” (0 had it already).");
            assert_eq!(page.text(".flash-success"), said);
        }
    }
);

// ---- the Consent filter -----------------------------------------------------------------------

on_both_backends!(
    the_consent_filter_lists_who_consented_to_all_who_declined_any_and_who_has_scopes_pending,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let s = sleep(&web, north).await;
        let with = |consent: &str| list(north, &format!("&study_id={}&consent={consent}", s.id));
        for (consent, want, chosen) in [
            ("", &ALL_SIX[..], "Any"),
            ("consented", &["Ames"][..], "Consented to all"),
            ("declined", &["Bell", "Dunn"], "Declined any"),
            ("pending", &["Cole", "Dunn", "Eady", "Fox"], "Pending"),
            ("maybe", &ALL_SIX[..], "Any"),
        ] {
            let (status, page) = web.get(&with(consent)).await;
            assert_eq!(status, 200);
            assert_eq!(families(&page), want, "consent={consent:?}");
            let n = want.len();
            let lede = format!("North · {n} patient{}", if n == 1 { "" } else { "s" });
            assert_eq!(page.text(".lede"), lede, "consent={consent:?}");
            let selected = shown(&page, "#f-consent");
            assert_eq!(selected, chosen, "consent={consent:?}");
        }
        // Archived patients come back with "All", in their consent state.
        let archived = format!("{}&archived=all", with("consented"));
        assert_eq!(families(&web.get(&archived).await.1), ["Ames", "Gray"]);
        // Without a study the consent filter has nothing to apply to.
        let (_, page) = web.get(&list(north, "&consent=declined")).await;
        let mut everyone = strings(&ALL_SIX);
        everyone.push("Hale".into());
        assert_eq!(families(&page), everyone);
        assert!(!page.exists("#f-consent"));
        // Walk's decisions are its own: there, Fox and Hale consented to all.
        let walk = list(north, &format!("&study_id={}&consent=consented", s.walk));
        assert_eq!(families(&web.get(&walk).await.1), ["Fox", "Hale"]);
    }
);

on_both_backends!(
    the_study_and_consent_filters_stay_in_the_page_jump_form_and_the_pager_links,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let id = study(&app, north, "Sleep", Status::Active);
        requests(&app, id, &[BP]);
        let mut pending = Vec::new();
        for i in 1..=26 {
            let family = format!("P{i:02}");
            let who = web
                .patient(north, &format!("p{i}@x.org"), &family, "Pat")
                .await;
            pending.push(who);
        }
        web.patient(north, "out@x.org", "Out", "Of").await;
        enrol(&app, id, &pending);
        // P26 consented, so 25 are pending.
        decide(&app, id, pending[25], &[(BP, '✓')]);
        let path = list(
            north,
            &format!("&study_id={id}&consent=pending&page_size=20"),
        );

        let (_, page) = web.get(&path).await;
        let want: Vec<String> = (1..=20).map(|i| format!("P{i:02}")).collect();
        assert_eq!(families(&page), want);
        assert_eq!(page.text(".pagination p"), "Showing 1–20 of 25");
        let next = page.attr("a[rel=next]", "href").expect("a next link");
        let (sid, org) = (id.to_string(), north.to_string());
        let kept = |page_no: &str| {
            let want = [
                ("organization_id", org.as_str()),
                ("study_id", sid.as_str()),
                ("consent", "pending"),
                ("page_size", "20"),
                ("page", page_no),
            ];
            want.map(|(k, v)| (k.to_string(), v.to_string()))
        };
        let has = |link: &str, page_no: &str| {
            let pairs = query_of(link);
            let missing: Vec<_> = kept(page_no)
                .into_iter()
                .filter(|p| !pairs.contains(p))
                .collect();
            assert!(missing.is_empty(), "{missing:?} missing from {link}");
        };
        has(&next, "2");
        let jump = "form[aria-label=\"Go to page\"]";
        let fields = hidden_fields(&page, jump);
        for (name, value) in kept("").into_iter().filter(|(k, _)| k != "page") {
            assert!(
                fields.contains(&(name.clone(), value)),
                "{name} in {fields:?}"
            );
        }

        let (_, second) = web.get(&next).await;
        let want: Vec<String> = (21..=25).map(|i| format!("P{i:02}")).collect();
        assert_eq!(families(&second), want, "the rest of the pending ones");
        assert_eq!(second.text("#f-study_id option[selected]"), "Sleep");
        assert_eq!(second.text("#f-consent option[selected]"), "Pending");
        let prev = second.attr("a[rel=prev]", "href").expect("a previous link");
        has(&prev, "1");

        // The page-jump form of page 1, sent as a browser does, lands on the same page 2.
        let mut query = fields;
        query.push(("page".into(), "2".into()));
        let res = web.client.get(app.at("/patients")).query(&query).send();
        let jumped = Page::new(&res.await.unwrap().text().await.unwrap());
        assert_eq!(families(&jumped), want);
    }
);

on_both_backends!(
    an_empty_study_or_consent_filter_says_what_to_do_next,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let (vuid, vic) = app.practitioner("vic@x.org", false);
        let north = app.org("North", 0, &[(ana, "member"), (vic, "viewer")]);
        let web = ui(&app, uid).await;
        let id = study(&app, north, "Sleep", Status::Active);
        requests(&app, id, &[BP]);
        let ames = web.patient(north, "ames@x.org", "Ames", "Ada").await;

        let (status, page) = web.get(&list(north, &format!("&study_id={id}"))).await;
        assert_eq!(status, 200);
        assert!(!page.exists("table.data"));
        assert_eq!(page.text(".empty h2"), "No one is enrolled in Sleep");
        let what = "Choose “All patients”, check the ones to enrol and pick “Enrol in study”.";
        assert_eq!(page.text(".empty p"), what);
        let back = format!(".empty a[href=\"{}\"]", list(north, ""));
        assert_eq!(page.text(&back), "Show all patients");
        let viewer = ui(&app, vuid).await;
        let (_, page) = viewer.get(&list(north, &format!("&study_id={id}"))).await;
        assert_eq!(
            page.text(".empty p"),
            "Patients appear here once a member enrols them."
        );

        enrol(&app, id, &[ames]);
        decide(&app, id, ames, &[(BP, '✓')]);
        let (_, page) = web
            .get(&list(north, &format!("&study_id={id}&consent=declined")))
            .await;
        assert!(!page.exists("table.data"));
        assert_eq!(page.text(".empty h2"), "No patients match these filters");
        let what =
            "Change the tag, invitation or consent filter, or clear them to see every patient.";
        assert_eq!(page.text(".empty p"), what);
        assert_eq!(page.text(&back), "Clear the filters");
        assert_eq!(
            page.text("#f-consent option[selected]"),
            "Declined any",
            "kept"
        );
    }
);

// ---- bulk enrolment -----------------------------------------------------------------------------

on_both_backends!(
    checked_patients_are_enrolled_in_the_chosen_study_and_those_already_in_it_are_counted,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let id = study(&app, north, "Sleep", Status::Active);
        requests(&app, id, &[BP]);
        let ames = web.patient(north, "ames@x.org", "Ames", "Ada").await;
        let bell = web.patient(north, "bell@x.org", "Bell", "Ben").await;
        let cole = web.patient(north, "cole@x.org", "Cole", "Cy").await;
        let dunn = web.patient(north, "dunn@x.org", "Dunn", "Dee").await;
        enrol(&app, id, &[ames]);

        let (status, page) = web
            .bulk_on(&list(north, ""), "enrol", id, &[ames, bell, cole])
            .await;
        assert_eq!(status, 200);
        let said = "Enrolled 2 patients in Sleep (1 enrolled already).";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(enrolled(&app, id), [ames, bell, cole]);
        let (_, page) = web.get(&list(north, &format!("&study_id={id}"))).await;
        assert_eq!(families(&page), ["Ames", "Bell", "Cole"]);
        assert_eq!(consent_marks(&page), ["✓ 0 ✗ 0 … 1"; 3]);

        // From the study's own list the user comes back to it.
        let path = list(north, &format!("&study_id={id}"));
        let (_, page) = web.get(&list(north, "")).await;
        assert!(page.exists(&format!("#sel-{dunn}")), "Dunn can be checked");
        let (_, page) = web.bulk_on(&path, "enrol", id, &[ames]).await;
        let said = "Enrolled 0 patients in Sleep (1 enrolled already).";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(page.text("#f-study_id option[selected]"), "Sleep");
        let (_, page) = web.bulk_on(&list(north, ""), "enrol", id, &[dunn]).await;
        let said = "Enrolled 1 patient in Sleep (0 enrolled already).";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(enrolled(&app, id), [ames, bell, cole, dunn]);
        let audits = app.audit_actions();
        let enrols = audits.iter().filter(|a| *a == "study.enrol").count();
        assert_eq!(enrols, 2, "one per enrolment that enrolled someone");
    }
);

on_both_backends!(
    removing_checked_patients_from_a_study_takes_their_decisions_in_it_and_nothing_else,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let sleep = study(&app, north, "Sleep", Status::Active);
        let walk = study(&app, north, "Walk", Status::Active);
        requests(&app, sleep, &[BP, HR]);
        requests(&app, walk, &[BP, HR]);
        let ames = web.patient(north, "ames@x.org", "Ames", "Ada").await;
        let bell = web.patient(north, "bell@x.org", "Bell", "Ben").await;
        let cole = web.patient(north, "cole@x.org", "Cole", "Cy").await;
        for st in [sleep, walk] {
            enrol(&app, st, &[ames, bell]);
            decide(&app, st, ames, &[(BP, '✓'), (HR, '✗')]);
            decide(&app, st, bell, &[(BP, '✓')]);
        }

        let path = list(north, &format!("&study_id={sleep}"));
        let (status, page) = web.bulk_on(&path, "unenrol", sleep, &[ames, cole]).await;
        assert_eq!(status, 200);
        let said = "Removed 1 patient from Sleep, with their consent decisions in it.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(families(&page), ["Bell"], "the study's list, without Ames");
        assert_eq!(enrolled(&app, sleep), [bell]);
        assert_eq!(decisions_of(&app, sleep, ames), 0, "Ames's Sleep decisions");
        assert_eq!(decisions_of(&app, walk, ames), 2, "Walk keeps them");
        assert_eq!(decisions_of(&app, sleep, bell), 1, "Bell keeps hers");
        assert!(app.audit_actions().contains(&"study.unenrol".to_string()));
        let (_, page) = web.get(&show(ames, north)).await;
        let studies = page.texts("#studies a[href^=\"/studies/\"]");
        assert_eq!(studies, ["Walk", "Walk"], "Walk's two decisions, no Sleep");

        // Enrolled again, Ames starts over: nothing decided in Sleep.
        web.bulk_on(&path, "enrol", sleep, &[ames]).await;
        let (_, page) = web.get(&path).await;
        assert_eq!(consent_marks(&page), ["✓ 0 ✗ 0 … 2", "✓ 1 ✗ 0 … 1"]);
    }
);

on_both_backends!(
    all_matching_with_a_study_and_consent_filter_acts_on_exactly_the_matching_patients,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let s = sleep(&web, north).await;
        let diet = study(&app, north, "Diet", Status::Active);
        let p = s.p;

        let pending = list(north, &format!("&study_id={}&consent=pending", s.id));
        let (_, page) = web.get(&pending).await;
        assert_eq!(
            page.text("label[for=f-all_matching]"),
            "All 4 matching this list"
        );
        let diet_s = diet.to_string();
        let fields = [
            ("action", "enrol"),
            ("bulk_study_id", diet_s.as_str()),
            ("all_matching", "on"),
        ];
        let res = web.bulk(&pending, &fields).await;
        let (_, page) = web.landed(res).await;
        let said = "Enrolled 4 patients in Diet (0 enrolled already).";
        assert_eq!(page.text(".flash-success"), said);
        // Cole, Dunn, Eady and Fox; not Gray (archived) nor Hale (not in Sleep).
        assert_eq!(enrolled(&app, diet), [p[2], p[3], p[4], p[5]]);
        assert_eq!(
            families(&page),
            ["Cole", "Dunn", "Eady", "Fox"],
            "back to the list"
        );

        let declined = list(north, &format!("&study_id={}&consent=declined", s.id));
        let sleep_s = s.id.to_string();
        let fields = [
            ("action", "unenrol"),
            ("bulk_study_id", sleep_s.as_str()),
            ("all_matching", "on"),
        ];
        let res = web.bulk(&declined, &fields).await;
        let (_, page) = web.landed(res).await;
        let said = "Removed 2 patients from Sleep, with their consent decisions in it.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(enrolled(&app, s.id), [p[0], p[2], p[4], p[5], p[6]]);
        assert_eq!(page.text(".empty h2"), "No patients match these filters");
        let (_, page) = web.get(&list(north, &format!("&study_id={}", s.id))).await;
        assert_eq!(families(&page), ["Ames", "Cole", "Eady", "Fox"]);
    }
);

on_both_backends!(
    enrolling_in_a_paused_or_closed_study_is_refused_and_says_why,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let south = app.org("South", 0, &[]);
        let root = admin(&app).await;
        let walk = study(&app, north, "Walk", Status::Paused);
        let zen = study(&app, north, "Zen", Status::Closed);
        let sleep = study(&app, north, "Sleep", Status::Active);
        let secret = study(&app, south, "Secret", Status::Active);
        let ames = web.patient(north, "ames@x.org", "Ames", "Ada").await;
        let zed = root.patient(south, "zed@x.org", "Zed", "Zoe").await;

        for (id, name, status) in [(walk, "Walk", "paused"), (zen, "Zen", "closed")] {
            let (status_code, page) = web.bulk_on(&list(north, ""), "enrol", id, &[ames]).await;
            assert_eq!(status_code, 200);
            let said = format!(
                "{name} is {status}, so it takes no new enrolments. Set its status to active first."
            );
            assert_eq!(page.text(".flash-error"), said);
            assert!(!page.exists(".flash-success"));
            assert!(enrolled(&app, id).is_empty(), "{name}");
        }

        // Another organization's study, or patient, is not enrolled either.
        let (status, _) = web
            .bulk_on(&list(north, ""), "enrol", secret, &[ames])
            .await;
        assert_eq!(status, 404);
        assert!(enrolled(&app, secret).is_empty());
        let (_, page) = web
            .bulk_on(&list(north, ""), "enrol", sleep, &[ames, zed])
            .await;
        assert_eq!(
            page.text(".flash-error"),
            "Patient and study must be from the same Organization"
        );
        assert!(enrolled(&app, sleep).is_empty(), "not even Ames");
        // Choosing no study is told, not guessed.
        let res = web
            .bulk(
                &list(north, ""),
                &[("action", "enrol"), ("ids", &ames.to_string())],
            )
            .await;
        let (_, page) = web.landed(res).await;
        assert_eq!(page.text(".flash-error"), "Choose the study.");
        assert!(!app.audit_actions().contains(&"study.enrol".to_string()));
    }
);

on_both_backends!(
    a_viewer_sees_a_studys_patients_but_cannot_enrol_or_remove_them,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let (vuid, vic) = app.practitioner("vic@x.org", false);
        let north = app.org("North", 0, &[(ana, "member"), (vic, "viewer")]);
        let web = ui(&app, uid).await;
        let viewer = ui(&app, vuid).await;
        let id = study(&app, north, "Sleep", Status::Active);
        requests(&app, id, &[BP]);
        let ames = web.patient(north, "ames@x.org", "Ames", "Ada").await;
        let bell = web.patient(north, "bell@x.org", "Bell", "Ben").await;
        enrol(&app, id, &[ames]);
        decide(&app, id, ames, &[(BP, '✗')]);

        let path = list(north, &format!("&study_id={id}"));
        let (status, page) = viewer.get(&path).await;
        assert_eq!(status, 200);
        assert_eq!(families(&page), ["Ames"]);
        assert_eq!(consent_marks(&page), ["✓ 0 ✗ 1 … 0"]);
        assert!(!page.exists("form#bulk"), "no bulk actions");
        assert!(!page.exists("input[name=ids]"), "nothing to check");

        let (org, sid) = (north.to_string(), id.to_string());
        let (a, b) = (ames.to_string(), bell.to_string());
        for (action, who) in [("enrol", &b), ("unenrol", &a)] {
            let fields = [
                ("organization_id", org.as_str()),
                ("action", action),
                ("bulk_study_id", sid.as_str()),
                ("ids", who.as_str()),
            ];
            let res = viewer.submit(&path, "/patients/bulk", &fields).await;
            assert_eq!(res.status(), 403, "{action}");
        }
        assert_eq!(enrolled(&app, id), [ames], "nothing changed");
        assert_eq!(decisions_of(&app, id, ames), 1);
    }
);

// ---- the patient's page -----------------------------------------------------------------------

on_both_backends!(
    the_patient_page_lists_studies_pending_a_response_and_each_decision_with_its_time,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let south = app.org("South", 0, &[]);
        let root = admin(&app).await;
        let ames = web.patient(north, "ames@x.org", "Ames", "Ada").await;
        root.also_in(ames, south).await;
        let sleep = study(&app, north, "Sleep", Status::Active);
        let walk = study(&app, north, "Walk", Status::Paused);
        let diet = study(&app, north, "diet", Status::Active);
        let secret = study(&app, south, "Secret", Status::Active);
        requests(&app, sleep, &[BP, HR]);
        requests(&app, walk, &[STEPS]);
        requests(&app, diet, &[BP, HR]);
        requests(&app, secret, &[BP, HR]);
        enrol(&app, sleep, &[ames]);
        enrol(&app, walk, &[ames]);
        enrol(&app, diet, &[ames]);
        enrol(&app, secret, &[ames]);
        decision(&app, sleep, ames, BP, true, at(2026, 3, 2, 9, 15));
        decision(&app, walk, ames, STEPS, false, at(2026, 4, 5, 18, 30));
        decision(&app, secret, ames, HR, true, at(2026, 5, 6, 7, 8));

        let (status, page) = web.get(&show(ames, north)).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("#studies-title"), "Studies");
        let heads = page.texts("#studies h3");
        assert_eq!(heads, ["Pending a response", "Responded"]);
        let pending = page.texts("#studies ul.stack li");
        assert_eq!(
            pending,
            [
                "diet active waiting on: Blood pressure, Heart rate",
                "Sleep active waiting on: Heart rate",
            ],
            "by name; Walk has nothing pending, Secret is South's"
        );
        let links = attrs(&page, "#studies ul.stack li > a", "href");
        assert_eq!(
            links,
            [format!("/studies/{diet}"), format!("/studies/{sleep}")]
        );

        let heads = page.texts("#studies table.data thead th");
        assert_eq!(heads, ["Study", "Scope", "Decision", "When"]);
        let rows = table_rows(&page, "#studies table.data");
        assert_eq!(
            rows,
            [
                strings(&["Sleep", "Blood pressure", "✓ Consented", "2026-03-02 09:15"]),
                strings(&["Walk", "Step count", "✗ Declined", "2026-04-05 18:30"]),
            ]
        );
        let times = attrs(&page, "#studies time", "datetime");
        assert_eq!(times, ["2026-03-02T09:15:00Z", "2026-04-05T18:30:00Z"]);
        let section = page.text("#studies");
        assert!(!section.contains("Secret"), "{section}");
        assert!(!page.source.contains("Secret"), "nowhere on the page");
        assert!(!page.source.contains("2026-05-06"), "nor its decision");

        // The administrator sees South too, on the same page.
        let (_, page) = root.get(&show(ames, north)).await;
        let pending = page.texts("#studies ul.stack li > a");
        assert_eq!(pending, ["diet", "Secret", "Sleep"]);
        let rows = table_rows(&page, "#studies table.data");
        let studies: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(studies, ["Secret", "Sleep", "Walk"]);
    }
);

on_both_backends!(
    the_studies_section_says_when_nothing_is_pending_nothing_is_decided_or_nothing_is_enrolled,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let (vuid, vic) = app.practitioner("vic@x.org", false);
        let north = app.org("North", 0, &[(ana, "member"), (vic, "viewer")]);
        let south = app.org("South", 0, &[]);
        let web = ui(&app, uid).await;
        let viewer = ui(&app, vuid).await;
        let root = admin(&app).await;
        let ames = web.patient(north, "ames@x.org", "Ames", "Ada").await;
        let bell = web.patient(north, "bell@x.org", "Bell", "Ben").await;
        let cole = web.patient(north, "cole@x.org", "Cole", "Cy").await;
        root.also_in(cole, south).await;
        let sleep = study(&app, north, "Sleep", Status::Active);
        let secret = study(&app, south, "Secret", Status::Active);
        requests(&app, sleep, &[BP, HR]);
        requests(&app, secret, &[BP]);
        enrol(&app, sleep, &[ames, bell]);
        decide(&app, sleep, ames, &[(BP, '✓'), (HR, '✗')]);
        enrol(&app, secret, &[cole]);

        let (_, page) = web.get(&show(ames, north)).await;
        let said = "Nothing pending: every requested scope has a decision.";
        assert_eq!(page.text("#studies h3 + p"), said);
        assert_eq!(table_rows(&page, "#studies table.data").len(), 2);

        let (_, page) = web.get(&show(bell, north)).await;
        assert_eq!(page.texts("#studies ul.stack li > a"), ["Sleep"]);
        assert_eq!(page.text("#studies h3 ~ p.muted"), "No decisions yet.");
        assert!(!page.exists("#studies table"));

        // Cole is enrolled only where North cannot see.
        let not = "Not enrolled in any study; enrol from a study's page or with \
                   “Enrol in study” on the Patients tab.";
        let (_, page) = web.get(&show(cole, north)).await;
        assert_eq!(page.text("#studies p"), not);
        assert!(!page.exists("#studies h3"));
        let (_, page) = viewer.get(&show(cole, north)).await;
        assert_eq!(page.text("#studies p"), "Not enrolled in any study.");
    }
);

// ---- create with an invitation -------------------------------------------------------------------

/// Fills in the create form for Ada Ames, `extra` added; the raw answer.
async fn create_ada(web: &Ui<'_>, org: i64, extra: &Fields<'_>) -> reqwest::Response {
    let form = list(org, "&modal=add&email=ada@x.org");
    let org = org.to_string();
    let mut fields = vec![
        ("organization_id", org.as_str()),
        ("email", "ada@x.org"),
        ("name_family", "Ames"),
        ("name_given", "Ada"),
        ("birth_date", "1970-01-01"),
    ];
    fields.extend_from_slice(extra);
    web.submit(&form, "/patients", &fields).await
}

/// The patient a redirect to their page names.
fn patient_of(res: &reqwest::Response) -> i64 {
    let loc = res.headers().get("location").expect("a redirect");
    let loc = loc.to_str().unwrap();
    let id = loc
        .strip_prefix("/patients/")
        .and_then(|l| l.split('?').next());
    id.and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("{loc}"))
}

on_both_backends!(
    creating_a_patient_with_send_invitation_emails_them_a_link_that_opens_their_invitation,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let (_, page) = web.get(&list(north, "&modal=add&email=ada@x.org")).await;
        assert_eq!(
            page.text("label[for=f-send_invitation]"),
            "Send an invitation now"
        );
        assert!(
            page.exists("#f-send_invitation:not([checked])"),
            "off by default"
        );

        let res = create_ada(&web, north, &[("send_invitation", "on")]).await;
        assert_eq!(res.status(), 303);
        let ada = patient_of(&res);
        let (_, page) = web.landed(res).await;
        let said = "Added Ada Ames and e-mailed an invitation to ada@x.org.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(page.text("h1"), "Ada Ames");
        let rows = table_rows(&page, "#invitations table");
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0][2..], ["issued", "yes"]);
        let made = invitations_of(&app, ada);
        assert_eq!(made, [(north, "issued".to_string(), true)]);
        let audits = app.audit_actions();
        assert!(audits.contains(&"patient.create".to_string()));
        assert!(audits.contains(&"invitation.issue".to_string()));

        let mail = outbox(&app);
        assert_eq!(mail.len(), 1, "one e-mail");
        assert!(mail[0].contains("To: ada@x.org"), "{}", mail[0]);
        let subject = "Subject: North invites you to share health data with its studies";
        assert!(mail[0].contains(subject), "{}", mail[0]);
        let link = link_in(&mail[0]);
        let (status, landing) = app.get_html(&browser(), &link).await;
        assert_eq!(status, 200, "the e-mailed link is the one saved");
        assert!(landing.text("main").contains("Your invitation from North"));

        // The list's Last invitation column shows it too.
        let id = study(&app, north, "Sleep", Status::Active);
        enrol(&app, id, &[ada]);
        let (_, page) = web.get(&list(north, &format!("&study_id={id}"))).await;
        assert_eq!(column(&page, "Last invitation"), ["issued"]);
    }
);

on_both_backends!(
    creating_a_patient_without_the_checkbox_sends_no_invitation,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let res = create_ada(&web, north, &[]).await;
        assert_eq!(res.status(), 303);
        let ada = patient_of(&res);
        let (_, page) = web.landed(res).await;
        assert_eq!(page.text(".flash-success"), "Added Ada Ames.");
        assert_eq!(page.text("#invitations p.muted"), "No invitation sent yet.");
        assert!(invitations_of(&app, ada).is_empty());
        assert!(outbox(&app).is_empty());
        assert!(!app
            .audit_actions()
            .contains(&"invitation.issue".to_string()));
    }
);

on_both_backends!(
    a_patient_whose_invitation_email_bounces_is_still_created_with_the_link_saved,
    |base: TestApp| async move {
        // A mail server that is not there: the port was free a moment ago.
        let smtp = format!("smtp://127.0.0.1:{}", common::fixtures::free_port());
        let Some(app) = spawn_with(base.backend, vec![("SMTP_URL", smtp)]).await else {
            return;
        };
        let (web, north) = member_of_north(&app).await;
        let res = create_ada(&web, north, &[("send_invitation", "on")]).await;
        assert_eq!(res.status(), 303);
        let ada = patient_of(&res);
        let (status, page) = web.landed(res).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "Ada Ames");
        let said = page.text(".flash-error");
        let start = "Added Ada Ames, but the invitation e-mail was not delivered (";
        let end = "). Send a new link from the Invitations section.";
        assert!(said.starts_with(start) && said.ends_with(end), "{said}");
        assert!(!page.exists(".flash-success"));
        assert_eq!(
            invitations_of(&app, ada),
            [(north, "issued".to_string(), true)]
        );
    }
);

// ---- the API ------------------------------------------------------------------------------------

on_both_backends!(
    the_api_lists_only_the_patients_enrolled_in_a_study,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let south = app.org("South", 0, &[]);
        let root = admin(&app).await;
        let ames = web.patient(north, "ames@x.org", "Ames", "Ada").await;
        let bell = web.patient(north, "bell@x.org", "Bell", "Ben").await;
        web.patient(north, "cole@x.org", "Cole", "Cy").await;
        let zed = root.patient(south, "zed@x.org", "Zed", "Zoe").await;
        root.also_in(bell, south).await;
        let sleep = study(&app, north, "Sleep", Status::Active);
        let walk = study(&app, north, "Walk", Status::Active);
        let secret = study(&app, south, "Secret", Status::Active);
        enrol(&app, sleep, &[bell, ames]);
        enrol(&app, secret, &[bell, zed]);
        let ids = |v: &Value| -> Vec<i64> {
            let rows = v["results"].as_array().cloned().unwrap_or_default();
            rows.iter().map(|r| r["id"].as_i64().unwrap()).collect()
        };

        for path in [
            format!("/api/v1/patients?organization_id={north}&study_id={sleep}"),
            format!("/api/v1/patients?organizationId={north}&studyId={sleep}"),
            format!("/api/v1/patients?study_id={sleep}"),
        ] {
            let (status, out) = web.api_get(&path).await;
            assert_eq!(status, 200, "{path}: {out}");
            assert_eq!(out["count"], 2, "{path}");
            assert_eq!(ids(&out), [ames, bell], "{path}: by family name");
        }
        let (_, out) = web
            .api_get(&format!("/api/v1/patients?study_id={walk}"))
            .await;
        assert_eq!((out["count"].as_i64(), ids(&out)), (Some(0), vec![]));
        let (_, out) = web
            .api_get(&format!("/api/v1/patients?organization_id={north}"))
            .await;
        assert_eq!(out["count"], 3, "without a study: all of North");

        let (_, out) = root
            .api_get(&format!("/api/v1/patients?study_id={secret}"))
            .await;
        assert_eq!(ids(&out), [bell, zed], "the administrator sees them");
    }
);

on_both_backends!(
    the_api_answers_for_another_organizations_study_as_for_one_that_does_not_exist,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let south = app.org("South", 0, &[]);
        let root = admin(&app).await;
        let zed = root.patient(south, "zed@x.org", "Zed", "Zoe").await;
        let secret = study(&app, south, "Secret", Status::Active);
        enrol(&app, secret, &[zed]);

        let mut answers = Vec::new();
        for query in ["", "&organization_id="] {
            let query = query.replace('=', &format!("={north}"));
            let path = |study: i64| format!("/api/v1/patients?study_id={study}{query}");
            let (status, out) = web.api_get(&path(secret)).await;
            assert!(!out.to_string().contains("zed@x.org"));
            let nothing = web.api_get(&path(999_999)).await;
            answers.push((path(secret), (status, out), nothing));
        }
        let (told, untold): (Vec<_>, Vec<_>) = answers
            .into_iter()
            .map(|(path, a, b)| ((path.clone(), a), (path, b)))
            .unzip();
        assert_eq!(told, untold, "the same answers");
    }
);
