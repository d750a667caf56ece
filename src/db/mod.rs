//! Database access: the pool, the backend chosen from `DATABASE_URL`, embedded migrations,
//! and `Db`, which runs blocking diesel work off the async executor.

mod conn;
mod ids;
pub mod schema;
pub mod sql;
pub mod time;
mod writer;

use std::time::Duration;

use actix_web::web;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub use conn::{DbConnection, MultiBackend};
pub use ids::{InIds, InTexts};

use crate::config::Backend;
use crate::error::AppError;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Any lock key will do as long as every instance uses the same one.
const MIGRATION_LOCK_KEY: i64 = 0x0C0_40E7;

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConn = r2d2::PooledConnection<Manager>;

/// Opens connections for the backend the URL names. Choosing it ourselves (instead of the
/// derived `establish`) keeps the driver's own error message, which names what went wrong.
#[derive(Debug)]
pub struct Manager {
    url: String,
    backend: Backend,
}

impl Manager {
    pub fn new(url: &str, backend: Backend) -> Manager {
        let url = match backend {
            Backend::Sqlite => url.trim_start_matches("sqlite://").to_string(),
            Backend::Postgres => url.to_string(),
        };
        Manager { url, backend }
    }

    pub fn open(&self) -> Result<DbConnection, r2d2::Error> {
        match self.backend {
            Backend::Sqlite => {
                sqlite_process_settings();
                let mut c =
                    SqliteConnection::establish(&self.url).map_err(r2d2::Error::ConnectionError)?;
                // Foreign keys are off by default in SQLite; WAL lets readers run beside a writer.
                // Every write empties the other connections' page caches; with the file mapped
                // into memory they read pages straight from the OS cache instead of copying
                // each one through a read() call (up to SQLite's limit of 2 GB). Checkpoints
                // every 16 MB of WAL rather than 4: each one syncs the database file, and
                // many small uploads would otherwise pay that every few hundred commits.
                c.batch_execute(
                    "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                     PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA mmap_size = 2147418112; PRAGMA wal_autocheckpoint = 4000;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(c))
            }
            Backend::Postgres => {
                init_postgres_tls();
                Ok(DbConnection::Postgres(
                    PgConnection::establish(&self.url).map_err(r2d2::Error::ConnectionError)?,
                ))
            }
        }
    }
}

/// Call before the process's first PostgreSQL connection. libpq speaks TLS through OpenSSL,
/// which by default frees its state in an exit handler while other threads may still hold
/// connections: processes crashed on exit ("free(): invalid pointer" in OPENSSL_cleanup).
/// Initialized here first, OpenSSL registers no such handler. Idempotent.
pub fn init_postgres_tls() {
    openssl_sys::init();
}

/// Process-wide SQLite settings, made once before the first connection. Memory statistics
/// off: with them on, every allocation SQLite makes takes one global mutex, and connections
/// on different threads queue on it.
fn sqlite_process_settings() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config may be called before SQLite initializes, and this is the
        // first SQLite call of the process (guarded by ONCE, ahead of any open). If SQLite
        // was initialized elsewhere first it returns SQLITE_MISUSE and changes nothing.
        let rc =
            unsafe { libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0) };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(rc, "SQLite memory statistics stay on");
        }
        // Multi-thread mode: no mutex around each call on a connection (every step and every
        // column read took and released one). Safe because a connection is only ever used by
        // one thread at a time: the pool hands it out whole, and the writer sits behind a lock.
        // SAFETY: as above.
        let rc =
            unsafe { libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD) };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(rc, "SQLite stays in serialized mode");
        }
        // SAFETY: `stable_plans` has the entry point signature SQLite calls, and stays valid
        // for the life of the process.
        let rc = unsafe { libsqlite3_sys::sqlite3_auto_extension(Some(stable_plans)) };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::warn!(rc, "SQLite statements will be compiled again on every use");
        }
    });
}

/// Runs as each SQLite connection opens: turns on the query planner stability guarantee, so a
/// statement's plan never depends on the values bound to it. Without it SQLite looks at the
/// value bound to every `LIMIT ?` and `OFFSET ?` while planning, and then compiles the
/// statement afresh each time new values are bound; diesel binds both (every `.first()`,
/// every page), so its statement cache kept nothing and each lookup paid a full compile.
/// The plans Cohort relies on come from its indexes, not from bound values (it keeps no
/// per-value statistics and no partial indexes).
unsafe extern "C" fn stable_plans(
    db: *mut libsqlite3_sys::sqlite3,
    _error: *mut *mut std::ffi::c_char,
    _api: *const libsqlite3_sys::sqlite3_api_routines,
) -> std::ffi::c_int {
    // SAFETY: SQLite passes the connection it is opening; the option takes an int and an
    // optional int* for the previous setting.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as std::ffi::c_int,
            std::ptr::null_mut::<std::ffi::c_int>(),
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        // Slower, not wrong: the connection still opens.
        tracing::warn!(rc, "SQLite refused the query planner stability guarantee");
    }
    libsqlite3_sys::SQLITE_OK
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        self.open()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        diesel::sql_query("SELECT 1")
            .execute(conn)
            .map(|_| ())
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        match conn {
            DbConnection::Sqlite(c) => c.is_broken(),
            DbConnection::Postgres(c) => c.is_broken(),
        }
    }
}

/// Makes sure a SQLite file's folder exists, then builds the pool. The first connection is
/// opened here so a bad URL stops start-up with the driver's message.
pub fn connect(url: &str, backend: Backend) -> Result<Pool, String> {
    let size = match backend {
        Backend::Sqlite => 8,
        Backend::Postgres => 16,
    };
    connect_sized(url, backend, size, Some(2))
}

/// `connect` with a chosen size. A command that runs and exits keeps no idle connections:
/// r2d2 opens those on background threads, which must not be mid-connect when the process
/// exits.
pub fn connect_sized(
    url: &str,
    backend: Backend,
    size: u32,
    min_idle: Option<u32>,
) -> Result<Pool, String> {
    let manager = Manager::new(url, backend.clone());
    if backend == Backend::Sqlite {
        if let Some(parent) = std::path::Path::new(&manager.url).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    format!("DATABASE_URL: cannot create {}: {e}", parent.display())
                })?;
            }
        }
    }
    manager
        .open()
        .map_err(|e| format!("DATABASE_URL: cannot connect: {e}"))?;
    r2d2::Pool::builder()
        // A SQLite connection is a file handle: nothing to go stale between uses. PostgreSQL
        // connections can, and are checked with a round trip before each use.
        .test_on_check_out(backend == Backend::Postgres)
        .max_size(size)
        .min_idle(min_idle)
        .connection_timeout(Duration::from_secs(10))
        .build(manager)
        .map_err(|e| format!("DATABASE_URL: cannot build the connection pool: {e}"))
}

/// Brings the planner's statistics up to date for tables whose size changed a lot since they
/// were last gathered (SQLite samples each index, so it stays quick on millions of rows).
/// It writes: call it on the writer (inside `Db::tx`) or before serving. PostgreSQL's
/// autovacuum does this by itself.
pub fn refresh_statistics(conn: &mut DbConnection) -> Result<(), AppError> {
    if let DbConnection::Sqlite(c) = conn {
        c.batch_execute("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;")
            .map_err(AppError::from)?;
    }
    Ok(())
}

/// Applies pending migrations. On PostgreSQL an advisory lock makes concurrent instances
/// take turns, so several can start at once.
pub fn migrate(conn: &mut DbConnection) -> Result<Vec<String>, String> {
    let applied = match conn {
        DbConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
            .map_err(|e| e.to_string()),
        DbConnection::Postgres(c) => {
            let lock = format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})");
            let unlock = format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})");
            c.batch_execute(&lock).map_err(|e| e.to_string())?;
            let result = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
                .map_err(|e| e.to_string());
            c.batch_execute(&unlock).map_err(|e| e.to_string())?;
            result
        }
    };
    applied.map_err(|e| format!("migrations failed: {e}"))
}

/// The pool as handlers see it: `db.run(|conn| repo::thing(conn, ...)).await` for reads,
/// `db.tx(...)` for anything that writes.
#[derive(Clone)]
pub struct Db {
    pub pool: Pool,
    /// SQLite's one writer (see `writer`); PostgreSQL needs none.
    writer: Option<std::sync::Arc<writer::Writer>>,
}

impl Db {
    pub fn new(pool: Pool, backend: &Backend, url: &str) -> Db {
        let manager = std::sync::Arc::new(Manager::new(url, backend.clone()));
        let writer = (*backend == Backend::Sqlite).then(|| {
            let w = std::sync::Arc::new(writer::Writer::new(manager));
            w.start_checkpoints();
            w
        });
        Db { pool, writer }
    }

    pub async fn run<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool
                .get()
                .map_err(|e| AppError::internal(format!("no database connection: {e}")))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| AppError::internal(format!("blocking task failed: {e}")))?
    }

    pub fn is_sqlite(&self) -> bool {
        self.writer.is_some()
    }

    /// `run` on the calling thread, for a short read (a few indexed lookups): no trip to the
    /// blocking pool. Only where the pool has a connection to spare at once; otherwise, and
    /// on PostgreSQL (a network round trip), it goes through `run`.
    pub async fn quick<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        if self.is_sqlite() {
            if let Some(mut conn) = self.pool.try_get() {
                return f(&mut conn);
            }
        }
        self.run(f).await
    }

    /// Like `run`, inside one transaction: all or nothing. Use it for every write.
    pub async fn tx<T, F>(&self, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        self.tx_alone_if(false, f).await
    }

    /// `tx`, for a large write (an import, a batch upload, a bulk action on every match) when
    /// `large`: on SQLite it is then not batched with other writes (see `writer`).
    pub async fn tx_alone_if<T, F>(&self, large: bool, f: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        match &self.writer {
            Some(writer) => writer.queue(f, large).await,
            None => self.run(move |conn| conn.transaction(f)).await,
        }
    }

    /// At the stop, after the last write: on SQLite, the WAL copied back and emptied (see
    /// `Writer::finish`).
    pub async fn finish(&self) {
        if let Some(writer) = self.writer.clone() {
            if let Err(e) = web::block(move || writer.finish()).await {
                tracing::warn!("the final checkpoint did not run: {e}");
            }
        }
    }
}

/// Runs `f` with SQLite's page cache raised to `kib` KiB (0: as it is), then puts it back
/// whatever `f` returned. Bulk writes keep their index pages in memory until the commit
/// instead of spilling them to the WAL and reading them back. PostgreSQL: just `f`.
pub fn with_sqlite_cache<T>(
    conn: &mut DbConnection,
    kib: i64,
    f: impl FnOnce(&mut DbConnection) -> Result<T, AppError>,
) -> Result<T, AppError> {
    if kib <= 0 || !matches!(conn, DbConnection::Sqlite(_)) {
        return f(conn);
    }
    conn.batch_execute(&format!("PRAGMA cache_size = -{kib}"))?;
    let out = f(conn);
    conn.batch_execute("PRAGMA cache_size = -2000")?;
    out
}
