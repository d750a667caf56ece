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
pub struct Queue(tokio::sync::mpsc::UnboundedSender<Audit>);

/// Most events written in one transaction.
const QUEUE_BATCH: usize = 1000;
/// How long the first event of a batch waits for others.
const QUEUE_LINGER: std::time::Duration = std::time::Duration::from_millis(25);

impl Queue {
    pub fn start(db: crate::db::Db) -> Queue {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Audit>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(QUEUE_BATCH);
            // Waits for one event, then takes whatever else has queued, up to the limit.
            // Only SQLite pays for a commit in the other connections' caches.
            let linger = db.is_sqlite();
            while rx.recv_many(&mut batch, QUEUE_BATCH).await > 0 {
                if linger && batch.len() < QUEUE_BATCH {
                    tokio::time::sleep(QUEUE_LINGER).await;
                    while batch.len() < QUEUE_BATCH {
                        match rx.try_recv() {
                            Ok(a) => batch.push(a),
                            Err(_) => break,
                        }
                    }
                }
                let events = std::mem::take(&mut batch);
                let n = events.len();
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
        });
        Queue(tx)
    }

    pub fn push(&self, a: Audit) {
        if let Err(e) = self.0.send(a) {
            tracing::error!(action = %e.0.action, "audit queue closed; event lost");
        }
    }
}
