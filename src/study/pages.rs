//! The Studies tab: the list (search, status, pages), create, and each study's page with its
//! requested data, data sources, enrolment and consent review; the forms that change them.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::model::{DataSource, Scope, Status, Study, StudyInput};
use super::repo;
use crate::auth::csrf::NoFields;
use crate::auth::pages::render_status;
use crate::auth::CsrfForm;
use crate::consent::pages::Review;
use crate::console::home::{selected_organization, OrgOption};
use crate::console::{num, query_string, Console, FormErrors, Paging, Shell, PAGE_SIZES};
use crate::error::AppError;
use crate::organization::{self, Organization, Role};
use crate::patient::model::Patient;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/studies", web::get().to(list))
        .route("/studies", web::post().to(create))
        .route("/studies/{id}", web::get().to(show))
        .route("/studies/{id}/update", web::post().to(update))
        .route("/studies/{id}/delete", web::post().to(delete))
        .route("/studies/{id}/scopes", web::post().to(add_scope))
        .route(
            "/studies/{id}/scopes/{scope_id}/remove",
            web::post().to(remove_scope),
        )
        .route("/studies/{id}/data-sources", web::post().to(add_source))
        .route(
            "/studies/{id}/data-sources/{source_id}/remove",
            web::post().to(remove_source),
        )
        .route("/studies/{id}/enrol", web::post().to(enrol))
        .route("/studies/{id}/unenrol", web::post().to(unenrol))
        .route("/studies/{id}/invite", web::post().to(invite));
}

#[derive(Deserialize, Default, Clone)]
pub struct ListQuery {
    pub organization_id: Option<String>,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub status: String,
    pub page: Option<String>,
    pub page_size: Option<String>,
    #[serde(default)]
    pub modal: String,
}

impl ListQuery {
    pub fn url(&self, org: i64, changes: &[(&str, String)]) -> String {
        let mut pairs = vec![
            ("organization_id", org.to_string()),
            ("q", self.q.clone()),
            ("status", self.status.clone()),
            ("page_size", self.page_size.clone().unwrap_or_default()),
            ("page", self.page.clone().unwrap_or_default()),
        ];
        for (k, v) in changes {
            match pairs.iter_mut().find(|(pk, _)| pk == k) {
                Some(p) => p.1 = v.clone(),
                None => pairs.push((k, v.clone())),
            }
        }
        format!("/studies?{}", query_string(&pairs))
    }
}

/// The create and edit form as typed.
#[derive(Deserialize, Default, Clone)]
pub struct StudyForm {
    #[serde(default)]
    pub organization_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub icon_url: String,
    #[serde(default)]
    pub status: String,
}

impl StudyForm {
    fn input(&self) -> StudyInput {
        StudyInput {
            name: self.name.clone(),
            description: self.description.clone(),
            icon_url: self.icon_url.clone(),
            status: self.status.clone(),
        }
    }
    fn from_study(s: &Study) -> StudyForm {
        StudyForm {
            organization_id: s.organization_id.to_string(),
            name: s.name.clone(),
            description: s.description.clone(),
            icon_url: s.icon_url.clone().unwrap_or_default(),
            status: s.status.clone(),
        }
    }
}

/// One row of the list, with its counts.
pub struct Row {
    pub s: Study,
    pub enrolled: i64,
    pub completion: Option<i64>,
}

pub struct StatusOption {
    pub value: &'static str,
    pub label: &'static str,
}

fn status_options() -> Vec<StatusOption> {
    Status::ALL
        .iter()
        .map(|s| StatusOption {
            value: s.as_str(),
            label: s.label(),
        })
        .collect()
}

#[derive(Template, WebTemplate)]
#[template(path = "study/list.html")]
pub struct ListPage {
    shell: Shell,
    org: Option<Organization>,
    options: Vec<OrgOption>,
    can_edit: bool,
    rows: Vec<Row>,
    q: ListQuery,
    org_id: i64,
    paging: Paging,
    page_sizes: [i64; 4],
    prev_url: String,
    next_url: String,
    close_url: String,
    statuses: Vec<StatusOption>,
    form: StudyForm,
    errors: FormErrors,
}

async fn list_page(
    c: &Console,
    state: &web::Data<AppState>,
    q: ListQuery,
    form: StudyForm,
    errors: FormErrors,
) -> Result<ListPage, AppError> {
    let user = c.user.clone();
    let requested = num(&q.organization_id);
    let paging = Paging::new(num(&q.page), num(&q.page_size), &PAGE_SIZES);
    let q2 = q.clone();
    let (org, options, rows, paging) = state
        .db
        .tx(move |conn| {
            let mut paging = paging;
            let (org, options) = selected_organization(conn, &user, requested)?;
            let Some((org, role)) = org else {
                paging.page = 1;
                return Ok((None, options, Vec::new(), paging));
            };
            let status = Status::parse(&q2.status);
            let studies =
                paging.load(|off, lim| repo::list(conn, &[org.id], &q2.q, status, off, lim))?;
            let rows = rows_for(conn, studies)?;
            Ok((Some((org, role)), options, rows, paging))
        })
        .await?;
    let (org, role) = match org {
        Some((o, r)) => (Some(o), r),
        None => (None, Role::Viewer),
    };
    let org_id = org.as_ref().map(|o| o.id).unwrap_or_default();
    Ok(ListPage {
        shell: c.shell("Studies", "studies"),
        can_edit: org.is_some() && role >= Role::Member,
        prev_url: q.url(org_id, &[("page", (paging.page - 1).to_string())]),
        next_url: q.url(org_id, &[("page", (paging.page + 1).to_string())]),
        close_url: q.url(org_id, &[]),
        org,
        options,
        rows,
        org_id,
        paging,
        page_sizes: PAGE_SIZES,
        q,
        statuses: status_options(),
        form,
        errors,
    })
}

/// Enrolment counts and consent completion for a page of studies, from the counters, in
/// three queries whatever the page size.
fn rows_for(conn: &mut crate::db::DbConnection, studies: Vec<Study>) -> Result<Vec<Row>, AppError> {
    use std::collections::HashMap;
    let ids: Vec<i64> = studies.iter().map(|s| s.id).collect();
    let enrolled: HashMap<i64, i64> = repo::enrolled_counts(conn, &ids)?.into_iter().collect();
    let mut requested: HashMap<i64, Vec<i64>> = HashMap::new();
    for (sid, sc) in repo::scope_requests(conn, &ids)? {
        requested.entry(sid).or_default().push(sc.id);
    }
    let decided: HashMap<(i64, i64), i64> = crate::consent::repo::decided_of(conn, &ids)?
        .into_iter()
        .map(|(sid, scope, n)| ((sid, scope), n))
        .collect();
    Ok(studies
        .into_iter()
        .map(|s| {
            let enrolled = enrolled.get(&s.id).copied().unwrap_or(0);
            let scopes = requested.get(&s.id).map(Vec::as_slice).unwrap_or_default();
            let done: i64 = scopes
                .iter()
                .filter_map(|scope| decided.get(&(s.id, *scope)))
                .sum();
            let all = enrolled * scopes.len() as i64;
            Row {
                completion: (all > 0).then(|| (done * 100 + all / 2) / all),
                enrolled,
                s,
            }
        })
        .collect())
}

async fn list(
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<ListPage, AppError> {
    list_page(
        &c,
        &state,
        q.into_inner(),
        StudyForm::default(),
        FormErrors::default(),
    )
    .await
}

async fn create(
    c: Console,
    state: web::Data<AppState>,
    CsrfForm(form): CsrfForm<StudyForm>,
) -> Result<HttpResponse, AppError> {
    let org_id = crate::patient::pages::org_param(&form.organization_id)?;
    let input = form.input();
    let result = organization::act(
        &state.db,
        &c.user,
        org_id,
        Role::Member,
        move |conn, user, scope| super::create(conn, user, scope, &input),
    )
    .await;
    match result {
        Ok(id) => Ok(c.done(
            format!(
                "Created {}. Next: choose the data it requests and enrol patients.",
                form.name.trim()
            ),
            &format!("/studies/{id}"),
        )),
        Err(e @ (AppError::Forbidden(_) | AppError::NotFound(_))) => Err(e),
        Err(e) => {
            let q = ListQuery {
                organization_id: Some(org_id.to_string()),
                modal: "create".into(),
                ..ListQuery::default()
            };
            let errors = FormErrors::from_error(e)?;
            Ok(render_status(
                StatusCode::BAD_REQUEST,
                list_page(&c, &state, q, form, errors).await?,
            ))
        }
    }
}

#[derive(Deserialize, Default, Clone)]
pub struct ShowQuery {
    #[serde(default)]
    pub modal: String,
    /// The enrol modal's search.
    #[serde(default)]
    pub find: String,
    /// Review filters: pending, declined, or all.
    #[serde(default)]
    pub only: String,
    pub scope: Option<String>,
    pub page: Option<String>,
    pub page_size: Option<String>,
    /// The patient the record-decision modal is for.
    pub patient: Option<String>,
}

impl ShowQuery {
    pub fn url(&self, id: i64, changes: &[(&str, String)]) -> String {
        let mut pairs = vec![
            ("only", self.only.clone()),
            ("scope", self.scope.clone().unwrap_or_default()),
            ("page_size", self.page_size.clone().unwrap_or_default()),
            ("page", self.page.clone().unwrap_or_default()),
        ];
        for (k, v) in changes {
            match pairs.iter_mut().find(|(pk, _)| pk == k) {
                Some(p) => p.1 = v.clone(),
                None => pairs.push((k, v.clone())),
            }
        }
        let qs = query_string(&pairs);
        if qs.is_empty() {
            format!("/studies/{id}")
        } else {
            format!("/studies/{id}?{qs}")
        }
    }
    pub fn scope_id(&self) -> Option<i64> {
        num(&self.scope)
    }
    pub fn is_scope(&self, id: &i64) -> bool {
        self.scope_id() == Some(*id)
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "study/show.html")]
pub struct ShowPage {
    /// Built outside the database closure: the session stays on this thread.
    shell: Shell,
    s: Study,
    org: Organization,
    can_edit: bool,
    q: ShowQuery,
    requested: Vec<Scope>,
    /// Scopes not yet requested, for the add form.
    other_scopes: Vec<Scope>,
    sources: Vec<(DataSource, Vec<Scope>)>,
    other_sources: Vec<DataSource>,
    review: Review,
    statuses: Vec<StatusOption>,
    form: StudyForm,
    errors: FormErrors,
    /// Delete confirmation: (enrolments, consents, observations).
    dependents: (i64, i64, i64),
    /// The enrol modal's matches: patients of the organization, and whether enrolled.
    matches: Vec<(Patient, bool)>,
    close_url: String,
    page_sizes: [i64; 4],
    /// The study's open sign-up link, and the personal one just made (external id, link).
    signup_link: String,
    personal_link: Option<(String, String)>,
}

impl ShowPage {
    pub fn status_label(&self) -> &'static str {
        self.s.status().label()
    }
    /// Observations hold the study back from deletion.
    pub fn delete_blocked(&self) -> bool {
        self.dependents.2 > 0
    }
    pub fn source_type(&self, code: &str) -> &'static str {
        crate::data_source::type_label(code)
    }
}

pub(crate) async fn show_page(
    c: &Console,
    state: &web::Data<AppState>,
    id: i64,
    q: ShowQuery,
    form: Option<StudyForm>,
    errors: FormErrors,
) -> Result<ShowPage, AppError> {
    let user = c.user.clone();
    let q2 = q.clone();
    let shell = c.shell("Study", "studies");
    let st = state.clone();
    let mut page = state
        .db
        .tx(move |conn| {
            let (s, scope) = super::authorize(conn, &user, id, Role::Viewer)?;
            let org = organization::repo::get(conn, &scope)?;
            let requested: Vec<Scope> = repo::requested(conn, s.id)?;
            let other_scopes = repo::all_scopes(conn)?
                .into_iter()
                .filter(|a| !requested.iter().any(|r| r.id == a.id))
                .collect();
            let chosen: Vec<DataSource> = repo::data_sources_of(conn, &[s.id])?
                .into_iter()
                .map(|(_, d)| d)
                .collect();
            let ids: Vec<i64> = chosen.iter().map(|d| d.id).collect();
            let mut supplied = crate::data_source::repo::scopes_by_source(conn, &ids)?;
            let sources = chosen
                .into_iter()
                .map(|d| {
                    let scopes = supplied.remove(&d.id).unwrap_or_default();
                    (d, scopes)
                })
                .collect::<Vec<_>>();
            let other_sources = crate::data_source::repo::list(conn, 0, 1000)?
                .0
                .into_iter()
                .filter(|d| !sources.iter().any(|(c, _)| c.id == d.id))
                .collect();
            let review = crate::consent::pages::review(
                conn,
                &user,
                &scope,
                &s,
                &requested,
                &q2,
                &st.review_totals,
            )?;
            let dependents = if q2.modal == "delete" {
                repo::dependents(conn, s.id)?
            } else {
                (0, 0, 0)
            };
            let matches = if q2.modal == "enrol" && !q2.find.trim().is_empty() {
                enrol_matches(conn, &s, &q2.find)?
            } else {
                Vec::new()
            };
            Ok(ShowPage {
                shell,
                can_edit: scope.can(Role::Member),
                form: form.unwrap_or_else(|| StudyForm::from_study(&s)),
                close_url: q2.url(s.id, &[]),
                s,
                org,
                q: q2,
                requested,
                other_scopes,
                sources,
                other_sources,
                review,
                statuses: status_options(),
                errors,
                dependents,
                matches,
                page_sizes: PAGE_SIZES,
                signup_link: crate::portal::signup::link(
                    &st.config.public_url,
                    st.secret(),
                    id,
                    None,
                ),
                personal_link: None,
            })
        })
        .await?;
    page.shell.title = page.s.name.clone();
    page.personal_link = crate::auth::session::take::<(i64, String, String)>(
        &c.session,
        crate::portal::console::NEW_SIGNUP_LINK,
    )
    .filter(|(sid, _, _)| *sid == id)
    .map(|(_, r, l)| (r, l));
    Ok(page)
}

/// Up to 50 patients of the study's organization matching the enrol search.
fn enrol_matches(
    conn: &mut crate::db::DbConnection,
    s: &Study,
    find: &str,
) -> Result<Vec<(Patient, bool)>, AppError> {
    use crate::patient::repo::{self as prepo, Archived, ListFilter, Sort};
    let filter = ListFilter {
        org_ids: vec![s.organization_id],
        terms: crate::patient::search::query_terms(find),
        archived: Archived::Active,
        ..ListFilter::default()
    };
    let (found, _) = prepo::list(conn, &filter, Sort::FamilyName, 0, 50)?;
    let ids: Vec<i64> = found.iter().map(|p| p.id).collect();
    let enrolled = repo::enrolled_among(conn, s.id, &ids)?;
    Ok(found
        .into_iter()
        .map(|p| {
            let e = enrolled.contains(&p.id);
            (p, e)
        })
        .collect())
}

async fn show(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    q: web::Query<ShowQuery>,
) -> Result<ShowPage, AppError> {
    show_page(
        &c,
        &state,
        id.into_inner(),
        q.into_inner(),
        None,
        FormErrors::default(),
    )
    .await
}

/// A refusal the page can explain (a conflict or bad input) comes back as a flash message.
fn or_flash(
    c: &Console,
    r: Result<HttpResponse, AppError>,
    back: &str,
) -> Result<HttpResponse, AppError> {
    match r {
        Err(AppError::Conflict(m) | AppError::BadRequest(m)) => {
            c.flash("error", m);
            Ok(crate::console::see_other(back))
        }
        Err(AppError::Invalid(fields)) => {
            c.flash(
                "error",
                fields.into_values().flatten().collect::<Vec<_>>().join(" "),
            );
            Ok(crate::console::see_other(back))
        }
        other => other,
    }
}

async fn update(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(form): CsrfForm<StudyForm>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let input = form.input();
    let result = super::act(&state.db, &c.user, id, move |conn, user, scope, s| {
        super::update(conn, user, scope, s, &input)
    })
    .await;
    match result {
        Ok(()) => Ok(c.done(
            format!("Saved {}.", form.name.trim()),
            &format!("/studies/{id}"),
        )),
        Err(e @ (AppError::Forbidden(_) | AppError::NotFound(_))) => Err(e),
        Err(e) => {
            let errors = FormErrors::from_error(e)?;
            let q = ShowQuery {
                modal: "edit".into(),
                ..ShowQuery::default()
            };
            Ok(render_status(
                StatusCode::BAD_REQUEST,
                show_page(&c, &state, id, q, Some(form), errors).await?,
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
    let r = super::act(&state.db, &c.user, id, |conn, user, scope, s| {
        super::delete(conn, user, scope, s)?;
        Ok((s.name.clone(), s.organization_id))
    })
    .await
    .map(|(name, org)| {
        c.done(
            format!("Deleted {name}."),
            &format!("/studies?organization_id={org}"),
        )
    });
    or_flash(&c, r, &format!("/studies/{id}"))
}

#[derive(Deserialize)]
struct ScopeForm {
    scope_id: String,
}

#[derive(Deserialize)]
struct SourceForm {
    data_source_id: String,
}

/// Adds or removes a requested scope or an accepted data source, then says what changed.
async fn change_item(
    c: Console,
    state: web::Data<AppState>,
    id: i64,
    item: super::Item,
    add: bool,
) -> Result<HttpResponse, AppError> {
    let back = match item {
        super::Item::Scope(_) => format!("/studies/{id}#requested"),
        super::Item::Source(_) => format!("/studies/{id}#sources"),
    };
    let r = super::act(&state.db, &c.user, id, move |conn, user, scope, s| {
        if add {
            super::add(conn, user, scope, s, item)?;
        } else {
            super::remove(conn, user, scope, s, item)?;
        }
        item.name(conn)
    })
    .await
    .map(|name| {
        let said = match (item, add) {
            (super::Item::Scope(_), true) => format!("The study now requests {name}."),
            (super::Item::Scope(_), false) => format!("The study no longer requests {name}."),
            (super::Item::Source(_), true) => format!("The study now accepts data from {name}."),
            (super::Item::Source(_), false) => {
                format!("The study no longer accepts data from {name}.")
            }
        };
        c.done(said, &back)
    });
    or_flash(&c, r, &back)
}

fn form_id(v: &str) -> i64 {
    v.trim().parse().unwrap_or(-1)
}

async fn add_scope(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(form): CsrfForm<ScopeForm>,
) -> Result<HttpResponse, AppError> {
    let item = super::Item::Scope(form_id(&form.scope_id));
    change_item(c, state, id.into_inner(), item, true).await
}

async fn remove_scope(
    c: Console,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    _form: CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    let (id, scope_id) = path.into_inner();
    change_item(c, state, id, super::Item::Scope(scope_id), false).await
}

async fn add_source(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(form): CsrfForm<SourceForm>,
) -> Result<HttpResponse, AppError> {
    let item = super::Item::Source(form_id(&form.data_source_id));
    change_item(c, state, id.into_inner(), item, true).await
}

async fn remove_source(
    c: Console,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    _form: CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    let (id, source_id) = path.into_inner();
    change_item(c, state, id, super::Item::Source(source_id), false).await
}

/// Repeated `ids` fields: the checked patients.
fn ids_of(pairs: &[(String, String)]) -> Vec<i64> {
    pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .filter_map(|(_, v)| v.trim().parse().ok())
        .collect()
}

async fn enrol(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let ids = ids_of(&pairs);
    let asked = ids.iter().collect::<std::collections::BTreeSet<_>>().len();
    let back = crate::util::local_path(
        pairs
            .iter()
            .find(|(k, _)| k == "back")
            .map(|(_, v)| v.as_str()),
    )
    .unwrap_or_else(|| format!("/studies/{id}"));
    let r = super::act(&state.db, &c.user, id, move |conn, user, scope, s| {
        super::enrol(conn, user, scope, s, &ids)
    })
    .await
    .map(|n| {
        let msg = match asked - n {
            0 => format!("Enrolled {}.", crate::patient::bulk::patients(n)),
            same if n == 0 => format!(
                "{} already enrolled; nothing changed.",
                if same == 1 {
                    "That patient was".to_string()
                } else {
                    format!("All {same} patients were")
                }
            ),
            same => format!(
                "Enrolled {}; {} already enrolled.",
                crate::patient::bulk::patients(n),
                crate::patient::bulk::patients(same)
            ),
        };
        c.done(msg, &back)
    });
    or_flash(&c, r, &back)
}

async fn unenrol(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let ids = ids_of(&pairs);
    let back = crate::util::local_path(
        pairs
            .iter()
            .find(|(k, _)| k == "back")
            .map(|(_, v)| v.as_str()),
    )
    .unwrap_or_else(|| format!("/studies/{id}"));
    let r = super::act(&state.db, &c.user, id, move |conn, user, scope, s| {
        super::unenrol(conn, user, scope, s, &ids)
    })
    .await
    .map(|n| {
        c.done(
            format!(
                "Removed {} from the study, with their consent decisions in it.",
                crate::patient::bulk::patients(n)
            ),
            &back,
        )
    });
    or_flash(&c, r, &back)
}

/// Invites the checked enrolled patients by e-mail; an inactive study sends none.
async fn invite(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let ids = ids_of(&pairs);
    let back = format!("/studies/{id}#review");
    let (url, days) = (
        state.config.public_url.clone(),
        state.config.invitation_days,
    );
    let r = super::act(&state.db, &c.user, id, move |conn, user, scope, s| {
        super::require_active(s, "invitations")?;
        if ids.is_empty() {
            return Err(AppError::BadRequest(
                "Check at least one patient to invite.".into(),
            ));
        }
        let enrolled = repo::enrolled_among(conn, s.id, &ids)?;
        crate::invitation::issue_many(conn, user, scope, &enrolled, true, &url, days)
    })
    .await;
    let made = match r {
        Ok(made) => made,
        Err(e) => return or_flash(&c, Err(e), &back),
    };
    let failed = crate::invitation::pages::send_all(&state, &made).await;
    if failed.is_empty() {
        Ok(c.done(
            format!(
                "E-mailed {} an invitation link.",
                crate::patient::bulk::patients(made.len())
            ),
            &back,
        ))
    } else {
        c.flash(
            "error",
            format!(
                "Issued {} links; not delivered: {}. Copy those from each patient's page.",
                made.len(),
                failed.join(", ")
            ),
        );
        Ok(crate::console::see_other(&back))
    }
}
