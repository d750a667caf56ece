//! Personal API tokens: random, shown once, stored only as a hash, revocable, with a
//! last-used time. Every use is written to the audit log.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::audit::Audit;
use crate::db::schema::{api_tokens, patients, practitioners, users};
use crate::db::time::OptStamp;
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::practitioner::model::{Account, User};
use crate::util::{now, random_token, sha256_hex};

/// Every Cohort token starts with this, so a leaked one is easy to recognise and scan for.
pub const PREFIX: &str = "cohort_";

#[derive(Queryable, Selectable, Clone, Debug)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub label: String,
    pub token_prefix: String,
    pub kind: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub expires_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

/// Makes a token and returns (id, the token itself). The token is never stored.
pub fn create(
    conn: &mut DbConnection,
    user_id: i64,
    label: &str,
    kind: &str,
) -> AppResult<(i64, String)> {
    let secret = format!("{PREFIX}{}", random_token(32));
    let id = diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::user_id.eq(user_id),
            api_tokens::label.eq(label.trim()),
            api_tokens::token_hash.eq(sha256_hex(&secret)),
            api_tokens::token_prefix.eq(&secret[..PREFIX.len() + 6]),
            api_tokens::kind.eq(kind),
            api_tokens::created_at.eq(now()),
        ))
        .returning(api_tokens::id)
        .get_result(conn)?;
    Ok((id, secret))
}

/// What a presented token comes to.
pub enum Check {
    /// A live token of an active user; `touch` when its last-used time is a minute old.
    Valid {
        account: Account,
        token_id: i64,
        touch: bool,
    },
    /// Unknown, revoked or expired; the event to record, if any.
    Rejected(Option<Audit>),
}

/// Looks a token up without writing anything: the caller records the use (see
/// `audit::Queue`) and, once a minute, the last-used time (`touch`).
pub fn check(
    conn: &mut DbConnection,
    secret: &str,
    ip: Option<String>,
    what: &str,
) -> AppResult<Check> {
    let t = now();
    // The token and its holder's account in one query.
    type Found = (
        i64,
        OptStamp,
        OptStamp,
        crate::practitioner::repo::AccountRow,
    );
    let found: Option<Found> = api_tokens::table
        .inner_join(
            users::table
                .left_join(practitioners::table)
                .left_join(patients::table),
        )
        .filter(api_tokens::token_hash.eq(sha256_hex(secret)))
        .filter(api_tokens::revoked_at.is_null())
        .select((
            api_tokens::id,
            api_tokens::expires_at,
            api_tokens::last_used_at,
            (
                User::as_select(),
                practitioners::id.nullable(),
                patients::id.nullable(),
            ),
        ))
        .first(conn)
        .optional()?;
    let Some((token_id, OptStamp(expires_at), OptStamp(last_used_at), row)) = found else {
        return Ok(Check::Rejected(Some(
            Audit::anonymous("token.rejected", None, ip)
                .detail(serde_json::json!({"request": what})),
        )));
    };
    if expires_at.is_some_and(|e| e <= t) {
        return Ok(Check::Rejected(Some(
            Audit::anonymous("token.rejected", None, ip)
                .object("api_token", token_id)
                .detail(serde_json::json!({"request": what, "reason": "expired"})),
        )));
    }
    let account = crate::practitioner::repo::to_account(row);
    if !account.user.is_active {
        return Ok(Check::Rejected(None));
    }
    // The last-used time is shown in minutes; writing it more often buys nothing.
    let touch = last_used_at.is_none_or(|u| (t - u).num_seconds() >= 60);
    Ok(Check::Valid {
        account,
        token_id,
        touch,
    })
}

pub fn touch(conn: &mut DbConnection, token_id: i64) -> AppResult<()> {
    diesel::update(api_tokens::table.find(token_id))
        .set(api_tokens::last_used_at.eq(Some(now())))
        .execute(conn)?;
    Ok(())
}

/// The audit event of one use of a token.
pub fn use_event(account: &Account, token_id: i64, ip: Option<String>, what: &str) -> Audit {
    Audit::anonymous("token.use", Some(&account.user.email), ip)
        .user_id(account.user.id, &account.user.email)
        .object("api_token", token_id)
        .detail(serde_json::json!({"request": what}))
}

pub fn list(conn: &mut DbConnection, user_id: i64) -> AppResult<Vec<ApiToken>> {
    Ok(api_tokens::table
        .filter(api_tokens::user_id.eq(user_id))
        .select(ApiToken::as_select())
        .order((
            api_tokens::revoked_at.is_null().desc(),
            api_tokens::created_at.desc(),
        ))
        .load(conn)?)
}

/// Revokes one of `user_id`'s tokens; false when there is no such live token.
pub fn revoke(conn: &mut DbConnection, user_id: i64, token_id: i64) -> AppResult<bool> {
    let n = diesel::update(
        api_tokens::table
            .filter(api_tokens::id.eq(token_id))
            .filter(api_tokens::user_id.eq(user_id))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(Some(now())))
    .execute(conn)?;
    Ok(n > 0)
}

/// For operators: revoke by id or by the token text, whoever owns it. Returns the owner's email.
pub fn revoke_any(conn: &mut DbConnection, id_or_secret: &str) -> AppResult<Option<(i64, String)>> {
    let target: Option<(i64, String)> = if let Ok(id) = id_or_secret.parse::<i64>() {
        api_tokens::table
            .inner_join(users::table)
            .filter(api_tokens::id.eq(id))
            .select((api_tokens::id, users::email))
            .first(conn)
            .optional()?
    } else {
        api_tokens::table
            .inner_join(users::table)
            .filter(api_tokens::token_hash.eq(sha256_hex(id_or_secret.trim())))
            .select((api_tokens::id, users::email))
            .first(conn)
            .optional()?
    };
    if let Some((id, _)) = &target {
        diesel::update(
            api_tokens::table
                .find(*id)
                .filter(api_tokens::revoked_at.is_null()),
        )
        .set(api_tokens::revoked_at.eq(Some(now())))
        .execute(conn)?;
    }
    Ok(target)
}

pub fn list_for_email(conn: &mut DbConnection, email: &str) -> AppResult<Vec<ApiToken>> {
    Ok(api_tokens::table
        .inner_join(users::table)
        .filter(users::email.eq(crate::util::normalize_email(email)))
        .select(ApiToken::as_select())
        .order(api_tokens::created_at.desc())
        .load(conn)?)
}
