//! `CsrfForm<T>`: a url-encoded form that is only accepted with the session's CSRF token.

use actix_session::SessionExt;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::AppError;
use crate::util::constant_time_eq;

pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for CsrfForm<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Bytes::from_request(req, payload);
        let session = req.get_session();
        Box::pin(async move {
            let body = body
                .await
                .map_err(|e| AppError::BadRequest(format!("The form could not be read: {e}")))?;
            let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
                .map_err(|_| AppError::BadRequest("The form could not be read.".into()))?;
            let sent = pairs
                .iter()
                .find(|(k, _)| k == "csrf_token")
                .map(|(_, v)| v);
            let expected = super::session::expected_csrf(&session);
            match (sent, expected) {
                (Some(s), Some(e)) if constant_time_eq(s, &e) => {}
                _ => return Err(AppError::CsrfRejected),
            }
            let value = serde_urlencoded::from_bytes(&body).map_err(|e| {
                AppError::BadRequest(format!(
                    "The form could not be read ({e}). Reload the page and try again."
                ))
            })?;
            Ok(CsrfForm(value))
        })
    }
}

/// For forms whose only field is the token (sign-out, delete, revoke).
#[derive(serde::Deserialize)]
pub struct NoFields {}
