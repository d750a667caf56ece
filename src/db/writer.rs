//! SQLite's one writer, with group commit.
//!
//! SQLite has one writer at a time. Every write of the instance goes through one connection
//! (opened on first use, outside the pool): a commit empties the page cache of every other
//! connection but not of the one that made it, so writes keep their index pages warm.
//!
//! Writes that arrive while another is running queue up, and the next one to get the
//! connection runs all of them in one transaction, each in its own savepoint, and commits
//! once. A write that fails rolls back to its savepoint and leaves the others alone; a commit
//! that fails fails them all, so nothing is reported done that is not on disk. Under load
//! this turns many small commits (each writing its pages to the WAL) into a few large ones.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::web;
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
    pending: Mutex<Vec<Job>>,
    manager: Arc<Manager>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Writer {
    pub fn new(manager: Arc<Manager>) -> Writer {
        Writer {
            conn: Mutex::new(None),
            pending: Mutex::new(Vec::new()),
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
        lock(&self.pending).push(job);
        let me = self.clone();
        web::block(move || me.drain())
            .await
            .map_err(|e| AppError::internal(format!("blocking task failed: {e}")))?;
        receive.await.map_err(|_| {
            AppError::internal("the write was abandoned; the server log says why".to_string())
        })?
    }

    /// Takes the connection, then every queued write (its own among them, unless the one
    /// before took it already), and runs them as one transaction.
    fn drain(&self) {
        let mut guard = lock(&self.conn);
        let jobs = std::mem::take(&mut *lock(&self.pending));
        if jobs.is_empty() {
            return;
        }
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
