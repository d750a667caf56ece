//! SQL for consent decisions and the study review built on them: the only place it lives.

use crate::db::InIds;
use chrono::NaiveDateTime;
use diesel::dsl::{exists, not};
use diesel::prelude::*;

use crate::db::schema::{consents, patients, study_counts, study_patients, study_scope_counts};
use crate::db::DbConnection;
use crate::db::MultiBackend;
use crate::error::AppResult;
use crate::patient::model::Patient;
use crate::study::Scope;
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
                .filter(consents::patient_id.in_ids(chunk))
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

/// The review's filter: which rows, over all requested scopes or one.
#[derive(Clone, Copy, Debug)]
pub struct Filter {
    pub only: Only,
    /// One requested scope, or None for all of them.
    pub scope: Option<i64>,
    /// How many scopes the study requests.
    pub requested: i64,
}

impl Filter {
    /// A filter over the study's `requested` scopes. A scope it does not request (a stale
    /// bookmark) reads as all of them.
    pub fn new(only: Only, scope: Option<i64>, requested: &[Scope]) -> Filter {
        Filter {
            only,
            scope: scope.filter(|id| requested.iter().any(|r| r.id == *id)),
            requested: requested.len() as i64,
        }
    }

    /// The scopes this filter shows: the one chosen, or every requested one.
    pub fn columns(&self, requested: &[Scope]) -> Vec<Scope> {
        requested
            .iter()
            .filter(|sc| self.scope.is_none_or(|f| f == sc.id))
            .cloned()
            .collect()
    }
}

type Enrolments = study_patients::BoxedQuery<'static, MultiBackend>;

/// The enrolments the review shows. Over all scopes the per-enrolment counts answer
/// (pending: fewer decisions than scopes; declined: any decline); over one scope, a probe
/// of the consent index per enrolment.
fn enrolments(study_id: i64, f: Filter) -> Enrolments {
    let q = study_patients::table
        .filter(study_patients::study_id.eq(study_id))
        .into_boxed();
    let decided = |scope: i64| {
        consents::table
            .filter(consents::study_id.eq(study_id))
            .filter(consents::patient_id.eq(study_patients::patient_id))
            .filter(consents::codeable_concept_id.eq(scope))
    };
    match (f.only, f.scope) {
        (Only::All, _) => q,
        (Only::Pending, None) => q.filter(study_patients::decisions.lt(f.requested)),
        (Only::Declined, None) => q.filter(study_patients::declines.gt(0)),
        (Only::Pending, Some(s)) => q.filter(not(exists(decided(s)))),
        (Only::Declined, Some(s)) => {
            q.filter(exists(decided(s).filter(consents::consented.eq(false))))
        }
    }
}

/// How many rows a filter gives: from the counters where they answer, else counted.
fn filtered_total(conn: &mut DbConnection, study_id: i64, f: Filter) -> AppResult<i64> {
    let (enrolled, _) = study_totals(conn, study_id)?;
    let scope_counts = |conn: &mut DbConnection, s: i64| -> AppResult<(i64, i64)> {
        Ok(study_scope_counts::table
            .find((study_id, s))
            .select((study_scope_counts::consented, study_scope_counts::declined))
            .first(conn)
            .optional()?
            .unwrap_or((0, 0)))
    };
    Ok(match (f.only, f.scope) {
        (Only::All, _) => enrolled,
        (Only::Pending, Some(s)) => {
            let (c, d) = scope_counts(conn, s)?;
            (enrolled - c - d).max(0)
        }
        (Only::Declined, Some(s)) => scope_counts(conn, s)?.1,
        _ => enrolments(study_id, f).count().get_result(conn)?,
    })
}

/// A page of the review: enrolled patients by id, and how many rows the filter gives.
pub fn page(
    conn: &mut DbConnection,
    study_id: i64,
    f: Filter,
    offset: i64,
    limit: i64,
) -> AppResult<(Vec<Patient>, i64)> {
    let total = filtered_total(conn, study_id, f)?;
    let ids: Vec<i64> = enrolments(study_id, f)
        .select(study_patients::patient_id)
        .order(study_patients::patient_id)
        .offset(offset)
        .limit(limit)
        .load(conn)?;
    let mut rows = patients::table
        .filter(patients::id.in_ids(&ids))
        .select(Patient::as_select())
        .load::<Patient>(conn)?;
    rows.sort_by_key(|p| p.id);
    Ok((rows, total))
}

/// Every patient id the filter gives, in order: the export's plan, one index walk.
pub fn export_ids(conn: &mut DbConnection, study_id: i64, f: Filter) -> AppResult<Vec<i64>> {
    Ok(enrolments(study_id, f)
        .select(study_patients::patient_id)
        .order(study_patients::patient_id)
        .load(conn)?)
}

/// The patients of one slice of the export (ids in order).
pub fn export_people(conn: &mut DbConnection, ids: &[i64]) -> AppResult<Vec<Patient>> {
    let (Some(first), Some(last)) = (ids.first().copied(), ids.last().copied()) else {
        return Ok(Vec::new());
    };
    // A range read along the primary key, then the slice's ids: cheaper than a long IN list.
    let wanted: std::collections::HashSet<i64> = ids.iter().copied().collect();
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

/// The study's change stamp: it moves on every enrolment, decision and invitation change.
pub fn changes(conn: &mut DbConnection, study_id: i64) -> AppResult<i64> {
    Ok(study_counts::table
        .find(study_id)
        .select(study_counts::changes)
        .first(conn)
        .optional()?
        .unwrap_or(0))
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

/// (study id, scope id, decisions) for several studies at once, from the counters.
pub fn decided_of(conn: &mut DbConnection, study_ids: &[i64]) -> AppResult<Vec<(i64, i64, i64)>> {
    Ok(study_scope_counts::table
        .filter(study_scope_counts::study_id.in_ids(study_ids))
        .select((
            study_scope_counts::study_id,
            study_scope_counts::codeable_concept_id,
            study_scope_counts::consented + study_scope_counts::declined,
        ))
        .load(conn)?)
}

/// Response figures over a study's enrolments from what each carries (decisions, latest
/// invitation, invitations issued): (invited, invited and responded, issued, redeemed, open,
/// expired). One walk along a covering index; no timestamp is read back.
pub fn invitation_totals(
    conn: &mut DbConnection,
    study_id: i64,
    now: NaiveDateTime,
) -> AppResult<(i64, i64, i64, i64, i64, i64)> {
    use diesel::sql_types::{BigInt, Timestamp};
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        invited: i64,
        #[diesel(sql_type = BigInt)]
        responded: i64,
        #[diesel(sql_type = BigInt)]
        issued: i64,
        #[diesel(sql_type = BigInt)]
        redeemed: i64,
        #[diesel(sql_type = BigInt)]
        open: i64,
        #[diesel(sql_type = BigInt)]
        expired: i64,
    }
    let (p1, p2, p3) = match conn {
        DbConnection::Postgres(_) => ("$1", "$2", "$3"),
        // Numbered, as the text uses them out of order.
        DbConnection::Sqlite(_) => ("?1", "?2", "?3"),
    };
    let sql = format!(
        "SELECT COUNT(*) AS invited,
                COALESCE(SUM(CASE WHEN decisions > 0 THEN 1 ELSE 0 END), 0) AS responded,
                CAST(COALESCE(SUM(invitations), 0) AS BIGINT) AS issued,
                COALESCE(SUM(CASE WHEN invitation_status = 'redeemed' THEN 1 ELSE 0 END), 0) AS redeemed,
                COALESCE(SUM(CASE WHEN invitation_status IN ('issued', 'reissued')
                                   AND invitation_expires_at > {p2} THEN 1 ELSE 0 END), 0) AS open,
                COALESCE(SUM(CASE WHEN invitation_status = 'expired'
                                    OR (invitation_status IN ('issued', 'reissued')
                                        AND invitation_expires_at <= {p3}) THEN 1 ELSE 0 END), 0) AS expired
           FROM study_patients
          WHERE study_id = {p1} AND invitation_status IS NOT NULL"
    );
    let r: Row = diesel::sql_query(sql)
        .into_boxed::<MultiBackend>()
        .bind::<BigInt, _>(study_id)
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .get_result(conn)?;
    Ok((
        r.invited,
        r.responded,
        r.issued,
        r.redeemed,
        r.open,
        r.expired,
    ))
}
