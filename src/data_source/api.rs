//! /api/v1/data_sources: the catalogue and the scope codes, JHE-compatible.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::{repo, SourceInput};
use crate::api::{envelope, field, PageQuery};
use crate::auth::CurrentUser;
use crate::db::DbConnection;
use crate::error::AppError;
use crate::startup::AppState;
use crate::study::api::{ScopeJson, SourceJson};
use crate::study::DataSource;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/data_sources", web::get().to(list))
        .route("/data_sources", web::post().to(create))
        .route("/data_sources/all_scopes", web::get().to(all_scopes))
        .route("/data_sources/{id}", web::get().to(show))
        .route("/data_sources/{id}", web::patch().to(update))
        .route("/data_sources/{id}", web::delete().to(delete));
}

pub fn to_json(conn: &mut DbConnection, rows: &[DataSource]) -> Result<Vec<SourceJson>, AppError> {
    let ids: Vec<i64> = rows.iter().map(|d| d.id).collect();
    let mut scopes = repo::scopes_by_source(conn, &ids)?;
    Ok(rows
        .iter()
        .map(|d| {
            let supplied = scopes.remove(&d.id).unwrap_or_default();
            SourceJson::new(d, supplied.iter().map(ScopeJson::from).collect())
        })
        .collect())
}

async fn list(
    req: HttpRequest,
    _user: CurrentUser,
    state: web::Data<AppState>,
    paging: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let (page, size) = paging.parse()?;
    let (count, results) = state
        .db
        .run(move |conn| {
            let (rows, count) = repo::list(conn, (page - 1) * size, size)?;
            Ok((count, to_json(conn, &rows)?))
        })
        .await?;
    Ok(HttpResponse::Ok().json(envelope(
        &req,
        &state.config.public_url,
        page,
        size,
        count,
        results,
    )?))
}

async fn all_scopes(
    _user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let scopes = state
        .db
        .run(|conn| {
            Ok(crate::study::repo::all_scopes(conn)?
                .iter()
                .map(ScopeJson::from)
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(HttpResponse::Ok().json(scopes))
}

async fn show(
    _user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let json = state
        .db
        .run(move |conn| {
            let d = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Data source"))?;
            Ok(to_json(conn, &[d])?.pop())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

/// Reads name, type and supported scopes (ids, or scope objects with an id) from a body,
/// keeping what `base` has for anything left out.
fn input_from(
    body: &Value,
    base: Option<(&DataSource, Vec<i64>)>,
) -> Result<SourceInput, AppError> {
    let scope_ids = match field(body, "supportedScopes", "supported_scopes") {
        None | Some(Value::Null) => base.as_ref().map(|(_, s)| s.clone()).unwrap_or_default(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_i64()
                    .or_else(|| v.get("id").and_then(Value::as_i64))
                    .ok_or_else(|| {
                        AppError::invalid(
                            "supportedScopes",
                            "Give scope ids, such as [4, 12], or scope objects with their id.",
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(AppError::invalid(
                "supportedScopes",
                "Give a list of scope ids, such as [4, 12].",
            ))
        }
    };
    let text = |k: &str, current: String| -> String {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(current)
    };
    Ok(SourceInput {
        name: text(
            "name",
            base.as_ref()
                .map(|(d, _)| d.name.clone())
                .unwrap_or_default(),
        ),
        source_type: text(
            "type",
            base.as_ref()
                .map(|(d, _)| d.source_type.clone())
                .unwrap_or_default(),
        ),
        scope_ids,
    })
}

async fn create(
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let input = input_from(&body, None)?;
    let json = state
        .db
        .tx(move |conn| {
            let id = super::create(conn, &user, &input)?;
            let d = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Data source"))?;
            Ok(to_json(conn, &[d])?.pop())
        })
        .await?;
    Ok(HttpResponse::Created().json(json))
}

async fn update(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let json = state
        .db
        .tx(move |conn| {
            let d = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Data source"))?;
            let current: Vec<i64> = repo::scopes_of(conn, &[id])?
                .into_iter()
                .map(|(_, s)| s.id)
                .collect();
            let input = input_from(&body, Some((&d, current)))?;
            super::update(conn, &user, id, &input)?;
            let d = repo::find(conn, id)?.ok_or_else(|| AppError::not_found("Data source"))?;
            Ok(to_json(conn, &[d])?.pop())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json))
}

async fn delete(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    state
        .db
        .tx(move |conn| super::delete(conn, &user, id))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
