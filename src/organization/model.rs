//! Diesel rows for organizations and practitioner memberships.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{organizations, practitioner_organizations};
use crate::db::time::Stamp;

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = organizations)]
pub struct Organization {
    pub id: i64,
    pub name: String,
    pub org_type: String,
    pub part_of: Option<i64>,
    #[diesel(deserialize_as = Stamp)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = Stamp)]
    pub updated_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = organizations)]
pub struct NewOrganization<'a> {
    pub name: &'a str,
    pub org_type: &'a str,
    pub part_of: Option<i64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = practitioner_organizations)]
pub struct NewMembership<'a> {
    pub practitioner_id: i64,
    pub organization_id: i64,
    pub role: &'a str,
    pub created_at: NaiveDateTime,
}

/// A practitioner as listed among an organization's members.
#[derive(Queryable, Clone, Debug)]
pub struct Member {
    pub practitioner_id: i64,
    pub user_id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
}
