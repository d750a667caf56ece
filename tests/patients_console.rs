//! The Patients tab as a practitioner sees it: the list (columns, search, paging, sorting, the
//! remembered organization, archived patients), Find or Create, the patient's page with its
//! edit and remove modals, the role matrix, accessibility and the audit trail.

mod common;

use common::html::Page;
use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use cohort::db::schema::{
    audit_events as ae, consents as cs, patient_organizations as po, patients as p, studies as s,
    study_patients as sp,
};

// ---- helpers ---------------------------------------------------------------------------------

/// A signed-in practitioner with a browser and an API token.
struct Ui<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    token: String,
}

async fn ui(app: &TestApp, user_id: i64) -> Ui<'_> {
    Ui {
        app,
        client: app.signed_in(user_id).await,
        token: app.token(user_id),
    }
}

impl Ui<'_> {
    async fn get(&self, path: &str) -> (u16, Page) {
        self.app.get_html(&self.client, path).await
    }

    /// Submits a form with the CSRF token of `page`; the raw answer.
    async fn submit(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.app.post_form(&self.client, page, action, fields).await
    }

    /// Submits a form and returns where the user lands (after a redirect) or the page shown.
    async fn post(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> (u16, Page) {
        let res = self.submit(page, action, fields).await;
        if res.status() == 303 {
            return self.app.follow(&self.client, res).await;
        }
        let status = res.status().as_u16();
        (status, Page::new(&res.text().await.unwrap()))
    }

    /// Creates a patient through the API and returns its id.
    async fn create(&self, body: Value) -> i64 {
        let res = script()
            .post(self.app.at("/api/v1/patients"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let out: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "create: {out}");
        out["id"].as_i64().unwrap()
    }

    async fn patient(&self, org: i64, email: &str, family: &str, given: &str, birth: &str) -> i64 {
        self.create(
            json!({"organizationId": org, "telecomEmail": email, "nameFamily": family,
                           "nameGiven": given, "birthDate": birth}),
        )
        .await
    }
}

fn list(org: i64, extra: &str) -> String {
    format!("/patients?organization_id={org}{extra}")
}

fn show(id: i64, org: i64) -> String {
    format!("/patients/{id}?organization_id={org}")
}

/// The family names of the list's rows, in order.
fn families(page: &Page) -> Vec<String> {
    page.texts("table.data tbody td:nth-child(3) > a")
}

fn column(page: &Page, n: usize) -> Vec<String> {
    page.texts(&format!("table.data tbody tr td:nth-child({n})"))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The (term, value) pairs of the card titled `title_id` on the patient page.
fn props(page: &Page, title_id: &str) -> Vec<(String, String)> {
    let css = |t: &str| format!("section[aria-labelledby={title_id}] dl.props {t}");
    let (dt, dd) = (page.texts(&css("dt")), page.texts(&css("dd")));
    dt.into_iter().zip(dd).collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

/// The value of an input, found by CSS.
fn value(page: &Page, css: &str) -> String {
    page.attr(css, "value")
        .unwrap_or_else(|| panic!("no value for {css} in:\n{}", page.source))
}

/// An open modal is a labelled dialog.
fn assert_dialog(page: &Page) {
    let dialog = "[role=dialog][aria-modal=true]";
    assert_eq!(page.count(dialog), 1, "one open modal in:\n{}", page.source);
    let title = page
        .attr(dialog, "aria-labelledby")
        .expect("aria-labelledby");
    assert!(
        !page.text(&format!("#{title}")).is_empty(),
        "the dialog's title"
    );
}

fn linked(app: &TestApp, patient: i64, org: i64) -> bool {
    let q = po::table
        .filter(po::patient_id.eq(patient))
        .filter(po::organization_id.eq(org))
        .count();
    q.get_result::<i64>(&mut *app.conn()).unwrap() == 1
}

fn patient_count(app: &TestApp) -> i64 {
    p::table.count().get_result(&mut *app.conn()).unwrap()
}

/// A study of `org` with the patient enrolled and `consents` consent decisions; its id.
fn enrol(app: &TestApp, org: i64, patient: i64, consents: i64) -> i64 {
    let (mut c, t) = (app.conn(), cohort::util::now());
    let study = (s::organization_id.eq(org), s::name.eq("Sleep"));
    let rest = (
        s::description.eq(""),
        s::status.eq("active"),
        s::created_at.eq(t),
    );
    let study: i64 = diesel::insert_into(s::table)
        .values((study, rest))
        .returning(s::id)
        .get_result(&mut *c)
        .unwrap();
    let row = (sp::study_id.eq(study), sp::patient_id.eq(patient));
    let q = diesel::insert_into(sp::table).values((row, sp::created_at.eq(t)));
    q.execute(&mut *c).unwrap();
    for concept in 1..=consents {
        let who = (cs::study_id.eq(study), cs::patient_id.eq(patient));
        let what = (cs::codeable_concept_id.eq(concept), cs::consented.eq(true));
        let when = (
            cs::consented_at.eq(t),
            cs::created_at.eq(t),
            cs::updated_at.eq(t),
        );
        let q = diesel::insert_into(cs::table).values((who, what, when));
        q.execute(&mut *c).unwrap();
    }
    study
}

fn enrolments(app: &TestApp, patient: i64) -> i64 {
    let q = sp::table.filter(sp::patient_id.eq(patient)).count();
    q.get_result(&mut *app.conn()).unwrap()
}

// ---- the list --------------------------------------------------------------------------------

on_both_backends!(
    the_list_shows_every_column_of_the_selected_organizations_patients_and_their_total,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        app.org("Ward 7", north, &[]);
        app.org("East", 0, &[(ana, "viewer")]);
        let south = app.org("South", 0, &[]);
        let ana = ui(&app, uid).await;
        let body = json!({"organizationId": north, "telecomEmail": "jo@x.org",
            "nameFamily": "Smith", "nameGiven": "Jo", "birthDate": "1980-01-01",
            "telecomPhone": "+1 617 555 0100",
            "identifiers": [{"system": "urn:mrn", "value": "MRN-1"},
                            {"system": "urn:ehr", "value": "EHR-9"}]});
        let jo = ana.create(body).await;
        let al = ana.patient(north, "al@x.org", "Adams", "Al", "").await;

        let (status, page) = ana.get(&list(north, "")).await;
        assert_eq!(status, 200);
        assert_eq!(
            page.texts("#f-organization_id option"),
            ["North", "— Ward 7", "East"]
        );
        assert_eq!(
            value(&page, "#f-organization_id option[selected]"),
            north.to_string()
        );
        assert!(
            !page.source.contains("South"),
            "an organization I am not in"
        );
        let heads = page.texts("table.data thead th");
        let want = ["ID", "External identifiers", "Family name", "Given name"];
        assert_eq!(
            heads,
            [&want[..], &["Birth date", "E-mail", "Cell"]].concat()
        );
        assert_eq!(page.text(".lede"), "North · 2 patients");
        assert_eq!(column(&page, 1), [al.to_string(), jo.to_string()]);
        assert_eq!(column(&page, 2), ["", "MRN-1, EHR-9"], "all identifiers");
        assert_eq!(column(&page, 3), ["Adams", "Smith"]);
        assert_eq!(column(&page, 4), ["Al", "Jo"]);
        assert_eq!(column(&page, 5), ["", "1980-01-01"]);
        assert_eq!(column(&page, 6), ["al@x.org", "jo@x.org"]);
        assert_eq!(column(&page, 7), ["", "+16175550100"]);
        let link = format!("table.data a[href=\"{}\"]", show(jo, north));
        assert!(page.exists(&link), "each row leads to the patient");
        assert!(page.exists(&format!("a[href=\"{}\"]", list(north, "&modal=add"))));

        // Another organization's patients stay out of this list.
        let admin = ui(&app, app.admin_user_id()).await;
        admin.patient(south, "zed@x.org", "Zed", "Zoe", "").await;
        let (_, page) = ana.get(&list(north, "")).await;
        assert_eq!(families(&page), ["Adams", "Smith"]);
        let (_, page) = ana.get(&list(south, "")).await;
        assert!(!page.source.contains("Zed"), "not even by asking for it");
    }
);

on_both_backends!(
    search_needs_every_word_to_start_a_word_ignoring_case_and_accents,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let ana = ui(&app, uid).await;
        ana.patient(north, "john.smith@x.org", "Smith", "John", "1980-01-01")
            .await;
        ana.patient(north, "jane@x.org", "Smithers", "Jane", "1980-01-01")
            .await;
        ana.patient(north, "g@x.org", "Goldsmith", "Gus", "1975-05-05")
            .await;
        ana.patient(north, "u@x.org", "Çelik", "Ünal", "1990-02-02")
            .await;
        let found = |q: &'static str| {
            let ana = &ana;
            async move {
                let path = format!(
                    "{}&q={}",
                    list(north, ""),
                    url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
                );
                let (status, page) = ana.get(&path).await;
                assert_eq!(status, 200, "{q}");
                (families(&page), page)
            }
        };
        assert_eq!(
            found("smith").await.0,
            ["Smith", "Smithers"],
            "not Goldsmith"
        );
        assert_eq!(found("SMI").await.0, ["Smith", "Smithers"]);
        assert_eq!(found("smith 1980-01-01").await.0, ["Smith", "Smithers"]);
        assert_eq!(
            found("smith john").await.0,
            ["Smith"],
            "every word must match"
        );
        assert_eq!(found("1975-05-05").await.0, ["Goldsmith"]);
        assert_eq!(
            found("celik unal").await.0,
            ["Çelik"],
            "accents do not matter"
        );
        assert_eq!(
            found("ÇELİK").await.0.len(),
            0,
            "a dotted capital İ is not an I"
        );
        assert_eq!(found("john.smith@x.org").await.0, ["Smith"], "by e-mail");
        let (rows, page) = found("smith 1980").await;
        assert_eq!(rows, ["Smith", "Smithers"]);
        assert_eq!(
            page.text(".lede"),
            "North · 2 patients matching “smith 1980”"
        );
        assert_eq!(
            value(&page, "#f-q"),
            "smith 1980",
            "the box keeps the query"
        );

        let (rows, page) = found("mith").await;
        assert!(rows.is_empty(), "a word must match from its start");
        assert_eq!(page.text(".empty h2"), "No patient matches “mith”");
        assert!(page
            .text(".empty p")
            .contains("Every word must match the start"));
        let clear = format!(".empty a[href=\"{}\"]", list(north, ""));
        assert_eq!(page.text(&clear), "Clear the search");
        assert_eq!(page.text(".lede"), "North · 0 patients matching “mith”");
    }
);

on_both_backends!(
    page_sizes_pages_and_the_page_jump_keep_the_whole_query_in_the_address,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let ana = ui(&app, uid).await;
        for i in 0..25 {
            let (email, family) = (format!("ann{i}@x.org"), format!("Fam{i:02}"));
            let birth = format!("19{}-01-01", 50 + i);
            ana.patient(north, &email, &family, "Ann", &birth).await;
        }
        ana.patient(north, "bob@x.org", "Other", "Bob", "2000-01-01")
            .await;
        let fams = |r: std::ops::Range<usize>| r.map(|i| format!("Fam{i:02}")).collect::<Vec<_>>();

        let first = list(north, "&q=ann&sort=birth_date&page_size=20");
        let (_, page) = ana.get(&first).await;
        assert_eq!(families(&page), fams(0..20));
        assert_eq!(page.text(".lede"), "North · 25 patients matching “ann”");
        assert_eq!(page.text(".pagination p"), "Showing 1–20 of 25");
        assert!(page.text(".pagination").contains("Page 1 of 2"));
        assert!(!page.exists("a[rel=prev]"));
        let next = page.attr("a[rel=next]", "href").expect("a next link");
        for part in [
            "organization_id=",
            "q=ann",
            "sort=birth_date",
            "page_size=20",
            "page=2",
        ] {
            assert!(next.contains(part), "{part} is missing from {next}");
        }
        let (_, page) = ana.get(&next).await;
        assert_eq!(families(&page), fams(20..25));
        assert_eq!(page.text(".pagination p"), "Showing 21–25 of 25");
        assert!(!page.exists("a[rel=next]"));
        let prev = page.attr("a[rel=prev]", "href").expect("a previous link");
        for part in ["q=ann", "sort=birth_date", "page_size=20", "page=1"] {
            assert!(prev.contains(part), "{part} is missing from {prev}");
        }
        let (_, back) = ana.get(&prev).await;
        assert_eq!(families(&back), fams(0..20));

        // The page jump is a GET form carrying the rest of the state.
        let jump = "form[aria-label=\"Go to page\"]";
        assert_eq!(page.attr(jump, "method").as_deref(), Some("get"));
        assert_eq!(
            page.attr(&format!("{jump} #f-page"), "max").as_deref(),
            Some("2")
        );
        let mut fields: Vec<(String, String)> = Vec::new();
        let sel = scraper::Selector::parse(&format!("{jump} input[type=hidden]")).unwrap();
        for e in page.doc.select(&sel) {
            let v = e.value();
            fields.push((
                v.attr("name").unwrap().into(),
                v.attr("value").unwrap().into(),
            ));
        }
        fields.push(("page".into(), "2".into()));
        let url = reqwest::Url::parse_with_params(&app.at("/patients"), &fields).unwrap();
        let (_, jumped) = ana.get(&url[url::Position::BeforePath..]).await;
        assert_eq!(families(&jumped), fams(20..25), "{url}");

        for (size, rows) in [
            ("100", 26),
            ("500", 26),
            ("1000", 26),
            ("50", 20),
            ("x", 20),
        ] {
            let (_, page) = ana.get(&list(north, &format!("&page_size={size}"))).await;
            assert_eq!(families(&page).len(), rows, "page_size={size}");
            let shown = value(&page, "#f-page_size option[selected]");
            let want = if rows == 20 { "20" } else { size };
            assert_eq!(shown, want, "page_size={size}");
            assert_eq!(page.exists("a[rel=next]"), rows == 20);
            assert_eq!(
                page.exists("#f-page"),
                rows == 20,
                "a jump only with pages to jump to"
            );
            assert_eq!(page.text(".lede"), "North · 26 patients");
        }
        let opts = ana
            .get(&list(north, ""))
            .await
            .1
            .texts("#f-page_size option");
        assert_eq!(opts, ["20", "100", "500", "1000"]);
    }
);

on_both_backends!(
    the_list_sorts_by_family_name_birth_date_or_date_added,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let ana = ui(&app, uid).await;
        ana.patient(north, "b@x.org", "Brown", "Bo", "1990-03-03")
            .await;
        ana.patient(north, "a@x.org", "Adams", "Al", "1970-01-01")
            .await;
        ana.patient(north, "c@x.org", "Clark", "Cy", "1980-02-02")
            .await;
        for (sort, want, label) in [
            ("", ["Adams", "Brown", "Clark"], "Family name"),
            (
                "&sort=birth_date",
                ["Adams", "Clark", "Brown"],
                "Birth date",
            ),
            ("&sort=added", ["Clark", "Adams", "Brown"], "Date added"),
        ] {
            let (_, page) = ana.get(&list(north, sort)).await;
            assert_eq!(families(&page), want, "{label}");
            assert_eq!(page.text("#f-sort option[selected]"), label);
        }
    }
);

on_both_backends!(
    the_chosen_organization_is_remembered_across_visits_and_sign_ins,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let a = app.org("Alpha", 0, &[(ana, "member")]);
        let b = app.org("Beta", 0, &[(ana, "member")]);
        let south = app.org("South", 0, &[]);
        let web = ui(&app, uid).await;
        web.patient(a, "a@x.org", "Ash", "Al", "").await;
        web.patient(b, "b@x.org", "Birch", "Bo", "").await;
        let selected = |page: &Page| page.text("#f-organization_id option[selected]");

        let (_, page) = web.get("/patients").await;
        assert_eq!(
            (selected(&page), families(&page)),
            ("Alpha".into(), strings(&["Ash"]))
        );
        let (_, page) = web.get(&list(b, "")).await;
        assert_eq!(selected(&page), "Beta");
        let (_, page) = web.get("/patients").await;
        assert_eq!(
            (selected(&page), families(&page)),
            ("Beta".into(), strings(&["Birch"]))
        );
        let again = ui(&app, uid).await;
        let (_, page) = again.get("/patients").await;
        assert_eq!(selected(&page), "Beta", "after signing in again");
        let (_, page) = again.get(&list(south, "")).await;
        assert_eq!(
            selected(&page),
            "Beta",
            "an organization I am not in is not chosen"
        );
    }
);

// ---- archive and restore ---------------------------------------------------------------------

on_both_backends!(
    archived_patients_are_hidden_until_asked_for_and_can_be_restored,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let ana = ui(&app, uid).await;
        let al = ana.patient(north, "a@x.org", "Adams", "Al", "").await;
        ana.patient(north, "b@x.org", "Brown", "Bo", "").await;
        let (_, none) = ana.get(&list(north, "&archived=archived")).await;
        assert_eq!(none.text(".empty h2"), "No archived patients");

        let page = show(al, north);
        let (_, shown) = ana.get(&page).await;
        let form = format!("form[action=\"/patients/{al}/archive\"]");
        assert_eq!(
            value(&shown, &format!("{form} input[name=organization_id]")),
            north.to_string()
        );
        let org = north.to_string();
        let action = format!("/patients/{al}/archive");
        let res = ana
            .submit(&page, &action, &[("organization_id", &org)])
            .await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], page.as_str());
        let (_, after) = app.follow(&ana.client, res).await;
        let flash = "Archived the patient. They are hidden from the list until restored.";
        assert_eq!(after.text(".flash-success"), flash);
        assert_eq!(after.text("h1"), "Al Adams Archived");
        assert!(after.exists(&format!("form[action=\"/patients/{al}/restore\"]")));

        let (_, active) = ana.get(&list(north, "")).await;
        assert_eq!(
            (families(&active), active.text(".lede")),
            (strings(&["Brown"]), "North · 1 patient".into())
        );
        let (_, archived) = ana.get(&list(north, "&archived=archived")).await;
        assert_eq!(families(&archived), ["Adams"]);
        assert_eq!(archived.text(".lede"), "North · 1 archived patient");
        assert_eq!(
            archived.text("table.data tbody td:nth-child(3) .badge"),
            "Archived"
        );
        let (_, all) = ana.get(&list(north, "&archived=all")).await;
        assert_eq!(families(&all), ["Adams", "Brown"]);
        assert_eq!(
            all.count("table.data .badge-archived"),
            1,
            "only the archived one"
        );
        let (_, found) = ana.get(&list(north, "&q=adams")).await;
        assert!(
            families(&found).is_empty(),
            "a search of active patients skips them too"
        );

        let action = format!("/patients/{al}/restore");
        let (status, after) = ana.post(&page, &action, &[("organization_id", &org)]).await;
        assert_eq!(
            (status, after.text(".flash-success")),
            (200, "Restored the patient.".into())
        );
        assert_eq!(after.text("h1"), "Al Adams");
        let (_, active) = ana.get(&list(north, "")).await;
        assert_eq!(families(&active), ["Adams", "Brown"]);
    }
);

// ---- find or create --------------------------------------------------------------------------

on_both_backends!(
    adding_starts_with_the_email_and_says_when_the_patient_is_already_here_or_elsewhere,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let east = app.org("East", 0, &[(ana, "viewer")]);
        let south = app.org("South", 0, &[]);
        let web = ui(&app, uid).await;
        let here = web.patient(north, "here@x.org", "Here", "Hal", "").await;
        let seen = web.patient(east, "seen@x.org", "Seen", "Sue", "").await;
        let admin = ui(&app, app.admin_user_id()).await;
        let hidden = admin
            .patient(south, "hidden@x.org", "Hidden", "Hugo", "")
            .await;
        let add = list(north, "&modal=add");

        let (_, page) = web.get(&add).await;
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "Add patient");
        let step = "[role=dialog] form[method=get][action=\"/patients\"]";
        assert!(page.exists(&format!("{step} input[name=email][type=email]")));
        assert_eq!(value(&page, &format!("{step} input[name=modal]")), "add");
        let (_, bad) = web.get(&format!("{add}&email=nope")).await;
        assert!(bad.text("#f-email-error").contains("name@example.org"));
        assert_eq!(
            bad.attr("#f-email", "aria-invalid").as_deref(),
            Some("true")
        );

        let (_, page) = web.get(&format!("{add}&email=HERE@x.org")).await;
        assert_dialog(&page);
        let said = page.text("[role=dialog] .modal-body");
        assert_eq!(
            said,
            "here@x.org is already a patient of this organization: Hal Here."
        );
        let view = format!("[role=dialog] a[href=\"{}\"]", show(here, north));
        assert_eq!(page.text(&view), "View Hal Here");

        let (_, page) = web.get(&format!("{add}&email=seen@x.org")).await;
        let said = page.text("[role=dialog] .modal-body");
        assert!(
            said.contains("seen@x.org (Sue Seen) is already registered with another organization"),
            "{said}"
        );

        let (_, page) = web.get(&format!("{add}&email=hidden@x.org")).await;
        let said = page.text("[role=dialog] .modal-body");
        assert!(
            said.contains("is already registered with another organization"),
            "{said}"
        );
        assert!(
            !page.source.contains("Hugo"),
            "no name from an organization I cannot see"
        );
        let form = format!("form[action=\"/patients/{hidden}/add-to-organization\"]");
        assert_eq!(
            page.text(&format!("{form} button[type=submit]")),
            "Add to North"
        );
        assert_eq!(
            value(&page, &format!("{form} input[name=organization_id]")),
            north.to_string()
        );
        assert_eq!(
            value(&page, &format!("{form} input[name=email]")),
            "hidden@x.org"
        );

        let (org, action) = (
            north.to_string(),
            format!("/patients/{hidden}/add-to-organization"),
        );
        let fields = [("organization_id", org.as_str()), ("email", "hidden@x.org")];
        let res = web.submit(&add, &action, &fields).await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.follow(&web.client, res).await;
        assert_eq!(
            page.text(".flash-success"),
            "Added the patient to this organization."
        );
        assert_eq!(page.text("h1"), "Hugo Hidden");
        assert!(
            linked(&app, hidden, south),
            "still in its first organization"
        );
        let (_, listed) = web.get(&list(north, "")).await;
        assert_eq!(families(&listed), ["Here", "Hidden"]);
        let _ = seen;
    }
);

on_both_backends!(
    adding_a_patient_of_another_organization_needs_their_email,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let south = app.org("South", 0, &[]);
        let web = ui(&app, uid).await;
        let admin = ui(&app, app.admin_user_id()).await;
        let hidden = admin
            .patient(south, "hidden@x.org", "Hidden", "Hugo", "")
            .await;
        let other = admin
            .patient(south, "other@x.org", "Other", "Olga", "")
            .await;
        let (org, action) = (
            north.to_string(),
            format!("/patients/{hidden}/add-to-organization"),
        );
        for email in ["", "other@x.org", "guess@x.org"] {
            let fields = [("organization_id", org.as_str()), ("email", email)];
            let res = web.submit(&list(north, ""), &action, &fields).await;
            assert_eq!(res.status(), 404, "with {email:?}");
        }
        assert!(!linked(&app, hidden, north) && !linked(&app, other, north));
        let (_, page) = web.get(&list(north, "")).await;
        assert!(families(&page).is_empty());
    }
);

on_both_backends!(
    a_new_email_opens_the_create_form_which_shows_each_mistake_beside_its_field,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let web = ui(&app, uid).await;
        web.create(
            json!({"organizationId": north, "telecomEmail": "held@x.org",
            "nameFamily": "Held", "nameGiven": "Hy",
            "identifiers": [{"system": "urn:mrn", "value": "42"}]}),
        )
        .await;
        let add = list(north, "&modal=add&email=New@X.org");
        let (_, page) = web.get(&add).await;
        assert_dialog(&page);
        let form = "[role=dialog] form[method=post][action=\"/patients\"]";
        assert!(page.text(form).contains("No patient has this e-mail yet"));
        assert_eq!(value(&page, "#f-email"), "new@x.org");
        assert!(
            page.attr("#f-email", "readonly").is_some(),
            "the e-mail is read-only"
        );
        assert_eq!(
            value(&page, &format!("{form} input[name=organization_id]")),
            north.to_string()
        );
        for f in [
            "name_family",
            "name_given",
            "birth_date",
            "phone",
            "id_system_1",
            "id_value_3",
        ] {
            assert!(page.exists(&format!("{form} #f-{f}")), "{f}");
        }
        let before = patient_count(&app);

        let org = north.to_string();
        let bad = [
            ("organization_id", org.as_str()),
            ("email", "new@x.org"),
            ("name_family", " "),
            ("name_given", ""),
            ("birth_date", "01/02/1980"),
            ("phone", "call me"),
            ("id_system_1", "urn:mrn"),
            ("id_value_1", ""),
        ];
        let (status, page) = web.post(&add, "/patients", &bad).await;
        assert_eq!(status, 400);
        assert_dialog(&page);
        assert_eq!(value(&page, "#f-email"), "new@x.org");
        assert_eq!(
            value(&page, "#f-birth_date"),
            "01/02/1980",
            "the input is kept"
        );
        assert_eq!(value(&page, "#f-phone"), "call me");
        assert_eq!(value(&page, "#f-id_system_1"), "urn:mrn");
        for (field, says) in [
            ("name_family", "Enter the family name."),
            ("name_given", "Enter the given name."),
            (
                "birth_date",
                "Use a real date written YYYY-MM-DD, such as 1980-04-23.",
            ),
            ("phone", "Use a phone number of 7 to 15 digits"),
        ] {
            assert!(
                page.text(&format!("#f-{field}-error")).starts_with(says),
                "{field}"
            );
            assert_eq!(
                page.attr(&format!("#f-{field}"), "aria-invalid").as_deref(),
                Some("true")
            );
            let described = page
                .attr(&format!("#f-{field}"), "aria-describedby")
                .unwrap();
            assert!(described.contains(&format!("f-{field}-error")), "{field}");
        }
        assert_eq!(
            page.text("#f-identifiers-error"),
            "Each identifier needs both a system and a value."
        );
        assert!(!page.exists("#f-email-error"));

        let mut future = vec![
            ("organization_id", org.as_str()),
            ("email", "new@x.org"),
            ("name_family", "Silva"),
            ("name_given", "Ana"),
            ("birth_date", "2999-01-01"),
        ];
        let (status, page) = web.post(&add, "/patients", &future).await;
        assert_eq!(status, 400);
        assert_eq!(
            page.text("#f-birth_date-error"),
            "A birth date cannot be in the future."
        );
        assert_eq!(value(&page, "#f-name_family"), "Silva");
        assert!(!page.exists("#f-name_family-error"));

        future[4] = ("birth_date", "1980-04-23");
        let mut taken = future.clone();
        taken.extend([("id_system_1", "urn:mrn"), ("id_value_1", "42")]);
        let (status, page) = web.post(&add, "/patients", &taken).await;
        assert_eq!(status, 400);
        assert_eq!(
            page.text("#f-identifiers-error"),
            "urn:mrn 42 is already held by another patient."
        );
        assert_eq!(
            patient_count(&app),
            before,
            "nothing was created by the failed submits"
        );

        let good = [
            &future[..],
            &[
                ("phone", "+1 617 555 0100"),
                ("id_system_1", "urn:mrn"),
                ("id_value_1", "43"),
            ],
        ]
        .concat();
        let res = web.submit(&add, "/patients", &good).await;
        assert_eq!(res.status(), 303);
        let id: i64 = p::table
            .filter(p::telecom_email.eq("new@x.org"))
            .select(p::id)
            .first(&mut *app.conn())
            .unwrap();
        assert_eq!(res.headers()["location"], show(id, north).as_str());
        let (_, page) = app.follow(&web.client, res).await;
        assert_eq!(page.text(".flash-success"), "Added Ana Silva.");
        assert_eq!(page.text("h1"), "Ana Silva");
        assert_eq!(props(&page, "ids-title"), [pair("urn:mrn", "43")]);
    }
);

// ---- the patient page ------------------------------------------------------------------------

on_both_backends!(
    the_patient_page_shows_demographics_identifiers_and_the_organizations_i_can_see,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let ward = app.org("Ward 7", north, &[]);
        let south = app.org("South", 0, &[]);
        let web = ui(&app, uid).await;
        let jo = web
            .create(json!({"organizationId": north, "telecomEmail": "jo@x.org",
                "nameFamily": "Smith", "nameGiven": "Jo", "birthDate": "1980-01-01",
                "telecomPhone": "+1 617 555 0100",
                "identifiers": [{"system": "urn:mrn", "value": "MRN-1"},
                                {"system": "urn:ehr", "value": "EHR-9"}]}))
            .await;
        let admin = ui(&app, app.admin_user_id()).await;
        for org in [ward, south] {
            let body = json!({"organizationId": org});
            let url = app.at(&format!("/api/v1/patients/{jo}/global_add_organization"));
            let res = script()
                .patch(url)
                .bearer_auth(&admin.token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success(), "{}", res.text().await.unwrap());
        }

        let (status, page) = web.get(&show(jo, north)).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "Jo Smith");
        assert_eq!(page.text(".lede"), format!("Patient {jo} · jo@x.org"));
        let demo = props(&page, "demo-title");
        let today = chrono::Utc::now()
            .date_naive()
            .format("%Y-%m-%d")
            .to_string();
        let want = [
            pair("Family name", "Smith"),
            pair("Given name", "Jo"),
            pair("Birth date", "1980-01-01"),
            pair("E-mail", "jo@x.org"),
            pair("Cell", "+16175550100"),
        ];
        assert_eq!(demo[..5], want);
        assert_eq!(demo[5].0, "Added");
        assert!(demo[5].1 == today || demo[5].1 < today, "{:?}", demo[5]);
        assert_eq!(
            props(&page, "ids-title"),
            [pair("urn:mrn", "MRN-1"), pair("urn:ehr", "EHR-9")]
        );
        let orgs = page.texts("section[aria-labelledby=orgs-title] li");
        assert_eq!(orgs, ["North", "Ward 7"], "not South, which I cannot see");
        assert!(page.exists(&format!("a[href=\"{}\"]", show(jo, ward))));
        let back = format!("a[href=\"{}\"]", list(north, ""));
        assert_eq!(page.text(&back), "Patients of North");
        let (_, page) = web.get(&format!("/patients/{jo}")).await;
        assert_eq!(page.text("h1"), "Jo Smith", "without an organization too");
    }
);

on_both_backends!(
    editing_a_patient_saves_every_field_but_the_email,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let web = ui(&app, uid).await;
        let jo = web
            .create(json!({"organizationId": north, "telecomEmail": "jo@x.org",
                "nameFamily": "Smith", "nameGiven": "Jo", "birthDate": "1980-01-01",
                "identifiers": [{"system": "urn:mrn", "value": "MRN-1"}]}))
            .await;
        let edit = format!("{}&modal=edit", show(jo, north));
        let (_, page) = web.get(&edit).await;
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "Edit Jo Smith");
        let form = format!("[role=dialog] form[action=\"/patients/{jo}/update\"]");
        assert!(page.exists(&form));
        assert!(
            !page.exists(&format!("{form} input[name=email]")),
            "no e-mail field"
        );
        assert_eq!(value(&page, "#f-name_family"), "Smith");
        assert_eq!(value(&page, "#f-birth_date"), "1980-01-01");
        assert_eq!(
            (
                value(&page, "#f-id_system_1"),
                value(&page, "#f-id_value_1")
            ),
            ("urn:mrn".into(), "MRN-1".into())
        );

        let org = north.to_string();
        let action = format!("/patients/{jo}/update");
        let bad = [
            ("organization_id", org.as_str()),
            ("name_family", ""),
            ("name_given", "Joanna"),
        ];
        let (status, page) = web.post(&edit, &action, &bad).await;
        assert_eq!(status, 400);
        assert_dialog(&page);
        assert_eq!(page.text("#f-name_family-error"), "Enter the family name.");
        assert_eq!(value(&page, "#f-name_given"), "Joanna", "the input is kept");

        let fields = [
            ("organization_id", org.as_str()),
            ("email", "taken-over@x.org"),
            ("name_family", "Jones"),
            ("name_given", "Joanna"),
            ("birth_date", "1981-02-03"),
            ("phone", "617.555.0199"),
            ("id_system_1", "urn:ehr"),
            ("id_value_1", "E-7"),
        ];
        let res = web.submit(&edit, &action, &fields).await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], show(jo, north).as_str());
        let (_, page) = app.follow(&web.client, res).await;
        assert_eq!(page.text(".flash-success"), "Saved the patient.");
        assert_eq!(page.text("h1"), "Joanna Jones");
        let demo = props(&page, "demo-title");
        let want = [
            pair("Family name", "Jones"),
            pair("Given name", "Joanna"),
            pair("Birth date", "1981-02-03"),
            pair("E-mail", "jo@x.org"),
            pair("Cell", "6175550199"),
        ];
        assert_eq!(demo[..5], want, "everything but the e-mail changed");
        assert_eq!(props(&page, "ids-title"), [pair("urn:ehr", "E-7")]);
        let (_, found) = web.get(&list(north, "&q=joanna jones")).await;
        assert_eq!(families(&found), ["Jones"], "the search knows the new name");
        let (_, gone) = web.get(&list(north, "&q=smith")).await;
        assert!(families(&gone).is_empty(), "and forgot the old one");
    }
);

on_both_backends!(
    removal_states_exactly_what_goes_and_returns_to_the_list,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let ward = app.org("Ward 7", north, &[]);
        let web = ui(&app, uid).await;
        let jo = web.patient(north, "jo@x.org", "Smith", "Jo", "").await;
        let url = app.at(&format!("/api/v1/patients/{jo}/global_add_organization"));
        let res = script()
            .patch(url)
            .bearer_auth(&web.token)
            .json(&json!({"organizationId": ward}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
        enrol(&app, north, jo, 2);
        enrol(&app, ward, jo, 1);

        let remove = |org: i64| format!("{}&modal=remove", show(jo, org));
        let (_, page) = web.get(&remove(north)).await;
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "Remove Jo Smith from North?");
        let goes = page.texts("[role=dialog] .modal-body li");
        assert_eq!(
            goes,
            [
                "1 enrolment in North's studies",
                "2 consent decisions in those studies"
            ]
        );
        let org = north.to_string();
        let action = format!("/patients/{jo}/remove");
        let res = web
            .submit(&remove(north), &action, &[("organization_id", &org)])
            .await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], list(north, "").as_str());
        let (_, page) = app.follow(&web.client, res).await;
        assert_eq!(
            page.text(".flash-success"),
            "Removed the patient from this organization."
        );
        assert!(families(&page).is_empty());
        assert!(!linked(&app, jo, north) && linked(&app, jo, ward));
        assert_eq!(enrolments(&app, jo), 1, "Ward 7's enrolment stays");

        let (_, page) = web.get(&remove(ward)).await;
        let goes = page.texts("[role=dialog] .modal-body li");
        let last = "the patient record itself, because Ward 7 is their last organization";
        assert_eq!(
            goes,
            [
                "1 enrolment in Ward 7's studies",
                "1 consent decision in those studies",
                last
            ]
        );
        let org = ward.to_string();
        let (status, page) = web
            .post(&remove(ward), &action, &[("organization_id", &org)])
            .await;
        assert_eq!(status, 200);
        let said =
            "Removed the patient. It was their last organization, so their record was deleted.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(patient_count(&app), 0);
        assert_eq!(web.get(&format!("/patients/{jo}")).await.0, 404);
    }
);

// ---- roles -----------------------------------------------------------------------------------

on_both_backends!(
    a_viewer_sees_patients_but_no_controls_and_is_refused_every_change,
    |app: TestApp| async move {
        let (muid, mia) = app.practitioner("mia@x.org", false);
        let (vuid, vic) = app.practitioner("vic@x.org", false);
        let north = app.org("North", 0, &[(mia, "member"), (vic, "viewer")]);
        let member = ui(&app, muid).await;
        let jo = member
            .patient(north, "jo@x.org", "Smith", "Jo", "1980-01-01")
            .await;
        let viewer = ui(&app, vuid).await;

        let (status, page) = viewer.get(&list(north, "&modal=add")).await;
        assert_eq!((status, families(&page)), (200, strings(&["Smith"])));
        assert!(!page.source.contains("Add patient"));
        assert!(!page.exists("[role=dialog]"));
        let (status, _) = viewer.get(&list(north, "&modal=add&email=new@x.org")).await;
        assert_eq!(status, 403, "the lookup is refused");
        for modal in ["", "&modal=edit", "&modal=remove"] {
            let (status, page) = viewer.get(&format!("{}{modal}", show(jo, north))).await;
            assert_eq!((status, page.text("h1")), (200, "Jo Smith".into()));
            for css in [
                "[role=dialog]",
                "a[href$=\"modal=edit\"]",
                "a[href$=\"modal=remove\"]",
                "form[action*=\"/archive\"]",
                "form[action*=\"/restore\"]",
                "form[action*=\"/remove\"]",
            ] {
                assert!(!page.exists(css), "a viewer sees {css}");
            }
        }

        let org = north.to_string();
        let o = ("organization_id", org.as_str());
        let page = show(jo, north);
        let names = [("name_family", "Hacked"), ("name_given", "X")];
        let posts: [(String, Vec<(&str, &str)>); 6] = [
            (
                "/patients".into(),
                vec![o, ("email", "new@x.org"), names[0], names[1]],
            ),
            (
                format!("/patients/{jo}/update"),
                vec![o, names[0], names[1]],
            ),
            (format!("/patients/{jo}/archive"), vec![o]),
            (format!("/patients/{jo}/restore"), vec![o]),
            (format!("/patients/{jo}/remove"), vec![o]),
            (
                format!("/patients/{jo}/add-to-organization"),
                vec![o, ("email", "jo@x.org")],
            ),
        ];
        for (action, fields) in &posts {
            let res = viewer.submit(&page, action, fields).await;
            assert_eq!(res.status(), 403, "{action}");
        }
        let (_, after) = member.get(&page).await;
        assert_eq!(after.text("h1"), "Jo Smith", "nothing changed");
        assert_eq!(patient_count(&app), 1);
    }
);

on_both_backends!(
    an_outsider_finds_no_trace_of_another_organizations_patient,
    |app: TestApp| async move {
        let (muid, mia) = app.practitioner("mia@x.org", false);
        let (ouid, otto) = app.practitioner("otto@x.org", false);
        let north = app.org("North", 0, &[(mia, "member")]);
        let south = app.org("South", 0, &[(otto, "manager")]);
        let jo = ui(&app, muid)
            .await
            .patient(north, "jo@x.org", "Smith", "Jo", "")
            .await;
        let outsider = ui(&app, ouid).await;
        for path in [format!("/patients/{jo}"), show(jo, north), show(jo, south)] {
            let (status, page) = outsider.get(&path).await;
            assert_eq!(status, 404, "{path}");
            assert!(!page.source.contains("Smith"), "{path}");
        }
        let (_, page) = outsider.get(&list(north, "")).await;
        assert!(!page.source.contains("Smith"));
        let home = list(south, "");
        for org in [north, south] {
            let org = org.to_string();
            let o = ("organization_id", org.as_str());
            for action in ["update", "archive", "remove"] {
                let fields = [o, ("name_family", "X"), ("name_given", "Y")];
                let res = outsider
                    .submit(&home, &format!("/patients/{jo}/{action}"), &fields)
                    .await;
                assert_eq!(res.status(), 404, "{action} through {org}");
            }
        }
        assert!(linked(&app, jo, north));
    }
);

// ---- accessibility and audit -----------------------------------------------------------------

on_both_backends!(
    every_input_is_labelled_and_every_open_modal_is_a_labelled_dialog,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let south = app.org("South", 0, &[]);
        let web = ui(&app, uid).await;
        for i in 0..21 {
            web.patient(
                north,
                &format!("p{i}@x.org"),
                &format!("Fam{i:02}"),
                "Ann",
                "",
            )
            .await;
        }
        let jo = web.patient(north, "jo@x.org", "Smith", "Jo", "").await;
        ui(&app, app.admin_user_id())
            .await
            .patient(south, "s@x.org", "South", "Sy", "")
            .await;
        let pages = [
            (list(north, ""), false),
            (list(north, "&q=nobody"), false),
            (list(north, "&modal=add"), true),
            (list(north, "&modal=add&email=nope"), true),
            (list(north, "&modal=add&email=jo@x.org"), true),
            (list(north, "&modal=add&email=s@x.org"), true),
            (list(north, "&modal=add&email=new@x.org"), true),
            (show(jo, north), false),
            (format!("{}&modal=edit", show(jo, north)), true),
            (format!("{}&modal=remove", show(jo, north)), true),
        ];
        for (path, modal) in &pages {
            let (status, page) = web.get(path).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(page.unlabelled_inputs(), Vec::<String>::new(), "{path}");
            if *modal {
                assert_dialog(&page);
            } else {
                assert!(!page.exists("[role=dialog]"), "{path}");
            }
        }
        let org = north.to_string();
        let form = [("organization_id", org.as_str()), ("email", "new@x.org")];
        let (status, page) = web.post(&pages[6].0, "/patients", &form).await;
        assert_eq!(status, 400);
        assert_eq!(
            page.unlabelled_inputs(),
            Vec::<String>::new(),
            "the re-opened form"
        );
        assert!(page.exists("#f-page"), "the page jump was checked too");
    }
);

on_both_backends!(
    viewing_the_list_and_a_patient_is_written_to_the_audit_log,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "viewer")]);
        let admin = ui(&app, app.admin_user_id()).await;
        let jo = admin.patient(north, "jo@x.org", "Smith", "Jo", "").await;
        let web = ui(&app, uid).await;
        let events = |action: &'static str| {
            let q = ae::table
                .filter(ae::action.eq(action))
                .filter(ae::actor_email.eq("ana@x.org"))
                .select((ae::organization_id, ae::object_id));
            q.load::<(Option<i64>, Option<String>)>(&mut *app.conn())
                .unwrap()
        };
        assert!(events("patient.list").is_empty() && events("patient.read").is_empty());
        web.get(&list(north, "&q=smith")).await;
        assert_eq!(events("patient.list"), [(Some(north), None)]);
        web.get(&show(jo, north)).await;
        assert_eq!(
            events("patient.read"),
            [(Some(north), Some(jo.to_string()))]
        );
        let detail: Option<String> = ae::table
            .filter(ae::action.eq("patient.list"))
            .select(ae::detail)
            .first(&mut *app.conn())
            .unwrap();
        let detail: Value = serde_json::from_str(&detail.expect("a detail")).unwrap();
        assert_eq!(detail["q"], "smith", "the search is recorded");
    }
);
