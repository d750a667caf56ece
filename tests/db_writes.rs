//! Writes under concurrency: many at once, some failing, one panicking. On SQLite they share
//! commits (group commit); each must still succeed or fail on its own, and what a caller is
//! told must match what is in the database.

mod common;

use common::*;
use diesel::prelude::*;
use diesel::sql_types::Text;

use cohort::error::AppError;

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// The project's own organization insert: a write with a row to show for it.
fn insert_org(conn: &mut cohort::db::DbConnection, name: &str) -> Result<i64, AppError> {
    cohort::organization::repo::create(conn, name, "team", 0, None)
}

fn names(app: &TestApp) -> Vec<String> {
    let mut conn = app.conn();
    diesel::sql_query("SELECT name FROM organizations WHERE name LIKE 'batch-%' ORDER BY name")
        .load::<Name>(&mut *conn)
        .expect("names")
        .into_iter()
        .map(|n| n.name)
        .collect()
}

on_both_backends!(
    concurrent_writes_succeed_or_fail_one_by_one,
    |app: TestApp| async move {
        let db = app.state.db.clone();
        let mut tasks = Vec::new();
        for i in 0..120 {
            let db = db.clone();
            tasks.push(actix_web::rt::spawn(async move {
                db.tx(move |conn| {
                    let name = format!("batch-{i:03}");
                    let id = insert_org(conn, &name)?;
                    if i % 4 == 3 {
                        // Written, then refused: the write must be rolled back alone.
                        return Err(AppError::Conflict(format!("{name} refused")));
                    }
                    Ok((i, id))
                })
                .await
            }));
        }
        let mut ok = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.expect("task") {
                Ok((j, id)) => {
                    assert_eq!(i, j, "each caller gets its own result");
                    assert!(id > 0);
                    ok.push(format!("batch-{i:03}"));
                }
                Err(AppError::Conflict(m)) => {
                    assert_eq!(i % 4, 3, "only the refused ones fail: {m}");
                    assert_eq!(m, format!("batch-{i:03} refused"));
                }
                Err(e) => panic!("write {i} failed: {e:?}"),
            }
        }
        assert_eq!(ok.len(), 90);
        assert_eq!(names(&app), ok, "exactly the successful writes are stored");
    }
);

on_both_backends!(
    a_panicking_write_fails_alone_and_the_next_write_works,
    |app: TestApp| async move {
        let db = app.state.db.clone();
        let boom = actix_web::rt::spawn({
            let db = db.clone();
            async move {
                db.tx(|conn| -> Result<(), AppError> {
                    insert_org(conn, "batch-panic")?;
                    panic!("a bug in a write")
                })
                .await
            }
        })
        .await;
        // The caller hears of it (as an error, or as the task's panic), and nothing is kept.
        assert!(
            !matches!(boom, Ok(Ok(()))),
            "a panicking write is not reported as done"
        );
        assert!(names(&app).is_empty(), "{:?}", names(&app));
        let id = db
            .tx(|conn| insert_org(conn, "batch-after"))
            .await
            .expect("the next write works");
        assert!(id > 0);
        assert_eq!(names(&app), vec!["batch-after".to_string()]);
    }
);

on_both_backends!(
    concurrent_creates_and_removals_keep_the_organizations_total_exact,
    |app: TestApp| async move {
        let (user, pid) = app.practitioner("mel@example.org", false);
        let org = app.org("Counted", 0, &[(pid, "manager")]);
        let token = app.token(user);
        let client = script();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (client, token, url) = (client.clone(), token.clone(), app.at("/api/v1/patients"));
            tasks.push(actix_web::rt::spawn(async move {
                let res = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&serde_json::json!({
                        "organizationId": org,
                        "telecomEmail": format!("p{i}@example.org"),
                        "nameFamily": "Count",
                        "nameGiven": format!("P{i}"),
                        "birthDate": "1990-01-01",
                    }))
                    .send()
                    .await
                    .expect("create");
                assert_eq!(res.status(), 201);
                res.json::<serde_json::Value>().await.expect("json")["id"]
                    .as_i64()
                    .expect("id")
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.expect("task"));
        }
        let total = |client: reqwest::Client, token: String| {
            let url = app.at(&format!("/api/v1/patients?organizationId={org}"));
            async move {
                let v: serde_json::Value = client
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("list")
                    .json()
                    .await
                    .expect("json");
                v["count"].as_i64().expect("count")
            }
        };
        assert_eq!(total(client.clone(), token.clone()).await, 40);
        // Ten removed from the organization at once: the total follows.
        let mut removals = Vec::new();
        for id in &ids[..10] {
            let (client, token) = (client.clone(), token.clone());
            let url = app.at(&format!("/api/v1/patients/{id}?organizationId={org}"));
            removals.push(actix_web::rt::spawn(async move {
                client
                    .delete(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("remove")
                    .status()
                    .as_u16()
            }));
        }
        for r in removals {
            assert_eq!(r.await.expect("task"), 204);
        }
        assert_eq!(total(client.clone(), token.clone()).await, 30);
        // Once its links are gone the organization can be deleted, its count with it.
        let mut conn = app.conn();
        diesel::sql_query(format!(
            "DELETE FROM patient_organizations WHERE organization_id = {org}"
        ))
        .execute(&mut *conn)
        .expect("links go");
        diesel::sql_query(format!("DELETE FROM organizations WHERE id = {org}"))
            .execute(&mut *conn)
            .expect("organization goes");
    }
);
