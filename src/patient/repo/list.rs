//! Patient lists: filters, search through the term index, paging along covering indexes.

use crate::db::sql::Sql;
use crate::db::InIds;
use chrono::NaiveDateTime;
use diesel::dsl::{exists, not};
use diesel::prelude::*;

use super::super::model::Patient;
use super::super::search;
use crate::db::schema::{
    consents, invitations, patient_identifiers, patient_organizations, patient_tags, patients,
    study_patients,
};
use crate::db::{DbConnection, MultiBackend};
use crate::error::AppResult;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Archived {
    #[default]
    Active,
    Archived,
    All,
}

/// Where a patient stands with invitations from the organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invited {
    Never,
    Issued,
    Expired,
    Redeemed,
}

impl Invited {
    pub fn parse(s: &str) -> Option<Invited> {
        match s {
            "never" => Some(Invited::Never),
            "issued" => Some(Invited::Issued),
            "expired" => Some(Invited::Expired),
            "redeemed" => Some(Invited::Redeemed),
            _ => None,
        }
    }
}

/// Where a patient stands with the scopes a study requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentState {
    /// Every requested scope consented.
    Consented,
    /// At least one requested scope declined.
    Declined,
    /// At least one requested scope without a decision.
    Pending,
}

impl ConsentState {
    pub fn parse(s: &str) -> Option<ConsentState> {
        match s {
            "consented" => Some(ConsentState::Consented),
            "declined" => Some(ConsentState::Declined),
            "pending" => Some(ConsentState::Pending),
            _ => None,
        }
    }
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
    pub tag_id: Option<i64>,
    pub invited: Option<Invited>,
    /// With `study_id`: the consent state there, over the study's requested scope ids.
    pub consent: Option<(ConsentState, Vec<i64>)>,
}

type Links = patient_organizations::BoxedQuery<'static, MultiBackend>;

/// The link rows a list is made of: links to the filter's organizations, narrowed by every
/// other condition on the linked patient. The one place list filters are written.
fn links(f: &ListFilter, matched: Option<&[i64]>) -> Links {
    use patient_organizations as po;
    let mut q = po::table.into_boxed();
    // One organization as plain equality: PostgreSQL does not take an index's order from
    // `= ANY(array)`, even of one element, and would sort the whole organization instead.
    q = match f.org_ids.as_slice() {
        [one] => q.filter(po::organization_id.eq(*one)),
        many => q.filter(po::organization_id.in_ids(many)),
    };
    q = match f.archived {
        Archived::Active => q.filter(po::archived_at.is_null()),
        Archived::Archived => q.filter(po::archived_at.is_not_null()),
        Archived::All => q,
    };
    if let Some(ids) = matched {
        q = q.filter(po::patient_id.in_ids(ids));
    }
    // Terms the term index did not resolve: all of them when the search was too broad, or
    // the broad ones beside a selective one (checked only on the rows it found).
    // Checked against the words kept on the patient's row: one row read per link row.
    for t in &f.terms {
        q = q.filter(exists(
            patients::table
                .filter(patients::id.eq(po::patient_id))
                .filter(has_word_starting(t)),
        ));
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
    if let (Some(study), Some((state, scopes))) = (f.study_id, &f.consent) {
        let decided = |scope: i64| {
            consents::table
                .filter(consents::study_id.eq(study))
                .filter(consents::patient_id.eq(po::patient_id))
                .filter(consents::codeable_concept_id.eq(scope))
        };
        type Cond = Box<
            dyn BoxableExpression<
                patient_organizations::table,
                MultiBackend,
                SqlType = diesel::sql_types::Bool,
            >,
        >;
        let mut cond: Option<Cond> = None;
        for s in scopes {
            let one: Cond = match state {
                ConsentState::Consented => {
                    Box::new(exists(decided(*s).filter(consents::consented.eq(true))))
                }
                ConsentState::Declined => {
                    Box::new(exists(decided(*s).filter(consents::consented.eq(false))))
                }
                ConsentState::Pending => Box::new(not(exists(decided(*s)))),
            };
            cond = Some(match (cond, state) {
                (None, _) => one,
                (Some(prev), ConsentState::Consented) => Box::new(prev.and(one)),
                (Some(prev), _) => Box::new(prev.or(one)),
            });
        }
        // A study that requests nothing has no one in any consent state.
        q = match cond {
            Some(c) => q.filter(c),
            None => q.filter(po::patient_id.lt(0)),
        };
    }
    if let Some(t) = f.tag_id {
        q = q.filter(exists(
            patient_tags::table
                .filter(patient_tags::patient_id.eq(po::patient_id))
                .filter(patient_tags::tag_id.eq(t)),
        ));
    }
    if let Some(state) = f.invited {
        let mine = || {
            invitations::table
                .filter(invitations::patient_id.eq(po::patient_id))
                .filter(invitations::organization_id.eq(po::organization_id))
        };
        let t = crate::util::now();
        let open = ["issued", "reissued"];
        q = match state {
            Invited::Never => q.filter(not(exists(mine()))),
            Invited::Redeemed => {
                q.filter(exists(mine().filter(invitations::status.eq("redeemed"))))
            }
            Invited::Issued => q.filter(exists(
                mine()
                    .filter(invitations::status.eq_any(open))
                    .filter(invitations::expires_at.gt(t)),
            )),
            Invited::Expired => q.filter(exists(
                mine()
                    .filter(invitations::status.eq_any(open))
                    .filter(invitations::expires_at.le(t)),
            )),
        };
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
        if let Some((ids, broad)) = term_matches(conn, &f.terms)? {
            if ids.is_empty() {
                return Ok((Vec::new(), 0));
            }
            matched = Some(ids);
            // Terms too broad for the index are checked on the rows the others found.
            f.terms = broad;
        }
    }
    if f.org_ids.len() == 1 {
        return list_in_org(conn, &f, matched.as_deref(), sort, offset, limit);
    }
    // Several organizations: a patient linked to two of them is listed once. Its sort keys
    // are the same on each of its links, so DISTINCT over (patient, key) keeps one row.
    use patient_organizations as po;
    let m = matched.as_deref();
    let total: i64 = links(&f, m)
        .select(diesel::dsl::count(po::patient_id).aggregate_distinct())
        .first(conn)?;
    let ids: Vec<i64> = match sort {
        Sort::FamilyName => links(&f, m)
            .select((po::patient_id, po::sort_name))
            .distinct()
            .order((po::sort_name.asc(), po::patient_id.asc()))
            .offset(offset)
            .limit(limit)
            .load::<(i64, String)>(conn)?
            .into_iter()
            .map(|r| r.0)
            .collect(),
        Sort::BirthDate => links(&f, m)
            .select((po::patient_id, po::birth_date))
            .distinct()
            .order((po::birth_date.asc(), po::patient_id.asc()))
            .offset(offset)
            .limit(limit)
            .load::<(i64, Option<chrono::NaiveDate>)>(conn)?
            .into_iter()
            .map(|r| r.0)
            .collect(),
        // Ids grow with creation: newest first without a per-organization date.
        Sort::Added => links(&f, m)
            .select(po::patient_id)
            .distinct()
            .order(po::patient_id.desc())
            .offset(offset)
            .limit(limit)
            .load(conn)?,
    };
    Ok((load_in_order(conn, &ids)?, total))
}

/// The patient has a word starting with `t`, read off the words kept on its row.
fn has_word_starting(
    t: &str,
) -> diesel::dsl::Escape<diesel::dsl::Like<patients::search_text, String>> {
    patients::search_text
        .like(search::word_start_pattern(t))
        .escape('\\')
}

/// Above this many matches a search is broad enough that walking the list is cheaper.
const MAX_TERM_MATCHES: usize = 20_000;

/// A term whose words cover more patients than this is left to the walk (as a condition on
/// the rows the other terms found), rather than read into memory.
const MAX_TERM_RANGE: i64 = 100_000;

/// Below this many candidates, the next term is checked against the candidates' own words
/// (one index probe each) rather than by reading the term's whole range.
const MAX_PROBES: usize = 1_000;

/// The patients whose words start with every term, and the terms too broad to resolve
/// through the index (left for the caller to check on those patients); None when the search
/// as a whole is too broad to be worth it.
fn term_matches(
    conn: &mut DbConnection,
    terms: &[String],
) -> AppResult<Option<(Vec<i64>, Vec<String>)>> {
    if matches!(conn, DbConnection::Postgres(_)) {
        return Ok(term_matches_pg(conn, terms)?.map(|ids| (ids, Vec::new())));
    }
    // SQLite intersects sets through temporary b-trees, a few microseconds a row; a sorted
    // list per term, merged here, costs a small fraction of that.
    let mut found: Option<Vec<i64>> = None;
    let mut broad = Vec::new();
    // Longest (most selective) terms come first.
    for t in terms {
        let mut ids: Vec<i64> = match &found {
            // The index is keyed by word first: a candidate's words are read off its row.
            Some(c) if c.len() <= MAX_PROBES => patients::table
                .filter(patients::id.in_ids(c))
                .filter(has_word_starting(t))
                .select(patients::id)
                .load(conn)?,
            _ => match term_range(conn, t)? {
                Some(ids) => ids,
                None => {
                    broad.push(t.clone());
                    continue;
                }
            },
        };
        ids.sort_unstable();
        ids.dedup();
        let next = match found.take() {
            None => ids,
            Some(c) => intersect(&c, &ids),
        };
        if next.is_empty() {
            return Ok(Some((next, Vec::new())));
        }
        found = Some(next);
    }
    Ok(found
        .filter(|ids| ids.len() <= MAX_TERM_MATCHES)
        .map(|ids| (ids, broad)))
}

/// The patients with a word starting with `term` (unsorted, possibly repeated), or None when
/// there are more than `MAX_TERM_RANGE` such words. SQLite hands them over packed in one
/// BLOB (`id_list`): a row per id through diesel costs several times the index scan itself.
fn term_range(conn: &mut DbConnection, term: &str) -> AppResult<Option<Vec<i64>>> {
    use diesel::sql_types::{Binary, Nullable};
    #[derive(QueryableByName)]
    struct Ids {
        #[diesel(sql_type = Nullable<Binary>)]
        ids: Option<Vec<u8>>,
    }
    let row: Ids = Sql::kept(
        "SELECT id_list(patient_id) AS ids FROM (SELECT patient_id FROM \
         patient_search_terms WHERE term >= ? AND term < ? LIMIT ?)",
    )
    .text(term)
    .text(search::prefix_end(term))
    .int(MAX_TERM_RANGE + 1)
    .get_result(conn)?;
    let ids = crate::db::read_id_list(&row.ids.unwrap_or_default())
        .ok_or_else(|| crate::error::AppError::internal("term index: not a list of ids"))?;
    Ok((ids.len() as i64 <= MAX_TERM_RANGE).then_some(ids))
}

/// The ids in both sorted, distinct lists.
fn intersect(a: &[i64], b: &[i64]) -> Vec<i64> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small
        .iter()
        .copied()
        .filter(|id| large.binary_search(id).is_ok())
        .collect()
}

/// PostgreSQL intersects the ranges itself, in a hash, without sending them over.
fn term_matches_pg(conn: &mut DbConnection, terms: &[String]) -> AppResult<Option<Vec<i64>>> {
    use diesel::sql_types::BigInt;
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        patient_id: i64,
    }
    let parts: Vec<&str> = terms
        .iter()
        .map(|_| "SELECT patient_id FROM patient_search_terms WHERE term >= ? AND term < ?")
        .collect();
    let text = format!(
        "{} LIMIT {}",
        parts.join(" INTERSECT "),
        MAX_TERM_MATCHES + 1
    );
    // One statement per number of terms: kept for the usual few.
    let mut q = if terms.len() <= 4 {
        Sql::kept(text)
    } else {
        Sql::once(text)
    };
    for t in terms {
        q = q.text(t.as_str()).text(search::prefix_end(t));
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
    matched: Option<&[i64]>,
    sort: Sort,
    offset: i64,
    limit: i64,
) -> AppResult<(Vec<Patient>, i64)> {
    use patient_organizations as po;
    if matched.is_some() {
        // A search matched a small set: sort it here. Asking SQL for the first rows in sort
        // order would walk the whole organization's index looking for them.
        let mut keyed: Vec<(i64, String, Option<chrono::NaiveDate>, NaiveDateTime)> =
            links(f, matched)
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
    let plain = f.terms.is_empty()
        && f.patient_id.is_none()
        && f.identifier_value.is_none()
        && f.study_id.is_none()
        && f.tag_id.is_none()
        && f.invited.is_none();
    let total = if plain {
        kept_count(conn, f.org_ids[0], f.archived)?
    } else {
        links(f, None).count().get_result(conn)?
    };
    let page = links(f, None).select(po::patient_id);
    let page = match sort {
        Sort::FamilyName => page.order((po::sort_name.asc(), po::patient_id.asc())),
        Sort::BirthDate => page.order((po::birth_date.asc(), po::patient_id.asc())),
        Sort::Added => page.order((po::created_at.desc(), po::patient_id.desc())),
    };
    let ids: Vec<i64> = page.offset(offset).limit(limit).load(conn)?;
    Ok((load_in_order(conn, &ids)?, total))
}

/// One organization's total, as the database keeps it by trigger: no patients are counted,
/// only the count's shards (one row on SQLite, at most 64 on PostgreSQL) are added up.
fn kept_count(conn: &mut DbConnection, org_id: i64, archived: Archived) -> AppResult<i64> {
    use crate::db::schema::organization_patient_counts as counts;
    let shards: Vec<(i64, i64)> = counts::table
        .filter(counts::organization_id.eq(org_id))
        .select((counts::active, counts::archived))
        .load(conn)?;
    let (active, archived_n) = shards
        .into_iter()
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    Ok(match archived {
        Archived::Active => active,
        Archived::Archived => archived_n,
        Archived::All => active + archived_n,
    })
}

fn load_in_order(conn: &mut DbConnection, ids: &[i64]) -> AppResult<Vec<Patient>> {
    let mut rows: Vec<Patient> = patients::table
        .filter(patients::id.in_ids(ids))
        .select(Patient::as_select())
        .load(conn)?;
    rows.sort_by_key(|p| ids.iter().position(|i| *i == p.id));
    Ok(rows)
}

/// The birth date as a sort key on the link row: an unknown date sorts last, on both
/// backends alike (they disagree on where NULL goes).
pub fn sort_birth(d: Option<chrono::NaiveDate>) -> chrono::NaiveDate {
    d.or_else(|| chrono::NaiveDate::from_ymd_opt(9999, 12, 31))
        .unwrap_or(chrono::NaiveDate::MAX)
}

/// How a patient sorts in lists: the name, folded for case and accents.
pub fn sort_name(family: &str, given: &str) -> String {
    search::fold(&format!("{} {}", family.trim(), given.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersecting_keeps_the_ids_in_both() {
        assert_eq!(intersect(&[1, 3, 5, 9], &[2, 3, 9, 10, 11]), vec![3, 9]);
        assert_eq!(intersect(&[], &[1]), Vec::<i64>::new());
    }
}
