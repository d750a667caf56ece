//! The audit trail: who did what to which record, when, and from where. Written for every
//! sign-in, failed sign-in, token use, and every read or change of patient data.

pub mod pages;
pub mod repo;

use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::AppResult;

/// One event under construction: `Audit::by(user, "organization.create").object(..).record(conn)`.
#[derive(Debug, Default)]
pub struct Audit {
    pub actor_user_id: Option<i64>,
    pub actor_email: Option<String>,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub organization_id: Option<i64>,
    pub ip: Option<String>,
    pub detail: Option<serde_json::Value>,
}

impl Audit {
    pub fn by(user: &CurrentUser, action: &str) -> Audit {
        Audit {
            actor_user_id: Some(user.user.id),
            actor_email: Some(user.user.email.clone()),
            action: action.to_string(),
            ip: user.ip.clone(),
            ..Audit::default()
        }
    }

    /// An event with no signed-in actor: a failed sign-in, or the server itself.
    pub fn anonymous(action: &str, email: Option<&str>, ip: Option<String>) -> Audit {
        Audit {
            actor_email: email.map(str::to_string),
            action: action.to_string(),
            ip,
            ..Audit::default()
        }
    }

    pub fn system(action: &str) -> Audit {
        Audit {
            actor_email: Some("system".into()),
            action: action.to_string(),
            ..Audit::default()
        }
    }

    pub fn user_id(mut self, id: i64, email: &str) -> Audit {
        self.actor_user_id = Some(id);
        self.actor_email = Some(email.to_string());
        self
    }

    pub fn object(mut self, kind: &str, id: impl ToString) -> Audit {
        self.object_type = Some(kind.to_string());
        self.object_id = Some(id.to_string());
        self
    }

    pub fn org(mut self, id: i64) -> Audit {
        self.organization_id = Some(id);
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Audit {
        self.detail = Some(detail);
        self
    }

    pub fn record(self, conn: &mut DbConnection) -> AppResult<()> {
        repo::insert(conn, &self)
    }
}

/// Events of reads (token uses, lists), recorded off the request path: a task writes whatever
/// has queued up in one transaction, so a busy API pays one commit per batch instead of one
/// per request. Each commit also makes every other connection start its next read with a cold
/// cache (SQLite resets it when the database changed), so there a batch waits `QUEUE_LINGER`
/// for company before it is written. Each instance keeps its own queue.
#[derive(Clone)]
pub struct Queue(tokio::sync::mpsc::UnboundedSender<Item>);

enum Item {
    Event(Audit),
    /// Write what is queued now, without waiting for company, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Most events written in one transaction.
const QUEUE_BATCH: usize = 1000;
/// How long the first event of a batch waits for others: at most four commits a second from
/// reads. On SQLite each commit costs every reading connection its map of the database file
/// (SQLite unmaps it when it sees the WAL changed, and the pages fault back in one by one):
/// at 25 ms, a quarter of a search's time went to that. On PostgreSQL each commit waits for
/// its WAL to reach the disk, and a batch of one event took four round trips. A crash (not
/// a stop, which flushes) can lose the reads of the last quarter second from the log.
const QUEUE_LINGER: std::time::Duration = std::time::Duration::from_millis(250);

impl Queue {
    pub fn start(db: crate::db::Db) -> Queue {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Item>();
        tokio::spawn(async move {
            let mut items = Vec::with_capacity(QUEUE_BATCH);
            // Waits for one event, then takes whatever else has queued, up to the limit.
            while rx.recv_many(&mut items, QUEUE_BATCH).await > 0 {
                let flushing = |items: &[Item]| items.iter().any(|i| matches!(i, Item::Flush(_)));
                if items.len() < QUEUE_BATCH && !flushing(&items) {
                    tokio::time::sleep(QUEUE_LINGER).await;
                    while items.len() < QUEUE_BATCH {
                        match rx.try_recv() {
                            Ok(i) => items.push(i),
                            Err(_) => break,
                        }
                    }
                }
                let mut events = Vec::with_capacity(items.len());
                let mut waiting = Vec::new();
                for i in items.drain(..) {
                    match i {
                        Item::Event(a) => events.push(a),
                        Item::Flush(done) => waiting.push(done),
                    }
                }
                let n = events.len();
                if n > 0 {
                    let written = db
                        .tx(move |conn| {
                            for a in events {
                                a.record(conn)?;
                            }
                            Ok(())
                        })
                        .await;
                    if let Err(e) = written {
                        tracing::error!(error = %e, events = n, "audit events could not be written");
                    }
                }
                for done in waiting {
                    let _ = done.send(());
                }
            }
        });
        Queue(tx)
    }

    pub fn push(&self, a: Audit) {
        if let Err(e) = self.0.send(Item::Event(a)) {
            if let Item::Event(a) = e.0 {
                tracing::error!(action = %a.action, "audit queue closed; event lost");
            }
        }
    }

    /// Returns once every event pushed before the call is written (or failed to be): the
    /// server calls it when it stops, so a shutdown loses none of them.
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.0.send(Item::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backend;
    use crate::db::schema::audit_events;
    use diesel::prelude::*;

    #[test]
    fn a_flush_returns_once_the_queued_events_are_written() {
        let dir = std::env::temp_dir().join(format!("cohort-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let url = dir.join("db.sqlite3").to_string_lossy().to_string();
        let pool = crate::db::connect(&url, Backend::Sqlite).expect("a pool");
        crate::db::migrate(&mut pool.get().expect("a connection")).expect("migrations");
        let db = crate::db::Db::new(pool.clone(), &Backend::Sqlite, &url);
        let count = || -> i64 {
            audit_events::table
                .filter(audit_events::action.eq("test.flush"))
                .count()
                .get_result(&mut *pool.get().expect("a connection"))
                .expect("a count")
        };
        actix_web::rt::System::new().block_on(async {
            let queue = Queue::start(db);
            for _ in 0..5 {
                queue.push(Audit::system("test.flush"));
            }
            // Well inside the queue's linger: nothing would be written yet without the flush.
            queue.flush().await;
            assert_eq!(count(), 5);
            // A flush with nothing queued returns too.
            queue.flush().await;
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
