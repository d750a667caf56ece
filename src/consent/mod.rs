//! Consent: each enrolled patient's decision per requested scope (consented, declined, or
//! no decision yet), decisions recorded on a patient's behalf, and the study review with its
//! totals and export. Console and API both call these.

pub mod api;
pub mod pages;
pub mod repo;

use std::collections::BTreeMap;

use chrono::NaiveDateTime;

use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::AppError;
use crate::organization::{self, OrgScope, Role};
use crate::study::{self, Scope, Study};
pub use repo::{Decision, Only};

/// One requested scope and the patient's decision on it (None: pending).
#[derive(Clone, Debug)]
pub struct Cell {
    pub scope: Scope,
    pub decision: Option<(bool, NaiveDateTime)>,
}

/// A patient's decisions in one study, requested scopes in order.
#[derive(Clone, Debug)]
pub struct StudyConsents {
    pub study: Study,
    pub cells: Vec<Cell>,
}

impl StudyConsents {
    pub fn pending(&self) -> Vec<&Cell> {
        self.cells.iter().filter(|c| c.decision.is_none()).collect()
    }
    pub fn decided(&self) -> Vec<&Cell> {
        self.cells.iter().filter(|c| c.decision.is_some()).collect()
    }
}

/// The consents of one patient in every study it is enrolled in within `visible`, the
/// organizations the caller may see (`organization::visible`).
pub fn of_patient(
    conn: &mut DbConnection,
    visible: &BTreeMap<i64, Role>,
    patient_id: i64,
) -> Result<Vec<StudyConsents>, AppError> {
    let studies: Vec<Study> = study::repo::studies_of_patient(conn, patient_id)?
        .into_iter()
        .filter(|s| visible.contains_key(&s.organization_id))
        .collect();
    let ids: Vec<i64> = studies.iter().map(|s| s.id).collect();
    let mut requested: BTreeMap<i64, Vec<Scope>> = BTreeMap::new();
    for (sid, scope) in study::repo::scope_requests(conn, &ids)? {
        requested.entry(sid).or_default().push(scope);
    }
    let decisions: BTreeMap<(i64, i64), (bool, NaiveDateTime)> =
        repo::of_patient(conn, patient_id)?
            .into_iter()
            .map(|(sid, d)| ((sid, d.scope_id), (d.consented, d.at)))
            .collect();
    Ok(studies
        .into_iter()
        .map(|s| StudyConsents {
            cells: requested
                .remove(&s.id)
                .unwrap_or_default()
                .into_iter()
                .map(|scope| Cell {
                    decision: decisions.get(&(s.id, scope.id)).copied(),
                    scope,
                })
                .collect(),
            study: s,
        })
        .collect())
}

/// Sets or clears a patient's decisions in one study, as a practitioner acting on the
/// patient's behalf: `changes` are (scope id, Some(consented) or None to clear). The reason is
/// required and kept, with each change, in the audit log. Returns how many changed.
pub fn record(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    study: &Study,
    patient_id: i64,
    changes: &[(i64, Option<bool>)],
    reason: &str,
) -> Result<usize, AppError> {
    organization::require(scope, Role::Member)?;
    if study.organization_id != scope.org_id() {
        return Err(AppError::not_found("Study"));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AppError::invalid(
            "reason",
            "Say why you record this for the patient, such as “paper form signed 2026-03-02”.",
        ));
    }
    if reason.chars().count() > 500 {
        return Err(AppError::invalid("reason", "Use at most 500 characters."));
    }
    if changes.is_empty() {
        return Err(AppError::invalid(
            "scopeConsents",
            "Choose at least one scope to record a decision for.",
        ));
    }
    if !repo::is_enrolled(conn, study.id, patient_id)? {
        return Err(AppError::BadRequest(format!(
            "Patient {patient_id} is not enrolled in {}; enrol them first.",
            study.name
        )));
    }
    let requested: Vec<Scope> = study::repo::requested(conn, study.id)?;
    let mut changed = 0;
    let mut log = Vec::new();
    for (scope_id, choice) in changes {
        let code = requested_scope(study, &requested, *scope_id)?;
        let before = match choice {
            Some(c) => repo::set(
                conn,
                study.id,
                patient_id,
                code.id,
                *c,
                user.id(),
                Some(reason),
            )?,
            None => repo::clear(conn, study.id, patient_id, code.id)?,
        };
        if before != *choice {
            changed += 1;
            log.push(serde_json::json!({"scope": code.coding_code, "from": before, "to": choice}));
        }
    }
    if changed > 0 {
        Audit::by(user, "consent.record")
            .object("patient", patient_id)
            .org(scope.org_id())
            .detail(serde_json::json!({"studyId": study.id, "changes": log, "reason": reason, "onBehalf": true}))
            .record(conn)?;
    }
    Ok(changed)
}

/// One of the scopes a study requests, or the 400 that lists them.
pub fn requested_scope<'a>(
    study: &Study,
    requested: &'a [Scope],
    scope_id: i64,
) -> Result<&'a Scope, AppError> {
    requested.iter().find(|s| s.id == scope_id).ok_or_else(|| {
        AppError::BadRequest(format!(
            "{} does not request scope {scope_id}; choose one of: {}.",
            study.name,
            requested
                .iter()
                .map(|s| s.coding_code.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Per requested scope: consented, declined, pending.
#[derive(Clone, Debug)]
pub struct ScopeTotal {
    pub scope: Scope,
    pub consented: i64,
    pub declined: i64,
    pub pending: i64,
}

/// The review's totals: decisions per scope and overall, response rate, invitations.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    pub enrolled: i64,
    pub scopes: Vec<ScopeTotal>,
    pub consented: i64,
    pub declined: i64,
    pub pending: i64,
    /// Enrolled patients with at least one decision.
    pub responded: i64,
    /// Enrolled patients the study's organization has invited.
    pub invited: i64,
    /// Of those invited, how many responded.
    pub invited_responded: i64,
    /// Invitation links the study's organization issued to its enrolled patients.
    pub issued: i64,
    /// Invited patients, by what became of their latest link.
    pub redeemed: i64,
    pub expired: i64,
    pub open: i64,
}

impl Totals {
    /// Responded / invited, as a whole percentage; None before anyone is invited.
    pub fn response_rate(&self) -> Option<i64> {
        (self.invited > 0).then(|| (self.invited_responded * 100 + self.invited / 2) / self.invited)
    }
    /// Share of (enrolled × requested scopes) with a decision, as a whole percentage.
    pub fn completion(&self) -> Option<i64> {
        let all = self.consented + self.declined + self.pending;
        (all > 0).then(|| ((self.consented + self.declined) * 100 + all / 2) / all)
    }
}

/// Decision counts per requested scope from the trigger-kept counters.
pub fn scope_totals(
    conn: &mut DbConnection,
    study_id: i64,
    requested: &[Scope],
    enrolled: i64,
) -> Result<Vec<ScopeTotal>, AppError> {
    let counted: BTreeMap<i64, (i64, i64)> = repo::scope_totals(conn, study_id)?
        .into_iter()
        .map(|(s, c, d)| (s, (c, d)))
        .collect();
    Ok(requested
        .iter()
        .map(|scope| {
            let (c, d) = counted.get(&scope.id).copied().unwrap_or_default();
            ScopeTotal {
                scope: scope.clone(),
                consented: c,
                declined: d,
                pending: (enrolled - c - d).max(0),
            }
        })
        .collect())
}

/// Every total of the review. Decision counts come from counters; response and invitation
/// figures from one walk over the study's enrolments, which carry their latest invitation.
pub fn totals(
    conn: &mut DbConnection,
    study: &Study,
    requested: &[Scope],
) -> Result<Totals, AppError> {
    let (enrolled, responded) = repo::study_totals(conn, study.id)?;
    let scopes = scope_totals(conn, study.id, requested, enrolled)?;
    let mut t = Totals {
        enrolled,
        responded,
        consented: scopes.iter().map(|s| s.consented).sum(),
        declined: scopes.iter().map(|s| s.declined).sum(),
        pending: scopes.iter().map(|s| s.pending).sum(),
        scopes,
        ..Totals::default()
    };
    let (invited, invited_responded, issued, redeemed, open, expired) =
        repo::invitation_totals(conn, study.id, crate::util::now())?;
    t.invited = invited;
    t.invited_responded = invited_responded;
    t.issued = issued;
    t.redeemed = redeemed;
    t.open = open;
    t.expired = expired;
    Ok(t)
}

/// What a cached total was computed from: the study's change stamp, the minute (links
/// expire with time) and the requested scopes.
type Stamp = (i64, i64, Vec<i64>);

/// The review's totals per study, kept until the database says they changed. Every
/// instance keeps its own and checks the study's change stamp in the database on each use,
/// so instances behind a load balancer never show stale figures; only a link's expiry can
/// show up to a minute late.
#[derive(Default)]
pub struct TotalsCache(std::sync::Mutex<std::collections::HashMap<i64, (Stamp, Totals)>>);

impl TotalsCache {
    pub fn totals(
        &self,
        conn: &mut DbConnection,
        study: &Study,
        requested: &[Scope],
    ) -> Result<Totals, AppError> {
        let stamp: Stamp = (
            repo::changes(conn, study.id)?,
            crate::util::now().and_utc().timestamp() / 60,
            requested.iter().map(|s| s.id).collect(),
        );
        if let Some((s, t)) = self.lock().get(&study.id) {
            if *s == stamp {
                return Ok(t.clone());
            }
        }
        let t = totals(conn, study, requested)?;
        self.lock().insert(study.id, (stamp, t.clone()));
        Ok(t)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, (Stamp, Totals)>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
