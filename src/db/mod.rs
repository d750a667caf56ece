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
        // SAFETY: `on_open` has the entry point signature SQLite calls, and stays valid for
        // the life of the process.
        let rc = unsafe { libsqlite3_sys::sqlite3_auto_extension(Some(on_open)) };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::warn!(rc, "SQLite connections open without Cohort's settings");
        }
    });
}

/// Adds `id_list(x)` to the connection `db`: an aggregate that packs the integers it is
/// given into one BLOB, eight bytes each, little-endian, in the order given (NULLs left out).
/// A keyword search reads tens of thousands of ids off the word index; as the text of
/// `group_concat`, writing each id as text and reading it back cost twice the index scan
/// itself. Read the BLOB with `read_id_list`.
///
/// # Safety
/// `db` is an open connection.
unsafe fn add_id_list(db: *mut libsqlite3_sys::sqlite3) -> std::ffi::c_int {
    // SAFETY: the caller passes an open connection; the name is a C string that outlives
    // the call (SQLite copies it); step and final have the signatures SQLite calls.
    unsafe {
        libsqlite3_sys::sqlite3_create_function_v2(
            db,
            c"id_list".as_ptr(),
            1,
            libsqlite3_sys::SQLITE_UTF8 | libsqlite3_sys::SQLITE_DETERMINISTIC,
            std::ptr::null_mut(),
            None,
            Some(id_list_step),
            Some(id_list_final),
            None,
        )
    }
}

/// `id_list`'s state, in the memory SQLite keeps per aggregate: the bytes so far (null
/// until the first id).
type IdBytes = *mut Vec<u8>;

unsafe extern "C" fn id_list_step(
    ctx: *mut libsqlite3_sys::sqlite3_context,
    _argc: std::ffi::c_int,
    argv: *mut *mut libsqlite3_sys::sqlite3_value,
) {
    // SAFETY: SQLite passes its context and one argument (the function takes exactly one).
    // The aggregate context is zeroed on first use and lives until `id_list_final`, which
    // takes back the Vec boxed here.
    unsafe {
        let slot =
            libsqlite3_sys::sqlite3_aggregate_context(ctx, std::mem::size_of::<IdBytes>() as i32)
                as *mut IdBytes;
        if slot.is_null() {
            libsqlite3_sys::sqlite3_result_error_nomem(ctx);
            return;
        }
        let value = *argv;
        if libsqlite3_sys::sqlite3_value_type(value) == libsqlite3_sys::SQLITE_NULL {
            return;
        }
        if (*slot).is_null() {
            *slot = Box::into_raw(Box::new(Vec::with_capacity(64 * 1024)));
        }
        (**slot).extend_from_slice(&libsqlite3_sys::sqlite3_value_int64(value).to_le_bytes());
    }
}

unsafe extern "C" fn id_list_final(ctx: *mut libsqlite3_sys::sqlite3_context) {
    // SAFETY: as in `id_list_step`. SQLite calls this once per aggregate, also when the
    // statement stops early, so the Vec is always freed here; the result is copied
    // (SQLITE_TRANSIENT) before it is.
    unsafe {
        let slot = libsqlite3_sys::sqlite3_aggregate_context(ctx, 0) as *mut IdBytes;
        let bytes = if slot.is_null() || (*slot).is_null() {
            Vec::new()
        } else {
            let owned = Box::from_raw(*slot);
            *slot = std::ptr::null_mut();
            *owned
        };
        let Ok(len) = i32::try_from(bytes.len()) else {
            libsqlite3_sys::sqlite3_result_error_toobig(ctx);
            return;
        };
        libsqlite3_sys::sqlite3_result_blob(
            ctx,
            bytes.as_ptr().cast(),
            len,
            libsqlite3_sys::SQLITE_TRANSIENT(),
        );
    }
}

/// The ids of an `id_list` BLOB; None if it is not one (its length not a multiple of eight).
pub fn read_id_list(bytes: &[u8]) -> Option<Vec<i64>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect(),
    )
}

/// Runs as each SQLite connection opens: adds `id_list` (see `add_id_list`) and turns on the
/// query planner stability guarantee, so a statement's plan never depends on the values
/// bound to it. Without it SQLite looks at the value bound to every `LIMIT ?` and `OFFSET ?`
/// while planning, and then compiles the statement afresh each time new values are bound;
/// diesel binds both (every `.first()`, every page), so its statement cache kept nothing and
/// each lookup paid a full compile. The plans Cohort relies on come from its indexes, not
/// from bound values (it keeps no per-value statistics and no partial indexes).
unsafe extern "C" fn on_open(
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
    // SAFETY: as above, the connection being opened.
    let rc = unsafe { add_id_list(db) };
    if rc != libsqlite3_sys::SQLITE_OK {
        tracing::warn!(rc, "SQLite refused the id_list function");
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

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::{Binary, Nullable};

    #[derive(diesel::QueryableByName)]
    struct Packed {
        #[diesel(sql_type = Nullable<Binary>)]
        ids: Option<Vec<u8>>,
    }

    fn id_list(conn: &mut DbConnection, from: &str) -> Option<Vec<u8>> {
        diesel::RunQueryDsl::get_result::<Packed>(
            diesel::sql_query(format!("SELECT id_list(x) AS ids FROM ({from})")),
            conn,
        )
        .expect("id_list runs")
        .ids
    }

    #[test]
    fn id_list_packs_every_integer_in_order_and_reads_back() {
        let mut c = Manager::new(":memory:", Backend::Sqlite)
            .open()
            .expect("a connection");
        let big = 9_007_199_254_740_993_i64;
        let packed = id_list(
            &mut c,
            &format!(
                "SELECT 3 AS x UNION ALL SELECT NULL UNION ALL SELECT -5 UNION ALL SELECT {big} \
                 UNION ALL SELECT 3"
            ),
        )
        .expect("a BLOB");
        assert_eq!(
            packed.len(),
            32,
            "four ids of eight bytes, the NULL left out"
        );
        assert_eq!(read_id_list(&packed), Some(vec![3, -5, big, 3]));
        // No rows: an empty list, not NULL.
        let none = id_list(&mut c, "SELECT 1 AS x WHERE 0").expect("a BLOB");
        assert_eq!(read_id_list(&none), Some(Vec::new()));
        // Many rows: more than the first allocation holds.
        let many = id_list(
            &mut c,
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000) \
             SELECT x FROM n",
        )
        .expect("a BLOB");
        let ids = read_id_list(&many).expect("ids");
        assert_eq!(ids.len(), 100_000);
        assert!(ids.iter().enumerate().all(|(i, id)| *id == i as i64 + 1));
        // Anything not eight bytes an id is refused.
        assert_eq!(read_id_list(&[1, 2, 3]), None);
    }
}
