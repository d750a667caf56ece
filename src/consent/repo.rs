//! SQL for consent decisions and the study review built on them: the only place it lives.

use chrono::NaiveDateTime;
use diesel::dsl::{exists, not};
use diesel::prelude::*;

use crate::db::schema::{
    consents, invitations, patients, study_counts, study_patients, study_scope_counts,
};
use crate::db::DbConnection;
use crate::db::MultiBackend;
use crate::error::AppResult;
use crate::patient::model::Patient;
use crate::util::now;

/// One decision: (patient id, scope id, consented, when).
#[derive(Queryable, Clone, Debug, PartialEq)]
pub struct Decision {
    pub patient_id: i64,
    pub scope_id: i64,
    pub consented: bool,
    pub at: NaiveDateTime,
}

/// Decisions of these patients in one study.
pub fn decisions(
    conn: &mut DbConnection,
    study_id: i64,
    patient_ids: &[i64],
) -> AppResult<Vec<Decision>> {
    let mut out = Vec::new();
    for chunk in patient_ids.chunks(5000) {
        out.extend(
            consents::table
                .filter(consents::study_id.eq(study_id))
                .filter(consents::patient_id.eq_any(chunk.to_vec()))
                .select((
                    consents::patient_id,
                    consents::codeable_concept_id,
                    consents::consented,
                    consents::consented_at,
                ))
                .order((consents::patient_id, consents::codeable_concept_id))
                .load::<Decision>(conn)?,
        );
    }
    Ok(out)
}

/// Decisions of enrolled patients with ids in `from..=to` (a slice of the export).
pub fn decisions_between(
    conn: &mut DbConnection,
    study_id: i64,
    from: i64,
    to: i64,
) -> AppResult<Vec<Decision>> {
    Ok(consents::table
        .filter(consents::study_id.eq(study_id))
        .filter(consents::patient_id.between(from, to))
        .select((
            consents::patient_id,
            consents::codeable_concept_id,
            consents::consented,
            consents::consented_at,
        ))
        .order((consents::patient_id, consents::codeable_concept_id))
        .load::<Decision>(conn)?)
}

/// Every decision a patient made, in any study: (study id, decision).
pub fn of_patient(conn: &mut DbConnection, patient_id: i64) -> AppResult<Vec<(i64, Decision)>> {
    let rows: Vec<(i64, i64, i64, bool, NaiveDateTime)> = consents::table
        .filter(consents::patient_id.eq(patient_id))
        .select((
            consents::study_id,
            consents::patient_id,
            consents::codeable_concept_id,
            consents::consented,
            consents::consented_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(s, p, c, ok, at)| {
            (
                s,
                Decision {
                    patient_id: p,
                    scope_id: c,
                    consented: ok,
                    at,
                },
            )
        })
        .collect())
}

pub fn is_enrolled(conn: &mut DbConnection, study_id: i64, patient_id: i64) -> AppResult<bool> {
    Ok(diesel::select(exists(
        study_patients::table
            .filter(study_patients::study_id.eq(study_id))
            .filter(study_patients::patient_id.eq(patient_id)),
    ))
    .get_result(conn)?)
}

/// Sets one decision; returns the previous one (None when it was pending). An unchanged
/// decision keeps its time.
pub fn set(
    conn: &mut DbConnection,
    study_id: i64,
    patient_id: i64,
    scope_id: i64,
    consented: bool,
    actor: i64,
    reason: Option<&str>,
) -> AppResult<Option<bool>> {
    let mine = || {
        consents::table
            .filter(consents::study_id.eq(study_id))
            .filter(consents::patient_id.eq(patient_id))
            .filter(consents::codeable_concept_id.eq(scope_id))
    };
    let t = now();
    let before: Option<bool> = mine().select(consents::consented).first(conn).optional()?;
    match before {
        Some(b) if b == consented => {}
        Some(_) => {
            diesel::update(mine())
                .set((
                    consents::consented.eq(consented),
                    consents::consented_at.eq(t),
                    consents::actor_user_id.eq(actor),
                    consents::reason.eq(reason),
                    consents::updated_at.eq(t),
                ))
                .execute(conn)?;
        }
        None => {
            diesel::insert_into(consents::table)
                .values((
                    consents::study_id.eq(study_id),
                    consents::patient_id.eq(patient_id),
                    consents::codeable_concept_id.eq(scope_id),
                    consents::consented.eq(consented),
                    consents::consented_at.eq(t),
                    consents::actor_user_id.eq(actor),
                    consents::reason.eq(reason),
                    consents::created_at.eq(t),
                    consents::updated_at.eq(t),
                ))
                .execute(conn)?;
        }
    }
    Ok(before)
}

/// Clears a decision (back to pending); returns the one there was.
pub fn clear(
    conn: &mut DbConnection,
    study_id: i64,
    patient_id: i64,
    scope_id: i64,
) -> AppResult<Option<bool>> {
    let mine = || {
        consents::table
            .filter(consents::study_id.eq(study_id))
            .filter(consents::patient_id.eq(patient_id))
            .filter(consents::codeable_concept_id.eq(scope_id))
    };
    let before: Option<bool> = mine().select(consents::consented).first(conn).optional()?;
    if before.is_some() {
        diesel::delete(mine()).execute(conn)?;
    }
    Ok(before)
}

/// Which rows the review shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Only {
    #[default]
    All,
    /// At least one requested scope (or the chosen one) without a decision.
    Pending,
    /// At least one requested scope (or the chosen one) declined.
    Declined,
}

impl Only {
    pub fn parse(s: &str) -> Only {
        match s {
            "pending" => Only::Pending,
            "declined" => Only::Declined,
            _ => Only::All,
        }
    }
}

type Enrolments = study_patients::BoxedQuery<'static, MultiBackend>;

/// The enrolments the review shows: one study's, narrowed by `only` over `scopes` (the
/// requested scopes, or the one chosen).
fn enrolments(study_id: i64, only: Only, scopes: &[i64]) -> Enrolments {
    let mut q = study_patients::table
        .filter(study_patients::study_id.eq(study_id))
        .into_boxed();
    let decided = |scope: i64| {
        consents::table
            .filter(consents::study_id.eq(study_id))
            .filter(consents::patient_id.eq(study_patients::patient_id))
            .filter(consents::codeable_concept_id.eq(scope))
    };
    match only {
        Only::All => {}
        Only::Pending => {
            // Pending somewhere: not every scope has a decision.
            let mut any: Option<
                Box<
                    dyn BoxableExpression<
                        study_patients::table,
                        MultiBackend,
                        SqlType = diesel::sql_types::Bool,
                    >,
                >,
            > = None;
            for s in scopes {
                let e = not(exists(decided(*s)));
                any = Some(match any {
                    None => Box::new(e),
                    Some(prev) => Box::new(prev.or(e)),
                });
            }
            q = match any {
                Some(e) => q.filter(e),
                None => q.filter(study_patients::id.lt(0)),
            };
        }
        Only::Declined => {
            q = q.filter(exists(
                consents::table
                    .filter(consents::study_id.eq(study_id))
                    .filter(consents::patient_id.eq(study_patients::patient_id))
                    .filter(consents::codeable_concept_id.eq_any(scopes.to_vec()))
                    .filter(consents::consented.eq(false)),
            ));
        }
    }
    q
}

/// A page of the review: enrolled patients by id, and how many rows the filter gives.
pub fn page(
    conn: &mut DbConnection,
    study_id: i64,
    only: Only,
    scopes: &[i64],
    offset: i64,
    limit: i64,
) -> AppResult<(Vec<Patient>, i64)> {
    let total: i64 = match only {
        Only::All => study_counts::table
            .find(study_id)
            .select(study_counts::enrolled)
            .first(conn)
            .optional()?
            .unwrap_or(0),
        _ => enrolments(study_id, only, scopes)
            .count()
            .get_result(conn)?,
    };
    let ids: Vec<i64> = enrolments(study_id, only, scopes)
        .select(study_patients::patient_id)
        .order(study_patients::patient_id)
        .offset(offset)
        .limit(limit)
        .load(conn)?;
    let mut rows = patients::table
        .filter(patients::id.eq_any(ids))
        .select(Patient::as_select())
        .load::<Patient>(conn)?;
    rows.sort_by_key(|p| p.id);
    Ok((rows, total))
}

/// The next slice of the export after patient `after`: up to `limit` enrolled patients.
pub fn export_slice(
    conn: &mut DbConnection,
    study_id: i64,
    only: Only,
    scopes: &[i64],
    after: i64,
    limit: i64,
) -> AppResult<Vec<Patient>> {
    let ids: Vec<i64> = enrolments(study_id, only, scopes)
        .filter(study_patients::patient_id.gt(after))
        .select(study_patients::patient_id)
        .order(study_patients::patient_id)
        .limit(limit)
        .load(conn)?;
    let (Some(first), Some(last)) = (ids.first().copied(), ids.last().copied()) else {
        return Ok(Vec::new());
    };
    // A range read along the primary key, then the filter's ids: cheaper than a long IN list.
    let wanted: std::collections::HashSet<i64> = ids.into_iter().collect();
    let rows = patients::table
        .filter(patients::id.between(first, last))
        .select(Patient::as_select())
        .order(patients::id)
        .load::<Patient>(conn)?;
    Ok(rows
        .into_iter()
        .filter(|p| wanted.contains(&p.id))
        .collect())
}

/// (enrolled, responded) from the counters.
pub fn study_totals(conn: &mut DbConnection, study_id: i64) -> AppResult<(i64, i64)> {
    Ok(study_counts::table
        .find(study_id)
        .select((study_counts::enrolled, study_counts::responded))
        .first(conn)
        .optional()?
        .unwrap_or((0, 0)))
}

/// (scope id, consented, declined) from the counters.
pub fn scope_totals(conn: &mut DbConnection, study_id: i64) -> AppResult<Vec<(i64, i64, i64)>> {
    Ok(study_scope_counts::table
        .filter(study_scope_counts::study_id.eq(study_id))
        .select((
            study_scope_counts::codeable_concept_id,
            study_scope_counts::consented,
            study_scope_counts::declined,
        ))
        .load(conn)?)
}

/// (patient id, decisions) of every enrolment, by patient: one walk along a covering index.
pub fn enrolment_decisions(conn: &mut DbConnection, study_id: i64) -> AppResult<Vec<(i64, i64)>> {
    Ok(study_patients::table
        .filter(study_patients::study_id.eq(study_id))
        .select((study_patients::patient_id, study_patients::decisions))
        .order(study_patients::patient_id)
        .load(conn)?)
}

/// (patient id, status, expires at) of an organization's invitations, by patient.
pub fn org_invitations(
    conn: &mut DbConnection,
    org_id: i64,
) -> AppResult<Vec<(i64, String, NaiveDateTime)>> {
    Ok(invitations::table
        .filter(invitations::organization_id.eq(org_id))
        .select((
            invitations::patient_id,
            invitations::status,
            invitations::expires_at,
        ))
        .order(invitations::patient_id)
        .load(conn)?)
}
