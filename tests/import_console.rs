//! Importing a patient list in the console as a practitioner does it: the upload page and its
//! template, files that cannot be read, the preview of every row's fate (with nothing written),
//! importing everything, the valid rows or nothing, the summary and the per-row outcome CSV,
//! importing again, studies and invitations, and who may see and do what.

mod common;

use common::html::Page;
use common::*;
use diesel::prelude::*;
use reqwest::multipart::{Form, Part};
use serde_json::json;

use cohort::db::schema::{
    imports as im, invitations as inv, patient_organizations as po, patients as p,
    study_patients as sp,
};
use cohort::study::{Status, ValidStudy};

// ---- helpers ---------------------------------------------------------------------------------

/// A signed-in practitioner's browser.
struct Ui<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
}

async fn ui(app: &TestApp, user_id: i64) -> Ui<'_> {
    let client = app.signed_in(user_id).await;
    Ui { app, client }
}

fn upload_page(org: i64) -> String {
    format!("/patients/import?organization_id={org}")
}

fn import_page(id: i64) -> String {
    format!("/patients/imports/{id}")
}

fn fold(text: scraper::element_ref::Text<'_>) -> String {
    let words = text.collect::<Vec<_>>().join(" ");
    words.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn sel(css: &str) -> scraper::Selector {
    scraper::Selector::parse(css).unwrap()
}

impl Ui<'_> {
    async fn get(&self, path: &str) -> (u16, Page) {
        self.app.get_html(&self.client, path).await
    }

    async fn get_raw(&self, path: &str) -> reqwest::Response {
        self.client.get(self.app.at(path)).send().await.unwrap()
    }

    /// The session's CSRF token, as found on `path` (the sign-out form has it on every page).
    async fn token(&self, path: &str) -> String {
        let (_, page) = self.get(path).await;
        page.attr("input[name=csrf_token]", "value")
            .unwrap_or_else(|| panic!("no CSRF token on {path}:\n{}", page.source))
    }

    /// Sends the upload form as multipart/form-data: `fields` as text, then `file` if any.
    async fn send_upload(
        &self,
        fields: &[(&str, &str)],
        file: Option<(&str, &[u8])>,
    ) -> reqwest::Response {
        let mut form = Form::new();
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        if let Some((name, bytes)) = file {
            let part = Part::bytes(bytes.to_vec()).file_name(name.to_string());
            form = form.part("file", part.mime_str("text/csv").unwrap());
        }
        let req = self.client.post(self.app.at("/patients/import"));
        req.multipart(form).send().await.unwrap()
    }

    /// Fills in the upload page of `org` as a browser would: its hidden fields, the file, and
    /// `extra` (study_id, invite).
    async fn upload(
        &self,
        org: i64,
        name: &str,
        bytes: &[u8],
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let (status, page) = self.get(&upload_page(org)).await;
        assert_eq!(status, 200, "the upload page:\n{}", page.source);
        let form = "form[action=\"/patients/import\"][enctype=\"multipart/form-data\"]";
        let hidden = |n: &str| page.attr(&format!("{form} input[name={n}]"), "value");
        let (token, org_id) = (
            hidden("csrf_token").unwrap(),
            hidden("organization_id").unwrap(),
        );
        let mut fields = vec![("csrf_token", token.as_str()), ("organization_id", &org_id)];
        fields.extend_from_slice(extra);
        self.send_upload(&fields, Some((name, bytes))).await
    }

    /// Uploads a readable file: the id of the upload and its preview page.
    async fn preview(&self, org: i64, csv: &str, extra: &[(&str, &str)]) -> (i64, Page) {
        let res = self
            .upload(org, "patients.csv", csv.as_bytes(), extra)
            .await;
        let (status, loc) = redirect(&res);
        if status != 303 {
            panic!("upload answered {status}:\n{}", res.text().await.unwrap());
        }
        let id = loc.strip_prefix("/patients/imports/");
        let id: i64 = id.and_then(|s| s.parse().ok()).expect(&loc);
        let (status, page) = self.get(&import_page(id)).await;
        assert_eq!(status, 200);
        (id, page)
    }

    /// Presses the button labelled `label` on the page at `path`: posts its form.
    async fn press(&self, path: &str, label: &str) -> reqwest::Response {
        let (_, page) = self.get(path).await;
        self.submit(form_with(&page, label)).await
    }

    async fn submit(&self, (action, fields): (String, Vec<(String, String)>)) -> reqwest::Response {
        let req = self.client.post(self.app.at(&action)).form(&fields);
        req.send().await.unwrap()
    }

    /// Posts `fields` to `action` with the session's token, like a tab left open would.
    async fn post(&self, action: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let token = self.token("/patients").await;
        let mut form = vec![("csrf_token", token.as_str())];
        form.extend_from_slice(fields);
        let req = self.client.post(self.app.at(action)).form(&form);
        req.send().await.unwrap()
    }

    /// Where a redirect leads.
    async fn follow(&self, res: reqwest::Response) -> (u16, Page) {
        self.app.follow(&self.client, res).await
    }

    /// A patient made through the API in `org`.
    async fn patient(&self, uid: i64, org: i64, email: &str, family: &str, given: &str) -> i64 {
        let body = json!({"organizationId": org, "telecomEmail": email, "nameFamily": family,
                          "nameGiven": given, "birthDate": "1970-01-01"});
        let res = script().post(self.app.at("/api/v1/patients"));
        let res = res.bearer_auth(self.app.token(uid)).json(&body).send();
        let out: serde_json::Value = res.await.unwrap().json().await.unwrap();
        out["id"].as_i64().unwrap_or_else(|| panic!("{out}"))
    }
}

/// The action and the fields of the form with the button labelled `label`, as a browser sends it.
fn form_with(page: &Page, label: &str) -> (String, Vec<(String, String)>) {
    let (forms, button, inputs) = (sel("form"), sel("button"), sel("input[name]"));
    let form = page.doc.select(&forms).find(|f| {
        let mut buttons = f.select(&button);
        buttons.any(|b| fold(b.text()) == label)
    });
    let form = form.unwrap_or_else(|| panic!("no {label:?} in {:?}", buttons(page)));
    let named = form.select(&inputs).map(|i| i.value());
    let named = named.map(|v| (v.attr("name").unwrap(), v.attr("value").unwrap_or("")));
    let fields = named.map(|(n, v)| (n.to_string(), v.to_string())).collect();
    (form.value().attr("action").unwrap().to_string(), fields)
}

/// The status and the Location of a response.
fn redirect(res: &reqwest::Response) -> (u16, String) {
    let loc = res.headers().get("location").map(|l| l.to_str().unwrap());
    (res.status().as_u16(), loc.unwrap_or_default().to_string())
}

/// The labels of the buttons of the page's import forms.
fn buttons(page: &Page) -> Vec<String> {
    page.texts("form[action^=\"/patients/imports/\"] button")
}

/// The (label, number) pairs of the page's counts.
fn stats(page: &Page) -> Vec<(String, String)> {
    let (dt, dd) = (page.texts("dl.stats dt"), page.texts("dl.stats dd"));
    dt.into_iter().zip(dd).collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// What the preview says each kind of row will do.
fn before(
    new: u32,
    added: u32,
    updated: u32,
    unchanged: u32,
    problems: u32,
) -> Vec<(String, String)> {
    let n = [new, added, updated, unchanged, problems].map(|n| n.to_string());
    pairs(&[
        ("New patients", &n[0]),
        ("Added from another organization", &n[1]),
        ("Already here, updated", &n[2]),
        ("Already here, unchanged", &n[3]),
        ("Rows with problems", &n[4]),
    ])
}

/// What the summary says was done (without study or invitations).
fn after(org: &str, counts: [u32; 5]) -> Vec<(String, String)> {
    let n = counts.map(|n| n.to_string());
    let added = format!("Added to {org}");
    pairs(&[
        ("Created", &n[0]),
        (&added, &n[1]),
        ("Updated", &n[2]),
        ("Unchanged", &n[3]),
        ("Rejected", &n[4]),
    ])
}

/// The rows of the problems table: line, e-mail, column, problem.
fn problems(page: &Page) -> Vec<Vec<String>> {
    let cells = page.texts("section[aria-labelledby=pr-title] table tbody td");
    cells.chunks(4).map(<[String]>::to_vec).collect()
}

fn row(line: &str, email: &str, column: &str, message: &str) -> Vec<String> {
    [line, email, column, message].map(str::to_string).to_vec()
}

fn patient_count(app: &TestApp) -> i64 {
    p::table.count().get_result(&mut *app.conn()).unwrap()
}

fn link_count(app: &TestApp) -> i64 {
    po::table.count().get_result(&mut *app.conn()).unwrap()
}

/// The statuses of every upload, oldest first.
fn uploads(app: &TestApp) -> Vec<String> {
    let q = im::table.select(im::status).order(im::id.asc());
    q.load(&mut *app.conn()).unwrap()
}

/// (family, given, birth date) of the patient with `email`.
fn stored(app: &TestApp, email: &str) -> Option<(String, String, Option<String>)> {
    let q = p::table.filter(p::telecom_email.eq(email));
    let q = q.select((p::name_family, p::name_given, p::birth_date));
    let found: Option<(String, String, Option<chrono::NaiveDate>)> =
        q.first(&mut *app.conn()).optional().unwrap();
    found.map(|(f, g, b)| (f, g, b.map(|d| d.to_string())))
}

fn linked(app: &TestApp, email: &str, org: i64) -> bool {
    let id = p::table.filter(p::telecom_email.eq(email)).select(p::id);
    let q = po::table.filter(po::organization_id.eq(org).and(po::patient_id.eq_any(id)));
    q.count().get_result::<i64>(&mut *app.conn()).unwrap() == 1
}

fn study(app: &TestApp, org: i64, name: &str, status: Status) -> i64 {
    let s = ValidStudy {
        name: name.into(),
        description: "For the import tests.".into(),
        icon_url: None,
        status,
    };
    cohort::study::repo::insert(&mut app.conn(), org, &s).unwrap()
}

/// Makes practitioner `pid` a `role` of `org`.
fn join(app: &TestApp, pid: i64, org: i64, role: &str) {
    use cohort::db::schema::practitioner_organizations as pro;
    let who = (pro::practitioner_id.eq(pid), pro::organization_id.eq(org));
    let what = (pro::role.eq(role), pro::created_at.eq(cohort::util::now()));
    let q = diesel::insert_into(pro::table).values((who, what));
    q.execute(&mut *app.conn()).unwrap();
}

/// Ana, a member of North, signed in: (her browser, her user id, North).
async fn ana_in_north(app: &TestApp) -> (Ui<'_>, i64, i64) {
    let (uid, ana) = app.practitioner("ana@x.org", false);
    let north = app.org("North", 0, &[(ana, "member")]);
    (ui(app, uid).await, uid, north)
}

const HEADER: &str = "email,family_name,given_name,birth_date,phone,identifier,identifier_system";

const CLEAN: &str = "email,family_name,given_name,birth_date\n\
                     amy@x.org,Adams,Amy,1980-04-23\n\
                     ben@x.org,Brown,Ben,\n\
                     cat@x.org,Chen,Cat,1991-12-31\n";

/// A file with two rows that have problems, after a note spanning two lines: alias headers,
/// an unknown column, one row per kind of outcome.
const MIXED: &str = "E-Mail,Surname,First Name,DOB,Notes\n\
                     new@x.org,Neu,Nia,1990-05-06,\n\
                     una@x.org,Unger,Una,1970-01-01,\n\
                     ugo@x.org,Urban,Ugo,,\"moved,\nnew address\"\n\
                     sam@x.org,Soto,Sam,,\n\
                     bad-email,Bad,Bea,,\n\
                     Dot@X.org,Dot,Dee,1980-02-30,\n";

const BAD_EMAIL: &str = "Enter an e-mail address such as name@example.org.";
const BAD_DATE: &str = "Use a real date written YYYY-MM-DD, such as 1980-04-23.";

/// North with Una (as in MIXED) and Ugo (named Old), South with Sam; Ana a member of North.
async fn mixed_world(app: &TestApp) -> (Ui<'_>, i64) {
    let (web, uid, north) = ana_in_north(app).await;
    let south = app.org("South", 0, &[]);
    web.patient(uid, north, "una@x.org", "Unger", "Una").await;
    web.patient(uid, north, "ugo@x.org", "Old", "Ugo").await;
    let admin = app.admin_user_id();
    web.patient(admin, south, "sam@x.org", "Soto", "Sam").await;
    (web, north)
}

// ---- the upload page -------------------------------------------------------------------------

on_both_backends!(
    members_find_the_import_on_the_patients_page_and_a_template_to_start_from,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let (vuid, vic) = app.practitioner("vic@x.org", false);
        let east = app.org("East", 0, &[(vic, "viewer")]);
        study(&app, north, "Sleep", Status::Active);
        study(&app, north, "Walk", Status::Closed);
        let link = format!("a[href=\"{}\"]", upload_page(north));
        let (_, list) = web.get(&format!("/patients?organization_id={north}")).await;
        assert_eq!(list.text(&link), "Import from CSV");
        let viewer = ui(&app, vuid).await;
        let (status, list) = viewer
            .get(&format!("/patients?organization_id={east}"))
            .await;
        assert_eq!(status, 200);
        assert!(
            !list.source.contains("Import from CSV"),
            "a viewer has no import"
        );

        let (status, page) = web.get(&upload_page(north)).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "Import patients from CSV");
        assert!(page.text(".lede").starts_with("Into North."));
        let studies = page.texts("#f-study_id option");
        assert_eq!(studies, ["No study", "Sleep"], "active studies only");
        assert!(page.exists("input#f-invite[type=checkbox][name=invite]"));
        assert!(page
            .text("#f-file-hint")
            .contains("At most 200000 rows and 64 MB."));
        assert_eq!(page.unlabelled_inputs(), Vec::<String>::new());
        let href = page.attr("a[download]", "href").unwrap();
        assert_eq!(href, "/patients/import/template.csv");

        let res = web.get_raw(&href).await;
        assert_eq!(res.status(), 200);
        let header = |n: &str| res.headers()[n].to_str().unwrap().to_string();
        assert!(
            header("content-type").starts_with("text/csv"),
            "{}",
            header("content-type")
        );
        assert!(header("content-disposition").starts_with("attachment"));
        let template = res.text().await.unwrap();
        assert_eq!(template.lines().next(), Some(HEADER));

        let res = web
            .upload(north, "template.csv", template.as_bytes(), &[])
            .await;
        let (_, preview) = web.follow(res).await;
        assert_eq!(
            stats(&preview),
            before(1, 0, 0, 0, 0),
            "the template reads back"
        );
    }
);

on_both_backends!(
    a_viewer_is_refused_the_import_and_an_outsider_finds_no_trace_of_the_organization,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let (vuid, vic) = app.practitioner("vic@x.org", false);
        let (nuid, _) = app.practitioner("nobody@x.org", false);
        let (ouid, otto) = app.practitioner("otto@x.org", false);
        join(&app, vic, north, "viewer");
        let south = app.org("South", 0, &[(otto, "member")]);

        let viewer = ui(&app, vuid).await;
        let (status, page) = viewer.get(&upload_page(north)).await;
        assert_eq!(status, 403);
        assert!(!page.exists("form[action=\"/patients/import\"]"));
        let token = viewer.token("/patients").await;
        let org = north.to_string();
        let fields = [("csrf_token", token.as_str()), ("organization_id", &org)];
        let res = viewer
            .send_upload(&fields, Some(("p.csv", CLEAN.as_bytes())))
            .await;
        assert_eq!(res.status(), 403, "a viewer cannot upload");

        let nobody = ui(&app, nuid).await;
        let (status, page) = nobody.get(&upload_page(north)).await;
        assert_eq!(status, 404, "with no organization of their own");
        assert!(!page.source.contains("North"));

        let outsider = ui(&app, ouid).await;
        let (_, page) = outsider.get(&upload_page(north)).await;
        let given = page.attr("input[name=organization_id]", "value");
        assert_ne!(given, Some(north.to_string()), "never a form into North");
        assert!(!page.source.contains("North"));
        let token = outsider.token("/patients").await;
        let fields = [("csrf_token", token.as_str()), ("organization_id", &org)];
        let res = outsider
            .send_upload(&fields, Some(("p.csv", CLEAN.as_bytes())))
            .await;
        assert_eq!(res.status(), 404, "an outsider cannot upload into North");
        let sleep = study(&app, south, "Sleep", Status::Active).to_string();
        let own = outsider.upload(south, "p.csv", CLEAN.as_bytes(), &[]).await;
        assert_eq!(own.status(), 303, "but into South");
        let res = web
            .upload(north, "p.csv", CLEAN.as_bytes(), &[("study_id", &sleep)])
            .await;
        assert_eq!(res.status(), 404, "a study of another organization");
        assert_eq!(uploads(&app), ["previewed"], "only South's upload is kept");
        assert_eq!(patient_count(&app), 0);
    }
);

on_both_backends!(
    an_upload_without_the_pages_csrf_token_is_refused_and_nothing_is_kept,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let org = north.to_string();
        let file = Some(("p.csv", CLEAN.as_bytes()));
        let cases: [&[(&str, &str)]; 2] = [
            &[("organization_id", &org)],
            &[("csrf_token", "forged-token"), ("organization_id", &org)],
        ];
        for fields in cases {
            let res = web.send_upload(fields, file).await;
            assert_eq!(res.status(), 403, "{fields:?}");
            let page = Page::new(&res.text().await.unwrap());
            let said =
                "The form expired or was sent from another page. Reload the page and try again.";
            assert!(page.text("main").contains(said), "{}", page.source);
        }
        assert_eq!(uploads(&app), Vec::<String>::new());
    }
);

on_both_backends!(
    files_that_cannot_be_read_are_shown_again_on_the_upload_page_with_what_to_fix,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let mut latin1 = b"email,family_name,given_name\nal@x.org,Lee,Al\nbo@x.org,M".to_vec();
        latin1.extend_from_slice(b"\xFCller,Bo\n");
        let cases: [(&str, &[u8], &str); 4] = [
            (
                "scan.png",
                b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
                "This is not a text file. Export the list as CSV (comma, semicolon or tab separated) and upload that.",
            ),
            (
                "latin1.csv",
                &latin1,
                "Line 3 has bytes that are not UTF-8 text. Save the file as \"CSV UTF-8\" and upload it again.",
            ),
            (
                "headers.csv",
                b"Patient e-mail,Surname,Notes\nal@x.org,Lee,first visit\n",
                "The header row has no email, given_name column. Found: \"Patient e-mail\", \"Surname\", \"Notes\". Needed: email, family name and given name; birth date, phone and identifier are optional. Download the template to see the expected headers.",
            ),
            ("", b"", "Choose a CSV file to upload."),
        ];
        for (name, bytes, said) in cases {
            let res = web.upload(north, name, bytes, &[]).await;
            assert_eq!(res.status(), 400, "{name}");
            let page = Page::new(&res.text().await.unwrap());
            assert_eq!(page.text("h1"), "Import patients from CSV", "{name}");
            assert_eq!(page.text(".form-errors"), said, "{name}");
            assert_eq!(
                page.attr("#f-file", "aria-invalid").as_deref(),
                Some("true")
            );
            let again = page.attr("form input[name=organization_id]", "value");
            assert_eq!(
                again,
                Some(north.to_string()),
                "the form is there to try again"
            );
        }
        assert_eq!(uploads(&app), Vec::<String>::new(), "nothing is kept");
    }
);

on_both_backends!(
    the_configured_row_and_size_limits_are_stated_and_a_file_over_them_is_refused,
    |base: TestApp| async move {
        let limits = vec![
            ("COHORT_IMPORT_MAX_ROWS", "3".to_string()),
            ("COHORT_IMPORT_MAX_BYTES", (1024 * 1024).to_string()),
        ];
        let Some(app) = spawn_with(base.backend, limits).await else {
            return;
        };
        let (web, _, north) = ana_in_north(&app).await;
        let (_, page) = web.get(&upload_page(north)).await;
        assert!(page
            .text("#f-file-hint")
            .contains("At most 3 rows and 1 MB."));

        let four = format!("{CLEAN}dan@x.org,Diaz,Dan,\n");
        let res = web.upload(north, "four.csv", four.as_bytes(), &[]).await;
        assert_eq!(res.status(), 400);
        let page = Page::new(&res.text().await.unwrap());
        let said =
            "The file has more than 3 rows. Split it into files of at most 3 rows and import each.";
        assert_eq!(page.text(".form-errors"), said);

        let mut big = String::from("email,family_name,given_name,notes\n");
        big.push_str(&format!("al@x.org,Lee,Al,{}\n", "x".repeat(1024 * 1024)));
        let res = web.upload(north, "big.csv", big.as_bytes(), &[]).await;
        assert_eq!(res.status(), 400);
        let page = Page::new(&res.text().await.unwrap());
        let said = "The file is larger than 1 MB. Split it into smaller files and import each.";
        assert_eq!(page.text(".form-errors"), said);
        assert_eq!(uploads(&app), Vec::<String>::new());

        let (_, preview) = web.preview(north, CLEAN, &[]).await;
        assert_eq!(
            stats(&preview),
            before(3, 0, 0, 0, 0),
            "three rows are fine"
        );
    }
);

// ---- the preview -----------------------------------------------------------------------------

on_both_backends!(
    the_preview_shows_every_rows_fate_and_each_problem_under_its_files_header_and_writes_nothing,
    |app: TestApp| async move {
        let (web, north) = mixed_world(&app).await;
        let (patients, links) = (patient_count(&app), link_count(&app));
        let (id, page) = web.preview(north, MIXED, &[]).await;
        assert_eq!(page.text("h1"), "patients.csv");
        assert!(
            page.text(".lede").contains("into North."),
            "{}",
            page.text(".lede")
        );
        assert_eq!(stats(&page), before(1, 1, 1, 1, 2));
        assert_eq!(
            problems(&page),
            [
                row("7", "bad-email", "E-Mail", BAD_EMAIL),
                row("8", "dot@x.org", "DOB", BAD_DATE),
            ],
            "lines as in the file, counting the note's line break"
        );
        assert_eq!(
            buttons(&page),
            [
                "Import the 4 valid rows",
                "Import nothing until the file is fixed"
            ]
        );

        assert_eq!((patient_count(&app), link_count(&app)), (patients, links));
        assert_eq!(
            stored(&app, "ugo@x.org").unwrap().0,
            "Old",
            "not renamed yet"
        );
        assert!(!linked(&app, "sam@x.org", north), "not added yet");
        assert_eq!(stored(&app, "new@x.org"), None);
        assert_eq!(uploads(&app), ["previewed"]);
        let res = web
            .get_raw(&format!("{}/outcome.csv", import_page(id)))
            .await;
        assert_eq!(res.status(), 404, "no outcome before the import");
    }
);

on_both_backends!(
    importing_the_valid_rows_writes_them_and_the_outcome_report_gives_every_rows_fate,
    |app: TestApp| async move {
        let (web, north) = mixed_world(&app).await;
        let (id, _) = web.preview(north, MIXED, &[]).await;
        let res = web.press(&import_page(id), "Import the 4 valid rows").await;
        assert_eq!(redirect(&res), (303, import_page(id)));
        let (_, page) = web.follow(res).await;
        let said = "Imported. The summary and each row's outcome are below.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!(page.text("#rs-title"), "Imported");
        assert_eq!(stats(&page), after("North", [1, 1, 1, 1, 2]));
        assert!(buttons(&page).is_empty(), "nothing left to press");

        let nia = (
            "Neu".to_string(),
            "Nia".to_string(),
            Some("1990-05-06".to_string()),
        );
        assert_eq!(stored(&app, "new@x.org"), Some(nia));
        let ugo = stored(&app, "ugo@x.org").unwrap();
        assert_eq!(
            (ugo.0.as_str(), ugo.2.as_deref()),
            ("Urban", Some("1970-01-01"))
        );
        assert!(linked(&app, "sam@x.org", north) && linked(&app, "new@x.org", north));
        assert_eq!(stored(&app, "dot@x.org"), None);
        assert_eq!(stored(&app, "bad-email"), None);
        assert_eq!(patient_count(&app), 4);

        let href = page.attr("a[href$=\"/outcome.csv\"]", "href").unwrap();
        let res = web.get_raw(&href).await;
        assert_eq!(res.status(), 200);
        let disposition = res.headers()["content-disposition"].to_str().unwrap();
        assert!(disposition.starts_with("attachment"), "{disposition}");
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let csv = res.text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines,
            [
                "line,email,outcome,problems",
                "2,new@x.org,created,",
                "3,una@x.org,unchanged,",
                "4,ugo@x.org,updated,",
                "6,sam@x.org,added to this organization,",
                "7,bad-email,rejected,E-Mail: Enter an e-mail address such as name@example.org.",
                "8,dot@x.org,rejected,\"DOB: Use a real date written YYYY-MM-DD, such as 1980-04-23.\"",
            ]
        );
    }
);

on_both_backends!(
    a_clean_file_imports_with_one_button_and_committing_with_problems_unskipped_imports_nothing,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let (clean, page) = web.preview(north, CLEAN, &[]).await;
        assert!(
            !page.exists("section[aria-labelledby=pr-title]"),
            "no problems"
        );
        assert_eq!(buttons(&page), ["Import 3 rows", "Import nothing"]);

        let (mixed, _) = web.preview(north, MIXED, &[]).await;
        let res = web
            .post(&format!("{}/commit", import_page(mixed)), &[])
            .await;
        assert_eq!(redirect(&res), (303, import_page(mixed)));
        let (_, page) = web.follow(res).await;
        let said = "2 rows of the file have problems, so nothing was imported. Fix them and upload the file again, or import only the valid rows.";
        assert_eq!(page.text(".flash-error"), said);
        assert_eq!(stats(&page), before(4, 0, 0, 0, 2), "still waiting");
        assert_eq!(patient_count(&app), 0);

        let res = web.press(&import_page(clean), "Import 3 rows").await;
        let (_, page) = web.follow(res).await;
        assert_eq!(stats(&page), after("North", [3, 0, 0, 0, 0]));
        let amy = (
            "Adams".to_string(),
            "Amy".to_string(),
            Some("1980-04-23".to_string()),
        );
        assert_eq!(stored(&app, "amy@x.org"), Some(amy));
        assert_eq!(stored(&app, "ben@x.org").unwrap().2, None);
        assert_eq!(patient_count(&app), 3);
        assert_eq!(uploads(&app), ["imported", "previewed"]);
        let go = "a[href=\"/patients?organization_id=".to_string()
            + &north.to_string()
            + "\"].btn-primary";
        assert_eq!(page.text(&go), "Go to Patients");
        let (_, list) = web.get(&format!("/patients?organization_id={north}")).await;
        let rows = list.texts("table.data tbody tr");
        assert_eq!(rows.len(), 3, "{rows:?}");
        for name in ["Adams", "Brown", "Chen"] {
            assert!(rows.iter().any(|r| r.contains(name)), "{name} in {rows:?}");
        }
    }
);

on_both_backends!(
    problems_within_the_file_and_with_the_database_are_listed_one_per_line_under_the_files_headers,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let file = "E-mail,Surname,Forename,MRN,Date of birth\n\
                    eve@x.org,Silva,Eve,A-1,\n\
                    EVE@x.org,Silva,Eve,A-2,\n\
                    bo@x.org,Lee,Bo,A-1,\n\
                    Ana@X.org,Mem,Ber,A-4,\n\
                    ,,Cy,,1999-13-01\n";
        let (_, page) = web.preview(north, file, &[]).await;
        assert_eq!(stats(&page), before(1, 0, 0, 0, 4));
        let mut listed = problems(&page);
        listed.sort();
        assert_eq!(
            listed,
            [
                row(
                    "3",
                    "eve@x.org",
                    "E-mail",
                    "eve@x.org is also on line 2: a patient appears once per file."
                ),
                row("4", "bo@x.org", "MRN", "urn:mrn A-1 is also on line 2."),
                row(
                    "5",
                    "ana@x.org",
                    "E-mail",
                    "ana@x.org belongs to a practitioner account."
                ),
                row("6", "", "Date of birth", BAD_DATE),
                row("6", "", "E-mail", "Enter the patient's e-mail address."),
                row("6", "", "Surname", "Enter the family name."),
            ]
        );
        assert_eq!(buttons(&page)[0], "Import the 1 valid row");
    }
);

on_both_backends!(
    the_page_lists_the_first_500_rows_with_problems_and_the_outcome_report_has_them_all,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let mut file = String::from("email,family_name,given_name\nok@x.org,Ok,Olu\n");
        for i in 0..502 {
            file.push_str(&format!("bad{i},Bad,Bea\n"));
        }
        let (id, page) = web.preview(north, &file, &[]).await;
        assert_eq!(stats(&page), before(1, 0, 0, 0, 502));
        let listed = problems(&page);
        assert_eq!(listed.len(), 500);
        assert_eq!(listed[0], row("3", "bad0", "email", BAD_EMAIL));
        assert_eq!(listed[499][0], "502");
        let more = page.text("section[aria-labelledby=pr-title] p");
        assert!(more.starts_with("And 2 more rows with problems;"), "{more}");

        let res = web.press(&import_page(id), "Import the 1 valid row").await;
        let (_, page) = web.follow(res).await;
        assert_eq!(stats(&page), after("North", [1, 0, 0, 0, 502]));
        let csv = web
            .get_raw(&format!("{}/outcome.csv", import_page(id)))
            .await;
        let csv = csv.text().await.unwrap();
        let rejected = csv.lines().filter(|l| l.contains(",rejected,")).count();
        assert_eq!((csv.lines().count(), rejected), (504, 502));
        assert!(csv
            .lines()
            .any(|l| l.starts_with("504,bad501,rejected,email: ")));
    }
);

on_both_backends!(
    a_spreadsheet_export_with_a_bom_semicolons_and_crlf_imports_names_exactly_as_written,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let file = "\u{feff}E-Mail;Last Name;First Name;Date of birth;MRN\r\n\
                    zoe@x.org;Åberg-Łukasik;Zoë;1984-07-09;MRN-1001\r\n\
                    \r\n\
                    NGUYEN@X.org;Nguyễn;Thị Minh Khai;1990-12-31;MRN-1002\r\n\
                    ;;;;\r\n\
                    sean@x.org;Ó Briain;Seán;31/12/1990;\r\n";
        let (id, page) = web.preview(north, file, &[]).await;
        assert_eq!(stats(&page), before(2, 0, 0, 0, 1));
        let listed = problems(&page);
        assert_eq!(listed, [row("6", "sean@x.org", "Date of birth", BAD_DATE)]);
        let res = web.press(&import_page(id), "Import the 2 valid rows").await;
        let (_, page) = web.follow(res).await;
        assert_eq!(stats(&page), after("North", [2, 0, 0, 0, 1]));
        let zoe = (
            "Åberg-Łukasik".to_string(),
            "Zoë".to_string(),
            Some("1984-07-09".to_string()),
        );
        assert_eq!(stored(&app, "zoe@x.org"), Some(zoe));
        let (family, given, _) =
            stored(&app, "nguyen@x.org").expect("stored with a lower-case e-mail");
        assert_eq!(
            (family.as_str(), given.as_str()),
            ("Nguyễn", "Thị Minh Khai")
        );
        assert_eq!(stored(&app, "sean@x.org"), None);
    }
);

// ---- nothing, twice, again -------------------------------------------------------------------

on_both_backends!(
    import_nothing_writes_nothing_and_returns_to_the_upload_page,
    |app: TestApp| async move {
        let (web, north) = mixed_world(&app).await;
        let (patients, links) = (patient_count(&app), link_count(&app));
        let (id, _) = web.preview(north, MIXED, &[]).await;
        let res = web
            .press(&import_page(id), "Import nothing until the file is fixed")
            .await;
        assert_eq!(redirect(&res), (303, upload_page(north)));
        let (status, page) = web.follow(res).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "Import patients from CSV");
        let said = "Nothing was imported. Fix the file and upload it again.";
        assert_eq!(page.text(".flash-success"), said);
        assert_eq!((patient_count(&app), link_count(&app)), (patients, links));
        assert_eq!(stored(&app, "ugo@x.org").unwrap().0, "Old");
        assert_eq!(uploads(&app), ["cancelled"]);

        let (_, page) = web.get(&import_page(id)).await;
        assert_eq!(page.text("#rs-title"), "Nothing was imported");
        assert!(page
            .text("section[aria-labelledby=rs-title]")
            .contains("This upload was set aside."));
        assert!(buttons(&page).is_empty());
        let res = web
            .post(
                &format!("{}/commit", import_page(id)),
                &[("skip_invalid", "on")],
            )
            .await;
        assert_eq!(
            redirect(&res),
            (303, import_page(id)),
            "a stale tab cannot import it"
        );
        let (_, page) = web.follow(res).await;
        let said =
            "This file was already imported or set aside; upload it again to import it again.";
        assert_eq!(page.text(".flash-error"), said);
        assert_eq!((patient_count(&app), link_count(&app)), (patients, links));
    }
);

on_both_backends!(
    committing_an_import_twice_is_refused_with_a_message_and_changes_nothing,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let (id, _) = web.preview(north, CLEAN, &[]).await;
        let res = web.press(&import_page(id), "Import 3 rows").await;
        assert_eq!(res.status(), 303);
        let outcome = format!("{}/outcome.csv", import_page(id));
        let first = web.get_raw(&outcome).await.text().await.unwrap();

        let res = web.post(&format!("{}/commit", import_page(id)), &[]).await;
        assert_eq!(
            redirect(&res),
            (303, import_page(id)),
            "not a 500 nor a bare 409"
        );
        let (_, page) = web.follow(res).await;
        let said =
            "This file was already imported or set aside; upload it again to import it again.";
        assert_eq!(page.text(".flash-error"), said);
        assert_eq!(
            stats(&page),
            after("North", [3, 0, 0, 0, 0]),
            "the first summary stays"
        );
        assert_eq!(patient_count(&app), 3);
        assert_eq!(web.get_raw(&outcome).await.text().await.unwrap(), first);
        let events = app.audit_actions();
        let imports = events.iter().filter(|a| *a == "patient.import").count();
        assert_eq!(imports, 1, "{events:?}");
    }
);

on_both_backends!(
    import_nothing_on_an_import_already_done_does_not_say_nothing_was_imported,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let (id, _) = web.preview(north, CLEAN, &[]).await;
        // Two tabs on the preview: one imports, the other then presses Import nothing.
        let (_, stale) = web.get(&import_page(id)).await;
        assert!(buttons(&stale).contains(&"Import nothing".to_string()));
        web.press(&import_page(id), "Import 3 rows").await;
        let res = web.post(&format!("{}/cancel", import_page(id)), &[]).await;
        let (_, page) = web.follow(res).await;
        let success = page.texts(".flash-success");
        assert!(
            !success
                .iter()
                .any(|f| f.starts_with("Nothing was imported")),
            "told {success:?} though 3 patients were imported"
        );
        assert!(
            page.exists(".flash-error"),
            "the refusal is said: {}",
            page.text("main")
        );
        assert_eq!(uploads(&app), ["imported"]);
        assert_eq!(patient_count(&app), 3);
    }
);

on_both_backends!(
    uploading_the_same_file_again_finds_everyone_unchanged_and_adds_no_rows,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let (id, _) = web.preview(north, CLEAN, &[]).await;
        web.press(&import_page(id), "Import 3 rows").await;
        let (patients, links) = (patient_count(&app), link_count(&app));

        let (again, page) = web.preview(north, CLEAN, &[]).await;
        assert_ne!(again, id);
        assert_eq!(stats(&page), before(0, 0, 0, 3, 0));
        let res = web.press(&import_page(again), "Import 3 rows").await;
        let (_, page) = web.follow(res).await;
        assert_eq!(stats(&page), after("North", [0, 0, 0, 3, 0]));
        assert_eq!((patient_count(&app), link_count(&app)), (patients, links));
        let csv = web
            .get_raw(&format!("{}/outcome.csv", import_page(again)))
            .await;
        let csv = csv.text().await.unwrap();
        let outcomes: Vec<&str> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(2).unwrap())
            .collect();
        assert_eq!(outcomes, ["unchanged"; 3]);
    }
);

on_both_backends!(
    two_tabs_importing_the_same_upload_at_once_import_it_once,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let (id, _) = web.preview(north, CLEAN, &[]).await;
        let page = import_page(id);
        let (_, first) = web.get(&page).await;
        let (_, second) = web.get(&page).await;
        let (a, b) = futures_util::future::join(
            web.submit(form_with(&first, "Import 3 rows")),
            web.submit(form_with(&second, "Import 3 rows")),
        )
        .await;
        assert_eq!(
            (a.status().as_u16(), b.status().as_u16()),
            (303, 303),
            "neither fails with an error page"
        );
        assert_eq!(patient_count(&app), 3);
        assert_eq!(link_count(&app), 3);
        assert_eq!(uploads(&app), ["imported"]);
        let events = app.audit_actions();
        let imports = events.iter().filter(|a| *a == "patient.import").count();
        assert_eq!(imports, 1, "{events:?}");
        let (_, page) = web.get(&page).await;
        assert_eq!(stats(&page), after("North", [3, 0, 0, 0, 0]));
    }
);

// ---- studies and invitations -----------------------------------------------------------------

on_both_backends!(
    a_study_chosen_at_upload_enrols_everyone_imported_once,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let sleep = study(&app, north, "Sleep", Status::Active);
        let enrolled = || {
            let q = sp::table.filter(sp::study_id.eq(sleep)).count();
            q.get_result::<i64>(&mut *app.conn()).unwrap()
        };
        let sid = sleep.to_string();
        let (id, page) = web.preview(north, CLEAN, &[("study_id", &sid)]).await;
        assert!(
            page.text(".lede").contains("; enrols in Sleep."),
            "{}",
            page.text(".lede")
        );
        assert_eq!(enrolled(), 0, "not before the import");
        let res = web.press(&import_page(id), "Import 3 rows").await;
        let (_, page) = web.follow(res).await;
        let mut want = after("North", [3, 0, 0, 0, 0]);
        want.extend(pairs(&[("Newly enrolled", "3")]));
        assert_eq!(stats(&page), want);
        assert_eq!(enrolled(), 3);

        let more = format!("{CLEAN}dan@x.org,Diaz,Dan,\n");
        let (id, _) = web.preview(north, &more, &[("study_id", &sid)]).await;
        let res = web.press(&import_page(id), "Import 4 rows").await;
        let (_, page) = web.follow(res).await;
        let mut want = after("North", [1, 0, 0, 3, 0]);
        want.extend(pairs(&[("Newly enrolled", "1")]));
        assert_eq!(stats(&page), want, "the others were enrolled already");
        assert_eq!(enrolled(), 4);
    }
);

on_both_backends!(
    with_invitations_each_imported_patient_is_emailed_one_and_the_page_counts_them,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let (id, page) = web.preview(north, CLEAN, &[("invite", "on")]).await;
        assert!(
            page.text(".lede").ends_with("; sends invitations."),
            "{}",
            page.text(".lede")
        );
        let res = web.press(&import_page(id), "Import 3 rows").await;
        let (_, page) = web.follow(res).await;
        let mut want = after("North", [3, 0, 0, 0, 0]);
        want.extend(pairs(&[("Invitations sent", "3 of 3")]));
        assert_eq!(stats(&page), want);
        assert!(!page.exists(".form-errors"), "all delivered");

        let invitations: i64 = inv::table.count().get_result(&mut *app.conn()).unwrap();
        assert_eq!(invitations, 3);
        let outbox = std::fs::read_dir(app.data_dir.join("outbox")).unwrap();
        let mut to: Vec<String> = outbox
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .map(|m| {
                let line = m
                    .lines()
                    .find(|l| l.starts_with("To: "))
                    .unwrap_or_default();
                line.trim_start_matches("To: ").to_string()
            })
            .collect();
        to.sort();
        assert_eq!(to, ["amy@x.org", "ben@x.org", "cat@x.org"]);
    }
);

on_both_backends!(
    invitations_that_cannot_be_delivered_are_named_and_the_imported_patients_are_kept,
    |base: TestApp| async move {
        let closed = format!("smtp://127.0.0.1:{}", fixtures::free_port());
        let Some(app) = spawn_with(base.backend, vec![("SMTP_URL", closed)]).await else {
            return;
        };
        let (web, _, north) = ana_in_north(&app).await;
        let two = "email,family_name,given_name\namy@x.org,Adams,Amy\nben@x.org,Brown,Ben\n";
        let (id, _) = web.preview(north, two, &[("invite", "on")]).await;
        let res = web.press(&import_page(id), "Import 2 rows").await;
        let (_, page) = web.follow(res).await;
        assert_eq!(
            page.text(".flash-success"),
            "Imported. The summary and each row's outcome are below."
        );
        let mut want = after("North", [2, 0, 0, 0, 0]);
        want.extend(pairs(&[("Invitations sent", "0 of 2")]));
        assert_eq!(stats(&page), want);
        let said = page.text(".form-errors");
        assert!(said.starts_with("Not delivered: "), "{said}");
        for email in ["amy@x.org", "ben@x.org"] {
            let why = format!("{email} (the mail server refused it: ");
            assert!(said.contains(&why), "{said}");
        }
        assert!(said.ends_with("Their links are saved; send new ones from each patient's page."));
        assert_eq!(patient_count(&app), 2);
        let invitations: i64 = inv::table.count().get_result(&mut *app.conn()).unwrap();
        assert_eq!(invitations, 2);
    }
);

on_both_backends!(
    a_study_closed_after_the_upload_stops_the_import_with_a_message_and_nothing_is_written,
    |app: TestApp| async move {
        use cohort::db::schema::studies as s;
        let (web, _, north) = ana_in_north(&app).await;
        let sleep = study(&app, north, "Sleep", Status::Active);
        let sid = sleep.to_string();
        let (id, _) = web
            .preview(north, CLEAN, &[("study_id", &sid), ("invite", "on")])
            .await;
        let q = diesel::update(s::table.find(sleep)).set(s::status.eq("closed"));
        q.execute(&mut *app.conn()).unwrap();

        let res = web.press(&import_page(id), "Import 3 rows").await;
        assert_eq!(redirect(&res), (303, import_page(id)));
        let (_, page) = web.follow(res).await;
        let said =
            "Sleep is closed, so it takes no new enrolments. Set its status to active first.";
        assert_eq!(page.text(".flash-error"), said);
        assert_eq!(stats(&page), before(3, 0, 0, 0, 0), "still waiting");
        assert_eq!(patient_count(&app), 0, "no patient without their enrolment");
        let invitations: i64 = inv::table.count().get_result(&mut *app.conn()).unwrap();
        assert_eq!(invitations, 0);
        assert_eq!(uploads(&app), ["previewed"]);
    }
);

// ---- who may see and do what ------------------------------------------------------------------

on_both_backends!(
    a_viewer_sees_an_import_and_its_outcome_but_cannot_import_or_set_it_aside,
    |app: TestApp| async move {
        let (web, north) = mixed_world(&app).await;
        let (vuid, vic) = app.practitioner("vic@x.org", false);
        join(&app, vic, north, "viewer");
        let (id, _) = web.preview(north, MIXED, &[]).await;
        let patients = patient_count(&app);

        let viewer = ui(&app, vuid).await;
        let (status, page) = viewer.get(&import_page(id)).await;
        assert_eq!(status, 200);
        assert_eq!(stats(&page), before(1, 1, 1, 1, 2));
        assert_eq!(problems(&page).len(), 2);
        assert!(buttons(&page).is_empty(), "{:?}", buttons(&page));
        for (action, fields) in [("commit", &[("skip_invalid", "on")][..]), ("cancel", &[])] {
            let res = viewer
                .post(&format!("{}/{action}", import_page(id)), fields)
                .await;
            assert_eq!(res.status(), 403, "{action}");
        }
        assert_eq!(uploads(&app), ["previewed"]);
        assert_eq!(patient_count(&app), patients);

        web.press(&import_page(id), "Import the 4 valid rows").await;
        let (status, page) = viewer.get(&import_page(id)).await;
        assert_eq!(status, 200);
        assert_eq!(stats(&page), after("North", [1, 1, 1, 1, 2]));
        let res = viewer
            .get_raw(&format!("{}/outcome.csv", import_page(id)))
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap().lines().count(), 7);
    }
);

on_both_backends!(
    an_outsider_finds_no_trace_of_another_organizations_import,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let (ouid, otto) = app.practitioner("otto@x.org", false);
        app.org("South", 0, &[(otto, "manager")]);
        let (id, _) = web.preview(north, CLEAN, &[]).await;
        let outsider = ui(&app, ouid).await;
        let (status, page) = outsider.get(&import_page(id)).await;
        assert_eq!(status, 404);
        assert!(!page.source.contains("patients.csv") && !page.source.contains("North"));
        for action in ["commit", "cancel"] {
            let path = format!("{}/{action}", import_page(id));
            let res = outsider.post(&path, &[("skip_invalid", "on")]).await;
            assert_eq!(res.status(), 404, "{action}");
        }
        assert_eq!(uploads(&app), ["previewed"]);
        assert_eq!(patient_count(&app), 0);

        web.press(&import_page(id), "Import 3 rows").await;
        let res = outsider
            .get_raw(&format!("{}/outcome.csv", import_page(id)))
            .await;
        assert_eq!(res.status(), 404);
        assert!(!res.text().await.unwrap().contains("amy@x.org"));
        let res = outsider
            .get_raw(&format!("{}/outcome.csv", import_page(id + 1)))
            .await;
        assert_eq!(res.status(), 404, "nor one that does not exist");
    }
);

on_both_backends!(
    a_large_file_is_imported_in_the_background_while_the_page_shows_progress_then_the_result,
    |app: TestApp| async move {
        let (web, _, north) = ana_in_north(&app).await;
        let mut csv = String::from("email,family_name,given_name\n");
        for i in 0..5_050 {
            csv.push_str(&format!("big{i}@x.org,Family{i},Given\n"));
        }
        let (id, page) = web.preview(north, &csv, &[]).await;
        assert_eq!(stats(&page), before(5_050, 0, 0, 0, 0));
        let res = web.press(&import_page(id), "Import 5050 rows").await;
        let (status, page) = web.follow(res).await;
        assert_eq!(status, 200);
        assert!(
            page.text(".flash-success")
                .starts_with("Importing in the background"),
            "{}",
            page.source
        );
        // The page follows the run (refreshing itself while it goes) until the result is in.
        let mut page = page;
        for _ in 0..300 {
            if page.exists("#rs-title") {
                break;
            }
            assert_eq!(page.text("#run-title"), "Importing…", "{}", page.source);
            assert!(page.exists("meta[http-equiv=refresh]"));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            page = web.get(&import_page(id)).await.1;
        }
        assert_eq!(page.text("#rs-title"), "Imported", "{}", page.source);
        assert!(!page.exists("meta[http-equiv=refresh]"));
        assert_eq!(stats(&page), after("North", [5_050, 0, 0, 0, 0]));
        assert_eq!(patient_count(&app), 5_050);
        // Pressing import again on a page left open is refused, not run twice.
        let res = web
            .post(&format!("/patients/imports/{id}/commit"), &[])
            .await;
        let (_, page) = web.follow(res).await;
        assert!(page.text(".flash-error").contains("already imported"));
        assert_eq!(patient_count(&app), 5_050);
    }
);
