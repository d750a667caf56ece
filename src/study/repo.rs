//! SQL for studies, their requested scopes, accepted data sources and enrolments: the only
//! place it lives. Consent decisions are in `consent::repo`.

use crate::db::InIds;
use diesel::prelude::*;

use super::model::{DataSource, Scope, Status, Study, ValidStudy};
use crate::db::schema::{
    codeable_concepts, consents, data_sources, observations, studies, study_counts,
    study_data_sources, study_patients, study_scope_requests,
};
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::util::now;

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

pub fn find(conn: &mut DbConnection, id: i64) -> AppResult<Option<Study>> {
    Ok(studies::table
        .find(id)
        .select(Study::as_select())
        .first(conn)
        .optional()?)
}

/// `%`, `_` and `\` typed in a search box are matched as themselves.
fn like_pattern(q: &str) -> String {
    let mut p = String::from("%");
    for c in crate::patient::search::fold(q.trim()).chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A page of some organizations' studies by name, with the total: every word of `q` must
/// appear in the name or description.
pub fn list(
    conn: &mut DbConnection,
    org_ids: &[i64],
    q: &str,
    status: Option<Status>,
    offset: i64,
    limit: i64,
) -> AppResult<(Vec<Study>, i64)> {
    let query = || {
        let mut b = match org_ids {
            [one] => studies::table
                .filter(studies::organization_id.eq(*one))
                .into_boxed(),
            many => studies::table
                .filter(studies::organization_id.in_ids(many))
                .into_boxed(),
        };
        if let Some(s) = status {
            b = b.filter(studies::status.eq(s.as_str()));
        }
        for word in q.split_whitespace().take(8) {
            let p = like_pattern(word);
            b = b.filter(studies::search_text.like(p).escape('\\'));
        }
        b
    };
    let total: i64 = query().count().get_result(conn)?;
    let rows = query()
        .select(Study::as_select())
        .order((lower(studies::name), studies::id))
        .offset(offset)
        .limit(limit)
        .load(conn)?;
    Ok((rows, total))
}

/// Every study of an organization, by name (for selectors).
pub fn all_of(conn: &mut DbConnection, org_id: i64) -> AppResult<Vec<Study>> {
    Ok(studies::table
        .filter(studies::organization_id.eq(org_id))
        .select(Study::as_select())
        .order((lower(studies::name), studies::id))
        .load(conn)?)
}

/// Name and description folded for case and accents, as searches are.
fn search_text(s: &ValidStudy) -> String {
    crate::patient::search::fold(&format!("{} {}", s.name, s.description))
}

pub fn insert(conn: &mut DbConnection, org_id: i64, s: &ValidStudy) -> AppResult<i64> {
    let t = now();
    Ok(diesel::insert_into(studies::table)
        .values((
            studies::organization_id.eq(org_id),
            studies::name.eq(&s.name),
            studies::description.eq(&s.description),
            studies::icon_url.eq(&s.icon_url),
            studies::status.eq(s.status.as_str()),
            studies::search_text.eq(search_text(s)),
            studies::created_at.eq(t),
            studies::updated_at.eq(t),
        ))
        .returning(studies::id)
        .get_result(conn)?)
}

pub fn update(conn: &mut DbConnection, id: i64, s: &ValidStudy) -> AppResult<()> {
    diesel::update(studies::table.find(id))
        .set((
            studies::name.eq(&s.name),
            studies::description.eq(&s.description),
            studies::icon_url.eq(&s.icon_url),
            studies::status.eq(s.status.as_str()),
            studies::search_text.eq(search_text(s)),
            studies::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut DbConnection, id: i64) -> AppResult<()> {
    diesel::delete(studies::table.find(id)).execute(conn)?;
    Ok(())
}

/// What deleting a study would take or be held back by: (enrolments, consents,
/// observations its patients uploaded for the scopes it requests).
pub fn dependents(conn: &mut DbConnection, id: i64) -> AppResult<(i64, i64, i64)> {
    let enrolled: i64 = study_counts::table
        .find(id)
        .select(study_counts::enrolled)
        .first(conn)
        .optional()?
        .unwrap_or(0);
    let consents: i64 = consents::table
        .filter(consents::study_id.eq(id))
        .count()
        .get_result(conn)?;
    let observations: i64 = observations::table
        .filter(
            observations::patient_id.eq_any(
                study_patients::table
                    .filter(study_patients::study_id.eq(id))
                    .select(study_patients::patient_id),
            ),
        )
        .filter(
            observations::codeable_concept_id.eq_any(
                study_scope_requests::table
                    .filter(study_scope_requests::study_id.eq(id))
                    .select(study_scope_requests::codeable_concept_id),
            ),
        )
        .count()
        .get_result(conn)?;
    Ok((enrolled, consents, observations))
}

// ---- Scopes ---------------------------------------------------------------------------------

pub fn all_scopes(conn: &mut DbConnection) -> AppResult<Vec<Scope>> {
    Ok(codeable_concepts::table
        .select(Scope::as_select())
        .order(codeable_concepts::id)
        .load(conn)?)
}

pub fn find_scope(conn: &mut DbConnection, id: i64) -> AppResult<Option<Scope>> {
    Ok(codeable_concepts::table
        .find(id)
        .select(Scope::as_select())
        .first(conn)
        .optional()?)
}

pub fn find_scope_by_code(
    conn: &mut DbConnection,
    system: Option<&str>,
    code: &str,
) -> AppResult<Option<Scope>> {
    let mut q = codeable_concepts::table
        .filter(codeable_concepts::coding_code.eq(code.to_string()))
        .into_boxed();
    if let Some(s) = system.filter(|s| !s.is_empty()) {
        q = q.filter(codeable_concepts::coding_system.eq(s.to_string()));
    }
    Ok(q.select(Scope::as_select()).first(conn).optional()?)
}

/// The ids of the patients enrolled in a study, in id order.
pub fn members(conn: &mut DbConnection, study_id: i64) -> AppResult<Vec<i64>> {
    Ok(study_patients::table
        .filter(study_patients::study_id.eq(study_id))
        .select(study_patients::patient_id)
        .order(study_patients::patient_id)
        .load(conn)?)
}

/// The scopes one study requests, in scope order.
pub fn requested(conn: &mut DbConnection, study_id: i64) -> AppResult<Vec<Scope>> {
    Ok(scope_requests(conn, &[study_id])?
        .into_iter()
        .map(|(_, sc)| sc)
        .collect())
}

/// (study id, scope) for each scope these studies request, in scope order.
pub fn scope_requests(conn: &mut DbConnection, study_ids: &[i64]) -> AppResult<Vec<(i64, Scope)>> {
    Ok(study_scope_requests::table
        .inner_join(codeable_concepts::table)
        .filter(study_scope_requests::study_id.in_ids(study_ids))
        .select((study_scope_requests::study_id, Scope::as_select()))
        .order((study_scope_requests::study_id, codeable_concepts::id))
        .load(conn)?)
}

/// Adds a scope request; false when the study already asks for it.
pub fn add_scope_request(conn: &mut DbConnection, study_id: i64, scope_id: i64) -> AppResult<bool> {
    let exists: i64 = study_scope_requests::table
        .filter(study_scope_requests::study_id.eq(study_id))
        .filter(study_scope_requests::codeable_concept_id.eq(scope_id))
        .count()
        .get_result(conn)?;
    if exists > 0 {
        return Ok(false);
    }
    diesel::insert_into(study_scope_requests::table)
        .values((
            study_scope_requests::study_id.eq(study_id),
            study_scope_requests::codeable_concept_id.eq(scope_id),
            study_scope_requests::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(true)
}

pub fn remove_scope_request(
    conn: &mut DbConnection,
    study_id: i64,
    scope_id: i64,
) -> AppResult<bool> {
    Ok(diesel::delete(
        study_scope_requests::table
            .filter(study_scope_requests::study_id.eq(study_id))
            .filter(study_scope_requests::codeable_concept_id.eq(scope_id)),
    )
    .execute(conn)?
        > 0)
}

/// Removes a study's decisions about one scope; returns how many there were.
pub fn remove_scope_decisions(
    conn: &mut DbConnection,
    study_id: i64,
    scope_id: i64,
) -> AppResult<usize> {
    Ok(diesel::delete(
        consents::table
            .filter(consents::study_id.eq(study_id))
            .filter(consents::codeable_concept_id.eq(scope_id)),
    )
    .execute(conn)?)
}

// ---- Data sources ---------------------------------------------------------------------------

/// (study id, data source) for each source these studies accept, by name.
pub fn data_sources_of(
    conn: &mut DbConnection,
    study_ids: &[i64],
) -> AppResult<Vec<(i64, DataSource)>> {
    Ok(study_data_sources::table
        .inner_join(data_sources::table)
        .filter(study_data_sources::study_id.in_ids(study_ids))
        .select((study_data_sources::study_id, DataSource::as_select()))
        .order((study_data_sources::study_id, data_sources::name))
        .load(conn)?)
}

/// Adds a data source to a study; false when it is there already.
pub fn add_data_source(conn: &mut DbConnection, study_id: i64, source_id: i64) -> AppResult<bool> {
    let exists: i64 = study_data_sources::table
        .filter(study_data_sources::study_id.eq(study_id))
        .filter(study_data_sources::data_source_id.eq(source_id))
        .count()
        .get_result(conn)?;
    if exists > 0 {
        return Ok(false);
    }
    diesel::insert_into(study_data_sources::table)
        .values((
            study_data_sources::study_id.eq(study_id),
            study_data_sources::data_source_id.eq(source_id),
            study_data_sources::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(true)
}

pub fn remove_data_source(
    conn: &mut DbConnection,
    study_id: i64,
    source_id: i64,
) -> AppResult<bool> {
    Ok(diesel::delete(
        study_data_sources::table
            .filter(study_data_sources::study_id.eq(study_id))
            .filter(study_data_sources::data_source_id.eq(source_id)),
    )
    .execute(conn)?
        > 0)
}

// ---- Enrolment ------------------------------------------------------------------------------

/// Which of these patients are enrolled in the study.
pub fn enrolled_among(
    conn: &mut DbConnection,
    study_id: i64,
    patient_ids: &[i64],
) -> AppResult<Vec<i64>> {
    let mut out = Vec::new();
    for chunk in patient_ids.chunks(5000) {
        out.extend(
            study_patients::table
                .filter(study_patients::study_id.eq(study_id))
                .filter(study_patients::patient_id.in_ids(chunk))
                .select(study_patients::patient_id)
                .load::<i64>(conn)?,
        );
    }
    Ok(out)
}

/// Enrols patients (none of them enrolled yet) with one multi-row insert per thousand. The
/// SQL is built from integers and a timestamp this function formats, never from user text.
pub fn enrol(conn: &mut DbConnection, study_id: i64, patient_ids: &[i64]) -> AppResult<()> {
    use diesel::connection::SimpleConnection;
    let t = now().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    for chunk in patient_ids.chunks(1000) {
        let mut sql = String::from(
            "INSERT INTO study_patients (study_id, patient_id, created_at, decisions) VALUES ",
        );
        for (i, p) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("({study_id},{p},'{t}',0)"));
        }
        conn.batch_execute(&sql)?;
    }
    Ok(())
}

/// Takes patients out of the study with their consents there; returns how many were enrolled.
pub fn unenrol(conn: &mut DbConnection, study_id: i64, patient_ids: &[i64]) -> AppResult<usize> {
    let mut removed = 0;
    for chunk in patient_ids.chunks(5000) {
        diesel::delete(
            consents::table
                .filter(consents::study_id.eq(study_id))
                .filter(consents::patient_id.in_ids(chunk)),
        )
        .execute(conn)?;
        removed += diesel::delete(
            study_patients::table
                .filter(study_patients::study_id.eq(study_id))
                .filter(study_patients::patient_id.in_ids(chunk)),
        )
        .execute(conn)?;
    }
    Ok(removed)
}

/// Studies a patient is enrolled in, by name.
pub fn studies_of_patient(conn: &mut DbConnection, patient_id: i64) -> AppResult<Vec<Study>> {
    Ok(study_patients::table
        .inner_join(studies::table)
        .filter(study_patients::patient_id.eq(patient_id))
        .select(Study::as_select())
        .order((lower(studies::name), studies::id))
        .load(conn)?)
}

/// (patient, study name) for each active study of `org_id` these patients are enrolled in,
/// each patient's studies by name.
pub fn active_names_among(
    conn: &mut DbConnection,
    org_id: i64,
    patient_ids: &[i64],
) -> AppResult<Vec<(i64, String)>> {
    Ok(study_patients::table
        .inner_join(studies::table)
        .filter(study_patients::patient_id.in_ids(patient_ids))
        .filter(studies::organization_id.eq(org_id))
        .filter(studies::status.eq("active"))
        .select((study_patients::patient_id, studies::name))
        .order((
            study_patients::patient_id,
            lower(studies::name),
            studies::id,
        ))
        .load(conn)?)
}

/// Patients enrolled per study, from the counter the triggers keep.
pub fn enrolled_counts(conn: &mut DbConnection, study_ids: &[i64]) -> AppResult<Vec<(i64, i64)>> {
    Ok(study_counts::table
        .filter(study_counts::study_id.in_ids(study_ids))
        .select((study_counts::study_id, study_counts::enrolled))
        .load(conn)?)
}
