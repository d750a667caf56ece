//! SQL for organizations and memberships; the only place it lives.

use crate::db::InIds;
use diesel::prelude::*;

use super::model::{Member, NewMembership, NewOrganization, Organization};
use super::{OrgScope, Role};
use crate::db::schema::{
    organizations, patient_organizations, practitioner_organizations, practitioners, studies, users,
};
use crate::db::DbConnection;
use crate::error::{AppError, AppResult};
use crate::util::now;

pub fn find(conn: &mut DbConnection, id: i64) -> AppResult<Option<Organization>> {
    Ok(organizations::table
        .find(id)
        .select(Organization::as_select())
        .first(conn)
        .optional()?)
}

pub fn find_many(conn: &mut DbConnection, ids: &[i64]) -> AppResult<Vec<Organization>> {
    Ok(organizations::table
        .filter(organizations::id.in_ids(ids))
        .select(Organization::as_select())
        .load(conn)?)
}

pub fn get(conn: &mut DbConnection, scope: &OrgScope) -> AppResult<Organization> {
    find(conn, scope.org_id())?.ok_or_else(|| AppError::not_found("Organization"))
}

/// Every organization, root included. The tree is small next to patients and observations;
/// the console and visibility checks work on it whole.
pub fn all(conn: &mut DbConnection) -> AppResult<Vec<Organization>> {
    Ok(organizations::table
        .select(Organization::as_select())
        .order(organizations::name.asc())
        .load(conn)?)
}

/// `org_id` and its ancestors, nearest first; empty when the organization does not exist.
pub fn ancestry(conn: &mut DbConnection, org_id: i64) -> AppResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Link {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    // One statement for the whole chain: on PostgreSQL every level was a round trip.
    let links: Vec<Link> = crate::db::sql::Sql::kept(
        "WITH RECURSIVE chain(id, part_of, depth) AS ( \
           SELECT id, part_of, 0 FROM organizations WHERE id = ? \
           UNION ALL \
           SELECT o.id, o.part_of, c.depth + 1 FROM organizations o \
           JOIN chain c ON o.id = c.part_of WHERE c.depth < 64) \
         SELECT id FROM chain ORDER BY depth",
    )
    .int(org_id)
    .load(conn)?;
    // A loop in the data (never written by Cohort) ends the chain where it repeats.
    let mut chain: Vec<i64> = Vec::with_capacity(links.len());
    for l in links {
        if chain.contains(&l.id) {
            break;
        }
        chain.push(l.id);
    }
    Ok(chain)
}

pub fn memberships(conn: &mut DbConnection, practitioner_id: i64) -> AppResult<Vec<(i64, Role)>> {
    let rows: Vec<(i64, String)> = practitioner_organizations::table
        .filter(practitioner_organizations::practitioner_id.eq(practitioner_id))
        .select((
            practitioner_organizations::organization_id,
            practitioner_organizations::role,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(o, r)| Role::parse(&r).map(|r| (o, r)))
        .collect())
}

pub fn create(
    conn: &mut DbConnection,
    name: &str,
    org_type: &str,
    part_of: i64,
    creator_practitioner: Option<i64>,
) -> AppResult<i64> {
    let t = now();
    let id: i64 = diesel::insert_into(organizations::table)
        .values(NewOrganization {
            name: name.trim(),
            org_type,
            part_of: Some(part_of),
            created_at: t,
            updated_at: t,
        })
        .returning(organizations::id)
        .get_result(conn)?;
    if let Some(pid) = creator_practitioner {
        diesel::insert_into(practitioner_organizations::table)
            .values(NewMembership {
                practitioner_id: pid,
                organization_id: id,
                role: Role::Manager.as_str(),
                created_at: t,
            })
            .execute(conn)?;
    }
    Ok(id)
}

pub fn update(
    conn: &mut DbConnection,
    scope: &OrgScope,
    name: &str,
    org_type: &str,
) -> AppResult<()> {
    diesel::update(organizations::table.find(scope.org_id()))
        .set((
            organizations::name.eq(name.trim()),
            organizations::org_type.eq(org_type),
            organizations::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// What still hangs on an organization: sub-organizations, patients, studies.
pub fn dependents(conn: &mut DbConnection, scope: &OrgScope) -> AppResult<(i64, i64, i64)> {
    let id = scope.org_id();
    let children = organizations::table
        .filter(organizations::part_of.eq(id))
        .count()
        .get_result(conn)?;
    let patients = patient_organizations::table
        .filter(patient_organizations::organization_id.eq(id))
        .count()
        .get_result(conn)?;
    let studies = studies::table
        .filter(studies::organization_id.eq(id))
        .count()
        .get_result(conn)?;
    Ok((children, patients, studies))
}

pub fn delete(conn: &mut DbConnection, scope: &OrgScope) -> AppResult<()> {
    diesel::delete(organizations::table.find(scope.org_id())).execute(conn)?;
    Ok(())
}

pub fn members(conn: &mut DbConnection, scope: &OrgScope) -> AppResult<Vec<Member>> {
    Ok(practitioner_organizations::table
        .inner_join(practitioners::table.inner_join(users::table))
        .filter(practitioner_organizations::organization_id.eq(scope.org_id()))
        .select((
            practitioners::id,
            users::id,
            users::email,
            users::first_name,
            users::last_name,
            practitioner_organizations::role,
        ))
        .order((
            users::last_name.asc(),
            users::first_name.asc(),
            users::email.asc(),
        ))
        .load(conn)?)
}

pub fn member_role(
    conn: &mut DbConnection,
    scope: &OrgScope,
    practitioner_id: i64,
) -> AppResult<Option<Role>> {
    let role: Option<String> = practitioner_organizations::table
        .filter(practitioner_organizations::organization_id.eq(scope.org_id()))
        .filter(practitioner_organizations::practitioner_id.eq(practitioner_id))
        .select(practitioner_organizations::role)
        .first(conn)
        .optional()?;
    Ok(role.and_then(|r| Role::parse(&r)))
}

pub fn add_member(
    conn: &mut DbConnection,
    scope: &OrgScope,
    practitioner_id: i64,
    role: Role,
) -> AppResult<()> {
    diesel::insert_into(practitioner_organizations::table)
        .values(NewMembership {
            practitioner_id,
            organization_id: scope.org_id(),
            role: role.as_str(),
            created_at: now(),
        })
        .execute(conn)?;
    Ok(())
}

pub fn set_role(
    conn: &mut DbConnection,
    scope: &OrgScope,
    practitioner_id: i64,
    role: Role,
) -> AppResult<bool> {
    let n = diesel::update(
        practitioner_organizations::table
            .filter(practitioner_organizations::organization_id.eq(scope.org_id()))
            .filter(practitioner_organizations::practitioner_id.eq(practitioner_id)),
    )
    .set(practitioner_organizations::role.eq(role.as_str()))
    .execute(conn)?;
    Ok(n > 0)
}

pub fn remove_member(
    conn: &mut DbConnection,
    scope: &OrgScope,
    practitioner_id: i64,
) -> AppResult<bool> {
    let n = diesel::delete(
        practitioner_organizations::table
            .filter(practitioner_organizations::organization_id.eq(scope.org_id()))
            .filter(practitioner_organizations::practitioner_id.eq(practitioner_id)),
    )
    .execute(conn)?;
    Ok(n > 0)
}

pub fn count_managers(conn: &mut DbConnection, scope: &OrgScope) -> AppResult<i64> {
    Ok(practitioner_organizations::table
        .filter(practitioner_organizations::organization_id.eq(scope.org_id()))
        .filter(practitioner_organizations::role.eq(Role::Manager.as_str()))
        .count()
        .get_result(conn)?)
}
