//! Invitation links: issued from the patient's page, the API or in bulk; e-mailed with text
//! and HTML parts; shown once with a QR code; and the page a link leads to.

mod common;

use common::*;
use diesel::prelude::*;

async fn patient(app: &TestApp, token: &str, org: i64, email: &str) -> i64 {
    let res = script()
        .post(app.at("/api/v1/patients"))
        .bearer_auth(token)
        .json(&serde_json::json!({"organizationId": org, "telecomEmail": email, "nameFamily": "Mensah", "nameGiven": "Ama"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap()
}

async fn landing(app: &TestApp, link: &str) -> (u16, String) {
    let path = &link[link.find("/invite/").unwrap()..];
    let (status, page) = app.get_html(&browser(), path).await;
    (status, page.text("main"))
}

on_both_backends!(
    a_link_is_shown_once_with_a_qr_code_and_a_new_one_replaces_it,
    |app: TestApp| async move {
        let (uid, pid) = app.practitioner("member@example.org", false);
        let org = app.org("North Clinic", 0, &[(pid, "member")]);
        let id = patient(&app, &app.token(uid), org, "ama@example.org").await;
        let client = app.signed_in(uid).await;
        let page = format!("/patients/{id}?organization_id={org}");
        let res = app
            .post_form(
                &client,
                &page,
                &format!("/patients/{id}/invitations"),
                &[("organization_id", &org.to_string())],
            )
            .await;
        assert_eq!(res.status(), 303);
        let (_, html) = app.follow(&client, res).await;
        let first = html.text("#new-link");
        assert!(first.starts_with(&app.at("/invite/")), "{first}");
        assert!(html.exists(".qr svg"), "a QR code to print");
        assert!(html.text("#invitations table").contains("issued"));
        // Shown once: a reload no longer shows it, and only its hash is stored.
        let (_, again) = app.get_html(&client, &page).await;
        assert!(!again.exists("#new-link"));
        {
            use cohort::db::schema::invitations as i;
            let mut c = app.conn();
            let hashes: Vec<String> = i::table.select(i::token_hash).load(&mut c).unwrap();
            let token = &first[first.rfind('/').unwrap() + 1..];
            assert!(
                !hashes.iter().any(|h| h == token),
                "the token itself is not stored"
            );
        }
        let (status, text) = landing(&app, &first).await;
        assert_eq!(status, 200);
        assert!(text.contains("Your invitation from North Clinic"), "{text}");

        // A second link cancels the first.
        let res = app
            .post_form(
                &client,
                &page,
                &format!("/patients/{id}/invitations"),
                &[("organization_id", &org.to_string())],
            )
            .await;
        let (_, html) = app.follow(&client, res).await;
        let second = html.text("#new-link");
        assert_ne!(first, second);
        let statuses = html.text("#invitations table");
        assert!(
            statuses.contains("reissued") && statuses.contains("cancelled"),
            "{statuses}"
        );
        let (status, text) = landing(&app, &first).await;
        assert_eq!(status, 410);
        assert!(text.contains("newer link"), "{text}");
        let (status, text) = landing(&app, &app.at("/invite/not-a-real-token")).await;
        assert_eq!(status, 404);
        assert!(text.contains("This link is not valid"));

        // Past its date: says when it expired and whom to ask.
        {
            use cohort::db::schema::invitations as i;
            let mut c = app.conn();
            diesel::update(i::table)
                .set(
                    i::expires_at.eq(chrono::NaiveDate::from_ymd_opt(2026, 1, 2)
                        .unwrap()
                        .and_hms_opt(0, 0, 0)
                        .unwrap()),
                )
                .execute(&mut c)
                .unwrap();
        }
        let (status, text) = landing(&app, &second).await;
        assert_eq!(status, 410);
        assert!(
            text.contains("expired on 2026-01-02; ask North Clinic for a new one"),
            "{text}"
        );
        let (_, html) = app.get_html(&client, &page).await;
        assert!(html.text("#invitations table").contains("expired"));
        assert!(app
            .audit_actions()
            .contains(&"invitation.issue".to_string()));
    }
);

on_both_backends!(
    the_invitation_email_arrives_with_text_and_html_naming_the_organization,
    |base: TestApp| async move {
        let Some(smtp) = common::fixtures::SmtpServer::start() else {
            return;
        };
        let Some(app) = spawn_with(base.backend, vec![("SMTP_URL", smtp.url())]).await else {
            return;
        };
        let (uid, pid) = app.practitioner("member@example.org", false);
        let org = app.org("North Clinic", 0, &[(pid, "member")]);
        let id = patient(&app, &app.token(uid), org, "ama@example.org").await;
        let client = app.signed_in(uid).await;
        let page = format!("/patients/{id}?organization_id={org}");
        let res = app
            .post_form(
                &client,
                &page,
                &format!("/patients/{id}/invitations"),
                &[("organization_id", &org.to_string()), ("send_email", "on")],
            )
            .await;
        let (_, html) = app.follow(&client, res).await;
        assert!(html
            .text(".flash-success")
            .contains("e-mailed it to ama@example.org"));
        let link = html.text("#new-link");
        let message = smtp
            .wait_for(1, std::time::Duration::from_secs(10))
            .expect("the e-mail arrived");
        assert!(message.contains("To: ama@example.org"));
        assert!(message.contains("multipart/alternative"), "{message}");
        assert!(message.contains("text/plain") && message.contains("text/html"));
        assert!(message.contains("North Clinic"));
        let unfolded = message.replace("=\r\n", "").replace("=\n", "");
        let token = &link[link.rfind('/').unwrap() + 1..];
        assert!(unfolded.contains(token), "the link is in the message");
    }
);

on_both_backends!(
    the_api_issues_invitations_for_members_only,
    |app: TestApp| async move {
        let (muid, mpid) = app.practitioner("member@example.org", false);
        let (vuid, vpid) = app.practitioner("viewer@example.org", false);
        let org = app.org("North Clinic", 0, &[(mpid, "member"), (vpid, "viewer")]);
        let id = patient(&app, &app.token(muid), org, "ama@example.org").await;
        let res = script()
            .post(app.at("/api/v1/invitation"))
            .bearer_auth(app.token(muid))
            .json(&serde_json::json!({"patient_id": id, "send_email": false}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["patientId"], id);
        assert_eq!(body["status"], "issued");
        assert!(body["invitationLink"]
            .as_str()
            .unwrap()
            .starts_with(&app.at("/invite/")));
        assert!(body["lastUpdated"].as_str().unwrap().ends_with('Z'));
        let res = script()
            .post(app.at("/api/v1/invitation"))
            .bearer_auth(app.token(vuid))
            .json(&serde_json::json!({"patientId": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        let res = script()
            .post(app.at("/api/v1/invitation"))
            .bearer_auth(app.token(muid))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
    }
);

on_both_backends!(
    bulk_invitations_are_issued_and_emailed_to_each_checked_patient,
    |app: TestApp| async move {
        let (uid, pid) = app.practitioner("member@example.org", false);
        let org = app.org("North Clinic", 0, &[(pid, "member")]);
        let token = app.token(uid);
        let a = patient(&app, &token, org, "a@example.org")
            .await
            .to_string();
        let b = patient(&app, &token, org, "b@example.org")
            .await
            .to_string();
        let client = app.signed_in(uid).await;
        let list = format!("/patients?organization_id={org}");
        let res = app
            .post_form(
                &client,
                &list,
                "/patients/bulk",
                &[
                    ("organization_id", &org.to_string()),
                    ("action", "invite"),
                    ("ids", &a),
                    ("ids", &b),
                ],
            )
            .await;
        let (_, html) = app.follow(&client, res).await;
        assert!(
            html.text(".flash-success")
                .contains("Issued 2 invitations of 2 selected; e-mailed 2"),
            "{}",
            html.text(".flashes")
        );
        let outbox = std::fs::read_dir(app.data_dir.join("outbox"))
            .unwrap()
            .count();
        assert_eq!(
            outbox, 2,
            "with no SMTP server the two messages wait in the outbox"
        );
    }
);

on_both_backends!(
    the_patient_list_filters_by_invitation_state,
    |app: TestApp| async move {
        let (uid, pid) = app.practitioner("member@example.org", false);
        let org = app.org("North Clinic", 0, &[(pid, "member")]);
        let token = app.token(uid);
        let never = patient(&app, &token, org, "never@example.org").await;
        let open = patient(&app, &token, org, "open@example.org").await;
        let old = patient(&app, &token, org, "old@example.org").await;
        for id in [open, old] {
            let res = script()
                .post(app.at("/api/v1/invitation"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"patientId": id}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
        }
        {
            use cohort::db::schema::invitations as i;
            let mut c = app.conn();
            diesel::update(i::table.filter(i::patient_id.eq(old)))
                .set(i::expires_at.eq(cohort::util::now() - chrono::Duration::days(1)))
                .execute(&mut c)
                .unwrap();
        }
        let client = app.signed_in(uid).await;
        for (state, expected) in [("never", never), ("issued", open), ("expired", old)] {
            let (_, page) = app
                .get_html(
                    &client,
                    &format!("/patients?organization_id={org}&invited={state}"),
                )
                .await;
            let ids: Vec<String> = page.texts("table.data tbody td.num");
            assert_eq!(ids, vec![expected.to_string()], "invited={state}");
        }
        let (_, page) = app
            .get_html(
                &client,
                &format!("/patients?organization_id={org}&invited=redeemed"),
            )
            .await;
        assert!(page
            .text(".empty h2")
            .contains("No patients match these filters"));
    }
);
