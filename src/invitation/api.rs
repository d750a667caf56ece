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
    let (url, days) = (
        state.config.public_url.clone(),
        state.config.invitation_days,
    );
    let issued = state
        .db
        .tx(move |conn| {
            let scope = crate::patient::authorize(conn, &user, patient_id, Role::Member)?;
            super::issue(conn, &user, &scope, patient_id, send_email, &url, days)
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
