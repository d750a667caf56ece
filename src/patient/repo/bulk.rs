//! Creating many patients at once (imports): multi-row INSERTs, a thousand rows a statement,
//! inside the caller's transaction. New ids come back with the e-mail each was made for
//! (RETURNING), so nothing depends on row order or on guessing the next id.

use std::collections::HashMap;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::super::model::ValidPatient;
use super::super::search;
use super::{sort_birth, sort_name};
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::util::now;

/// An id read back from a multi-row INSERT, with the e-mail it was made for.
#[derive(QueryableByName)]
struct Made {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    email: String,
}

/// A text literal for SQL built here. Values never carry NUL (the reader refuses such
/// files); both backends read '' as one quote and treat backslashes literally.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn optional(s: Option<&str>) -> String {
    s.map(quote).unwrap_or_else(|| "NULL".into())
}

/// Creates the patients (none of whose e-mails exist yet) in `org_id`; returns each
/// e-mail with its new patient id. `progress` hears how many are written after each batch.
pub fn insert_many(
    conn: &mut DbConnection,
    org_id: i64,
    people: &[&ValidPatient],
    progress: &mut dyn FnMut(usize),
) -> AppResult<HashMap<String, i64>> {
    let t = quote(&now().format("%Y-%m-%d %H:%M:%S%.6f").to_string());
    let (tr, fa) = match conn {
        DbConnection::Sqlite(_) => ("1", "0"),
        DbConnection::Postgres(_) => ("TRUE", "FALSE"),
    };
    let mut ids = HashMap::with_capacity(people.len());
    // A large import dirties more pages than SQLite's default 2 MB cache holds; spilled
    // to the WAL and read back, they would cost more than the inserts.
    let cache = if people.len() > 1000 { 16_384 } else { 0 };
    crate::db::with_sqlite_cache(conn, cache, |conn| {
        for chunk in people.chunks(1000) {
            let mut sql = String::from("INSERT INTO users (email, first_name, last_name, user_type, is_superuser, is_active, created_at) VALUES ");
            for (i, p) in chunk.iter().enumerate() {
                sql.push_str(if i == 0 { "" } else { "," });
                sql.push_str(&format!(
                    "({},{},{},'patient',{fa},{tr},{t})",
                    quote(&p.email),
                    quote(&p.name_given),
                    quote(&p.name_family)
                ));
            }
            sql.push_str(" RETURNING id, email");
            let user_ids: HashMap<String, i64> = diesel::sql_query(sql)
                .load::<Made>(conn)?
                .into_iter()
                .map(|m| (m.email, m.id))
                .collect();
            let mut sql = String::from("INSERT INTO patients (user_id, name_family, name_given, birth_date, telecom_phone, telecom_email, search_text, created_at, updated_at) VALUES ");
            for (i, p) in chunk.iter().enumerate() {
                sql.push_str(if i == 0 { "" } else { "," });
                sql.push_str(&format!(
                    "({},{},{},{},{},{},'',{t},{t})",
                    user_ids.get(&p.email).copied().unwrap_or(-1),
                    quote(&p.name_family),
                    quote(&p.name_given),
                    optional(p.birth_date.map(|d| d.to_string()).as_deref()),
                    optional(p.phone.as_deref()),
                    quote(&p.email)
                ));
            }
            sql.push_str(" RETURNING id, telecom_email AS email");
            let made: HashMap<String, i64> = diesel::sql_query(sql)
                .load::<Made>(conn)?
                .into_iter()
                .map(|m| (m.email, m.id))
                .collect();
            let mut links = String::from("INSERT INTO patient_organizations (patient_id, organization_id, created_at, sort_name, birth_date) VALUES ");
            let mut idents = String::new();
            let mut terms = String::new();
            for (i, p) in chunk.iter().enumerate() {
                let pid = made.get(&p.email).copied().unwrap_or(-1);
                links.push_str(if i == 0 { "" } else { "," });
                links.push_str(&format!(
                    "({pid},{org_id},{t},{},'{}')",
                    quote(&sort_name(&p.name_family, &p.name_given)),
                    sort_birth(p.birth_date).format("%Y-%m-%d")
                ));
                for (system, value) in &p.identifiers {
                    idents.push_str(if idents.is_empty() { "" } else { "," });
                    idents.push_str(&format!("({pid},{},{})", quote(system), quote(value)));
                }
                let birth = p.birth_date.map(|d| d.to_string()).unwrap_or_default();
                let mut fields: Vec<&str> = vec![&p.name_family, &p.name_given, &p.email, &birth];
                fields.extend(p.identifiers.iter().map(|(_, v)| v.as_str()));
                for term in search::terms(fields) {
                    terms.push_str(if terms.is_empty() { "" } else { "," });
                    terms.push_str(&format!("({pid},{})", quote(&term)));
                }
            }
            let mut sql = links;
            if !idents.is_empty() {
                sql.push_str(
                    ";\nINSERT INTO patient_identifiers (patient_id, system, value) VALUES ",
                );
                sql.push_str(&idents);
            }
            if !terms.is_empty() {
                sql.push_str(";\nINSERT INTO patient_search_terms (patient_id, term) VALUES ");
                sql.push_str(&terms);
            }
            conn.batch_execute(&sql)?;
            ids.extend(made);
            progress(ids.len());
        }
        Ok(())
    })?;
    // Fresh statistics, or the planner keeps treating these tables as nearly empty and
    // scans them for every lookup that follows.
    if matches!(conn, DbConnection::Postgres(_)) && people.len() > 1000 {
        conn.batch_execute(
            "ANALYZE users, patients, patient_organizations, patient_identifiers, patient_search_terms",
        )?;
    }
    Ok(ids)
}
