//! Creating many patients at once (imports), a thousand a statement, inside the caller's
//! transaction. Each statement takes its rows as one JSON array bound as a single value and
//! reads it back as a row set (SQLite `json_each`, PostgreSQL `json_array_elements`): the
//! statement's text stays short and the same, so nothing is quoted by hand and the database
//! does not compile a thousand literal rows each time. New ids come back with the e-mail each
//! was made for (RETURNING), so nothing depends on row order or on guessing the next id.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamp};
use serde::Serialize;

use super::super::model::ValidPatient;
use super::super::search;
use super::{search_terms, sort_birth, sort_name};
use crate::db::{DbConnection, MultiBackend};
use crate::error::AppResult;
use crate::util::now;

/// An id read back from a multi-row INSERT, with the e-mail it was made for.
#[derive(QueryableByName)]
struct Made {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    email: String,
}

/// Rows passed as one JSON array (`rows`) with the time of the import (`at`).
struct RowSet {
    pg: bool,
}

impl RowSet {
    /// The `i`th value of each row, as SQL type `ty` (PostgreSQL reads JSON values as text).
    fn col(&self, i: usize, ty: &str) -> String {
        if self.pg {
            format!("CAST(e->>{i} AS {ty})")
        } else {
            format!("e.value->>{i}")
        }
    }

    /// The import's time: the first bound value.
    fn at(&self) -> &'static str {
        if self.pg {
            "$1"
        } else {
            "?1"
        }
    }

    /// The rows: the second bound value.
    fn from(&self) -> &'static str {
        if self.pg {
            " FROM json_array_elements(CAST($2 AS JSON)) AS e"
        } else {
            " FROM json_each(?2) AS e"
        }
    }

    fn query(
        &self,
        sql: &str,
        at: chrono::NaiveDateTime,
        rows: JsonRows,
    ) -> diesel::query_builder::BoxedSqlQuery<'static, MultiBackend, diesel::query_builder::SqlQuery>
    {
        diesel::sql_query(sql)
            .into_boxed::<MultiBackend>()
            .bind::<Timestamp, _>(at)
            .bind::<Text, _>(rows.finish())
    }
}

/// A JSON array written row by row (each row a tuple, written as an array), without
/// building a tree of values first.
struct JsonRows {
    buf: Vec<u8>,
    len: usize,
}

impl JsonRows {
    fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes);
        buf.push(b'[');
        JsonRows { buf, len: 0 }
    }

    fn push(&mut self, row: &impl Serialize) {
        if self.len > 0 {
            self.buf.push(b',');
        }
        self.len += 1;
        // Writing tuples of numbers and strings into memory cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, row);
    }

    fn finish(mut self) -> String {
        self.buf.push(b']');
        // serde_json writes UTF-8.
        String::from_utf8(self.buf).unwrap_or_default()
    }
}

/// Creates the patients (none of whose e-mails exist yet) in `org_id`; returns each
/// e-mail with its new patient id. `progress` hears how many are written after each batch.
pub fn insert_many(
    conn: &mut DbConnection,
    org_id: i64,
    people: &[&ValidPatient],
    progress: &mut dyn FnMut(usize),
) -> AppResult<HashMap<String, i64>> {
    let at = now();
    let r = RowSet {
        pg: matches!(conn, DbConnection::Postgres(_)),
    };
    let (tr, fa) = if r.pg { ("TRUE", "FALSE") } else { ("1", "0") };
    let users = format!(
        "INSERT INTO users (email, first_name, last_name, user_type, is_superuser, is_active, created_at) \
         SELECT {}, {}, {}, 'patient', {fa}, {tr}, {}{} RETURNING id, email",
        r.col(0, "TEXT"),
        r.col(1, "TEXT"),
        r.col(2, "TEXT"),
        r.at(),
        r.from()
    );
    let patients = format!(
        "INSERT INTO patients (user_id, name_family, name_given, birth_date, telecom_phone, telecom_email, search_text, created_at, updated_at) \
         SELECT {}, {}, {}, {}, {}, {}, {}, {at}, {at}{} RETURNING id, telecom_email AS email",
        r.col(0, "BIGINT"),
        r.col(1, "TEXT"),
        r.col(2, "TEXT"),
        r.col(3, "DATE"),
        r.col(4, "TEXT"),
        r.col(5, "TEXT"),
        r.col(6, "TEXT"),
        r.from(),
        at = r.at(),
    );
    let links = format!(
        "INSERT INTO patient_organizations (patient_id, organization_id, created_at, sort_name, birth_date) \
         SELECT {}, {org_id}, {}, {}, {}{}",
        r.col(0, "BIGINT"),
        r.at(),
        r.col(1, "TEXT"),
        r.col(2, "DATE"),
        r.from()
    );
    // These two leave the time unused: every statement is bound the same two values.
    let idents = format!(
        "INSERT INTO patient_identifiers (patient_id, system, value) SELECT {}, {}, {}{}",
        r.col(0, "BIGINT"),
        r.col(1, "TEXT"),
        r.col(2, "TEXT"),
        r.from(),
    );
    let terms = format!(
        "INSERT INTO patient_search_terms (patient_id, term) SELECT {}, {}{}",
        r.col(0, "BIGINT"),
        r.col(1, "TEXT"),
        r.from(),
    );
    let mut ids = HashMap::with_capacity(people.len());
    // A large import dirties more pages than SQLite's default 2 MB cache holds; spilled
    // to the WAL and read back, they would cost more than the inserts.
    let cache = if people.len() > 1000 { 65_536 } else { 0 };
    crate::db::with_sqlite_cache(conn, cache, |conn| {
        for chunk in people.chunks(1000) {
            let mut rows = JsonRows::with_capacity(chunk.len() * 64);
            for p in chunk {
                rows.push(&(&p.email, &p.name_given, &p.name_family));
            }
            let user_ids: HashMap<String, i64> = r
                .query(&users, at, rows)
                .load::<Made>(conn)?
                .into_iter()
                .map(|m| (m.email, m.id))
                .collect();
            let words: Vec<std::collections::BTreeSet<String>> =
                chunk.iter().map(|p| search_terms(p)).collect();
            let mut rows = JsonRows::with_capacity(chunk.len() * 192);
            for (p, w) in chunk.iter().zip(&words) {
                rows.push(&(
                    user_ids.get(&p.email).copied().unwrap_or(-1),
                    &p.name_family,
                    &p.name_given,
                    p.birth_date.map(|d| d.to_string()),
                    &p.phone,
                    &p.email,
                    search::words_json(w),
                ));
            }
            let made: HashMap<String, i64> = r
                .query(&patients, at, rows)
                .load::<Made>(conn)?
                .into_iter()
                .map(|m| (m.email, m.id))
                .collect();
            let mut link_rows = JsonRows::with_capacity(chunk.len() * 48);
            let mut ident_rows = JsonRows::with_capacity(chunk.len() * 48);
            let mut chunk_terms: Vec<(String, i64)> = Vec::with_capacity(chunk.len() * 10);
            for (p, w) in chunk.iter().zip(words) {
                let pid = made.get(&p.email).copied().unwrap_or(-1);
                link_rows.push(&(
                    pid,
                    sort_name(&p.name_family, &p.name_given),
                    sort_birth(p.birth_date).to_string(),
                ));
                for (system, value) in &p.identifiers {
                    ident_rows.push(&(pid, system, value));
                }
                chunk_terms.extend(w.into_iter().map(|t| (t, pid)));
            }
            // In the order of the term index, so its inserts walk it once instead of jumping.
            chunk_terms.sort_unstable();
            let mut term_rows = JsonRows::with_capacity(chunk_terms.len() * 24);
            for (t, pid) in &chunk_terms {
                term_rows.push(&(pid, t));
            }
            r.query(&links, at, link_rows).execute(conn)?;
            if ident_rows.len > 0 {
                r.query(&idents, at, ident_rows).execute(conn)?;
            }
            if term_rows.len > 0 {
                r.query(&terms, at, term_rows).execute(conn)?;
            }
            ids.extend(made);
            progress(ids.len());
        }
        Ok(())
    })?;
    // Fresh statistics, or the planner keeps treating these tables as nearly empty and
    // scans them for every lookup that follows.
    if r.pg && people.len() > 1000 {
        use diesel::connection::SimpleConnection;
        conn.batch_execute(
            "ANALYZE users, patients, patient_organizations, patient_identifiers, patient_search_terms",
        )?;
    }
    Ok(ids)
}
