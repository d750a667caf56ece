//! What patients meet: the page an invitation link opens (their own consent, study by
//! study), study sign-up links, and the app connection (invitation redemption and the OAuth
//! token endpoint) with what a patient token may reach. Patients never have a password: a
//! link, or an app holding a token, is how they act.

pub mod api;
pub mod console;
pub mod oauth;
pub mod pages;
pub mod signup;
pub mod text;

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::dsl::exists;
use diesel::prelude::*;

use crate::audit::Audit;
use crate::db::schema::{api_tokens, oauth_grants};
use crate::db::DbConnection;
use crate::error::{AppError, AppResult};
use crate::invitation::Invitation;
use crate::organization::Role;
use crate::patient::model::Patient;
use crate::study::{Scope, Status, Study};
use crate::util::now;

/// What an invitation link comes to when someone opens it.
pub enum LinkState {
    Unknown,
    Expired { org: String, on: NaiveDateTime },
    Replaced { org: String },
    Used { org: String },
    Open(Box<OpenLink>),
}

pub struct OpenLink {
    pub invitation: Invitation,
    pub org: String,
    pub patient: Patient,
}

/// Looks a link's token up and says what it is worth now.
pub fn open_link(conn: &mut DbConnection, token: &str) -> AppResult<LinkState> {
    let Some(inv) = crate::invitation::repo::find_by_token(conn, token)? else {
        return Ok(LinkState::Unknown);
    };
    let org = crate::organization::repo::find(conn, inv.organization_id)?
        .map(|o| o.name)
        .unwrap_or_default();
    Ok(match crate::invitation::status(&inv, now()) {
        "expired" => LinkState::Expired {
            org,
            on: inv.expires_at,
        },
        "cancelled" => LinkState::Replaced { org },
        "redeemed" => LinkState::Used { org },
        _ => match crate::patient::repo::find(conn, inv.patient_id)? {
            Some(patient) => LinkState::Open(Box::new(OpenLink {
                invitation: inv,
                org,
                patient,
            })),
            None => LinkState::Unknown,
        },
    })
}

/// One thing a study asks for, with the patient's answer so far.
#[derive(Clone, Debug)]
pub struct Item {
    pub scope: Scope,
    pub answer: Option<bool>,
}

/// A study as the patient sees it: what it asks for and from which devices.
#[derive(Clone, Debug)]
pub struct Offer {
    pub study: Study,
    pub items: Vec<Item>,
    pub devices: Vec<String>,
}

impl Offer {
    pub fn paused(&self) -> bool {
        self.study.status() == Status::Paused
    }
}

/// The studies of `org_id` the patient is enrolled in and that have not closed, in name
/// order, each with what it asks for and the patient's answers.
pub fn offers(conn: &mut DbConnection, patient_id: i64, org_id: i64) -> AppResult<Vec<Offer>> {
    let only: BTreeMap<i64, Role> = [(org_id, Role::Viewer)].into();
    let mut studies = crate::consent::of_patient(conn, &only, patient_id)?;
    studies.retain(|s| s.study.status() != Status::Closed);
    studies.sort_by(|a, b| a.study.name.cmp(&b.study.name));
    let ids: Vec<i64> = studies.iter().map(|s| s.study.id).collect();
    let mut devices: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (sid, d) in crate::study::repo::data_sources_of(conn, &ids)? {
        devices.entry(sid).or_default().push(d.name);
    }
    Ok(studies
        .into_iter()
        .map(|s| Offer {
            devices: devices.remove(&s.study.id).unwrap_or_default(),
            items: s
                .cells
                .into_iter()
                .map(|c| Item {
                    scope: c.scope,
                    answer: c.decision.map(|d| d.0),
                })
                .collect(),
            study: s.study,
        })
        .collect())
}

/// How a patient's own decision reached us, for the audit log.
#[derive(Clone, Debug)]
pub struct Via {
    /// "invitation", "sign-up" or "app".
    pub channel: &'static str,
    pub ip: Option<String>,
    pub token_id: Option<i64>,
}

/// Records the patient's own answers: (study, scope, yes / no, or None to clear). Each study
/// must be one the patient is enrolled in (of `org_id`, when given: a link speaks for one
/// organization) and each scope one that study asks for; one bad item changes nothing.
/// The patient is the actor. Returns how many answers changed.
pub fn decide(
    conn: &mut DbConnection,
    patient: &Patient,
    org_id: Option<i64>,
    changes: &[(i64, i64, Option<bool>)],
    via: &Via,
) -> Result<usize, AppError> {
    let mut by_study: BTreeMap<i64, Vec<(i64, Option<bool>)>> = BTreeMap::new();
    for (study, scope, answer) in changes {
        by_study.entry(*study).or_default().push((*scope, *answer));
    }
    let mut changed = 0;
    for (study_id, answers) in by_study {
        let study = crate::study::repo::find(conn, study_id)?
            .filter(|s| org_id.is_none_or(|o| o == s.organization_id))
            .ok_or_else(|| AppError::not_found("Study"))?;
        if !crate::consent::repo::is_enrolled(conn, study.id, patient.id)? {
            return Err(AppError::BadRequest(format!(
                "You are not taking part in {}, so there is nothing to answer there.",
                study.name
            )));
        }
        let requested = crate::study::repo::requested(conn, study.id)?;
        let mut log = Vec::new();
        for (scope_id, answer) in answers {
            let scope = crate::consent::requested_scope(&study, &requested, scope_id)?;
            let before = match answer {
                Some(yes) => crate::consent::repo::set(
                    conn,
                    study.id,
                    patient.id,
                    scope.id,
                    yes,
                    patient.user_id,
                    None,
                )?,
                None => crate::consent::repo::clear(conn, study.id, patient.id, scope.id)?,
            };
            if before != answer {
                log.push(
                    serde_json::json!({"scope": scope.coding_code, "from": before, "to": answer}),
                );
            }
        }
        if !log.is_empty() {
            changed += log.len();
            let mut detail =
                serde_json::json!({"studyId": study.id, "changes": log, "via": via.channel});
            if let Some(t) = via.token_id {
                detail["apiToken"] = t.into();
            }
            let event = Audit::anonymous(
                "consent.patient",
                Some(&patient.telecom_email),
                via.ip.clone(),
            )
            .user_id(patient.user_id, &patient.telecom_email)
            .object("patient", patient.id)
            .org(study.organization_id)
            .detail(detail);
            event.record(conn)?;
        }
    }
    Ok(changed)
}

/// Whether the patient has an app that can still call: a live patient token, or a refresh
/// token it can trade for one.
pub fn has_live_app(conn: &mut DbConnection, user_id: i64) -> AppResult<bool> {
    let t = now();
    let token: bool = diesel::select(exists(
        api_tokens::table
            .filter(api_tokens::user_id.eq(user_id))
            .filter(api_tokens::kind.eq("patient"))
            .filter(api_tokens::revoked_at.is_null())
            .filter(
                api_tokens::expires_at
                    .is_null()
                    .or(api_tokens::expires_at.gt(t)),
            ),
    ))
    .get_result(conn)?;
    if token {
        return Ok(true);
    }
    Ok(diesel::select(exists(
        oauth_grants::table
            .filter(oauth_grants::user_id.eq(user_id))
            .filter(oauth_grants::kind.eq("refresh"))
            .filter(oauth_grants::used_at.is_null())
            .filter(oauth_grants::expires_at.gt(t)),
    ))
    .get_result(conn)?)
}
