//! Diesel rows for patients, their identifiers and their organization links.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use crate::db::schema::{patient_identifiers, patients};
use crate::db::time::{OptDay, Stamp};

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = patients)]
pub struct Patient {
    pub id: i64,
    pub user_id: i64,
    pub name_family: String,
    pub name_given: String,
    #[diesel(deserialize_as = OptDay)]
    pub birth_date: Option<NaiveDate>,
    pub telecom_phone: Option<String>,
    pub telecom_email: String,
    #[diesel(deserialize_as = Stamp)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = Stamp)]
    pub updated_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Clone, Debug, PartialEq)]
#[diesel(table_name = patient_identifiers)]
pub struct Identifier {
    pub id: i64,
    pub patient_id: i64,
    pub system: String,
    pub value: String,
}

/// What a practitioner enters for a patient; checked by `patient::validate`.
#[derive(Clone, Debug, Default)]
pub struct PatientInput {
    pub email: String,
    pub name_family: String,
    pub name_given: String,
    pub birth_date: String,
    pub phone: String,
    /// (system, value) pairs.
    pub identifiers: Vec<(String, String)>,
}

/// Checked values, ready to store.
#[derive(Clone, Debug)]
pub struct ValidPatient {
    pub email: String,
    pub name_family: String,
    pub name_given: String,
    pub birth_date: Option<NaiveDate>,
    pub phone: Option<String>,
    pub identifiers: Vec<(String, String)>,
}
