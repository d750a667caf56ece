//! The Studies tab as a practitioner sees it: the list (columns, search, status, pages), the
//! create modal, a study's page (requested data, data sources, edit and status, enrolment),
//! the consent review (matrix, filters, totals, decisions recorded on a patient's behalf, CSV
//! export), the data source catalogue, and who may change what.

mod common;

use common::html::Page;
use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use cohort::db::schema::{
    audit_events as ae, consents as cs, invitations as inv, studies as s, study_patients as sp,
};
use cohort::study::{Status, ValidStudy};

/// Seeded scope codes (the foundation migration gives them ids 1..15 in this order).
const BP: i64 = 2; // Blood pressure, omh:blood-pressure:4.0
const HR: i64 = 4; // Heart rate, omh:heart-rate:2.0
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

    /// Submits a form and returns where the user lands (after a redirect) or the page shown.
    async fn post(&self, page: &str, action: &str, fields: &Fields<'_>) -> (u16, Page) {
        let res = self.submit(page, action, fields).await;
        if res.status() == 303 {
            return self.app.follow(&self.client, res).await;
        }
        let status = res.status().as_u16();
        (status, Page::new(&res.text().await.unwrap()))
    }

    /// Submits a form that must succeed; the page it lands on, with its success flash.
    async fn ok(&self, page: &str, action: &str, fields: &Fields<'_>) -> Page {
        let (status, landed) = self.post(page, action, fields).await;
        let ok = status == 200 && landed.exists(".flash-success");
        assert!(
            ok,
            "{action} did not succeed ({status}):\n{}",
            landed.source
        );
        landed
    }

    /// Creates a patient through the API and returns its id.
    async fn patient(&self, org: i64, email: &str, family: &str, given: &str, birth: &str) -> i64 {
        let body = json!({"organizationId": org, "telecomEmail": email, "nameFamily": family,
                          "nameGiven": given, "birthDate": birth});
        let res = script().post(self.app.at("/api/v1/patients"));
        let res = res
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
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

    /// Makes the study request a scope, through its page.
    async fn request(&self, study: i64, scope: i64) {
        let scope = scope.to_string();
        let action = format!("/studies/{study}/scopes");
        self.ok(&show(study), &action, &[("scope_id", scope.as_str())])
            .await;
    }

    /// Posts the enrol form with the patients checked; the page it lands on.
    async fn enrol(&self, study: i64, ids: &[i64]) -> (u16, Page) {
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        let fields: Vec<(&str, &str)> = ids.iter().map(|i| ("ids", i.as_str())).collect();
        let page = format!("{}?modal=enrol", show(study));
        let action = format!("/studies/{study}/enrol");
        self.post(&page, &action, &fields).await
    }

    /// Posts the record-decision form: (scope, consent|decline|clear|keep) with a reason.
    async fn record(
        &self,
        study: i64,
        patient: i64,
        choices: &[(i64, &str)],
        reason: &str,
    ) -> reqwest::Response {
        let pid = patient.to_string();
        let names: Vec<String> = choices.iter().map(|(s, _)| format!("scope_{s}")).collect();
        let mut fields = vec![("patient_id", pid.as_str()), ("reason", reason)];
        fields.extend(
            names
                .iter()
                .zip(choices)
                .map(|(n, (_, v))| (n.as_str(), *v)),
        );
        let page = format!("{}?modal=record&patient={patient}", show(study));
        let action = format!("/studies/{study}/consents");
        self.submit(&page, &action, &fields).await
    }

    /// Records decisions that must be accepted.
    async fn decide(&self, study: i64, patient: i64, choices: &[(i64, &str)]) {
        let res = self.record(study, patient, choices, "paper form").await;
        let (_, page) = self.app.follow(&self.client, res).await;
        let said = page.text(".flash-success");
        assert!(said.starts_with("Recorded"), "{said}");
    }

    /// A CSV download: status, headers and body.
    async fn csv(&self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let res = self.client.get(self.app.at(path)).send().await.unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        (status, headers, res.text().await.unwrap())
    }
}

/// A study made directly in the database.
fn study(app: &TestApp, org: i64, name: &str, description: &str, status: Status) -> i64 {
    let s = ValidStudy {
        name: name.into(),
        description: description.into(),
        icon_url: None,
        status,
    };
    cohort::study::repo::insert(&mut app.conn(), org, &s).unwrap()
}

fn set_status(app: &TestApp, study: i64, status: &str) {
    let q = diesel::update(s::table.find(study)).set(s::status.eq(status));
    q.execute(&mut *app.conn()).unwrap();
}

/// An invitation from `org` to the patient, expiring `days` from now (negative: past).
fn invitation(app: &TestApp, org: i64, patient: i64, status: &str, days: i64) {
    let t = cohort::util::now();
    let who = (inv::patient_id.eq(patient), inv::organization_id.eq(org));
    let what = (
        inv::token_hash.eq(cohort::util::random_token(16)),
        inv::status.eq(status),
        inv::send_email.eq(false),
    );
    let when = (
        inv::created_at.eq(t),
        inv::expires_at.eq(t + chrono::Duration::days(days)),
        inv::last_updated.eq(t),
    );
    let q = diesel::insert_into(inv::table).values((who, what, when));
    q.execute(&mut *app.conn()).unwrap();
}

fn enrolled(app: &TestApp, study: i64) -> i64 {
    let q = sp::table.filter(sp::study_id.eq(study)).count();
    q.get_result(&mut *app.conn()).unwrap()
}

fn decisions_of(app: &TestApp, study: i64, patient: i64) -> i64 {
    let q = cs::table.filter(cs::study_id.eq(study).and(cs::patient_id.eq(patient)));
    q.count().get_result(&mut *app.conn()).unwrap()
}

/// When a decision was made, as the export and the matrix's <time> write it.
fn decided_at(app: &TestApp, study: i64, patient: i64, scope: i64) -> String {
    let mine = cs::study_id.eq(study).and(cs::patient_id.eq(patient));
    let q = cs::table.filter(mine.and(cs::codeable_concept_id.eq(scope)));
    let at: chrono::NaiveDateTime = q.select(cs::consented_at).first(&mut *app.conn()).unwrap();
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The details of the actions' audit events, oldest first.
fn audit_details(app: &TestApp, action: &str) -> Vec<(Option<String>, Value)> {
    let q = ae::table.filter(ae::action.eq(action)).order(ae::id.asc());
    let rows: Vec<(Option<String>, Option<String>)> = q
        .select((ae::object_id, ae::detail))
        .load(&mut *app.conn())
        .unwrap();
    let parse = |d: Option<String>| serde_json::from_str(&d.unwrap_or_default()).unwrap();
    rows.into_iter().map(|(o, d)| (o, parse(d))).collect()
}

fn list(org: i64, extra: &str) -> String {
    format!("/studies?organization_id={org}{extra}")
}

fn show(id: i64) -> String {
    format!("/studies/{id}")
}

/// The cells of the list's column headed `name`.
fn column(page: &Page, name: &str) -> Vec<String> {
    let heads = page.texts("table.data thead th");
    let n = heads.iter().position(|h| h == name);
    let n = n.unwrap_or_else(|| panic!("no column {name} in {heads:?}")) + 1;
    page.texts(&format!("table.data tbody tr td:nth-child({n})"))
}

/// The study names the list shows, in order (none without a table).
fn names(page: &Page) -> Vec<String> {
    match page.exists("table.data") {
        true => column(page, "Name"),
        false => Vec::new(),
    }
}

fn sel(css: &str) -> scraper::Selector {
    scraper::Selector::parse(css).unwrap()
}

fn folded(e: scraper::ElementRef) -> String {
    let t = e.text().collect::<Vec<_>>().join(" ");
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The review matrix as people read it: "Family ✓ ✗ pending", one string per row.
fn matrix(page: &Page) -> Vec<String> {
    let (rows, who, cells) = (
        sel("table.matrix tbody tr"),
        sel("td.num + td"),
        sel("td.decision"),
    );
    let mark = |m: String| m.split(' ').next().unwrap_or_default().to_string();
    let row = |tr: scraper::ElementRef| {
        let name = tr.select(&who).next().map(folded).unwrap_or_default();
        let family = name.split(',').next().unwrap_or_default().to_string();
        let marks = tr.select(&cells).map(folded).map(mark);
        std::iter::once(family)
            .chain(marks)
            .collect::<Vec<_>>()
            .join(" ")
    };
    page.doc.select(&rows).map(row).collect()
}

/// The `name` attribute of every element matching `css`.
fn attrs(page: &Page, css: &str, name: &str) -> Vec<String> {
    let found = sel(css);
    let values = page.doc.select(&found).filter_map(|e| e.value().attr(name));
    values.map(str::to_string).collect()
}

/// The (term, value) pairs of the totals card.
fn stats(page: &Page) -> Vec<(String, String)> {
    let (dt, dd) = (page.texts("#totals dl dt"), page.texts("#totals dl dd"));
    dt.into_iter().zip(dd).collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// An open modal is a labelled dialog.
fn assert_dialog(page: &Page) {
    let dialog = "[role=dialog][aria-modal=true]";
    assert_eq!(page.count(dialog), 1, "one open modal in:\n{}", page.source);
    let title = page.attr(dialog, "aria-labelledby");
    let title = title.expect("aria-labelledby");
    assert!(!page.text(&format!("#{title}")).is_empty(), "the title");
}

fn value(page: &Page, css: &str) -> String {
    let v = page.attr(css, "value");
    v.unwrap_or_else(|| panic!("no value for {css} in:\n{}", page.source))
}

/// The status and the Location of a response.
fn redirect(res: &reqwest::Response) -> (u16, String) {
    let loc = res.headers().get("location").map(|l| l.to_str().unwrap());
    (res.status().as_u16(), loc.unwrap_or_default().to_string())
}

/// A member of a new organization North, signed in.
async fn member_of_north(app: &TestApp) -> (Ui<'_>, i64) {
    let (uid, ana) = app.practitioner("ana@x.org", false);
    let north = app.org("North", 0, &[(ana, "member")]);
    (ui(app, uid).await, north)
}

/// The review fixture: Sleep, in `org`, requests blood pressure and heart rate; five patients
/// are enrolled and three decided (through the console's own forms):
///
/// ```text
///          Blood pressure  Heart rate
///   Ames   consented       consented
///   Bell   consented       declined
///   Cole   pending         consented
///   Dunn   pending         pending
///   Eady   pending         pending
/// ```
struct Sleep {
    id: i64,
    ada: i64,
    ben: i64,
    cy: i64,
    dee: i64,
    eve: i64,
}

async fn sleep(web: &Ui<'_>, org: i64) -> Sleep {
    let id = study(web.app, org, "Sleep", "Nightly readings.", Status::Active);
    web.request(id, HR).await;
    web.request(id, BP).await;
    let ada = web.patient(org, "ada@x.org", "Ames", "Ada", "1970-01-01");
    let ada = ada.await;
    let ben = web.patient(org, "ben@x.org", "Bell", "Ben", "1981-02-03");
    let ben = ben.await;
    let cy = web.patient(org, "cy@x.org", "Cole", "Cy", "").await;
    let dee = web.patient(org, "dee@x.org", "Dunn", "Dee", "").await;
    let eve = web.patient(org, "eve@x.org", "Eady", "Eve", "").await;
    let (status, page) = web.enrol(id, &[ada, ben, cy, dee, eve]).await;
    assert_eq!(
        (status, page.text(".flash-success")),
        (200, "Enrolled 5 patients.".into())
    );
    web.decide(id, ada, &[(BP, "consent"), (HR, "consent")])
        .await;
    web.decide(id, ben, &[(BP, "consent"), (HR, "decline")])
        .await;
    web.decide(id, cy, &[(HR, "consent")]).await;
    Sleep {
        id,
        ada,
        ben,
        cy,
        dee,
        eve,
    }
}

const ALL_FIVE: [&str; 5] = [
    "Ames ✓ ✓",
    "Bell ✓ ✗",
    "Cole pending ✓",
    "Dunn pending pending",
    "Eady pending pending",
];

// ---- the list --------------------------------------------------------------------------------

on_both_backends!(
    an_organization_without_studies_says_how_to_start_and_a_viewer_whom_to_wait_for,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let (vuid, vic) = app.practitioner("vic@x.org", false);
        let (nuid, _) = app.practitioner("nobody@x.org", false);
        let north = app.org("North", 0, &[(ana, "member"), (vic, "viewer")]);
        let web = ui(&app, uid).await;

        let (status, page) = web.get(&list(north, "")).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "Studies");
        assert_eq!(page.text(".lede"), "North · 0 studies");
        assert!(!page.exists("table.data"));
        assert_eq!(page.text(".empty h2"), "No studies yet");
        let what = "Create a study, choose the data it requests, then enrol patients and \
                    invite them to consent.";
        assert_eq!(page.text(".empty p"), what);
        let create = format!(".empty a[href=\"{}\"]", list(north, "&modal=create"));
        assert_eq!(page.text(&create), "New study");

        let (_, page) = ui(&app, vuid).await.get(&list(north, "")).await;
        let wait = "Studies appear here once a member of this organization creates them.";
        assert_eq!(page.text(".empty p"), wait);
        assert!(!page.source.contains("New study"), "a viewer cannot create");

        let (_, page) = ui(&app, nuid).await.get("/studies").await;
        assert_eq!(
            page.text(".empty h2"),
            "You are not in any organization yet"
        );
    }
);

on_both_backends!(
    the_list_shows_each_studys_id_name_description_status_enrolment_and_consent_completion,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let south = app.org("South", 0, &[]);
        let sleep = sleep(&web, north).await;
        // Walk: three scopes, one patient, two decisions: 2 of 3 is 67 %.
        let walk = study(&app, north, "Walk", "Daily steps.", Status::Active);
        for scope in [BP, HR, STEPS] {
            web.request(walk, scope).await;
        }
        web.enrol(walk, &[sleep.ada]).await;
        web.decide(walk, sleep.ada, &[(BP, "consent"), (HR, "decline")])
            .await;
        set_status(&app, walk, "paused");
        // Diet: enrolled but asking for nothing; Zen: nothing at all.
        let diet = study(&app, north, "Diet", "Weekly weights.", Status::Active);
        web.enrol(diet, &[sleep.ben]).await;
        let zen = study(&app, north, "Zen", "Calm.", Status::Closed);
        study(&app, south, "Secret", "Not yours.", Status::Active);

        let (status, page) = web.get(&list(north, "")).await;
        assert_eq!(status, 200);
        assert_eq!(page.text(".lede"), "North · 4 studies");
        let heads = page.texts("table.data thead th");
        let want = [
            "ID",
            "Name",
            "Description",
            "Status",
            "Enrolled",
            "Consent completion",
        ];
        assert_eq!(heads, want, "these columns, in this order");
        let ids = [diet, sleep.id, walk, zen].map(|i| i.to_string());
        assert_eq!(column(&page, "ID"), ids, "by name");
        assert_eq!(names(&page), ["Diet", "Sleep", "Walk", "Zen"]);
        let descriptions = [
            "Weekly weights.",
            "Nightly readings.",
            "Daily steps.",
            "Calm.",
        ];
        assert_eq!(column(&page, "Description"), descriptions);
        let statuses = ["Active", "Active", "Paused", "Closed"];
        assert_eq!(column(&page, "Status"), statuses);
        assert_eq!(column(&page, "Enrolled"), ["1", "5", "1", "0"]);
        // Sleep: 5 of 10 decided; Walk: 2 of 3; the others have nothing to decide.
        assert_eq!(
            column(&page, "Consent completion"),
            ["—", "50%", "67%", "—"]
        );
        let link = format!("table.data a[href=\"/studies/{walk}\"]");
        assert_eq!(page.texts(&link), [walk.to_string(), "Walk".into()]);
        assert!(!page.source.contains("Secret"), "South's study");
    }
);

on_both_backends!(
    search_and_the_status_filter_narrow_the_list_and_say_so_when_nothing_matches,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let south = app.org("South", 0, &[]);
        let home = "Nightly readings at home.";
        study(
            &app,
            north,
            "Sleep and blood pressure",
            home,
            Status::Active,
        );
        let remote = "Daily steps; fully remote: 100% at home.";
        study(&app, north, "Walking", remote, Status::Paused);
        study(&app, north, "Diet", "100 patients, weekly.", Status::Closed);
        study(&app, south, "Sleep South", "At home.", Status::Active);
        let find = |q: &str, status: &str| {
            let q = url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>();
            list(north, &format!("&q={q}&status={status}"))
        };
        for (q, status, want) in [
            ("sleep", "", &["Sleep and blood pressure"][..]),
            ("HOME", "", &["Sleep and blood pressure", "Walking"]),
            ("home steps", "", &["Walking"]),
            ("100%", "", &["Walking"]),
            ("100", "", &["Diet", "Walking"]),
            ("", "paused", &["Walking"]),
            ("", "closed", &["Diet"]),
            ("home", "active", &["Sleep and blood pressure"]),
            ("", "", &["Diet", "Sleep and blood pressure", "Walking"]),
        ] {
            let (_, page) = web.get(&find(q, status)).await;
            assert_eq!(names(&page), want, "q={q:?} status={status:?}");
        }

        let (_, page) = web.get(&find("home", "paused")).await;
        assert_eq!(page.text(".lede"), "North · 1 study matching “home”");
        assert_eq!(value(&page, "#f-q"), "home", "the box keeps the search");
        let chosen = page.text("#f-status-filter option[selected]");
        assert_eq!(chosen, "Paused", "and the status");
        let options = page.texts("#f-status-filter option");
        assert_eq!(options, ["Any", "Active", "Paused", "Closed"]);

        let (_, page) = web.get(&find("sleep", "closed")).await;
        assert!(names(&page).is_empty());
        assert_eq!(page.text(".empty h2"), "No study matches these filters");
        let clear = format!(".empty a[href=\"{}\"]", list(north, ""));
        assert_eq!(page.text(&clear), "Clear the filters");
        assert_eq!(page.text(".lede"), "North · 0 studies matching “sleep”");
    }
);

on_both_backends!(
    search_ignores_case_in_names_written_in_any_alphabet,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        study(
            &app,
            north,
            "Étude du sommeil",
            "Nuits à la maison.",
            Status::Active,
        );
        study(&app, north, "Ærø walking", "Øresund steps.", Status::Active);
        study(&app, north, "Сон", "Ночные измерения.", Status::Active);
        for (q, want) in [
            ("étude", "Étude du sommeil"),
            ("ÉTUDE", "Étude du sommeil"),
            ("MAISON", "Étude du sommeil"),
            ("ærø", "Ærø walking"),
            ("øresund", "Ærø walking"),
            ("сон", "Сон"),
            ("НОЧНЫЕ", "Сон"),
        ] {
            let q2 = url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>();
            let (_, page) = web.get(&list(north, &format!("&q={q2}"))).await;
            assert_eq!(names(&page), [want], "q={q:?}");
        }
    }
);

on_both_backends!(
    twenty_five_studies_fill_two_pages_and_a_page_past_the_end_shows_the_last_one,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        for i in 1..=25 {
            study(
                &app,
                north,
                &format!("Study {i:02}"),
                "Daily.",
                Status::Active,
            );
        }
        study(&app, north, "Study paused", "Daily.", Status::Paused);
        study(&app, north, "Walk", "Steps.", Status::Active);
        let studies = |r: std::ops::RangeInclusive<i32>| {
            r.map(|i| format!("Study {i:02}")).collect::<Vec<_>>()
        };
        let kept = [
            "organization_id=",
            "q=study",
            "status=active",
            "page_size=20",
        ];
        let has_all = |link: &str, page: &str| {
            let missing: Vec<_> = kept.iter().filter(|k| !link.contains(*k)).collect();
            assert!(missing.is_empty(), "{missing:?} missing from {link}");
            assert!(link.contains(page), "{page} missing from {link}");
        };
        let filtered = list(north, "&q=study&status=active&page_size=20");

        let (_, page) = web.get(&filtered).await;
        assert_eq!(names(&page), studies(1..=20));
        assert_eq!(page.text(".lede"), "North · 25 studies matching “study”");
        assert_eq!(page.text(".pagination p"), "Showing 1–20 of 25");
        assert!(page.text(".pagination").contains("Page 1 of 2"));
        assert!(!page.exists("a[rel=prev]"));
        let next = page.attr("a[rel=next]", "href").expect("a next link");
        has_all(&next, "page=2");
        let jump = "form[method=get][aria-label=\"Go to page\"]";
        let hidden = |name: &str| value(&page, &format!("{jump} input[name={name}]"));
        let carried = ["organization_id", "q", "status", "page_size"].map(hidden);
        assert_eq!(
            carried,
            [
                north.to_string(),
                "study".into(),
                "active".into(),
                "20".into()
            ]
        );
        assert_eq!(
            page.attr(&format!("{jump} #f-page"), "max").as_deref(),
            Some("2")
        );

        let (_, page) = web.get(&next).await;
        assert_eq!(names(&page), studies(21..=25));
        assert_eq!(page.text(".pagination p"), "Showing 21–25 of 25");
        assert!(!page.exists("a[rel=next]"));
        let prev = page.attr("a[rel=prev]", "href").expect("a previous link");
        has_all(&prev, "page=1");

        let (status, page) = web.get(&format!("{filtered}&page=9")).await;
        assert_eq!(status, 200);
        assert_eq!(names(&page), studies(21..=25), "page 9 of 2 is page 2");
        assert_eq!(page.text(".pagination p"), "Showing 21–25 of 25");
        assert!(page.text(".pagination").contains("Page 2 of 2"));
        let prev = page.attr("a[rel=prev]", "href").expect("a way back");
        has_all(&prev, "page=1");

        let (_, page) = web.get(&list(north, "&page_size=100")).await;
        assert_eq!(names(&page).len(), 27, "every study on one page");
        assert_eq!(page.text("#f-page_size option[selected]"), "100");
        assert!(!page.exists("a[rel=next]") && !page.exists("#f-page"));
    }
);

// ---- create ----------------------------------------------------------------------------------

on_both_backends!(
    creating_a_study_opens_its_page_with_a_flash_saying_what_to_do_next,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let (_, page) = web.get(&list(north, "")).await;
        let open = format!(".page-header a[href=\"{}\"]", list(north, "&modal=create"));
        assert_eq!(page.text(&open), "New study");
        let form = list(north, "&modal=create");
        let (status, page) = web.get(&form).await;
        assert_eq!(status, 200);
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "New study in North");
        assert_eq!(
            page.text("#f-status option[selected]"),
            "Active",
            "by default"
        );
        let cancel = page.attr("[role=dialog] a.modal-cancel", "href");
        assert_eq!(cancel, Some(list(north, "")));

        let org = north.to_string();
        let fields = [
            ("organization_id", org.as_str()),
            ("name", " Sleep and BP "),
            ("description", "Nightly readings.\nAt home."),
            ("icon_url", "https://example.org/i.png"),
            ("status", "active"),
        ];
        let res = web.submit(&form, "/studies", &fields).await;
        let (code, to) = redirect(&res);
        let id: i64 = to
            .strip_prefix("/studies/")
            .unwrap_or("x")
            .parse()
            .expect(&to);
        assert_eq!(code, 303);
        let (_, page) = app.follow(&web.client, res).await;
        let said = "Created Sleep and BP. Next: choose the data it requests and enrol patients.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(page.text("h1"), "Sleep and BP Active");
        assert_eq!(
            page.text(".lede"),
            format!("Study {id} · North · 0 enrolled")
        );
        assert_eq!(page.text("#about-title + p"), "Nightly readings. At home.");
        let icon = page.attr("section[aria-labelledby=about-title] a", "href");
        assert_eq!(icon.as_deref(), Some("https://example.org/i.png"));
        assert_eq!(page.text("#review .empty h3"), "No one is enrolled yet");
        assert!(page.text("#requested").contains("Nothing yet."));
        assert!(app.audit_actions().contains(&"study.create".to_string()));
        assert_eq!(names(&web.get(&list(north, "")).await.1), ["Sleep and BP"]);
    }
);

on_both_backends!(
    a_study_with_bad_input_reopens_the_form_with_the_input_kept_and_a_message_beside_each_field,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let form = list(north, "&modal=create");
        let org = north.to_string();
        let o = ("organization_id", org.as_str());
        let bad = [
            o,
            ("name", "  "),
            ("description", ""),
            ("icon_url", "ftp://example.org/i.png"),
            ("status", "paused"),
        ];
        let (status, page) = web.post(&form, "/studies", &bad).await;
        assert_eq!(status, 400);
        assert_dialog(&page);
        assert_eq!(page.count(".field-invalid"), 3, "name, description, icon");
        assert_eq!(
            page.count(".field-invalid p.error"),
            3,
            "each with its message"
        );
        assert_eq!(page.text("#f-name-error"), "Enter a name for the study.");
        let why = "Describe the study: patients read this before they consent.";
        assert_eq!(page.text("#f-description-error"), why);
        let icon = "Use a web address starting with https:// or http://, such as \
                    https://example.org/icon.png.";
        assert_eq!(page.text("#f-icon_url-error"), icon);
        assert_eq!(
            page.attr("#f-icon_url", "aria-invalid").as_deref(),
            Some("true")
        );
        assert_eq!(
            value(&page, "#f-icon_url"),
            "ftp://example.org/i.png",
            "kept"
        );
        assert_eq!(page.text("#f-status option[selected]"), "Paused", "kept");
        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());

        let only_name = [o, ("name", ""), ("description", "Kept text.")];
        let (status, page) = web.post(&form, "/studies", &only_name).await;
        assert_eq!(status, 400);
        assert_eq!(page.count(".field-invalid"), 1);
        assert_eq!(
            page.text("#f-description"),
            "Kept text.",
            "the text is kept"
        );
        let only_description = [o, ("name", "Sleep"), ("description", " ")];
        let (status, page) = web.post(&form, "/studies", &only_description).await;
        assert_eq!((status, page.count(".field-invalid")), (400, 1));
        assert_eq!(value(&page, "#f-name"), "Sleep");
        assert!(page.exists(".field-invalid #f-description-error"));

        let count = s::table
            .count()
            .get_result::<i64>(&mut *app.conn())
            .unwrap();
        assert_eq!(count, 0, "nothing was created");
    }
);

// ---- a study's page --------------------------------------------------------------------------

on_both_backends!(
    a_study_requests_data_by_its_human_name_and_can_stop_requesting_it,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let id = study(&app, north, "Sleep", "Nightly.", Status::Active);
        let (_, page) = web.get(&show(id)).await;
        let none = "Nothing yet. Patients consent per kind of data, so choose at least one \
                    before inviting them.";
        assert_eq!(page.text("#requested p.muted"), none);
        let options = page.texts("#f-scope_id option");
        assert_eq!(options.len(), 15);
        assert!(options.contains(&"Heart rate".to_string()), "{options:?}");

        let action = format!("/studies/{id}/scopes");
        let page = web.ok(&show(id), &action, &[("scope_id", "4")]).await;
        assert_eq!(
            page.text(".flash-success"),
            "The study now requests Heart rate."
        );
        assert_eq!(page.texts("#requested .badge"), ["Heart rate"]);
        let code = page.attr("#requested .badge", "title");
        assert_eq!(code.as_deref(), Some("omh:heart-rate:2.0"));
        let options = page.texts("#f-scope_id option");
        assert!(!options.contains(&"Heart rate".to_string()), "offered once");
        assert_eq!(options.len(), 14);
        web.request(id, BP).await;
        let (_, page) = web.get(&show(id)).await;
        assert_eq!(
            page.texts("#requested .badge"),
            ["Blood pressure", "Heart rate"]
        );

        let (_, page) = web.post(&show(id), &action, &[("scope_id", "999")]).await;
        let refused = page.text(".flash-error");
        assert!(
            refused.starts_with("Choose a scope from the list"),
            "{refused}"
        );

        let remove = format!("/studies/{id}/scopes/{HR}/remove");
        let button = format!("form[action=\"{remove}\"] button");
        assert_eq!(page.text(&button), "Remove Heart rate");
        let page = web.ok(&show(id), &remove, &[]).await;
        let said = "The study no longer requests Heart rate.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(page.texts("#requested .badge"), ["Blood pressure"]);
        let actions = app.audit_actions();
        let scopes: Vec<&str> = actions
            .iter()
            .map(|a| a.as_str())
            .filter(|a| a.starts_with("study.scope"))
            .collect();
        assert_eq!(
            scopes,
            ["study.scope.add", "study.scope.add", "study.scope.remove"]
        );
    }
);

on_both_backends!(
    stopping_a_request_takes_its_decisions_out_of_the_review_totals_and_filters,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let f = sleep(&web, north).await;
        let remove = format!("/studies/{}/scopes/{BP}/remove", f.id);
        let (_, page) = web.get(&show(f.id)).await;
        let warn = page.attr(&format!("form[action=\"{remove}\"]"), "data-confirm");
        let warn = warn.unwrap_or_default();
        assert!(
            warn.starts_with("Stop requesting Blood pressure?"),
            "{warn}"
        );
        assert!(
            warn.contains("decisions about it in this study are removed too"),
            "{warn}"
        );

        let page = web.ok(&show(f.id), &remove, &[]).await;
        let want = ["Ames ✓", "Bell ✗", "Cole ✓", "Dunn pending", "Eady pending"];
        assert_eq!(matrix(&page), want);
        assert_eq!(page.texts("#totals tbody tr"), ["Heart rate 2 1 2"]);
        assert_eq!(page.text("#totals tfoot tr"), "All scopes 2 1 2");
        assert_eq!(stats(&page)[2], pairs(&[("Responded", "3")])[0]);
        let (_, page) = web.get(&format!("{}?only=pending", show(f.id))).await;
        assert_eq!(matrix(&page), ["Dunn pending", "Eady pending"]);
        let (_, list) = web.get(&list(north, "")).await;
        assert_eq!(
            column(&list, "Consent completion"),
            ["60%"],
            "3 of 5 decided"
        );
        let (_, detail) = audit_details(&app, "study.scope.remove").pop().unwrap();
        assert_eq!(detail["decisionsRemoved"], 2);

        // Asked again, blood pressure starts from nobody having decided.
        web.request(f.id, BP).await;
        let (_, page) = web.get(&show(f.id)).await;
        assert_eq!(matrix(&page)[0], "Ames pending ✓");
        assert_eq!(page.texts("#totals tbody tr")[0], "Blood pressure 0 0 5");
        let (_, page) = web.get(&format!("{}?only=pending", show(f.id))).await;
        assert_eq!(matrix(&page).len(), 5, "everyone is pending blood pressure");
    }
);

on_both_backends!(
    a_study_accepts_data_sources_from_the_catalogue_and_can_let_them_go,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let id = study(&app, north, "Sleep", "Nightly.", Status::Active);
        let (_, page) = web.get(&show(id)).await;
        assert_eq!(
            page.text("#sources p.muted"),
            "None yet: add the apps and devices patients may upload from."
        );
        let empty = page.text("#sources p.small");
        assert!(empty.starts_with("The catalogue is empty"), "{empty}");
        assert!(page.exists("#sources a[href=\"/data-sources\"]"));

        let withings = {
            let mut c = app.conn();
            let w =
                cohort::data_source::repo::insert(&mut c, "Withings BPM", "medical_device", &[BP]);
            cohort::data_source::repo::insert(&mut c, "CommonHealth", "patient_app", &[HR, STEPS])
                .unwrap();
            w.unwrap()
        };
        let (_, page) = web.get(&show(id)).await;
        let options = page.texts("#f-data_source_id option");
        assert_eq!(options, ["CommonHealth", "Withings BPM"]);

        let action = format!("/studies/{id}/data-sources");
        let w = withings.to_string();
        let page = web
            .ok(&show(id), &action, &[("data_source_id", w.as_str())])
            .await;
        let said = "The study now accepts data from Withings BPM.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(page.texts("#sources li strong"), ["Withings BPM"]);
        let about = page.texts("#sources li span.muted");
        assert_eq!(about, ["Medical device · Blood pressure"]);
        assert_eq!(page.texts("#f-data_source_id option"), ["CommonHealth"]);
        let other = page.attr("#f-data_source_id option", "value").unwrap();
        let page = web
            .ok(&show(id), &action, &[("data_source_id", other.as_str())])
            .await;
        assert_eq!(
            page.texts("#sources li strong"),
            ["CommonHealth", "Withings BPM"]
        );
        let about = page.texts("#sources li span.muted");
        assert_eq!(about[0], "Patient app · Heart rate, Step count");
        let all = page.text("#sources p.small");
        assert_eq!(all, "Every source in the catalogue is added.");

        let remove = format!("/studies/{id}/data-sources/{withings}/remove");
        let page = web.ok(&show(id), &remove, &[]).await;
        let said = "The study no longer accepts data from Withings BPM.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(page.texts("#sources li strong"), ["CommonHealth"]);
        let (_, page) = web
            .post(&show(id), &action, &[("data_source_id", "999")])
            .await;
        let refused = page.text(".flash-error");
        assert!(
            refused.starts_with("Choose a data source from the catalogue"),
            "{refused}"
        );
    }
);

on_both_backends!(
    a_paused_or_closed_study_says_it_takes_no_new_enrolments_and_refuses_them_with_a_reason,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let id = study(&app, north, "Sleep", "Nightly.", Status::Active);
        let jo = web.patient(north, "jo@x.org", "Smith", "Jo", "").await;
        let enrol_link = format!("a[href=\"/studies/{id}?modal=enrol\"]");
        let (_, page) = web.get(&show(id)).await;
        assert_eq!(
            page.count(&enrol_link),
            2,
            "in the header and the empty review"
        );
        assert!(!page.exists(".flash-info"));

        let edit = format!("{}?modal=edit", show(id));
        let (_, page) = web.get(&edit).await;
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "Edit Sleep");
        assert_eq!(value(&page, "#f-name"), "Sleep");
        assert_eq!(page.text("#f-description"), "Nightly.");
        assert_eq!(page.text("#f-status option[selected]"), "Active");
        let action = format!("/studies/{id}/update");
        let bad = [
            ("name", ""),
            ("description", "Changed."),
            ("status", "paused"),
        ];
        let (status, page) = web.post(&edit, &action, &bad).await;
        assert_eq!(status, 400);
        assert_dialog(&page);
        assert_eq!(
            page.text(".field-invalid p.error"),
            "Enter a name for the study."
        );
        assert_eq!(page.text("#f-description"), "Changed.", "kept");
        assert_eq!(page.text("#f-status option[selected]"), "Paused", "kept");

        for status in ["paused", "closed"] {
            let fields = [
                ("name", "Sleep"),
                ("description", "Nightly."),
                ("status", status),
            ];
            let page = web.ok(&edit, &action, &fields).await;
            assert_eq!(page.text(".flash-success"), "Saved Sleep.");
            let label = format!("{}{}", status[..1].to_uppercase(), &status[1..]);
            assert_eq!(page.text("h1 .badge"), label);
            let info = format!(
                "This study is {status}: it takes no new enrolments, invitations or uploads. \
                 Edit it and set the status to active to open it again."
            );
            assert_eq!(page.text(".flash-info"), info);
            assert!(!page.exists(&enrol_link), "no enrol button when {status}");

            let (_, page) = web.get(&format!("{}?modal=enrol", show(id))).await;
            let why = format!(
                "Sleep is {status}, so it takes no new enrolments. Set its status to active first."
            );
            assert_eq!(page.text("[role=dialog] .form-errors"), why);
            assert!(!page.exists(&format!("form[action=\"/studies/{id}/enrol\"]")));

            let (code, page) = web.enrol(id, &[jo]).await;
            assert_eq!(code, 200, "a refusal with a reason, not an error page");
            assert_eq!(page.text(".flash-error"), why);
            assert!(!page.exists(".flash-success"));
            assert_eq!(enrolled(&app, id), 0, "nobody was enrolled");
        }

        let fields = [
            ("name", "Sleep"),
            ("description", "Nightly."),
            ("status", "active"),
        ];
        let page = web.ok(&edit, &action, &fields).await;
        assert_eq!(page.text("h1 .badge"), "Active");
        assert!(page.exists(&enrol_link) && !page.exists(".flash-info"));
        let (_, page) = web.enrol(id, &[jo]).await;
        assert_eq!(page.text(".flash-success"), "Enrolled 1 patient.");
        let saved = audit_details(&app, "study.update");
        let statuses: Vec<&str> = saved
            .iter()
            .map(|(_, d)| d["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["paused", "closed", "active"]);
    }
);

// ---- enrolment -------------------------------------------------------------------------------

on_both_backends!(
    enrolment_finds_patients_by_name_enrols_the_checked_and_says_who_was_already_in,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let south = app.org("South", 0, &[(ana, "member")]);
        let web = ui(&app, uid).await;
        let id = study(&app, north, "Sleep", "Nightly.", Status::Active);
        let jo = web.patient(north, "jo@x.org", "Smith", "Jo", "").await;
        let jane = web.patient(north, "jane@x.org", "Smith", "Jane", "").await;
        let sam = web.patient(north, "sam@x.org", "Smithers", "Sam", "").await;
        web.patient(north, "bo@x.org", "Brown", "Bo", "").await;
        let zed = web.patient(south, "zed@x.org", "Smith", "Zed", "").await;

        let modal = format!("{}?modal=enrol", show(id));
        let (_, page) = web.get(&modal).await;
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "Enrol patients in Sleep");
        assert_eq!(page.text("label[for=f-find]"), "Find patients of North");
        assert!(
            !page.exists("input[name=ids]"),
            "nothing listed before a search"
        );
        let (_, page) = web.get(&format!("{modal}&find=nobody")).await;
        let none = "No active patient of North matches “nobody”.";
        assert_eq!(page.text("[role=dialog] form[method=post] p.muted"), none);

        let (_, page) = web.get(&format!("{modal}&find=smith")).await;
        assert_eq!(value(&page, "#f-find"), "smith", "the box keeps the search");
        let mut found = page.texts("[role=dialog] label.check");
        found.sort();
        let want = [
            "Smith, Jane jane@x.org",
            "Smith, Jo jo@x.org",
            "Smithers, Sam sam@x.org",
        ];
        assert_eq!(found, want, "North's Smiths only");
        assert_eq!(
            page.text("[role=dialog] button[type=submit].btn-primary"),
            "Enrol checked"
        );

        let (_, page) = web.enrol(id, &[jo, jane]).await;
        assert_eq!(page.text(".flash-success"), "Enrolled 2 patients.");
        assert_eq!(
            page.text(".lede"),
            format!("Study {id} · North · 2 enrolled")
        );
        assert_eq!(matrix(&page), ["Smith", "Smith"]);
        let (_, page) = web.get(&format!("{modal}&find=smith")).await;
        let box_of = |p: i64| format!("#en-{p}");
        assert!(page.exists(&format!("{}[disabled][checked]", box_of(jo))));
        assert!(page
            .text(&format!("label[for=en-{jo}]"))
            .ends_with("· already enrolled"));
        assert!(page.exists(&format!("{}:not([disabled])", box_of(sam))));

        for (ids, said) in [
            (
                vec![jo],
                "That patient was already enrolled; nothing changed.",
            ),
            (
                vec![jo, jane],
                "All 2 patients were already enrolled; nothing changed.",
            ),
            (
                vec![jo, sam],
                "Enrolled 1 patient; 1 patient already enrolled.",
            ),
        ] {
            let (_, page) = web.enrol(id, &ids).await;
            assert_eq!(page.text(".flash-success"), said, "{ids:?}");
        }
        assert_eq!(enrolled(&app, id), 3);

        let (status, page) = web.enrol(id, &[zed]).await;
        assert_eq!(status, 200);
        let refused = "Patient and study must be from the same Organization";
        assert_eq!(page.text(".flash-error"), refused);
        let (_, page) = web.enrol(id, &[]).await;
        assert_eq!(
            page.text(".flash-error"),
            "Choose at least one patient to enrol."
        );
        assert_eq!(enrolled(&app, id), 3, "South's Smith stays out");
        let logged = audit_details(&app, "study.enrol");
        let counts: Vec<i64> = logged
            .iter()
            .map(|(_, d)| d["patients"].as_i64().unwrap())
            .collect();
        assert_eq!(
            counts,
            [2, 1],
            "one event per enrolment that changed something"
        );
    }
);

on_both_backends!(
    enrolling_from_another_page_returns_there_but_never_to_another_site,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let id = study(&app, north, "Sleep", "Nightly.", Status::Active);
        let jo = web.patient(north, "jo@x.org", "Smith", "Jo", "").await;
        let jo = jo.to_string();
        // The Patients tab's "Enrol in study" sends the patients back to where they were.
        let patients = format!("/patients?organization_id={north}&q=smith");
        let site = url::Url::parse(&app.url).unwrap();
        for (back, fallback) in [
            (patients.as_str(), Some(patients.clone())),
            ("//evil.example/x", Some(show(id))),
            ("https://evil.example/x", Some(show(id))),
            ("/\\evil.example/x", None),
        ] {
            for action in ["enrol", "unenrol"] {
                let action = format!("/studies/{id}/{action}");
                let fields = [("ids", jo.as_str()), ("back", back)];
                let res = web.submit(&show(id), &action, &fields).await;
                let (status, to) = redirect(&res);
                assert_eq!(status, 303, "{action}");
                let lands = site.join(&to).unwrap();
                let here = (lands.host_str(), lands.port());
                let msg = format!("{action} with back={back:?} sends the browser to {lands}");
                assert_eq!(here, (site.host_str(), site.port()), "{msg}");
                if let Some(want) = &fallback {
                    assert_eq!(&to, want, "{msg}");
                }
            }
        }
    }
);

on_both_backends!(
    removing_patients_from_a_study_takes_their_consent_decisions_with_them,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let f = sleep(&web, north).await;
        let (_, page) = web.get(&show(f.id)).await;
        let remove = "form#unenrol button[data-confirm]";
        assert_eq!(page.text(remove), "Remove checked from study");
        let confirm = page.attr(remove, "data-confirm").unwrap_or_default();
        assert!(confirm.ends_with("Their consent decisions in this study go with them."));
        let checkbox = format!("input[form=unenrol][name=ids][value=\"{}\"]", f.ben);
        assert!(page.exists(&checkbox));
        assert_eq!(
            page.text(&format!("label[for=un-{}]", f.ben)),
            "Select Ben Bell"
        );

        let action = format!("/studies/{}/unenrol", f.id);
        let ben = f.ben.to_string();
        let page = web.ok(&show(f.id), &action, &[("ids", ben.as_str())]).await;
        let said = "Removed 1 patient from the study, with their consent decisions in it.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(
            page.text(".lede"),
            format!("Study {} · North · 4 enrolled", f.id)
        );
        let without_ben = [ALL_FIVE[0], ALL_FIVE[2], ALL_FIVE[3], ALL_FIVE[4]];
        assert_eq!(matrix(&page), without_ben);
        assert_eq!(decisions_of(&app, f.id, f.ben), 0, "his decisions went too");
        assert_eq!(decisions_of(&app, f.id, f.ada), 2, "nobody else's");
        let totals = page.texts("#totals tbody tr");
        assert_eq!(totals, ["Blood pressure 1 0 3", "Heart rate 2 0 2"]);

        let (_, page) = web.post(&show(f.id), &action, &[]).await;
        let why = "Choose at least one patient to remove from the study.";
        assert_eq!(page.text(".flash-error"), why);
        let (_, page) = web.enrol(f.id, &[f.ben]).await;
        let back = matrix(&page);
        assert_eq!(back[1], "Bell pending pending", "enrolled again, undecided");
        let (_, page) = web
            .get(&format!("/patients/{}?organization_id={north}", f.ben))
            .await;
        assert_eq!(page.text("h1"), "Ben Bell", "still North's patient");
    }
);

// ---- the consent review ----------------------------------------------------------------------

on_both_backends!(
    the_review_shows_every_enrolled_patient_against_every_requested_scope,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let f = sleep(&web, north).await;
        let (status, page) = web.get(&show(f.id)).await;
        assert_eq!(status, 200);
        assert_eq!(
            page.text(".lede"),
            format!("Study {} · North · 5 enrolled", f.id)
        );
        let heads = page.texts("table.matrix thead th");
        let want = [
            "Select",
            "ID",
            "Patient",
            "Blood pressure",
            "Heart rate",
            "Actions",
        ];
        assert_eq!(heads, want);
        let title = page.attr("table.matrix thead th[title]", "title");
        assert_eq!(title.as_deref(), Some("omh:blood-pressure:4.0"));
        assert_eq!(matrix(&page), ALL_FIVE);
        let ids = page.texts("table.matrix tbody td.num");
        let want = [f.ada, f.ben, f.cy, f.dee, f.eve].map(|i| i.to_string());
        assert_eq!(ids, want);
        let patient = format!(
            "table.matrix a[href=\"/patients/{}?organization_id={north}\"]",
            f.ada
        );
        assert!(page.exists(&patient), "a row leads to the patient");
        let ada_row = "table.matrix tbody tr:nth-child(1)";
        let hidden = page.texts(&format!("{ada_row} td.decision .visually-hidden"));
        assert_eq!(hidden, ["Consented", "Consented"], "said, not only drawn");
        let times = attrs(&page, &format!("{ada_row} td.decision time"), "datetime");
        let want = [BP, HR].map(|s| decided_at(&app, f.id, f.ada, s));
        assert_eq!(times, want);
        let bell = page.texts("table.matrix tbody tr:nth-child(2) td.decision .visually-hidden");
        assert_eq!(bell, ["Consented", "Declined"]);
        let record = format!(
            "a[href=\"/studies/{}?modal=record&patient={}\"]",
            f.id, f.dee
        );
        assert_eq!(page.text(&record), "Record decision for Dee Dunn");
        let export = page.attr("#review a[download]", "href");
        assert_eq!(export, Some(format!("/studies/{}/consents.csv", f.id)));
        let caption = page.text("table.matrix caption");
        assert_eq!(
            caption,
            "Consent per requested scope: ✓ consented, ✗ declined, … pending"
        );
    }
);

on_both_backends!(
    the_review_filters_to_pending_or_declined_patients_and_to_one_scope_in_the_address,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let f = sleep(&web, north).await;
        let at = |q: &str| format!("{}?{q}", show(f.id));
        for (q, want) in [
            (
                "only=pending",
                &[
                    "Cole pending ✓",
                    "Dunn pending pending",
                    "Eady pending pending",
                ][..],
            ),
            ("only=declined", &["Bell ✓ ✗"]),
            (
                "scope=4",
                &["Ames ✓", "Bell ✗", "Cole ✓", "Dunn pending", "Eady pending"],
            ),
            ("scope=4&only=pending", &["Dunn pending", "Eady pending"]),
            ("scope=4&only=declined", &["Bell ✗"]),
            (
                "scope=2&only=pending",
                &["Cole pending", "Dunn pending", "Eady pending"],
            ),
            ("only=", &ALL_FIVE),
        ] {
            let (status, page) = web.get(&at(q)).await;
            assert_eq!(
                (status, matrix(&page)),
                (200, want.iter().map(|s| s.to_string()).collect()),
                "{q}"
            );
        }

        let (_, page) = web.get(&at("only=declined&scope=4")).await;
        assert_eq!(
            page.text("#f-only option[selected]"),
            "Declined only",
            "the form keeps it"
        );
        assert_eq!(page.text("#f-scope option[selected]"), "Heart rate");
        assert_eq!(
            page.texts("#f-only option"),
            ["Everyone", "Pending only", "Declined only"]
        );
        assert_eq!(
            page.texts("#f-scope option"),
            ["All requested", "Blood pressure", "Heart rate"]
        );
        let heads = page.texts("table.matrix thead th");
        assert_eq!(heads, ["Select", "ID", "Patient", "Heart rate", "Actions"]);
        let export = page.attr("#review a[download]", "href").unwrap();
        assert_eq!(
            export,
            format!("/studies/{}/consents.csv?only=declined&scope=4", f.id)
        );
        let filter = "#review form[method=get]";
        assert_eq!(
            page.attr(filter, "action"),
            Some(format!("/studies/{}#review", f.id))
        );

        let (_, page) = web.get(&at("scope=2&only=declined")).await;
        assert!(matrix(&page).is_empty());
        assert_eq!(
            page.text("#review .empty h3"),
            "No enrolled patient matches"
        );
        assert_eq!(page.text("#review .empty p"), "Nobody declined this scope.");
        let everyone = format!("#review .empty a[href=\"/studies/{}#review\"]", f.id);
        assert_eq!(page.text(&everyone), "Show everyone");
    }
);

on_both_backends!(
    the_review_pages_twenty_patients_at_a_time_keeping_its_filters_and_past_the_end_shows_the_last,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let id = study(&app, north, "Sleep", "Nightly.", Status::Active);
        web.request(id, HR).await;
        let mut ids = Vec::new();
        for i in 1..=25 {
            let email = format!("p{i}@x.org");
            ids.push(
                web.patient(north, &email, &format!("Fam{i:02}"), "Ann", "")
                    .await,
            );
        }
        web.enrol(id, &ids).await;
        for p in [ids[0], ids[1], ids[20]] {
            web.decide(id, p, &[(HR, "consent")]).await;
        }
        let families = |page: &Page| {
            let rows = matrix(page);
            rows.iter().map(|r| r[3..5].to_string()).collect::<Vec<_>>()
        };
        let numbers =
            |r: std::ops::RangeInclusive<usize>| r.map(|i| format!("{i:02}")).collect::<Vec<_>>();

        let (_, page) = web.get(&show(id)).await;
        assert_eq!(families(&page), numbers(1..=20));
        assert_eq!(page.text("#review .pagination p"), "Showing 1–20 of 25");
        let next = page
            .attr("#review a[rel=next]", "href")
            .expect("a next link");
        assert_eq!(next, format!("/studies/{id}?page=2#review"));
        let (_, page) = web.get(&next).await;
        assert_eq!(families(&page), numbers(21..=25));

        let pending = format!("{}?only=pending&scope={HR}&page_size=20", show(id));
        let (_, page) = web.get(&pending).await;
        let want: Vec<String> = (3..=20).chain(22..=23).map(|i| format!("{i:02}")).collect();
        assert_eq!(families(&page), want, "22 are pending");
        assert_eq!(page.text("#review .pagination p"), "Showing 1–20 of 22");
        let next = page
            .attr("#review a[rel=next]", "href")
            .expect("a next link");
        let want = format!("/studies/{id}?only=pending&scope={HR}&page_size=20&page=2#review");
        assert_eq!(next, want, "the filters stay in the address");
        let jump = "#review form[aria-label=\"Go to page\"]";
        let hidden = |name: &str| value(&page, &format!("{jump} input[name={name}]"));
        let kept = ["only", "scope", "page_size"].map(hidden);
        assert_eq!(kept, ["pending".to_string(), HR.to_string(), "20".into()]);
        assert_eq!(
            page.attr(&format!("{jump} #f-page"), "max").as_deref(),
            Some("2")
        );

        let (status, page) = web.get(&format!("{pending}&page=9")).await;
        assert_eq!(status, 200);
        assert_eq!(families(&page), numbers(24..=25), "page 9 of 2 is page 2");
        assert_eq!(page.text("#review .pagination p"), "Showing 21–22 of 22");
        assert!(page.text("#review .pagination").contains("Page 2 of 2"));
        let prev = page
            .attr("#review a[rel=prev]", "href")
            .expect("a way back");
        assert!(
            prev.contains("only=pending") && prev.contains("page=1"),
            "{prev}"
        );
    }
);

on_both_backends!(
    the_totals_count_decisions_per_scope_invitations_and_the_response_rate,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let south = app.org("South", 0, &[(ana, "member")]);
        let web = ui(&app, uid).await;
        let f = sleep(&web, north).await;
        let fay = web.patient(north, "fay@x.org", "Ford", "Fay", "").await;
        let other = study(&app, north, "Other", "Another study.", Status::Active);
        web.request(other, HR).await;
        web.enrol(other, &[fay]).await;
        web.decide(other, fay, &[(HR, "decline")]).await;

        let (_, page) = web.get(&show(f.id)).await;
        let before = pairs(&[
            ("Enrolled", "5"),
            ("Invited", "0"),
            ("Responded", "3"),
            ("Response rate", "—"),
            ("Invitations issued", "0"),
            ("Redeemed", "0"),
            ("Expired", "0"),
            ("Links open", "0"),
        ]);
        assert_eq!(stats(&page), before, "nobody invited yet");

        // North invites Ames (an old cancelled link, then redeemed), Bell (a link that ran
        // out) and Dunn (an expired link, then a new one still open). Cole is invited by
        // South only, Eady not at all, and Ford (not enrolled here) redeemed one.
        invitation(&app, north, f.ada, "cancelled", 10);
        invitation(&app, north, f.ada, "redeemed", 10);
        invitation(&app, north, f.ben, "issued", -1);
        web.also_in(f.cy, south).await;
        invitation(&app, south, f.cy, "issued", 10);
        invitation(&app, north, f.dee, "expired", -3);
        invitation(&app, north, f.dee, "reissued", 10);
        invitation(&app, north, fay, "redeemed", 10);

        let (_, page) = web.get(&show(f.id)).await;
        let want = pairs(&[
            ("Enrolled", "5"),
            // Ames, Bell, Dunn.
            ("Invited", "3"),
            // Ames, Bell, Cole made a decision.
            ("Responded", "3"),
            // Of the three invited, Ames and Bell decided: 2 of 3, rounded.
            ("Response rate", "67%"),
            // Two to Ames, one to Bell, two to Dunn.
            ("Invitations issued", "5"),
            // By each invited patient's latest link: Ames redeemed, Bell's ran out, Dunn's
            // new one is open (his older expired link no longer counts).
            ("Redeemed", "1"),
            ("Expired", "1"),
            ("Links open", "1"),
        ]);
        assert_eq!(stats(&page), want);
        let note = page.text("#totals p.small");
        assert!(note.ends_with("(2 of 3)."), "{note}");
        let per_scope = page.texts("#totals tbody tr");
        assert_eq!(per_scope, ["Blood pressure 2 0 3", "Heart rate 2 1 2"]);
        assert_eq!(page.text("#totals tfoot tr"), "All scopes 4 1 5");
        let heads = page.texts("#totals thead th");
        assert_eq!(heads, ["Scope", "Consented", "Declined", "Pending"]);

        // A decision changes the totals at once.
        web.decide(f.id, f.dee, &[(BP, "decline")]).await;
        let (_, page) = web.get(&show(f.id)).await;
        let now = stats(&page);
        let want = pairs(&[("Responded", "4"), ("Response rate", "100%")]);
        assert_eq!(now[2..4], want, "Dunn answered");
        assert_eq!(
            page.texts("#totals tbody tr"),
            ["Blood pressure 2 1 2", "Heart rate 2 1 2"]
        );
        assert_eq!(page.text("#totals tfoot tr"), "All scopes 4 2 4");

        // Links issued on the patient's page count at once: Eady's first, and a new one for
        // Dunn that cancels the one still open.
        for p in [f.eve, f.dee] {
            let page = format!("/patients/{p}?organization_id={north}");
            let action = format!("/patients/{p}/invitations");
            let org = north.to_string();
            web.ok(&page, &action, &[("organization_id", org.as_str())])
                .await;
        }
        let (_, page) = web.get(&show(f.id)).await;
        let want = pairs(&[
            ("Enrolled", "5"),
            ("Invited", "4"),
            ("Responded", "4"),
            // Ames, Bell and Dunn of the four invited.
            ("Response rate", "75%"),
            // Two to Ames, one to Bell, three to Dunn, one to Eady.
            ("Invitations issued", "7"),
            ("Redeemed", "1"),
            ("Expired", "1"),
            ("Links open", "2"),
        ]);
        assert_eq!(stats(&page), want);
    }
);

on_both_backends!(
    a_patient_removed_from_the_organization_leaves_the_review_and_its_totals,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let south = app.org("South", 0, &[(ana, "member")]);
        let web = ui(&app, uid).await;
        let f = sleep(&web, north).await;
        web.also_in(f.ben, south).await;
        let (_, page) = web.get(&show(f.id)).await;
        assert_eq!(page.text("#totals tfoot tr"), "All scopes 4 1 5");

        // Bell stays a patient of South; North was Ames's only organization.
        let org = north.to_string();
        for p in [f.ben, f.ada] {
            let page = format!("/patients/{p}?organization_id={north}&modal=remove");
            let action = format!("/patients/{p}/remove");
            web.ok(&page, &action, &[("organization_id", org.as_str())])
                .await;
        }
        let (_, page) = web.get(&show(f.id)).await;
        assert_eq!(
            page.text(".lede"),
            format!("Study {} · North · 3 enrolled", f.id)
        );
        assert_eq!(matrix(&page), ALL_FIVE[2..]);
        let want = pairs(&[("Enrolled", "3"), ("Invited", "0"), ("Responded", "1")]);
        assert_eq!(stats(&page)[..3], want);
        let per_scope = page.texts("#totals tbody tr");
        assert_eq!(per_scope, ["Blood pressure 0 0 3", "Heart rate 1 0 2"]);
        assert_eq!(page.text("#totals tfoot tr"), "All scopes 1 0 5");
        let (_, page) = web.get(&format!("{}?only=declined", show(f.id))).await;
        assert!(matrix(&page).is_empty(), "Bell's decline went with him");
        let (_, _, body) = web.csv(&format!("/studies/{}/consents.csv", f.id)).await;
        assert_eq!(
            body.lines().count(),
            4,
            "a header and three patients:\n{body}"
        );
        let (_, list) = web.get(&list(north, "")).await;
        assert_eq!(column(&list, "Enrolled"), ["3"]);
        assert_eq!(
            column(&list, "Consent completion"),
            ["17%"],
            "1 of 6 decided"
        );
    }
);

on_both_backends!(
    recording_a_decision_needs_a_reason_and_keeps_it_in_the_audit_log,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let f = sleep(&web, north).await;
        let modal = format!("{}?modal=record&patient={}", show(f.id), f.dee);
        let (status, page) = web.get(&modal).await;
        assert_eq!(status, 200);
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "Record a decision for Dee Dunn");
        let legends = page.texts("fieldset.decision-set legend");
        assert_eq!(
            legends,
            ["Blood pressure now: pending", "Heart rate now: pending"]
        );
        for scope in [BP, HR] {
            let radios = format!("fieldset.decision-set input[type=radio][name=scope_{scope}]");
            let values = attrs(&page, &radios, "value");
            assert_eq!(values, ["keep", "consent", "decline", "clear"]);
            let checked = page.attr(&format!("{radios}[checked]"), "value");
            assert_eq!(
                checked.as_deref(),
                Some("keep"),
                "nothing changes unless chosen"
            );
        }
        let labels = page.texts(&format!("label[for^=d-{BP}-]"));
        assert_eq!(
            labels,
            ["Leave as is", "Consented", "Declined", "No decision"]
        );
        assert_eq!(page.text("label[for=f-reason]"), "Reason *", "required");
        assert!(page.exists("#f-reason[required]"));
        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());

        let choices = [(BP, "decline"), (HR, "consent")];
        for reason in ["", "   "] {
            let res = web.record(f.id, f.dee, &choices, reason).await;
            assert_eq!(redirect(&res), (303, modal.clone()), "back to the form");
            let (_, page) = app.follow(&web.client, res).await;
            let why = "Say why you record this for the patient, such as “paper form signed \
                       2026-03-02”.";
            assert_eq!(page.text(".flash-error"), why);
            assert_dialog(&page);
            assert_eq!(decisions_of(&app, f.id, f.dee), 0, "nothing changed");
        }
        let res = web
            .record(f.id, f.dee, &[(BP, "keep"), (HR, "keep")], "a reason")
            .await;
        let (_, page) = app.follow(&web.client, res).await;
        let why = "Choose at least one scope to record a decision for.";
        assert_eq!(page.text(".flash-error"), why);
        let before = audit_details(&app, "consent.record").len();

        let reason = "paper form signed 2026-03-02";
        let res = web.record(f.id, f.dee, &choices, reason).await;
        assert_eq!(redirect(&res), (303, format!("/studies/{}#review", f.id)));
        let (_, page) = app.follow(&web.client, res).await;
        let said = "Recorded 2 decisions on the patient's behalf; the reason is in the audit log.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(matrix(&page)[3], "Dunn ✗ ✓");
        let logged = audit_details(&app, "consent.record");
        assert_eq!(logged.len(), before + 1);
        let (object, detail) = logged.last().unwrap();
        assert_eq!(object.as_deref(), Some(f.dee.to_string().as_str()));
        assert_eq!(detail["reason"], reason);
        assert_eq!(detail["studyId"], f.id);
        assert_eq!(detail["onBehalf"], true);
        let changes = json!([
            {"scope": "omh:blood-pressure:4.0", "from": null, "to": false},
            {"scope": "omh:heart-rate:2.0", "from": null, "to": true},
        ]);
        assert_eq!(detail["changes"], changes);
        let kept: Vec<Option<String>> = cs::table
            .filter(cs::patient_id.eq(f.dee))
            .select(cs::reason)
            .load(&mut *app.conn())
            .unwrap();
        assert_eq!(kept, [Some(reason.to_string()), Some(reason.to_string())]);

        // A decided scope offers "Declined or revoked" and says what it is now.
        let (_, page) = web.get(&modal).await;
        let legends = page.texts("fieldset.decision-set legend");
        assert!(
            legends[0].starts_with("Blood pressure now: declined 20"),
            "{legends:?}"
        );
        assert!(
            legends[1].starts_with("Heart rate now: consented 20"),
            "{legends:?}"
        );
        let decline = page.text(&format!("label[for=d-{HR}-decline]"));
        assert_eq!(decline, "Declined or revoked");

        let res = web
            .record(f.id, f.dee, &[(BP, "decline"), (HR, "keep")], "again")
            .await;
        let (_, page) = app.follow(&web.client, res).await;
        let same = "Nothing changed: those were already the patient's decisions.";
        assert_eq!(page.text(".flash-success"), same);
        let res = web
            .record(f.id, f.dee, &[(BP, "clear")], "entered by mistake")
            .await;
        let (_, page) = app.follow(&web.client, res).await;
        let said = "Recorded 1 decision on the patient's behalf; the reason is in the audit log.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(matrix(&page)[3], "Dunn pending ✓");
        let (_, last) = audit_details(&app, "consent.record").pop().unwrap();
        assert_eq!(last["reason"], "entered by mistake");
        let cleared = json!([{"scope": "omh:blood-pressure:4.0", "from": false, "to": null}]);
        assert_eq!(last["changes"], cleared);
    }
);

on_both_backends!(
    recording_a_decision_for_a_patient_no_longer_enrolled_says_why_on_a_page_that_opens,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let f = sleep(&web, north).await;
        let modal = format!("{}?modal=record&patient={}", show(f.id), f.dee);
        let (_, page) = web.get(&modal).await;
        assert_dialog(&page);
        // While the form is open, a colleague takes Dunn out of the study.
        let dee = f.dee.to_string();
        let unenrol = format!("/studies/{}/unenrol", f.id);
        web.ok(&show(f.id), &unenrol, &[("ids", dee.as_str())])
            .await;

        let action = format!("/studies/{}/consents", f.id);
        let fields = [("patient_id", dee.as_str()), ("scope_4", "consent")];
        let fields = [&fields[..], &[("reason", "consented by phone")]].concat();
        let res = web.submit(&show(f.id), &action, &fields).await;
        assert_eq!(res.status(), 303);
        let (status, page) = app.follow(&web.client, res).await;
        let why = format!("Patient {dee} is not enrolled in Sleep; enrol them first.");
        let shown = page.texts(".flash-error");
        assert_eq!((status, shown), (200, vec![why]), "{}", page.source);
        assert_eq!(decisions_of(&app, f.id, f.dee), 0);
    }
);

// ---- the CSV export --------------------------------------------------------------------------

const HEAD: &str = "patient_id,family_name,given_name,birth_date,email";

on_both_backends!(
    the_csv_export_has_a_row_per_enrolled_patient_with_each_decision_and_its_time,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let f = sleep(&web, north).await;
        let t = |p: i64, s: i64| decided_at(&app, f.id, p, s);
        let csv = format!("/studies/{}/consents.csv", f.id);
        let (status, headers, body) = web.csv(&csv).await;
        assert_eq!(status, 200);
        let header = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
        let kind = header("content-type").unwrap_or_default();
        assert!(kind.starts_with("text/csv"), "{kind}");
        let disposition = header("content-disposition").unwrap_or_default();
        let name = format!("attachment; filename=\"study-{}-consents-", f.id);
        assert!(disposition.starts_with(&name), "{disposition}");
        assert!(disposition.ends_with(".csv\""), "{disposition}");

        let bp = "omh:blood-pressure:4.0,omh:blood-pressure:4.0 time";
        let hr = "omh:heart-rate:2.0,omh:heart-rate:2.0 time";
        let rows = [
            format!(
                "{},Ames,Ada,1970-01-01,ada@x.org,consented,{},consented,{}",
                f.ada,
                t(f.ada, BP),
                t(f.ada, HR)
            ),
            format!(
                "{},Bell,Ben,1981-02-03,ben@x.org,consented,{},declined,{}",
                f.ben,
                t(f.ben, BP),
                t(f.ben, HR)
            ),
            format!(
                "{},Cole,Cy,,cy@x.org,pending,,consented,{}",
                f.cy,
                t(f.cy, HR)
            ),
            format!("{},Dunn,Dee,,dee@x.org,pending,,pending,", f.dee),
            format!("{},Eady,Eve,,eve@x.org,pending,,pending,", f.eve),
        ];
        let want: Vec<String> = std::iter::once(format!("{HEAD},{bp},{hr}"))
            .chain(rows.iter().cloned())
            .collect();
        assert_eq!(body.lines().collect::<Vec<_>>(), want);
        assert!(body.ends_with('\n'));

        // The review's filters carry over to the file.
        let only = |q: &str| format!("{csv}?{q}");
        let (_, _, body) = web.csv(&only("only=declined")).await;
        assert_eq!(body.lines().collect::<Vec<_>>(), [&want[0], &rows[1]]);
        let (_, _, body) = web.csv(&only("only=pending&scope=4")).await;
        let lines: Vec<_> = body.lines().map(str::to_string).collect();
        let want = [
            format!("{HEAD},{hr}"),
            format!("{},Dunn,Dee,,dee@x.org,pending,", f.dee),
            format!("{},Eady,Eve,,eve@x.org,pending,", f.eve),
        ];
        assert_eq!(lines, want);
        let (_, _, body) = web.csv(&only("scope=2")).await;
        let lines: Vec<_> = body.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], format!("{HEAD},{bp}"));
        assert_eq!(lines[3], format!("{},Cole,Cy,,cy@x.org,pending,", f.cy));
        let exported = audit_details(&app, "consent.export");
        assert_eq!(exported.len(), 4, "every export is in the audit log");
        assert_eq!(exported[2].1["only"], "pending");
    }
);

on_both_backends!(
    a_name_a_spreadsheet_would_run_as_a_formula_is_exported_as_text,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let id = study(&app, north, "Sleep", "Nightly.", Status::Active);
        web.request(id, HR).await;
        let evil = web.patient(north, "evil@x.org", "=HYPERLINK(\"http://x\")", "@Jo", "");
        let evil = evil.await;
        let plus = web.patient(north, "plus@x.org", "+1", "-Ann", "").await;
        let comma = web
            .patient(north, "doe@x.org", "Doe, Jr", "Al \"Bud\"", "")
            .await;
        web.enrol(id, &[evil, plus, comma]).await;
        let (_, _, body) = web.csv(&format!("/studies/{id}/consents.csv")).await;
        let lines: Vec<_> = body.lines().collect();
        let want = [
            format!("{evil},\"'=HYPERLINK(\"\"http://x\"\")\",'@Jo,,evil@x.org,pending,"),
            format!("{plus},'+1,'-Ann,,plus@x.org,pending,"),
            format!("{comma},\"Doe, Jr\",\"Al \"\"Bud\"\"\",,doe@x.org,pending,"),
        ];
        assert_eq!(lines[1..], want);
    }
);

// ---- roles -----------------------------------------------------------------------------------

on_both_backends!(
    a_viewer_reads_and_exports_a_study_but_sees_no_controls_and_is_refused_every_change,
    |app: TestApp| async move {
        let (muid, mia) = app.practitioner("mia@x.org", false);
        let (vuid, vic) = app.practitioner("vic@x.org", false);
        let north = app.org("North", 0, &[(mia, "member"), (vic, "viewer")]);
        let member = ui(&app, muid).await;
        let f = sleep(&member, north).await;
        let source = {
            let mut c = app.conn();
            let other = cohort::data_source::repo::insert(&mut c, "Fitbit", "personal_device", &[]);
            other.unwrap();
            cohort::data_source::repo::insert(&mut c, "Withings", "medical_device", &[BP]).unwrap()
        };
        let w = source.to_string();
        let add = format!("/studies/{}/data-sources", f.id);
        member
            .ok(&show(f.id), &add, &[("data_source_id", w.as_str())])
            .await;
        let viewer = ui(&app, vuid).await;

        let (_, page) = viewer.get(&list(north, "")).await;
        assert_eq!(names(&page), ["Sleep"]);
        assert!(!page.source.contains("New study"));
        let controls = [
            "a[href$=\"modal=enrol\"]",
            "a[href$=\"modal=edit\"]",
            "a[href$=\"modal=delete\"]",
            "a[href*=\"modal=record\"]",
            "form[action$=\"/scopes\"]",
            "form[action$=\"/remove\"]",
            "form[action$=\"/data-sources\"]",
            "form#unenrol",
            "input[name=ids]",
        ];
        let (_, theirs) = member.get(&show(f.id)).await;
        for css in controls {
            assert!(theirs.exists(css), "a member is missing {css}");
        }
        let modals = [
            String::new(),
            "?modal=edit".into(),
            "?modal=enrol&find=ames".into(),
            "?modal=delete".into(),
            format!("?modal=record&patient={}", f.dee),
        ];
        for modal in &modals {
            let (status, page) = viewer.get(&format!("{}{modal}", show(f.id))).await;
            assert_eq!(
                (status, page.text("h1")),
                (200, "Sleep Active".into()),
                "{modal}"
            );
            assert_eq!(matrix(&page), ALL_FIVE, "the viewer reads the review");
            assert_eq!(
                page.texts("#requested .badge"),
                ["Blood pressure", "Heart rate"]
            );
            for css in controls.iter().chain(&["[role=dialog]"]) {
                assert!(!page.exists(css), "a viewer sees {css} with {modal:?}");
            }
        }
        let wait = "Patients appear here once a member enrols them.";
        let empty = study(&app, north, "Empty", "Nobody yet.", Status::Active);
        let (_, page) = viewer.get(&show(empty)).await;
        assert_eq!(page.text("#review .empty p"), wait);
        let (status, _, body) = viewer.csv(&format!("/studies/{}/consents.csv", f.id)).await;
        assert_eq!(
            (status, body.lines().count()),
            (200, 6),
            "a viewer may export"
        );

        let (id, org) = (f.id, north.to_string());
        let dee = f.dee.to_string();
        let study_fields = [
            ("name", "Hacked"),
            ("description", "X"),
            ("status", "active"),
        ];
        let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
            (
                "/studies".into(),
                [&study_fields[..], &[("organization_id", org.as_str())]].concat(),
            ),
            (format!("/studies/{id}/update"), study_fields.to_vec()),
            (format!("/studies/{id}/delete"), vec![]),
            (format!("/studies/{id}/scopes"), vec![("scope_id", "12")]),
            (format!("/studies/{id}/scopes/{HR}/remove"), vec![]),
            (add.clone(), vec![("data_source_id", w.as_str())]),
            (
                format!("/studies/{id}/data-sources/{source}/remove"),
                vec![],
            ),
            (format!("/studies/{id}/enrol"), vec![("ids", dee.as_str())]),
            (
                format!("/studies/{id}/unenrol"),
                vec![("ids", dee.as_str())],
            ),
            (
                format!("/studies/{id}/consents"),
                vec![
                    ("patient_id", dee.as_str()),
                    ("scope_4", "consent"),
                    ("reason", "x"),
                ],
            ),
        ];
        for (action, fields) in &posts {
            let res = viewer.submit(&show(id), action, fields).await;
            assert_eq!(res.status(), 403, "{action}");
        }
        let (_, page) = member.get(&show(id)).await;
        assert_eq!(page.text("h1"), "Sleep Active", "nothing changed");
        assert_eq!(matrix(&page), ALL_FIVE);
        assert_eq!(
            page.texts("#requested .badge"),
            ["Blood pressure", "Heart rate"]
        );
        assert_eq!(page.texts("#sources li strong"), ["Withings"]);
        let count = s::table
            .count()
            .get_result::<i64>(&mut *app.conn())
            .unwrap();
        assert_eq!(count, 2, "no study was made");
    }
);

on_both_backends!(
    someone_from_another_organization_finds_no_trace_of_a_study,
    |app: TestApp| async move {
        let (muid, mia) = app.practitioner("mia@x.org", false);
        let (ouid, otto) = app.practitioner("otto@x.org", false);
        let north = app.org("North", 0, &[(mia, "member")]);
        let south = app.org("South", 0, &[(otto, "manager")]);
        let f = sleep(&ui(&app, muid).await, north).await;
        let outsider = ui(&app, ouid).await;
        let id = f.id;
        for path in [
            show(id),
            format!("{}?modal=record&patient={}", show(id), f.ada),
        ] {
            let (status, page) = outsider.get(&path).await;
            assert_eq!(status, 404, "{path}");
            assert!(!page.source.contains("Sleep") && !page.source.contains("Ames"));
        }
        let (status, _, body) = outsider.csv(&format!("/studies/{id}/consents.csv")).await;
        assert_eq!(status, 404);
        assert!(
            !body.contains("Ames") && !body.contains("patient_id"),
            "{body}"
        );
        let (_, page) = outsider.get(&list(north, "")).await;
        assert!(
            !page.source.contains("Sleep"),
            "the list falls back to South"
        );
        assert_eq!(page.text(".lede"), "South · 0 studies");

        let ada = f.ada.to_string();
        let home = list(south, "");
        for action in ["update", "delete", "scopes", "enrol", "unenrol", "consents"] {
            let action = format!("/studies/{id}/{action}");
            let fields = [("ids", ada.as_str()), ("patient_id", ada.as_str())];
            let fields = [&fields[..], &[("scope_id", "12"), ("name", "X")]].concat();
            let res = outsider.submit(&home, &action, &fields).await;
            assert_eq!(res.status(), 404, "{action}");
        }
        let org = north.to_string();
        let fields = [
            ("organization_id", org.as_str()),
            ("name", "X"),
            ("description", "Y"),
        ];
        let res = outsider.submit(&home, "/studies", &fields).await;
        assert_eq!(res.status(), 404, "creating a study in North");
        assert_eq!(enrolled(&app, id), 5);
    }
);

// ---- the data source catalogue ---------------------------------------------------------------

on_both_backends!(
    everyone_reads_the_data_source_catalogue_but_only_a_superuser_changes_it,
    |app: TestApp| async move {
        let (web, _) = member_of_north(&app).await;
        let (_, page) = web.get("/data-sources").await;
        assert_eq!(page.text(".empty h2"), "The catalogue is empty");
        let wait = "A superuser adds the apps and devices studies may accept.";
        assert_eq!(page.text(".empty p"), wait);
        let id = {
            let mut c = app.conn();
            cohort::data_source::repo::insert(&mut c, "Withings", "medical_device", &[BP, HR])
                .unwrap()
        };
        for path in [
            "/data-sources",
            "/data-sources?modal=create",
            &format!("/data-sources?modal=edit&edit={id}"),
        ] {
            let (status, page) = web.get(path).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(column(&page, "Name"), ["Withings"]);
            assert_eq!(column(&page, "Type"), ["Medical device"]);
            assert_eq!(column(&page, "Supplies"), ["Blood pressure, Heart rate"]);
            assert_eq!(column(&page, "Studies"), ["0"]);
            assert!(!page.source.contains("Add data source"), "{path}");
            assert!(
                !page.exists("[role=dialog]") && !page.exists("form[action^=\"/data-sources\"]")
            );
        }
        let posts = [
            "/data-sources".to_string(),
            format!("/data-sources/{id}/update"),
            format!("/data-sources/{id}/delete"),
        ];
        for action in &posts {
            let fields = [
                ("name", "Fitbit"),
                ("type", "personal_device"),
                ("scope", "12"),
            ];
            let res = web.submit("/data-sources", action, &fields).await;
            assert_eq!(res.status(), 403, "{action}");
        }
        let (_, page) = web.get("/data-sources").await;
        assert_eq!(column(&page, "Name"), ["Withings"], "unchanged");
    }
);

on_both_backends!(
    a_superuser_adds_a_data_source_with_its_scopes_and_a_duplicate_name_is_refused_beside_the_field,
    |app: TestApp| async move {
        let (uid, _) = app.practitioner("root@x.org", true);
        let su = ui(&app, uid).await;
        let (_, page) = su.get("/data-sources").await;
        let add = ".page-header a[href=\"/data-sources?modal=create\"]";
        assert_eq!(page.text(add), "Add data source");
        let form = "/data-sources?modal=create";
        let (_, page) = su.get(form).await;
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "Add data source");
        let types = page.texts("#f-type option");
        assert_eq!(types, ["Personal device", "Medical device", "Patient app"]);
        assert_eq!(page.count("input[type=checkbox][name=scope]"), 15);
        assert_eq!(page.text(&format!("label[for=sc-{HR}]")), "Heart rate");
        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());

        let fields = [
            ("name", " Withings "),
            ("type", "medical_device"),
            ("scope", "4"),
            ("scope", "2"),
        ];
        let res = su.submit(form, "/data-sources", &fields).await;
        assert_eq!(redirect(&res), (303, "/data-sources".to_string()));
        let (_, page) = app.follow(&su.client, res).await;
        assert_eq!(
            page.text(".flash-success"),
            "Added Withings to the catalogue."
        );
        assert_eq!(column(&page, "Name"), ["Withings"]);
        assert_eq!(column(&page, "Type"), ["Medical device"]);
        assert_eq!(column(&page, "Supplies"), ["Blood pressure, Heart rate"]);

        let again = [("name", "Withings"), ("type", "bogus"), ("scope", "12")];
        let (status, page) = su.post(form, "/data-sources", &again).await;
        assert_eq!(status, 400);
        assert_dialog(&page);
        assert_eq!(page.count(".field-invalid"), 2, "name and type");
        assert_eq!(
            page.text("#f-name-error"),
            "Withings is already in the catalogue."
        );
        assert!(page.exists(".field-invalid #f-name[aria-invalid=true]"));
        let kind = "Choose personal_device, medical_device or patient_app.";
        assert_eq!(page.text("#f-type-error"), kind);
        assert_eq!(value(&page, "#f-name"), "Withings", "the input is kept");
        assert!(
            page.exists(&format!("#sc-{STEPS}[checked]")),
            "and the checked scope"
        );
        assert!(!page.exists(&format!("#sc-{HR}[checked]")));
        let (_, page) = su.get("/data-sources").await;
        assert_eq!(column(&page, "Name"), ["Withings"], "no second one");
        let created = audit_details(&app, "data_source.create");
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].1["name"], "Withings");
        let unknown = [
            ("name", "Fitbit"),
            ("type", "personal_device"),
            ("scope", "999"),
        ];
        let (status, page) = su.post(form, "/data-sources", &unknown).await;
        assert_eq!(status, 400);
        let said = page.text("[role=dialog] fieldset p.error");
        assert!(said.starts_with("There is no scope 999"), "{said}");

        // Editing keeps its own name and changes what it supplies.
        let id = column(&page, "ID")[0].clone();
        let edit = format!("/data-sources?modal=edit&edit={id}");
        let (_, page) = su.get(&edit).await;
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "Edit data source");
        assert_eq!(value(&page, "#f-name"), "Withings");
        assert_eq!(page.text("#f-type option[selected]"), "Medical device");
        let checked = attrs(&page, "input[name=scope][checked]", "value");
        assert_eq!(checked, [BP.to_string(), HR.to_string()]);
        let update = format!("/data-sources/{id}/update");
        let fields = [
            ("name", "Withings"),
            ("type", "medical_device"),
            ("scope", "12"),
        ];
        let page = su.ok(&edit, &update, &fields).await;
        assert_eq!(page.text(".flash-success"), "Saved Withings.");
        assert_eq!(column(&page, "Supplies"), ["Step count"]);
    }
);

on_both_backends!(
    a_data_source_a_study_accepts_cannot_be_deleted_until_no_study_does,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let (uid, _) = app.practitioner("root@x.org", true);
        let su = ui(&app, uid).await;
        let fields = [
            ("name", "Withings"),
            ("type", "medical_device"),
            ("scope", "2"),
        ];
        su.ok("/data-sources?modal=create", "/data-sources", &fields)
            .await;
        let (_, page) = su.get("/data-sources").await;
        let id: i64 = column(&page, "ID")[0].parse().unwrap();
        let sleep = study(&app, north, "Sleep", "Nightly.", Status::Active);
        let w = id.to_string();
        let add = format!("/studies/{sleep}/data-sources");
        web.ok(&show(sleep), &add, &[("data_source_id", w.as_str())])
            .await;

        let (_, page) = su.get("/data-sources").await;
        assert_eq!(column(&page, "Studies"), ["1"]);
        let delete = format!("/data-sources/{id}/delete");
        let button = format!("form[action=\"{delete}\"] button");
        assert_eq!(page.text(&button), "Delete Withings");
        let res = su.submit("/data-sources", &delete, &[]).await;
        assert_eq!(redirect(&res), (303, "/data-sources".to_string()));
        let (_, page) = app.follow(&su.client, res).await;
        let why = "Withings cannot be deleted: 1 study accepts it. Remove it from those \
                   studies first.";
        assert_eq!(page.text(".flash-error"), why);
        assert_eq!(column(&page, "Name"), ["Withings"], "still there");
        let (_, page) = web.get(&show(sleep)).await;
        assert_eq!(page.texts("#sources li strong"), ["Withings"]);

        let remove = format!("/studies/{sleep}/data-sources/{id}/remove");
        web.ok(&show(sleep), &remove, &[]).await;
        let page = su.ok("/data-sources", &delete, &[]).await;
        assert_eq!(page.text(".flash-success"), "Deleted the data source.");
        assert_eq!(page.text(".empty h2"), "The catalogue is empty");
    }
);

// ---- accessibility ---------------------------------------------------------------------------

on_both_backends!(
    every_input_on_the_studies_pages_is_labelled_and_every_open_modal_is_a_labelled_dialog,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let f = sleep(&web, north).await;
        for i in 0..21 {
            study(
                &app,
                north,
                &format!("Study {i:02}"),
                "Daily.",
                Status::Active,
            );
        }
        let id = f.id;
        let pages = [
            (list(north, ""), false),
            (list(north, "&q=nothing"), false),
            (list(north, "&modal=create"), true),
            (show(id), false),
            (format!("{}?only=declined&scope=4", show(id)), false),
            (format!("{}?modal=edit", show(id)), true),
            (format!("{}?modal=delete", show(id)), true),
            (format!("{}?modal=enrol", show(id)), true),
            (format!("{}?modal=enrol&find=ames", show(id)), true),
            (format!("{}?modal=record&patient={}", show(id), f.ben), true),
            ("/data-sources".into(), false),
        ];
        for (path, modal) in &pages {
            let (status, page) = web.get(path).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(page.unlabelled_inputs(), Vec::<String>::new(), "{path}");
            match modal {
                true => assert_dialog(&page),
                false => assert!(!page.exists("[role=dialog]"), "{path}"),
            }
        }
        let (_, page) = web.get(&pages[0].0).await;
        assert!(page.exists("#f-page"), "the page jump was checked");
        let (_, page) = web.get(&pages[8].0).await;
        assert!(
            page.exists("[role=dialog] input[name=ids]"),
            "a match was checked"
        );
    }
);
