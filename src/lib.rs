//! Cohort: the practitioner console and data exchange for health studies.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod consent;
pub mod console;
pub mod data_source;
pub mod db;
pub mod demo;
pub mod error;
pub mod fhir;
pub mod import;
pub mod invitation;
pub mod mail;
pub mod observation;
pub mod organization;
pub mod patient;
pub mod portal;
pub mod practitioner;
pub mod profile;
pub mod startup;
pub mod study;
pub mod tag;
pub mod telemetry;
pub mod util;
