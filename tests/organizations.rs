//! The Organizations tab and /api/v1/organizations: who sees which organization, what each role
//! may change, the messages people read, CSRF, accessibility, the JHE-shaped API and its audit.

mod common;

use common::html::Page;
use common::*;
use diesel::prelude::*;
use serde_json::{json, Value};

use cohort::db::schema::{
    audit_events as ae, organizations as o, patient_organizations as po, patients as p,
    practitioner_organizations as pm, studies as s, users as u,
};

// ---- helpers ---------------------------------------------------------------------------------

/// (name, type, part_of) of an organization as stored, or None once it is gone.
fn stored(app: &TestApp, id: i64) -> Option<(String, String, Option<i64>)> {
    let q = o::table.find(id).select((o::name, o::org_type, o::part_of));
    q.first(&mut *app.conn()).optional().unwrap()
}

fn named(app: &TestApp, name: &str) -> Option<i64> {
    let q = o::table.filter(o::name.eq(name)).select(o::id);
    q.first(&mut *app.conn()).optional().unwrap()
}

/// The role a practitioner holds in an organization itself, if any.
fn role_in(app: &TestApp, org: i64, practitioner: i64) -> Option<String> {
    let q = pm::table
        .filter(pm::organization_id.eq(org))
        .filter(pm::practitioner_id.eq(practitioner))
        .select(pm::role);
    q.first(&mut *app.conn()).optional().unwrap()
}

/// A patient login (a users row of type patient plus its patients row); returns the patient id.
fn patient_account(app: &TestApp, email: &str) -> i64 {
    let (mut c, t) = (app.conn(), cohort::util::now());
    let uid: i64 = diesel::insert_into(u::table)
        .values((
            u::email.eq(email),
            (u::first_name.eq("Pia"), u::last_name.eq("Patient")),
            (u::user_type.eq("patient"), u::is_superuser.eq(false)),
            (u::is_active.eq(true), u::created_at.eq(t)),
        ))
        .returning(u::id)
        .get_result(&mut *c)
        .unwrap();
    diesel::insert_into(p::table)
        .values((
            (p::user_id.eq(uid), p::telecom_email.eq(email)),
            (p::name_family.eq("Patient"), p::name_given.eq("Pia")),
            p::search_text.eq(format!("pia patient {email}")),
            (p::created_at.eq(t), p::updated_at.eq(t)),
        ))
        .returning(p::id)
        .get_result(&mut *c)
        .unwrap()
}

/// Gives an organization one patient and one study, as later features will.
fn add_patient_and_study(app: &TestApp, org: i64) {
    let patient = patient_account(app, "pat@x.org");
    let (mut c, t) = (app.conn(), cohort::util::now());
    let link = (po::patient_id.eq(patient), po::organization_id.eq(org));
    let q = diesel::insert_into(po::table).values((link, po::created_at.eq(t)));
    q.execute(&mut *c).unwrap();
    let study = (s::organization_id.eq(org), s::name.eq("Sleep"));
    let rest = (s::description.eq(""), s::status.eq("active"));
    let q = diesel::insert_into(s::table).values((study, rest, s::created_at.eq(t)));
    q.execute(&mut *c).unwrap();
}

/// A signed-in browser.
struct Ui<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
}

async fn ui(app: &TestApp, user_id: i64) -> Ui<'_> {
    Ui {
        app,
        client: app.signed_in(user_id).await,
    }
}

impl Ui<'_> {
    async fn get(&self, path: &str) -> (u16, Page) {
        self.app.get_html(&self.client, path).await
    }

    /// Submits a form found on `page` and returns where the user lands (after a redirect) or
    /// the page shown instead.
    async fn post(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> (u16, Page) {
        let res = self.app.post_form(&self.client, page, action, fields).await;
        if res.status() == 303 {
            return self.app.follow(&self.client, res).await;
        }
        let status = res.status().as_u16();
        (status, Page::new(&res.text().await.unwrap()))
    }
}

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
}

fn names(list: &Value) -> Vec<&str> {
    let list = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"));
    list.iter().map(|o| o["name"].as_str().unwrap()).collect()
}

fn detail(body: &Value) -> &str {
    body["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail in {body}"))
}

/// (organization name, role badge) for every row of the console tree.
fn tree_rows(page: &Page) -> Vec<(String, String)> {
    let sel = |css| scraper::Selector::parse(css).unwrap();
    let (node, link, badge) = (sel("ul.tree .tree-node"), sel("a"), sel(".badge"));
    let text = |e: scraper::ElementRef| e.text().collect::<String>().trim().to_string();
    let first = |n: scraper::ElementRef, s| n.select(s).next().map(text).unwrap_or_default();
    let rows = page.doc.select(&node);
    rows.map(|n| (first(n, &link), first(n, &badge))).collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

// ---- console: seeing the tree ----------------------------------------------------------------

on_both_backends!(
    the_tree_shows_my_organizations_with_my_role_and_hides_the_rest,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "viewer")]);
        let cardio = app.org("Cardiology", north, &[(ana, "manager")]);
        let south = app.org("South Clinic", 0, &[]);
        let ana = ui(&app, uid).await;

        let (status, page) = ana.get("/organizations").await;
        assert_eq!(status, 200);
        let expected = [pair("North", "Viewer"), pair("Cardiology", "Manager")];
        assert_eq!(tree_rows(&page), expected);
        let nested = page.text("ul.tree > li > ul > li > .tree-node > a");
        assert_eq!(nested, "Cardiology", "nested under its parent");
        assert!(!page.source.contains("South Clinic"));
        let add_sub = |id: i64| format!("a[href=\"/organizations?modal=create&parent={id}\"]");
        assert!(!page.exists(&add_sub(north)), "a viewer cannot add below");
        assert!(page.exists(&add_sub(cardio)));
        assert!(!page.exists(&add_sub(0)), "only superusers add at the top");

        // Another organization is as absent as one that never existed.
        let (status, hidden) = ana.get(&format!("/organizations/{south}")).await;
        assert_eq!(status, 404);
        assert!(!hidden.source.contains("South Clinic"));
        let (status, nothing) = ana.get("/organizations/999999").await;
        assert_eq!((status, hidden.text("h1")), (404, nothing.text("h1")));

        // A viewer gets no controls, not even through the modal's address.
        let (_, page) = ana.get(&format!("/organizations/{north}?modal=edit")).await;
        assert_eq!(page.text("h1"), "North");
        assert!(page.text("table.data").contains("ana@x.org"));
        let controls = ["a[href$=\"?modal=edit\"]", "a[href$=\"?modal=delete\"]"];
        let forms = [
            "form[action$=\"/members\"]",
            "form[action$=\"/role\"]",
            "[role=dialog]",
        ];
        for css in controls.iter().chain(&forms) {
            assert!(!page.exists(css), "a viewer sees {css}");
        }
        let (_, page) = ana.get(&format!("/organizations/{cardio}")).await;
        assert!(page.text(".lede").contains("Manager"));
        for css in controls.iter().chain(&forms[..2]) {
            assert!(page.exists(css), "a manager is missing {css}");
        }
    }
);

// ---- console: creating, editing, deleting ----------------------------------------------------

on_both_backends!(
    a_manager_creates_a_sub_organization_and_becomes_its_manager,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager")]);
        let client = app.signed_in(uid).await;
        let form = format!("/organizations?modal=create&parent={north}");
        let fields = [
            ("name", " Ward 7 "),
            ("type", "dept"),
            ("part_of", &north.to_string()),
        ];
        let res = app
            .post_form(&client, &form, "/organizations", &fields)
            .await;
        assert_eq!(res.status(), 303);
        let ward = named(&app, "Ward 7").expect("created, with the name trimmed");
        assert_eq!(
            res.headers()["location"],
            format!("/organizations/{ward}").as_str()
        );
        let (status, page) = app.follow(&client, res).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "Ward 7");
        assert_eq!(page.text(".flash-success"), "Created Ward 7.");
        assert!(page.text(".lede").contains("Hospital department"));
        assert!(page.text(".crumbs").contains("North"));
        assert_eq!(stored(&app, ward).unwrap().2, Some(north));
        assert_eq!(role_in(&app, ward, ana).as_deref(), Some("manager"));
    }
);

on_both_backends!(
    a_bad_name_shows_the_modal_again_with_the_input_kept_and_the_message_beside_it,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager")]).to_string();
        let ana = ui(&app, uid).await;
        let form = format!("/organizations?modal=create&parent={north}");
        let long = "x".repeat(201);
        for (name, message) in [("", "Enter a name."), (long.as_str(), "Use at most 200")] {
            let fields = [("name", name), ("type", "dept"), ("part_of", &north)];
            let (status, page) = ana.post(&form, "/organizations", &fields).await;
            assert_eq!(status, 400);
            assert!(
                page.exists(".modal[role=dialog]"),
                "the modal is open again"
            );
            assert!(page.text("#f-name-error").contains(message));
            let invalid = page.attr("#f-name", "aria-invalid");
            assert_eq!(invalid.as_deref(), Some("true"));
            assert_eq!(page.attr("#f-name", "value").as_deref(), Some(name));
            let kept = page.attr("#f-type option[selected]", "value");
            assert_eq!(kept.as_deref(), Some("dept"));
            let parent = page.attr("input[name=part_of]", "value");
            assert_eq!(parent, Some(north.clone()));
        }
        let count: i64 = o::table.count().get_result(&mut *app.conn()).unwrap();
        assert_eq!(count, 2, "only the root and North");
    }
);

on_both_backends!(
    a_member_who_tries_to_create_a_sub_organization_is_refused_and_told_why,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]).to_string();
        let fields = [("name", "Sneaky"), ("type", "team"), ("part_of", &north)];
        let (status, page) = ui(&app, uid)
            .await
            .post("/organizations", "/organizations", &fields)
            .await;
        assert!(status == 403 || status == 400, "refused, got {status}");
        let text = page.text("main");
        assert!(
            text.contains("needs the manager role"),
            "the member reads why: {text}"
        );
        assert_eq!(named(&app, "Sneaky"), None);
    }
);

on_both_backends!(
    only_a_superuser_creates_a_top_level_organization_and_others_are_told_so,
    |app: TestApp| async move {
        let (uid, _) = app.practitioner("ana@x.org", false);
        let fields = [("name", "Top"), ("type", "prov"), ("part_of", "0")];
        let (status, page) = ui(&app, uid)
            .await
            .post("/organizations", "/organizations", &fields)
            .await;
        assert!(status == 403 || status == 400, "refused, got {status}");
        let text = page.text("main");
        let why = "Only superusers can create top-level organizations";
        assert!(text.contains(why), "the practitioner reads why: {text}");
        assert_eq!(named(&app, "Top"), None);

        let admin = ui(&app, app.admin_user_id()).await;
        let (status, page) = admin
            .post(
                "/organizations?modal=create&parent=0",
                "/organizations",
                &fields,
            )
            .await;
        assert_eq!((status, page.text("h1")), (200, "Top".to_string()));
        assert_eq!(
            stored(&app, named(&app, "Top").unwrap()).unwrap().2,
            Some(0)
        );
    }
);

on_both_backends!(
    a_manager_renames_and_retypes_an_organization,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager")]);
        let ana = ui(&app, uid).await;
        let (edit, action) = (
            format!("/organizations/{north}?modal=edit"),
            format!("/organizations/{north}/update"),
        );
        let (status, page) = ana
            .post(&edit, &action, &[("name", "North Care"), ("type", "prov")])
            .await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "North Care");
        assert_eq!(page.text(".flash-success"), "Saved the organization.");
        assert!(page.text(".lede").contains("Healthcare provider"));
        let (name, kind, _) = stored(&app, north).unwrap();
        assert_eq!((name.as_str(), kind.as_str()), ("North Care", "prov"));

        let (status, page) = ana
            .post(&edit, &action, &[("name", "  "), ("type", "prov")])
            .await;
        assert_eq!(status, 400);
        assert!(page
            .text("[role=dialog] #f-name-error")
            .contains("Enter a name."));
        assert_eq!(stored(&app, north).unwrap().0, "North Care");
    }
);

on_both_backends!(
    delete_is_refused_while_sub_organizations_patients_or_studies_remain,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager")]);
        let ward = app.org("Ward 7", north, &[]);
        add_patient_and_study(&app, north);
        let ana = ui(&app, uid).await;

        let (_, page) = ana
            .get(&format!("/organizations/{north}?modal=delete"))
            .await;
        let said = page.text("[role=dialog]");
        assert!(
            said.contains("still has 1 sub-organization, 1 patient and 1 study"),
            "{said}"
        );
        assert!(
            !page.exists("[role=dialog] button.btn-danger"),
            "no button that cannot work"
        );

        let show = format!("/organizations/{north}");
        let (status, page) = ana.post(&show, &format!("{show}/delete"), &[]).await;
        assert_eq!(status, 400);
        let said = page.text("[role=dialog] .form-errors");
        assert!(
            said.contains("still has 1 sub-organization, 1 patient and 1 study"),
            "{said}"
        );
        assert!(stored(&app, north).is_some());

        let show = format!("/organizations/{ward}");
        let (status, page) = ana.post(&show, &format!("{show}/delete"), &[]).await;
        assert_eq!(status, 200);
        assert_eq!(page.text(".flash-success"), "Deleted the organization.");
        assert_eq!(tree_rows(&page), [pair("North", "Manager")]);
        assert!(stored(&app, ward).is_none());
    }
);

// ---- console: members ------------------------------------------------------------------------

on_both_backends!(
    managers_add_members_by_email_and_are_told_why_an_address_is_refused,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let (_, bob) = app.practitioner("bob@x.org", false);
        patient_account(&app, "carol@x.org");
        let north = app.org("North", 0, &[(ana, "manager")]);
        let ana = ui(&app, uid).await;
        let (show, action) = (
            format!("/organizations/{north}"),
            format!("/organizations/{north}/members"),
        );
        let (ana, show, action) = (&ana, &show, &action);
        let add = move |email: &'static str, role: &'static str| async move {
            ana.post(show, action, &[("email", email), ("role", role)])
                .await
        };

        let (status, page) = add("Bob@X.org", "viewer").await;
        assert_eq!(status, 200);
        assert_eq!(page.text(".flash-success"), "Added bob@x.org as viewer.");
        assert!(page.text("table.data").contains("bob@x.org"));
        assert_eq!(role_in(&app, north, bob).as_deref(), Some("viewer"));

        for (email, message) in [
            ("nobody@x.org", "No practitioner with this e-mail exists."),
            ("carol@x.org", "carol@x.org is a patient account."),
        ] {
            let (status, page) = add(email, "member").await;
            assert_eq!(status, 400);
            assert_eq!(page.text("#f-email-error"), message);
            assert_eq!(page.attr("#f-email", "value").as_deref(), Some(email));
        }
        let (status, page) = add("bob@x.org", "manager").await;
        assert_eq!(status, 400);
        let said = page.text("form[action$=\"/members\"] .form-errors");
        assert!(said.contains("bob@x.org is already a member of this organization"));
        assert_eq!(role_in(&app, north, bob).as_deref(), Some("viewer"));
        let q = pm::table.filter(pm::organization_id.eq(north)).count();
        assert_eq!(q.get_result::<i64>(&mut *app.conn()).unwrap(), 2);
    }
);

on_both_backends!(
    roles_change_and_members_leave_but_the_last_manager_stays,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let (_, bob) = app.practitioner("bob@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager"), (bob, "member")]);
        let ui = ui(&app, uid).await;
        let show = format!("/organizations/{north}");
        let to = |pid: i64, what: &str| format!("{show}/members/{pid}/{what}");

        let (status, page) = ui
            .post(&show, &to(bob, "role"), &[("role", "viewer")])
            .await;
        assert_eq!(status, 200);
        assert_eq!(page.text(".flash-success"), "Changed the role to viewer.");
        let shown = page.attr(&format!("#role-{bob} option[selected]"), "value");
        assert_eq!(shown.as_deref(), Some("viewer"));
        assert_eq!(role_in(&app, north, bob).as_deref(), Some("viewer"));

        let (_, page) = ui
            .post(&show, &to(ana, "role"), &[("role", "member")])
            .await;
        assert!(page.text(".flash-error").contains("only manager"));
        let (_, page) = ui.post(&show, &to(ana, "remove"), &[]).await;
        assert!(page.text(".flash-error").contains("only manager"));
        assert_eq!(role_in(&app, north, ana).as_deref(), Some("manager"));

        let confirm = format!("{show}?modal=remove&member={bob}");
        let (status, page) = ui.post(&confirm, &to(bob, "remove"), &[]).await;
        assert_eq!(status, 200);
        assert_eq!(page.text(".flash-success"), "Removed the member.");
        assert!(!page.text("table.data").contains("bob@x.org"));
        assert_eq!(role_in(&app, north, bob), None);
    }
);

// ---- console: CSRF and accessibility ---------------------------------------------------------

on_both_backends!(
    a_form_sent_without_the_right_csrf_token_is_refused_and_changes_nothing,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager")]);
        let client = app.signed_in(uid).await;
        let (n, update) = (north.to_string(), format!("/organizations/{north}/update"));
        let delete = format!("/organizations/{north}/delete");
        let (name, kind, part_of) = (("name", "Hacked"), ("type", "prov"), ("part_of", &*n));
        let attempts: [(&str, &[(&str, &str)]); 4] = [
            (&update, &[name, kind]),
            (&update, &[("csrf_token", "forged"), name, kind]),
            ("/organizations", &[name, kind, part_of]),
            (&delete, &[("csrf_token", "")]),
        ];
        for (action, fields) in attempts {
            let res = client.post(app.at(action)).form(fields).send();
            let res = res.await.unwrap();
            assert_eq!(res.status(), 403, "{action} {fields:?}");
            let text = Page::new(&res.text().await.unwrap()).text("main");
            assert!(text.contains("Reload the page"), "{text}");
        }
        assert_eq!(stored(&app, north).unwrap().0, "North");
        assert_eq!(named(&app, "Hacked"), None);
    }
);

on_both_backends!(
    every_input_on_the_organization_pages_has_a_label_and_modals_are_named_dialogs,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let (_, bob) = app.practitioner("bob@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager"), (bob, "member")]);
        let ui = ui(&app, uid).await;
        let show = format!("/organizations/{north}");
        let pages = [
            ("/organizations".to_string(), false),
            (format!("/organizations?modal=create&parent={north}"), true),
            (show.clone(), false),
            (format!("{show}?modal=edit"), true),
            (format!("{show}?modal=delete"), true),
            (format!("{show}?modal=remove&member={bob}"), true),
        ];
        for (path, modal) in pages {
            let (status, page) = ui.get(&path).await;
            assert_eq!(status, 200, "{path}");
            let missing = page.unlabelled_inputs();
            assert!(missing.is_empty(), "{path}: {missing:?}");
            assert_eq!(page.exists("[role=dialog]"), modal, "{path}");
            if modal {
                let title = page.attr("[role=dialog]", "aria-labelledby");
                let title = title.unwrap_or_else(|| panic!("{path}: no aria-labelledby"));
                assert!(!page.text(&format!("#{title}")).is_empty(), "{path}");
            }
        }
    }
);

// ---- API -------------------------------------------------------------------------------------

on_both_backends!(
    the_api_lists_visible_organizations_by_name_in_pages_with_absolute_links,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        app.org("Charlie", 0, &[(ana, "viewer")]);
        let bravo = app.org("Bravo", 0, &[(ana, "manager")]);
        app.org("Delta", bravo, &[]);
        app.org("Alpha", 0, &[(ana, "member")]);
        app.org("Aardvark Hidden", 0, &[]);
        let ana = api(&app, uid);

        let (status, body) = ana.get("/api/v1/organizations?pageSize=2&q=x").await;
        assert_eq!(status, 200);
        assert_eq!(body["count"], 4);
        assert_eq!(names(&body["results"]), ["Alpha", "Bravo"]);
        assert_eq!(body["results"][0]["currentUserRole"], "member");
        assert!(body["previous"].is_null());
        let next = body["next"].as_str().expect("a next link");
        let absolute = format!("{}/api/v1/organizations?", app.url);
        assert!(next.starts_with(&absolute), "{next}");
        for part in ["pageSize=2", "q=x", "page=2"] {
            assert!(next.contains(part), "{next} lacks {part}");
        }
        let (_, body) = ana.get(next).await;
        assert_eq!(names(&body["results"]), ["Charlie", "Delta"]);
        assert_eq!(
            body["results"][1]["currentUserRole"], "manager",
            "from Bravo"
        );
        assert!(body["next"].is_null());
        assert!(body["previous"].as_str().unwrap().starts_with(&app.url));

        let (status, body) = ana.get("/api/v1/organizations?page_size=3").await;
        assert_eq!((status, names(&body["results"]).len()), (200, 3));
        let past_end = ana.get("/api/v1/organizations?pageSize=2&page=3").await;
        assert_eq!(past_end, (404, json!({"detail": "Invalid page."})));
        for size in ["0", "5000"] {
            let url = format!("/api/v1/organizations?pageSize={size}");
            let (status, body) = ana.get(&url).await;
            assert_eq!(status, 400);
            assert!(body.get("pageSize").is_some(), "{body}");
        }
    }
);

on_both_backends!(
    the_api_shows_one_organization_in_the_jhe_shape_and_hides_others,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "member")]);
        let south = app.org("South", 0, &[]);
        let ana = api(&app, uid);
        let (status, body) = ana.get(&format!("/api/v1/organizations/{north}")).await;
        assert_eq!(status, 200);
        let expected = json!({"id": north, "name": "North", "type": "team", "partOf": 0,
            "currentUserRole": "member", "children": []});
        assert_eq!(body, expected);
        let hidden = ana.get(&format!("/api/v1/organizations/{south}")).await;
        let missing = ana.get("/api/v1/organizations/999999").await;
        assert_eq!(hidden.0, 404);
        assert_eq!(hidden, missing, "existence does not leak");
        detail(&hidden.1);
    }
);

on_both_backends!(
    the_api_creates_organizations_and_makes_the_creator_their_manager,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager")]);
        let (client, url) = (api(&app, uid), "/api/v1/organizations");
        for body in [
            json!({"name": "Ward 7", "type": "dept", "partOf": north}),
            json!({"name": "Ward 8", "type": "dept", "part_of": north}),
        ] {
            let (status, out) = client.send("POST", url, body.clone()).await;
            assert_eq!(status, 201, "{out}");
            assert_eq!(
                (&out["name"], out["partOf"].as_i64()),
                (&body["name"], Some(north))
            );
            assert_eq!(out["currentUserRole"], "manager");
            let id = out["id"].as_i64().unwrap();
            assert_eq!(stored(&app, id).unwrap().2, Some(north));
            assert_eq!(role_in(&app, id, ana).as_deref(), Some("manager"));
        }
        let top = json!({"name": "Top", "type": "prov", "partOf": 0});
        let (status, out) = client.send("POST", url, top.clone()).await;
        assert_eq!(status, 403);
        assert!(detail(&out).contains("superusers"));
        let odd = json!({"name": "Odd", "type": "castle", "partOf": north});
        let (status, out) = client.send("POST", url, odd).await;
        assert_eq!(status, 400);
        assert!(out["type"][0].as_str().unwrap().contains("dept"), "{out}");
        assert_eq!((named(&app, "Top"), named(&app, "Odd")), (None, None));

        let (status, out) = api(&app, app.admin_user_id()).send("POST", url, top).await;
        assert_eq!((status, &out["partOf"]), (201, &json!(0)));
    }
);

on_both_backends!(
    the_api_lets_managers_alone_change_and_delete_and_keeps_organizations_with_children,
    |app: TestApp| async move {
        let (ana_uid, ana) = app.practitioner("ana@x.org", false);
        let (bob_uid, bob) = app.practitioner("bob@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager"), (bob, "member")]);
        let ward = app.org("Ward 7", north, &[]);
        let (ana, bob) = (api(&app, ana_uid), api(&app, bob_uid));
        let path = format!("/api/v1/organizations/{north}");
        let ward_path = format!("/api/v1/organizations/{ward}");

        let (status, out) = bob.send("PATCH", &path, json!({"name": "Bob's"})).await;
        assert_eq!(status, 403);
        assert!(detail(&out).contains("manager"));
        assert_eq!(bob.send("DELETE", &ward_path, Value::Null).await.0, 403);
        assert_eq!(stored(&app, north).unwrap().0, "North");

        let (status, out) = ana.send("PATCH", &path, json!({"name": "Care"})).await;
        assert_eq!(status, 200);
        assert_eq!(
            (out["name"].as_str(), out["type"].as_str()),
            (Some("Care"), Some("team"))
        );
        assert_eq!(stored(&app, north).unwrap().0, "Care");

        let (status, out) = ana.send("DELETE", &path, Value::Null).await;
        assert_eq!(status, 409);
        assert!(detail(&out).contains("1 sub-organization"), "{out}");
        assert!(stored(&app, north).is_some());
        let deleted = ana.send("DELETE", &ward_path, Value::Null).await;
        assert_eq!(deleted, (204, Value::Null));
        assert!(stored(&app, ward).is_none());
        assert_eq!(ana.get(&ward_path).await.0, 404);
    }
);

on_both_backends!(
    the_api_nests_the_tree_and_manages_members_without_duplicates,
    |app: TestApp| async move {
        let (ana_uid, ana) = app.practitioner("ana@x.org", false);
        let (bob_uid, bob) = app.practitioner("bob@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager")]);
        let ward = app.org("Ward 7", north, &[]);
        let bed = app.org("Bed 3", ward, &[]);
        app.org("South", 0, &[]);
        let (ana, base) = (api(&app, ana_uid), format!("/api/v1/organizations/{north}"));

        let (status, tree) = ana.get(&format!("{base}/tree")).await;
        assert_eq!((status, &tree["id"]), (200, &json!(north)));
        assert_eq!(tree["children"].as_array().unwrap().len(), 1);
        assert_eq!(tree["children"][0]["id"], ward);
        assert_eq!(tree["children"][0]["children"][0]["id"], bed);
        assert_eq!(tree["children"][0]["children"][0]["children"], json!([]));

        let add = format!("{base}/user");
        let body = |key: &str, role: &str| json!({"jheUserId": bob_uid, key: role});
        let jhe_key = "organizationPartitionerRole";
        let (status, out) = ana.send("POST", &add, body(jhe_key, "viewer")).await;
        assert_eq!(status, 201, "{out}");
        assert_eq!(ana.send("POST", &add, body(jhe_key, "member")).await.0, 200);
        assert_eq!(role_in(&app, north, bob).as_deref(), Some("member"));
        let (status, out) = ana.send("POST", &add, body("role", "manager")).await;
        assert_eq!((status, &out["role"]), (200, &json!("manager")));

        let (status, users) = ana.get(&format!("{base}/users")).await;
        assert_eq!(status, 200);
        let users = users.as_array().unwrap();
        let bobs: Vec<&Value> = users.iter().filter(|m| m["jheUserId"] == bob_uid).collect();
        assert_eq!(bobs.len(), 1, "no duplicate membership: {users:?}");
        assert_eq!(bobs[0][jhe_key], "manager");
        assert_eq!(bobs[0]["email"], "bob@x.org");

        let (remove, bob_id) = (format!("{base}/remove_user"), json!({"jheUserId": bob_uid}));
        assert_eq!(ana.send("DELETE", &remove, bob_id).await.0, 204);
        assert_eq!(role_in(&app, north, bob), None);
        let (_, users) = ana.get(&format!("{base}/users")).await;
        let users = users.as_array().unwrap();
        assert!(!users.iter().any(|m| m["jheUserId"] == bob_uid));
    }
);

on_both_backends!(
    only_superusers_list_and_add_practitioners_through_the_api,
    |app: TestApp| async move {
        let (ana_uid, ana) = app.practitioner("ana@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager")]);
        let (admin, ana) = (api(&app, app.admin_user_id()), api(&app, ana_uid));
        let url = "/api/v1/practitioners";
        let new = json!({"telecomEmail": "Dan@X.org", "nameFamily": "Doe",
            "nameGiven": "Dan", "organizationId": north});

        let (status, out) = ana.send("POST", url, new.clone()).await;
        assert_eq!(status, 403);
        detail(&out);
        assert_eq!(ana.get(url).await.0, 403);

        let (status, out) = admin.send("POST", url, new.clone()).await;
        assert_eq!(status, 201, "{out}");
        let pid = out["id"].as_i64().expect("id");
        assert!(out["jheUserId"].as_i64().is_some(), "{out}");
        assert_eq!(out["telecomEmail"], "dan@x.org");
        assert_eq!(role_in(&app, north, pid).as_deref(), Some("member"));

        let (status, out) = admin.send("POST", url, new).await;
        assert_eq!(status, 409);
        assert!(detail(&out).contains("dan@x.org"));
        let (status, list) = admin.get(url).await;
        assert_eq!(status, 200);
        let list = list["results"].as_array().unwrap();
        let emails: Vec<&str> = list
            .iter()
            .map(|p| p["telecomEmail"].as_str().unwrap())
            .collect();
        assert_eq!(emails.iter().filter(|e| **e == "dan@x.org").count(), 1);
        assert!(emails.contains(&"ana@x.org"));
    }
);

// ---- audit -----------------------------------------------------------------------------------

on_both_backends!(
    organization_changes_are_audited_with_their_actor_and_superusers_filter_the_log,
    |app: TestApp| async move {
        let (uid, ana) = app.practitioner("ana@x.org", false);
        app.practitioner("bob@x.org", false);
        let north = app.org("North", 0, &[(ana, "manager")]);
        let ward = json!({"name": "Ward 7", "type": "dept", "partOf": north});
        let created = api(&app, uid)
            .send("POST", "/api/v1/organizations", ward)
            .await;
        assert_eq!(created.0, 201);
        let ana = ui(&app, uid).await;
        let show = format!("/organizations/{north}");
        let fields = [("email", "bob@x.org"), ("role", "member")];
        let (status, _) = ana.post(&show, &format!("{show}/members"), &fields).await;
        assert_eq!(status, 200);

        type Event = (String, Option<i64>, Option<String>, Option<i64>);
        let q = ae::table
            .filter(ae::action.like("organization.%"))
            .order(ae::id.asc());
        let q = q.select((
            ae::action,
            ae::actor_user_id,
            ae::actor_email,
            ae::organization_id,
        ));
        let events: Vec<Event> = q.load(&mut *app.conn()).unwrap();
        let ward = named(&app, "Ward 7").unwrap();
        let by_ana = |action: &str, org| {
            (
                action.into(),
                Some(uid),
                Some("ana@x.org".into()),
                Some(org),
            )
        };
        let expected = [
            by_ana("organization.create", ward),
            by_ana("organization.member.add", north),
        ];
        assert_eq!(events, expected, "who did what, where");

        let admin = ui(&app, app.admin_user_id()).await;
        let (status, page) = admin.get("/audit").await;
        assert_eq!(status, 200);
        let all = page.texts("table.data tbody td code");
        assert!(all.iter().any(|a| a == "sign_in"), "{all:?}");
        let (status, page) = admin.get("/audit?action=organization.").await;
        assert_eq!(status, 200);
        let actions = page.texts("table.data tbody td code");
        let newest_first = ["organization.member.add", "organization.create"];
        assert_eq!(actions, newest_first);
        assert!(page.text("table.data").contains("ana@x.org"));
        let kept = page.attr("#f-action", "value");
        assert_eq!(
            kept.as_deref(),
            Some("organization."),
            "the filter stays filled in"
        );

        for path in ["/audit", "/practitioners"] {
            let (status, page) = ana.get(path).await;
            assert_eq!(status, 403, "{path}");
            assert!(!page.exists("table.data"), "{path}");
        }
        let (_, page) = ana.get("/organizations").await;
        assert!(!page.exists("a[href=\"/audit\"]"), "no Audit tab for them");
    }
);
