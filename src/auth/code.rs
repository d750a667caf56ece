//! One-time sign-in secrets: six-digit codes sent by e-mail, and links (the first run's admin
//! link, links made by `cohort create-admin`). Single use, short-lived; repeated wrong codes
//! lock code sign-in for the account for a while.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use crate::db::schema::sign_in_tokens;
use crate::db::DbConnection;
use crate::error::AppResult;
use crate::util::{constant_time_eq, hmac_hex, now, random_digits, random_token, sha256_hex};

pub const CODE_MINUTES: i64 = 10;
pub const LINK_MINUTES: i64 = 15;
pub const MAX_WRONG_CODES: i64 = 5;
pub const LOCK_MINUTES: i64 = 15;
/// Codes one account may request within `CODE_MINUTES`, so nobody floods an inbox.
pub const MAX_CODES_PER_WINDOW: i64 = 5;

#[derive(Debug, PartialEq)]
pub enum CodeRefused {
    Locked { until: NaiveDateTime },
    TooMany,
}

#[derive(Debug, PartialEq)]
pub enum VerifyFailed {
    Wrong { attempts_left: i64 },
    Locked { until: NaiveDateTime },
    Expired,
    Used,
}

#[derive(Debug, PartialEq)]
pub enum LinkFailed {
    Unknown,
    Expired,
    Used,
}

fn insert(
    conn: &mut DbConnection,
    user_id: i64,
    kind: &str,
    secret_hash: &str,
    minutes: i64,
) -> AppResult<i64> {
    let t = now();
    Ok(diesel::insert_into(sign_in_tokens::table)
        .values((
            sign_in_tokens::user_id.eq(user_id),
            sign_in_tokens::kind.eq(kind),
            sign_in_tokens::secret_hash.eq(secret_hash),
            sign_in_tokens::created_at.eq(t),
            sign_in_tokens::expires_at.eq(t + Duration::minutes(minutes)),
            sign_in_tokens::failed_attempts.eq(0i64),
        ))
        .returning(sign_in_tokens::id)
        .get_result(conn)?)
}

/// A sign-in link's secret; the caller builds the URL `/auth/link/<secret>`.
pub fn create_link(conn: &mut DbConnection, user_id: i64) -> AppResult<String> {
    let secret = random_token(32);
    insert(conn, user_id, "link", &sha256_hex(&secret), LINK_MINUTES)?;
    Ok(secret)
}

/// Uses up a link and returns whose it was.
pub fn consume_link(conn: &mut DbConnection, secret: &str) -> AppResult<Result<i64, LinkFailed>> {
    let row: Option<(i64, i64, NaiveDateTime, Option<NaiveDateTime>)> = sign_in_tokens::table
        .filter(sign_in_tokens::kind.eq("link"))
        .filter(sign_in_tokens::secret_hash.eq(sha256_hex(secret)))
        .select((
            sign_in_tokens::id,
            sign_in_tokens::user_id,
            sign_in_tokens::expires_at,
            sign_in_tokens::used_at,
        ))
        .first(conn)
        .optional()?;
    let Some((id, user_id, expires_at, used_at)) = row else {
        return Ok(Err(LinkFailed::Unknown));
    };
    if used_at.is_some() {
        return Ok(Err(LinkFailed::Used));
    }
    let t = now();
    if expires_at <= t {
        return Ok(Err(LinkFailed::Expired));
    }
    // The used_at condition makes two simultaneous uses race for one row: only one wins.
    let won = diesel::update(
        sign_in_tokens::table
            .find(id)
            .filter(sign_in_tokens::used_at.is_null()),
    )
    .set(sign_in_tokens::used_at.eq(Some(t)))
    .execute(conn)?;
    Ok(if won == 1 {
        Ok(user_id)
    } else {
        Err(LinkFailed::Used)
    })
}

fn locked_until(conn: &mut DbConnection, user_id: i64) -> AppResult<Option<NaiveDateTime>> {
    Ok(sign_in_tokens::table
        .filter(sign_in_tokens::user_id.eq(user_id))
        .filter(sign_in_tokens::kind.eq("code"))
        .filter(sign_in_tokens::locked_until.gt(now()))
        .select(sign_in_tokens::locked_until)
        .order(sign_in_tokens::locked_until.desc())
        .first::<Option<NaiveDateTime>>(conn)
        .optional()?
        .flatten())
}

/// Makes a code for `user_id`; returns (attempt id, the code). Refused while locked, or when
/// too many were asked for recently.
pub fn create_code(
    conn: &mut DbConnection,
    key: &str,
    user_id: i64,
) -> AppResult<Result<(i64, String), CodeRefused>> {
    if let Some(until) = locked_until(conn, user_id)? {
        return Ok(Err(CodeRefused::Locked { until }));
    }
    let recent: i64 = sign_in_tokens::table
        .filter(sign_in_tokens::user_id.eq(user_id))
        .filter(sign_in_tokens::kind.eq("code"))
        .filter(sign_in_tokens::created_at.gt(now() - Duration::minutes(CODE_MINUTES)))
        .count()
        .get_result(conn)?;
    if recent >= MAX_CODES_PER_WINDOW {
        return Ok(Err(CodeRefused::TooMany));
    }
    let code = random_digits(6);
    let id = insert(conn, user_id, "code", &hmac_hex(key, &code), CODE_MINUTES)?;
    Ok(Ok((id, code)))
}

/// Checks a typed code against attempt `id`; on success returns the user and uses the code up.
pub fn verify_code(
    conn: &mut DbConnection,
    key: &str,
    id: i64,
    typed: &str,
) -> AppResult<Result<i64, VerifyFailed>> {
    let row: Option<(i64, String, NaiveDateTime, Option<NaiveDateTime>, i64)> =
        sign_in_tokens::table
            .filter(sign_in_tokens::id.eq(id))
            .filter(sign_in_tokens::kind.eq("code"))
            .select((
                sign_in_tokens::user_id,
                sign_in_tokens::secret_hash,
                sign_in_tokens::expires_at,
                sign_in_tokens::used_at,
                sign_in_tokens::failed_attempts,
            ))
            .first(conn)
            .optional()?;
    let Some((user_id, hash, expires_at, used_at, failed)) = row else {
        return Ok(Err(VerifyFailed::Expired));
    };
    if let Some(until) = locked_until(conn, user_id)? {
        return Ok(Err(VerifyFailed::Locked { until }));
    }
    if used_at.is_some() {
        return Ok(Err(VerifyFailed::Used));
    }
    let t = now();
    if expires_at <= t {
        return Ok(Err(VerifyFailed::Expired));
    }
    let typed: String = typed.chars().filter(|c| c.is_ascii_digit()).collect();
    if constant_time_eq(&hmac_hex(key, &typed), &hash) {
        let won = diesel::update(
            sign_in_tokens::table
                .find(id)
                .filter(sign_in_tokens::used_at.is_null()),
        )
        .set(sign_in_tokens::used_at.eq(Some(t)))
        .execute(conn)?;
        return Ok(if won == 1 {
            Ok(user_id)
        } else {
            Err(VerifyFailed::Used)
        });
    }
    let failed = failed + 1;
    let lock = (failed >= MAX_WRONG_CODES).then(|| t + Duration::minutes(LOCK_MINUTES));
    diesel::update(sign_in_tokens::table.find(id))
        .set((
            sign_in_tokens::failed_attempts.eq(failed),
            sign_in_tokens::locked_until.eq(lock),
        ))
        .execute(conn)?;
    Ok(Err(match lock {
        Some(until) => VerifyFailed::Locked { until },
        None => VerifyFailed::Wrong {
            attempts_left: MAX_WRONG_CODES - failed,
        },
    }))
}
