//! The page of one patient: demographics, identifiers, organizations and tags, and the forms
//! to edit, change the e-mail, tag, archive, restore, remove and add to an organization.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::model::{Identifier, Patient};
use super::pages::{org_param, PatientForm};
use super::repo;
use crate::auth::pages::render_status;
use crate::auth::{session, CsrfForm};
use crate::console::{Console, FormErrors, Shell};
use crate::error::AppError;
use crate::invitation::{self, Invitation};
use crate::organization::{self, Organization, Role};
use crate::startup::AppState;
use crate::tag::{self, Tag};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/patients/{id}", web::get().to(show))
        .route("/patients/{id}/update", web::post().to(update))
        .route("/patients/{id}/email", web::post().to(change_email))
        .route("/patients/{id}/archive", web::post().to(archive))
        .route("/patients/{id}/restore", web::post().to(restore))
        .route("/patients/{id}/remove", web::post().to(remove))
        .route("/patients/{id}/tags", web::post().to(add_tag))
        .route(
            "/patients/{id}/tags/{tag_id}/remove",
            web::post().to(remove_tag),
        )
        .route(
            "/patients/{id}/add-to-organization",
            web::post().to(add_to_organization),
        );
}

#[derive(Deserialize)]
struct OrgQuery {
    organization_id: Option<String>,
    #[serde(default)]
    modal: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "patient/show.html")]
pub struct ShowPage {
    shell: Shell,
    p: Patient,
    org: Organization,
    identifiers: Vec<Identifier>,
    organizations: Vec<(Organization, bool)>,
    archived: bool,
    can_edit: bool,
    modal: String,
    form: PatientForm,
    errors: FormErrors,
    removal: (i64, i64, bool),
    back_url: String,
    tags: Vec<Tag>,
    org_tags: Vec<Tag>,
    /// Invitation history, newest first, with the status a person reads.
    invitations: Vec<(Invitation, &'static str)>,
    /// A link issued just now: (its QR code, the link), shown once.
    new_link: Option<(String, String)>,
    /// The patient's studies the practitioner may see, with the decision per requested scope.
    consents: Vec<crate::consent::StudyConsents>,
    /// Registered apps an invitation can lead to: (id, name, is Cohort's own page).
    apps: Vec<(i64, String, bool)>,
}

impl ShowPage {
    fn any_pending(&self) -> bool {
        self.consents.iter().any(|s| !s.pending().is_empty())
    }
    fn any_decided(&self) -> bool {
        self.consents.iter().any(|s| !s.decided().is_empty())
    }
    /// The patient's active studies in this organization: those that can ask for data.
    fn active_studies(&self) -> Vec<&crate::study::Study> {
        self.consents
            .iter()
            .map(|s| &s.study)
            .filter(|s| {
                s.organization_id == self.org.id && s.status() == crate::study::Status::Active
            })
            .collect()
    }
}

async fn show_page(
    c: &Console,
    state: &web::Data<AppState>,
    id: i64,
    org_id: Option<i64>,
    modal: String,
    form: Option<PatientForm>,
    errors: FormErrors,
) -> Result<ShowPage, AppError> {
    let user = c.user.clone();
    let (
        scope,
        org,
        p,
        identifiers,
        organizations,
        removal,
        (tags, org_tags, invs, consents, apps),
    ) = state
        .db
        .tx(move |conn| {
            let scope = match org_id {
                Some(o) => {
                    let s = organization::authorize(conn, &user, o, Role::Viewer)?;
                    if !repo::is_linked(conn, id, o)? {
                        return Err(AppError::not_found("Patient"));
                    }
                    s
                }
                None => super::authorize(conn, &user, id, Role::Viewer)?,
            };
            let p = super::read(conn, &user, &scope, id)?;
            let org = organization::repo::get(conn, &scope)?;
            let identifiers = repo::identifiers(conn, &[id])?;
            let (_, visible) = organization::visible(conn, &user)?;
            let organizations: Vec<(Organization, bool)> = repo::organizations_of(conn, &[id])?
                .into_iter()
                .filter(|(_, o, _)| visible.contains_key(&o.id))
                .map(|(_, o, at)| (o, at.is_some()))
                .collect();
            let removal = super::removal_preview(conn, &scope, id)?;
            let tags: Vec<Tag> = tag::repo::of_patients(conn, &scope, &[id])?
                .into_iter()
                .map(|(_, t)| t)
                .collect();
            let org_tags = tag::repo::list(conn, &scope)?;
            let invs = invitation::repo::for_patient(conn, id, scope.org_id())?;
            let consents = crate::consent::of_patient(conn, &visible, id)?;
            let apps = crate::portal::oauth::clients(conn)?;
            Ok((
                scope,
                org,
                p,
                identifiers,
                organizations,
                removal,
                (tags, org_tags, invs, consents, apps),
            ))
        })
        .await?;
    let archived = organizations.iter().any(|(o, a)| o.id == org.id && *a);
    let now = crate::util::now();
    let new_link = match session::take::<(i64, String)>(&c.session, invitation::pages::NEW_LINK) {
        Some((pid, link)) if pid == id => Some((invitation::qr_svg(&link)?, link)),
        _ => None,
    };
    let can_edit = scope.can(Role::Member);
    let form = form.unwrap_or_else(|| match modal.as_str() {
        "email" => PatientForm::default(),
        _ => PatientForm::from_patient(&p, &identifiers),
    });
    Ok(ShowPage {
        shell: c.shell(format!("{} {}", p.name_given, p.name_family), "patients"),
        back_url: format!("/patients?organization_id={}", org.id),
        modal: if can_edit { modal } else { String::new() },
        p,
        org,
        identifiers,
        organizations,
        archived,
        can_edit,
        form,
        errors,
        removal,
        tags,
        org_tags,
        consents,
        invitations: invs
            .into_iter()
            .map(|i| {
                let st = invitation::status(&i, now);
                (i, st)
            })
            .collect(),
        new_link,
        apps: apps
            .into_iter()
            .map(|a| (a.id, a.is_default(), a.name))
            .map(|(id, own, name)| (id, name, own))
            .collect(),
    })
}

/// The patient's page again, with a form's messages beside its fields (status 400).
async fn again(
    c: &Console,
    state: &web::Data<AppState>,
    id: i64,
    org_id: i64,
    modal: &str,
    form: PatientForm,
    errors: FormErrors,
) -> Result<HttpResponse, AppError> {
    let page = show_page(c, state, id, Some(org_id), modal.into(), Some(form), errors).await?;
    Ok(render_status(StatusCode::BAD_REQUEST, page))
}

async fn show(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    q: web::Query<OrgQuery>,
) -> Result<ShowPage, AppError> {
    let org = crate::console::num(&q.organization_id);
    show_page(
        &c,
        &state,
        id.into_inner(),
        org,
        q.modal.clone(),
        None,
        FormErrors::default(),
    )
    .await
}

async fn update(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let form = PatientForm::from_pairs(pairs);
    let org_id = org_param(&form.organization_id)?;
    let (user, input) = (c.user.clone(), form.input());
    let result = organization::act(
        &state.db,
        &user,
        org_id,
        Role::Member,
        move |conn, user, scope| super::update(conn, user, scope, id, &input, true),
    )
    .await;
    match result {
        Ok(()) => Ok(c.done(
            "Saved the patient.",
            &format!("/patients/{id}?organization_id={org_id}"),
        )),
        Err(e @ (AppError::Forbidden(_) | AppError::NotFound(_))) => Err(e),
        Err(e) => {
            let errors = FormErrors::from_error(e)?;
            again(&c, &state, id, org_id, "edit", form, errors).await
        }
    }
}

#[derive(Deserialize)]
struct OrgForm {
    #[serde(default)]
    organization_id: String,
    /// For adding a patient of another organization: the e-mail that was looked up.
    #[serde(default)]
    email: String,
}

async fn set_archived(
    c: Console,
    state: web::Data<AppState>,
    id: i64,
    org: &str,
    archived: bool,
) -> Result<HttpResponse, AppError> {
    let org_id = org_param(org)?;
    let user = c.user.clone();
    organization::act(
        &state.db,
        &user,
        org_id,
        Role::Member,
        move |conn, user, scope| super::set_archived(conn, user, scope, id, archived),
    )
    .await?;
    let msg = if archived {
        "Archived the patient. They are hidden from the list until restored."
    } else {
        "Restored the patient."
    };
    Ok(c.done(msg, &format!("/patients/{id}?organization_id={org_id}")))
}

async fn archive(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(f): CsrfForm<OrgForm>,
) -> Result<HttpResponse, AppError> {
    set_archived(c, state, id.into_inner(), &f.organization_id, true).await
}

async fn restore(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(f): CsrfForm<OrgForm>,
) -> Result<HttpResponse, AppError> {
    set_archived(c, state, id.into_inner(), &f.organization_id, false).await
}

async fn remove(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(f): CsrfForm<OrgForm>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let org_id = org_param(&f.organization_id)?;
    let user = c.user.clone();
    let gone = organization::act(
        &state.db,
        &user,
        org_id,
        Role::Member,
        move |conn, user, scope| super::remove(conn, user, scope, id),
    )
    .await?;
    let msg = if gone {
        "Removed the patient. It was their last organization, so their record was deleted."
    } else {
        "Removed the patient from this organization."
    };
    Ok(c.done(msg, &format!("/patients?organization_id={org_id}")))
}

async fn add_to_organization(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(f): CsrfForm<OrgForm>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let org_id = org_param(&f.organization_id)?;
    let user = c.user.clone();
    let email = crate::util::normalize_email(&f.email);
    organization::act(
        &state.db,
        &user,
        org_id,
        Role::Member,
        move |conn, user, scope| {
            // Knowing the patient's e-mail (their identity here) is what lets a practitioner
            // add a patient they cannot otherwise see; a bare id is not enough.
            let p = repo::find(conn, id)?.filter(|p| p.telecom_email == email);
            if p.is_none() {
                return Err(AppError::not_found("Patient"));
            }
            super::add_to_organization(conn, user, scope, id)
        },
    )
    .await?;
    Ok(c.done(
        "Added the patient to this organization.",
        &format!("/patients/{id}?organization_id={org_id}"),
    ))
}

#[derive(Deserialize)]
struct EmailForm {
    #[serde(default)]
    organization_id: String,
    #[serde(default)]
    email: String,
    confirm: Option<String>,
}

async fn change_email(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(f): CsrfForm<EmailForm>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let org_id = org_param(&f.organization_id)?;
    let (user, email, confirmed) = (c.user.clone(), f.email.clone(), f.confirm.is_some());
    let result = organization::act(
        &state.db,
        &user,
        org_id,
        Role::Member,
        move |conn, user, scope| super::change_email(conn, user, scope, id, &email, confirmed),
    )
    .await;
    match result {
        Ok(()) => Ok(c.done(
            format!(
                "Changed the e-mail to {}. The patient signs in with it from now on.",
                crate::util::normalize_email(&f.email)
            ),
            &format!("/patients/{id}?organization_id={org_id}"),
        )),
        Err(e @ (AppError::Forbidden(_) | AppError::NotFound(_))) => Err(e),
        Err(e) => {
            let errors = FormErrors::from_error(e)?;
            let form = PatientForm {
                email: f.email.clone(),
                ..PatientForm::default()
            };
            again(&c, &state, id, org_id, "email", form, errors).await
        }
    }
}

#[derive(Deserialize)]
struct TagForm {
    #[serde(default)]
    organization_id: String,
    #[serde(default)]
    tag: String,
}

async fn add_tag(
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    CsrfForm(f): CsrfForm<TagForm>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    let org_id = org_param(&f.organization_id)?;
    let (user, name) = (c.user.clone(), f.tag.clone());
    let back = format!("/patients/{id}?organization_id={org_id}");
    let result = organization::act(
        &state.db,
        &user,
        org_id,
        Role::Member,
        move |conn, user, scope| {
            if !repo::is_linked(conn, id, org_id)? {
                return Err(AppError::not_found("Patient"));
            }
            tag::apply(conn, user, scope, &[id], &name)
        },
    )
    .await;
    match result {
        Ok((t, _)) => Ok(c.done(format!("Tagged “{}”.", t.name), &back)),
        Err(e @ AppError::Invalid(_)) => {
            c.flash("error", e.flash_text());
            Ok(crate::console::see_other(&back))
        }
        Err(e) => Err(e),
    }
}

async fn remove_tag(
    c: Console,
    state: web::Data<AppState>,
    path: web::Path<(i64, i64)>,
    CsrfForm(f): CsrfForm<TagForm>,
) -> Result<HttpResponse, AppError> {
    let (id, tag_id) = path.into_inner();
    let org_id = org_param(&f.organization_id)?;
    let user = c.user.clone();
    organization::act(
        &state.db,
        &user,
        org_id,
        Role::Member,
        move |conn, user, scope| tag::remove(conn, user, scope, &[id], tag_id),
    )
    .await?;
    Ok(c.done(
        "Removed the tag.",
        &format!("/patients/{id}?organization_id={org_id}"),
    ))
}
