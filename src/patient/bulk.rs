//! Bulk actions on the Patients tab: the checked rows, or every patient matching the list.

use actix_web::{web, HttpResponse};

use super::pages::ListQuery;
use super::repo::{self, ListFilter, Sort};
use crate::auth::CsrfForm;
use crate::console::Console;
use crate::error::AppError;
use crate::organization::{self, Role};
use crate::startup::AppState;
use crate::tag;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/patients/bulk", web::post().to(bulk));
}

/// "Select all matching" stops here; beyond it the message says to narrow the list.
pub const MAX_BULK: i64 = 100_000;

/// "1 patient", "2 patients".
pub(crate) fn patients(n: usize) -> String {
    if n == 1 {
        "1 patient".into()
    } else {
        format!("{n} patients")
    }
}

enum Outcome {
    Done(String),
    Invite(Vec<crate::invitation::Issued>, usize),
}

/// The form as sent: repeated `ids`, so read as pairs.
struct BulkForm {
    list: ListQuery,
    action: String,
    tag: String,
    tag_id: Option<i64>,
    /// The study to enrol in or remove from.
    study_id: Option<i64>,
    all_matching: bool,
    ids: Vec<i64>,
}

impl BulkForm {
    fn read(pairs: Vec<(String, String)>) -> BulkForm {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        BulkForm {
            list: ListQuery {
                organization_id: get("organization_id"),
                q: get("q").unwrap_or_default(),
                archived: get("archived").unwrap_or_default(),
                tag: get("tag_filter"),
                invited: get("invited").unwrap_or_default(),
                study_id: get("study_filter"),
                consent: get("consent").unwrap_or_default(),
                ..ListQuery::default()
            },
            action: get("action").unwrap_or_default(),
            tag: get("tag").unwrap_or_default(),
            tag_id: get("tag_id").and_then(|v| v.parse().ok()),
            study_id: get("bulk_study_id").and_then(|v| v.parse().ok()),
            all_matching: get("all_matching").is_some(),
            ids: pairs
                .iter()
                .filter(|(k, _)| k == "ids")
                .filter_map(|(_, v)| v.parse().ok())
                .collect(),
        }
    }
}

async fn bulk(
    c: Console,
    state: web::Data<AppState>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let f = BulkForm::read(pairs);
    let org_id = crate::console::num(&f.list.organization_id).ok_or_else(|| {
        AppError::BadRequest("The form did not say which organization; reload the page.".into())
    })?;
    let back = f.list.url(org_id, &[]);
    let user = c.user.clone();
    let list = f.list.clone();
    let (public_url, invitation_days) = (
        state.config.public_url.clone(),
        state.config.invitation_days,
    );
    let (action, tag_name, tag_id, all, picked, bulk_study) = (
        f.action.clone(),
        f.tag.clone(),
        f.tag_id,
        f.all_matching,
        f.ids.clone(),
        f.study_id,
    );
    // Every match (up to MAX_BULK patients) is a large write; a checked page is not.
    let result = state.db.tx_alone_if(all, move |conn| {
            let scope = &organization::authorize(conn, &user, org_id, Role::Member)?;
            let user = &user;
            let ids: Vec<i64> = if all {
                // As on the page: a study not of this organization (or gone) is ignored.
                let study = match list.study().and_then(|id| crate::study::in_scope(conn, scope, id).ok()) {
                    Some(s) => {
                        let requested = crate::study::repo::requested(conn, s.id)?
                            .iter()
                            .map(|sc| sc.id)
                            .collect();
                        Some((s.id, requested))
                    }
                    None => None,
                };
                let filter: ListFilter = list.filter(org_id, study);
                let (rows, total) = repo::list(conn, &filter, Sort::Added, 0, MAX_BULK)?;
                if total > MAX_BULK {
                    return Err(AppError::BadRequest(format!(
                        "{total} patients match; a bulk action takes at most {MAX_BULK}. Narrow the list with a search or a tag first."
                    )));
                }
                rows.into_iter().map(|p| p.id).collect()
            } else {
                picked
            };
            if ids.is_empty() {
                return Err(AppError::BadRequest("Check at least one patient, or “all matching”.".into()));
            }
            let n = ids.len();
            let message = match action.as_str() {
                "archive" => format!("Archived {} of {}.", super::set_archived_many(conn, user, scope, &ids, true)?, patients(n)),
                "restore" => format!("Restored {} of {}.", super::set_archived_many(conn, user, scope, &ids, false)?, patients(n)),
                "add_tag" => {
                    let (t, added) = tag::apply(conn, user, scope, &ids, &tag_name)?;
                    format!("Tagged {} “{}” ({} had it already).", patients(added), t.name, n - added)
                }
                "invite" => {
                    // Patients of another organization are skipped, not an error for the rest.
                    let made = crate::invitation::issue_many(conn, user, scope, &ids, true, &public_url, invitation_days)?;
                    return Ok(Outcome::Invite(made, n));
                }
                "enrol" | "unenrol" => {
                    let sid = bulk_study.ok_or_else(|| AppError::invalid("study", "Choose the study."))?;
                    let s = crate::study::in_scope(conn, scope, sid)?;
                    if action == "enrol" {
                        let added = crate::study::enrol(conn, user, scope, &s, &ids)?;
                        format!("Enrolled {} in {} ({} enrolled already).", patients(added), s.name, n - added)
                    } else {
                        let removed = crate::study::unenrol(conn, user, scope, &s, &ids)?;
                        format!("Removed {} from {}, with their consent decisions in it.", patients(removed), s.name)
                    }
                }
                "remove_tag" => {
                    let t = tag_id.ok_or_else(|| AppError::invalid("tag_id", "Choose the tag to remove."))?;
                    format!("Removed the tag from {}.", patients(tag::remove(conn, user, scope, &ids, t)?))
                }
                _ => return Err(AppError::invalid("action", "Choose what to do with the selected patients.")),
            };
            Ok(Outcome::Done(message))
        })
        .await;
    match result {
        Ok(Outcome::Done(message)) => Ok(c.done(message, &back)),
        Ok(Outcome::Invite(made, n)) => {
            // Sent after the links are saved, so a mail failure loses no link.
            let failed = crate::invitation::pages::send_all(&state, &made).await;
            let sent = made.len() - failed.len();
            let mut message = format!(
                "Issued {} of {n} selected; e-mailed {sent}.",
                if made.len() == 1 {
                    "1 invitation".to_string()
                } else {
                    format!("{} invitations", made.len())
                }
            );
            if failed.is_empty() {
                Ok(c.done(message, &back))
            } else {
                message.push_str(&format!(" Not delivered: {}.", failed.join(", ")));
                c.flash("error", message);
                Ok(crate::console::see_other(&back))
            }
        }
        Err(e @ (AppError::Forbidden(_) | AppError::NotFound(_) | AppError::CsrfRejected)) => {
            Err(e)
        }
        Err(e) => {
            c.flash("error", e.flash_text());
            Ok(crate::console::see_other(&back))
        }
    }
}
