//! Profile: edit your name, create (shown once), list and revoke API tokens.

use actix_web::{web, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use crate::audit::Audit;
use crate::auth::csrf::NoFields;
use crate::auth::token::{self, ApiToken};
use crate::auth::{session, CsrfForm};
use crate::console::{Console, FormErrors, Shell};
use crate::error::AppError;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/profile", web::get().to(show))
        .route("/profile", web::post().to(update))
        .route("/profile/tokens", web::post().to(create_token))
        .route("/profile/tokens/{id}/revoke", web::post().to(revoke_token));
}

const NEW_TOKEN: &str = "new_token";

#[derive(Template, WebTemplate)]
#[template(path = "profile/show.html")]
struct ProfilePage {
    shell: Shell,
    email: String,
    first_name: String,
    last_name: String,
    is_superuser: bool,
    tokens: Vec<ApiToken>,
    new_token: Option<String>,
    errors: FormErrors,
    token_label: String,
    label_error: String,
}

async fn page(
    c: &Console,
    state: &web::Data<AppState>,
    names: Option<(String, String)>,
    errors: FormErrors,
    label: String,
    label_error: String,
) -> Result<ProfilePage, AppError> {
    let uid = c.user.id();
    let tokens = state.db.run(move |conn| token::list(conn, uid)).await?;
    let (first_name, last_name) = names.unwrap_or_else(|| {
        (
            c.user.user.first_name.clone(),
            c.user.user.last_name.clone(),
        )
    });
    Ok(ProfilePage {
        shell: c.shell("Profile", "profile"),
        email: c.user.user.email.clone(),
        first_name,
        last_name,
        is_superuser: c.user.is_superuser(),
        tokens,
        new_token: session::take(&c.session, NEW_TOKEN),
        errors,
        token_label: label,
        label_error,
    })
}

async fn show(c: Console, state: web::Data<AppState>) -> Result<ProfilePage, AppError> {
    page(
        &c,
        &state,
        None,
        FormErrors::default(),
        String::new(),
        String::new(),
    )
    .await
}

#[derive(Deserialize)]
struct NameForm {
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
}

async fn update(
    c: Console,
    state: web::Data<AppState>,
    CsrfForm(form): CsrfForm<NameForm>,
) -> Result<HttpResponse, AppError> {
    let mut errors = crate::error::FieldErrors::new();
    if form.first_name.trim().chars().count() > 150 {
        errors.insert(
            "first_name".into(),
            vec!["Use at most 150 characters.".into()],
        );
    }
    if form.last_name.trim().chars().count() > 150 {
        errors.insert(
            "last_name".into(),
            vec!["Use at most 150 characters.".into()],
        );
    }
    if !errors.is_empty() {
        let errors = FormErrors::from_error(AppError::Invalid(errors))?;
        let p = page(
            &c,
            &state,
            Some((form.first_name, form.last_name)),
            errors,
            String::new(),
            String::new(),
        )
        .await?;
        return Ok(crate::auth::pages::render_status(
            actix_web::http::StatusCode::BAD_REQUEST,
            p,
        ));
    }
    let user = c.user.clone();
    state
        .db
        .tx(move |conn| {
            crate::practitioner::repo::update_name(
                conn,
                user.id(),
                &form.first_name,
                &form.last_name,
            )?;
            Audit::by(&user, "profile.update")
                .object("user", user.id())
                .record(conn)
        })
        .await?;
    Ok(c.done("Saved your name.", "/profile"))
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    label: String,
}

async fn create_token(
    c: Console,
    state: web::Data<AppState>,
    CsrfForm(form): CsrfForm<TokenForm>,
) -> Result<HttpResponse, AppError> {
    let label = form.label.trim().to_string();
    let problem = if label.is_empty() {
        "Name the token after where it will be used, such as \"analysis notebook\"."
    } else if label.chars().count() > 100 {
        "Use at most 100 characters."
    } else {
        ""
    };
    if !problem.is_empty() {
        let p = page(
            &c,
            &state,
            None,
            FormErrors::default(),
            form.label,
            problem.into(),
        )
        .await?;
        return Ok(crate::auth::pages::render_status(
            actix_web::http::StatusCode::BAD_REQUEST,
            p,
        ));
    }
    let user = c.user.clone();
    let secret = state
        .db
        .tx(move |conn| {
            let (id, secret) = token::create(conn, user.id(), &label, "personal")?;
            Audit::by(&user, "token.create")
                .object("api_token", id)
                .detail(serde_json::json!({"label": label}))
                .record(conn)?;
            Ok(secret)
        })
        .await?;
    // Kept in the encrypted session for exactly one page view, then gone.
    session::put(&c.session, NEW_TOKEN, &secret);
    Ok(c.done(
        "Created a token. Copy it now: it will not be shown again.",
        "/profile#tokens",
    ))
}

async fn revoke_token(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    _f: CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    let user = c.user.clone();
    let id = id.into_inner();
    let revoked = state
        .db
        .tx(move |conn| {
            let ok = token::revoke(conn, user.id(), id)?;
            if ok {
                Audit::by(&user, "token.revoke")
                    .object("api_token", id)
                    .record(conn)?;
            }
            Ok(ok)
        })
        .await?;
    if revoked {
        Ok(c.done(
            "Revoked the token. Programs using it can no longer sign in.",
            "/profile#tokens",
        ))
    } else {
        Err(AppError::NotFound(
            "That token does not exist or is already revoked.".into(),
        ))
    }
}
