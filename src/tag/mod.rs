//! Tags: an organization's own labels for its patients, applied and removed one by one or
//! in bulk, and used to filter lists.

pub mod repo;

use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::AppError;
use crate::organization::{self, OrgScope, Role};

pub use repo::Tag;

/// A tag name as people type it: trimmed, inner spaces folded, 1 to 40 characters.
pub fn clean_name(name: &str) -> Result<String, AppError> {
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        return Err(AppError::invalid(
            "tag",
            "Type a tag, such as \"baseline visit done\".",
        ));
    }
    if name.chars().count() > 40 {
        return Err(AppError::invalid(
            "tag",
            "Use at most 40 characters for a tag.",
        ));
    }
    Ok(name)
}

/// Applies the tag (made if new) to these patients of the scope's organization. Returns how
/// many newly got it; patients who had it already are left as they are.
pub fn apply(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    patient_ids: &[i64],
    name: &str,
) -> Result<(Tag, usize), AppError> {
    organization::require(scope, Role::Member)?;
    let name = clean_name(name)?;
    let tag = repo::find_or_create(conn, scope, &name)?;
    let ids = repo::linked_to_org(conn, scope, patient_ids)?;
    let added = repo::add(conn, tag.id, &ids)?;
    Audit::by(user, "patient.tag.add")
        .object("tag", tag.id)
        .org(scope.org_id())
        .detail(serde_json::json!({"tag": tag.name, "patients": added}))
        .record(conn)?;
    Ok((tag, added))
}

pub fn remove(
    conn: &mut DbConnection,
    user: &CurrentUser,
    scope: &OrgScope,
    patient_ids: &[i64],
    tag_id: i64,
) -> Result<usize, AppError> {
    organization::require(scope, Role::Member)?;
    let tag = repo::get(conn, scope, tag_id)?.ok_or_else(|| AppError::not_found("Tag"))?;
    let removed = repo::remove(conn, tag.id, patient_ids)?;
    Audit::by(user, "patient.tag.remove")
        .object("tag", tag.id)
        .org(scope.org_id())
        .detail(serde_json::json!({"tag": tag.name, "patients": removed}))
        .record(conn)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_names_are_tidied_and_bounded() {
        assert_eq!(
            clean_name("  baseline   done ").expect("valid"),
            "baseline done"
        );
        assert!(clean_name("   ").is_err());
        assert!(clean_name(&"x".repeat(41)).is_err());
    }
}
