//! SQL for tags.

use crate::db::InIds;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{patient_organizations, patient_tags, tags};
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::organization::OrgScope;
use crate::util::now;

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = tags)]
pub struct Tag {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
    pub created_at: NaiveDateTime,
}

pub fn list(conn: &mut DbConnection, scope: &OrgScope) -> AppResult<Vec<Tag>> {
    Ok(tags::table
        .filter(tags::organization_id.eq(scope.org_id()))
        .select(Tag::as_select())
        .order(tags::name.asc())
        .load(conn)?)
}

pub fn get(conn: &mut DbConnection, scope: &OrgScope, id: i64) -> AppResult<Option<Tag>> {
    Ok(tags::table
        .filter(tags::organization_id.eq(scope.org_id()))
        .filter(tags::id.eq(id))
        .select(Tag::as_select())
        .first(conn)
        .optional()?)
}

pub fn find_or_create(conn: &mut DbConnection, scope: &OrgScope, name: &str) -> AppResult<Tag> {
    let existing = tags::table
        .filter(tags::organization_id.eq(scope.org_id()))
        .filter(tags::name.eq(name))
        .select(Tag::as_select())
        .first(conn)
        .optional()?;
    if let Some(t) = existing {
        return Ok(t);
    }
    diesel::insert_into(tags::table)
        .values((
            tags::organization_id.eq(scope.org_id()),
            tags::name.eq(name),
            tags::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(tags::table
        .filter(tags::organization_id.eq(scope.org_id()))
        .filter(tags::name.eq(name))
        .select(Tag::as_select())
        .first(conn)?)
}

/// The ones of `ids` that belong to the scope's organization.
pub fn linked_to_org(
    conn: &mut DbConnection,
    scope: &OrgScope,
    ids: &[i64],
) -> AppResult<Vec<i64>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(5000) {
        out.extend(
            patient_organizations::table
                .filter(patient_organizations::organization_id.eq(scope.org_id()))
                .filter(patient_organizations::patient_id.in_ids(chunk))
                .select(patient_organizations::patient_id)
                .load::<i64>(conn)?,
        );
    }
    Ok(out)
}

/// Tags these patients; returns how many did not have it yet.
pub fn add(conn: &mut DbConnection, tag_id: i64, ids: &[i64]) -> AppResult<usize> {
    let mut added = 0;
    for chunk in ids.chunks(5000) {
        let have: Vec<i64> = patient_tags::table
            .filter(patient_tags::tag_id.eq(tag_id))
            .filter(patient_tags::patient_id.in_ids(chunk))
            .select(patient_tags::patient_id)
            .load(conn)?;
        let t = now();
        for id in chunk.iter().filter(|id| !have.contains(id)) {
            diesel::insert_into(patient_tags::table)
                .values((
                    patient_tags::patient_id.eq(id),
                    patient_tags::tag_id.eq(tag_id),
                    patient_tags::created_at.eq(t),
                ))
                .execute(conn)?;
            added += 1;
        }
    }
    Ok(added)
}

pub fn remove(conn: &mut DbConnection, tag_id: i64, ids: &[i64]) -> AppResult<usize> {
    let mut removed = 0;
    for chunk in ids.chunks(5000) {
        removed += diesel::delete(
            patient_tags::table
                .filter(patient_tags::tag_id.eq(tag_id))
                .filter(patient_tags::patient_id.in_ids(chunk)),
        )
        .execute(conn)?;
    }
    Ok(removed)
}

/// (patient id, tag) for these patients, within the scope's organization.
pub fn of_patients(
    conn: &mut DbConnection,
    scope: &OrgScope,
    ids: &[i64],
) -> AppResult<Vec<(i64, Tag)>> {
    Ok(patient_tags::table
        .inner_join(tags::table)
        .filter(tags::organization_id.eq(scope.org_id()))
        .filter(patient_tags::patient_id.in_ids(ids))
        .select((patient_tags::patient_id, Tag::as_select()))
        .order(tags::name.asc())
        .load(conn)?)
}
