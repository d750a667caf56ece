//! The Audit tab (superusers): browse and filter the audit log.

use actix_web::web;
use askama::Template;
use askama_web::WebTemplate;
use chrono::NaiveDate;
use serde::Deserialize;

use super::repo::{self, Event, Filter};
use crate::auth::Superuser;
use crate::console::{query_string, Console, Paging, Shell};
use crate::error::AppError;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/audit", web::get().to(list));
}

#[derive(Deserialize, Default, Clone)]
struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    object_type: String,
    #[serde(default)]
    object_id: String,
    #[serde(default)]
    organization_id: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    page: Option<i64>,
    page_size: Option<i64>,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<Event>,
    q: AuditQueryView,
    paging: Paging,
    prev_url: String,
    next_url: String,
    error: String,
}

struct AuditQueryView {
    actor: String,
    action: String,
    object_type: String,
    object_id: String,
    organization_id: String,
    since: String,
    until: String,
}

fn date(s: &str) -> Result<Option<NaiveDate>, String> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map(Some)
        .map_err(|_| format!("Use a date such as 2026-11-21, not {s:?}."))
}

async fn list(
    _su: Superuser,
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<AuditQuery>,
) -> Result<ListPage, AppError> {
    let q = q.into_inner();
    let mut error = String::new();
    let since = date(&q.since).unwrap_or_else(|e| {
        error = e;
        None
    });
    let until = date(&q.until).unwrap_or_else(|e| {
        error = e;
        None
    });
    let organization_id = match q.organization_id.trim() {
        "" => None,
        s => match s.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                error = "Organization is a number (its id).".into();
                None
            }
        },
    };
    let filter = Filter {
        actor: q.actor.clone(),
        action: q.action.clone(),
        object_type: q.object_type.clone(),
        object_id: q.object_id.clone(),
        organization_id,
        since: since.and_then(|d| d.and_hms_opt(0, 0, 0)),
        until: until
            .and_then(|d| d.succ_opt())
            .and_then(|d| d.and_hms_opt(0, 0, 0)),
    };
    let mut paging = Paging::new(q.page, q.page_size, &[50, 100, 500]);
    let (off, lim) = (paging.offset(), paging.page_size);
    let (rows, total) = state
        .db
        .run(move |conn| repo::list(conn, &filter, off, lim))
        .await?;
    paging.total = total;
    let url = |p: i64| {
        format!(
            "/audit?{}",
            query_string(&[
                ("actor", q.actor.clone()),
                ("action", q.action.clone()),
                ("object_type", q.object_type.clone()),
                ("object_id", q.object_id.clone()),
                ("organization_id", q.organization_id.clone()),
                ("since", q.since.clone()),
                ("until", q.until.clone()),
                ("page_size", paging.page_size.to_string()),
                ("page", p.to_string()),
            ])
        )
    };
    Ok(ListPage {
        shell: c.shell("Audit log", "audit"),
        rows,
        prev_url: url(paging.page - 1),
        next_url: url(paging.page + 1),
        q: AuditQueryView {
            actor: q.actor.clone(),
            action: q.action.clone(),
            object_type: q.object_type.clone(),
            object_id: q.object_id.clone(),
            organization_id: q.organization_id.clone(),
            since: q.since.clone(),
            until: q.until.clone(),
        },
        paging,
        error,
    })
}
