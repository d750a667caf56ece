//! Real-browser tests: headless Chromium driven through chromedriver, as a person would.

mod common;

use common::webdriver::Browser;
use common::*;

#[actix_web::test]
async fn a_manager_signs_in_and_creates_a_sub_organization_with_the_keyboard_and_mouse() {
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (uid, pid) = app.practitioner("manager@example.org", false);
    let north = app.org("North Clinic", 0, &[(pid, "manager")]);
    let secret = {
        let mut c = app.conn();
        cohort::auth::code::create_link(&mut c, uid).unwrap()
    };
    browser.goto(&app.at(&format!("/auth/link/{secret}"))).await;
    assert_eq!(browser.text("h1").await, "Organizations");
    assert!(browser.text(".tree").await.contains("North Clinic"));

    // Open the modal from the tree, as a mouse user would.
    browser
        .click(&format!(
            "a[href='/organizations?modal=create&parent={north}']"
        ))
        .await;
    browser.wait_for("[role=dialog]").await;
    assert!(browser
        .text("[role=dialog]")
        .await
        .contains("Inside North Clinic"));

    // Focus starts in the first field; an empty name is refused with the message beside it.
    browser.keys("\u{E007}").await;
    let error = browser.text("#f-name-error").await;
    assert!(error.contains("Enter a name"), "{error}");

    browser.fill("#f-name", "Cardiology").await;
    browser.click("[role=dialog] button[type=submit]").await;
    browser.wait_for(".flash-success").await;
    assert_eq!(browser.text("h1").await, "Cardiology");
    assert!(browser
        .text(".flash-success")
        .await
        .contains("Created Cardiology"));
    assert!(browser.current_url().await.contains("/organizations/"));
    let _ = std::fs::create_dir_all(std::env::temp_dir().join("cohort-shots"));
    browser
        .screenshot(&std::env::temp_dir().join("cohort-shots/sub-organization.png"))
        .await;

    // It sits under North Clinic in the tree, and the creator manages it.
    browser.goto(&app.at("/organizations")).await;
    let tree = browser.text(".tree").await;
    assert!(
        tree.find("North Clinic").unwrap() < tree.find("Cardiology").unwrap(),
        "{tree}"
    );
}

#[actix_web::test]
async fn a_member_finds_or_creates_a_patient_copies_an_invitation_link_and_tags_in_bulk() {
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (uid, pid) = app.practitioner("member@example.org", false);
    let org = app.org("North Clinic", 0, &[(pid, "member")]);
    let secret = {
        let mut c = app.conn();
        cohort::auth::code::create_link(&mut c, uid).unwrap()
    };
    browser.goto(&app.at(&format!("/auth/link/{secret}"))).await;
    browser
        .goto(&app.at(&format!("/patients?organization_id={org}")))
        .await;
    assert!(browser.text(".empty").await.contains("No patients yet"));

    // Find first: a new e-mail leads to the create form with the address filled in.
    browser.click(".page-header a.btn-primary").await;
    browser.fill("#f-email", "Ama.Mensah@Example.org").await;
    browser.click("[role=dialog] button[type=submit]").await;
    browser.wait_for("#f-name_family").await;
    assert!(browser
        .text("[role=dialog]")
        .await
        .contains("No patient has this e-mail yet"));
    browser.fill("#f-name_family", "Mensah").await;
    browser.fill("#f-name_given", "Ama").await;
    browser.fill("#f-id_system_1", "urn:mrn").await;
    browser.fill("#f-id_value_1", "MRN-77").await;
    browser.click("[role=dialog] button[type=submit]").await;
    browser
        .wait_for_text(".flash-success", "Added Ama Mensah")
        .await;
    assert_eq!(browser.text("h1").await, "Ama Mensah");

    // An invitation link, copied with the Copy button.
    browser.grant("clipboard-read").await;
    browser.grant("clipboard-write").await;
    browser.click("#f-send_email").await; // not by e-mail this time
    browser.click("#invitations button[type=submit]").await;
    browser.wait_for(".qr svg").await;
    let link = browser.text("#new-link").await;
    assert!(link.starts_with(&app.at("/invite/")), "{link}");
    browser.click(".copy-button").await;
    browser.wait_for_text(".copy-button", "Copied").await;
    let copied = browser
        .execute_async(
            "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('error: ' + e))",
        )
        .await;
    assert_eq!(
        copied.as_str(),
        Some(link.as_str()),
        "the clipboard holds the link"
    );

    // Find again: the same e-mail is already a patient here.
    browser
        .goto(&app.at(&format!("/patients?organization_id={org}&modal=add")))
        .await;
    browser.fill("#f-email", "ama.mensah@example.org").await;
    browser.click("[role=dialog] button[type=submit]").await;
    browser
        .wait_for_text("[role=dialog]", "already a patient of this organization")
        .await;

    // Bulk: check the row and tag it.
    browser
        .goto(&app.at(&format!("/patients?organization_id={org}")))
        .await;
    browser.click("input[name=ids]").await;
    browser.fill("#f-bulk-tag", "baseline").await;
    browser.click("#bulk button[type=submit]").await;
    browser
        .wait_for_text(".flash-success", "Tagged 1 patient “baseline”")
        .await;
    assert!(browser.text("table.data").await.contains("baseline"));
    let _ = std::fs::create_dir_all(std::env::temp_dir().join("cohort-shots"));
    browser
        .screenshot(&std::env::temp_dir().join("cohort-shots/patients.png"))
        .await;
}

#[actix_web::test]
async fn a_member_filters_the_consent_review_records_a_decision_and_exports_it() {
    use cohort::study::{Status, ValidStudy};
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (uid, pid) = app.practitioner("member@example.org", false);
    let org = app.org("North Clinic", 0, &[(pid, "member")]);
    let token = app.token(uid);
    // Sleep requests blood pressure (2) and heart rate (4); Bell declined heart rate, Dunn
    // has not decided anything yet.
    let (bp, hr) = (2, 4);
    let mut people = Vec::new();
    for (family, given) in [("Ames", "Ada"), ("Bell", "Ben"), ("Dunn", "Dee")] {
        let email = format!("{}@example.org", given.to_lowercase());
        people.push(api_patient(&app, &token, org, &email, family, given).await);
    }
    let (ada, ben, dee) = (people[0], people[1], people[2]);
    let study = {
        let mut c = app.conn();
        let s = ValidStudy {
            name: "Sleep".into(),
            description: "Nightly readings.".into(),
            icon_url: None,
            status: Status::Active,
        };
        let id = cohort::study::repo::insert(&mut c, org, &s).unwrap();
        cohort::study::repo::add_scope_request(&mut c, id, bp).unwrap();
        cohort::study::repo::add_scope_request(&mut c, id, hr).unwrap();
        cohort::study::repo::enrol(&mut c, id, &people).unwrap();
        for (patient, scope, consented) in [(ada, bp, true), (ada, hr, true), (ben, bp, true)] {
            cohort::consent::repo::set(&mut c, id, patient, scope, consented, uid, Some("paper"))
                .unwrap();
        }
        cohort::consent::repo::set(&mut c, id, ben, hr, false, uid, Some("paper")).unwrap();
        id
    };
    let secret = {
        let mut c = app.conn();
        cohort::auth::code::create_link(&mut c, uid).unwrap()
    };
    browser.goto(&app.at(&format!("/auth/link/{secret}"))).await;
    browser.goto(&app.at(&format!("/studies/{study}"))).await;
    assert_eq!(browser.text("h1").await, "Sleep Active");
    let everyone = browser.text("table.matrix tbody").await;
    assert!(
        everyone.contains("Ames") && everyone.contains("Dunn"),
        "{everyone}"
    );

    // Declined only: choose it in the filter and press Show.
    browser.click("#f-only option[value=declined]").await;
    browser
        .click("#review form[method=get] button[type=submit]")
        .await;
    browser
        .wait_for("#review a[href$='consents.csv?only=declined']")
        .await;
    assert!(browser.current_url().await.contains("only=declined"));
    let declined = browser.text("table.matrix tbody").await;
    assert!(
        declined.contains("Bell") && declined.contains('✗'),
        "{declined}"
    );
    assert!(
        !declined.contains("Ames") && !declined.contains("Dunn"),
        "{declined}"
    );

    // Pending only, then Dunn's "Record decision".
    browser.click("#f-only option[value=pending]").await;
    browser
        .click("#review form[method=get] button[type=submit]")
        .await;
    browser
        .wait_for("#review a[href$='consents.csv?only=pending']")
        .await;
    let pending = browser.text("table.matrix tbody").await;
    assert!(
        pending.contains("Dunn") && !pending.contains("Ames"),
        "{pending}"
    );
    browser
        .click(&format!(
            "a[href='/studies/{study}?modal=record&patient={dee}']"
        ))
        .await;
    browser.wait_for("[role=dialog]").await;
    assert_eq!(
        browser.text("#modal-title").await,
        "Record a decision for Dee Dunn"
    );
    browser.click(&format!("#d-{hr}-consent")).await;
    browser
        .fill("#f-reason", "consented by phone 2026-11-02")
        .await;
    browser.keys("\u{E007}").await; // Enter in the reason field submits
    browser
        .wait_for_text(".flash-success", "Recorded 1 decision")
        .await;
    let row = browser.text("table.matrix tbody tr:nth-child(3)").await;
    assert!(row.contains("Dunn") && row.contains('✓'), "{row}");
    assert!(
        row.contains("pending"),
        "blood pressure is still pending: {row}"
    );
    let _ = std::fs::create_dir_all(std::env::temp_dir().join("cohort-shots"));
    browser
        .screenshot(&std::env::temp_dir().join("cohort-shots/consent-review.png"))
        .await;

    // The Export CSV link, fetched with the browser's own session.
    let csv = browser
        .execute_async(
            "const a = document.querySelector('#review a[download]');
             fetch(a.href).then(r => r.text().then(body => arguments[0]({
               href: a.getAttribute('href'), type: r.headers.get('content-type'),
               disposition: r.headers.get('content-disposition'), body })),
               e => arguments[0]({error: String(e)}));",
        )
        .await;
    assert_eq!(
        csv["href"].as_str(),
        Some(format!("/studies/{study}/consents.csv").as_str())
    );
    let kind = csv["type"].as_str().unwrap_or_default();
    assert!(kind.starts_with("text/csv"), "{csv}");
    let disposition = csv["disposition"].as_str().unwrap_or_default();
    assert!(disposition.starts_with("attachment;"), "{csv}");
    let when = {
        use cohort::db::schema::consents as cs;
        use diesel::prelude::*;
        let mine = cs::study_id.eq(study).and(cs::patient_id.eq(dee));
        let at: chrono::NaiveDateTime = cs::table
            .filter(mine.and(cs::codeable_concept_id.eq(hr)))
            .select(cs::consented_at)
            .first(&mut *app.conn())
            .unwrap();
        at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    };
    let body = csv["body"].as_str().unwrap_or_default();
    let want = format!("{dee},Dunn,Dee,,dee@example.org,pending,,consented,{when}");
    assert!(body.lines().any(|l| l == want), "{want} not in:\n{body}");
    assert_eq!(body.lines().count(), 4, "a header and three patients");
}

on_both_backends!(
    a_member_enrols_checked_patients_in_a_study_from_the_patients_tab,
    |app: TestApp| async move {
        use cohort::study::{Status, ValidStudy};
        let Some(browser) = Browser::start().await else {
            return;
        };
        let (uid, pid) = app.practitioner("member@example.org", false);
        let org = app.org("North Clinic", 0, &[(pid, "member")]);
        let token = app.token(uid);
        let mut people = Vec::new();
        for (family, given) in [
            ("Ames", "Ada"),
            ("Bell", "Ben"),
            ("Cole", "Cy"),
            ("Dunn", "Dee"),
            ("Eze", "Eve"),
        ] {
            let email = format!("{}@example.org", given.to_lowercase());
            people.push(api_patient(&app, &token, org, &email, family, given).await);
        }
        let (ada, ben, dee) = (people[0], people[1], people[3]);
        // Sleep requests heart rate (4) only; Dunn is enrolled already.
        let study = {
            let mut c = app.conn();
            let s = ValidStudy {
                name: "Sleep".into(),
                description: "Nightly readings.".into(),
                icon_url: None,
                status: Status::Active,
            };
            let id = cohort::study::repo::insert(&mut c, org, &s).unwrap();
            cohort::study::repo::add_scope_request(&mut c, id, 4).unwrap();
            cohort::study::repo::enrol(&mut c, id, &[dee]).unwrap();
            id
        };
        let secret = {
            let mut c = app.conn();
            cohort::auth::code::create_link(&mut c, uid).unwrap()
        };
        browser.goto(&app.at(&format!("/auth/link/{secret}"))).await;
        browser
            .goto(&app.at(&format!("/patients?organization_id={org}")))
            .await;
        assert!(browser
            .text(".lede")
            .await
            .contains("North Clinic · 5 patients"));

        // Ames with the mouse; then Tab past Ames's two links to Bell's box and press Space;
        // Dunn (already enrolled) with the mouse.
        browser.click(&format!("#sel-{ada}")).await;
        browser.keys("\u{E004}\u{E004}\u{E004}").await;
        let focused = browser
            .execute_async("arguments[0](document.activeElement.id)")
            .await;
        assert_eq!(
            focused.as_str(),
            Some(format!("sel-{ben}").as_str()),
            "three Tabs lead from Ames's checkbox to Bell's"
        );
        browser.keys("\u{E00D}").await; // Space
        browser.click(&format!("#sel-{dee}")).await;
        let checked = browser
            .execute_async(
                "arguments[0](Array.from(document.querySelectorAll('input[name=ids]:checked'), b => b.value))",
            )
            .await;
        assert_eq!(
            checked,
            serde_json::json!([ada.to_string(), ben.to_string(), dee.to_string()]),
            "Ames, Bell and Dunn are checked"
        );

        browser.click("#f-action option[value=enrol]").await;
        browser
            .click(&format!("#f-bulk_study_id option[value='{study}']"))
            .await;
        browser.click("#bulk button[type=submit]").await;
        let flash = browser.wait_for_text(".flash-success", "Enrolled 2").await;
        assert_eq!(flash, "Enrolled 2 patients in Sleep (1 enrolled already).");

        // Only Sleep's patients, each with heart rate pending.
        browser
            .click(&format!("#f-study_id option[value='{study}']"))
            .await;
        browser.click("form.toolbar button[type=submit]").await;
        browser.wait_for("#f-consent").await;
        assert!(
            browser
                .current_url()
                .await
                .contains(&format!("study_id={study}")),
            "{}",
            browser.current_url().await
        );
        let rows = browser
            .execute_async(
                "arguments[0](Array.from(document.querySelectorAll('table.data tbody tr'), r => r.innerText))",
            )
            .await;
        let rows: Vec<String> = rows
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(rows.len(), 3, "{rows:#?}");
        for (row, name) in rows.iter().zip(["Ames", "Bell", "Dunn"]) {
            assert!(row.contains(name), "{name} not in {row:?}");
            assert!(row.contains("✓ 0 ✗ 0 … 1"), "{row:?}");
        }
        let list = rows.join("\n");
        assert!(!list.contains("Cole") && !list.contains("Eze"), "{list}");
        assert!(browser
            .text(".lede")
            .await
            .contains("North Clinic · 3 patients"));

        // The study's consent review shows the same three.
        browser.goto(&app.at(&format!("/studies/{study}"))).await;
        assert!(browser.text(".lede").await.contains("3 enrolled"));
        let review = browser
            .execute_async(
                "arguments[0](Array.from(document.querySelectorAll('#review table tbody tr'), r => r.innerText))",
            )
            .await;
        let review: Vec<String> = review
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(review.len(), 3, "{review:#?}");
        for (row, name) in review.iter().zip(["Ames, Ada", "Bell, Ben", "Dunn, Dee"]) {
            assert!(
                row.contains(name) && row.contains("pending"),
                "{name}: {row:?}"
            );
        }
    }
);

/// A patient made through the API with a personal token.
async fn api_patient(
    app: &TestApp,
    token: &str,
    org: i64,
    email: &str,
    family: &str,
    given: &str,
) -> i64 {
    let body = serde_json::json!({"organizationId": org, "telecomEmail": email,
        "nameFamily": family, "nameGiven": given});
    let res = script()
        .post(app.at("/api/v1/patients"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let out: serde_json::Value = res.json().await.unwrap();
    out["id"].as_i64().unwrap()
}
