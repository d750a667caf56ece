//! Start-up: prepare the data dir, connect, migrate, resolve the secret, make the first admin,
//! and build the HTTP server. Every route is registered here.

use std::net::TcpListener;

use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::{DefaultHeaders, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use diesel::prelude::*;
use sha2::{Digest, Sha512};

use crate::auth::{self, oidc::Oidc};
use crate::config::{Backend, Config};
use crate::console::{self, errors};
use crate::db::{self, schema::server_settings, Db, DbConnection};
use crate::mail::Mail;
use crate::{
    audit, consent, data_source, invitation, organization, patient, practitioner, profile, study,
};

pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub mail: Mail,
    pub oidc: Option<Oidc>,
    /// Consent review totals per study, checked against the database on each use.
    pub review_totals: crate::consent::TotalsCache,
    /// Imports running in the background on this instance: id → (patients written, to write).
    pub import_progress: std::sync::Mutex<std::collections::HashMap<i64, (usize, usize)>>,
    /// Token uses, written in batches (see `audit::Queue`).
    pub audit_queue: crate::audit::Queue,
    /// The data types: seeded by the migrations and never changed, so read once.
    pub concepts: std::sync::OnceLock<std::sync::Arc<crate::observation::Concepts>>,
}

impl AppState {
    /// The data types, from the first read on.
    pub fn concepts(
        &self,
        conn: &mut crate::db::DbConnection,
    ) -> Result<std::sync::Arc<crate::observation::Concepts>, crate::error::AppError> {
        if let Some(c) = self.concepts.get() {
            return Ok(c.clone());
        }
        let all = std::sync::Arc::new(crate::observation::Concepts::new(
            crate::observation::concepts(conn)?,
        ));
        Ok(self.concepts.get_or_init(|| all).clone())
    }

    /// The server secret; always set once start-up has finished.
    pub fn secret(&self) -> &str {
        self.config.secret_key.as_deref().unwrap_or_default()
    }
}

pub struct Application {
    port: u16,
    server: Server,
    pub state: web::Data<AppState>,
    /// Set on the first run: the administrator's one-time sign-in link.
    pub admin_link: Option<String>,
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Connects and migrates; shared by `serve` and the CLI verbs.
pub fn prepare(config: &mut Config) -> Result<db::Pool, String> {
    prepare_pool(config, false)
}

/// `prepare` for a command-line verb: a small pool that opens nothing in the background.
pub fn prepare_for_command(config: &mut Config) -> Result<db::Pool, String> {
    prepare_pool(config, true)
}

fn prepare_pool(config: &mut Config, command: bool) -> Result<db::Pool, String> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "COHORT_DATA_DIR: cannot create {}: {e}",
            config.data_dir.display()
        )
    })?;
    let pool = if command {
        db::connect_sized(&config.database_url, config.backend.clone(), 2, Some(0))?
    } else {
        db::connect(&config.database_url, config.backend.clone())?
    };
    let mut conn = pool
        .get()
        .map_err(|e| format!("DATABASE_URL: cannot connect: {e}"))?;
    let applied = db::migrate(&mut conn)?;
    for m in &applied {
        tracing::info!(migration = %m, "applied migration");
    }
    // Statistics a command (a large import) left stale are brought up to date before serving.
    if !command {
        db::refresh_statistics(&mut conn)
            .map_err(|e| format!("cannot refresh the planner's statistics: {e}"))?;
    }
    if config.secret_key.is_none() {
        config.secret_key = Some(resolve_secret(config, &mut conn)?);
    }
    Ok(pool)
}

/// With no COHORT_SECRET_KEY: SQLite keeps a generated key in the data dir; PostgreSQL keeps
/// it in the database, so every instance behind a load balancer signs with the same key.
fn resolve_secret(config: &Config, conn: &mut DbConnection) -> Result<String, String> {
    let fresh = crate::util::random_token(48);
    match (&config.backend, conn) {
        (Backend::Postgres, DbConnection::Postgres(c)) => {
            diesel::insert_into(server_settings::table)
                .values((
                    server_settings::key.eq("secret_key"),
                    server_settings::value.eq(&fresh),
                ))
                .on_conflict_do_nothing()
                .execute(c)
                .map_err(|e| format!("cannot store the generated secret key: {e}"))?;
            server_settings::table
                .find("secret_key")
                .select(server_settings::value)
                .first::<String>(c)
                .map_err(|e| format!("cannot read the secret key: {e}"))
        }
        _ => {
            let path = config.data_dir.join("secret_key");
            if let Ok(existing) = std::fs::read_to_string(&path) {
                let existing = existing.trim().to_string();
                if existing.len() >= 32 {
                    return Ok(existing);
                }
            }
            write_private(&path, &fresh).map_err(|e| {
                format!(
                    "COHORT_SECRET_KEY: unset, and {} cannot be written: {e}",
                    path.display()
                )
            })?;
            tracing::info!(path = %path.display(), "generated a secret key");
            Ok(fresh)
        }
    }
}

fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(content.as_bytes())
}

/// On a database with no practitioner at all, makes the configured admin and returns a
/// one-time sign-in link for them.
pub fn first_run_admin(conn: &mut DbConnection, config: &Config) -> Result<Option<String>, String> {
    let result = conn.transaction::<_, crate::error::AppError, _>(|conn| {
        if practitioner::repo::count_practitioners(conn)? > 0 {
            return Ok(None);
        }
        let user_id = practitioner::ensure_admin(conn, &config.admin_email)?;
        let secret = auth::code::create_link(conn, user_id)?;
        Ok(Some(config.url(&format!("/auth/link/{secret}"))))
    });
    match result {
        Ok(link) => Ok(link),
        // Another instance made the admin at the same moment: nothing more to do here.
        Err(crate::error::AppError::Conflict(_)) => Ok(None),
        Err(e) => Err(format!("cannot create the first administrator: {e:?}")),
    }
}

impl Application {
    pub async fn build(mut config: Config) -> Result<Application, String> {
        let listener = TcpListener::bind(config.addr)
            .map_err(|e| format!("COHORT_ADDR: cannot listen on {}: {e}", config.addr))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("COHORT_ADDR: {e}"))?;
        if std::env::var("COHORT_PUBLIC_URL").is_err()
            && config.public_url == format!("http://{}", config.addr)
        {
            config.public_url = format!("http://{local}");
        }
        let pool = prepare(&mut config)?;
        let admin_link = {
            let mut conn = pool.get().map_err(|e| format!("DATABASE_URL: {e}"))?;
            first_run_admin(&mut conn, &config)?
        };
        let mail = Mail::new(
            config.smtp_url.as_deref(),
            &config.mail_from,
            &config.data_dir,
        )?;
        let oidc = match &config.oidc {
            Some(s) => Some(Oidc::new(s.clone(), &config.public_url)?),
            None => None,
        };
        let db = Db::new(pool, &config.backend, &config.database_url);
        let audit_queue = crate::audit::Queue::start(db.clone());
        let state = web::Data::new(AppState {
            config,
            db,
            mail,
            oidc,
            review_totals: Default::default(),
            import_progress: Default::default(),
            audit_queue,
            concepts: Default::default(),
        });
        let server = server(listener, state.clone())?;
        Ok(Application {
            port: local.port(),
            server,
            state,
            admin_link,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stopped = self.server.await;
        // Reads noted just before the stop may still be queued: written before exiting.
        self.state.audit_queue.flush().await;
        self.state.db.finish().await;
        stopped
    }
}

fn session_key(secret: &str) -> Key {
    let mut h = Sha512::new();
    h.update(b"cohort session key\0");
    h.update(secret.as_bytes());
    Key::from(&h.finalize())
}

fn server(listener: TcpListener, state: web::Data<AppState>) -> Result<Server, String> {
    let key = session_key(state.secret());
    let server = HttpServer::new(move || {
        let config = &state.config;
        let sessions = SessionMiddleware::builder(CookieSessionStore::default(), key.clone())
            .cookie_name("cohort_session".into())
            .cookie_secure(config.secure_cookies())
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .session_lifecycle(
                PersistentSession::default()
                    .session_ttl(actix_web::cookie::time::Duration::minutes(
                        config.session_idle_minutes,
                    ))
                    .session_ttl_extension_policy(TtlExtensionPolicy::OnStateChanges),
            )
            .build();
        App::new()
            .app_data(state.clone())
            .app_data(crate::api::json_config())
            .app_data(crate::api::query_config())
            .app_data(crate::api::path_config())
            .wrap(
                DefaultHeaders::new()
                    .add(("Content-Security-Policy", CSP))
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "same-origin"))
                    .add(("X-Frame-Options", "DENY")),
            )
            .service(
                web::scope("/static")
                    .wrap(DefaultHeaders::new().add(("Cache-Control", "public, max-age=3600")))
                    .service(actix_files::Files::new("", config.static_dir.clone())),
            )
            .route("/healthz", web::get().to(console::home::health))
            .service(
                web::scope("/api/v1")
                    .configure(practitioner::api::routes)
                    .configure(organization::api::routes)
                    // Before the patient routes: patients/me is not an id.
                    .configure(crate::portal::api::routes)
                    .configure(crate::portal::oauth::api_routes)
                    .configure(patient::api::routes)
                    .configure(invitation::api::routes)
                    .configure(study::api::routes)
                    .configure(consent::api::routes)
                    .configure(data_source::api::routes)
                    .configure(crate::observation::api::routes)
                    .default_service(web::to(errors::api_not_found)),
            )
            .service(web::scope("/FHIR/R5").configure(crate::fhir::routes))
            .configure(crate::portal::oauth::routes)
            .service(
                web::scope("")
                    .wrap(ErrorHandlers::new().default_handler(errors::html_error))
                    .wrap(sessions)
                    .configure(auth::pages::routes)
                    .configure(console::home::routes)
                    .configure(organization::pages::routes)
                    // Before the patient pages: /patients/import is not a patient id.
                    .configure(crate::import::pages::routes)
                    .configure(patient::pages::routes)
                    .configure(invitation::pages::routes)
                    .configure(crate::portal::pages::routes)
                    .configure(crate::portal::console::routes)
                    .configure(study::pages::routes)
                    .configure(consent::pages::routes)
                    .configure(data_source::pages::routes)
                    .configure(crate::observation::pages::routes)
                    .configure(practitioner::pages::routes)
                    .configure(profile::pages::routes)
                    .configure(audit::pages::routes)
                    .default_service(web::to(errors::console_not_found)),
            )
    })
    .listen(listener)
    .map_err(|e| format!("cannot serve: {e}"))?
    .run();
    Ok(server)
}
