//! Studies: what an organization asks its patients for (scopes), which data sources it
//! accepts, who is enrolled, and the rules for changing any of it. Console and API both
//! call these.

pub mod api;
pub mod model;
pub mod pages;
pub mod repo;

use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::{AppError, FieldErrors};
use crate::organization::{self, OrgScope, Role};
pub use model::{DataSource, Scope, Status, Study, StudyInput, ValidStudy};

/// The message JHE scripts know, for enrolling a patient of another organization.
pub const SAME_ORGANIZATION: &str = "Patient and study must be from the same Organization";

/// Checks what a practitioner entered. Field names are the API's (camelCase).
pub fn validate(input: &StudyInput) -> Result<ValidStudy, FieldErrors> {
    let mut e = FieldErrors::new();
    let mut say = |field: &str, msg: &str| {
        e.entry(field.to_string())
            .or_default()
            .push(msg.to_string());
    };
    let name = input.name.trim().to_string();
    if name.is_empty() {
        say("name", "Enter a name for the study.");
    } else if name.chars().count() > 200 {
        say("name", "Use at most 200 characters.");
    }
    let description = input.description.trim().to_string();
    if description.is_empty() {
        say(
            "description",
            "Describe the study: patients read this before they consent.",
        );
    } else if description.chars().count() > 5000 {
        say("description", "Use at most 5,000 characters.");
    }
    let icon_url = match input.icon_url.trim() {
        "" => None,
        s => match url::Url::parse(s) {
            Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => {
                Some(s.to_string())
            }
            _ => {
                say(
                    "iconUrl",
                    "Use a web address starting with https:// or http://, such as https://example.org/icon.png.",
                );
                None
            }
        },
    };
    let status = match input.status.trim() {
        "" => Some(Status::Active),
        s => Status::parse(s),
    };
    if status.is_none() {
        say("status", "Choose active, paused or closed.");
    }
    match (e.is_empty(), status) {
        (true, Some(status)) => Ok(ValidStudy {
            name,
            description,
            icon_url,
            status,
        }),
        _ => Err(e),
    }
}

/// Finds a study and checks the caller's role in its organization. A study the caller
/// cannot see is reported as missing.
pub fn authorize(
    conn: &mut DbConnection,
    user: &CurrentUser,
    id: i64,
    needed: Role,
) -> Result<(Study, OrgScope), AppError> {
    let study = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Study"))?;
    let scope = match organization::authorize(conn, user, study.organization_id, needed) {
        Err(AppError::NotFound(_)) => return Err(AppError::not_found("Study")),
        other => other?,
    };
    Ok((study, scope))
}

/// One write transaction on a study as a member of its organization: the check and the work
/// commit together, and the work gets the study and the scope that proves the check.
pub async fn act<T, F>(db: &crate::db::Db, user: &CurrentUser, id: i64, f: F) -> Result<T, AppError>
where
    F: FnOnce(&mut DbConnection, &CurrentUser, &OrgScope, &Study) -> Result<T, AppError>
        + Send
        + 'static,
    T: Send + 'static,
{
    let user = user.clone();
    db.tx(move |conn| {
        let (s, scope) = authorize(conn, &user, id, Role::Member)?;
        f(conn, &user, &scope, &s)
    })
    .await
}

/// The study, checked against a scope the caller already holds.
pub fn in_scope(conn: &mut DbConnection, scope: &OrgScope, id: i64) -> Result<Study, AppError> {
    repo::find(conn, id)?
        .filter(|s| s.organization_id == scope.org_id())
        .ok_or_else(|| AppError::not_found("Study"))
}

pub fn create(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    input: &StudyInput,
) -> Result<i64, AppError> {
    organization::require(scope, Role::Member)?;
    let s = validate(input).map_err(AppError::Invalid)?;
    let id = repo::insert(conn, scope.org_id(), &s)?;
    Audit::by(user, "study.create")
        .object("study", id)
        .org(scope.org_id())
        .detail(serde_json::json!({"name": s.name, "status": s.status.as_str()}))
        .record(conn)?;
    Ok(id)
}

pub fn update(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    study: &Study,
    input: &StudyInput,
) -> Result<(), AppError> {
    organization::require(scope, Role::Member)?;
    let s = validate(input).map_err(AppError::Invalid)?;
    repo::update(conn, study.id, &s)?;
    Audit::by(user, "study.update")
        .object("study", study.id)
        .org(scope.org_id())
        .detail(serde_json::json!({"name": s.name, "status": s.status.as_str()}))
        .record(conn)
}

pub fn delete(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    study: &Study,
) -> Result<(), AppError> {
    organization::require(scope, Role::Member)?;
    let (enrolments, consents, observations) = repo::dependents(conn, study.id)?;
    if observations > 0 {
        return Err(AppError::Conflict(format!(
            "{} cannot be deleted: its patients uploaded {observations} observation{} for the data it requests. Close the study instead; it then takes no new enrolments or data.",
            study.name,
            if observations == 1 { "" } else { "s" }
        )));
    }
    repo::delete(conn, study.id)?;
    Audit::by(user, "study.delete")
        .object("study", study.id)
        .org(scope.org_id())
        .detail(
            serde_json::json!({"name": study.name, "enrolments": enrolments, "consents": consents}),
        )
        .record(conn)
}

/// Refuses a change that would bring in patients or data while the study is not active.
pub fn require_active(study: &Study, what: &str) -> Result<(), AppError> {
    match study.status() {
        Status::Active => Ok(()),
        s => Err(AppError::Conflict(format!(
            "{} is {}, so it takes no new {what}. Set its status to active first.",
            study.name,
            s.as_str()
        ))),
    }
}

/// Something a study asks for or accepts, added and removed one at a time.
#[derive(Clone, Copy, Debug)]
pub enum Item {
    /// A requested scope (codeable concept id).
    Scope(i64),
    /// An accepted data source (catalogue id).
    Source(i64),
}

impl Item {
    /// The name people read: "Heart rate", "Withings BPM".
    pub fn name(self, conn: &mut DbConnection) -> Result<String, AppError> {
        Ok(match self {
            Item::Scope(id) => repo::find_scope(conn, id)?.map(|s| s.text),
            Item::Source(id) => crate::data_source::repo::find(conn, id)?.map(|d| d.name),
        }
        .unwrap_or_default())
    }

    fn audit(self, added: bool) -> (&'static str, serde_json::Value) {
        match (self, added) {
            (Item::Scope(id), true) => ("study.scope.add", serde_json::json!({"scopeCodeId": id})),
            (Item::Scope(id), false) => {
                ("study.scope.remove", serde_json::json!({"scopeCodeId": id}))
            }
            (Item::Source(id), true) => (
                "study.data_source.add",
                serde_json::json!({"dataSourceId": id}),
            ),
            (Item::Source(id), false) => (
                "study.data_source.remove",
                serde_json::json!({"dataSourceId": id}),
            ),
        }
    }
}

/// Adds a scope request or a data source; false when the study has it already.
pub fn add(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    study: &Study,
    item: Item,
) -> Result<bool, AppError> {
    organization::require(scope, Role::Member)?;
    let added = match item {
        Item::Scope(id) => {
            if repo::find_scope(conn, id)?.is_none() {
                return Err(AppError::invalid(
                    "scopeCodeId",
                    "Choose a scope from the list (GET /api/v1/data_sources/all_scopes).",
                ));
            }
            repo::add_scope_request(conn, study.id, id)?
        }
        Item::Source(id) => {
            if crate::data_source::repo::find(conn, id)?.is_none() {
                return Err(AppError::invalid(
                    "dataSourceId",
                    "Choose a data source from the catalogue (GET /api/v1/data_sources).",
                ));
            }
            repo::add_data_source(conn, study.id, id)?
        }
    };
    if added {
        let (action, detail) = item.audit(true);
        Audit::by(user, action)
            .object("study", study.id)
            .org(scope.org_id())
            .detail(detail)
            .record(conn)?;
    }
    Ok(added)
}

/// Removes a scope request (with the study's decisions about that scope: decisions are only
/// ever about what the study asks for, and the audit log keeps them) or a data source.
pub fn remove(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    study: &Study,
    item: Item,
) -> Result<bool, AppError> {
    organization::require(scope, Role::Member)?;
    let (removed, decisions) = match item {
        Item::Scope(id) => {
            let removed = repo::remove_scope_request(conn, study.id, id)?;
            let decisions = if removed {
                repo::remove_scope_decisions(conn, study.id, id)?
            } else {
                0
            };
            (removed, decisions)
        }
        Item::Source(id) => (repo::remove_data_source(conn, study.id, id)?, 0),
    };
    if removed {
        let (action, mut detail) = item.audit(false);
        if let Item::Scope(_) = item {
            detail["decisionsRemoved"] = decisions.into();
        }
        Audit::by(user, action)
            .object("study", study.id)
            .org(scope.org_id())
            .detail(detail)
            .record(conn)?;
    }
    Ok(removed)
}

/// Enrols patients of the study's organization. Already enrolled ones are left as they are
/// (no error); returns how many were newly enrolled.
pub fn enrol(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    study: &Study,
    patient_ids: &[i64],
) -> Result<usize, AppError> {
    organization::require(scope, Role::Member)?;
    if patient_ids.is_empty() {
        return Err(AppError::invalid(
            "patientIds",
            "Choose at least one patient to enrol.",
        ));
    }
    let mut ids = patient_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let linked = crate::patient::repo::linked_among(conn, &ids, study.organization_id)?;
    if linked.len() != ids.len() {
        return Err(AppError::BadRequest(SAME_ORGANIZATION.into()));
    }
    let already = repo::enrolled_among(conn, study.id, &ids)?;
    let fresh: Vec<i64> = ids.into_iter().filter(|i| !already.contains(i)).collect();
    if fresh.is_empty() {
        return Ok(0);
    }
    require_active(study, "enrolments")?;
    repo::enrol(conn, study.id, &fresh)?;
    Audit::by(user, "study.enrol")
        .object("study", study.id)
        .org(scope.org_id())
        .detail(serde_json::json!({"patients": fresh.len(), "patientIds": fresh.iter().take(100).collect::<Vec<_>>()}))
        .record(conn)?;
    Ok(fresh.len())
}

/// Takes patients out of the study, with their consent decisions in it; returns how many
/// were enrolled. Not being enrolled is not an error.
pub fn unenrol(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    study: &Study,
    patient_ids: &[i64],
) -> Result<usize, AppError> {
    organization::require(scope, Role::Member)?;
    if patient_ids.is_empty() {
        return Err(AppError::invalid(
            "patientIds",
            "Choose at least one patient to remove from the study.",
        ));
    }
    let removed = repo::unenrol(conn, study.id, patient_ids)?;
    if removed > 0 {
        Audit::by(user, "study.unenrol")
            .object("study", study.id)
            .org(scope.org_id())
            .detail(serde_json::json!({"patients": removed, "patientIds": patient_ids.iter().take(100).collect::<Vec<_>>()}))
            .record(conn)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> StudyInput {
        StudyInput {
            name: " Sleep and BP ".into(),
            description: "Nightly readings.".into(),
            icon_url: "https://example.org/i.png".into(),
            status: "".into(),
        }
    }

    #[test]
    fn a_good_study_is_trimmed_and_active_by_default() {
        let s = validate(&input()).expect("valid");
        assert_eq!(s.name, "Sleep and BP");
        assert_eq!(s.status, Status::Active);
    }

    #[test]
    fn each_bad_field_says_what_to_fix() {
        let e = validate(&StudyInput {
            name: " ".into(),
            description: "".into(),
            icon_url: "javascript:alert(1)".into(),
            status: "done".into(),
        })
        .unwrap_err();
        for f in ["name", "description", "iconUrl", "status"] {
            assert!(e.contains_key(f), "{f}: {e:?}");
        }
        let ftp = StudyInput {
            icon_url: "ftp://example.org/i.png".into(),
            ..input()
        };
        assert!(validate(&ftp).unwrap_err()["iconUrl"][0].contains("https://"));
    }
}
