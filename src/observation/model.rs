//! Observations as stored: the OMH document `{header, body}` as uploaded, and the columns
//! lists filter and sort on.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::observations;
use crate::db::time::{OptStamp, Stamp};

#[derive(Queryable, QueryableByName, Selectable, Clone, Debug)]
#[diesel(table_name = observations)]
pub struct Observation {
    pub id: i64,
    pub patient_id: i64,
    pub codeable_concept_id: i64,
    pub data_source_id: Option<i64>,
    pub status: String,
    pub identifier_system: Option<String>,
    pub identifier_value: Option<String>,
    #[diesel(deserialize_as = Stamp)]
    pub effective_start: NaiveDateTime,
    #[diesel(deserialize_as = OptStamp)]
    pub effective_end: Option<NaiveDateTime>,
    pub omh_data: String,
    #[diesel(deserialize_as = Stamp)]
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = Stamp)]
    pub last_updated: NaiveDateTime,
}

/// A row about to be inserted; the identifier is always set (from the OMH header's uuid when
/// the upload named none), so a repeated upload is recognised.
#[derive(Clone, Debug)]
pub struct NewObservation {
    pub patient_id: i64,
    pub codeable_concept_id: i64,
    pub data_source_id: Option<i64>,
    pub status: String,
    pub identifier_system: String,
    pub identifier_value: String,
    pub effective_start: NaiveDateTime,
    pub effective_end: Option<NaiveDateTime>,
    pub omh_data: String,
    pub at: NaiveDateTime,
}

/// FHIR Observation status codes.
pub const STATUSES: [&str; 8] = [
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
];
