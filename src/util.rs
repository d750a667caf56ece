//! Small shared helpers: time, random secrets, hashing and input normalisation.

use base64::Engine;
use chrono::{NaiveDateTime, Timelike, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Now, in UTC, truncated to microseconds so it survives a round trip through either database.
pub fn now() -> NaiveDateTime {
    let n = Utc::now().naive_utc();
    n.with_nanosecond(n.nanosecond() / 1000 * 1000).unwrap_or(n)
}

/// A URL-safe random string carrying `bytes` bytes of entropy.
/// A stored UTC time as the API writes it: RFC 3339, whole seconds, `Z`.
pub fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A random decimal code of `digits` digits, for codes people type.
pub fn random_digits(digits: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..digits)
        .map(|_| char::from(b'0' + (rng.next_u32() % 10) as u8))
        .collect()
}

/// Hex SHA-256: how high-entropy secrets (API tokens, links) are stored.
pub fn sha256_hex(input: &str) -> String {
    hex(&Sha256::digest(input.as_bytes()))
}

/// Hex HMAC-SHA-256 keyed with the server secret: for low-entropy secrets such as typed codes,
/// so a copy of the database alone does not reveal them.
pub fn hmac_hex(key: &str, input: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key size");
    mac.update(input.as_bytes());
    hex(&mac.finalize().into_bytes())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A plausibility check, not RFC 5322: one @, something before it, a dot-free-or-not domain
/// without spaces. Real proof of an address is a delivered message.
pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && s.len() <= 254
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

pub fn normalize_email(s: &str) -> String {
    s.trim().to_lowercase()
}

/// A path we may redirect to after sign-in: local only, never `//host` or a scheme.
pub fn safe_next(next: Option<&str>) -> String {
    local_path(next).unwrap_or_else(|| "/organizations".to_string())
}

/// A path on this site to send a browser back to; None for anything a browser could read as
/// another site (`//host`, `/\\host`, a scheme) or with control characters it would strip.
pub fn local_path(next: Option<&str>) -> Option<String> {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            Some(n.to_string())
        }
        _ => None,
    }
}

/// Text for a CSV cell a spreadsheet will open: a leading `=`, `+`, `-`, `@`, tab or CR
/// would make it a formula, so such text gets a leading apostrophe.
pub fn spreadsheet_safe(v: &str) -> std::borrow::Cow<'_, str> {
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{v}"))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/patients?x=1")), "/patients?x=1");
        assert_eq!(safe_next(Some("//evil.example")), "/organizations");
        assert_eq!(safe_next(Some("https://evil.example")), "/organizations");
        assert_eq!(safe_next(Some("/\\evil.example")), "/organizations");
        assert_eq!(safe_next(None), "/organizations");
    }

    #[test]
    fn emails_are_checked_for_shape() {
        assert!(looks_like_email("a@b.org"));
        assert!(looks_like_email("admin@localhost"));
        assert!(!looks_like_email("a b@c.org"));
        assert!(!looks_like_email("abc.org"));
        assert!(!looks_like_email("@c.org"));
        assert!(!looks_like_email("a@b@c"));
    }

    #[test]
    fn secrets_compare_only_when_equal() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
        assert_ne!(hmac_hex("k1", "123456"), hmac_hex("k2", "123456"));
        assert_eq!(random_digits(6).len(), 6);
    }
}
