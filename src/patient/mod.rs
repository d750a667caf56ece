//! Patients: who they are, which organizations hold them, and the rules for finding,
//! adding, changing, archiving and removing them. Console and API both call these.

pub mod api;
pub mod bulk;
pub mod model;
pub mod pages;
pub mod record;
pub mod repo;
pub mod search;

use chrono::NaiveDate;

use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::{AppError, FieldErrors};
use crate::organization::{self, OrgScope, Role};
use model::{Patient, PatientInput, ValidPatient};

/// Checks what a practitioner entered. Field names are the API's (camelCase).
pub fn validate(input: &PatientInput, today: NaiveDate) -> Result<ValidPatient, FieldErrors> {
    let mut e = FieldErrors::new();
    let mut say = |field: &str, msg: &str| {
        e.entry(field.to_string())
            .or_default()
            .push(msg.to_string());
    };
    let email = crate::util::normalize_email(&input.email);
    if email.is_empty() {
        say("telecomEmail", "Enter the patient's e-mail address.");
    } else if !crate::util::looks_like_email(&email) {
        say(
            "telecomEmail",
            "Enter an e-mail address such as name@example.org.",
        );
    }
    let family = input.name_family.trim().to_string();
    let given = input.name_given.trim().to_string();
    if family.is_empty() {
        say("nameFamily", "Enter the family name.");
    } else if family.chars().count() > 150 {
        say("nameFamily", "Use at most 150 characters.");
    }
    if given.is_empty() {
        say("nameGiven", "Enter the given name.");
    } else if given.chars().count() > 150 {
        say("nameGiven", "Use at most 150 characters.");
    }
    let birth_date = match input.birth_date.trim() {
        "" => None,
        s => match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            Ok(d) if d > today => {
                say("birthDate", "A birth date cannot be in the future.");
                None
            }
            Ok(d) if d < NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(d) => {
                say("birthDate", "Use a birth date from 1900 on.");
                None
            }
            Ok(d) => Some(d),
            Err(_) => {
                say(
                    "birthDate",
                    "Use a real date written YYYY-MM-DD, such as 1980-04-23.",
                );
                None
            }
        },
    };
    let phone = match input.phone.trim() {
        "" => None,
        s => match normalize_phone(s) {
            Some(p) => Some(p),
            None => {
                say("telecomPhone", "Use a phone number of 7 to 15 digits; a leading + and country code are welcome, such as +1 617 555 0100.");
                None
            }
        },
    };
    let mut identifiers = Vec::new();
    for (system, value) in &input.identifiers {
        let (system, value) = (system.trim().to_string(), value.trim().to_string());
        if system.is_empty() && value.is_empty() {
            continue;
        }
        if system.is_empty() || value.is_empty() {
            say(
                "identifiers",
                "Each identifier needs both a system and a value.",
            );
            continue;
        }
        if identifiers.iter().any(|(s, v)| *s == system && *v == value) {
            say("identifiers", &format!("{system} {value} is listed twice."));
            continue;
        }
        identifiers.push((system, value));
    }
    if e.is_empty() {
        Ok(ValidPatient {
            email,
            name_family: family,
            name_given: given,
            birth_date,
            phone,
            identifiers,
        })
    } else {
        Err(e)
    }
}

/// Keeps the digits (and a leading +) of a phone number people typed with spaces, dots,
/// dashes or brackets; None when it cannot be one.
pub fn normalize_phone(s: &str) -> Option<String> {
    let s = s.trim();
    let plus = s.starts_with('+');
    let body = if plus { &s[1..] } else { s };
    if !body
        .chars()
        .all(|c| c.is_ascii_digit() || " .-()/".contains(c))
    {
        return None;
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    (7..=15)
        .contains(&digits.len())
        .then(|| if plus { format!("+{digits}") } else { digits })
}

fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

/// Refuses identifiers another patient already holds (they are unique across the exchange).
fn check_identifiers(
    conn: &mut DbConnection,
    p: &ValidPatient,
    own: Option<i64>,
) -> Result<(), AppError> {
    for (system, value) in &p.identifiers {
        if let Some(holder) = repo::identifier_holder(conn, system, value)? {
            if Some(holder) != own {
                return Err(AppError::invalid(
                    "identifiers",
                    format!("{system} {value} is already held by another patient."),
                ));
            }
        }
    }
    Ok(())
}

/// Creates a patient in the scope's organization.
pub fn create(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    input: &PatientInput,
) -> Result<i64, AppError> {
    organization::require(scope, Role::Member)?;
    let p = validate(input, today()).map_err(AppError::Invalid)?;
    if let Some(existing) = repo::find_by_email(conn, &p.email)? {
        let here = repo::is_linked(conn, existing.id, scope.org_id())?;
        return Err(AppError::Conflict(if here {
            format!("{} is already a patient of this organization.", p.email)
        } else {
            format!(
                "{} is already a patient of another organization; add them to this one instead.",
                p.email
            )
        }));
    }
    if crate::practitioner::repo::find_by_email(conn, &p.email)?.is_some() {
        return Err(AppError::invalid(
            "telecomEmail",
            format!("{} belongs to a practitioner account.", p.email),
        ));
    }
    check_identifiers(conn, &p, None)?;
    let id = repo::insert(conn, &p, scope.org_id())?;
    Audit::by(user, "patient.create")
        .object("patient", id)
        .org(scope.org_id())
        .record(conn)?;
    Ok(id)
}

/// The best access the caller has to a patient through any organization that holds it.
/// A patient the caller cannot see is reported as missing.
pub fn authorize(
    conn: &mut DbConnection,
    user: &CurrentUser,
    patient_id: i64,
    needed: Role,
) -> Result<OrgScope, AppError> {
    let mut best: Option<OrgScope> = None;
    for org_id in repo::org_ids_of(conn, patient_id)? {
        // An organization the caller cannot see simply does not count.
        if let Ok(scope) = organization::authorize(conn, user, org_id, Role::Viewer) {
            if best.as_ref().is_none_or(|b| scope.role() > b.role()) {
                best = Some(scope);
            }
        }
    }
    let scope = best.ok_or_else(|| AppError::not_found("Patient"))?;
    organization::require(&scope, needed)?;
    Ok(scope)
}

/// Reads one patient the scope holds, and notes the read in the audit log.
pub fn read(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    id: i64,
) -> Result<Patient, AppError> {
    if !repo::is_linked(conn, id, scope.org_id())? {
        return Err(AppError::not_found("Patient"));
    }
    let p = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Patient"))?;
    Audit::by(user, "patient.read")
        .object("patient", id)
        .org(scope.org_id())
        .record(conn)?;
    Ok(p)
}

/// Changes everything but the e-mail (a separate, confirmed action).
pub fn update(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    id: i64,
    input: &PatientInput,
    replace_identifiers: bool,
) -> Result<(), AppError> {
    organization::require(scope, Role::Member)?;
    let current = read(conn, user, scope, id)?;
    let mut input = input.clone();
    input.email = current.telecom_email.clone();
    let p = validate(&input, today()).map_err(AppError::Invalid)?;
    if replace_identifiers {
        check_identifiers(conn, &p, Some(id))?;
    }
    let p = if replace_identifiers {
        p
    } else {
        let kept = repo::identifiers(conn, &[id])?;
        ValidPatient {
            identifiers: kept.into_iter().map(|i| (i.system, i.value)).collect(),
            ..p
        }
    };
    repo::update(conn, id, &p, replace_identifiers)?;
    Audit::by(user, "patient.update")
        .object("patient", id)
        .org(scope.org_id())
        .record(conn)
}

/// Changes the e-mail, the patient's sign-in: its own action, confirmed by the practitioner.
pub fn change_email(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    id: i64,
    new_email: &str,
    confirmed: bool,
) -> Result<(), AppError> {
    organization::require(scope, Role::Member)?;
    let current = read(conn, user, scope, id)?;
    let email = crate::util::normalize_email(new_email);
    if !crate::util::looks_like_email(&email) {
        return Err(AppError::invalid(
            "telecomEmail",
            "Enter an e-mail address such as name@example.org.",
        ));
    }
    if email == current.telecom_email {
        return Err(AppError::invalid(
            "telecomEmail",
            "That is already the patient's e-mail.",
        ));
    }
    if !confirmed {
        return Err(AppError::invalid(
            "confirm",
            "Confirm that the patient gave you this address: they sign in with it from now on.",
        ));
    }
    if crate::practitioner::repo::find_by_email(conn, &email)?.is_some() {
        return Err(AppError::invalid(
            "telecomEmail",
            format!("{email} is already used by another account."),
        ));
    }
    repo::set_email(conn, id, &email)?;
    Audit::by(user, "patient.email.change")
        .object("patient", id)
        .org(scope.org_id())
        .detail(serde_json::json!({"from": current.telecom_email, "to": email}))
        .record(conn)
}

pub fn set_archived(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    id: i64,
    archived: bool,
) -> Result<(), AppError> {
    organization::require(scope, Role::Member)?;
    if !repo::set_archived(conn, id, scope.org_id(), archived)? {
        return Err(AppError::not_found("Patient"));
    }
    let action = if archived {
        "patient.archive"
    } else {
        "patient.restore"
    };
    Audit::by(user, action)
        .object("patient", id)
        .org(scope.org_id())
        .record(conn)
}

/// Archives or restores many patients of the scope's organization; returns how many changed.
pub fn set_archived_many(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    ids: &[i64],
    archived: bool,
) -> Result<usize, AppError> {
    organization::require(scope, Role::Member)?;
    let changed = repo::set_archived_many(conn, ids, scope.org_id(), archived)?;
    let action = if archived {
        "patient.archive"
    } else {
        "patient.restore"
    };
    Audit::by(user, action)
        .org(scope.org_id())
        .detail(serde_json::json!({"patients": changed, "bulk": true}))
        .record(conn)?;
    Ok(changed)
}

/// What removal would take: (enrolments, consents, whether the record itself goes).
pub fn removal_preview(
    conn: &mut DbConnection,
    scope: &OrgScope,
    id: i64,
) -> Result<(i64, i64, bool), AppError> {
    if !repo::is_linked(conn, id, scope.org_id())? {
        return Err(AppError::not_found("Patient"));
    }
    let (e, c) = repo::removal_counts(conn, id, scope.org_id())?;
    Ok((e, c, repo::org_ids_of(conn, id)?.len() == 1))
}

/// Removes the patient from the organization; returns true when the record itself went.
pub fn remove(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    id: i64,
) -> Result<bool, AppError> {
    organization::require(scope, Role::Member)?;
    let (enrolments, consents, last) = removal_preview(conn, scope, id)?;
    let gone = repo::remove_from_org(conn, id, scope.org_id())?;
    debug_assert_eq!(gone, last);
    Audit::by(user, "patient.remove")
        .object("patient", id)
        .org(scope.org_id())
        .detail(serde_json::json!({"enrolments": enrolments, "consents": consents, "recordDeleted": gone}))
        .record(conn)?;
    Ok(gone)
}

/// Adds an existing patient to the scope's organization (idempotent).
pub fn add_to_organization(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    id: i64,
) -> Result<bool, AppError> {
    organization::require(scope, Role::Member)?;
    if repo::find(conn, id)?.is_none() {
        return Err(AppError::not_found("Patient"));
    }
    if repo::is_linked(conn, id, scope.org_id())? {
        return Ok(false);
    }
    repo::link(conn, id, scope.org_id())?;
    Audit::by(user, "patient.add_organization")
        .object("patient", id)
        .org(scope.org_id())
        .record(conn)?;
    Ok(true)
}

/// The organizations the caller may list patients of: one (checked), or all they can see.
pub fn list_scope(
    conn: &mut DbConnection,
    user: &CurrentUser,
    org_id: Option<i64>,
) -> Result<Vec<i64>, AppError> {
    match org_id {
        Some(id) => Ok(vec![
            organization::authorize(conn, user, id, Role::Viewer)?.org_id()
        ]),
        None => Ok(organization::visible(conn, user)?.1.into_keys().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PatientInput {
        PatientInput {
            email: " Ana@Example.org ".into(),
            name_family: "Silva".into(),
            name_given: "Ana".into(),
            birth_date: "1980-04-23".into(),
            phone: "+1 (617) 555-0100".into(),
            identifiers: vec![("urn:mrn".into(), "123".into())],
        }
    }

    #[test]
    fn good_input_is_normalized() {
        let p = validate(
            &input(),
            NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date"),
        )
        .expect("valid");
        assert_eq!(p.email, "ana@example.org");
        assert_eq!(p.phone.as_deref(), Some("+16175550100"));
    }

    #[test]
    fn each_bad_field_says_what_to_fix() {
        let bad = PatientInput {
            email: "nope".into(),
            name_family: "".into(),
            name_given: "".into(),
            birth_date: "01/02/1980".into(),
            phone: "call me".into(),
            identifiers: vec![("urn:mrn".into(), "".into())],
        };
        let e = validate(&bad, NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date")).unwrap_err();
        for f in [
            "telecomEmail",
            "nameFamily",
            "nameGiven",
            "birthDate",
            "telecomPhone",
            "identifiers",
        ] {
            assert!(e.contains_key(f), "{f}: {e:?}");
        }
        let future = PatientInput {
            birth_date: "2030-01-01".into(),
            ..input()
        };
        let e = validate(
            &future,
            NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date"),
        )
        .unwrap_err();
        assert!(e["birthDate"][0].contains("future"));
        let impossible = PatientInput {
            birth_date: "1980-02-30".into(),
            ..input()
        };
        assert!(validate(
            &impossible,
            NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date")
        )
        .is_err());
    }
}
