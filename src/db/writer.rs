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

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

use diesel::connection::Connection;
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
}

#[derive(Default)]
struct Pending {
    jobs: Vec<Job>,
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
        }
    }

    /// Runs `f` in a transaction of its own (a savepoint in the batch) and returns its result
    /// once the batch is committed.
    pub async fn tx<T, F>(self: &Arc<Self>, f: F) -> Result<T, AppError>
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
            p.jobs.push(job);
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
            self.run_batch(jobs);
        }
    }

    /// Runs `jobs` as one transaction, each in its savepoint, and tells each caller.
    fn run_batch(&self, jobs: Vec<Job>) {
        let mut guard = lock(&self.conn);
        // A transaction cut short by a panic leaves its connection unusable: start afresh.
        if guard.as_mut().is_some_and(|c| self.manager.has_broken(c)) {
            *guard = None;
        }
        let conn = match guard.as_mut() {
            Some(c) => c,
            None => match self.manager.open() {
                Ok(c) => guard.insert(c),
                Err(e) => {
                    // Dropping the jobs tells their callers the write did not happen.
                    tracing::error!("no database connection for writing: {e}");
                    return;
                }
            },
        };
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
            (Ok(()), _) => None,
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
}
