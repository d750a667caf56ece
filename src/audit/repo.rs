//! SQL for the audit log.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::Audit;
use crate::db::schema::audit_events;
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::util::now;

#[derive(Insertable)]
#[diesel(table_name = audit_events)]
struct NewEvent<'a> {
    occurred_at: NaiveDateTime,
    actor_user_id: Option<i64>,
    actor_email: Option<&'a str>,
    action: &'a str,
    object_type: Option<&'a str>,
    object_id: Option<&'a str>,
    organization_id: Option<i64>,
    ip: Option<&'a str>,
    detail: Option<String>,
}

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

pub fn insert(conn: &mut DbConnection, e: &Audit) -> AppResult<()> {
    diesel::insert_into(audit_events::table)
        .values(NewEvent {
            occurred_at: now(),
            actor_user_id: e.actor_user_id,
            actor_email: e.actor_email.as_deref(),
            action: &e.action,
            object_type: e.object_type.as_deref(),
            object_id: e.object_id.as_deref(),
            organization_id: e.organization_id,
            ip: e.ip.as_deref(),
            detail: e.detail.as_ref().map(|d| d.to_string()),
        })
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
