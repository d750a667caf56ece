//! Diesel rows for studies, the scope codes they request and the data sources they accept.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{codeable_concepts, data_sources, studies};

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = studies)]
pub struct Study {
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
    pub description: String,
    pub icon_url: Option<String>,
    pub status: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Study {
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Closed)
    }
}

/// A scope code (Open mHealth or IEEE 1752 schema) with the name people read.
#[derive(Queryable, Selectable, Clone, Debug, PartialEq)]
#[diesel(table_name = codeable_concepts)]
pub struct Scope {
    pub id: i64,
    pub coding_system: String,
    pub coding_code: String,
    pub text: String,
}

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = data_sources)]
pub struct DataSource {
    pub id: i64,
    pub name: String,
    pub source_type: String,
    pub created_at: NaiveDateTime,
}

/// Whether a study takes new enrolments, invitations and uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Active,
    Paused,
    Closed,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Active, Status::Paused, Status::Closed];

    pub fn parse(s: &str) -> Option<Status> {
        match s.trim().to_ascii_lowercase().as_str() {
            "active" => Some(Status::Active),
            "paused" => Some(Status::Paused),
            "closed" => Some(Status::Closed),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Closed => "closed",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Status::Active => "Active",
            Status::Paused => "Paused",
            Status::Closed => "Closed",
        }
    }
}

/// What a practitioner enters for a study; checked by `study::validate`.
#[derive(Clone, Debug, Default)]
pub struct StudyInput {
    pub name: String,
    pub description: String,
    pub icon_url: String,
    pub status: String,
}

/// Checked values, ready to store.
#[derive(Clone, Debug)]
pub struct ValidStudy {
    pub name: String,
    pub description: String,
    pub icon_url: Option<String>,
    pub status: Status,
}
