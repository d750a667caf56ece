//! SQL for the audit log.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::Audit;
use crate::db::schema::audit_events;
use crate::db::sql::{Sql, Value};
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::util::now;
use std::borrow::Cow;

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = audit_events)]
pub struct Event {
    pub id: i64,
    pub occurred_at: NaiveDateTime,
    pub actor_user_id: Option<i64>,
    pub actor_email: Option<String>,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub organization_id: Option<i64>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

/// One statement, kept prepared, whichever fields are set: diesel writes an insert of
/// optional fields anew for each row (DEFAULT where one is None) and prepares it each time,
/// and every API read writes an event or two.
pub fn insert(conn: &mut DbConnection, e: &Audit) -> AppResult<()> {
    fn text(v: &Option<String>) -> Value<'_> {
        Value::OptText(v.as_deref().map(Cow::Borrowed))
    }
    Sql::kept(
        "INSERT INTO audit_events (occurred_at, actor_user_id, actor_email, action, object_type, \
         object_id, organization_id, ip, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .time(now())
    .bind(Value::OptInt(e.actor_user_id))
    .bind(text(&e.actor_email))
    .text(e.action.as_str())
    .bind(text(&e.object_type))
    .bind(text(&e.object_id))
    .bind(Value::OptInt(e.organization_id))
    .bind(text(&e.ip))
    .bind(Value::OptText(
        e.detail.as_ref().map(|d| Cow::Owned(d.to_string())),
    ))
    .execute(conn)?;
    Ok(())
}

/// Filters for browsing the log; empty strings mean "any".
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub organization_id: Option<i64>,
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
}

type Boxed<'a> = audit_events::BoxedQuery<'a, crate::db::MultiBackend>;

fn filtered(f: &Filter) -> Boxed<'static> {
    let mut q = audit_events::table.into_boxed();
    if !f.actor.trim().is_empty() {
        q = q.filter(audit_events::actor_email.eq(f.actor.trim().to_lowercase()));
    }
    if !f.action.trim().is_empty() {
        // A prefix finds a family of actions: "organization." finds every organization change.
        q = q.filter(audit_events::action.like(format!("{}%", f.action.trim())));
    }
    if !f.object_type.trim().is_empty() {
        q = q.filter(audit_events::object_type.eq(f.object_type.trim().to_string()));
    }
    if !f.object_id.trim().is_empty() {
        q = q.filter(audit_events::object_id.eq(f.object_id.trim().to_string()));
    }
    if let Some(o) = f.organization_id {
        q = q.filter(audit_events::organization_id.eq(o));
    }
    if let Some(s) = f.since {
        q = q.filter(audit_events::occurred_at.ge(s));
    }
    if let Some(u) = f.until {
        q = q.filter(audit_events::occurred_at.lt(u));
    }
    q
}

/// Newest first, a page at a time.
pub fn list(
    conn: &mut DbConnection,
    f: &Filter,
    offset: i64,
    limit: i64,
) -> AppResult<(Vec<Event>, i64)> {
    let total: i64 = filtered(f).count().get_result(conn)?;
    let rows = filtered(f)
        .select(Event::as_select())
        .order((audit_events::occurred_at.desc(), audit_events::id.desc()))
        .offset(offset)
        .limit(limit)
        .load(conn)?;
    Ok((rows, total))
}
