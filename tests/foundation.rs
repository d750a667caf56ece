//! Start-up, configuration, migrations on both backends, the CLI, and the server's frame:
//! error pages, security headers, static assets.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};

on_both_backends!(
    first_run_makes_an_admin_whose_one_time_link_signs_in,
    |app: TestApp| async move {
        let link = app
            .admin_link
            .clone()
            .expect("a first run prints a sign-in link");
        assert!(
            link.starts_with(&app.url),
            "the link points at this server: {link}"
        );
        let client = browser();
        let res = client.get(&link).send().await.unwrap();
        assert_eq!(res.status(), 303);
        let (status, page) = app.follow(&client, res).await;
        assert_eq!(status, 200);
        assert_eq!(page.text("h1"), "Organizations");
        assert!(page.text(".user-menu").contains("admin@localhost"));

        // The same link a second time is refused with a page that says why.
        let again = browser().get(&link).send().await.unwrap();
        assert_eq!(again.status(), 410);
        let page = common::html::Page::new(&again.text().await.unwrap());
        assert!(page.text("main").contains("already used"));
        assert!(app.audit_actions().contains(&"sign_in".to_string()));
        assert!(app.audit_actions().contains(&"sign_in.failed".to_string()));
    }
);

on_both_backends!(
    a_second_start_on_the_same_database_makes_no_new_admin,
    |app: TestApp| async move {
        let mut conn = app.conn();
        let again = cohort::startup::first_run_admin(&mut conn, &app.state.config).unwrap();
        assert!(
            again.is_none(),
            "only an empty database gets a first-run admin"
        );
    }
);

on_both_backends!(
    unknown_pages_get_the_html_404_and_unknown_api_paths_json,
    |app: TestApp| async move {
        let admin = app.signed_in(app.admin_user_id()).await;
        let (status, page) = app.get_html(&admin, "/no-such-page").await;
        assert_eq!(status, 404);
        assert_eq!(page.text("h1"), "Page not found");
        assert!(
            page.exists("nav.tabs"),
            "the error page keeps the console's navigation"
        );

        let res = script()
            .get(app.at("/api/v1/nothing-here"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("/api/v1/nothing-here"));
    }
);

on_both_backends!(
    pages_carry_a_strict_policy_and_assets_are_cached,
    |app: TestApp| async move {
        let res = script().get(app.at("/auth/sign-in")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let csp = res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(res.headers()["x-frame-options"], "DENY");
        let body = res.text().await.unwrap();
        assert!(!body.contains("<script>"), "no inline script");
        assert!(!body.contains(" style=\""), "no inline style");

        let css = script()
            .get(app.at("/static/css/app.css"))
            .send()
            .await
            .unwrap();
        assert_eq!(css.status(), 200);
        assert!(css.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age"));
        assert!(css.headers().contains_key("etag"));
    }
);

on_both_backends!(
    the_api_needs_a_valid_token_and_audits_each_use,
    |app: TestApp| async move {
        let (uid, _) = app.practitioner("ana@example.org", false);
        let res = script()
            .get(app.at("/api/v1/users/profile"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("Bearer"));

        let bad = script()
            .get(app.at("/api/v1/users/profile"))
            .bearer_auth("cohort_not-a-real-token")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 401);

        let token = app.token(uid);
        let res = script()
            .get(app.at("/api/v1/users/profile"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let me: serde_json::Value = res.json().await.unwrap();
        assert_eq!(me["email"], "ana@example.org");
        assert_eq!(me["id"], uid);
        assert_eq!(me["userType"], "practitioner");
        assert_eq!(me["isSuperuser"], false);
        assert!(me["patient"].is_null());
        // Token uses are written in batches just after the response: wait for them briefly.
        let mut actions = app.audit_actions();
        for _ in 0..100 {
            if actions.contains(&"token.use".to_string()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            actions = app.audit_actions();
        }
        assert!(actions.contains(&"token.use".to_string()));
        assert!(actions.contains(&"token.rejected".to_string()));

        // Revoked: refused at once.
        {
            let mut c = app.conn();
            let id = cohort::auth::token::list(&mut c, uid).unwrap()[0].id;
            assert!(cohort::auth::token::revoke(&mut c, uid, id).unwrap());
        }
        let res = script()
            .get(app.at("/api/v1/users/profile"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
);

#[derive(QueryableByName, Debug)]
struct SqliteCol {
    #[diesel(sql_type = Text)]
    tbl: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    notnull: i32,
}

#[derive(QueryableByName, Debug)]
struct PgCol {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

#[actix_web::test]
async fn both_migration_trees_give_the_same_tables_and_columns() {
    let Some(sqlite) = spawn(Backend::Sqlite).await else {
        return;
    };
    let Some(pg) = spawn(Backend::Postgres).await else {
        return;
    };
    let cohort::db::DbConnection::Sqlite(mut s) = sqlite.raw_conn() else {
        panic!("sqlite")
    };
    let lite: BTreeSet<(String, String, bool)> = diesel::sql_query(
        "SELECT m.name AS tbl, p.name AS name, p.\"notnull\" AS \"notnull\" \
         FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '__diesel%'",
    )
    .load::<SqliteCol>(&mut s)
    .unwrap()
    .into_iter()
    // SQLite reports INTEGER PRIMARY KEY columns as nullable; they are not.
    .map(|c| (c.tbl, c.name.clone(), c.notnull == 1 || c.name == "id"))
    .collect();
    let cohort::db::DbConnection::Postgres(mut p) = pg.raw_conn() else {
        panic!("postgres")
    };
    let post: BTreeSet<(String, String, bool)> = diesel::sql_query(
        "SELECT table_name::text AS table_name, column_name::text AS column_name, is_nullable::text AS is_nullable \
         FROM information_schema.columns WHERE table_schema = current_schema() \
         AND table_name NOT LIKE '__diesel%'",
    )
    .load::<PgCol>(&mut p)
    .unwrap()
    .into_iter()
    .map(|c| (c.table_name, c.column_name, c.is_nullable == "NO"))
    .collect();
    assert!(
        lite.len() > 100,
        "the schema was read: {} columns",
        lite.len()
    );
    let only_lite: Vec<_> = lite.difference(&post).collect();
    let only_pg: Vec<_> = post.difference(&lite).collect();
    assert!(
        only_lite.is_empty() && only_pg.is_empty(),
        "SQLite only: {only_lite:?}\nPostgreSQL only: {only_pg:?}"
    );
}

fn cohort_cmd(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cohort"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("COHORT_DATA_DIR", data_dir)
        .current_dir(data_dir);
    cmd
}

#[test]
fn the_cli_makes_admins_and_tokens_and_prints_the_token_alone_on_the_last_line() {
    let dir = temp_dir("cli");
    let _cleanup = Cleanup(dir.clone());
    let out = cohort_cmd(&dir).arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = cohort_cmd(&dir)
        .args(["create-admin", "--email", "Boss@Example.org"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("boss@example.org is a superuser"), "{text}");
    assert!(text.contains("/auth/link/"), "{text}");

    let out = cohort_cmd(&dir)
        .args([
            "token",
            "create",
            "--email",
            "boss@example.org",
            "--label",
            "notebook",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("cohort_") && !last.contains(' '),
        "last line is the token alone: {last:?}"
    );

    let out = cohort_cmd(&dir)
        .args(["token", "list", "--email", "boss@example.org"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("notebook"));

    let out = cohort_cmd(&dir)
        .args(["token", "revoke", last])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Revoked token"));

    let out = cohort_cmd(&dir)
        .args(["token", "create", "--email", "nobody@example.org"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No user with the e-mail nobody@example.org")
    );

    let out = cohort_cmd(&dir).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: cohort"));
}

#[test]
fn a_wrong_setting_stops_start_up_naming_the_variable() {
    let dir = temp_dir("badcfg");
    let _cleanup = Cleanup(dir.clone());
    for (var, value) in [
        ("COHORT_ADDR", "localhost"),
        ("DATABASE_URL", "mysql://x/y"),
        ("COHORT_PUBLIC_URL", "not a url"),
        ("SMTP_URL", "mail.example.org"),
    ] {
        let out = cohort_cmd(&dir)
            .env(var, value)
            .arg("serve")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} must stop start-up");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "the message names {var}: {err}");
    }
}
