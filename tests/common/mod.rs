//! Test harness: starts the real Cohort server on 127.0.0.1:0 against a fresh SQLite file or a
//! fresh PostgreSQL schema, and gives tests clients that behave like a browser or a script.
#![allow(dead_code)]

pub mod fixtures;
pub mod html;
pub mod webdriver;

use std::collections::HashMap;
use std::path::PathBuf;

use actix_web::web;
use cohort::config::Config;
use cohort::db::{DbConnection, PooledConn};
use cohort::startup::{AppState, Application};
use diesel::connection::SimpleConnection;
use diesel::Connection;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// In CI nothing may be skipped: a missing part fails the test instead.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Skips (printing why) on a laptop; fails in CI.
pub fn skip_or_fail(what: &str) {
    if in_ci() {
        panic!("CI=true but {what}");
    }
    eprintln!("SKIPPED: {what}");
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cohort-test-{tag}-{}-{}",
        std::process::id(),
        cohort::util::random_token(6).replace(['-', '_'], "x")
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Removes a folder when it goes out of scope, also when the test fails.
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh PostgreSQL schema for one test, dropped when the test ends.
pub struct PgSchema {
    pub base_url: String,
    pub name: String,
}

impl PgSchema {
    pub fn create() -> Option<PgSchema> {
        let Ok(base_url) = std::env::var("TEST_DATABASE_URL") else {
            skip_or_fail("TEST_DATABASE_URL is not set, so the PostgreSQL half of this test did not run (export TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test)");
            return None;
        };
        let name = format!(
            "t_{}",
            cohort::util::random_token(9)
                .to_lowercase()
                .replace(['-', '_'], "x")
        );
        // This is the process's first PostgreSQL connection.
        cohort::db::init_postgres_tls();
        let mut conn = diesel::PgConnection::establish(&base_url)
            .unwrap_or_else(|e| panic!("TEST_DATABASE_URL={base_url} does not connect: {e}"));
        conn.batch_execute(&format!("CREATE SCHEMA {name}"))
            .expect("create schema");
        Some(PgSchema { base_url, name })
    }

    pub fn url(&self) -> String {
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}options=-csearch_path%3D{}",
            self.base_url, self.name
        )
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut conn) = diesel::PgConnection::establish(&self.base_url) {
            let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

pub struct TestApp {
    pub url: String,
    pub port: u16,
    pub state: web::Data<AppState>,
    pub data_dir: PathBuf,
    pub backend: Backend,
    pub admin_link: Option<String>,
    _pg: Option<PgSchema>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The server may still hold the SQLite file open; on Unix removing it is fine.
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Settings a test adds to the defaults, such as OIDC or SMTP.
pub type Extra = Vec<(&'static str, String)>;

pub async fn spawn(backend: Backend) -> Option<TestApp> {
    spawn_with(backend, Vec::new()).await
}

pub async fn spawn_with(backend: Backend, extra: Extra) -> Option<TestApp> {
    let data_dir = temp_dir("data");
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(PgSchema::create()?),
    };
    let mut vars: HashMap<&str, String> = HashMap::new();
    vars.insert("COHORT_ADDR", "127.0.0.1:0".into());
    vars.insert("COHORT_DATA_DIR", data_dir.display().to_string());
    vars.insert(
        "COHORT_SECRET_KEY",
        "test-secret-key-test-secret-key-0123456789".into(),
    );
    vars.insert(
        "DATABASE_URL",
        match &pg {
            Some(s) => s.url(),
            None => format!("sqlite://{}", data_dir.join("cohort.sqlite3").display()),
        },
    );
    for (k, v) in extra {
        vars.insert(k, v);
    }
    let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("test config is valid");
    let app = Application::build(config).await.expect("app starts");
    let port = app.port();
    let state = app.state.clone();
    let admin_link = app.admin_link.clone();
    actix_web::rt::spawn(app.run_until_stopped());
    Some(TestApp {
        url: format!("http://127.0.0.1:{port}"),
        port,
        state,
        data_dir,
        backend,
        admin_link,
        _pg: pg,
    })
}

/// Declares one test that runs twice: `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($(#[$meta:meta])* $name:ident, $body:expr) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[actix_web::test]
            async fn sqlite() {
                if let Some(app) = $crate::common::spawn($crate::common::Backend::Sqlite).await {
                    ($body)(app).await;
                }
            }
            #[actix_web::test]
            async fn postgres() {
                if let Some(app) = $crate::common::spawn($crate::common::Backend::Postgres).await {
                    ($body)(app).await;
                }
            }
        }
    };
}

/// A client like a browser: keeps cookies, does not follow redirects (tests look at them).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub fn script() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

impl TestApp {
    pub fn conn(&self) -> PooledConn {
        self.state.db.pool.get().expect("db connection")
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A practitioner; returns (user id, practitioner id).
    pub fn practitioner(&self, email: &str, superuser: bool) -> (i64, i64) {
        let mut c = self.conn();
        cohort::practitioner::repo::create_practitioner(&mut c, email, "Pat", "Tester", superuser)
            .expect("create practitioner")
    }

    /// The first-run administrator's user id.
    pub fn admin_user_id(&self) -> i64 {
        let mut c = self.conn();
        cohort::practitioner::repo::find_by_email(&mut c, "admin@localhost")
            .expect("query")
            .expect("the first run made an admin")
            .user
            .id
    }

    /// An organization made directly in the database, with `members` as (practitioner, role).
    pub fn org(&self, name: &str, part_of: i64, members: &[(i64, &str)]) -> i64 {
        use cohort::db::schema::practitioner_organizations as po;
        use diesel::prelude::*;
        let mut c = self.conn();
        let id =
            cohort::organization::repo::create(&mut c, name, "team", part_of, None).expect("org");
        for (pid, role) in members {
            diesel::insert_into(po::table)
                .values((
                    po::practitioner_id.eq(*pid),
                    po::organization_id.eq(id),
                    po::role.eq(*role),
                    po::created_at.eq(cohort::util::now()),
                ))
                .execute(&mut c)
                .expect("membership");
        }
        id
    }

    /// A browser-like client signed in as `user_id` through a one-time link.
    pub async fn signed_in(&self, user_id: i64) -> reqwest::Client {
        let secret = {
            let mut c = self.conn();
            cohort::auth::code::create_link(&mut c, user_id).expect("link")
        };
        let client = browser();
        let res = client
            .get(self.at(&format!("/auth/link/{secret}")))
            .send()
            .await
            .expect("link request");
        assert_eq!(res.status(), 303, "a fresh link signs in");
        client
    }

    /// A personal API token for `user_id`.
    pub fn token(&self, user_id: i64) -> String {
        let mut c = self.conn();
        cohort::auth::token::create(&mut c, user_id, "test", "personal")
            .expect("token")
            .1
    }

    pub async fn get_html(&self, client: &reqwest::Client, path: &str) -> (u16, html::Page) {
        let res = client.get(self.at(path)).send().await.expect("GET");
        let status = res.status().as_u16();
        (status, html::Page::new(&res.text().await.expect("body")))
    }

    /// Fetches `page` for its CSRF token, then posts `fields` with it to `action`.
    pub async fn post_form(
        &self,
        client: &reqwest::Client,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let (_, html) = self.get_html(client, page).await;
        let token = html
            .attr("input[name=csrf_token]", "value")
            .expect("the page has a CSRF token");
        let mut form: Vec<(&str, &str)> = vec![("csrf_token", token.as_str())];
        form.extend_from_slice(fields);
        client
            .post(self.at(action))
            .form(&form)
            .send()
            .await
            .expect("POST")
    }

    /// Follows one redirect and returns the page it leads to.
    pub async fn follow(
        &self,
        client: &reqwest::Client,
        res: reqwest::Response,
    ) -> (u16, html::Page) {
        let loc = res
            .headers()
            .get("location")
            .unwrap_or_else(|| panic!("expected a redirect, got {}", res.status()))
            .to_str()
            .expect("location")
            .to_string();
        self.get_html(client, &loc).await
    }

    pub fn audit_actions(&self) -> Vec<String> {
        use cohort::db::schema::audit_events as a;
        use diesel::prelude::*;
        let mut c = self.conn();
        a::table
            .select(a::action)
            .order(a::id.asc())
            .load(&mut c)
            .expect("audit")
    }

    /// Waits (up to five seconds) until `action` has been recorded `n` times: reads are
    /// audited through a queue that writes in batches.
    pub async fn wait_for_audit(&self, action: &str, n: usize) {
        for _ in 0..100 {
            if self.audit_actions().iter().filter(|a| *a == action).count() >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "{action} was not recorded {n} times: {:?}",
            self.audit_actions()
        );
    }

    pub fn raw_conn(&self) -> DbConnection {
        cohort::db::Manager::new(
            &self.state.config.database_url,
            self.state.config.backend.clone(),
        )
        .open()
        .expect("connect")
    }
}
