//! Changing a patient's e-mail (their sign-in), and demo data from `cohort seed-demo`.

mod common;

use common::*;

async fn new_patient(app: &TestApp, token: &str, org: i64, email: &str) -> i64 {
    let res = script()
        .post(app.at("/api/v1/patients"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "organizationId": org, "telecomEmail": email, "nameFamily": "Okafor", "nameGiven": "Chidi"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap()
}

on_both_backends!(
    changing_an_email_needs_confirmation_and_moves_the_sign_in,
    |app: TestApp| async move {
        let (uid, pid) = app.practitioner("member@example.org", false);
        let org = app.org("North", 0, &[(pid, "member")]);
        let token = app.token(uid);
        let id = new_patient(&app, &token, org, "chidi@example.org").await;
        new_patient(&app, &token, org, "taken@example.org").await;
        let client = app.signed_in(uid).await;
        let page = format!("/patients/{id}?organization_id={org}&modal=email");
        let action = format!("/patients/{id}/email");
        let org_s = org.to_string();

        // Not confirmed: shown again, with the message beside the checkbox and the input kept.
        let res = app
            .post_form(
                &client,
                &page,
                &action,
                &[("organization_id", &org_s), ("email", "new@example.org")],
            )
            .await;
        assert_eq!(res.status(), 400);
        let html = common::html::Page::new(&res.text().await.unwrap());
        assert!(html.text("#f-confirm-error").contains("Confirm"));
        assert_eq!(
            html.attr("#f-email", "value").as_deref(),
            Some("new@example.org")
        );

        // Taken by another patient: refused, nothing changes.
        let res = app
            .post_form(
                &client,
                &page,
                &action,
                &[
                    ("organization_id", &org_s),
                    ("email", "taken@example.org"),
                    ("confirm", "on"),
                ],
            )
            .await;
        assert_eq!(res.status(), 400);

        let res = app
            .post_form(
                &client,
                &page,
                &action,
                &[
                    ("organization_id", &org_s),
                    ("email", "New@Example.org"),
                    ("confirm", "on"),
                ],
            )
            .await;
        assert_eq!(res.status(), 303);
        let (_, html) = app.follow(&client, res).await;
        assert!(html.text(".flash-success").contains("new@example.org"));
        let me: serde_json::Value = script()
            .get(app.at(&format!("/api/v1/patients/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["telecomEmail"], "new@example.org");
        {
            let mut c = app.conn();
            let acc = cohort::practitioner::repo::find_by_email(&mut c, "new@example.org")
                .unwrap()
                .unwrap();
            assert_eq!(acc.patient_id, Some(id), "the sign-in user moved with it");
            assert!(
                cohort::practitioner::repo::find_by_email(&mut c, "chidi@example.org")
                    .unwrap()
                    .is_none()
            );
        }
        // Search follows the new address.
        let found: serde_json::Value = script()
            .get(app.at(&format!(
                "/api/v1/patients?organization_id={org}&q=new@example.org"
            )))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(found["count"], 1);
        assert!(app
            .audit_actions()
            .contains(&"patient.email.change".to_string()));
    }
);

on_both_backends!(a_viewer_cannot_change_an_email, |app: TestApp| async move {
    let (muid, mpid) = app.practitioner("member@example.org", false);
    let (vuid, vpid) = app.practitioner("viewer@example.org", false);
    let org = app.org("North", 0, &[(mpid, "member"), (vpid, "viewer")]);
    let id = new_patient(&app, &app.token(muid), org, "chidi@example.org").await;
    let viewer = app.signed_in(vuid).await;
    let (_, page) = app
        .get_html(&viewer, &format!("/patients/{id}?organization_id={org}"))
        .await;
    assert!(
        !page.source.contains("Change e-mail"),
        "no control the role may not use"
    );
    let res = app
        .post_form(
            &viewer,
            &format!("/patients/{id}?organization_id={org}"),
            &format!("/patients/{id}/email"),
            &[
                ("organization_id", &org.to_string()),
                ("email", "x@example.org"),
                ("confirm", "on"),
            ],
        )
        .await;
    assert_eq!(res.status(), 403);
});

#[test]
fn seed_demo_fills_an_organization_that_lists_and_searches() {
    let dir = temp_dir("seed");
    let _cleanup = Cleanup(dir.clone());
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cohort"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("COHORT_DATA_DIR", &dir)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let out = run(&["seed-demo", "--patients", "250"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Added 250 patients to organization 1"),
        "{text}"
    );
    let out = run(&["seed-demo", "--patients", "0"]);
    assert_eq!(out.status.code(), Some(2));

    let pool = cohort::db::connect(
        &format!("sqlite://{}", dir.join("cohort.sqlite3").display()),
        cohort::config::Backend::Sqlite,
    )
    .unwrap();
    let mut conn = pool.get().unwrap();
    let filter = cohort::patient::repo::ListFilter {
        org_ids: vec![1],
        ..Default::default()
    };
    let (rows, total) = cohort::patient::repo::list(
        &mut conn,
        &filter,
        cohort::patient::repo::Sort::FamilyName,
        0,
        20,
    )
    .unwrap();
    assert_eq!(total, 250, "the kept count matches");
    assert_eq!(rows.len(), 20);
    let names: Vec<String> = rows
        .iter()
        .map(|p| cohort::patient::repo::sort_name(&p.name_family, &p.name_given))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "listed in name order");
    // Every seeded patient can be found by its family name and birth date.
    let first = &rows[0];
    let q = format!(
        "{} {}",
        first.name_family,
        first.birth_date.unwrap().format("%Y-%m-%d")
    );
    let filter = cohort::patient::repo::ListFilter {
        org_ids: vec![1],
        terms: cohort::patient::search::query_terms(&q),
        ..Default::default()
    };
    let (found, n) = cohort::patient::repo::list(
        &mut conn,
        &filter,
        cohort::patient::repo::Sort::FamilyName,
        0,
        20,
    )
    .unwrap();
    assert!(
        n >= 1 && found.iter().any(|p| p.id == first.id),
        "{q} finds the patient"
    );
}
