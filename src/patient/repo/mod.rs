//! SQL for patients: the only place it lives. Lists and search are in `list`.

use crate::db::sql::Sql;
use crate::db::InIds;
use chrono::NaiveDateTime;
use diesel::dsl::exists;
use diesel::prelude::*;

use super::model::{Identifier, Patient, ValidPatient};
use super::search;
use crate::db::schema::{
    consents, patient_identifiers, patient_organizations, patient_search_terms, patients, studies,
    study_patients, users,
};
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::organization::Organization;
use crate::util::now;

mod bulk;
mod list;

pub use bulk::insert_many;
pub use list::{list, sort_birth, sort_name, Archived, ConsentState, Invited, ListFilter, Sort};

pub fn find(conn: &mut DbConnection, id: i64) -> AppResult<Option<Patient>> {
    Ok(patients::table
        .find(id)
        .select(Patient::as_select())
        .first(conn)
        .optional()?)
}

/// Several patients by id, in id order.
pub fn find_many(conn: &mut DbConnection, ids: &[i64]) -> AppResult<Vec<Patient>> {
    Ok(patients::table
        .filter(patients::id.in_ids(ids))
        .select(Patient::as_select())
        .order(patients::id)
        .load(conn)?)
}

pub fn find_by_email(conn: &mut DbConnection, email: &str) -> AppResult<Option<Patient>> {
    Ok(patients::table
        .filter(patients::telecom_email.eq(crate::util::normalize_email(email)))
        .select(Patient::as_select())
        .first(conn)
        .optional()?)
}

pub fn identifiers(conn: &mut DbConnection, ids: &[i64]) -> AppResult<Vec<Identifier>> {
    Ok(patient_identifiers::table
        .filter(patient_identifiers::patient_id.in_ids(ids))
        .select(Identifier::as_select())
        .order((patient_identifiers::patient_id, patient_identifiers::id))
        .load(conn)?)
}

/// (patient id, organization, archived at) for each link of these patients.
pub fn organizations_of(
    conn: &mut DbConnection,
    ids: &[i64],
) -> AppResult<Vec<(i64, Organization, Option<NaiveDateTime>)>> {
    use crate::db::schema::organizations;
    Ok(patient_organizations::table
        .inner_join(organizations::table)
        .filter(patient_organizations::patient_id.in_ids(ids))
        .select((
            patient_organizations::patient_id,
            Organization::as_select(),
            patient_organizations::archived_at,
        ))
        .order((patient_organizations::patient_id, organizations::name))
        .load(conn)?)
}

pub fn org_ids_of(conn: &mut DbConnection, patient_id: i64) -> AppResult<Vec<i64>> {
    Ok(patient_organizations::table
        .filter(patient_organizations::patient_id.eq(patient_id))
        .select(patient_organizations::organization_id)
        .load(conn)?)
}

/// Who holds an identifier already, if anyone.
pub fn identifier_holder(
    conn: &mut DbConnection,
    system: &str,
    value: &str,
) -> AppResult<Option<i64>> {
    Ok(patient_identifiers::table
        .filter(patient_identifiers::system.eq(system))
        .filter(patient_identifiers::value.eq(value))
        .select(patient_identifiers::patient_id)
        .first(conn)
        .optional()?)
}

/// Creates the patient's user, the patient, its identifiers and search words; links it to
/// `org_id`. Returns the patient id.
pub fn insert(conn: &mut DbConnection, p: &ValidPatient, org_id: i64) -> AppResult<i64> {
    let t = now();
    let words = search::words_json(&search_terms(p));
    let user_id: i64 = diesel::insert_into(users::table)
        .values((
            users::email.eq(&p.email),
            users::first_name.eq(&p.name_given),
            users::last_name.eq(&p.name_family),
            users::user_type.eq("patient"),
            users::is_superuser.eq(false),
            users::is_active.eq(true),
            users::created_at.eq(t),
        ))
        .returning(users::id)
        .get_result(conn)?;
    let id: i64 = diesel::insert_into(patients::table)
        .values((
            patients::user_id.eq(user_id),
            patients::name_family.eq(&p.name_family),
            patients::name_given.eq(&p.name_given),
            patients::birth_date.eq(p.birth_date),
            patients::telecom_phone.eq(&p.phone),
            patients::telecom_email.eq(&p.email),
            patients::search_text.eq(&words),
            patients::created_at.eq(t),
            patients::updated_at.eq(t),
        ))
        .returning(patients::id)
        .get_result(conn)?;
    for (system, value) in &p.identifiers {
        diesel::insert_into(patient_identifiers::table)
            .values((
                patient_identifiers::patient_id.eq(id),
                patient_identifiers::system.eq(system),
                patient_identifiers::value.eq(value),
            ))
            .execute(conn)?;
    }
    link_with(
        conn,
        id,
        org_id,
        &p.name_family,
        &p.name_given,
        p.birth_date,
    )?;
    insert_terms(conn, id, &words)?;
    Ok(id)
}

/// Replaces every field but the e-mail, and the identifiers when `identifiers` is given.
pub fn update(
    conn: &mut DbConnection,
    id: i64,
    p: &ValidPatient,
    replace_identifiers: bool,
) -> AppResult<()> {
    diesel::update(patients::table.find(id))
        .set((
            patients::name_family.eq(&p.name_family),
            patients::name_given.eq(&p.name_given),
            patients::birth_date.eq(p.birth_date),
            patients::telecom_phone.eq(&p.phone),
            patients::updated_at.eq(now()),
        ))
        .execute(conn)?;
    diesel::update(patient_organizations::table.filter(patient_organizations::patient_id.eq(id)))
        .set((
            patient_organizations::sort_name.eq(sort_name(&p.name_family, &p.name_given)),
            patient_organizations::birth_date.eq(Some(sort_birth(p.birth_date))),
        ))
        .execute(conn)?;
    let user_id: i64 = patients::table
        .find(id)
        .select(patients::user_id)
        .first(conn)?;
    diesel::update(users::table.find(user_id))
        .set((
            users::first_name.eq(&p.name_given),
            users::last_name.eq(&p.name_family),
        ))
        .execute(conn)?;
    if replace_identifiers {
        diesel::delete(patient_identifiers::table.filter(patient_identifiers::patient_id.eq(id)))
            .execute(conn)?;
        for (system, value) in &p.identifiers {
            diesel::insert_into(patient_identifiers::table)
                .values((
                    patient_identifiers::patient_id.eq(id),
                    patient_identifiers::system.eq(system),
                    patient_identifiers::value.eq(value),
                ))
                .execute(conn)?;
        }
    }
    write_terms(conn, id, p)
}

/// Changes the e-mail on the patient and on its sign-in user, and its search words.
pub fn set_email(conn: &mut DbConnection, id: i64, email: &str) -> AppResult<()> {
    let user_id: i64 = patients::table
        .find(id)
        .select(patients::user_id)
        .first(conn)?;
    diesel::update(users::table.find(user_id))
        .set(users::email.eq(email))
        .execute(conn)?;
    diesel::update(patients::table.find(id))
        .set((
            patients::telecom_email.eq(email),
            patients::updated_at.eq(now()),
        ))
        .execute(conn)?;
    let p = find(conn, id)?.ok_or(diesel::result::Error::NotFound)?;
    let ids = identifiers(conn, &[id])?;
    let valid = ValidPatient {
        email: p.telecom_email,
        name_family: p.name_family,
        name_given: p.name_given,
        birth_date: p.birth_date,
        phone: p.telecom_phone,
        identifiers: ids.into_iter().map(|i| (i.system, i.value)).collect(),
    };
    write_terms(conn, id, &valid)
}

/// Replaces the patient's search words: in the word index, and on the patient's row, which
/// says which words the index holds for it.
fn write_terms(conn: &mut DbConnection, id: i64, p: &ValidPatient) -> AppResult<()> {
    match conn {
        // The index is keyed by word first (no per-patient tree): the patient's row names
        // the words to remove.
        DbConnection::Sqlite(_) => Sql::kept(
            "DELETE FROM patient_search_terms WHERE patient_id = ? AND term IN \
             (SELECT value FROM json_each((SELECT NULLIF(search_text, '') FROM patients WHERE id = ?)))",
        )
        .int(id)
        .int(id)
        .execute(conn)?,
        DbConnection::Postgres(_) => diesel::delete(
            patient_search_terms::table.filter(patient_search_terms::patient_id.eq(id)),
        )
        .execute(conn)?,
    };
    let words = search::words_json(&search_terms(p));
    diesel::update(patients::table.find(id))
        .set(patients::search_text.eq(&words))
        .execute(conn)?;
    insert_terms(conn, id, &words)
}

/// The words a patient is found by: names, e-mail, birth date and identifier values.
pub(super) fn search_terms(p: &ValidPatient) -> std::collections::BTreeSet<String> {
    let birth = p.birth_date.map(|d| d.to_string()).unwrap_or_default();
    let mut fields: Vec<&str> = vec![&p.name_family, &p.name_given, &p.email, &birth];
    fields.extend(p.identifiers.iter().map(|(_, v)| v.as_str()));
    search::terms(fields)
}

/// Adds the search words (`words`, as `search::words_json` wrote them) of a patient that has
/// none in the index: one statement, kept prepared, with the words bound as one JSON array
/// (a statement a word cost a create more than the words did).
fn insert_terms(conn: &mut DbConnection, id: i64, words: &str) -> AppResult<()> {
    if words == "[]" {
        return Ok(());
    }
    let text = match conn {
        DbConnection::Sqlite(_) => {
            "INSERT INTO patient_search_terms (patient_id, term) SELECT ?, value FROM json_each(?)"
        }
        DbConnection::Postgres(_) => {
            "INSERT INTO patient_search_terms (patient_id, term) \
             SELECT ?, json_array_elements_text(CAST(? AS json))"
        }
    };
    Sql::kept(text).int(id).text(words).execute(conn)?;
    Ok(())
}

pub fn is_linked(conn: &mut DbConnection, patient_id: i64, org_id: i64) -> AppResult<bool> {
    Ok(diesel::select(exists(
        patient_organizations::table
            .filter(patient_organizations::patient_id.eq(patient_id))
            .filter(patient_organizations::organization_id.eq(org_id)),
    ))
    .get_result(conn)?)
}

/// Which of these patients the organization holds.
pub fn linked_among(conn: &mut DbConnection, ids: &[i64], org_id: i64) -> AppResult<Vec<i64>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(5000) {
        out.extend(
            patient_organizations::table
                .filter(patient_organizations::organization_id.eq(org_id))
                .filter(patient_organizations::patient_id.in_ids(chunk))
                .select(patient_organizations::patient_id)
                .load::<i64>(conn)?,
        );
    }
    Ok(out)
}

pub fn link(conn: &mut DbConnection, patient_id: i64, org_id: i64) -> AppResult<()> {
    let (family, given, birth): (String, String, Option<chrono::NaiveDate>) = patients::table
        .find(patient_id)
        .select((
            patients::name_family,
            patients::name_given,
            patients::birth_date,
        ))
        .first(conn)?;
    link_with(conn, patient_id, org_id, &family, &given, birth)
}

/// `link` for a patient whose sort keys are at hand (one just created).
fn link_with(
    conn: &mut DbConnection,
    patient_id: i64,
    org_id: i64,
    family: &str,
    given: &str,
    birth: Option<chrono::NaiveDate>,
) -> AppResult<()> {
    diesel::insert_into(patient_organizations::table)
        .values((
            patient_organizations::patient_id.eq(patient_id),
            patient_organizations::organization_id.eq(org_id),
            patient_organizations::created_at.eq(now()),
            patient_organizations::sort_name.eq(sort_name(family, given)),
            patient_organizations::birth_date.eq(Some(sort_birth(birth))),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_archived(
    conn: &mut DbConnection,
    patient_id: i64,
    org_id: i64,
    archived: bool,
) -> AppResult<bool> {
    let n = diesel::update(
        patient_organizations::table
            .filter(patient_organizations::patient_id.eq(patient_id))
            .filter(patient_organizations::organization_id.eq(org_id)),
    )
    .set(patient_organizations::archived_at.eq(archived.then(now)))
    .execute(conn)?;
    Ok(n > 0)
}

/// Archives (or restores) those of `ids` linked to the organization that are not so yet.
pub fn set_archived_many(
    conn: &mut DbConnection,
    ids: &[i64],
    org_id: i64,
    archived: bool,
) -> AppResult<usize> {
    let mut n = 0;
    for chunk in ids.chunks(5000) {
        let target = patient_organizations::table
            .filter(patient_organizations::organization_id.eq(org_id))
            .filter(patient_organizations::patient_id.in_ids(chunk));
        n += if archived {
            diesel::update(target.filter(patient_organizations::archived_at.is_null()))
                .set(patient_organizations::archived_at.eq(Some(now())))
                .execute(conn)?
        } else {
            diesel::update(target.filter(patient_organizations::archived_at.is_not_null()))
                .set(patient_organizations::archived_at.eq(None::<NaiveDateTime>))
                .execute(conn)?
        };
    }
    Ok(n)
}

/// What removing a patient from an organization takes with it: (enrolments, consents).
pub fn removal_counts(
    conn: &mut DbConnection,
    patient_id: i64,
    org_id: i64,
) -> AppResult<(i64, i64)> {
    let org_studies = studies::table
        .filter(studies::organization_id.eq(org_id))
        .select(studies::id);
    let enrolments = study_patients::table
        .filter(study_patients::patient_id.eq(patient_id))
        .filter(study_patients::study_id.eq_any(org_studies))
        .count()
        .get_result(conn)?;
    let org_studies = studies::table
        .filter(studies::organization_id.eq(org_id))
        .select(studies::id);
    let consent_rows = consents::table
        .filter(consents::patient_id.eq(patient_id))
        .filter(consents::study_id.eq_any(org_studies))
        .count()
        .get_result(conn)?;
    Ok((enrolments, consent_rows))
}

/// Removes the link, with enrolments and consents in the organization's studies. Returns
/// true when that was the patient's last organization and the record itself went too.
pub fn remove_from_org(conn: &mut DbConnection, patient_id: i64, org_id: i64) -> AppResult<bool> {
    let org_studies = || {
        studies::table
            .filter(studies::organization_id.eq(org_id))
            .select(studies::id)
    };
    diesel::delete(
        consents::table
            .filter(consents::patient_id.eq(patient_id))
            .filter(consents::study_id.eq_any(org_studies())),
    )
    .execute(conn)?;
    diesel::delete(
        study_patients::table
            .filter(study_patients::patient_id.eq(patient_id))
            .filter(study_patients::study_id.eq_any(org_studies())),
    )
    .execute(conn)?;
    diesel::delete(
        patient_organizations::table
            .filter(patient_organizations::patient_id.eq(patient_id))
            .filter(patient_organizations::organization_id.eq(org_id)),
    )
    .execute(conn)?;
    if org_ids_of(conn, patient_id)?.is_empty() {
        let user_id: i64 = patients::table
            .find(patient_id)
            .select(patients::user_id)
            .first(conn)?;
        // The user row owns the patient row (cascade), and with it identifiers and terms.
        diesel::delete(users::table.find(user_id)).execute(conn)?;
        return Ok(true);
    }
    Ok(false)
}
