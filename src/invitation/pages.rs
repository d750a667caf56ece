//! Invitations in the console (issue, e-mail, show once with a QR code) and the page a link
//! leads to.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::auth::{session, CsrfForm};
use crate::console::Console;
use crate::error::AppError;
use crate::organization::{self, Role};
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/patients/{id}/invitations", web::post().to(create));
}

/// Session key for a link just made: shown once on the patient's page.
pub const NEW_LINK: &str = "new_invitation";

#[derive(Deserialize)]
struct InviteForm {
    #[serde(default)]
    organization_id: String,
    send_email: Option<String>,
    /// The registered app the link leads to; Cohort's page when absent.
    #[serde(default)]
    client_id: String,
}

/// Sends the invitation e-mail; the error is said in words a practitioner can act on.
pub async fn send(state: &AppState, issued: &super::Issued) -> Result<(), String> {
    super::deliver(&state.mail, issued).await
}

/// Sends each link in turn; "email (why)" for each that could not be delivered, in order.
/// Called after the links are committed, so a mail failure loses no link.
pub async fn send_all(state: &AppState, issued: &[super::Issued]) -> Vec<String> {
    let mut failed = Vec::new();
    for i in issued {
        if let Err(why) = send(state, i).await {
            failed.push(format!("{} ({why})", i.email));
        }
    }
    failed
}

async fn create(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(f): CsrfForm<InviteForm>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let org_id: i64 = f.organization_id.trim().parse().map_err(|_| {
        AppError::BadRequest("The form did not say which organization; reload the page.".into())
    })?;
    let send_email = f.send_email.is_some();
    let client_key = f.client_id.trim().to_string();
    let (user, url, days) = (
        c.user.clone(),
        state.config.public_url.clone(),
        state.config.invitation_days,
    );
    let issued = organization::act(
        &state.db,
        &user,
        org_id,
        Role::Member,
        move |conn, user, scope| {
            let client = match client_key.parse::<i64>() {
                Ok(cid) => Some(crate::portal::oauth::find_client(conn, cid)?.ok_or_else(
                    || {
                        AppError::BadRequest(
                            "That app is no longer registered; reload the page.".into(),
                        )
                    },
                )?),
                Err(_) => None,
            };
            super::issue(
                conn,
                user,
                scope,
                id,
                send_email,
                &url,
                days,
                client.as_ref(),
            )
        },
    )
    .await?;
    session::put(&c.session, NEW_LINK, &(id, issued.link.clone()));
    let back = format!("/patients/{id}?organization_id={org_id}#invitations");
    if send_email {
        return Ok(match send(&state, &issued).await {
            Ok(()) => c.done(
                format!(
                    "Issued a new invitation link and e-mailed it to {}.",
                    issued.email
                ),
                &back,
            ),
            Err(why) => {
                c.flash("error", format!("Issued a new invitation link, but the e-mail to {} failed: {why}. Copy or print the link below instead.", issued.email));
                crate::console::see_other(&back)
            }
        });
    }
    Ok(c.done(
        "Issued a new invitation link. Copy it or print its QR code below.",
        &back,
    ))
}
