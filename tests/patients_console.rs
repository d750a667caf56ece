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
    let client = app.signed_in(user_id).await;
    let token = app.token(user_id);
    Ui { app, client, token }
}

type Fields<'a> = [(&'a str, &'a str)];

impl Ui<'_> {
    async fn get(&self, path: &str) -> (u16, Page) {
        self.app.get_html(&self.client, path).await
    }

    /// The family names listed at `path`.
    async fn families(&self, path: &str) -> Vec<String> {
        families(&self.get(path).await.1)
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

    /// A JSON call to the API that must succeed; its answer.
    async fn api(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let req = script().request(method, self.app.at(path));
        let res = req.bearer_auth(&self.token).json(&body).send().await;
        let res = res.unwrap();
        let status = res.status();
        let out: Value = res.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {out}");
        out
    }

    /// Creates a patient through the API and returns its id.
    async fn create(&self, body: Value) -> i64 {
        let out = self.api(reqwest::Method::POST, "/api/v1/patients", body);
        out.await["id"].as_i64().unwrap()
    }

    async fn patient(&self, org: i64, email: &str, family: &str, given: &str, birth: &str) -> i64 {
        let body = json!({"organizationId": org, "telecomEmail": email, "nameFamily": family,
                          "nameGiven": given, "birthDate": birth});
        self.create(body).await
    }

    /// Jo Smith, born 1980-01-01, with a cell and the identifiers `ids`.
    async fn jo(&self, org: i64, ids: &[(&str, &str)]) -> i64 {
        let ids: Vec<Value> = ids
            .iter()
            .map(|(s, v)| json!({"system": s, "value": v}))
            .collect();
        let body = json!({"organizationId": org, "telecomEmail": "jo@x.org",
            "nameFamily": "Smith", "nameGiven": "Jo", "birthDate": "1980-01-01",
            "telecomPhone": "+1 617 555 0100", "identifiers": ids});
        self.create(body).await
    }

    /// Adds a patient to another organization through the API.
    async fn also_in(&self, patient: i64, org: i64) {
        let path = format!("/api/v1/patients/{patient}/global_add_organization");
        let path = format!("{path}?organizationId={org}");
        self.api(reqwest::Method::PATCH, &path, json!({})).await;
    }
}

/// A member of a new organization North, signed in.
async fn member_of_north(app: &TestApp) -> (Ui<'_>, i64) {
    let (uid, ana) = app.practitioner("ana@x.org", false);
    let north = app.org("North", 0, &[(ana, "member")]);
    (ui(app, uid).await, north)
}

const TWO_IDS: [(&str, &str); 2] = [("urn:mrn", "MRN-1"), ("urn:ehr", "EHR-9")];

fn list(org: i64, extra: &str) -> String {
    format!("/patients?organization_id={org}{extra}")
}

fn show(id: i64, org: i64) -> String {
    format!("/patients/{id}?organization_id={org}")
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

/// The (term, value) pairs of the card titled `title_id` on the patient page.
fn props(page: &Page, title_id: &str) -> Vec<(String, String)> {
    let css = |t: &str| format!("section[aria-labelledby={title_id}] dl.props {t}");
    let (dt, dd) = (page.texts(&css("dt")), page.texts(&css("dd")));
    dt.into_iter().zip(dd).collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The value of an input, found by CSS.
fn value(page: &Page, css: &str) -> String {
    let v = page.attr(css, "value");
    v.unwrap_or_else(|| panic!("no value for {css} in:\n{}", page.source))
}

/// Every named input of a form as the browser would send it (but the CSRF token).
fn form_fields(page: &Page, form: &str) -> Vec<(String, String)> {
    let sel = scraper::Selector::parse(&format!("{form} input[name]")).unwrap();
    let named = page.doc.select(&sel).map(|e| e.value());
    let named = named.map(|v| (v.attr("name").unwrap(), v.attr("value").unwrap_or("")));
    let named = named.filter(|(n, _)| *n != "csrf_token");
    named.map(|(n, v)| (n.to_string(), v.to_string())).collect()
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

/// The status and the Location of a response.
fn redirect(res: &reqwest::Response) -> (u16, String) {
    let loc = res.headers().get("location").map(|l| l.to_str().unwrap());
    (res.status().as_u16(), loc.unwrap_or_default().to_string())
}

fn linked(app: &TestApp, patient: i64, org: i64) -> bool {
    let link = po::patient_id.eq(patient).and(po::organization_id.eq(org));
    let q = po::table.filter(link).count();
    q.get_result::<i64>(&mut *app.conn()).unwrap() == 1
}

fn patient_count(app: &TestApp) -> i64 {
    p::table.count().get_result(&mut *app.conn()).unwrap()
}

/// A study of `org` with the patient enrolled and `consents` consent decisions.
fn enrol(app: &TestApp, org: i64, patient: i64, consents: i64) {
    let (mut c, t) = (app.conn(), cohort::util::now());
    let study = (s::organization_id.eq(org), s::name.eq("Sleep"));
    let rest = (
        s::description.eq(""),
        s::status.eq("active"),
        s::created_at.eq(t),
    );
    let q = diesel::insert_into(s::table).values((study, rest));
    let study: i64 = q.returning(s::id).get_result(&mut *c).unwrap();
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
        let web = ui(&app, uid).await;
        let jo = web.jo(north, &TWO_IDS).await;
        let al = web.patient(north, "al@x.org", "Adams", "Al", "").await;
        let admin = ui(&app, app.admin_user_id()).await;
        admin.patient(south, "zed@x.org", "Zed", "Zoe", "").await;

        let (status, page) = web.get(&list(north, "")).await;
        assert_eq!(status, 200);
        let orgs = page.texts("#f-organization_id option");
        assert_eq!(orgs, ["East", "North", "— Ward 7"], "mine only, nested");
        let chosen = page.text("#f-organization_id option[selected]");
        assert_eq!(chosen, "North");
        let want = "ID|External identifiers|Family name|Given name|Birth date|E-mail|Cell";
        let heads = page.texts("table.data thead th");
        let heads: Vec<&str> = heads.iter().map(|h| h.as_str()).collect();
        let heads: Vec<&str> = heads.into_iter().filter(|h| want.contains(h)).collect();
        assert_eq!(heads.join("|"), want, "these columns, in this order");
        assert_eq!(page.text(".lede"), "North · 2 patients");
        assert_eq!(column(&page, "ID"), [al.to_string(), jo.to_string()]);
        assert_eq!(column(&page, "External identifiers")[0], "", "Al has none");
        let ids = cells(&page, "External identifiers");
        let ids = ids.replace("tr ", "tr:nth-child(2) ") + " span";
        assert_eq!(page.texts(&ids), ["MRN-1", "EHR-9"], "all of Jo's");
        let system = page.attr(&ids, "title");
        assert_eq!(system.as_deref(), Some("urn:mrn"), "with the system");
        assert_eq!(column(&page, "Family name"), ["Adams", "Smith"]);
        assert_eq!(column(&page, "Given name"), ["Al", "Jo"]);
        assert_eq!(column(&page, "Birth date"), ["", "1980-01-01"]);
        assert_eq!(column(&page, "E-mail"), ["al@x.org", "jo@x.org"]);
        assert_eq!(column(&page, "Cell"), ["", "+16175550100"]);
        let row_link = format!("table.data a[href=\"{}\"]", show(jo, north));
        assert!(page.exists(&row_link), "a row leads to the patient");
        assert!(page.exists(&format!("a[href=\"{}\"]", list(north, "&modal=add"))));
        assert!(!page.source.contains("Zed") && !page.source.contains("South"));
        let (_, page) = web.get(&list(south, "")).await;
        assert!(!page.source.contains("Zed"), "not even by asking for it");
    }
);

on_both_backends!(
    search_needs_every_word_to_start_a_word_ignoring_case_and_accents,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let people = [
            ("john.smith@x.org", "Smith", "John", "1980-01-01"),
            ("jane@x.org", "Smithers", "Jane", "1980-01-01"),
            ("g@x.org", "Goldsmith", "Gus", "1975-05-05"),
            ("u@x.org", "Çelik", "Ünal", "1990-02-02"),
        ];
        for (email, family, given, birth) in people {
            web.patient(north, email, family, given, birth).await;
        }
        let search = |q: &str| list(north, &format!("&q={}", q.replace(' ', "+")));
        let both = ["Smith", "Smithers"];
        for (q, want) in [
            ("smith", &both[..]),
            ("SMI", &both),
            ("smith 1980-01-01", &both),
            ("smith john", &["Smith"]),
            ("1975-05-05", &["Goldsmith"]),
            ("celik unal", &["Çelik"]),
            ("ÇELİK Ü", &["Çelik"]),
            ("john.smith@x.org", &["Smith"]),
        ] {
            assert_eq!(web.families(&search(q)).await, want, "{q}");
        }
        let (_, page) = web.get(&search("smith 1980")).await;
        let lede = page.text(".lede");
        assert_eq!(lede, "North · 2 patients matching “smith 1980”");
        assert_eq!(value(&page, "#f-q"), "smith 1980", "the box keeps it");

        let (_, page) = web.get(&search("mith")).await;
        assert!(families(&page).is_empty(), "a word matches from its start");
        assert_eq!(page.text(".empty h2"), "No patient matches “mith”");
        let why = page.text(".empty p");
        assert!(why.contains("Every word must match the start"), "{why}");
        let clear = format!(".empty a[href=\"{}\"]", list(north, ""));
        assert_eq!(page.text(&clear), "Clear the search");
        let lede = page.text(".lede");
        assert_eq!(lede, "North · 0 patients matching “mith”");
    }
);

on_both_backends!(
    page_sizes_pages_and_the_page_jump_keep_the_whole_query_in_the_address,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        for i in 0..25 {
            let (email, family) = (format!("ann{i}@x.org"), format!("Fam{i:02}"));
            let birth = format!("19{}-01-01", 50 + i);
            web.patient(north, &email, &family, "Ann", &birth).await;
        }
        web.patient(north, "bob@x.org", "Other", "Bob", "2000-01-01")
            .await;
        let fams = |r: std::ops::Range<usize>| r.map(|i| format!("Fam{i:02}"));
        let fams = |r| fams(r).collect::<Vec<_>>();
        let kept = [
            "organization_id=",
            "q=ann",
            "sort=birth_date",
            "page_size=20",
        ];
        let has_all = |link: &str, page: &str| {
            let missing: Vec<_> = kept.iter().filter(|p| !link.contains(*p)).collect();
            assert!(missing.is_empty(), "{missing:?} missing from {link}");
            assert!(link.contains(page), "{page} missing from {link}");
        };

        let (_, page) = web
            .get(&list(north, "&q=ann&sort=birth_date&page_size=20"))
            .await;
        assert_eq!(families(&page), fams(0..20));
        assert_eq!(page.text(".lede"), "North · 25 patients matching “ann”");
        assert_eq!(page.text(".pagination p"), "Showing 1–20 of 25");
        assert!(page.text(".pagination").contains("Page 1 of 2"));
        assert!(!page.exists("a[rel=prev]"));
        let next = page.attr("a[rel=next]", "href").expect("a next link");
        has_all(&next, "page=2");
        let (_, page) = web.get(&next).await;
        assert_eq!(families(&page), fams(20..25));
        assert_eq!(page.text(".pagination p"), "Showing 21–25 of 25");
        assert!(!page.exists("a[rel=next]"));
        let prev = page.attr("a[rel=prev]", "href").expect("a previous link");
        has_all(&prev, "page=1");
        assert_eq!(web.families(&prev).await, fams(0..20));

        // The page jump is a GET form carrying the rest of the state.
        let jump = "form[method=get][aria-label=\"Go to page\"]";
        let max = page.attr(&format!("{jump} #f-page"), "max");
        assert_eq!(max.as_deref(), Some("2"));
        let mut fields = form_fields(&page, jump);
        fields.retain(|(name, _)| name != "page");
        fields.push(("page".into(), "2".into()));
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let path = format!("/patients?{}", query.extend_pairs(&fields).finish());
        has_all(&path, "page=2");
        assert_eq!(web.families(&path).await, fams(20..25), "{path}");

        for (size, rows) in [
            ("100", 26),
            ("500", 26),
            ("1000", 26),
            ("50", 20),
            ("x", 20),
        ] {
            let (_, page) = web.get(&list(north, &format!("&page_size={size}"))).await;
            assert_eq!(families(&page).len(), rows, "page_size={size}");
            let want = if rows == 20 { "20" } else { size };
            let shown = page.text("#f-page_size option[selected]");
            assert_eq!(shown, want, "page_size={size}");
            assert_eq!(page.exists("a[rel=next]"), rows == 20);
            assert_eq!(page.exists("#f-page"), rows == 20, "a jump needs pages");
            assert_eq!(page.text(".lede"), "North · 26 patients");
        }
        let (_, page) = web.get(&list(north, "")).await;
        let sizes = page.texts("#f-page_size option");
        assert_eq!(sizes, ["20", "100", "500", "1000"]);
    }
);

on_both_backends!(
    a_page_past_the_end_still_counts_the_patients_and_leads_back,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        web.patient(north, "a@x.org", "Adams", "Al", "").await;
        let (status, page) = web.get(&list(north, "&page=9")).await;
        let lede = page.text(".lede");
        assert_eq!((status, lede.as_str()), (200, "North · 1 patient"));
        let says = page.source.contains("No patients yet");
        assert!(!says, "page 9 of 1 says there are no patients");
        let back = families(&page) == ["Adams"] || page.exists("a[rel=prev]");
        assert!(back, "page 9 of 1 offers no way back:\n{}", page.source);
    }
);

/// Five dated patients, added in this order: Brown, Adams, Çelik, Clark, de Vries.
async fn five(web: &Ui<'_>, org: i64) -> Vec<i64> {
    let people = [
        ("b@c.org", "Brown", "Bo", "1990-03-03"),
        ("a@c.org", "Adams", "Al", "1970-01-01"),
        ("c@c.org", "Çelik", "Cem", "1980-02-02"),
        ("d@c.org", "Clark", "Cy", "1985-05-05"),
        ("e@c.org", "de Vries", "Dirk", "1960-06-06"),
    ];
    let mut ids = Vec::new();
    for (email, family, given, birth) in people {
        ids.push(web.patient(org, email, family, given, birth).await);
    }
    ids
}

/// The list in this sort order, both plain and searched (a search sorts another way).
async fn assert_sorted(web: &Ui<'_>, org: i64, sort: &str, want: &[&str]) {
    for q in ["", "&q=org"] {
        let path = list(org, &format!("{q}&sort={sort}"));
        assert_eq!(web.families(&path).await, want, "{path}");
    }
}

on_both_backends!(
    the_list_sorts_by_family_name_birth_date_or_date_added_with_or_without_a_search,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        five(&web, north).await;
        let by_name = ["Adams", "Brown", "Çelik", "Clark", "de Vries"];
        assert_sorted(&web, north, "", &by_name).await;
        let by_birth = ["de Vries", "Adams", "Çelik", "Clark", "Brown"];
        assert_sorted(&web, north, "birth_date", &by_birth).await;
        let by_added = ["de Vries", "Clark", "Çelik", "Adams", "Brown"];
        assert_sorted(&web, north, "added", &by_added).await;
        let (_, page) = web.get(&list(north, "&sort=added")).await;
        assert_eq!(page.text("#f-sort option[selected]"), "Date added");
    }
);

on_both_backends!(
    a_patient_without_a_birth_date_sorts_last_on_both_backends_with_or_without_a_search,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        five(&web, north).await;
        web.patient(north, "f@c.org", "Undated", "Uma", "").await;
        let by_birth = ["de Vries", "Adams", "Çelik", "Clark", "Brown", "Undated"];
        assert_sorted(&web, north, "birth_date", &by_birth).await;
    }
);

on_both_backends!(
    an_edit_moves_the_patient_in_the_sorted_list,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let adams = five(&web, north).await[1];
        let edit = format!("{}&modal=edit", show(adams, north));
        let (org, action) = (north.to_string(), format!("/patients/{adams}/update"));
        let fields = [("organization_id", org.as_str()), ("name_family", "Zimmer")];
        let more = [("name_given", "Al"), ("birth_date", "2001-01-01")];
        let res = web
            .submit(&edit, &action, &[&fields[..], &more].concat())
            .await;
        assert_eq!(res.status(), 303);
        let by_name = ["Brown", "Çelik", "Clark", "de Vries", "Zimmer"];
        assert_sorted(&web, north, "", &by_name).await;
        let by_birth = ["de Vries", "Çelik", "Clark", "Brown", "Zimmer"];
        assert_sorted(&web, north, "birth_date", &by_birth).await;
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
        let shown = |(_, page): (u16, Page)| {
            let org = page.text("#f-organization_id option[selected]");
            format!("{org}: {}", families(&page).join(", "))
        };

        assert_eq!(shown(web.get("/patients").await), "Alpha: Ash", "the first");
        assert_eq!(shown(web.get(&list(b, "")).await), "Beta: Birch");
        assert_eq!(
            shown(web.get("/patients").await),
            "Beta: Birch",
            "remembered"
        );
        let again = ui(&app, uid).await;
        let after = shown(again.get("/patients").await);
        assert_eq!(after, "Beta: Birch", "after signing in again");
        let other = shown(again.get(&list(south, "")).await);
        assert_eq!(other, "Beta: Birch", "not an organization I am not in");
    }
);

// ---- archive and restore ---------------------------------------------------------------------

on_both_backends!(
    archived_patients_are_hidden_until_asked_for_and_can_be_restored,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let al = web.patient(north, "a@x.org", "Adams", "Al", "").await;
        web.patient(north, "b@x.org", "Brown", "Bo", "").await;
        let (_, none) = web.get(&list(north, "&archived=archived")).await;
        assert_eq!(none.text(".empty h2"), "No archived patients");

        let (page, org) = (show(al, north), north.to_string());
        let (_, shown) = web.get(&page).await;
        let form = format!("form[action=\"/patients/{al}/archive\"]");
        assert_eq!(
            form_fields(&shown, &form),
            pairs(&[("organization_id", &org)])
        );
        let action = format!("/patients/{al}/archive");
        let res = web
            .submit(&page, &action, &[("organization_id", &org)])
            .await;
        assert_eq!(redirect(&res), (303, page.clone()));
        let (_, after) = app.follow(&web.client, res).await;
        let flash = "Archived the patient. They are hidden from the list until restored.";
        assert_eq!(after.text(".flash-success"), flash);
        assert_eq!(after.text("h1"), "Al Adams Archived");
        assert!(after.exists(&format!("form[action=\"/patients/{al}/restore\"]")));

        let (_, active) = web.get(&list(north, "")).await;
        assert_eq!(families(&active), ["Brown"]);
        assert_eq!(active.text(".lede"), "North · 1 patient");
        let (_, archived) = web.get(&list(north, "&archived=archived")).await;
        assert_eq!(families(&archived), ["Adams"]);
        assert_eq!(archived.text(".lede"), "North · 1 archived patient");
        let badge = format!("{} .badge", cells(&archived, "Family name"));
        assert_eq!(archived.text(&badge), "Archived");
        let (_, all) = web.get(&list(north, "&archived=all")).await;
        assert_eq!(families(&all), ["Adams", "Brown"]);
        assert_eq!(
            all.count("table.data .badge-archived"),
            1,
            "the archived one"
        );
        let found = web.families(&list(north, "&q=adams")).await;
        assert!(found.is_empty(), "a search of active patients skips them");

        let action = format!("/patients/{al}/restore");
        let (_, after) = web.post(&page, &action, &[("organization_id", &org)]).await;
        assert_eq!(after.text(".flash-success"), "Restored the patient.");
        assert_eq!(after.text("h1"), "Al Adams");
        let listed = web.families(&list(north, "")).await;
        assert_eq!(listed, ["Adams", "Brown"]);
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
        let admin = ui(&app, app.admin_user_id()).await;
        admin.patient(east, "seen@x.org", "Seen", "Sue", "").await;
        let hidden = admin
            .patient(south, "hidden@x.org", "Hidden", "Hugo", "")
            .await;
        let other = admin
            .patient(south, "other@x.org", "Other", "Olga", "")
            .await;
        let add = list(north, "&modal=add");
        let body = |page: &Page| page.text("[role=dialog] .modal-body");

        let (_, page) = web.get(&add).await;
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "Add patient");
        let step = "[role=dialog] form[method=get][action=\"/patients\"]";
        let fields = form_fields(&page, step);
        let org = north.to_string();
        let want = [
            ("organization_id", org.as_str()),
            ("modal", "add"),
            ("email", ""),
        ];
        assert_eq!(fields, pairs(&want));
        let (_, bad) = web.get(&format!("{add}&email=nope")).await;
        assert!(bad.text("#f-email-error").contains("name@example.org"));
        let invalid = bad.attr("#f-email", "aria-invalid");
        assert_eq!(invalid.as_deref(), Some("true"));

        let (_, page) = web.get(&format!("{add}&email=HERE@x.org")).await;
        assert_dialog(&page);
        let said = "here@x.org is already a patient of this organization: Hal Here.";
        assert_eq!(body(&page), said);
        let view = format!("[role=dialog] a[href=\"{}\"]", show(here, north));
        assert_eq!(page.text(&view), "View Hal Here");

        let (_, page) = web.get(&format!("{add}&email=seen@x.org")).await;
        let said = "seen@x.org (Sue Seen) is already registered with another organization";
        assert!(body(&page).contains(said), "{}", body(&page));

        let (_, page) = web.get(&format!("{add}&email=hidden@x.org")).await;
        let said = "is already registered with another organization";
        assert!(body(&page).contains(said), "{}", body(&page));
        assert!(!page.source.contains("Hugo"), "no name I may not see");
        let form = format!("form[action=\"/patients/{hidden}/add-to-organization\"]");
        let button = page.text(&format!("{form} button[type=submit]"));
        assert_eq!(button, "Add to North");
        let want = [("organization_id", org.as_str()), ("email", "hidden@x.org")];
        assert_eq!(form_fields(&page, &form), pairs(&want));

        // The e-mail is what lets a practitioner add someone they cannot see.
        let action = format!("/patients/{hidden}/add-to-organization");
        for email in ["", "other@x.org", "guess@x.org"] {
            let fields = [("organization_id", org.as_str()), ("email", email)];
            let res = web.submit(&add, &action, &fields).await;
            assert_eq!(res.status(), 404, "with {email:?}");
        }
        assert!(!linked(&app, hidden, north) && !linked(&app, other, north));

        let res = web.submit(&add, &action, &want).await;
        assert_eq!(redirect(&res), (303, show(hidden, north)));
        let (_, page) = app.follow(&web.client, res).await;
        let flash = page.text(".flash-success");
        assert_eq!(flash, "Added the patient to this organization.");
        assert_eq!(page.text("h1"), "Hugo Hidden");
        assert!(
            linked(&app, hidden, south),
            "still in its first organization"
        );
        let listed = web.families(&list(north, "")).await;
        assert_eq!(listed, ["Here", "Hidden"]);
    }
);

on_both_backends!(
    a_new_email_opens_the_create_form_which_shows_each_mistake_beside_its_field,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        web.jo(north, &TWO_IDS).await;
        let add = list(north, "&modal=add&email=New@X.org");
        let (_, page) = web.get(&add).await;
        assert_dialog(&page);
        let form = "[role=dialog] form[method=post][action=\"/patients\"]";
        assert!(page.text(form).contains("No patient has this e-mail yet"));
        assert_eq!(value(&page, "#f-email"), "new@x.org");
        assert!(page.attr("#f-email", "readonly").is_some(), "read-only");
        let names: Vec<String> = form_fields(&page, form).into_iter().map(|f| f.0).collect();
        let want = "organization_id email name_family name_given birth_date phone";
        let want: Vec<&str> = want.split(' ').collect();
        assert_eq!(names[..6], want, "then identifier rows");
        assert!(names.contains(&"id_system_3".to_string()), "{names:?}");
        let before = patient_count(&app);

        let org = north.to_string();
        let o = ("organization_id", org.as_str());
        let bad = [
            o,
            ("email", "new@x.org"),
            ("name_family", " "),
            ("name_given", ""),
        ];
        let more = [("birth_date", "01/02/1980"), ("phone", "call me")];
        let bad = [&bad[..], &more, &[("id_system_1", "urn:x")]].concat();
        let (status, page) = web.post(&add, "/patients", &bad).await;
        assert_eq!(status, 400);
        assert_dialog(&page);
        let kept = ["#f-email", "#f-birth_date", "#f-phone", "#f-id_system_1"];
        let kept = kept.map(|f| value(&page, f));
        assert_eq!(kept, ["new@x.org", "01/02/1980", "call me", "urn:x"]);
        for (field, says) in [
            ("name_family", "Enter the family name."),
            ("name_given", "Enter the given name."),
            ("birth_date", "Use a real date written YYYY-MM-DD"),
            ("phone", "Use a phone number of 7 to 15 digits"),
        ] {
            let f = format!("#f-{field}");
            let error = page.text(&format!("{f}-error"));
            assert!(error.starts_with(says), "{field}: {error}");
            let invalid = page.attr(&f, "aria-invalid");
            assert_eq!(invalid.as_deref(), Some("true"), "{field}");
            let described = page.attr(&f, "aria-describedby").unwrap_or_default();
            assert!(described.contains(&format!("f-{field}-error")), "{field}");
        }
        let ids = page.text("#f-identifiers-error");
        assert_eq!(ids, "Each identifier needs both a system and a value.");
        assert!(!page.exists("#f-email-error"));

        let named = [o, ("email", "new@x.org"), ("name_family", "Silva")];
        let named = [&named[..], &[("name_given", "Ana")]].concat();
        let future = [&named[..], &[("birth_date", "2999-01-01")]].concat();
        let (status, page) = web.post(&add, "/patients", &future).await;
        assert_eq!(status, 400);
        let error = page.text("#f-birth_date-error");
        assert_eq!(error, "A birth date cannot be in the future.");
        assert_eq!(value(&page, "#f-name_family"), "Silva");
        assert!(!page.exists("#f-name_family-error"));

        let held = [("id_system_1", "urn:mrn"), ("id_value_1", "MRN-1")];
        let (status, page) = web
            .post(&add, "/patients", &[&named[..], &held].concat())
            .await;
        assert_eq!(status, 400);
        let error = page.text("#f-identifiers-error");
        assert_eq!(error, "urn:mrn MRN-1 is already held by another patient.");
        assert_eq!(
            patient_count(&app),
            before,
            "the failed submits made nothing"
        );

        let rest = [("birth_date", "1980-04-23"), ("id_system_1", "urn:mrn")];
        let good = [&named[..], &rest, &[("id_value_1", "7")]].concat();
        let res = web.submit(&add, "/patients", &good).await;
        let q = p::table
            .filter(p::telecom_email.eq("new@x.org"))
            .select(p::id);
        let id: i64 = q.first(&mut *app.conn()).unwrap();
        assert_eq!(redirect(&res), (303, show(id, north)));
        let (_, page) = app.follow(&web.client, res).await;
        assert_eq!(page.text(".flash-success"), "Added Ana Silva.");
        assert_eq!(page.text("h1"), "Ana Silva");
        assert_eq!(props(&page, "ids-title"), pairs(&[("urn:mrn", "7")]));
    }
);

on_both_backends!(
    a_create_refused_for_its_email_says_why_in_the_reopened_form,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let org = north.to_string();
        let o = ("organization_id", org.as_str());
        let names = [("name_family", "Silva"), ("name_given", "Ana")];

        // Someone else created the patient while the form was open.
        let add = list(north, "&modal=add&email=late@x.org");
        web.get(&add).await;
        web.patient(north, "late@x.org", "Late", "Lu", "").await;
        let fields = [&[o, ("email", "late@x.org")][..], &names].concat();
        let (status, page) = web.post(&add, "/patients", &fields).await;
        assert_eq!(status, 400);
        let said = page.text("[role=dialog] .form-errors");
        assert_eq!(
            said,
            "late@x.org is already a patient of this organization."
        );
        assert_eq!(patient_count(&app), 1);

        // The e-mail of a practitioner account (the lookup offers the create form).
        let add = list(north, "&modal=add&email=ana@x.org");
        assert!(web.get(&add).await.1.exists("form[action=\"/patients\"]"));
        let fields = [&[o, ("email", "ana@x.org")][..], &names].concat();
        let (status, page) = web.post(&add, "/patients", &fields).await;
        assert_eq!(status, 400);
        assert_dialog(&page);
        let said = page.text("[role=dialog]");
        let why = "ana@x.org belongs to a practitioner account.";
        assert!(said.contains(why), "the message is not shown:\n{said}");
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
        let jo = web.jo(north, &TWO_IDS).await;
        let admin = ui(&app, app.admin_user_id()).await;
        admin.also_in(jo, ward).await;
        admin.also_in(jo, south).await;

        let (status, page) = web.get(&show(jo, north)).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "Jo Smith");
        assert_eq!(page.text(".lede"), format!("Patient {jo} · jo@x.org"));
        let today = chrono::Utc::now().date_naive().format("%Y-%m-%d");
        let want = pairs(&[
            ("Family name", "Smith"),
            ("Given name", "Jo"),
            ("Birth date", "1980-01-01"),
            ("E-mail", "jo@x.org"),
            ("Cell", "+16175550100"),
            ("Added", &today.to_string()),
        ]);
        assert_eq!(props(&page, "demo-title"), want);
        assert_eq!(props(&page, "ids-title"), pairs(&TWO_IDS));
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
        let (web, north) = member_of_north(&app).await;
        let jo = web.jo(north, &TWO_IDS).await;
        let edit = format!("{}&modal=edit", show(jo, north));
        let (_, page) = web.get(&edit).await;
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "Edit Jo Smith");
        let form = format!("[role=dialog] form[action=\"/patients/{jo}/update\"]");
        let shown = form_fields(&page, &form);
        assert!(!shown.iter().any(|f| f.0 == "email"), "no e-mail field");
        let get = |name: &str| shown.iter().find(|f| f.0 == name).map(|f| f.1.as_str());
        let want = [Some("Smith"), Some("1980-01-01"), Some("+16175550100")];
        assert_eq!([get("name_family"), get("birth_date"), get("phone")], want);
        assert_eq!(
            [get("id_system_2"), get("id_value_2")],
            [Some("urn:ehr"), Some("EHR-9")]
        );

        let action = format!("/patients/{jo}/update");
        let org = north.to_string();
        let o = ("organization_id", org.as_str());
        let bad = [o, ("name_family", ""), ("name_given", "Joanna")];
        let (status, page) = web.post(&edit, &action, &bad).await;
        assert_eq!(status, 400);
        assert_dialog(&page);
        assert_eq!(page.text("#f-name_family-error"), "Enter the family name.");
        assert_eq!(value(&page, "#f-name_given"), "Joanna", "the input is kept");

        let fields = [
            o,
            ("email", "taken-over@x.org"),
            ("name_family", "Jones"),
            ("name_given", "Joanna"),
            ("birth_date", "1981-02-03"),
            ("phone", "617.555.0199"),
            ("id_system_1", "urn:ehr"),
            ("id_value_1", "E-7"),
        ];
        let res = web.submit(&edit, &action, &fields).await;
        assert_eq!(redirect(&res), (303, show(jo, north)));
        let (_, page) = app.follow(&web.client, res).await;
        assert_eq!(page.text(".flash-success"), "Saved the patient.");
        assert_eq!(page.text("h1"), "Joanna Jones");
        let demo = props(&page, "demo-title");
        let want = pairs(&[
            ("Family name", "Jones"),
            ("Given name", "Joanna"),
            ("Birth date", "1981-02-03"),
            ("E-mail", "jo@x.org"),
            ("Cell", "6175550199"),
        ]);
        assert_eq!(demo[..5], want, "everything but the e-mail changed");
        assert_eq!(props(&page, "ids-title"), pairs(&[("urn:ehr", "E-7")]));
        let found = web.families(&list(north, "&q=joanna+jones")).await;
        assert_eq!(found, ["Jones"], "the search knows the new name");
        let gone = web.families(&list(north, "&q=smith")).await;
        assert!(gone.is_empty(), "and forgot the old one");
    }
);

on_both_backends!(
    saving_the_edit_form_as_shown_keeps_every_identifier,
    |app: TestApp| async move {
        let (web, north) = member_of_north(&app).await;
        let four = [&TWO_IDS[..], &[("urn:a", "A-1"), ("urn:b", "B-2")]].concat();
        let jo = web.jo(north, &four).await;
        let edit = format!("{}&modal=edit", show(jo, north));
        let (_, page) = web.get(&edit).await;
        let shown = form_fields(&page, &format!("form[action$=\"/{jo}/update\"]"));
        // A new given name; everything else as the form showed it.
        let mut fields: Vec<(&str, &str)> = shown.iter().map(|(n, v)| (&**n, &**v)).collect();
        fields.retain(|f| f.0 != "name_given");
        fields.push(("name_given", "Joe"));
        let action = format!("/patients/{jo}/update");
        let (_, page) = web.post(&edit, &action, &fields).await;
        assert_eq!(page.text("h1"), "Joe Smith");
        let kept = props(&page, "ids-title");
        assert_eq!(kept, pairs(&four), "the fourth identifier is lost");
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
        web.also_in(jo, ward).await;
        enrol(&app, north, jo, 2);
        enrol(&app, ward, jo, 1);
        let remove = |org: i64| format!("{}&modal=remove", show(jo, org));
        let action = format!("/patients/{jo}/remove");
        let goes = |page: &Page| {
            let items = page.texts("[role=dialog] .modal-body li");
            let items = items.into_iter().map(|t| t.replace(" ,", ","));
            items.collect::<Vec<_>>()
        };

        let (_, page) = web.get(&remove(north)).await;
        assert_dialog(&page);
        assert_eq!(page.text("#modal-title"), "Remove Jo Smith from North?");
        let want = [
            "1 enrolment in North's studies",
            "2 consent decisions in those studies",
        ];
        assert_eq!(goes(&page), want);
        let org = north.to_string();
        let (page, fields) = (remove(north), [("organization_id", org.as_str())]);
        let res = web.submit(&page, &action, &fields).await;
        assert_eq!(redirect(&res), (303, list(north, "")));
        let (_, page) = app.follow(&web.client, res).await;
        let said = "Removed the patient from this organization.";
        assert_eq!(page.text(".flash-success"), said);
        assert!(families(&page).is_empty());
        assert!(!linked(&app, jo, north) && linked(&app, jo, ward));
        assert_eq!(enrolments(&app, jo), 1, "Ward 7's enrolment stays");

        let (_, page) = web.get(&remove(ward)).await;
        let last = "the patient record itself, because Ward 7 is their last organization";
        let one = [
            "1 enrolment in Ward 7's studies",
            "1 consent decision in those studies",
        ];
        assert_eq!(goes(&page), [&one[..], &[last]].concat());
        let org = ward.to_string();
        let fields = [("organization_id", org.as_str())];
        let (_, page) = web.post(&remove(ward), &action, &fields).await;
        let said = "Removed the patient. It was their last organization, so their record \
                    was deleted.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!((patient_count(&app), enrolments(&app, jo)), (0, 0));
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
        let jo = member.jo(north, &[]).await;
        let viewer = ui(&app, vuid).await;

        let (status, page) = viewer.get(&list(north, "&modal=add")).await;
        assert_eq!((status, families(&page)), (200, vec!["Smith".to_string()]));
        assert!(!page.source.contains("Add patient") && !page.exists("[role=dialog]"));
        let lookup = viewer.get(&list(north, "&modal=add&email=new@x.org")).await;
        assert_eq!(lookup.0, 403, "the lookup is refused");
        let controls = [
            "a[href$=\"modal=edit\"]",
            "a[href$=\"modal=remove\"]",
            "form[action$=\"/archive\"]",
        ];
        let (_, theirs) = member.get(&show(jo, north)).await;
        for css in controls {
            assert!(theirs.exists(css), "a member is missing {css}");
        }
        for modal in ["", "&modal=edit", "&modal=remove"] {
            let (status, page) = viewer.get(&format!("{}{modal}", show(jo, north))).await;
            assert_eq!((status, page.text("h1")), (200, "Jo Smith".into()));
            for css in controls
                .iter()
                .chain(&["[role=dialog]", "form[action^=\"/patients\"]"])
            {
                assert!(!page.exists(css), "a viewer sees {css} with {modal:?}");
            }
        }

        let org = north.to_string();
        let o = ("organization_id", org.as_str());
        let page = show(jo, north);
        let names = [o, ("name_family", "Hacked"), ("name_given", "X")];
        let posts: [(String, Vec<(&str, &str)>); 6] = [
            (
                "/patients".into(),
                [&names[..], &[("email", "new@x.org")]].concat(),
            ),
            (format!("/patients/{jo}/update"), names.to_vec()),
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
        let listed = member.families(&list(north, "")).await;
        assert_eq!(listed, ["Smith"], "nothing changed");
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
        let jo = ui(&app, muid).await.jo(north, &[]).await;
        let outsider = ui(&app, ouid).await;
        for path in [format!("/patients/{jo}"), show(jo, north), show(jo, south)] {
            let (status, page) = outsider.get(&path).await;
            assert_eq!(status, 404, "{path}");
            assert!(!page.source.contains("Smith"), "{path}");
        }
        let (status, page) = outsider.get(&list(north, "")).await;
        assert_eq!(
            status, 200,
            "the list falls back to an organization of mine"
        );
        assert!(!page.source.contains("Smith") && !page.source.contains("North"));
        let home = list(south, "");
        for org in [north, south] {
            let org = org.to_string();
            let fields = [("organization_id", org.as_str()), ("name_family", "X")];
            let fields = [&fields[..], &[("name_given", "Y")]].concat();
            for action in ["update", "archive", "remove"] {
                let action = format!("/patients/{jo}/{action}");
                let res = outsider.submit(&home, &action, &fields).await;
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
            let (email, family) = (format!("p{i}@x.org"), format!("Fam{i:02}"));
            web.patient(north, &email, &family, "Ann", "").await;
        }
        let jo = web.jo(north, &TWO_IDS).await;
        let admin = ui(&app, app.admin_user_id()).await;
        admin.patient(south, "s@x.org", "South", "Sy", "").await;
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
            match modal {
                true => assert_dialog(&page),
                false => assert!(!page.exists("[role=dialog]"), "{path}"),
            }
        }
        let (_, page) = web.get(&pages[0].0).await;
        assert!(page.exists("#f-page"), "the page jump was checked");
        let org = north.to_string();
        let form = [("organization_id", org.as_str()), ("email", "new@x.org")];
        let (status, page) = web.post(&pages[6].0, "/patients", &form).await;
        assert_eq!(status, 400);
        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new(), "re-opened");
        assert_dialog(&page);
    }
);

on_both_backends!(
    viewing_the_list_and_a_patient_is_written_to_the_audit_log,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "viewer")]);
        let admin = ui(&app, app.admin_user_id()).await;
        let jo = admin.jo(north, &[]).await;
        let web = ui(&app, uid).await;
        let events = |action: &'static str| {
            let mine = ae::action.eq(action).and(ae::actor_email.eq("ana@x.org"));
            let q = ae::table.filter(mine);
            let q = q.select((ae::organization_id, ae::object_id, ae::detail));
            let rows: Vec<(Option<i64>, Option<String>, Option<String>)> =
                q.load(&mut *app.conn()).unwrap();
            rows
        };
        assert!(events("patient.list").is_empty() && events("patient.read").is_empty());
        web.get(&list(north, "&q=smith")).await;
        app.wait_for_audit("patient.list", 1).await;
        let listed = events("patient.list");
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!((listed[0].0, &listed[0].1), (Some(north), &None));
        let detail: Value = serde_json::from_str(listed[0].2.as_deref().unwrap()).unwrap();
        assert_eq!(detail["q"], "smith", "the search is recorded");
        web.get(&show(jo, north)).await;
        let read = events("patient.read");
        assert_eq!(read.len(), 1, "{read:?}");
        assert_eq!(
            (read[0].0, &read[0].1),
            (Some(north), &Some(jo.to_string()))
        );
    }
);
