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
