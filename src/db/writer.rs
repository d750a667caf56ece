//! SQLite's one writer, with group commit.
//!
//! SQLite has one writer at a time. Every write of the instance goes through one connection
//! (opened on first use, outside the pool): a commit empties the page cache of every other
//! connection but not of the one that made it, so writes keep their index pages warm.
//!
//! Writes queue up, and one thread of the blocking pool at a time (the drainer) runs them:
//! all that are queued in one transaction, each in its own savepoint, committed once, then
//! the next lot, until the queue is empty. A write that fails rolls back to its savepoint
//! and leaves the others alone; a commit that fails fails them all, so nothing is reported
//! done that is not on disk. Under load this turns many small commits (each writing its
//! pages to the WAL) into a few large ones, and a queued write costs its caller no thread
//! of its own: the caller waits on a channel, not on the connection's lock.
//!
//! Savepoints journal the pages they change, and SQLite writes that journal to a temporary
//! file once it passes 64 KiB: a file created, written page by page and deleted for nearly
//! every batch (a fifth of the time of a patient create). The writer keeps it in memory
//! instead (`temp_store = MEMORY`). Memory then grows with what a savepoint changes, so a
//! large write (an import, a batch upload) asks to run alone (`Db::tx_alone_if`): it is the whole
//! transaction, without a savepoint, and each of its statements' journals is emptied as the
//! statement ends. A lone small write needs no savepoint either.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use diesel::connection::{Connection, SimpleConnection};
use diesel::r2d2::ManageConnection;

use super::{DbConnection, Manager};
use crate::error::AppError;

/// Hands a write's outcome to its caller: `None` once the batch is committed, or the reason
/// the batch was not.
type Deliver = Box<dyn FnOnce(Option<String>) + Send>;
/// A queued write: runs in its savepoint and returns how to deliver its outcome.
type Job = Box<dyn FnOnce(&mut DbConnection) -> Deliver + Send>;

pub struct Writer {
    conn: Mutex<Option<DbConnection>>,
    pending: Mutex<Pending>,
    manager: Arc<Manager>,
    /// Batches committed so far: the checkpointer's sign that there is work for it.
    commits: AtomicU64,
    /// A checkpointer thread copies the WAL back into the database (see `start_checkpoints`).
    background_checkpoints: AtomicBool,
}

/// How often the checkpointer looks for new commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// With the checkpointer running, the writer checkpoints itself only when the WAL has grown
/// past this many pages (256 MB): should the checkpointer fall behind, the WAL stays bounded.
const FALLBACK_AUTOCHECKPOINT: u32 = 65_536;

/// A job and whether it runs in a transaction of its own (see `Db::tx_alone_if`).
struct Queued {
    job: Job,
    alone: bool,
}

#[derive(Default)]
struct Pending {
    jobs: Vec<Queued>,
    /// A drainer is running or about to: it will take every job queued before it stops.
    draining: bool,
}

/// Marks the drainer gone however it ends. A drainer that panicked outside a write (opening
/// the connection, committing) drops what is queued, so those callers hear of it at once
/// and later writes start a new drainer.
struct DrainerGone<'a>(&'a Writer);

impl Drop for DrainerGone<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut p = lock(&self.0.pending);
            p.jobs.clear();
            p.draining = false;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Writer {
    pub fn new(manager: Arc<Manager>) -> Writer {
        Writer {
            conn: Mutex::new(None),
            pending: Mutex::new(Pending::default()),
            manager,
            commits: AtomicU64::new(0),
            background_checkpoints: AtomicBool::new(false),
        }
    }

    /// Moves checkpoints off the writer: a thread of their own copies committed pages from
    /// the WAL into the database file, twice a second when there were commits.
    ///
    /// Left to the writer, a checkpoint runs inside whichever commit crosses the threshold:
    /// it writes megabytes of pages all over the file and syncs it, and every write queued
    /// behind that commit waits (the slowest uploads took 150 to 450 ms on a slow disk). A
    /// passive checkpoint on another connection blocks no one: the writer goes on appending
    /// to the WAL while the pages already there are copied.
    pub fn start_checkpoints(self: &Arc<Self>) {
        self.background_checkpoints.store(true, Ordering::SeqCst);
        let me = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoints(me));
        if let Err(e) = spawned {
            tracing::warn!("no checkpoint thread, the writer checkpoints itself: {e}");
            self.background_checkpoints.store(false, Ordering::SeqCst);
        }
    }

    /// Runs `f` in a transaction of its own (a savepoint in the batch, or with `alone` the
    /// whole transaction) and returns its result once it is committed.
    pub async fn queue<T, F>(self: &Arc<Self>, f: F, alone: bool) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let (send, receive) = tokio::sync::oneshot::channel::<Result<T, AppError>>();
        let job: Job = Box::new(move |conn: &mut DbConnection| {
            let out = conn.transaction(f);
            Box::new(move |failed: Option<String>| {
                let _ = send.send(match failed {
                    None => out,
                    Some(why) => Err(AppError::internal(why)),
                });
            })
        });
        let start = {
            let mut p = lock(&self.pending);
            p.jobs.push(Queued { job, alone });
            !std::mem::replace(&mut p.draining, true)
        };
        if start {
            let me = self.clone();
            // Detached: the outcome comes back through the channel.
            drop(actix_web::rt::task::spawn_blocking(move || me.drain()));
        }
        receive.await.map_err(|_| {
            AppError::internal("the write was abandoned; the server log says why".to_string())
        })?
    }

    /// Runs the queue in batches until it is empty, then stops; the next write starts a
    /// new drainer.
    fn drain(&self) {
        let _gone = DrainerGone(self);
        loop {
            let jobs = {
                let mut p = lock(&self.pending);
                if p.jobs.is_empty() {
                    p.draining = false;
                    return;
                }
                std::mem::take(&mut p.jobs)
            };
            // In the order queued: runs of small writes batched, a large one by itself.
            let mut batch = Vec::with_capacity(jobs.len());
            for q in jobs {
                if q.alone {
                    self.run_batch(std::mem::take(&mut batch));
                    self.run_batch(vec![q.job]);
                } else {
                    batch.push(q.job);
                }
            }
            self.run_batch(batch);
        }
    }

    /// Runs `jobs` as one transaction, each in its savepoint, and tells each caller. A single
    /// job is the transaction itself.
    fn run_batch(&self, mut jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let mut guard = lock(&self.conn);
        // A transaction cut short by a panic leaves its connection unusable: start afresh.
        if guard.as_mut().is_some_and(|c| self.manager.has_broken(c)) {
            *guard = None;
        }
        let conn = match open_or_reuse(&mut guard, || self.open()) {
            Ok(c) => c,
            Err(e) => {
                // Dropping the jobs tells their callers the write did not happen.
                tracing::error!("no database connection for writing: {e}");
                return;
            }
        };
        if jobs.len() == 1 {
            let job = jobs.pop().expect("one job");
            // The job commits (or rolls back) itself; its outcome says which.
            match catch_unwind(AssertUnwindSafe(|| job(conn))) {
                Ok(deliver) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    drop(guard);
                    deliver(None);
                }
                // Its caller hears of it when the job is dropped; the connection may be left
                // inside the transaction.
                Err(_) => *guard = None,
            }
            return;
        }
        let mut delivers: Vec<Deliver> = Vec::with_capacity(jobs.len());
        let mut panicked = false;
        let committed = conn.transaction(|conn| {
            for job in jobs {
                match catch_unwind(AssertUnwindSafe(|| job(conn))) {
                    Ok(deliver) => delivers.push(deliver),
                    Err(_) => {
                        // The panicking write's caller hears of it when its job is dropped;
                        // the rest of the batch is rolled back and refused.
                        panicked = true;
                        return Err(diesel::result::Error::RollbackTransaction);
                    }
                }
            }
            Ok::<(), diesel::result::Error>(())
        });
        let failed = match (&committed, panicked) {
            (Ok(()), _) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                None
            }
            (Err(_), true) => {
                *guard = None;
                Some("another write in the same batch failed; try again".to_string())
            }
            (Err(e), false) => {
                tracing::error!("a batch of writes did not commit: {e}");
                Some(format!("the database did not commit: {e}"))
            }
        };
        drop(guard);
        for deliver in delivers {
            deliver(failed.clone());
        }
    }

    /// The writer's connection: savepoint journals in memory (see the module's notes); with a
    /// checkpointer running, it checkpoints only as a fallback.
    fn open(&self) -> Result<DbConnection, String> {
        let mut c = self.manager.open().map_err(|e| e.to_string())?;
        c.batch_execute("PRAGMA temp_store = MEMORY")
            .map_err(|e| e.to_string())?;
        if self.background_checkpoints.load(Ordering::SeqCst) {
            c.batch_execute(&format!(
                "PRAGMA wal_autocheckpoint = {FALLBACK_AUTOCHECKPOINT}"
            ))
            .map_err(|e| e.to_string())?;
        }
        Ok(c)
    }

    /// Before the process exits: copies every committed page from the WAL back into the
    /// database and empties the WAL. Otherwise the next start (or a copy of the file) begins
    /// with a WAL of everything this run wrote since its last checkpoint, and the first
    /// checkpoint of that run writes it all while requests are being served. Waits at most
    /// 2 s for another process's reads to end, then leaves the WAL as it is.
    pub fn finish(&self) {
        let mut guard = lock(&self.conn);
        if guard.as_mut().is_some_and(|c| self.manager.has_broken(c)) {
            *guard = None;
        }
        let done = open_or_reuse(&mut guard, || self.open()).and_then(|c| {
            c.batch_execute("PRAGMA busy_timeout = 2000; PRAGMA wal_checkpoint(TRUNCATE)")
                .map_err(|e| e.to_string())
        });
        if let Err(e) = done {
            tracing::warn!("the WAL was not copied back at the stop: {e}");
        }
        // The connection's next user (none, at a stop) would otherwise wait 2 s, not 10.
        *guard = None;
    }
}

/// The connection in `slot`, opened first if there is none.
fn open_or_reuse(
    slot: &mut Option<DbConnection>,
    open: impl FnOnce() -> Result<DbConnection, String>,
) -> Result<&mut DbConnection, String> {
    match slot {
        Some(c) => Ok(c),
        None => Ok(slot.insert(open()?)),
    }
}

/// The checkpointer's loop: ends when the writer is gone.
fn checkpoints(writer: Weak<Writer>) {
    let mut conn: Option<DbConnection> = None;
    let mut seen = 0;
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let manager = match writer.upgrade() {
            None => return,
            Some(w) => {
                let commits = w.commits.load(Ordering::Relaxed);
                if commits == seen {
                    continue;
                }
                seen = commits;
                w.manager.clone()
            }
        };
        let c = match open_or_reuse(&mut conn, || manager.open().map_err(|e| e.to_string())) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("no connection to checkpoint with: {e}");
                continue;
            }
        };
        if let Err(e) = c.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            // Busy (another checkpoint is running) or worse: try again on a fresh connection.
            tracing::debug!("checkpoint: {e}");
            conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backend;

    /// (frames in the WAL, frames already copied into the database), read from the WAL index
    /// (the -shm file) without taking part: a checkpoint of our own would change them.
    fn wal_state(shm: &std::path::Path) -> (u32, u32) {
        let b = std::fs::read(shm).expect("the WAL index");
        let at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // The header's mxFrame, then the checkpoint info's nBackfill.
        (at(16), at(96))
    }

    /// A fresh SQLite database in a folder of its own, with table `t (x TEXT UNIQUE)`.
    fn scratch(name: &str) -> (std::path::PathBuf, super::super::Db) {
        let dir = std::env::temp_dir().join(format!("cohort-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let url = dir.join("db.sqlite3").to_string_lossy().to_string();
        let pool = super::super::connect(&url, Backend::Sqlite).expect("a pool");
        let db = super::super::Db::new(pool, &Backend::Sqlite, &url);
        let made = actix_web::rt::System::new().block_on(db.tx(|c| {
            c.batch_execute("CREATE TABLE t (x TEXT UNIQUE)")?;
            Ok(())
        }));
        made.expect("a table");
        (dir, db)
    }

    fn insert(x: String) -> impl FnOnce(&mut DbConnection) -> Result<(), AppError> {
        move |c| {
            c.batch_execute(&format!("INSERT INTO t VALUES ('{x}')"))?;
            Ok(())
        }
    }

    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    /// The rows of `t` in `dir`'s database that pass `filter`, read on a connection of its own.
    fn count(dir: &std::path::Path, filter: &str) -> i64 {
        let url = dir.join("db.sqlite3").to_string_lossy().to_string();
        let mut c = super::super::Manager::new(&url, Backend::Sqlite)
            .open()
            .expect("a connection");
        diesel::RunQueryDsl::get_result::<N>(
            diesel::sql_query(format!("SELECT COUNT(*) AS n FROM t WHERE {filter}")),
            &mut c,
        )
        .expect("a count")
        .n
    }

    #[test]
    fn writes_queued_together_fail_alone_and_large_ones_keep_their_place() {
        let (dir, db) = scratch("batch");
        let outcomes = actix_web::rt::System::new().block_on(async {
            let mut writes = Vec::new();
            for i in 0..40 {
                let db = db.clone();
                writes.push(Box::pin(async move {
                    match i {
                        // A duplicate of write 5: refused, and only it.
                        13 => db.tx(insert("w5".into())).await,
                        // A large write amid the small ones: a transaction of its own,
                        // several statements, one of them failing rolls back all of it.
                        20 => {
                            db.tx_alone_if(true, |c| {
                                for k in 0..500 {
                                    insert(format!("big{k}"))(c)?;
                                }
                                Ok(())
                            })
                            .await
                        }
                        30 => {
                            db.tx_alone_if(true, |c| {
                                insert("lost".into())(c)?;
                                insert("w7".into())(c)
                            })
                            .await
                        }
                        _ => db.tx(insert(format!("w{i}"))).await,
                    }
                })
                    as std::pin::Pin<
                        Box<dyn std::future::Future<Output = Result<(), AppError>>>,
                    >);
            }
            futures_util::future::join_all(writes).await
        });
        for (i, o) in outcomes.iter().enumerate() {
            match i {
                13 | 30 => assert!(o.is_err(), "write {i} repeats a value and must fail"),
                _ => assert!(o.is_ok(), "write {i} failed: {o:?}"),
            }
        }
        assert_eq!(
            count(&dir, "x LIKE 'w%'"),
            37,
            "every small write but the failed one"
        );
        assert_eq!(count(&dir, "x LIKE 'big%'"), 500, "the large write, whole");
        assert_eq!(
            count(&dir, "x = 'lost'"),
            0,
            "nothing of the failed large write"
        );
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_wal_is_emptied_at_the_stop() {
        let (dir, db) = scratch("finish");
        actix_web::rt::System::new().block_on(async {
            for i in 0..20 {
                db.tx(insert(format!("r{i}"))).await.expect("a row");
            }
            let wal = std::fs::metadata(dir.join("db.sqlite3-wal")).expect("a WAL");
            assert!(wal.len() > 0, "the writes are in the WAL");
            db.finish().await;
        });
        let wal = std::fs::metadata(dir.join("db.sqlite3-wal")).map_or(0, |m| m.len());
        assert_eq!(wal, 0, "the WAL is empty after the stop");
        assert_eq!(
            count(&dir, "x LIKE 'r%'"),
            20,
            "every row is in the database"
        );
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn committed_pages_go_back_to_the_database_off_the_writer() {
        let dir = std::env::temp_dir().join(format!("cohort-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let file = dir.join("db.sqlite3");
        let url = file.to_string_lossy().to_string();
        let pool = super::super::connect(&url, Backend::Sqlite).expect("a pool");
        let db = super::super::Db::new(pool, &Backend::Sqlite, &url);
        actix_web::rt::System::new().block_on(async {
            db.tx(|c| {
                c.batch_execute("CREATE TABLE t (x TEXT)")?;
                Ok(())
            })
            .await
            .expect("a table");
            for i in 0..50 {
                db.tx(move |c| {
                    c.batch_execute(&format!("INSERT INTO t VALUES ('{i}')"))?;
                    Ok(())
                })
                .await
                .expect("a row");
            }
        });
        let shm = dir.join("db.sqlite3-shm");
        let (frames, _) = wal_state(&shm);
        assert!(frames > 0, "the writes are in the WAL");
        // Far below the writer's own threshold: only the checkpointer copies them back.
        let waited = std::time::Instant::now();
        loop {
            let (frames, copied) = wal_state(&shm);
            if frames > 0 && copied == frames {
                break;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "{copied} of {frames} WAL frames copied back after 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
