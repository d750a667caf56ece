//! Bulk SQL for demo data: multi-row INSERTs with explicit ids, one transaction per batch.
//! The values are generated here (names from fixed lists), never typed by a user; text is
//! still quoted properly.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::FakePatient;
use crate::db::schema::{patient_organizations, patients, users};
use crate::db::DbConnection;
use crate::error::{AppError, AppResult};
use crate::util::now;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// (next user id, next patient id, a number to start fake e-mails and MRNs from).
pub fn next_ids(conn: &mut DbConnection) -> AppResult<(i64, i64, i64)> {
    let u: Option<i64> = users::table
        .select(diesel::dsl::max(users::id))
        .first(conn)?;
    let p: Option<i64> = patients::table
        .select(diesel::dsl::max(patients::id))
        .first(conn)?;
    let (u, p) = (u.unwrap_or(0) + 1, p.unwrap_or(0) + 1);
    Ok((u, p, p))
}

pub fn insert_batch(
    conn: &mut DbConnection,
    org_id: i64,
    first_user: i64,
    first_patient: i64,
    people: &[FakePatient],
) -> AppResult<()> {
    let t = quote(&now().format("%Y-%m-%d %H:%M:%S%.6f").to_string());
    let (tr, fa) = match conn {
        DbConnection::Sqlite(_) => ("1", "0"),
        DbConnection::Postgres(_) => ("TRUE", "FALSE"),
    };
    let mut users_sql = String::from("INSERT INTO users (id, email, first_name, last_name, user_type, is_superuser, is_active, created_at) VALUES ");
    let mut patients_sql = String::from("INSERT INTO patients (id, user_id, name_family, name_given, birth_date, telecom_phone, telecom_email, search_text, created_at, updated_at) VALUES ");
    let mut links_sql = String::from(
        "INSERT INTO patient_organizations (patient_id, organization_id, created_at, sort_name, birth_date) VALUES ",
    );
    let mut ids_sql =
        String::from("INSERT INTO patient_identifiers (patient_id, system, value) VALUES ");
    let mut terms_sql = String::from("INSERT INTO patient_search_terms (patient_id, term) VALUES ");
    let mut first_term = true;
    for (i, p) in people.iter().enumerate() {
        let (uid, pid) = (first_user + i as i64, first_patient + i as i64);
        let sep = if i == 0 { "" } else { "," };
        let (email, fam, giv) = (quote(&p.email), quote(&p.family), quote(&p.given));
        users_sql.push_str(&format!(
            "{sep}({uid},{email},{giv},{fam},'patient',{fa},{tr},{t})"
        ));
        patients_sql.push_str(&format!(
            "{sep}({pid},{uid},{fam},{giv},'{}',{},{email},{},{t},{t})",
            p.birth_date.format("%Y-%m-%d"),
            quote(&p.phone),
            quote(&crate::patient::search::words_json(&p.terms))
        ));
        links_sql.push_str(&format!(
            "{sep}({pid},{org_id},{t},{},'{}')",
            quote(&crate::patient::repo::sort_name(&p.family, &p.given)),
            p.birth_date.format("%Y-%m-%d")
        ));
        ids_sql.push_str(&format!("{sep}({pid},'urn:mrn',{})", quote(&p.mrn)));
        for term in &p.terms {
            terms_sql.push_str(if first_term { "" } else { "," });
            first_term = false;
            terms_sql.push_str(&format!("({pid},{})", quote(term)));
        }
    }
    let sql = format!("{users_sql};\n{patients_sql};\n{links_sql};\n{ids_sql};\n{terms_sql};");
    conn.transaction::<_, AppError, _>(|c| {
        c.batch_execute(&sql)?;
        Ok(())
    })
}

/// Every patient id of an organization, in order.
pub fn patients_of(conn: &mut DbConnection, org_id: i64) -> AppResult<Vec<i64>> {
    Ok(patient_organizations::table
        .filter(patient_organizations::organization_id.eq(org_id))
        .select(patient_organizations::patient_id)
        .order(patient_organizations::patient_id)
        .load(conn)?)
}

/// What the demo study holds for one patient.
pub struct Plan {
    pub patient_id: i64,
    /// One per scope: Some(consented) or None for pending.
    pub decisions: Vec<Option<bool>>,
    pub invitation: Option<&'static str>,
}

/// Enrolments, decisions and invitations for a batch of patients, in one transaction.
pub fn insert_study_batch(
    conn: &mut DbConnection,
    study_id: i64,
    org_id: i64,
    scopes: &[i64],
    plan: &[Plan],
) -> AppResult<()> {
    let now_t = now();
    let t = quote(&now_t.format("%Y-%m-%d %H:%M:%S%.6f").to_string());
    let later = quote(
        &(now_t + chrono::Duration::days(7))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
    );
    let before = quote(
        &(now_t - chrono::Duration::days(1))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
    );
    let (tr, fa) = match conn {
        DbConnection::Sqlite(_) => ("1", "0"),
        DbConnection::Postgres(_) => ("TRUE", "FALSE"),
    };
    let mut enrol = String::from(
        "INSERT INTO study_patients (study_id, patient_id, created_at, decisions) VALUES ",
    );
    let mut decide = String::from("INSERT INTO consents (study_id, patient_id, codeable_concept_id, consented, consented_at, reason, created_at, updated_at) VALUES ");
    let mut invite = String::from("INSERT INTO invitations (patient_id, organization_id, token_hash, status, send_email, created_at, expires_at, last_updated) VALUES ");
    let (mut any_decision, mut any_invite) = (false, false);
    for (i, p) in plan.iter().enumerate() {
        let pid = p.patient_id;
        enrol.push_str(&format!(
            "{}({study_id},{pid},{t},0)",
            if i == 0 { "" } else { "," }
        ));
        for (scope, d) in scopes.iter().zip(&p.decisions) {
            if let Some(ok) = d {
                decide.push_str(if any_decision { "," } else { "" });
                any_decision = true;
                decide.push_str(&format!(
                    "({study_id},{pid},{scope},{},{t},'demo',{t},{t})",
                    if *ok { tr } else { fa }
                ));
            }
        }
        if let Some(status) = p.invitation {
            invite.push_str(if any_invite { "," } else { "" });
            any_invite = true;
            let (stored, expires) = match status {
                "expired" => ("issued", &before),
                other => (other, &later),
            };
            invite.push_str(&format!(
                "({pid},{org_id},'demo-{study_id}-{pid}','{stored}',{tr},{t},{expires},{t})"
            ));
        }
    }
    let mut sql = format!("{enrol};\n");
    if any_decision {
        sql.push_str(&decide);
        sql.push_str(";\n");
    }
    if any_invite {
        sql.push_str(&invite);
        sql.push_str(";\n");
    }
    conn.transaction::<_, AppError, _>(|c| {
        c.batch_execute(&sql)?;
        Ok(())
    })
}

/// PostgreSQL's id sequences do not follow explicit ids: move them past what was inserted.
/// Then refresh the planner's statistics, and on PostgreSQL the visibility map too (as
/// autovacuum would, later), so index-only scans need not visit the table. SQLite's
/// AUTOINCREMENT follows by itself.
pub fn after_bulk(conn: &mut DbConnection) -> AppResult<()> {
    match conn {
        DbConnection::Postgres(c) => {
            c.batch_execute(
                "SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT MAX(id) FROM users));
                 SELECT setval(pg_get_serial_sequence('patients', 'id'), (SELECT MAX(id) FROM patients));",
            )?;
            // Alone: VACUUM refuses to run inside the implicit transaction of a multi-statement string.
            c.batch_execute("VACUUM (ANALYZE)")?
        }
        // A sample of each index is enough for the planner, and quick on millions of rows.
        DbConnection::Sqlite(c) => c.batch_execute("PRAGMA analysis_limit = 1000; ANALYZE;")?,
    }
    Ok(())
}

/// Drops a table's secondary indexes (not its key or unique constraints) and hands back the
/// statements that make them again, as the database itself describes them.
pub fn drop_indexes(conn: &mut DbConnection, table: &str) -> AppResult<Vec<(String, String)>> {
    use diesel::sql_types::Text;
    #[derive(QueryableByName)]
    struct Ddl {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        ddl: String,
    }
    let sql = match conn {
        DbConnection::Sqlite(_) => format!(
            "SELECT name, sql AS ddl FROM sqlite_master WHERE type = 'index' AND tbl_name = {} AND sql IS NOT NULL",
            quote(table)
        ),
        DbConnection::Postgres(_) => format!(
            "SELECT indexname AS name, indexdef AS ddl FROM pg_indexes WHERE tablename = {} \
             AND indexname NOT IN (SELECT conname FROM pg_constraint)",
            quote(table)
        ),
    };
    let found: Vec<Ddl> = diesel::sql_query(sql).load(conn)?;
    for d in &found {
        conn.batch_execute(&format!("DROP INDEX {}", d.name))?;
    }
    Ok(found.into_iter().map(|d| (d.name, d.ddl)).collect())
}

pub fn create_indexes(conn: &mut DbConnection, indexes: &[(String, String)]) -> AppResult<()> {
    for (_, ddl) in indexes {
        conn.batch_execute(ddl)?;
    }
    Ok(())
}
