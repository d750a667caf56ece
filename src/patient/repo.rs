//! SQL for patients: the only place it lives. Lists are paged and counted in SQL; keyword
//! search walks the term index from its most selective term.

use chrono::NaiveDateTime;
use diesel::dsl::exists;
use diesel::prelude::*;

use super::model::{Identifier, Patient, ValidPatient};
use super::search;
use crate::db::schema::{
    consents, patient_identifiers, patient_organizations, patient_search_terms, patients, studies,
    study_patients, users,
};
use crate::db::{DbConnection, MultiBackend};
use crate::error::AppResult;
use crate::organization::Organization;
use crate::util::now;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Archived {
    #[default]
    Active,
    Archived,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Sort {
    #[default]
    FamilyName,
    BirthDate,
    Added,
}

/// Which patients a list shows. `org_ids` is always set: the caller's scope.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub org_ids: Vec<i64>,
    pub terms: Vec<String>,
    pub archived: Archived,
    pub patient_id: Option<i64>,
    pub identifier_value: Option<String>,
    pub study_id: Option<i64>,
}

type Boxed = patients::BoxedQuery<'static, MultiBackend>;

fn filtered(f: &ListFilter) -> Boxed {
    let orgs = f.org_ids.clone();
    let mut q = patients::table.into_boxed();
    q = match f.archived {
        Archived::Active => q.filter(exists(
            patient_organizations::table
                .filter(patient_organizations::patient_id.eq(patients::id))
                .filter(patient_organizations::organization_id.eq_any(orgs))
                .filter(patient_organizations::archived_at.is_null()),
        )),
        Archived::Archived => q.filter(exists(
            patient_organizations::table
                .filter(patient_organizations::patient_id.eq(patients::id))
                .filter(patient_organizations::organization_id.eq_any(orgs))
                .filter(patient_organizations::archived_at.is_not_null()),
        )),
        Archived::All => q.filter(exists(
            patient_organizations::table
                .filter(patient_organizations::patient_id.eq(patients::id))
                .filter(patient_organizations::organization_id.eq_any(orgs)),
        )),
    };
    for (i, t) in f.terms.iter().enumerate() {
        let (lo, hi) = (t.clone(), search::prefix_end(t));
        q = if i == 0 {
            // The most selective term drives the query from the term index.
            q.filter(
                patients::id.eq_any(
                    patient_search_terms::table
                        .select(patient_search_terms::patient_id)
                        .filter(patient_search_terms::term.ge(lo))
                        .filter(patient_search_terms::term.lt(hi)),
                ),
            )
        } else {
            q.filter(exists(
                patient_search_terms::table
                    .filter(patient_search_terms::patient_id.eq(patients::id))
                    .filter(patient_search_terms::term.ge(lo))
                    .filter(patient_search_terms::term.lt(hi)),
            ))
        };
    }
    if let Some(id) = f.patient_id {
        q = q.filter(patients::id.eq(id));
    }
    if let Some(v) = &f.identifier_value {
        q = q.filter(exists(
            patient_identifiers::table
                .filter(patient_identifiers::patient_id.eq(patients::id))
                .filter(patient_identifiers::value.eq(v.clone())),
        ));
    }
    if let Some(s) = f.study_id {
        q = q.filter(exists(
            study_patients::table
                .filter(study_patients::patient_id.eq(patients::id))
                .filter(study_patients::study_id.eq(s)),
        ));
    }
    q
}

/// A page of patients and the number that match.
///
/// Searches first find the matching patients through the term index (an intersection of
/// one range per term), so the rest of the work is on a handful of rows. Lists of one
/// organization then page along the link rows' covering indexes, which carry the sort keys,
/// and load only the patients of the page.
pub fn list(
    conn: &mut DbConnection,
    f: &ListFilter,
    sort: Sort,
    offset: i64,
    limit: i64,
) -> AppResult<(Vec<Patient>, i64)> {
    let mut f = f.clone();
    let mut matched: Option<Vec<i64>> = None;
    if !f.terms.is_empty() {
        if let Some(ids) = term_matches(conn, &f.terms)? {
            if ids.is_empty() {
                return Ok((Vec::new(), 0));
            }
            matched = Some(ids);
            f.terms.clear();
        }
    }
    if f.org_ids.len() == 1 && f.terms.is_empty() {
        return list_in_org(conn, &f, matched, sort, offset, limit);
    }
    let mut q = filtered(&f);
    if let Some(ids) = &matched {
        q = q.filter(patients::id.eq_any(ids.clone()));
    }
    let total = if matched.is_some() {
        let mut c = filtered(&f);
        if let Some(ids) = &matched {
            c = c.filter(patients::id.eq_any(ids.clone()));
        }
        c.count().get_result(conn)?
    } else {
        count(conn, &f)?
    };
    let q = q.select(Patient::as_select());
    let q = match sort {
        Sort::FamilyName => q.order((
            patients::name_family.asc(),
            patients::name_given.asc(),
            patients::id.asc(),
        )),
        Sort::BirthDate => q.order((patients::birth_date.asc(), patients::id.asc())),
        Sort::Added => q.order((patients::created_at.desc(), patients::id.desc())),
    };
    let rows = q.offset(offset).limit(limit).load(conn)?;
    Ok((rows, total))
}

/// Above this many matches a search is broad enough that walking the list is cheaper.
const MAX_TERM_MATCHES: usize = 20_000;

/// The patients whose words start with every term, found by intersecting one index range
/// per term; None when the search is too broad to be worth it.
fn term_matches(conn: &mut DbConnection, terms: &[String]) -> AppResult<Option<Vec<i64>>> {
    use diesel::sql_types::{BigInt, Text};
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        patient_id: i64,
    }
    let pg = matches!(conn, DbConnection::Postgres(_));
    let mut n = 0;
    let mut param = || {
        n += 1;
        if pg {
            format!("${n}")
        } else {
            "?".to_string()
        }
    };
    let parts: Vec<String> = terms
        .iter()
        .map(|_| {
            format!(
                "SELECT patient_id FROM patient_search_terms WHERE term >= {} AND term < {}",
                param(),
                param()
            )
        })
        .collect();
    let sql = format!(
        "{} LIMIT {}",
        parts.join(" INTERSECT "),
        MAX_TERM_MATCHES + 1
    );
    let mut q = diesel::sql_query(sql).into_boxed::<crate::db::MultiBackend>();
    for t in terms {
        q = q
            .bind::<Text, _>(t.clone())
            .bind::<Text, _>(search::prefix_end(t));
    }
    let ids: Vec<i64> = q
        .load::<Id>(conn)?
        .into_iter()
        .map(|r| r.patient_id)
        .collect();
    Ok((ids.len() <= MAX_TERM_MATCHES).then_some(ids))
}

/// One organization's page, walked along the link rows in sort order.
fn list_in_org(
    conn: &mut DbConnection,
    f: &ListFilter,
    matched: Option<Vec<i64>>,
    sort: Sort,
    offset: i64,
    limit: i64,
) -> AppResult<(Vec<Patient>, i64)> {
    use patient_organizations as po;
    let links = || {
        let mut q = po::table
            .filter(po::organization_id.eq(f.org_ids[0]))
            .into_boxed::<MultiBackend>();
        q = match f.archived {
            Archived::Active => q.filter(po::archived_at.is_null()),
            Archived::Archived => q.filter(po::archived_at.is_not_null()),
            Archived::All => q,
        };
        if let Some(ids) = &matched {
            q = q.filter(po::patient_id.eq_any(ids.clone()));
        }
        if let Some(id) = f.patient_id {
            q = q.filter(po::patient_id.eq(id));
        }
        if let Some(v) = &f.identifier_value {
            q = q.filter(exists(
                patient_identifiers::table
                    .filter(patient_identifiers::patient_id.eq(po::patient_id))
                    .filter(patient_identifiers::value.eq(v.clone())),
            ));
        }
        if let Some(s) = f.study_id {
            q = q.filter(exists(
                study_patients::table
                    .filter(study_patients::patient_id.eq(po::patient_id))
                    .filter(study_patients::study_id.eq(s)),
            ));
        }
        q
    };
    if matched.is_some() {
        // A search matched a small set: sort it here. Asking SQL for the first rows in sort
        // order would walk the whole organization's index looking for them.
        let mut keyed: Vec<(i64, String, Option<chrono::NaiveDate>, NaiveDateTime)> = links()
            .select((
                po::patient_id,
                po::sort_name,
                po::birth_date,
                po::created_at,
            ))
            .load(conn)?;
        match sort {
            Sort::FamilyName => keyed.sort_by(|a, b| (&a.1, a.0).cmp(&(&b.1, b.0))),
            Sort::BirthDate => keyed.sort_by_key(|k| (k.2, k.0)),
            Sort::Added => keyed.sort_by_key(|k| std::cmp::Reverse((k.3, k.0))),
        }
        let total = keyed.len() as i64;
        let ids: Vec<i64> = keyed
            .into_iter()
            .skip(offset.max(0) as usize)
            .take(limit.max(0) as usize)
            .map(|k| k.0)
            .collect();
        return Ok((load_in_order(conn, &ids)?, total));
    }
    let plain = f.patient_id.is_none() && f.identifier_value.is_none() && f.study_id.is_none();
    let total = if plain {
        count(conn, f)?
    } else {
        links().count().get_result(conn)?
    };
    let page = links().select(po::patient_id);
    let page = match sort {
        Sort::FamilyName => page.order((po::sort_name.asc(), po::patient_id.asc())),
        Sort::BirthDate => page.order((po::birth_date.asc(), po::patient_id.asc())),
        Sort::Added => page.order((po::created_at.desc(), po::patient_id.desc())),
    };
    let ids: Vec<i64> = page.offset(offset).limit(limit).load(conn)?;
    Ok((load_in_order(conn, &ids)?, total))
}

fn load_in_order(conn: &mut DbConnection, ids: &[i64]) -> AppResult<Vec<Patient>> {
    let mut rows: Vec<Patient> = patients::table
        .filter(patients::id.eq_any(ids.to_vec()))
        .select(Patient::as_select())
        .load(conn)?;
    rows.sort_by_key(|p| ids.iter().position(|i| *i == p.id));
    Ok(rows)
}

/// How a patient sorts in lists: the name, folded for case and accents.
pub fn sort_name(family: &str, given: &str) -> String {
    search::fold(&format!("{} {}", family.trim(), given.trim()))
}

fn count(conn: &mut DbConnection, f: &ListFilter) -> AppResult<i64> {
    let plain = f.terms.is_empty()
        && f.patient_id.is_none()
        && f.identifier_value.is_none()
        && f.study_id.is_none()
        && f.org_ids.len() == 1;
    if !plain {
        return Ok(filtered(f).count().get_result(conn)?);
    }
    // One organization, no search: the totals the database keeps by trigger.
    use crate::db::schema::organization_patient_counts as counts;
    let (active, archived): (i64, i64) = counts::table
        .find(f.org_ids[0])
        .select((counts::active, counts::archived))
        .first(conn)
        .optional()?
        .unwrap_or((0, 0));
    Ok(match f.archived {
        Archived::Active => active,
        Archived::Archived => archived,
        Archived::All => active + archived,
    })
}

pub fn find(conn: &mut DbConnection, id: i64) -> AppResult<Option<Patient>> {
    Ok(patients::table
        .find(id)
        .select(Patient::as_select())
        .first(conn)
        .optional()?)
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
        .filter(patient_identifiers::patient_id.eq_any(ids.to_vec()))
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
        .filter(patient_organizations::patient_id.eq_any(ids.to_vec()))
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
            patients::search_text.eq(""),
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
    link(conn, id, org_id)?;
    write_terms(conn, id, p)?;
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

fn write_terms(conn: &mut DbConnection, id: i64, p: &ValidPatient) -> AppResult<()> {
    let birth = p
        .birth_date
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let mut fields: Vec<&str> = vec![&p.name_family, &p.name_given, &p.email, &birth];
    fields.extend(p.identifiers.iter().map(|(_, v)| v.as_str()));
    diesel::delete(patient_search_terms::table.filter(patient_search_terms::patient_id.eq(id)))
        .execute(conn)?;
    for term in search::terms(fields) {
        diesel::insert_into(patient_search_terms::table)
            .values((
                patient_search_terms::patient_id.eq(id),
                patient_search_terms::term.eq(term),
            ))
            .execute(conn)?;
    }
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

pub fn link(conn: &mut DbConnection, patient_id: i64, org_id: i64) -> AppResult<()> {
    let (family, given, birth): (String, String, Option<chrono::NaiveDate>) = patients::table
        .find(patient_id)
        .select((
            patients::name_family,
            patients::name_given,
            patients::birth_date,
        ))
        .first(conn)?;
    diesel::insert_into(patient_organizations::table)
        .values((
            patient_organizations::patient_id.eq(patient_id),
            patient_organizations::organization_id.eq(org_id),
            patient_organizations::created_at.eq(now()),
            patient_organizations::sort_name.eq(sort_name(&family, &given)),
            patient_organizations::birth_date.eq(birth),
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
