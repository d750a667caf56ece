//! The practitioner's side of the patient experience in the console: a study's sign-up
//! links and QR code, asking a patient for fresh data, and (for superusers) the patient
//! apps registered as clients.

use actix_web::{web, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use diesel::prelude::*;
use serde::Deserialize;

use crate::auth::{session, CsrfForm, Superuser};
use crate::console::{see_other, Console, FormErrors, Shell};
use crate::db::schema::clients;
use crate::error::AppError;
use crate::organization::Role;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/studies/{id}/signup.svg", web::get().to(signup_qr))
        .route("/studies/{id}/signup-links", web::post().to(personal_link))
        .route(
            "/patients/{id}/update-requests",
            web::post().to(update_request),
        )
        .route("/apps", web::get().to(apps))
        .route("/apps", web::post().to(add_app))
        .route("/apps/{id}/delete", web::post().to(delete_app));
}

/// Session key: the personal sign-up link just made, shown once on the study page.
pub const NEW_SIGNUP_LINK: &str = "new_signup_link";

async fn signup_qr(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let user = c.user.clone();
    let study = state
        .db
        .run(move |conn| Ok(crate::study::authorize(conn, &user, id, Role::Viewer)?.0))
        .await?;
    let link = super::signup::link(&state.config.public_url, state.secret(), study.id, None);
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header((
            "Content-Disposition",
            format!("inline; filename=\"study-{}-signup.svg\"", study.id),
        ))
        .body(crate::invitation::qr_svg(&link)?))
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    external_id: String,
}

async fn personal_link(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(f): CsrfForm<LinkForm>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let back = format!("/studies/{id}#signup");
    let (user, st, reference) = (c.user.clone(), state.clone(), f.external_id.clone());
    let made = state
        .db
        .tx(move |conn| super::api::make_link(conn, &user, &st, id, &reference))
        .await;
    match made {
        Ok(url) => {
            session::put(
                &c.session,
                NEW_SIGNUP_LINK,
                &(id, f.external_id.trim().to_string(), url),
            );
            Ok(c.done(
                format!(
                    "Made a personal sign-up link for {}. Copy it below.",
                    f.external_id.trim()
                ),
                &back,
            ))
        }
        Err(e @ (AppError::Invalid(_) | AppError::Conflict(_))) => {
            c.flash("error", e.flash_text());
            Ok(see_other(&back))
        }
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
struct UpdateForm {
    #[serde(default)]
    organization_id: String,
    #[serde(default)]
    study_id: String,
}

async fn update_request(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(f): CsrfForm<UpdateForm>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let org = f.organization_id.trim().to_string();
    let page = format!("/patients/{id}?organization_id={org}");
    let Ok(study_id) = f.study_id.trim().parse::<i64>() else {
        c.flash("error", "Choose the study to ask for fresh data.");
        return Ok(see_other(&format!("{page}#studies")));
    };
    let user = c.user.clone();
    let asked = state
        .db
        .tx(move |conn| {
            let out = super::api::request_update(conn, &user, study_id, id)?;
            let study = crate::study::repo::find(conn, study_id)?
                .map(|s| s.name)
                .unwrap_or_default();
            let p = crate::patient::repo::find(conn, id)?
                .map(|p| format!("{} {}", p.name_given, p.name_family))
                .unwrap_or_default();
            Ok((out, study, p))
        })
        .await;
    match asked {
        Ok(((_, outcome), study, name)) if outcome == super::api::NO_ACTION => Ok(c.done(
            format!("Asked {name}'s app for fresh data for {study}. The app sees the request when it next connects; nothing more to do."),
            &format!("{page}#studies"),
        )),
        Ok((_, study, name)) => {
            c.flash(
                "info",
                format!("{name} has no connected app that shares data with {study}, so they must act. Issue a new invitation link below so they can answer and connect an app."),
            );
            Ok(see_other(&format!("{page}#invitations")))
        }
        Err(e @ (AppError::BadRequest(_) | AppError::Conflict(_))) => {
            c.flash("error", e.flash_text());
            Ok(see_other(&format!("{page}#studies")))
        }
        Err(e) => Err(e),
    }
}

// ---- Registered apps (superusers) -----------------------------------------------------------

#[derive(Deserialize, Default, Clone)]
pub struct AppForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    invitation_url_template: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "apps/list.html")]
struct AppsPage {
    shell: Shell,
    apps: Vec<(super::oauth::Client, String)>,
    form: AppForm,
    errors: FormErrors,
    modal: bool,
}

/// An address an app may be reached at: https, plain http only on this machine, or the
/// app's own scheme (never one that runs script or reads files).
fn acceptable_address(s: &str) -> bool {
    let Ok(u) = url::Url::parse(s) else {
        return false;
    };
    match u.scheme() {
        "https" => u.host_str().is_some(),
        "http" => matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")),
        "javascript" | "data" | "vbscript" | "file" | "blob" | "about" | "ftp" | "ws" | "wss" => {
            false
        }
        _ => true,
    }
}

/// Checks a new app; the messages say what to fix.
fn validate_app(f: &AppForm) -> FormErrors {
    let mut e = FormErrors::default();
    let name = f.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        e.add(
            "name",
            "Give the app's name as patients know it, up to 100 characters.",
        );
    }
    let id = f.client_id.trim();
    if id.is_empty()
        || id.len() > 100
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        e.add(
            "client_id",
            "Use letters, digits, - _ or . (up to 100), such as commonhealth-android.",
        );
    }
    if !acceptable_address(f.redirect_uri.trim()) {
        e.add(
            "redirect_uri",
            "Give the address the app receives its code at: https://…, or the app's own scheme such as org.example.app://callback.",
        );
    }
    let t = f.invitation_url_template.trim();
    if !acceptable_address(t) || !t.contains("CODE") {
        e.add(
            "invitation_url_template",
            "Give the link patients open, with CODE where the invitation code goes, such as https://app.example.org/invite/CODE.",
        );
    }
    e
}

async fn apps_page(
    c: &Console,
    state: &AppState,
    form: AppForm,
    errors: FormErrors,
    modal: bool,
) -> Result<AppsPage, AppError> {
    let url = state.config.public_url.clone();
    let apps = state
        .db
        .run(super::oauth::clients)
        .await?
        .into_iter()
        .map(|a| {
            let example = a.link(&url, "CODE");
            (a, example)
        })
        .collect();
    Ok(AppsPage {
        shell: c.shell("Apps", "apps"),
        apps,
        form,
        errors,
        modal,
    })
}

#[derive(Deserialize)]
struct AppsQuery {
    #[serde(default)]
    modal: String,
}

async fn apps(
    Superuser(_): Superuser,
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<AppsQuery>,
) -> Result<AppsPage, AppError> {
    apps_page(
        &c,
        &state,
        AppForm::default(),
        FormErrors::default(),
        q.modal == "create",
    )
    .await
}

async fn add_app(
    Superuser(user): Superuser,
    c: Console,
    state: web::Data<AppState>,
    CsrfForm(f): CsrfForm<AppForm>,
) -> Result<HttpResponse, AppError> {
    let errors = validate_app(&f);
    if !errors.is_empty() {
        let page = apps_page(&c, &state, f, errors, true).await?;
        return Ok(crate::auth::pages::render_status(
            actix_web::http::StatusCode::BAD_REQUEST,
            page,
        ));
    }
    let g = f.clone();
    let added = state
        .db
        .tx(move |conn| {
            let taken: i64 = clients::table
                .filter(clients::client_id.eq(g.client_id.trim()))
                .count()
                .get_result(conn)?;
            if taken > 0 {
                return Ok(None);
            }
            let id: i64 = diesel::insert_into(clients::table)
                .values((
                    clients::name.eq(g.name.trim()),
                    clients::client_id.eq(g.client_id.trim()),
                    clients::redirect_uri.eq(g.redirect_uri.trim()),
                    clients::invitation_url_template.eq(g.invitation_url_template.trim()),
                    clients::created_at.eq(crate::util::now()),
                ))
                .returning(clients::id)
                .get_result(conn)?;
            crate::audit::Audit::by(&user, "client.create")
                .object("client", id)
                .detail(serde_json::json!({"clientId": g.client_id.trim()}))
                .record(conn)?;
            Ok(Some(id))
        })
        .await?;
    if added.is_none() {
        let mut errors = FormErrors::default();
        errors.add(
            "client_id",
            format!(
                "{} is already registered; choose another client_id.",
                f.client_id.trim()
            ),
        );
        let page = apps_page(&c, &state, f, errors, true).await?;
        return Ok(crate::auth::pages::render_status(
            actix_web::http::StatusCode::CONFLICT,
            page,
        ));
    }
    Ok(c.done(format!("Registered {}.", f.name.trim()), "/apps"))
}

async fn delete_app(
    Superuser(user): Superuser,
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(_): CsrfForm<crate::auth::csrf::NoFields>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let removed = state
        .db
        .tx(move |conn| {
            let Some(app) = super::oauth::find_client(conn, id)? else {
                return Err(AppError::not_found("App"));
            };
            if app.is_default() {
                return Err(AppError::Conflict(
                    "Cohort's own page is the default app and stays.".into(),
                ));
            }
            // Its patients' tokens stop at once, not when they would expire.
            let tokens: Vec<Option<i64>> = crate::db::schema::oauth_grants::table
                .filter(crate::db::schema::oauth_grants::client_id.eq(id))
                .select(crate::db::schema::oauth_grants::api_token_id)
                .load(conn)?;
            let tokens: Vec<i64> = tokens.into_iter().flatten().collect();
            diesel::update(
                crate::db::schema::api_tokens::table
                    .filter(crate::db::schema::api_tokens::id.eq_any(tokens))
                    .filter(crate::db::schema::api_tokens::revoked_at.is_null()),
            )
            .set(crate::db::schema::api_tokens::revoked_at.eq(Some(crate::util::now())))
            .execute(conn)?;
            diesel::delete(clients::table.find(id)).execute(conn)?;
            crate::audit::Audit::by(&user, "client.delete")
                .object("client", id)
                .detail(serde_json::json!({"clientId": app.client_id}))
                .record(conn)?;
            Ok(app.name)
        })
        .await;
    match removed {
        Ok(name) => Ok(c.done(
            format!("Removed {name}. Its connected apps stop working; links already sent open Cohort's page instead."),
            "/apps",
        )),
        Err(AppError::Conflict(m)) => {
            c.flash("error", m);
            Ok(see_other("/apps"))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::acceptable_address;

    #[test]
    fn app_addresses_are_https_local_http_or_an_app_scheme() {
        for ok in [
            "https://app.example.org/invite/CODE",
            "http://localhost:3000/CODE",
            "http://127.0.0.1/CODE",
            "org.example.app://invite/CODE",
        ] {
            assert!(acceptable_address(ok), "{ok}");
        }
        for bad in [
            "JavaScript://%0Aalert(1)//CODE",
            "javascript:alert(1)",
            "DATA:text/html,CODE",
            "http://localhost.evil.com/CODE",
            "http://example.org/CODE",
            "file:///etc/CODE",
            "/relative/CODE",
            "",
        ] {
            assert!(!acceptable_address(bad), "{bad}");
        }
    }
}
