//! The console's CSV import: upload a list, see every row's fate before anything is written,
//! then import the valid rows (or nothing), with an optional enrolment and invitations, and
//! a per-row outcome report.

use actix_session::SessionExt;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use futures_util::StreamExt;
use serde::Deserialize;

use super::repo::{self, Upload};
use super::{Checked, Preview};
use crate::auth::csrf::NoFields;
use crate::auth::pages::render_status;
use crate::auth::CsrfForm;
use crate::console::home::selected_organization;
use crate::console::{Console, Shell};
use crate::error::AppError;
use crate::organization::{self, Organization, Role};
use crate::startup::AppState;
use crate::study::Study;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/patients/import", web::get().to(upload_form))
        .route("/patients/import", web::post().to(upload))
        .route("/patients/import/template.csv", web::get().to(template))
        .route("/patients/imports/{id}", web::get().to(show))
        .route("/patients/imports/{id}/commit", web::post().to(commit))
        .route("/patients/imports/{id}/cancel", web::post().to(cancel))
        .route("/patients/imports/{id}/outcome.csv", web::get().to(outcome));
}

/// Rows of problems shown on the page; the outcome report has them all.
const SHOWN_PROBLEMS: usize = 500;

#[derive(Template, WebTemplate)]
#[template(path = "import/upload.html")]
struct UploadPage {
    shell: Shell,
    org: Organization,
    studies: Vec<Study>,
    error: String,
    max_rows: i64,
    max_mb: i64,
}

#[derive(Deserialize)]
struct OrgQuery {
    organization_id: Option<String>,
}

async fn upload_page(
    c: &Console,
    state: &web::Data<AppState>,
    requested: Option<i64>,
    error: String,
) -> Result<UploadPage, AppError> {
    let user = c.user.clone();
    let (org, studies) = state
        .db
        .run(move |conn| {
            let (org, _) = selected_organization(conn, &user, requested)?;
            let (org, _) = org.ok_or_else(|| AppError::not_found("Organization"))?;
            organization::authorize(conn, &user, org.id, Role::Member)?;
            let studies = crate::study::repo::all_of(conn, org.id)?
                .into_iter()
                .filter(|s| s.status == "active")
                .collect();
            Ok((org, studies))
        })
        .await?;
    Ok(UploadPage {
        shell: c.shell("Import patients", "patients"),
        org,
        studies,
        error,
        max_rows: state.config.import_max_rows,
        max_mb: state.config.import_max_bytes / (1024 * 1024),
    })
}

async fn upload_form(
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<OrgQuery>,
) -> Result<UploadPage, AppError> {
    let requested = q.organization_id.as_deref().and_then(|s| s.parse().ok());
    upload_page(&c, &state, requested, String::new()).await
}

async fn template() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"cohort-patients-template.csv\"",
        ))
        .body(super::parse::template())
}

/// The multipart form as sent.
#[derive(Default)]
struct UploadForm {
    csrf: String,
    organization_id: Option<i64>,
    study_id: Option<i64>,
    invite: bool,
    filename: String,
    file: Vec<u8>,
    too_large: bool,
}

async fn read_form(
    mut payload: actix_multipart::Multipart,
    limit: usize,
) -> Result<UploadForm, AppError> {
    let mut form = UploadForm::default();
    while let Some(field) = payload.next().await {
        let mut field = field.map_err(|e| {
            AppError::BadRequest(format!("The upload could not be read ({e}). Try again."))
        })?;
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            form.filename = field
                .content_disposition()
                .and_then(|d| d.get_filename())
                .unwrap_or("patients.csv")
                .to_string();
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| {
                AppError::BadRequest(format!("The upload could not be read ({e}). Try again."))
            })?;
            if value.len() + chunk.len() > limit {
                form.too_large = true;
                continue;
            }
            value.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8_lossy(&value).trim().to_string();
        match name.as_str() {
            "csrf_token" => form.csrf = text(),
            "organization_id" => form.organization_id = text().parse().ok(),
            "study_id" => form.study_id = text().parse().ok(),
            "invite" => form.invite = !value.is_empty(),
            "file" => form.file = value,
            _ => {}
        }
    }
    Ok(form)
}

async fn upload(
    c: Console,
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: actix_multipart::Multipart,
) -> Result<HttpResponse, AppError> {
    let limit = state.config.import_max_bytes as usize;
    let form = read_form(payload, limit).await?;
    let expected = crate::auth::session::expected_csrf(&req.get_session());
    if !expected.is_some_and(|e| crate::util::constant_time_eq(&form.csrf, &e)) {
        return Err(AppError::CsrfRejected);
    }
    let org_id = form.organization_id.ok_or_else(|| {
        AppError::BadRequest("The form did not say which organization; reload the page.".into())
    })?;
    let refuse = |why: String| async {
        Ok::<_, AppError>(render_status(
            StatusCode::BAD_REQUEST,
            upload_page(&c, &state, Some(org_id), why).await?,
        ))
    };
    if form.too_large {
        return refuse(format!(
            "The file is larger than {} MB. Split it into smaller files and import each.",
            state.config.import_max_bytes / (1024 * 1024)
        ))
        .await;
    }
    if form.file.is_empty() {
        return refuse("Choose a CSV file to upload.".into()).await;
    }
    let table = match super::parse::read(&form.file, state.config.import_max_rows as usize) {
        Ok(t) => t,
        Err(e) => return refuse(e.to_string()).await,
    };
    drop(table);
    // Read as UTF-8 above; kept as text, without the byte-order mark.
    let content = String::from_utf8_lossy(
        form.file
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or(&form.file),
    )
    .into_owned();
    let (filename, study_id, invite) = (form.filename.clone(), form.study_id, form.invite);
    let id = organization::act(
        &state.db,
        &c.user,
        org_id,
        Role::Member,
        move |conn, user, scope| {
            if let Some(sid) = study_id {
                crate::study::in_scope(conn, scope, sid)?;
            }
            repo::insert(
                conn,
                scope,
                user.id(),
                &filename,
                &content,
                study_id,
                invite,
            )
        },
    )
    .await?;
    Ok(crate::console::see_other(&format!(
        "/patients/imports/{id}"
    )))
}

#[derive(Template, WebTemplate)]
#[template(path = "import/show.html")]
struct ShowPage {
    shell: Shell,
    org: Organization,
    upload: Upload,
    study: Option<Study>,
    /// While waiting: the preview; after: None (the summary is in `result`).
    preview: Option<Preview>,
    /// The first rows with problems, for the page.
    problems: Vec<Checked>,
    result: Option<serde_json::Value>,
    can_edit: bool,
    /// A background run: (patients written, to write) when this instance runs it.
    progress: Option<(usize, usize)>,
    /// A background run that shows no sign of life: it can be started again.
    stopped: bool,
}

impl ShowPage {
    fn result_number(&self, key: &str) -> i64 {
        self.result
            .as_ref()
            .and_then(|r| r.get(key))
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
    }
    fn failed_mail(&self) -> Vec<String> {
        self.result
            .as_ref()
            .and_then(|r| r.get("notDelivered"))
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn error(&self) -> String {
        self.result
            .as_ref()
            .and_then(|r| r.get("error"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    }
    fn more_problems(&self) -> usize {
        self.preview
            .as_ref()
            .map(|p| p.invalid().len().saturating_sub(self.problems.len()))
            .unwrap_or(0)
    }
}

/// The upload and the caller's scope in its organization.
fn load(
    conn: &mut crate::db::DbConnection,
    user: &crate::auth::CurrentUser,
    id: i64,
    needed: Role,
) -> Result<(Upload, organization::OrgScope), AppError> {
    let org = repo::organization_of(conn, id)?.ok_or_else(|| AppError::not_found("Import"))?;
    let scope = match organization::authorize(conn, user, org, needed) {
        Err(AppError::NotFound(_)) => return Err(AppError::not_found("Import")),
        other => other?,
    };
    let upload = repo::find(conn, &scope, id)?.ok_or_else(|| AppError::not_found("Import"))?;
    Ok((upload, scope))
}

async fn show(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<ShowPage, AppError> {
    let id = id.into_inner();
    let (user, max_rows) = (c.user.clone(), state.config.import_max_rows as usize);
    let (upload, scope, org, study, preview) = state
        .db
        .run(move |conn| {
            let (upload, scope) = load(conn, &user, id, Role::Viewer)?;
            let org = organization::repo::get(conn, &scope)?;
            let study = match upload.study_id {
                Some(s) => crate::study::repo::find(conn, s)?,
                None => None,
            };
            let preview = if upload.status == "previewed" {
                let table = super::parse::read(upload.content.as_bytes(), max_rows)
                    .map_err(|e| AppError::BadRequest(e.to_string()))?;
                Some(super::check(
                    conn,
                    &scope,
                    &table,
                    crate::util::now().date(),
                )?)
            } else {
                None
            };
            Ok((upload, scope, org, study, preview))
        })
        .await?;
    let problems = preview
        .as_ref()
        .map(|p| {
            p.invalid()
                .into_iter()
                .take(SHOWN_PROBLEMS)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let result = upload
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    let progress = state
        .import_progress
        .lock()
        .ok()
        .and_then(|m| m.get(&id).copied());
    let stopped = upload.status == "running"
        && progress.is_none()
        && upload.started_at.is_some_and(|t| {
            t < crate::util::now() - chrono::Duration::minutes(STOPPED_AFTER_MINUTES)
        });
    Ok(ShowPage {
        progress,
        stopped,
        shell: c.shell(format!("Import of {}", upload.filename), "patients"),
        can_edit: scope.can(Role::Member),
        org,
        upload,
        study,
        preview,
        problems,
        result,
    })
}

#[derive(Deserialize)]
struct CommitForm {
    #[serde(default)]
    skip_invalid: String,
}

/// Files with more rows than this are imported in the background.
const BACKGROUND_ROWS: usize = 5_000;
/// A background run with no sign of life for this long is taken as stopped.
const STOPPED_AFTER_MINUTES: i64 = 30;

async fn commit(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(form): CsrfForm<CommitForm>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let back = format!("/patients/imports/{id}");
    let user = c.user.clone();
    let skip_invalid = !form.skip_invalid.is_empty();
    let max_rows = state.config.import_max_rows as usize;
    let running_here = state
        .import_progress
        .lock()
        .map(|m| m.contains_key(&id))
        .unwrap_or(false);
    // Large files go to the background: the run goes on if the browser closes.
    let background = state
        .db
        .tx(move |conn| {
            let (upload, _) = load(conn, &user, id, Role::Member)?;
            let stopped = crate::util::now() - chrono::Duration::minutes(STOPPED_AFTER_MINUTES);
            if !running_here {
                repo::reopen_stopped(conn, id, stopped)?;
            }
            let rows = super::parse::read(upload.content.as_bytes(), max_rows)
                .map(|t| t.rows.len())
                .unwrap_or(0);
            Ok(rows > BACKGROUND_ROWS && repo::start(conn, id)?)
        })
        .await?;
    if background {
        state
            .import_progress
            .lock()
            .map(|mut m| m.insert(id, (0, 0)))
            .ok();
        let (state, user) = (state.clone(), c.user.clone());
        actix_web::rt::spawn(async move {
            if let Err(e) = run(&state, user, id, skip_invalid).await {
                let why = serde_json::json!({"error": e.user_message()}).to_string();
                let _ = state
                    .db
                    .tx(move |conn| repo::finish(conn, id, "failed", Some(&why), None))
                    .await;
            }
            state.import_progress.lock().map(|mut m| m.remove(&id)).ok();
        });
        return Ok(c.done(
            "Importing in the background: you may close this page; it shows the progress and then the result.",
            &back,
        ));
    }
    match run(&state, c.user.clone(), id, skip_invalid).await {
        Ok(()) => Ok(c.done(
            "Imported. The summary and each row's outcome are below.",
            &back,
        )),
        Err(AppError::BadRequest(m) | AppError::Conflict(m)) => {
            c.flash("error", m);
            Ok(crate::console::see_other(&back))
        }
        Err(e) => Err(e),
    }
}

/// Imports an upload in one transaction, then sends its invitations and records how that
/// went. The same for a request and for a background run.
async fn run(
    state: &web::Data<AppState>,
    user: crate::auth::CurrentUser,
    id: i64,
    skip_invalid: bool,
) -> Result<(), AppError> {
    let (max_rows, url, days) = (
        state.config.import_max_rows as usize,
        state.config.public_url.clone(),
        state.config.invitation_days,
    );
    let st = state.clone();
    let (mut result, invitations) = state
        .db
        .tx_alone_if(true, move |conn| {
            let (upload, scope) = load(conn, &user, id, Role::Member)?;
            if upload.status != "previewed" && upload.status != "running" {
                return Err(AppError::Conflict("This file was already imported or set aside; upload it again to import it again.".into()));
            }
            let table = super::parse::read(upload.content.as_bytes(), max_rows)
                .map_err(|e| AppError::BadRequest(e.to_string()))?;
            let opts = super::Options {
                skip_invalid,
                study_id: upload.study_id,
                invite: upload.invite.then_some((url, days)),
            };
            let mut progress = |done: usize, total: usize| {
                if let Ok(mut m) = st.import_progress.lock() {
                    if let Some(p) = m.get_mut(&id) {
                        *p = (done, total);
                    }
                }
            };
            let report = super::commit(
                conn,
                &user,
                &scope,
                &table,
                &opts,
                crate::util::now().date(),
                &mut progress,
            )?;
            let p = &report.preview;
            let result = serde_json::json!({
                "created": p.new_patients(), "added": p.added(), "updated": p.updated(),
                "unchanged": p.unchanged(), "rejected": p.invalid().len(),
                "enrolled": report.enrolled, "invited": report.invitations.len(),
            });
            if !repo::finish(conn, id, "imported", Some(&result.to_string()), Some(&super::outcome_csv(p)))? {
                return Err(AppError::Conflict("This file was imported meanwhile.".into()));
            }
            Ok((result, report.invitations))
        })
        .await?;
    // E-mails go after the commit, so a mail failure loses no patient and no link.
    if !invitations.is_empty() {
        let failed = crate::invitation::pages::send_all(state, &invitations).await;
        result["sent"] = (invitations.len() - failed.len()).into();
        result["notDelivered"] = failed.into();
        let text = result.to_string();
        state
            .db
            .tx(move |conn| repo::set_result(conn, id, &text))
            .await?;
    }
    Ok(())
}

async fn cancel(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    _form: CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let user = c.user.clone();
    let org = state
        .db
        .tx(move |conn| {
            let (upload, _) = load(conn, &user, id, Role::Member)?;
            if !repo::finish(conn, id, "cancelled", None, None)? {
                return Err(AppError::Conflict(
                    "This file was already imported (or set aside) meanwhile; see the result below."
                        .into(),
                ));
            }
            Ok(upload.organization_id)
        })
        .await;
    let org = match org {
        Ok(org) => org,
        Err(AppError::Conflict(m)) => {
            c.flash("error", m);
            return Ok(crate::console::see_other(&format!(
                "/patients/imports/{id}"
            )));
        }
        Err(e) => return Err(e),
    };
    Ok(c.done(
        "Nothing was imported. Fix the file and upload it again.",
        &format!("/patients/import?organization_id={org}"),
    ))
}

async fn outcome(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let user = c.user.clone();
    let upload = state
        .db
        .run(move |conn| Ok(load(conn, &user, id, Role::Viewer)?.0))
        .await?;
    let csv = upload.outcome.ok_or_else(|| {
        AppError::NotFound("This import has no outcome report yet: import it first.".into())
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"import-{id}-outcome.csv\""),
        ))
        .body(csv))
}
