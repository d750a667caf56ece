//! Diesel rows for users (the sign-in identity) and practitioners.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{practitioners, users};
use crate::db::time::{OptStamp, Stamp};

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub user_type: String,
    pub is_superuser: bool,
    pub is_active: bool,
    pub selected_organization_id: Option<i64>,
    pub selected_study_id: Option<i64>,
    #[diesel(deserialize_as = Stamp)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = OptStamp)]
    pub last_login_at: Option<NaiveDateTime>,
}

impl User {
    pub fn display_name(&self) -> String {
        let name = format!("{} {}", self.first_name.trim(), self.last_name.trim());
        let name = name.trim();
        if name.is_empty() {
            self.email.clone()
        } else {
            name.to_string()
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub user_type: &'a str,
    pub is_superuser: bool,
    pub is_active: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = practitioners)]
pub struct NewPractitioner {
    pub user_id: i64,
    pub created_at: NaiveDateTime,
}

/// A user with the roles it plays: practitioner, patient, or (rarely) neither yet.
#[derive(Clone, Debug)]
pub struct Account {
    pub user: User,
    pub practitioner_id: Option<i64>,
    pub patient_id: Option<i64>,
}
