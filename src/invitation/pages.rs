//! Invitations in the console (issue, e-mail, show once with a QR code) and the page a link
//! leads to.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::repo;
use crate::auth::pages::render_status;
use crate::auth::{session, CsrfForm};
use crate::console::{Console, Shell, Visitor};
use crate::error::AppError;
use crate::organization::{self, Role};
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/patients/{id}/invitations", web::post().to(create))
        .route("/invite/{token}", web::get().to(landing));
}

/// Session key for a link just made: shown once on the patient's page.
pub const NEW_LINK: &str = "new_invitation";

#[derive(Deserialize)]
struct InviteForm {
    #[serde(default)]
    organization_id: String,
    send_email: Option<String>,
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
        move |conn, user, scope| super::issue(conn, user, scope, id, send_email, &url, days),
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

#[derive(Template, WebTemplate)]
#[template(path = "invitation/landing.html")]
struct Landing {
    shell: Shell,
    heading: String,
    message: String,
    valid: bool,
}

async fn landing(
    v: Visitor,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let token = token.into_inner();
    let found = state
        .db
        .run(move |conn| {
            let Some(inv) = repo::find_by_token(conn, &token)? else {
                return Ok(None);
            };
            let org = organization::repo::find(conn, inv.organization_id)?
                .map(|o| o.name)
                .unwrap_or_default();
            Ok(Some((inv, org)))
        })
        .await?;
    let now = crate::util::now();
    let (status, heading, message, valid) = match found {
        None => (StatusCode::NOT_FOUND, "This link is not valid".to_string(), "Check that you opened the whole link from your invitation. If it still does not work, ask the organization that invited you for a new one.".to_string(), false),
        Some((inv, org)) => match super::status(&inv, now) {
            "expired" => (StatusCode::GONE, "This link has expired".into(), format!("This link expired on {}; ask {org} for a new one.", inv.expires_at.format("%Y-%m-%d")), false),
            "cancelled" => (StatusCode::GONE, "This link was replaced".into(), format!("{org} sent you a newer link; use the most recent invitation you received."), false),
            "redeemed" => (StatusCode::CONFLICT, "This link was already used".into(), format!("Each link works once. If you need to change your answers, ask {org} for a new link."), false),
            _ => (StatusCode::OK, format!("An invitation from {org}"), format!("{org} invites you to take part in its research studies through Cohort. This link is personal and works until {}. Answering on this page is not open yet: keep the link, and {org} will tell you when it is.", inv.expires_at.format("%Y-%m-%d")), true),
        },
    };
    Ok(render_status(
        status,
        Landing {
            shell: v.shell(heading.clone()),
            heading,
            message,
            valid,
        },
    ))
}
