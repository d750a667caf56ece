//! Practitioners: the staff who sign in to the console, and the superusers among them.

pub mod api;
pub mod model;
pub mod pages;
pub mod repo;

use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::{AppError, FieldErrors};
use crate::organization::{self, Role};

pub struct NewPractitionerInput {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub organization_id: Option<i64>,
    pub role: Role,
    pub superuser: bool,
}

/// Superusers add practitioners; optionally straight into an organization with a role.
pub fn create(
    conn: &mut DbConnection,
    actor: &CurrentUser,
    input: &NewPractitionerInput,
) -> Result<(i64, i64), AppError> {
    if !actor.is_superuser() {
        return Err(AppError::Forbidden(
            "Only superusers can add practitioners.".into(),
        ));
    }
    let email = crate::util::normalize_email(&input.email);
    let mut errors = FieldErrors::new();
    if !crate::util::looks_like_email(&email) {
        errors.insert(
            "telecomEmail".into(),
            vec!["Enter an e-mail address such as name@example.org.".into()],
        );
    }
    if input.first_name.trim().chars().count() > 150 {
        errors.insert(
            "nameGiven".into(),
            vec!["Use at most 150 characters.".into()],
        );
    }
    if input.last_name.trim().chars().count() > 150 {
        errors.insert(
            "nameFamily".into(),
            vec!["Use at most 150 characters.".into()],
        );
    }
    if !errors.is_empty() {
        return Err(AppError::Invalid(errors));
    }
    if let Some(existing) = repo::find_by_email(conn, &email)? {
        let what = if existing.user.user_type == "patient" {
            "a patient account"
        } else {
            "a practitioner"
        };
        return Err(AppError::Conflict(format!("{email} is already {what}.")));
    }
    let scope = match input.organization_id {
        Some(org_id) => Some(organization::authorize(conn, actor, org_id, Role::Manager)?),
        None => None,
    };
    let (user_id, practitioner_id) = repo::create_practitioner(
        conn,
        &email,
        &input.first_name,
        &input.last_name,
        input.superuser,
    )?;
    Audit::by(actor, "practitioner.create")
        .object("practitioner", practitioner_id)
        .detail(serde_json::json!({"email": email, "superuser": input.superuser}))
        .record(conn)?;
    if let Some(scope) = scope {
        organization::add_member_by_id(conn, actor, &scope, practitioner_id, input.role, &email)?;
    }
    Ok((user_id, practitioner_id))
}

/// The first run's administrator, or a new one made from the command line.
pub fn ensure_admin(conn: &mut DbConnection, email: &str) -> Result<i64, AppError> {
    match repo::find_by_email(conn, email)? {
        Some(acc) if acc.practitioner_id.is_some() => {
            if !acc.user.is_superuser {
                repo::set_superuser(conn, acc.user.id, true)?;
                Audit::system("practitioner.superuser.grant")
                    .object("user", acc.user.id)
                    .record(conn)?;
            }
            Ok(acc.user.id)
        }
        Some(_) => Err(AppError::Conflict(format!(
            "{email} is a patient account; choose another e-mail for the administrator."
        ))),
        None => {
            let (user_id, pid) = repo::create_practitioner(conn, email, "", "", true)?;
            Audit::system("practitioner.create")
                .object("practitioner", pid)
                .detail(serde_json::json!({"email": email, "superuser": true}))
                .record(conn)?;
            Ok(user_id)
        }
    }
}
