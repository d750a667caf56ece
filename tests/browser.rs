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
