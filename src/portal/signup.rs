//! Study sign-up links. A study's generic link (`/join/{study}?sig=…`) lets anyone join; a
//! personal link also carries an external identifier (`&ref=…`). Both are signed with the
//! server secret, so a link whose study or identifier was altered is refused, and any
//! instance can check any link without a lookup.

use chrono::NaiveDate;

use crate::db::DbConnection;
use crate::error::{AppError, AppResult};
use crate::patient::model::{Patient, ValidPatient};
use crate::study::{Status, Study};
use crate::util::{constant_time_eq, hmac_hex};

/// Hex characters of the signature kept in a link (128 bits).
const SIG_LEN: usize = 32;

/// The identifier system under which a study's external identifiers are kept.
pub fn ref_system(study_id: i64) -> String {
    format!("urn:cohort:study:{study_id}:participant")
}

pub fn signature(secret: &str, study_id: i64, reference: Option<&str>) -> String {
    let message = match reference {
        Some(r) => format!("join:{study_id}:{r}"),
        None => format!("join:{study_id}"),
    };
    hmac_hex(secret, &message)[..SIG_LEN].to_string()
}

pub fn verify(secret: &str, study_id: i64, reference: Option<&str>, sig: &str) -> bool {
    constant_time_eq(&signature(secret, study_id, reference), sig)
}

/// The address a study's sign-up link (generic, or personal with `reference`) opens.
pub fn link(public_url: &str, secret: &str, study_id: i64, reference: Option<&str>) -> String {
    let sig = signature(secret, study_id, reference);
    match reference {
        Some(r) => format!(
            "{public_url}/join/{study_id}?ref={}&sig={sig}",
            url::form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()
        ),
        None => format!("{public_url}/join/{study_id}?sig={sig}"),
    }
}

/// Checks an external identifier given for a personal link.
pub fn check_reference(raw: &str) -> Result<String, String> {
    let r = raw.trim();
    if r.is_empty() {
        return Err("Give the participant's external identifier, such as P-0042.".into());
    }
    if r.chars().count() > 100 {
        return Err("Use at most 100 characters for the external identifier.".into());
    }
    if r.chars().any(char::is_control) {
        return Err("The external identifier cannot contain control characters.".into());
    }
    Ok(r.to_string())
}

/// Refuses a link to a study that takes nobody in now.
pub fn open_for_joining(study: &Study) -> Result<(), Status> {
    match study.status() {
        Status::Active => Ok(()),
        s => Err(s),
    }
}

/// What someone typed to join.
pub struct Details {
    pub email: String,
    pub given: String,
    pub family: String,
    pub birth: NaiveDate,
}

/// Why a join was refused, in terms of the form.
pub enum Refused {
    /// This e-mail is a participant's whose birth date differs.
    Mismatch,
    /// The personal link's identifier belongs to a participant with another e-mail.
    ReferenceTaken,
    /// The e-mail is a staff account's.
    Practitioner,
}

pub struct Joined {
    pub patient: Patient,
    /// The person was already a participant somewhere (matched by e-mail or identifier).
    pub existing: bool,
}

/// Makes (or finds) the patient for these details in the study's organization, gives it the
/// personal link's identifier, and enrols it. A person already known by e-mail is matched,
/// not duplicated, when the birth date agrees (the only check an open link allows).
pub fn join(
    conn: &mut DbConnection,
    study: &Study,
    reference: Option<&str>,
    d: &Details,
    ip: Option<String>,
) -> AppResult<Result<Joined, Refused>> {
    let system = ref_system(study.id);
    let by_ref = match reference {
        Some(r) => crate::patient::repo::identifier_holder(conn, &system, r)?,
        None => None,
    };
    let by_email = crate::patient::repo::find_by_email(conn, &d.email)?;
    let existing = match (by_ref, by_email) {
        (Some(holder), _) => {
            let p = crate::patient::repo::find(conn, holder)?
                .ok_or_else(|| AppError::internal("identifier holder vanished"))?;
            if p.telecom_email != d.email {
                return Ok(Err(Refused::ReferenceTaken));
            }
            // A forwarded link is not enough to speak for its holder.
            if p.birth_date.is_some_and(|b| b != d.birth) {
                return Ok(Err(Refused::Mismatch));
            }
            Some(p)
        }
        (None, Some(p)) => {
            if p.birth_date.is_some_and(|b| b != d.birth) {
                return Ok(Err(Refused::Mismatch));
            }
            Some(p)
        }
        (None, None) => None,
    };
    let was_known = existing.is_some();
    let patient = match existing {
        Some(p) => {
            if !crate::patient::repo::is_linked(conn, p.id, study.organization_id)? {
                crate::patient::repo::link(conn, p.id, study.organization_id)?;
            }
            if let Some(r) = reference {
                let mut ids: Vec<(String, String)> =
                    crate::patient::repo::identifiers(conn, &[p.id])?
                        .into_iter()
                        .map(|i| (i.system, i.value))
                        .collect();
                if !ids.iter().any(|(s, v)| *s == system && v == r) {
                    ids.push((system.clone(), r.to_string()));
                    let valid = ValidPatient {
                        email: p.telecom_email.clone(),
                        name_family: p.name_family.clone(),
                        name_given: p.name_given.clone(),
                        birth_date: p.birth_date.or(Some(d.birth)),
                        phone: p.telecom_phone.clone(),
                        identifiers: ids,
                    };
                    crate::patient::repo::update(conn, p.id, &valid, true)?;
                }
            }
            p
        }
        None => {
            if crate::practitioner::repo::find_by_email(conn, &d.email)?.is_some() {
                return Ok(Err(Refused::Practitioner));
            }
            let valid = ValidPatient {
                email: d.email.clone(),
                name_family: d.family.clone(),
                name_given: d.given.clone(),
                birth_date: Some(d.birth),
                phone: None,
                identifiers: reference
                    .map(|r| vec![(system.clone(), r.to_string())])
                    .unwrap_or_default(),
            };
            let id = crate::patient::repo::insert(conn, &valid, study.organization_id)?;
            crate::patient::repo::find(conn, id)?
                .ok_or_else(|| AppError::internal("new patient vanished"))?
        }
    };
    if !crate::consent::repo::is_enrolled(conn, study.id, patient.id)? {
        crate::study::repo::enrol(conn, study.id, &[patient.id])?;
    }
    crate::audit::Audit::anonymous("study.join", Some(&patient.telecom_email), ip)
        .user_id(patient.user_id, &patient.telecom_email)
        .object("patient", patient.id)
        .org(study.organization_id)
        .detail(
            serde_json::json!({"studyId": study.id, "reference": reference, "existing": was_known}),
        )
        .record(conn)?;
    Ok(Ok(Joined {
        patient,
        existing: was_known,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_study_or_identifier_breaks_the_signature() {
        let sig = signature("k", 7, Some("P-1"));
        assert!(verify("k", 7, Some("P-1"), &sig));
        assert!(!verify("k", 7, Some("P-2"), &sig));
        assert!(!verify("k", 8, Some("P-1"), &sig));
        assert!(!verify("k", 7, None, &sig));
        assert!(!verify("other", 7, Some("P-1"), &sig));
        assert!(verify("k", 7, None, &signature("k", 7, None)));
    }

    #[test]
    fn personal_links_carry_the_identifier_encoded() {
        let l = link("http://x", "k", 3, Some("A&B 1"));
        assert!(l.starts_with("http://x/join/3?ref=A%26B+1&sig="), "{l}");
    }
}
