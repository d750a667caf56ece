//! Typed configuration, read once from the environment (and `.env`) at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use url::Url;

/// A setting that could not be used, named so the operator knows what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn bad(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

#[derive(Clone, Debug)]
pub struct OidcSettings {
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub backend: Backend,
    /// The externally visible base URL, without a trailing slash.
    pub public_url: String,
    /// `None` until start-up resolves it (from the environment, the data dir or the database).
    pub secret_key: Option<String>,
    pub oidc: Option<OidcSettings>,
    pub smtp_url: Option<String>,
    pub mail_from: String,
    pub admin_email: String,
    pub static_dir: PathBuf,
    pub session_idle_minutes: i64,
    pub session_absolute_hours: i64,
    /// How long an invitation link works.
    pub invitation_days: i64,
    /// Largest patient list accepted for import, in rows and in bytes.
    pub import_max_rows: i64,
    pub import_max_bytes: i64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs: only say whether they are set.
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .field("backend", &self.backend)
            .field("public_url", &self.public_url)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<set>"))
            .field("oidc", &self.oidc.as_ref().map(|o| &o.issuer_url))
            .field("smtp", &self.smtp_url.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Config {
    /// Reads the process environment, after loading `.env` if one exists.
    pub fn from_env() -> Result<Config, ConfigError> {
        let _ = dotenvy::dotenv();
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds a config from any key lookup; tests pass a map.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let addr_text = get("COHORT_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into());
        let addr: SocketAddr = addr_text.parse().map_err(|_| {
            bad(
                "COHORT_ADDR",
                format!("expected host:port such as 127.0.0.1:8080, got {addr_text:?}"),
            )
        })?;

        let data_dir = PathBuf::from(get("COHORT_DATA_DIR").unwrap_or_else(|| "./data".into()));

        let database_url = match get("DATABASE_URL") {
            Some(u) => u,
            None => format!("sqlite://{}", data_dir.join("cohort.sqlite3").display()),
        };
        let backend = if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Backend::Postgres
        } else if database_url.starts_with("sqlite://")
            || database_url.starts_with("file:")
            || !database_url.contains("://")
        {
            Backend::Sqlite
        } else {
            return Err(bad(
                "DATABASE_URL",
                "expected postgres://user@host/db, sqlite://path/to/file.sqlite3 or a file path",
            ));
        };

        let public_url = match get("COHORT_PUBLIC_URL") {
            Some(u) => {
                let parsed = Url::parse(&u).map_err(|e| {
                    bad(
                        "COHORT_PUBLIC_URL",
                        format!("expected an absolute http(s) URL such as https://cohort.example.org ({e})"),
                    )
                })?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(bad(
                        "COHORT_PUBLIC_URL",
                        "expected an absolute http(s) URL such as https://cohort.example.org",
                    ));
                }
                u.trim_end_matches('/').to_string()
            }
            None => format!("http://{addr}"),
        };

        let secret_key = get("COHORT_SECRET_KEY");
        if let Some(k) = &secret_key {
            if k.len() < 32 {
                return Err(bad(
                    "COHORT_SECRET_KEY",
                    "must be at least 32 characters; generate one with `openssl rand -hex 32`",
                ));
            }
        }

        let oidc = match (
            get("OIDC_ISSUER_URL"),
            get("OIDC_CLIENT_ID"),
            get("OIDC_CLIENT_SECRET"),
        ) {
            (None, _, _) => None,
            (Some(issuer), Some(id), Some(secret)) => {
                Url::parse(&issuer).map_err(|e| {
                    bad(
                        "OIDC_ISSUER_URL",
                        format!("expected the provider's issuer URL, such as https://login.example.org ({e})"),
                    )
                })?;
                Some(OidcSettings {
                    issuer_url: issuer,
                    client_id: id,
                    client_secret: secret,
                })
            }
            (Some(_), None, _) => {
                return Err(bad(
                    "OIDC_CLIENT_ID",
                    "must be set when OIDC_ISSUER_URL is set",
                ))
            }
            (Some(_), _, None) => {
                return Err(bad(
                    "OIDC_CLIENT_SECRET",
                    "must be set when OIDC_ISSUER_URL is set",
                ))
            }
        };

        let smtp_url = get("SMTP_URL");
        if let Some(u) = &smtp_url {
            let ok = Url::parse(u)
                .map(|p| matches!(p.scheme(), "smtp" | "smtps") && p.host().is_some())
                .unwrap_or(false);
            if !ok {
                return Err(bad(
                    "SMTP_URL",
                    "expected smtp://host:port or smtps://user:password@host:port",
                ));
            }
        }
        let mail_from =
            get("COHORT_MAIL_FROM").unwrap_or_else(|| "Cohort <cohort@localhost>".into());
        if mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(bad(
                "COHORT_MAIL_FROM",
                "expected an address such as `Cohort <cohort@example.org>`",
            ));
        }

        let admin_email = get("COHORT_ADMIN_EMAIL")
            .unwrap_or_else(|| "admin@localhost".into())
            .to_lowercase();
        if !crate::util::looks_like_email(&admin_email) {
            return Err(bad(
                "COHORT_ADMIN_EMAIL",
                "expected an email address such as admin@example.org",
            ));
        }

        let static_dir = get("COHORT_STATIC_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static")));

        let minutes = |var: &'static str, default: i64| -> Result<i64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    bad(var, format!("expected a positive whole number, got {v:?}"))
                }),
            }
        };

        Ok(Config {
            addr,
            data_dir,
            database_url,
            backend,
            public_url,
            secret_key,
            oidc,
            smtp_url,
            mail_from,
            admin_email,
            static_dir,
            session_idle_minutes: minutes("COHORT_SESSION_IDLE_MINUTES", 120)?,
            session_absolute_hours: minutes("COHORT_SESSION_MAX_HOURS", 12)?,
            invitation_days: minutes("COHORT_INVITATION_DAYS", 7)?,
            import_max_rows: minutes("COHORT_IMPORT_MAX_ROWS", 200_000)?,
            import_max_bytes: minutes("COHORT_IMPORT_MAX_BYTES", 64 * 1024 * 1024)?,
        })
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// An absolute URL for a path of ours.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.public_url, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn no_settings_at_all_gives_a_local_sqlite_setup() {
        let c = with(&[]).expect("defaults are valid");
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.backend, Backend::Sqlite);
        assert!(c.database_url.ends_with("data/cohort.sqlite3"));
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert!(c.oidc.is_none());
    }

    #[test]
    fn a_wrong_value_names_the_variable_to_fix() {
        let e = with(&[("COHORT_ADDR", "localhost")]).unwrap_err();
        assert_eq!(e.var, "COHORT_ADDR");
        let e = with(&[("DATABASE_URL", "mysql://x/y")]).unwrap_err();
        assert_eq!(e.var, "DATABASE_URL");
        let e = with(&[("COHORT_PUBLIC_URL", "ftp://x")]).unwrap_err();
        assert_eq!(e.var, "COHORT_PUBLIC_URL");
        let e = with(&[("COHORT_SECRET_KEY", "short")]).unwrap_err();
        assert_eq!(e.var, "COHORT_SECRET_KEY");
        let e = with(&[("OIDC_ISSUER_URL", "http://127.0.0.1:9")]).unwrap_err();
        assert_eq!(e.var, "OIDC_CLIENT_ID");
        let e = with(&[("SMTP_URL", "mail.example.org")]).unwrap_err();
        assert_eq!(e.var, "SMTP_URL");
        let e = with(&[("COHORT_MAIL_FROM", "not an address")]).unwrap_err();
        assert_eq!(e.var, "COHORT_MAIL_FROM");
        assert!(e.to_string().starts_with("COHORT_MAIL_FROM: "));
    }

    #[test]
    fn postgres_urls_select_postgres_and_https_makes_cookies_secure() {
        let c = with(&[
            ("DATABASE_URL", "postgres://u@127.0.0.1/test"),
            ("COHORT_PUBLIC_URL", "https://cohort.example.org/"),
        ])
        .expect("valid");
        assert_eq!(c.backend, Backend::Postgres);
        assert!(c.secure_cookies());
        assert_eq!(c.url("/x"), "https://cohort.example.org/x");
    }
}
