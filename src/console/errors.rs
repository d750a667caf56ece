//! HTML error pages for console paths, made from the same templates as every other page,
//! and the JSON 404 for unknown API paths.

use actix_session::SessionExt;
use actix_web::dev::ServiceResponse;
use actix_web::http::{header, StatusCode};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use askama::Template;

use super::Shell;
use crate::auth::CurrentUser;
use crate::error::AppError;

#[derive(Template)]
#[template(path = "errors/error.html")]
pub struct ErrorPage {
    pub shell: Shell,
    pub status: u16,
    pub heading: String,
    pub message: String,
}

fn heading(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => (
            "This request could not be used",
            "Check what you entered and try again.",
        ),
        401 => ("Please sign in", "Sign in to continue."),
        403 => (
            "You don't have access to this",
            "Ask a manager of the organization if you need access.",
        ),
        404 => (
            "Page not found",
            "The page you asked for does not exist, or you do not have access to it.",
        ),
        405 => (
            "That is not allowed here",
            "Go back and use the page's own buttons.",
        ),
        409 => ("That could not be done", "Something else depends on it."),
        413 => ("That was too large", "Send a smaller file or form."),
        _ => (
            "Something went wrong",
            "Something went wrong on our side. It has been logged; please try again.",
        ),
    }
}

pub fn render(req: &HttpRequest, status: StatusCode, message: Option<String>) -> HttpResponse {
    let user = req.extensions().get::<CurrentUser>().cloned();
    let session = req.get_session();
    let (title, fallback) = heading(status);
    let page = ErrorPage {
        shell: Shell::new(&session, user.as_ref(), title, ""),
        status: status.as_u16(),
        heading: title.to_string(),
        message: message.unwrap_or_else(|| fallback.to_string()),
    };
    match page.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "error page failed to render");
            HttpResponse::build(status)
                .content_type("text/plain; charset=utf-8")
                .body(title)
        }
    }
}

/// Replaces an error response's JSON body with the HTML page, keeping its status.
pub fn html_error<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let already_html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if already_html && res.response().error().is_none() {
        // A page that rendered its own refusal (a form shown again, a spent link) stays as it is.
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let message = res
        .response()
        .error()
        .and_then(|e| e.as_error::<AppError>())
        .filter(|e| !matches!(e, AppError::Internal(_)))
        .map(|e| e.user_message());
    let (req, _) = res.into_parts();
    let page = render(&req, status, message);
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, page).map_into_right_body(),
    ))
}

pub async fn console_not_found(req: HttpRequest, _user: Option<CurrentUser>) -> HttpResponse {
    render(&req, StatusCode::NOT_FOUND, None)
}

pub async fn api_not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .json(serde_json::json!({
            "detail": format!("No endpoint at {} {}.", req.method(), req.path())
        }))
}
