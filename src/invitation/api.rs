//! POST /api/v1/invitation, as on the compatibility page.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use crate::api::field;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::organization::Role;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/invitation", web::post().to(create));
}

async fn create(
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let patient_id = field(&body, "patientId", "patient_id")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| AppError::invalid("patient_id", "Give the id of the patient to invite."))?;
    let send_email = field(&body, "sendEmail", "send_email")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // The app the link leads to, by number or by its OAuth client_id; Cohort's page if none.
    let client_key = field(&body, "clientId", "client_id").and_then(|v| match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    });
    let (url, days) = (
        state.config.public_url.clone(),
        state.config.invitation_days,
    );
    let issued = state
        .db
        .tx(move |conn| {
            let scope = crate::patient::authorize(conn, &user, patient_id, Role::Member)?;
            let client = match &client_key {
                Some(k) => Some(crate::portal::oauth::find_client_by(conn, k)?.ok_or_else(|| {
                    AppError::invalid(
                        "client_id",
                        format!("No app is registered as {k}; a superuser registers apps on the Apps page."),
                    )
                })?),
                None => None,
            };
            super::issue(conn, &user, &scope, patient_id, send_email, &url, days, client.as_ref())
        })
        .await?;
    let email_error = if send_email {
        super::pages::send(&state, &issued).await.err()
    } else {
        None
    };
    let inv = &issued.invitation;
    Ok(HttpResponse::Created().json(json!({
        "id": inv.id,
        "patientId": inv.patient_id,
        "organizationId": inv.organization_id,
        "clientId": inv.client_id,
        "status": inv.status,
        "lastUpdated": format!("{}Z", inv.last_updated.format("%Y-%m-%dT%H:%M:%S%.6f")),
        "expiresAt": format!("{}Z", inv.expires_at.format("%Y-%m-%dT%H:%M:%S%.6f")),
        "invitationLink": issued.link,
        "emailSent": send_email && email_error.is_none(),
        "emailError": email_error,
    })))
}
