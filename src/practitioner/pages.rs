//! The Practitioners tab (superusers): find practitioners and add new ones.

use actix_web::{web, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::model::User;
use super::{repo, NewPractitionerInput};
use crate::auth::{CsrfForm, Superuser};
use crate::console::{query_string, Console, FormErrors, Paging, Shell};
use crate::error::AppError;
use crate::organization::Role;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/practitioners", web::get().to(list))
        .route("/practitioners", web::post().to(create));
}

#[derive(Default, Deserialize, Clone)]
struct NewForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    superuser: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "practitioner/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<(i64, User)>,
    q: String,
    paging: Paging,
    prev_url: String,
    next_url: String,
    modal: bool,
    form: NewForm,
    errors: FormErrors,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    page: Option<i64>,
    modal: Option<String>,
}

async fn page(
    c: &Console,
    state: &web::Data<AppState>,
    q: String,
    page: Option<i64>,
    modal: bool,
    form: NewForm,
    errors: FormErrors,
) -> Result<ListPage, AppError> {
    let mut paging = Paging::new(page, None, &[50]);
    let (q2, off, lim) = (q.clone(), paging.offset(), paging.page_size);
    let (rows, total) = state
        .db
        .run(move |conn| repo::list(conn, &q2, off, lim))
        .await?;
    paging.total = total;
    let url = |p: i64| {
        format!(
            "/practitioners?{}",
            query_string(&[("q", q.clone()), ("page", p.to_string())])
        )
    };
    Ok(ListPage {
        shell: c.shell("Practitioners", "practitioners"),
        rows,
        prev_url: url(paging.page - 1),
        next_url: url(paging.page + 1),
        q,
        paging,
        modal,
        form,
        errors,
    })
}

async fn list(
    _su: Superuser,
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<ListPage, AppError> {
    let q = q.into_inner();
    page(
        &c,
        &state,
        q.q,
        q.page,
        q.modal.as_deref() == Some("create"),
        NewForm::default(),
        FormErrors::default(),
    )
    .await
}

async fn create(
    _su: Superuser,
    c: Console,
    state: web::Data<AppState>,
    CsrfForm(form): CsrfForm<NewForm>,
) -> Result<HttpResponse, AppError> {
    let input = NewPractitionerInput {
        email: form.email.clone(),
        first_name: form.first_name.clone(),
        last_name: form.last_name.clone(),
        organization_id: None,
        role: Role::Member,
        superuser: form.superuser.is_some(),
    };
    let actor = c.user.clone();
    let result = state
        .db
        .tx(move |conn| super::create(conn, &actor, &input))
        .await;
    match result {
        Ok(_) => Ok(c.done(
            format!(
                "Added {}. Add them to an organization from its page.",
                crate::util::normalize_email(&form.email)
            ),
            "/practitioners",
        )),
        Err(e) => {
            let errors = FormErrors::from_error(e)?;
            let p = page(&c, &state, String::new(), None, true, form, errors).await?;
            Ok(crate::auth::pages::render_status(
                actix_web::http::StatusCode::BAD_REQUEST,
                p,
            ))
        }
    }
}
