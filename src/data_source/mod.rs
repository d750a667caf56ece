//! The data source catalogue (FHIR Device): the apps and devices observations come from, and
//! the scopes each supplies. Superusers keep it; studies choose from it.

pub mod api;
pub mod pages;
pub mod repo;

use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::{AppError, FieldErrors};

/// The kinds of data source, with the names people read.
pub const TYPES: &[(&str, &str)] = &[
    ("personal_device", "Personal device"),
    ("medical_device", "Medical device"),
    ("patient_app", "Patient app"),
];

pub fn type_label(code: &str) -> &'static str {
    TYPES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, l)| *l)
        .unwrap_or("Other")
}

/// A data source as entered: name, type and the scope ids it supplies.
#[derive(Clone, Debug, Default)]
pub struct SourceInput {
    pub name: String,
    pub source_type: String,
    pub scope_ids: Vec<i64>,
}

fn check(
    conn: &mut DbConnection,
    input: &SourceInput,
    own: Option<i64>,
) -> Result<SourceInput, AppError> {
    let mut e = FieldErrors::new();
    let name = input.name.trim().to_string();
    if name.is_empty() {
        e.insert("name".into(), vec!["Enter the data source's name.".into()]);
    } else if name.chars().count() > 150 {
        e.insert("name".into(), vec!["Use at most 150 characters.".into()]);
    } else if repo::find_by_name(conn, &name)?.is_some_and(|d| Some(d.id) != own) {
        e.insert(
            "name".into(),
            vec![format!("{name} is already in the catalogue.")],
        );
    }
    if !TYPES.iter().any(|(c, _)| *c == input.source_type) {
        e.insert(
            "type".into(),
            vec!["Choose personal_device, medical_device or patient_app.".into()],
        );
    }
    let mut scope_ids = input.scope_ids.clone();
    scope_ids.sort_unstable();
    scope_ids.dedup();
    for id in &scope_ids {
        if crate::study::repo::find_scope(conn, *id)?.is_none() {
            e.insert(
                "supportedScopes".into(),
                vec![format!(
                    "There is no scope {id}; see /api/v1/data_sources/all_scopes."
                )],
            );
        }
    }
    if !e.is_empty() {
        return Err(AppError::Invalid(e));
    }
    Ok(SourceInput {
        name,
        source_type: input.source_type.clone(),
        scope_ids,
    })
}

fn superuser(user: &CurrentUser) -> Result<(), AppError> {
    if user.is_superuser() {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "Only superusers keep the data source catalogue; ask one to add it.".into(),
        ))
    }
}

pub fn create(
    conn: &mut DbConnection,
    user: &CurrentUser,
    input: &SourceInput,
) -> Result<i64, AppError> {
    superuser(user)?;
    let s = check(conn, input, None)?;
    let id = repo::insert(conn, &s.name, &s.source_type, &s.scope_ids)?;
    Audit::by(user, "data_source.create")
        .object("data_source", id)
        .detail(serde_json::json!({"name": s.name, "type": s.source_type}))
        .record(conn)?;
    Ok(id)
}

pub fn update(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    input: &SourceInput,
) -> Result<(), AppError> {
    superuser(user)?;
    repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Data source"))?;
    let s = check(conn, input, Some(id))?;
    repo::update(conn, id, &s.name, &s.source_type, &s.scope_ids)?;
    Audit::by(user, "data_source.update")
        .object("data_source", id)
        .detail(serde_json::json!({"name": s.name, "type": s.source_type}))
        .record(conn)
}

/// Deletes a data source; refused while studies accept it, with how many.
pub fn delete(conn: &mut DbConnection, user: &CurrentUser, id: i64) -> Result<(), AppError> {
    superuser(user)?;
    let source = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Data source"))?;
    let used = repo::studies_using(conn, id)?;
    if used > 0 {
        return Err(AppError::Conflict(format!(
            "{} cannot be deleted: {used} stud{} accept{} it. Remove it from those studies first.",
            source.name,
            if used == 1 { "y" } else { "ies" },
            if used == 1 { "s" } else { "" }
        )));
    }
    repo::delete(conn, id)?;
    Audit::by(user, "data_source.delete")
        .object("data_source", id)
        .detail(serde_json::json!({"name": source.name}))
        .record(conn)
}
