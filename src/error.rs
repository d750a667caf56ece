//! The one error type, and the policy for what users see: a message that says what to fix,
//! never a stack or SQL. 5xx causes are logged; 4xx are the user's to correct.

use std::collections::BTreeMap;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// Messages per field for a 400, as the compatibility dialect shapes them.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// A console page that needs a signed-in practitioner: send them to sign in first.
    #[error("sign-in required")]
    SignInRequired { next: String },
    #[error("{0}")]
    Conflict(String),
    /// Something that existed and is no longer usable, such as an expired link.
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid input")]
    Invalid(FieldErrors),
    #[error("The form expired or was sent from another page. Reload the page and try again.")]
    CsrfRejected,
    #[error("Something went wrong on our side. It has been logged; please try again.")]
    Internal(String),
}

impl AppError {
    pub fn internal(cause: impl std::fmt::Display) -> AppError {
        AppError::Internal(cause.to_string())
    }

    pub fn not_found(what: &str) -> AppError {
        AppError::NotFound(format!("{what} not found."))
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> AppError {
        let mut m = FieldErrors::new();
        m.insert(field.to_string(), vec![message.into()]);
        AppError::Invalid(m)
    }

    /// The sentence for a flash message after a form: field messages without their field
    /// names (the form that named them is gone).
    pub fn flash_text(&self) -> String {
        match self {
            AppError::Invalid(fields) => fields
                .values()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        }
    }

    /// The sentence shown to a person.
    pub fn user_message(&self) -> String {
        match self {
            AppError::Invalid(fields) => fields
                .iter()
                .flat_map(|(f, msgs)| msgs.iter().map(move |m| format!("{f}: {m}")))
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        }
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> AppError {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => AppError::NotFound("Not found.".into()),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                AppError::Conflict("That already exists.".into())
            }
            Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => AppError::Conflict(
                "Other records still depend on this one; remove them first.".into(),
            ),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Forbidden(_) | AppError::CsrfRejected => StatusCode::FORBIDDEN,
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::SignInRequired { .. } => StatusCode::SEE_OTHER,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Gone(_) => StatusCode::GONE,
            AppError::BadRequest(_) | AppError::Invalid(_) => StatusCode::BAD_REQUEST,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The API shape. Console routes replace the body with an HTML page (see `console::errors`).
    fn error_response(&self) -> HttpResponse {
        if let AppError::Internal(cause) = self {
            tracing::error!(%cause, "internal error");
        }
        let mut res = HttpResponse::build(self.status_code());
        match self {
            AppError::SignInRequired { next } => {
                let loc = format!(
                    "/auth/sign-in?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                res.insert_header((header::LOCATION, loc)).finish()
            }
            AppError::Unauthenticated(msg) => res
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .json(json!({ "detail": msg })),
            AppError::Invalid(fields) => res.json(fields),
            other => res.json(json!({ "detail": other.user_message() })),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;
