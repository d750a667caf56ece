//! The consent review on a study's page (matrix, filters, totals), its CSV export, and the
//! form to record a decision on a patient's behalf.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use chrono::NaiveDateTime;
use serde::Deserialize;

use super::{Cell, Only, Totals};
use crate::audit::Audit;
use crate::auth::{CsrfForm, CurrentUser};
use crate::console::PAGE_SIZES;
use crate::console::{Console, Paging};
use crate::db::DbConnection;
use crate::error::AppError;
use crate::organization::{OrgScope, Role};
use crate::patient::model::Patient;
use crate::startup::AppState;
use crate::study::pages::ShowQuery;
use crate::study::{self, Scope, Study};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/studies/{id}/consents.csv", web::get().to(export))
        .route("/studies/{id}/consents", web::post().to(record));
}

pub struct ReviewRow {
    pub p: Patient,
    pub cells: Vec<Option<(bool, NaiveDateTime)>>,
}

/// What the study page shows of consent: totals, the filtered matrix page, and the patient
/// the record-decision modal is open for.
pub struct Review {
    pub totals: Totals,
    /// The matrix's columns: every requested scope, or the one chosen.
    pub columns: Vec<Scope>,
    pub rows: Vec<ReviewRow>,
    pub paging: Paging,
    pub prev_url: String,
    pub next_url: String,
    pub export_url: String,
    pub filtered: bool,
    pub record: Option<(Patient, Vec<Cell>)>,
}

/// Builds the review for one page of the study; notes the read in the audit log.
pub fn review(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    s: &Study,
    requested: &[Scope],
    q: &ShowQuery,
    cache: &super::TotalsCache,
) -> Result<Review, AppError> {
    let totals = cache.totals(conn, s, requested)?;
    let filter = super::repo::Filter::new(Only::parse(&q.only), q.scope_id(), requested);
    let columns = filter.columns(requested);
    let only = filter.only;
    let mut paging = Paging::new(
        q.page.as_deref().and_then(|p| p.parse().ok()),
        q.page_size.as_deref().and_then(|p| p.parse().ok()),
        &PAGE_SIZES,
    );
    let patients = paging.load(|off, lim| super::repo::page(conn, s.id, filter, off, lim))?;
    let ids: Vec<i64> = patients.iter().map(|p| p.id).collect();
    let mut decided: BTreeMap<(i64, i64), (bool, NaiveDateTime)> = BTreeMap::new();
    for d in super::repo::decisions(conn, s.id, &ids)? {
        decided.insert((d.patient_id, d.scope_id), (d.consented, d.at));
    }
    let rows = patients
        .into_iter()
        .map(|p| ReviewRow {
            cells: columns
                .iter()
                .map(|c| decided.get(&(p.id, c.id)).copied())
                .collect(),
            p,
        })
        .collect();
    let record = match q.patient.as_deref().and_then(|p| p.parse::<i64>().ok()) {
        Some(pid) if q.modal == "record" && scope.can(Role::Member) => {
            if !super::repo::is_enrolled(conn, s.id, pid)? {
                return Err(AppError::not_found("Patient"));
            }
            let p = crate::patient::repo::find(conn, pid)?
                .ok_or_else(|| AppError::not_found("Patient"))?;
            let mine: BTreeMap<i64, (bool, NaiveDateTime)> =
                super::repo::decisions(conn, s.id, &[pid])?
                    .into_iter()
                    .map(|d| (d.scope_id, (d.consented, d.at)))
                    .collect();
            let cells = requested
                .iter()
                .map(|sc| Cell {
                    decision: mine.get(&sc.id).copied(),
                    scope: sc.clone(),
                })
                .collect();
            Some((p, cells))
        }
        _ => None,
    };
    Audit::by(user, "consent.review")
        .object("study", s.id)
        .org(scope.org_id())
        .detail(serde_json::json!({"page": paging.page, "only": q.only, "scope": q.scope_id()}))
        .record(conn)?;
    let export_url = {
        let mut pairs = vec![("only", q.only.clone())];
        if let Some(sc) = q.scope_id() {
            pairs.push(("scope", sc.to_string()));
        }
        let qs = crate::console::query_string(&pairs);
        if qs.is_empty() {
            format!("/studies/{}/consents.csv", s.id)
        } else {
            format!("/studies/{}/consents.csv?{qs}", s.id)
        }
    };
    Ok(Review {
        totals,
        prev_url: q.url(s.id, &[("page", (paging.page - 1).to_string())]) + "#review",
        next_url: q.url(s.id, &[("page", (paging.page + 1).to_string())]) + "#review",
        export_url,
        filtered: only != Only::All || q.scope_id().is_some(),
        columns,
        rows,
        paging,
        record,
    })
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    only: String,
    scope: Option<String>,
}

/// Quotes a CSV field when it needs it, and defuses text a spreadsheet would run as a formula.
pub(crate) fn csv_field(out: &mut String, v: &str) {
    let v = crate::util::spreadsheet_safe(v);
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&v);
    }
}

/// Rows per database read while streaming the export.
const EXPORT_SLICE: usize = 5000;
/// Slices read at once: one per core of a small server.
const EXPORT_PARALLEL: usize = 2;

/// The matrix as CSV, streamed a slice at a time: one row per enrolled patient, two columns
/// (decision, time) per scope.
async fn export(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    q: web::Query<ExportQuery>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let user = c.user.clone();
    let scope_filter = q
        .scope
        .as_deref()
        .and_then(|s| s.trim().parse::<i64>().ok());
    let only = Only::parse(&q.only);
    let (s, columns, filter) = state
        .db
        .tx(move |conn| {
            let (s, scope) = study::authorize(conn, &user, id, Role::Viewer)?;
            let requested: Vec<Scope> = study::repo::requested(conn, s.id)?;
            let filter = super::repo::Filter::new(only, scope_filter, &requested);
            let requested = filter.columns(&requested);
            Audit::by(&user, "consent.export")
                .object("study", s.id)
                .org(scope.org_id())
                .detail(serde_json::json!({"only": q.only, "scope": scope_filter}))
                .record(conn)?;
            Ok((s, requested, filter))
        })
        .await?;
    let mut head = String::from("patient_id,family_name,given_name,birth_date,email");
    for c in &columns {
        head.push(',');
        csv_field(&mut head, &c.coding_code);
        head.push(',');
        csv_field(&mut head, &format!("{} time", c.coding_code));
    }
    head.push('\n');
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, AppError>>(4);
    let db = state.db.clone();
    let column_ids: Vec<i64> = columns.iter().map(|c| c.id).collect();
    let study_id = s.id;
    actix_web::rt::spawn(async move {
        if tx.send(Ok(web::Bytes::from(head))).await.is_err() {
            return;
        }
        let ids = match db
            .run(move |conn| super::repo::export_ids(conn, study_id, filter))
            .await
        {
            Ok(ids) => ids,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        // Slices are read and written on blocking threads two at a time, and sent in order.
        let mut slices = ids
            .chunks(EXPORT_SLICE)
            .map(<[i64]>::to_vec)
            .collect::<Vec<_>>()
            .into_iter();
        let mut running = std::collections::VecDeque::new();
        loop {
            while running.len() < EXPORT_PARALLEL {
                let Some(slice) = slices.next() else { break };
                let (db, cols) = (db.clone(), column_ids.clone());
                running.push_back(actix_web::rt::spawn(async move {
                    db.run(move |conn| {
                        let people = super::repo::export_people(conn, &slice)?;
                        let (Some(first), Some(last)) = (people.first(), people.last()) else {
                            return Ok(web::Bytes::new());
                        };
                        let decisions =
                            super::repo::decisions_between(conn, study_id, first.id, last.id)?;
                        Ok(render_slice(&people, &decisions, &cols))
                    })
                    .await
                }));
            }
            let Some(next) = running.pop_front() else {
                return;
            };
            let bytes = match next.await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Err(e) => {
                    let _ = tx
                        .send(Err(AppError::internal(format!("export task failed: {e}"))))
                        .await;
                    return;
                }
            };
            if tx.send(Ok(bytes)).await.is_err() {
                return;
            }
        }
    });
    let filename = format!(
        "study-{}-consents-{}.csv",
        s.id,
        crate::util::now().format("%Y-%m-%d")
    );
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream))
}

fn render_slice(people: &[Patient], decisions: &[super::Decision], cols: &[i64]) -> web::Bytes {
    let mut out = String::with_capacity(people.len() * 120);
    let mut d = decisions.iter().peekable();
    for p in people {
        out.push_str(&p.id.to_string());
        out.push(',');
        csv_field(&mut out, &p.name_family);
        out.push(',');
        csv_field(&mut out, &p.name_given);
        out.push(',');
        if let Some(b) = p.birth_date {
            out.push_str(&b.format("%Y-%m-%d").to_string());
        }
        out.push(',');
        csv_field(&mut out, &p.telecom_email);
        let mut mine: Vec<&super::Decision> = Vec::new();
        while d.next_if(|x| x.patient_id < p.id).is_some() {}
        while let Some(x) = d.next_if(|x| x.patient_id == p.id) {
            mine.push(x);
        }
        for c in cols {
            match mine.iter().find(|x| x.scope_id == *c) {
                Some(x) => {
                    out.push_str(if x.consented {
                        ",consented,"
                    } else {
                        ",declined,"
                    });
                    out.push_str(&x.at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                }
                None => out.push_str(",pending,"),
            }
        }
        out.push('\n');
    }
    web::Bytes::from(out)
}

/// Record a decision: per scope `scope_<id>` = consent, decline or clear (absent: unchanged).
async fn record(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let patient_id: i64 = get("patient_id")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            AppError::BadRequest("The form did not say which patient; reload the page.".into())
        })?;
    let reason = get("reason").unwrap_or_default();
    let back = format!("/studies/{id}?modal=record&patient={patient_id}");
    let changes: Vec<(i64, Option<bool>)> = pairs
        .iter()
        .filter_map(|(k, v)| {
            let sid: i64 = k.strip_prefix("scope_")?.parse().ok()?;
            match v.as_str() {
                "consent" => Some((sid, Some(true))),
                "decline" => Some((sid, Some(false))),
                "clear" => Some((sid, None)),
                _ => None,
            }
        })
        .collect();
    let user = c.user.clone();
    let r = state
        .db
        .tx(move |conn| {
            let (s, scope) = study::authorize(conn, &user, id, Role::Member)?;
            super::record(conn, &user, &scope, &s, patient_id, &changes, &reason)
        })
        .await;
    match r {
        Ok(0) => Ok(c.done(
            "Nothing changed: those were already the patient's decisions.",
            &format!("/studies/{id}#review"),
        )),
        Ok(n) => Ok(c.done(
            format!(
                "Recorded {n} decision{} on the patient's behalf; the reason is in the audit log.",
                if n == 1 { "" } else { "s" }
            ),
            &format!("/studies/{id}#review"),
        )),
        Err(e @ AppError::Invalid(_)) => {
            c.flash("error", e.flash_text());
            Ok(crate::console::see_other(&back))
        }
        Err(AppError::BadRequest(m) | AppError::Conflict(m)) => {
            // Not enrolled (any more): the form cannot open again, so go back to the review.
            c.flash("error", m);
            Ok(crate::console::see_other(&format!("/studies/{id}#review")))
        }
        Err(e) => Err(e),
    }
}
