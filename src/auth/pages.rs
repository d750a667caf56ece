//! Sign-in and sign-out pages: e-mailed codes, one-time links, OIDC, and the shared
//! finish that starts the session and writes the audit event.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::code::{self, CodeRefused, LinkFailed, VerifyFailed};
use super::csrf::NoFields;
use super::extract::client_ip;
use super::{session, CsrfForm};
use crate::audit::Audit;
use crate::console::{errors, see_other, Shell, Visitor};
use crate::error::AppError;
use crate::practitioner::repo as users;
use crate::startup::AppState;
use crate::util::{looks_like_email, normalize_email, safe_next};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/sign-in", web::get().to(sign_in_page))
        .route("/auth/code/request", web::post().to(request_code))
        .route("/auth/code", web::get().to(code_page))
        .route("/auth/code/verify", web::post().to(verify_code))
        .route("/auth/link/{secret}", web::get().to(link))
        .route("/auth/oidc/start", web::get().to(oidc_start))
        .route("/auth/oidc/callback", web::get().to(oidc_callback))
        .route("/auth/sign-out", web::post().to(sign_out));
}

const NEXT: &str = "next";
const CODE_ID: &str = "code_id";
const CODE_EMAIL: &str = "code_email";
const OIDC: &str = "oidc";

#[derive(Template, WebTemplate)]
#[template(path = "auth/sign_in.html")]
struct SignInPage {
    shell: Shell,
    oidc_enabled: bool,
    email: String,
    error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/code.html")]
struct CodePage {
    shell: Shell,
    email: String,
    error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "auth/not_registered.html")]
struct NotRegisteredPage {
    shell: Shell,
    email: String,
}

#[derive(Deserialize)]
struct SignInQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

async fn sign_in_page(
    v: Visitor,
    state: web::Data<AppState>,
    q: web::Query<SignInQuery>,
) -> HttpResponse {
    if session::user_id(&v.session, &state.config).is_some() {
        return see_other(&safe_next(q.next.as_deref()));
    }
    if let Some(next) = &q.next {
        session::put(&v.session, NEXT, &safe_next(Some(next)));
    }
    if q.signed_out.is_some() {
        session::flash(&v.session, "success", "You have signed out.");
    }
    render(SignInPage {
        shell: v.shell("Sign in"),
        oidc_enabled: state.oidc.is_some(),
        email: String::new(),
        error: String::new(),
    })
}

fn render<T: Template>(page: T) -> HttpResponse {
    render_status(StatusCode::OK, page)
}

pub fn render_status<T: Template>(status: StatusCode, page: T) -> HttpResponse {
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            HttpResponse::InternalServerError().finish()
        }
    }
}

#[derive(Deserialize)]
struct EmailForm {
    #[serde(default)]
    email: String,
}

fn not_registered(v: &Visitor, email: &str) -> HttpResponse {
    render_status(
        StatusCode::FORBIDDEN,
        NotRegisteredPage {
            shell: v.shell("Account not registered"),
            email: email.to_string(),
        },
    )
}

async fn request_code(
    req: HttpRequest,
    v: Visitor,
    state: web::Data<AppState>,
    CsrfForm(form): CsrfForm<EmailForm>,
) -> Result<HttpResponse, AppError> {
    if state.oidc.is_some() {
        return Err(AppError::NotFound(
            "Sign-in codes are off: this Cohort signs in through your organization's provider."
                .into(),
        ));
    }
    let email = normalize_email(&form.email);
    let again = |error: String| {
        render_status(
            StatusCode::BAD_REQUEST,
            SignInPage {
                shell: v.shell("Sign in"),
                oidc_enabled: false,
                email: form.email.clone(),
                error,
            },
        )
    };
    if !looks_like_email(&email) {
        return Ok(again(
            "Enter your e-mail address, such as name@example.org.".into(),
        ));
    }
    let ip = client_ip(&req);
    let key = state.secret().to_string();
    let e2 = email.clone();
    let outcome = state
        .db
        .tx(move |conn| {
            let acc = users::find_by_email(conn, &e2)?;
            let Some(acc) = acc.filter(|a| a.practitioner_id.is_some() && a.user.is_active) else {
                Audit::anonymous("sign_in.failed", Some(&e2), ip)
                    .detail(serde_json::json!({"method": "code", "reason": "not registered"}))
                    .record(conn)?;
                return Ok(None);
            };
            let made = code::create_code(conn, &key, acc.user.id)?;
            if let Err(refused) = &made {
                Audit::anonymous("sign_in.failed", Some(&e2), ip)
                    .user_id(acc.user.id, &e2)
                    .detail(serde_json::json!({"method": "code", "reason": format!("{refused:?}")}))
                    .record(conn)?;
            }
            Ok(Some(made))
        })
        .await?;
    let (id, secret) = match outcome {
        None => return Ok(not_registered(&v, &email)),
        Some(Err(CodeRefused::Locked { until })) => {
            return Ok(again(format!(
                "Too many wrong codes. Code sign-in for this account is locked until {} UTC.",
                until.format("%H:%M")
            )))
        }
        Some(Err(CodeRefused::TooMany)) => {
            return Ok(again(format!(
                "Several codes were sent in the last {} minutes. Use the newest one, or wait a few minutes.",
                code::CODE_MINUTES
            )))
        }
        Some(Ok(made)) => made,
    };
    let body = format!(
        "Your Cohort sign-in code is {secret}\n\nIt works once and expires in {} minutes.\n\
         If you did not try to sign in, you can ignore this message.\n",
        code::CODE_MINUTES
    );
    if let Err(e) = state
        .mail
        .send(&email, &format!("Cohort sign-in code: {secret}"), body)
        .await
    {
        tracing::warn!(error = %e, "sign-in code could not be sent");
        return Ok(again(format!(
            "We could not send the e-mail ({e}). Try again in a moment."
        )));
    }
    session::put(&v.session, CODE_ID, &id);
    session::put(&v.session, CODE_EMAIL, &email);
    Ok(see_other("/auth/code"))
}

async fn code_page(v: Visitor) -> HttpResponse {
    let Some(email) = session::peek::<String>(&v.session, CODE_EMAIL) else {
        return see_other("/auth/sign-in");
    };
    render(CodePage {
        shell: v.shell("Enter your code"),
        email,
        error: String::new(),
    })
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
}

async fn verify_code(
    req: HttpRequest,
    v: Visitor,
    state: web::Data<AppState>,
    CsrfForm(form): CsrfForm<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let (Some(id), Some(email)) = (
        session::peek::<i64>(&v.session, CODE_ID),
        session::peek::<String>(&v.session, CODE_EMAIL),
    ) else {
        session::flash(&v.session, "info", "Ask for a new code to sign in.");
        return Ok(see_other("/auth/sign-in"));
    };
    let key = state.secret().to_string();
    let ip = client_ip(&req);
    let (e2, ip2) = (email.clone(), ip.clone());
    let result = state
        .db
        .tx(move |conn| {
            let r = code::verify_code(conn, &key, id, &form.code)?;
            if let Err(why) = &r {
                Audit::anonymous("sign_in.failed", Some(&e2), ip2)
                    .detail(serde_json::json!({"method": "code", "reason": format!("{why:?}")}))
                    .record(conn)?;
            }
            Ok(r)
        })
        .await?;
    let error = match result {
        Ok(user_id) => {
            session::take::<i64>(&v.session, CODE_ID);
            session::take::<String>(&v.session, CODE_EMAIL);
            return finish(&state, &v, user_id, "code", ip).await;
        }
        Err(VerifyFailed::Wrong { attempts_left }) => format!(
            "That code is not right. {attempts_left} {} left before sign-in is locked for a while.",
            if attempts_left == 1 { "try" } else { "tries" }
        ),
        Err(VerifyFailed::Locked { until }) => format!(
            "Too many wrong codes. Code sign-in for this account is locked until {} UTC.",
            until.format("%H:%M")
        ),
        Err(VerifyFailed::Expired) => "This code has expired. Ask for a new one.".into(),
        Err(VerifyFailed::Used) => "This code was already used. Ask for a new one.".into(),
    };
    Ok(render_status(
        StatusCode::BAD_REQUEST,
        CodePage {
            shell: v.shell("Enter your code"),
            email,
            error,
        },
    ))
}

async fn link(
    req: HttpRequest,
    v: Visitor,
    state: web::Data<AppState>,
    secret: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let ip = client_ip(&req);
    let ip2 = ip.clone();
    let result = state
        .db
        .tx(move |conn| {
            let r = code::consume_link(conn, &secret)?;
            if let Err(why) = &r {
                Audit::anonymous("sign_in.failed", None, ip2)
                    .detail(serde_json::json!({"method": "link", "reason": format!("{why:?}")}))
                    .record(conn)?;
            }
            Ok(r)
        })
        .await?;
    match result {
        Ok(user_id) => finish(&state, &v, user_id, "link", ip).await,
        Err(why) => {
            let msg = match why {
                LinkFailed::Unknown => "This sign-in link is not valid. Check that you copied all of it.",
                LinkFailed::Expired => "This sign-in link has expired. Run `cohort create-admin --email <you>` for a new one, or sign in with your e-mail.",
                LinkFailed::Used => "This sign-in link was already used. Each link works once; sign in with your e-mail instead.",
            };
            Ok(errors::render(
                &req,
                StatusCode::GONE,
                Some(msg.to_string()),
            ))
        }
    }
}

async fn oidc_start(v: Visitor, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let Some(oidc) = &state.oidc else {
        return Ok(see_other("/auth/sign-in"));
    };
    let next = session::take::<String>(&v.session, NEXT).unwrap_or_else(|| safe_next(None));
    let (url, pending) = oidc
        .start(next)
        .await
        .map_err(|e| AppError::BadRequest(format!("{e} Try again in a moment.")))?;
    session::put(&v.session, OIDC, &pending);
    Ok(see_other(&url))
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn oidc_callback(
    req: HttpRequest,
    v: Visitor,
    state: web::Data<AppState>,
    q: web::Query<CallbackQuery>,
) -> Result<HttpResponse, AppError> {
    let Some(oidc) = &state.oidc else {
        return Ok(see_other("/auth/sign-in"));
    };
    let ip = client_ip(&req);
    // Taken, not read: the same provider answer can never be used twice.
    let pending = session::take::<super::oidc::Pending>(&v.session, OIDC);
    let fail = |reason: String, message: &str| {
        let db = state.db.clone();
        let ip = ip.clone();
        let message = message.to_string();
        async move {
            db.tx(move |conn| {
                Audit::anonymous("sign_in.failed", None, ip)
                    .detail(serde_json::json!({"method": "oidc", "reason": reason}))
                    .record(conn)
            })
            .await?;
            Err::<HttpResponse, AppError>(AppError::BadRequest(message))
        }
    };
    if let Some(err) = &q.error {
        let desc = q.error_description.clone().unwrap_or_default();
        return fail(
            format!("provider error {err}: {desc}"),
            "The sign-in provider did not sign you in. Start again from the sign-in page.",
        )
        .await;
    }
    let Some(pending) = pending else {
        return fail("no sign-in in progress".into(), "This sign-in expired or was started in another browser tab. Start again from the sign-in page.").await;
    };
    let state_ok = q
        .state
        .as_deref()
        .is_some_and(|s| crate::util::constant_time_eq(s, &pending.state));
    if !state_ok {
        return fail("state mismatch".into(), "This sign-in could not be matched to the one you started. Start again from the sign-in page.").await;
    }
    let Some(code) = q.code.as_deref() else {
        return fail(
            "no code".into(),
            "The sign-in provider sent no code. Start again from the sign-in page.",
        )
        .await;
    };
    let (email, given, family) = match oidc.finish(&pending, code).await {
        Ok(claims) => claims,
        Err(e) => {
            tracing::warn!(error = %e, "OIDC sign-in refused");
            return fail(
                e.to_string(),
                &format!("{e} Start again from the sign-in page."),
            )
            .await;
        }
    };
    let (e2, ip2) = (email.clone(), ip.clone());
    let found = state
        .db
        .tx(move |conn| {
            let acc = users::find_by_email(conn, &e2)?
                .filter(|a| a.practitioner_id.is_some() && a.user.is_active);
            match acc {
                None => {
                    Audit::anonymous("sign_in.failed", Some(&e2), ip2)
                        .detail(serde_json::json!({"method": "oidc", "reason": "not registered"}))
                        .record(conn)?;
                    Ok(None)
                }
                Some(acc) => {
                    // Fill in names the practitioner has not set from what the provider says.
                    if acc.user.first_name.is_empty() && acc.user.last_name.is_empty() {
                        users::update_name(conn, acc.user.id, &given, &family)?;
                    }
                    Ok(Some(acc.user.id))
                }
            }
        })
        .await?;
    match found {
        None => Ok(not_registered(&v, &email)),
        Some(user_id) => {
            session::put(&v.session, NEXT, &pending.next);
            finish(&state, &v, user_id, "oidc", ip).await
        }
    }
}

/// Every successful sign-in ends here.
async fn finish(
    state: &web::Data<AppState>,
    v: &Visitor,
    user_id: i64,
    method: &'static str,
    ip: Option<String>,
) -> Result<HttpResponse, AppError> {
    let next = session::take::<String>(&v.session, NEXT);
    state
        .db
        .tx(move |conn| {
            let acc =
                users::find_account(conn, user_id)?.ok_or_else(|| AppError::not_found("User"))?;
            users::touch_login(conn, user_id)?;
            Audit::anonymous("sign_in", Some(&acc.user.email), ip)
                .user_id(acc.user.id, &acc.user.email)
                .detail(serde_json::json!({"method": method}))
                .record(conn)
        })
        .await?;
    session::begin(&v.session, user_id);
    Ok(see_other(&safe_next(next.as_deref())))
}

async fn sign_out(
    req: HttpRequest,
    v: Visitor,
    state: web::Data<AppState>,
    _form: CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    if let Some(uid) = session::user_id(&v.session, &state.config) {
        let ip = client_ip(&req);
        state
            .db
            .tx(move |conn| {
                let email = users::find_account(conn, uid)?
                    .map(|a| a.user.email)
                    .unwrap_or_default();
                Audit::anonymous("sign_out", Some(&email), ip)
                    .user_id(uid, &email)
                    .record(conn)
            })
            .await?;
    }
    session::end(&v.session);
    Ok(see_other("/auth/sign-in?signed_out=1"))
}
