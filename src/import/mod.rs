//! Importing patient lists (CSV): reading the file, checking every row before anything is
//! written, then writing all of it in one transaction. The console and `cohort
//! import-patients` share this code.

pub mod pages;
pub mod parse;
pub mod repo;

use std::collections::HashMap;

use chrono::NaiveDate;
use diesel::prelude::*;

use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::schema::{patient_identifiers, patient_organizations, patients, users};
use crate::db::DbConnection;
use crate::error::AppError;
use crate::organization::{self, OrgScope, Role};
use crate::patient::model::{PatientInput, ValidPatient};
use parse::{Field, Table};

/// The identifier system used when a file has identifiers but no system column.
pub const DEFAULT_ID_SYSTEM: &str = "urn:mrn";

/// What importing a valid row does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    /// The patient is known to another organization: link them to this one.
    AddToOrganization(i64),
    /// Already here, nothing differs.
    Unchanged(i64),
    /// Already here; names, birth date, phone or a new identifier differ.
    Update(i64),
}

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Action::Create => "created",
            Action::AddToOrganization(_) => "added to this organization",
            Action::Unchanged(_) => "unchanged",
            Action::Update(_) => "updated",
        }
    }
}

/// One problem with a row: the column as headed in the file, and what to fix.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub column: String,
    pub message: String,
}

/// One data row after checking.
#[derive(Clone, Debug)]
pub struct Checked {
    pub line: u64,
    pub email: String,
    pub outcome: Result<(Action, ValidPatient), Vec<Problem>>,
}

/// Every row's fate, before anything is written.
#[derive(Clone, Debug, Default)]
pub struct Preview {
    pub rows: Vec<Checked>,
}

impl Preview {
    fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.rows
            .iter()
            .filter(|r| r.outcome.as_ref().is_ok_and(|(a, _)| f(a)))
            .count()
    }
    pub fn new_patients(&self) -> usize {
        self.count(|a| *a == Action::Create)
    }
    pub fn added(&self) -> usize {
        self.count(|a| matches!(a, Action::AddToOrganization(_)))
    }
    pub fn unchanged(&self) -> usize {
        self.count(|a| matches!(a, Action::Unchanged(_)))
    }
    pub fn updated(&self) -> usize {
        self.count(|a| matches!(a, Action::Update(_)))
    }
    pub fn invalid(&self) -> Vec<&Checked> {
        self.rows.iter().filter(|r| r.outcome.is_err()).collect()
    }
}

/// The header a field had in the file, for messages.
fn column(table: &Table, f: Field) -> String {
    table
        .headers
        .iter()
        .find(|(_, field)| *field == Some(f))
        .map(|(h, _)| h.clone())
        .unwrap_or_else(|| f.header().to_string())
}

fn field_of(api_name: &str) -> Field {
    match api_name {
        "telecomEmail" => Field::Email,
        "nameFamily" => Field::Family,
        "nameGiven" => Field::Given,
        "birthDate" => Field::BirthDate,
        "telecomPhone" => Field::Phone,
        _ => Field::Identifier,
    }
}

/// A patient as on record: (family, given, birth date, phone, identifiers).
type OnRecord = (
    String,
    String,
    Option<NaiveDate>,
    Option<String>,
    Vec<(String, String)>,
);

/// Rows are looked up in the database this many at a time, so what is read of the
/// patients on record is held for one slice of the file, never for all of it.
const LOOKUP_ROWS: usize = 5000;

/// What the database already knows about one slice of the file's e-mails and identifiers.
struct Known {
    /// E-mail → (patient id, linked to this organization).
    patients: HashMap<String, (i64, bool)>,
    practitioners: std::collections::HashSet<String>,
    /// (system, value) → patient id.
    identifiers: HashMap<(String, String), i64>,
    /// Patient id → (family, given, birth date, phone, identifiers).
    current: HashMap<i64, OnRecord>,
}

fn known(
    conn: &mut DbConnection,
    org_id: i64,
    emails: &[&str],
    values: &[&str],
) -> Result<Known, AppError> {
    let mut k = Known {
        patients: HashMap::new(),
        practitioners: Default::default(),
        identifiers: HashMap::new(),
        current: HashMap::new(),
    };
    if !emails.is_empty() {
        let found: Vec<(String, i64)> = patients::table
            .filter(patients::telecom_email.eq_any(emails))
            .select((patients::telecom_email, patients::id))
            .load(conn)?;
        let ids: Vec<i64> = found.iter().map(|(_, id)| *id).collect();
        let here: std::collections::HashSet<i64> = patient_organizations::table
            .filter(patient_organizations::organization_id.eq(org_id))
            .filter(patient_organizations::patient_id.eq_any(&ids))
            .select(patient_organizations::patient_id)
            .load::<i64>(conn)?
            .into_iter()
            .collect();
        for (email, id) in found {
            k.patients.insert(email, (id, here.contains(&id)));
        }
        let others: Vec<String> = users::table
            .filter(users::email.eq_any(emails))
            .filter(users::user_type.ne("patient"))
            .select(users::email)
            .load(conn)?;
        k.practitioners.extend(others);
    }
    if !values.is_empty() {
        let held: Vec<(String, String, i64)> = patient_identifiers::table
            .filter(patient_identifiers::value.eq_any(values))
            .select((
                patient_identifiers::system,
                patient_identifiers::value,
                patient_identifiers::patient_id,
            ))
            .load(conn)?;
        k.identifiers
            .extend(held.into_iter().map(|(s, v, p)| ((s, v), p)));
    }
    let here: Vec<i64> = k
        .patients
        .values()
        .filter(|(_, linked)| *linked)
        .map(|(id, _)| *id)
        .collect();
    if !here.is_empty() {
        let rows = crate::patient::repo::find_many(conn, &here)?;
        let mut ids: HashMap<i64, Vec<(String, String)>> = HashMap::new();
        for i in crate::patient::repo::identifiers(conn, &here)? {
            ids.entry(i.patient_id)
                .or_default()
                .push((i.system, i.value));
        }
        for p in rows {
            let mine = ids.remove(&p.id).unwrap_or_default();
            k.current.insert(
                p.id,
                (
                    p.name_family,
                    p.name_given,
                    p.birth_date,
                    p.telecom_phone,
                    mine,
                ),
            );
        }
    }
    Ok(k)
}

/// Which rows repeat a key of an earlier row: (the repeating row, the earliest row with
/// that key), for `keys` given as (key, row). Sorting puts each key's rows together, in
/// file order.
fn repeats<K: Ord, R: Ord + Copy>(mut keys: Vec<(K, R)>) -> Vec<(R, R)> {
    keys.sort_unstable();
    let mut out = Vec::new();
    let mut first: Option<(K, R)> = None;
    for (key, row) in keys {
        match &first {
            Some((k, at)) if *k == key => out.push((row, *at)),
            _ => first = Some((key, row)),
        }
    }
    out
}

/// Checks every row of a file against the rules and the database; writes nothing.
pub fn check(
    conn: &mut DbConnection,
    scope: &OrgScope,
    table: &Table,
    today: NaiveDate,
) -> Result<Preview, AppError> {
    check_known(conn, scope, table, today).map(|(p, _)| p)
}

/// `check`, also handing back what is on record of each patient the file updates.
fn check_known(
    conn: &mut DbConnection,
    scope: &OrgScope,
    table: &Table,
    today: NaiveDate,
) -> Result<(Preview, HashMap<i64, OnRecord>), AppError> {
    // Checked one row at a time, so the file's text is never held twice.
    let valid: Vec<Result<ValidPatient, crate::error::FieldErrors>> = table
        .rows
        .iter()
        .map(|row| {
            let value = row.get(Field::Identifier).to_string();
            let system = match row.get(Field::IdentifierSystem) {
                "" => DEFAULT_ID_SYSTEM.to_string(),
                s => s.to_string(),
            };
            let input = PatientInput {
                email: row.get(Field::Email).to_string(),
                name_family: row.get(Field::Family).to_string(),
                name_given: row.get(Field::Given).to_string(),
                birth_date: row.get(Field::BirthDate).to_string(),
                phone: row.get(Field::Phone).to_string(),
                identifiers: if value.is_empty() {
                    Vec::new()
                } else {
                    vec![(system, value)]
                },
            };
            crate::patient::validate(&input, today)
        })
        .collect();
    // Rows repeating an earlier row's e-mail or identifier, as (row, first row's index).
    let valid_rows = || {
        valid
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().ok().map(|p| (i, p)))
    };
    let email_repeats: HashMap<usize, usize> =
        repeats(valid_rows().map(|(i, p)| (p.email.as_str(), i)).collect())
            .into_iter()
            .collect();
    // Keyed by (row, which of its identifiers).
    let ident_repeats: HashMap<(usize, usize), usize> = repeats(
        valid_rows()
            .flat_map(|(i, p)| {
                p.identifiers
                    .iter()
                    .enumerate()
                    .map(move |(n, (s, v))| ((s.as_str(), v.as_str()), (i, n)))
            })
            .collect(),
    )
    .into_iter()
    .map(|(at, (first, _))| (at, first))
    .collect();
    let line_of = |i: usize| table.rows[i].line;
    let mut rows = Vec::with_capacity(table.rows.len());
    let mut updates = HashMap::new();
    let mut valid = valid.into_iter();
    let mut at = 0;
    while valid.len() > 0 {
        let slice = &valid.as_slice()[..valid.len().min(LOOKUP_ROWS)];
        let n = slice.len();
        let emails: Vec<&str> = slice
            .iter()
            .filter_map(|v| v.as_ref().ok().map(|p| p.email.as_str()))
            .collect();
        let values: Vec<&str> = slice
            .iter()
            .filter_map(|v| v.as_ref().ok())
            .flat_map(|p| p.identifiers.iter().map(|(_, v)| v.as_str()))
            .collect();
        let mut k = known(conn, scope.org_id(), &emails, &values)?;
        for (i, v) in (at..at + n).zip(valid.by_ref()) {
            let row = &table.rows[i];
            let email = crate::util::normalize_email(row.get(Field::Email));
            let outcome = match v {
                Err(fields) => Err(fields
                    .into_iter()
                    .flat_map(|(f, msgs)| {
                        let col = column(table, field_of(&f));
                        msgs.into_iter().map(move |m| Problem {
                            column: col.clone(),
                            message: m,
                        })
                    })
                    .collect()),
                Ok(p) => {
                    let first_email = email_repeats.get(&i).map(|f| line_of(*f));
                    let first_ident = |n: usize| ident_repeats.get(&(i, n)).map(|f| line_of(*f));
                    classify(table, &k, first_email, first_ident, p)
                }
            };
            if let Ok((Action::Update(id), _)) = &outcome {
                if let Some(on_record) = k.current.remove(id) {
                    updates.insert(*id, on_record);
                }
            }
            rows.push(Checked {
                line: row.line,
                email,
                outcome,
            });
        }
        at += n;
    }
    Ok((Preview { rows }, updates))
}

/// What to do with a valid row. `first_email`: the line of an earlier row with the same
/// e-mail; `first_ident(n)`: the same for the row's nth identifier.
fn classify(
    table: &Table,
    k: &Known,
    first_email: Option<u64>,
    first_ident: impl Fn(usize) -> Option<u64>,
    p: ValidPatient,
) -> Result<(Action, ValidPatient), Vec<Problem>> {
    let mut problems = Vec::new();
    let email_col = column(table, Field::Email);
    let id_col = column(table, Field::Identifier);
    if let Some(first) = first_email {
        problems.push(Problem {
            column: email_col.clone(),
            message: format!(
                "{} is also on line {first}: a patient appears once per file.",
                p.email
            ),
        });
    }
    if k.practitioners.contains(&p.email) {
        problems.push(Problem {
            column: email_col,
            message: format!("{} belongs to a practitioner account.", p.email),
        });
    }
    let existing = k.patients.get(&p.email).copied();
    for (n, ident) in p.identifiers.iter().enumerate() {
        if let Some(first) = first_ident(n) {
            problems.push(Problem {
                column: id_col.clone(),
                message: format!("{} {} is also on line {first}.", ident.0, ident.1),
            });
        }
        if let Some(holder) = k.identifiers.get(ident) {
            if Some(*holder) != existing.map(|(id, _)| id) {
                problems.push(Problem {
                    column: id_col.clone(),
                    message: format!(
                        "{} {} is already held by another patient.",
                        ident.0, ident.1
                    ),
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let action = match existing {
        None => Action::Create,
        Some((id, false)) => Action::AddToOrganization(id),
        Some((id, true)) => match k.current.get(&id) {
            Some((family, given, birth, phone, idents))
                if *family == p.name_family
                    && *given == p.name_given
                    && (p.birth_date.is_none() || *birth == p.birth_date)
                    && (p.phone.is_none() || *phone == p.phone)
                    && p.identifiers.iter().all(|i| idents.contains(i)) =>
            {
                Action::Unchanged(id)
            }
            _ => Action::Update(id),
        },
    };
    Ok((action, p))
}

/// What to do besides importing the rows.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Import the valid rows even if some are invalid.
    pub skip_invalid: bool,
    /// Enrol every imported patient in this study of the organization.
    pub study_id: Option<i64>,
    /// Issue each imported patient an invitation (the caller sends the e-mails).
    pub invite: Option<(String, i64)>,
}

/// The study everyone is to be enrolled in: of this organization, and taking enrolments.
/// A dry run asks the same question, so it approves only what the import would do.
pub fn check_study(
    conn: &mut DbConnection,
    scope: &OrgScope,
    opts: &Options,
) -> Result<Option<crate::study::Study>, AppError> {
    match opts.study_id {
        Some(id) => {
            let s = crate::study::in_scope(conn, scope, id)?;
            crate::study::require_active(&s, "enrolments")?;
            Ok(Some(s))
        }
        None => Ok(None),
    }
}

/// What a commit did.
pub struct Report {
    pub preview: Preview,
    pub enrolled: usize,
    pub invitations: Vec<crate::invitation::Issued>,
}

/// Checks the file again and writes every valid row, all in the caller's transaction: an
/// error anywhere leaves nothing behind. Refused when rows are invalid and `skip_invalid` is
/// off. Importing the same file again changes nothing.
pub fn commit(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    table: &Table,
    opts: &Options,
    today: NaiveDate,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, AppError> {
    organization::require(scope, Role::Member)?;
    let (preview, on_record) = check_known(conn, scope, table, today)?;
    let invalid = preview.invalid().len();
    if invalid > 0 && !opts.skip_invalid {
        return Err(AppError::BadRequest(format!(
            "{invalid} row{} of the file {} problems, so nothing was imported. Fix {} and upload the file again, or import only the valid rows.",
            if invalid == 1 { "" } else { "s" },
            if invalid == 1 { "has" } else { "have" },
            if invalid == 1 { "it" } else { "them" }
        )));
    }
    let study = check_study(conn, scope, opts)?;
    let fresh: Vec<&ValidPatient> = preview
        .rows
        .iter()
        .filter_map(|r| match &r.outcome {
            Ok((Action::Create, p)) => Some(p),
            _ => None,
        })
        .collect();
    let total = fresh.len();
    let created = crate::patient::repo::insert_many(conn, scope.org_id(), &fresh, &mut |done| {
        progress(done, total)
    })?;
    // In the file's order, so enrolments, invitations and reports follow it.
    let mut imported: Vec<i64> = Vec::with_capacity(preview.rows.len());
    for r in &preview.rows {
        match &r.outcome {
            Ok((Action::Create, p)) => imported.extend(created.get(&p.email).copied()),
            Ok((Action::AddToOrganization(id), _)) => {
                crate::patient::repo::link(conn, *id, scope.org_id())?;
                imported.push(*id);
            }
            Ok((Action::Update(id), p)) => {
                // What check() read of the record, in this same transaction.
                let (_, _, birth_date, phone, held) = on_record
                    .get(id)
                    .ok_or_else(|| AppError::not_found("Patient"))?;
                let mut idents = held.clone();
                for i in &p.identifiers {
                    if !idents.contains(i) {
                        idents.push(i.clone());
                    }
                }
                // A blank optional cell leaves what is on record.
                let merged = ValidPatient {
                    birth_date: p.birth_date.or(*birth_date),
                    phone: p.phone.clone().or(phone.clone()),
                    identifiers: idents,
                    ..p.clone()
                };
                crate::patient::repo::update(conn, *id, &merged, true)?;
                imported.push(*id);
            }
            Ok((Action::Unchanged(id), _)) => imported.push(*id),
            _ => {}
        }
    }
    let enrolled = match &study {
        Some(s) if !imported.is_empty() => crate::study::enrol(conn, user, scope, s, &imported)?,
        _ => 0,
    };
    // A large list can multiply the tables' sizes: the planner's statistics must follow, or
    // every later write plans as if the tables were still small.
    crate::db::refresh_statistics(conn)?;
    let invitations = match &opts.invite {
        Some((url, days)) => {
            crate::invitation::issue_many(conn, user, scope, &imported, true, url, *days)?
        }
        None => Vec::new(),
    };
    let counts = serde_json::json!({
        "created": preview.new_patients(),
        "added": preview.added(),
        "updated": preview.updated(),
        "unchanged": preview.unchanged(),
        "rejected": invalid,
        "studyId": opts.study_id,
        "enrolled": enrolled,
        "invited": invitations.len(),
    });
    Audit::by(user, "patient.import")
        .org(scope.org_id())
        .detail(counts)
        .record(conn)?;
    Ok(Report {
        preview,
        enrolled,
        invitations,
    })
}

/// The per-row outcome as CSV: line, email, outcome, and the problems of a rejected row.
pub fn outcome_csv(preview: &Preview) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["line", "email", "outcome", "problems"]);
    for r in &preview.rows {
        let (outcome, problems) = match &r.outcome {
            Ok((a, _)) => (a.label().to_string(), String::new()),
            Err(p) => (
                "rejected".to_string(),
                p.iter()
                    .map(|p| format!("{}: {}", p.column, p.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        let safe = |v: &str| crate::util::spreadsheet_safe(v).into_owned();
        let _ = w.write_record([r.line.to_string(), safe(&r.email), outcome, safe(&problems)]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Rows grouped for a summary: (label, count), in reading order.
pub fn summary(preview: &Preview) -> Vec<(&'static str, usize)> {
    vec![
        ("created", preview.new_patients()),
        ("added to this organization", preview.added()),
        ("updated", preview.updated()),
        ("unchanged", preview.unchanged()),
        ("rejected", preview.invalid().len()),
    ]
}

#[cfg(test)]
mod tests {
    use super::repeats;

    #[test]
    fn repeats_point_each_later_row_at_the_first_with_its_key() {
        let keys = vec![("b", 0), ("a", 1), ("b", 2), ("c", 3), ("b", 4), ("a", 5)];
        let mut found = repeats(keys);
        found.sort();
        assert_eq!(found, vec![(2, 0), (4, 0), (5, 1)]);
        assert!(repeats::<&str, usize>(Vec::new()).is_empty());
    }
}
