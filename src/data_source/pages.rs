//! The data source catalogue page: everyone signed in reads it; superusers add, change and
//! delete sources and the scopes each supplies.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::{repo, SourceInput, TYPES};
use crate::auth::csrf::NoFields;
use crate::auth::pages::render_status;
use crate::auth::CsrfForm;
use crate::console::{Console, FormErrors, Shell};
use crate::error::AppError;
use crate::startup::AppState;
use crate::study::{DataSource, Scope};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/data-sources", web::get().to(list))
        .route("/data-sources", web::post().to(create))
        .route("/data-sources/{id}/update", web::post().to(update))
        .route("/data-sources/{id}/delete", web::post().to(delete));
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    modal: String,
    edit: Option<i64>,
}

/// The form as typed: name, type and repeated `scope` checkboxes.
#[derive(Default, Clone)]
pub struct SourceForm {
    pub name: String,
    pub source_type: String,
    pub scope_ids: Vec<i64>,
}

impl SourceForm {
    fn read(pairs: &[(String, String)]) -> SourceForm {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        SourceForm {
            name: get("name"),
            source_type: get("type"),
            scope_ids: pairs
                .iter()
                .filter(|(k, _)| k == "scope")
                .filter_map(|(_, v)| v.parse().ok())
                .collect(),
        }
    }
    fn input(&self) -> SourceInput {
        SourceInput {
            name: self.name.clone(),
            source_type: self.source_type.clone(),
            scope_ids: self.scope_ids.clone(),
        }
    }
}

pub struct TypeOption {
    pub value: &'static str,
    pub label: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "data_source/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<(DataSource, Vec<Scope>, i64)>,
    scopes: Vec<Scope>,
    types: Vec<TypeOption>,
    superuser: bool,
    modal: String,
    /// The source being edited, when the edit modal is open.
    editing: Option<i64>,
    form: SourceForm,
    errors: FormErrors,
}

impl ListPage {
    fn type_label(&self, code: &str) -> &'static str {
        super::type_label(code)
    }
}

async fn page(
    c: &Console,
    state: &web::Data<AppState>,
    modal: String,
    editing: Option<i64>,
    form: Option<SourceForm>,
    errors: FormErrors,
) -> Result<ListPage, AppError> {
    let (rows, scopes) = state
        .db
        .run(|conn| {
            let (sources, _) = repo::list(conn, 0, 10_000)?;
            let ids: Vec<i64> = sources.iter().map(|d| d.id).collect();
            let mut supplied = repo::scopes_by_source(conn, &ids)?;
            let using = repo::studies_using_all(conn)?;
            let rows: Vec<(DataSource, Vec<Scope>, i64)> = sources
                .into_iter()
                .map(|d| {
                    let scopes = supplied.remove(&d.id).unwrap_or_default();
                    let used = using.get(&d.id).copied().unwrap_or(0);
                    (d, scopes, used)
                })
                .collect();
            Ok((rows, crate::study::repo::all_scopes(conn)?))
        })
        .await?;
    let form = form.unwrap_or_else(|| {
        match editing.and_then(|id| rows.iter().find(|(d, _, _)| d.id == id)) {
            Some((d, sc, _)) => SourceForm {
                name: d.name.clone(),
                source_type: d.source_type.clone(),
                scope_ids: sc.iter().map(|s| s.id).collect(),
            },
            None => SourceForm::default(),
        }
    });
    Ok(ListPage {
        shell: c.shell("Data sources", "data-sources"),
        superuser: c.user.is_superuser(),
        rows,
        scopes,
        types: TYPES
            .iter()
            .map(|(v, l)| TypeOption { value: v, label: l })
            .collect(),
        modal,
        editing,
        form,
        errors,
    })
}

async fn list(
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<ListPage, AppError> {
    let q = q.into_inner();
    page(&c, &state, q.modal, q.edit, None, FormErrors::default()).await
}

async fn create(
    c: Console,
    state: web::Data<AppState>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let form = SourceForm::read(&pairs);
    let (user, input) = (c.user.clone(), form.input());
    match state
        .db
        .tx(move |conn| super::create(conn, &user, &input))
        .await
    {
        Ok(_) => Ok(c.done(
            format!("Added {} to the catalogue.", form.name.trim()),
            "/data-sources",
        )),
        Err(e @ (AppError::Forbidden(_) | AppError::NotFound(_))) => Err(e),
        Err(e) => {
            let errors = FormErrors::from_error(e)?;
            Ok(render_status(
                StatusCode::BAD_REQUEST,
                page(&c, &state, "create".into(), None, Some(form), errors).await?,
            ))
        }
    }
}

async fn update(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let form = SourceForm::read(&pairs);
    let (user, input) = (c.user.clone(), form.input());
    match state
        .db
        .tx(move |conn| super::update(conn, &user, id, &input))
        .await
    {
        Ok(()) => Ok(c.done(format!("Saved {}.", form.name.trim()), "/data-sources")),
        Err(e @ (AppError::Forbidden(_) | AppError::NotFound(_))) => Err(e),
        Err(e) => {
            let errors = FormErrors::from_error(e)?;
            Ok(render_status(
                StatusCode::BAD_REQUEST,
                page(&c, &state, "edit".into(), Some(id), Some(form), errors).await?,
            ))
        }
    }
}

async fn delete(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    _form: CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let user = c.user.clone();
    match state
        .db
        .tx(move |conn| super::delete(conn, &user, id))
        .await
    {
        Ok(()) => Ok(c.done("Deleted the data source.", "/data-sources")),
        Err(AppError::Conflict(m)) => {
            c.flash("error", m);
            Ok(crate::console::see_other("/data-sources"))
        }
        Err(e) => Err(e),
    }
}
