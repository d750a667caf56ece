//! What every /api/v1 handler shares: extractor error shapes, paging and the list envelope.

use actix_web::{error::InternalError, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::error::AppError;

fn detail(status: actix_web::http::StatusCode, message: String) -> actix_web::Error {
    InternalError::from_response(
        message.clone(),
        HttpResponse::build(status).json(serde_json::json!({ "detail": message })),
    )
    .into()
}

pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(2 * 1024 * 1024)
        .error_handler(|err, _| {
            let msg = match &err {
                actix_web::error::JsonPayloadError::ContentType => {
                    "Send the body as JSON with `Content-Type: application/json`.".to_string()
                }
                actix_web::error::JsonPayloadError::Deserialize(e) => {
                    format!("The JSON body could not be used: {e}.")
                }
                other => format!("The JSON body could not be read: {other}."),
            };
            detail(actix_web::http::StatusCode::BAD_REQUEST, msg)
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, req| {
        let msg = format!("The query string could not be used: {err}.");
        if crate::auth::extract::is_api_path(req.path()) {
            detail(actix_web::http::StatusCode::BAD_REQUEST, msg)
        } else {
            AppError::BadRequest(msg).into()
        }
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, req| {
        if crate::auth::extract::is_api_path(req.path()) {
            detail(
                actix_web::http::StatusCode::NOT_FOUND,
                "Not found: ids in the path are whole numbers.".into(),
            )
        } else {
            AppError::NotFound("Page not found.".into()).into()
        }
    })
}

/// An optional id from the query: None when absent or blank, a 400 naming `name` when it
/// is not a whole number.
pub fn id_param(v: Option<&String>, name: &str) -> Result<Option<i64>, AppError> {
    match v.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| AppError::invalid(name, "Use a whole-number id.")),
    }
}

/// `page` (1-based) and `pageSize`/`page_size` (default 20, at most 1000).
#[derive(Debug, Deserialize, Default)]
pub struct PageQuery {
    pub page: Option<String>,
    #[serde(alias = "pageSize")]
    pub page_size: Option<String>,
}

pub const MAX_PAGE_SIZE: i64 = 1000;

impl PageQuery {
    /// (page, size), or a 400 naming the bad parameter.
    pub fn parse(&self) -> Result<(i64, i64), AppError> {
        let page = match self.page.as_deref() {
            None | Some("") => 1,
            Some(p) => p
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| AppError::invalid("page", "Use a whole number from 1."))?,
        };
        let size = match self.page_size.as_deref() {
            None | Some("") => 20,
            Some(p) => p
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| {
                    AppError::invalid(
                        "pageSize",
                        format!("Use a whole number from 1 to {MAX_PAGE_SIZE}."),
                    )
                })?,
        };
        Ok((page, size))
    }
}

#[derive(Serialize)]
pub struct Envelope<T: Serialize> {
    pub count: i64,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: Vec<T>,
}

/// The list envelope, with absolute `next`/`previous` links that repeat every other parameter.
pub fn envelope<T: Serialize>(
    req: &HttpRequest,
    public_url: &str,
    page: i64,
    size: i64,
    count: i64,
    results: Vec<T>,
) -> Result<Envelope<T>, AppError> {
    let last = ((count + size - 1) / size).max(1);
    if page > last {
        return Err(AppError::NotFound("Invalid page.".into()));
    }
    let link = |p: i64| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
            if k != "page" {
                s.append_pair(&k, &v);
            }
        }
        s.append_pair("page", &p.to_string());
        format!("{public_url}{}?{}", req.path(), s.finish())
    };
    Ok(Envelope {
        count,
        next: (page < last).then(|| link(page + 1)),
        previous: (page > 1).then(|| link(page - 1)),
        results,
    })
}

/// Keys in JSON bodies may be camelCase or snake_case; this reads either.
pub fn field<'a>(
    body: &'a serde_json::Value,
    camel: &str,
    snake: &str,
) -> Option<&'a serde_json::Value> {
    body.get(camel).or_else(|| body.get(snake))
}
