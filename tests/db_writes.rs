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

fn insert_org(conn: &mut cohort::db::DbConnection, name: &str) -> Result<i64, AppError> {
    let now = chrono::Utc::now().naive_utc();
    use cohort::db::schema::organizations as o;
    diesel::insert_into(o::table)
        .values((
            o::name.eq(name),
            o::org_type.eq("other"),
            o::part_of.eq(None::<i64>),
            o::created_at.eq(now),
            o::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(o::table
        .filter(o::name.eq(name))
        .select(o::id)
        .first(conn)?)
}

fn names(app: &TestApp) -> Vec<String> {
    let mut conn = app.conn();
    let mut v: Vec<String> =
        diesel::sql_query("SELECT name FROM organizations WHERE name LIKE 'batch-%' ORDER BY name")
            .load::<Name>(&mut *conn)
            .expect("names")
            .into_iter()
            .map(|n| n.name)
            .collect();
    v.sort();
    v
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
