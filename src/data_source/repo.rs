//! SQL for the data source catalogue (FHIR Device): the only place it lives.

use crate::db::InIds;
use diesel::prelude::*;

use crate::db::schema::{codeable_concepts, data_source_scopes, data_sources, study_data_sources};
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::study::{DataSource, Scope};
use crate::util::now;

pub fn find(conn: &mut DbConnection, id: i64) -> AppResult<Option<DataSource>> {
    Ok(data_sources::table
        .find(id)
        .select(DataSource::as_select())
        .first(conn)
        .optional()?)
}

/// The ids among `ids` that name a data source.
pub fn existing(conn: &mut DbConnection, ids: &[i64]) -> AppResult<Vec<i64>> {
    Ok(data_sources::table
        .filter(data_sources::id.in_ids(ids))
        .select(data_sources::id)
        .load(conn)?)
}

pub fn find_by_name(conn: &mut DbConnection, name: &str) -> AppResult<Option<DataSource>> {
    Ok(data_sources::table
        .filter(data_sources::name.eq(name))
        .select(DataSource::as_select())
        .first(conn)
        .optional()?)
}

/// A page of the catalogue by name, with the total.
pub fn list(conn: &mut DbConnection, offset: i64, limit: i64) -> AppResult<(Vec<DataSource>, i64)> {
    let total: i64 = data_sources::table.count().get_result(conn)?;
    let rows = data_sources::table
        .select(DataSource::as_select())
        .order((data_sources::name, data_sources::id))
        .offset(offset)
        .limit(limit)
        .load(conn)?;
    Ok((rows, total))
}

/// (data source id, scope) for each scope these sources supply.
pub fn scopes_of(conn: &mut DbConnection, ids: &[i64]) -> AppResult<Vec<(i64, Scope)>> {
    Ok(data_source_scopes::table
        .inner_join(codeable_concepts::table)
        .filter(data_source_scopes::data_source_id.in_ids(ids))
        .select((data_source_scopes::data_source_id, Scope::as_select()))
        .order((data_source_scopes::data_source_id, codeable_concepts::id))
        .load(conn)?)
}

pub fn insert(
    conn: &mut DbConnection,
    name: &str,
    source_type: &str,
    scope_ids: &[i64],
) -> AppResult<i64> {
    let id: i64 = diesel::insert_into(data_sources::table)
        .values((
            data_sources::name.eq(name),
            data_sources::source_type.eq(source_type),
            data_sources::created_at.eq(now()),
        ))
        .returning(data_sources::id)
        .get_result(conn)?;
    set_scopes(conn, id, scope_ids)?;
    Ok(id)
}

pub fn update(
    conn: &mut DbConnection,
    id: i64,
    name: &str,
    source_type: &str,
    scope_ids: &[i64],
) -> AppResult<()> {
    diesel::update(data_sources::table.find(id))
        .set((
            data_sources::name.eq(name),
            data_sources::source_type.eq(source_type),
        ))
        .execute(conn)?;
    set_scopes(conn, id, scope_ids)
}

fn set_scopes(conn: &mut DbConnection, id: i64, scope_ids: &[i64]) -> AppResult<()> {
    diesel::delete(data_source_scopes::table.filter(data_source_scopes::data_source_id.eq(id)))
        .execute(conn)?;
    // One row each: MultiConnection inserts a Vec of rows on neither backend, and a source
    // supplies a handful of scopes.
    for s in scope_ids {
        diesel::insert_into(data_source_scopes::table)
            .values((
                data_source_scopes::data_source_id.eq(id),
                data_source_scopes::codeable_concept_id.eq(*s),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// The scopes each of these sources supplies, by source id.
pub fn scopes_by_source(
    conn: &mut DbConnection,
    ids: &[i64],
) -> AppResult<std::collections::HashMap<i64, Vec<Scope>>> {
    let mut out: std::collections::HashMap<i64, Vec<Scope>> = Default::default();
    for (did, sc) in scopes_of(conn, ids)? {
        out.entry(did).or_default().push(sc);
    }
    Ok(out)
}

/// How many studies accept each source that any study accepts, by source id.
pub fn studies_using_all(
    conn: &mut DbConnection,
) -> AppResult<std::collections::HashMap<i64, i64>> {
    use diesel::dsl::count_star;
    Ok(study_data_sources::table
        .group_by(study_data_sources::data_source_id)
        .select((study_data_sources::data_source_id, count_star()))
        .load::<(i64, i64)>(conn)?
        .into_iter()
        .collect())
}

/// How many studies accept this source.
pub fn studies_using(conn: &mut DbConnection, id: i64) -> AppResult<i64> {
    Ok(study_data_sources::table
        .filter(study_data_sources::data_source_id.eq(id))
        .count()
        .get_result(conn)?)
}

pub fn delete(conn: &mut DbConnection, id: i64) -> AppResult<()> {
    diesel::delete(data_sources::table.find(id)).execute(conn)?;
    Ok(())
}
