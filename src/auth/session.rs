//! What the console keeps in its (encrypted, signed) session cookie, and the rules on it:
//! renewed at sign-in, an idle limit and an absolute limit, flash messages, the CSRF token.

use actix_session::Session;
use serde::{Deserialize, Serialize};

use crate::config::Config;

const USER_ID: &str = "uid";
const SIGNED_IN_AT: &str = "auth_at";
const SEEN_AT: &str = "seen_at";
const CSRF: &str = "csrf";
const FLASH: &str = "flash";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Flash {
    pub kind: String,
    pub message: String,
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The signed-in user's id, if the session is still within its idle and absolute limits.
/// An expired session is cleared.
pub fn user_id(session: &Session, config: &Config) -> Option<i64> {
    let uid: i64 = session.get(USER_ID).ok().flatten()?;
    let signed_in_at: i64 = session.get(SIGNED_IN_AT).ok().flatten().unwrap_or(0);
    let seen_at: i64 = session.get(SEEN_AT).ok().flatten().unwrap_or(0);
    let now = unix_now();
    let idle_ok = now - seen_at <= config.session_idle_minutes * 60;
    let absolute_ok = now - signed_in_at <= config.session_absolute_hours * 3600;
    if !(idle_ok && absolute_ok) {
        session.purge();
        return None;
    }
    // Rewriting the cookie on every request would cost for nothing; a minute is fine-grained
    // enough for an idle limit counted in minutes.
    if now - seen_at > 60 {
        let _ = session.insert(SEEN_AT, now);
    }
    Some(uid)
}

/// Starts a signed-in session with a fresh identity, so a cookie planted before sign-in
/// (session fixation) is worth nothing after it.
pub fn begin(session: &Session, user_id: i64) {
    let keep_flash: Vec<Flash> = session.get(FLASH).ok().flatten().unwrap_or_default();
    // clear + renew (not purge, which would win over the inserts below and drop the cookie).
    session.clear();
    session.renew();
    let now = unix_now();
    let _ = session.insert(USER_ID, user_id);
    let _ = session.insert(SIGNED_IN_AT, now);
    let _ = session.insert(SEEN_AT, now);
    let _ = session.insert(CSRF, crate::util::random_token(24));
    if !keep_flash.is_empty() {
        let _ = session.insert(FLASH, keep_flash);
    }
}

pub fn end(session: &Session) {
    session.purge();
}

/// The session's CSRF token, made on first use.
pub fn csrf_token(session: &Session) -> String {
    if let Ok(Some(t)) = session.get::<String>(CSRF) {
        return t;
    }
    let t = crate::util::random_token(24);
    let _ = session.insert(CSRF, &t);
    t
}

pub fn expected_csrf(session: &Session) -> Option<String> {
    session.get(CSRF).ok().flatten()
}

pub fn flash(session: &Session, kind: &str, message: impl Into<String>) {
    let mut list: Vec<Flash> = session.get(FLASH).ok().flatten().unwrap_or_default();
    list.push(Flash {
        kind: kind.to_string(),
        message: message.into(),
    });
    let _ = session.insert(FLASH, list);
}

pub fn take_flash(session: &Session) -> Vec<Flash> {
    let list: Vec<Flash> = session.get(FLASH).ok().flatten().unwrap_or_default();
    if !list.is_empty() {
        session.remove(FLASH);
    }
    list
}

/// Any other short-lived value the sign-in flows park between two requests.
pub fn put<T: Serialize>(session: &Session, key: &str, value: &T) {
    let _ = session.insert(key, value);
}

pub fn take<T: for<'de> Deserialize<'de>>(session: &Session, key: &str) -> Option<T> {
    let v = session.get(key).ok().flatten();
    session.remove(key);
    v
}

pub fn peek<T: for<'de> Deserialize<'de>>(session: &Session, key: &str) -> Option<T> {
    session.get(key).ok().flatten()
}
