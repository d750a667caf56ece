//! Tags and bulk actions on the Patients tab.

mod common;

use common::*;

/// A member, their organization, a signed-in console client and `n` patients (ids in order).
async fn setup(app: &TestApp, n: usize) -> (i64, reqwest::Client, Vec<i64>) {
    let (uid, pid) = app.practitioner("member@example.org", false);
    let org = app.org("North", 0, &[(pid, "member")]);
    let token = app.token(uid);
    let mut ids = Vec::new();
    for i in 0..n {
        let res = script()
            .post(app.at("/api/v1/patients"))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "organizationId": org, "telecomEmail": format!("p{i}@example.org"),
                "nameFamily": format!("Family{i:02}"), "nameGiven": "Pat"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        ids.push(
            res.json::<serde_json::Value>().await.unwrap()["id"]
                .as_i64()
                .unwrap(),
        );
    }
    (org, app.signed_in(uid).await, ids)
}

fn listed(page: &common::html::Page) -> usize {
    page.count("table.data tbody tr")
}

on_both_backends!(
    a_tag_is_added_on_the_patient_page_shown_in_the_list_and_filters_it,
    |app: TestApp| async move {
        let (org, client, ids) = setup(&app, 3).await;
        let page = format!("/patients/{}?organization_id={org}", ids[0]);
        let res = app
            .post_form(
                &client,
                &page,
                &format!("/patients/{}/tags", ids[0]),
                &[
                    ("organization_id", &org.to_string()),
                    ("tag", "  baseline   done "),
                ],
            )
            .await;
        assert_eq!(res.status(), 303);
        let (_, html) = app.follow(&client, res).await;
        assert!(html.text(".flash-success").contains("baseline done"));
        assert!(html.text(".tag-list").contains("baseline done"));

        let (_, list) = app
            .get_html(&client, &format!("/patients?organization_id={org}"))
            .await;
        assert!(list.text("table.data").contains("baseline done"));
        let tag_id = list
            .attr("#f-tag option:nth-child(2)", "value")
            .expect("the tag is offered as a filter");
        let (_, filtered) = app
            .get_html(
                &client,
                &format!("/patients?organization_id={org}&tag={tag_id}"),
            )
            .await;
        assert_eq!(listed(&filtered), 1);
        assert!(filtered.text(".lede").contains("1 patient"));

        // An empty tag is refused with a message; nothing is added.
        let res = app
            .post_form(
                &client,
                &page,
                &format!("/patients/{}/tags", ids[0]),
                &[("organization_id", &org.to_string()), ("tag", "   ")],
            )
            .await;
        let (_, html) = app.follow(&client, res).await;
        assert!(html.text(".flash-error").contains("Type a tag"));

        let res = app
            .post_form(
                &client,
                &page,
                &format!("/patients/{}/tags/{tag_id}/remove", ids[0]),
                &[("organization_id", &org.to_string())],
            )
            .await;
        let (_, html) = app.follow(&client, res).await;
        assert!(html.text("main").contains("No tags."));
    }
);

on_both_backends!(
    checked_rows_get_a_tag_in_bulk_and_repeats_change_nothing,
    |app: TestApp| async move {
        let (org, client, ids) = setup(&app, 4).await;
        let list = format!("/patients?organization_id={org}");
        let org_s = org.to_string();
        let (a, b) = (ids[0].to_string(), ids[1].to_string());
        let fields = [
            ("organization_id", org_s.as_str()),
            ("action", "add_tag"),
            ("tag", "cohort A"),
            ("ids", a.as_str()),
            ("ids", b.as_str()),
        ];
        let res = app
            .post_form(&client, &list, "/patients/bulk", &fields)
            .await;
        let (_, html) = app.follow(&client, res).await;
        assert!(
            html.text(".flash-success").contains("Tagged 2 patients"),
            "{}",
            html.text(".flashes")
        );
        let res = app
            .post_form(&client, &list, "/patients/bulk", &fields)
            .await;
        let (_, html) = app.follow(&client, res).await;
        assert!(html.text(".flash-success").contains("Tagged 0 patients"));
        assert!(html.text(".flash-success").contains("2 had it already"));

        // Nothing checked: told what to do.
        let res = app
            .post_form(
                &client,
                &list,
                "/patients/bulk",
                &[("organization_id", org_s.as_str()), ("action", "archive")],
            )
            .await;
        let (_, html) = app.follow(&client, res).await;
        assert!(html
            .text(".flash-error")
            .contains("Check at least one patient"));
    }
);

on_both_backends!(
    all_matching_archives_exactly_the_filtered_patients_and_restores_them,
    |app: TestApp| async move {
        let (org, client, _ids) = setup(&app, 5).await;
        let list = format!("/patients?organization_id={org}&q=family0");
        let org_s = org.to_string();
        // "family0" matches Family00 .. Family04: all five; narrow with a second word.
        let res = app
            .post_form(
                &client,
                &list,
                "/patients/bulk",
                &[
                    ("organization_id", org_s.as_str()),
                    ("q", "family03"),
                    ("action", "archive"),
                    ("all_matching", "on"),
                ],
            )
            .await;
        let (_, html) = app.follow(&client, res).await;
        assert!(
            html.text(".flash-success").contains("Archived 1 of 1"),
            "{}",
            html.text(".flashes")
        );
        let (_, active) = app
            .get_html(&client, &format!("/patients?organization_id={org}"))
            .await;
        assert_eq!(listed(&active), 4);
        let (_, archived) = app
            .get_html(
                &client,
                &format!("/patients?organization_id={org}&archived=archived"),
            )
            .await;
        assert_eq!(listed(&archived), 1);
        assert!(archived.text("table.data").contains("Family03"));
        let res = app
            .post_form(
                &client,
                &list,
                "/patients/bulk",
                &[
                    ("organization_id", org_s.as_str()),
                    ("archived", "archived"),
                    ("action", "restore"),
                    ("all_matching", "on"),
                ],
            )
            .await;
        let (_, html) = app.follow(&client, res).await;
        assert!(html.text(".flash-success").contains("Restored 1 of 1"));
        let (_, active) = app
            .get_html(&client, &format!("/patients?organization_id={org}"))
            .await;
        assert_eq!(listed(&active), 5);
    }
);

on_both_backends!(
    bulk_actions_touch_only_this_organizations_patients_and_viewers_cannot_use_them,
    |app: TestApp| async move {
        let (org, client, ids) = setup(&app, 1).await;
        let (ouid, opid) = app.practitioner("other@example.org", false);
        let other_org = app.org("South", 0, &[(opid, "manager")]);
        let res = script()
        .post(app.at("/api/v1/patients"))
        .bearer_auth(app.token(ouid))
        .json(&serde_json::json!({"organizationId": other_org, "telecomEmail": "s@example.org", "nameFamily": "South", "nameGiven": "Sam"}))
        .send()
        .await
        .unwrap();
        let theirs = res.json::<serde_json::Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap()
            .to_string();
        let mine = ids[0].to_string();
        let list = format!("/patients?organization_id={org}");
        let org_s = org.to_string();
        let res = app
            .post_form(
                &client,
                &list,
                "/patients/bulk",
                &[
                    ("organization_id", org_s.as_str()),
                    ("action", "archive"),
                    ("ids", mine.as_str()),
                    ("ids", theirs.as_str()),
                ],
            )
            .await;
        let (_, html) = app.follow(&client, res).await;
        assert!(
            html.text(".flash-success").contains("Archived 1 of 2"),
            "{}",
            html.text(".flashes")
        );
        {
            use cohort::db::schema::patient_organizations as po;
            use diesel::prelude::*;
            let mut c = app.conn();
            let archived: Option<chrono::NaiveDateTime> = po::table
                .filter(po::patient_id.eq(theirs.parse::<i64>().unwrap()))
                .select(po::archived_at)
                .first(&mut c)
                .unwrap();
            assert!(
                archived.is_none(),
                "another organization's patient is untouched"
            );
        }

        let (vuid, vpid) = app.practitioner("viewer@example.org", false);
        {
            use cohort::db::schema::practitioner_organizations as m;
            use diesel::prelude::*;
            let mut c = app.conn();
            diesel::insert_into(m::table)
                .values((
                    m::practitioner_id.eq(vpid),
                    m::organization_id.eq(org),
                    m::role.eq("viewer"),
                    m::created_at.eq(cohort::util::now()),
                ))
                .execute(&mut c)
                .unwrap();
        }
        let viewer = app.signed_in(vuid).await;
        let (_, page) = app.get_html(&viewer, &list).await;
        assert!(
            !page.exists("#bulk") && !page.exists("input[name=ids]"),
            "no bulk controls for a viewer"
        );
        let res = app
            .post_form(
                &viewer,
                &list,
                "/patients/bulk",
                &[
                    ("organization_id", org_s.as_str()),
                    ("action", "archive"),
                    ("ids", mine.as_str()),
                ],
            )
            .await;
        assert_eq!(res.status(), 403);
        assert!(
            page.unlabelled_inputs().is_empty(),
            "{:?}",
            page.unlabelled_inputs()
        );
    }
);
