//! SQL for users and practitioners.

use diesel::prelude::*;

use super::model::{Account, NewPractitioner, NewUser, User};
use crate::db::schema::{patients, practitioners, users};
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::util::now;

pub(crate) type AccountRow = (User, Option<i64>, Option<i64>);

pub(crate) fn to_account((user, practitioner_id, patient_id): AccountRow) -> Account {
    Account {
        user,
        practitioner_id,
        patient_id,
    }
}

pub fn find_account(conn: &mut DbConnection, user_id: i64) -> AppResult<Option<Account>> {
    let row: Option<AccountRow> = users::table
        .left_join(practitioners::table)
        .left_join(patients::table)
        .filter(users::id.eq(user_id))
        .select((
            User::as_select(),
            practitioners::id.nullable(),
            patients::id.nullable(),
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(to_account))
}

pub fn find_by_email(conn: &mut DbConnection, email: &str) -> AppResult<Option<Account>> {
    let row: Option<AccountRow> = users::table
        .left_join(practitioners::table)
        .left_join(patients::table)
        .filter(users::email.eq(crate::util::normalize_email(email)))
        .select((
            User::as_select(),
            practitioners::id.nullable(),
            patients::id.nullable(),
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(to_account))
}

pub fn count_practitioners(conn: &mut DbConnection) -> AppResult<i64> {
    Ok(practitioners::table.count().get_result(conn)?)
}

/// Creates a user and its practitioner record; returns (user id, practitioner id).
pub fn create_practitioner(
    conn: &mut DbConnection,
    email: &str,
    first_name: &str,
    last_name: &str,
    superuser: bool,
) -> AppResult<(i64, i64)> {
    let t = now();
    let email = crate::util::normalize_email(email);
    let user_id: i64 = diesel::insert_into(users::table)
        .values(NewUser {
            email: &email,
            first_name: first_name.trim(),
            last_name: last_name.trim(),
            user_type: "practitioner",
            is_superuser: superuser,
            is_active: true,
            created_at: t,
        })
        .returning(users::id)
        .get_result(conn)?;
    let practitioner_id: i64 = diesel::insert_into(practitioners::table)
        .values(NewPractitioner {
            user_id,
            created_at: t,
        })
        .returning(practitioners::id)
        .get_result(conn)?;
    Ok((user_id, practitioner_id))
}

pub fn set_superuser(conn: &mut DbConnection, user_id: i64, superuser: bool) -> AppResult<()> {
    diesel::update(users::table.find(user_id))
        .set(users::is_superuser.eq(superuser))
        .execute(conn)?;
    Ok(())
}

pub fn update_name(
    conn: &mut DbConnection,
    user_id: i64,
    first: &str,
    last: &str,
) -> AppResult<()> {
    diesel::update(users::table.find(user_id))
        .set((
            users::first_name.eq(first.trim()),
            users::last_name.eq(last.trim()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn touch_login(conn: &mut DbConnection, user_id: i64) -> AppResult<()> {
    diesel::update(users::table.find(user_id))
        .set(users::last_login_at.eq(Some(now())))
        .execute(conn)?;
    Ok(())
}

pub fn set_selected_organization(
    conn: &mut DbConnection,
    user_id: i64,
    org_id: Option<i64>,
) -> AppResult<()> {
    diesel::update(users::table.find(user_id))
        .set(users::selected_organization_id.eq(org_id))
        .execute(conn)?;
    Ok(())
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// A page of practitioners for the superuser console, optionally filtered by a search term.
pub fn list(
    conn: &mut DbConnection,
    q: &str,
    offset: i64,
    limit: i64,
) -> AppResult<(Vec<(i64, User)>, i64)> {
    let pattern = format!("%{}%", q.trim().to_lowercase());
    let matches = |pattern: String| {
        lower(users::email)
            .like(pattern.clone())
            .or(lower(users::first_name).like(pattern.clone()))
            .or(lower(users::last_name).like(pattern))
    };
    let total: i64 = practitioners::table
        .inner_join(users::table)
        .filter(matches(pattern.clone()))
        .count()
        .get_result(conn)?;
    let rows: Vec<(i64, User)> = practitioners::table
        .inner_join(users::table)
        .filter(matches(pattern))
        .select((practitioners::id, User::as_select()))
        .order((
            users::last_name.asc(),
            users::first_name.asc(),
            users::email.asc(),
        ))
        .offset(offset)
        .limit(limit)
        .load(conn)?;
    Ok((rows, total))
}
