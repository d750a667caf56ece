//! SQL for uploaded patient lists: the only place it lives.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::imports;
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::organization::OrgScope;
use crate::util::now;

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = imports)]
pub struct Upload {
    pub id: i64,
    pub organization_id: i64,
    pub user_id: Option<i64>,
    pub filename: String,
    pub content: String,
    pub status: String,
    pub study_id: Option<i64>,
    pub invite: bool,
    pub result: Option<String>,
    pub outcome: Option<String>,
    pub created_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
}

pub fn insert(
    conn: &mut DbConnection,
    scope: &OrgScope,
    user_id: i64,
    filename: &str,
    content: &str,
    study_id: Option<i64>,
    invite: bool,
) -> AppResult<i64> {
    Ok(diesel::insert_into(imports::table)
        .values((
            imports::organization_id.eq(scope.org_id()),
            imports::user_id.eq(Some(user_id)),
            imports::filename.eq(filename),
            imports::content.eq(content),
            imports::status.eq("previewed"),
            imports::study_id.eq(study_id),
            imports::invite.eq(invite),
            imports::created_at.eq(now()),
        ))
        .returning(imports::id)
        .get_result(conn)?)
}

/// One upload of the scope's organization.
pub fn find(conn: &mut DbConnection, scope: &OrgScope, id: i64) -> AppResult<Option<Upload>> {
    Ok(imports::table
        .find(id)
        .filter(imports::organization_id.eq(scope.org_id()))
        .select(Upload::as_select())
        .first(conn)
        .optional()?)
}

/// The organization an upload belongs to, to check the caller's role there.
pub fn organization_of(conn: &mut DbConnection, id: i64) -> AppResult<Option<i64>> {
    Ok(imports::table
        .find(id)
        .select(imports::organization_id)
        .first(conn)
        .optional()?)
}

/// Hands an upload to a background run; false when it was no longer waiting.
pub fn start(conn: &mut DbConnection, id: i64) -> AppResult<bool> {
    Ok(diesel::update(
        imports::table
            .find(id)
            .filter(imports::status.eq("previewed")),
    )
    .set((
        imports::status.eq("running"),
        imports::started_at.eq(Some(now())),
    ))
    .execute(conn)?
        > 0)
}

/// A background run that stopped without finishing (its server went away) goes back to
/// waiting, so it can be started again; false when it was not stopped.
pub fn reopen_stopped(conn: &mut DbConnection, id: i64, before: NaiveDateTime) -> AppResult<bool> {
    Ok(diesel::update(
        imports::table
            .find(id)
            .filter(imports::status.eq("running"))
            .filter(imports::started_at.lt(before)),
    )
    .set(imports::status.eq("previewed"))
    .execute(conn)?
        > 0)
}

/// Marks an upload done (imported, cancelled or failed), keeping the summary and the per-row
/// report; false when it was no longer waiting or running (another tab or instance finished
/// it first).
pub fn finish(
    conn: &mut DbConnection,
    id: i64,
    status: &str,
    result: Option<&str>,
    outcome: Option<&str>,
) -> AppResult<bool> {
    Ok(diesel::update(
        imports::table
            .find(id)
            .filter(imports::status.eq_any(["previewed", "running"])),
    )
    .set((
        imports::status.eq(status),
        imports::result.eq(result),
        imports::outcome.eq(outcome),
        imports::finished_at.eq(Some(now())),
    ))
    .execute(conn)?
        > 0)
}

/// Adds the e-mail sending report to a finished import's summary.
pub fn set_result(conn: &mut DbConnection, id: i64, result: &str) -> AppResult<()> {
    diesel::update(imports::table.find(id))
        .set(imports::result.eq(Some(result)))
        .execute(conn)?;
    Ok(())
}
