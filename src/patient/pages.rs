//! The Patients tab: the list (search, sort, pages), Find or Create, the patient's page,
//! and the forms to edit, archive, restore and remove.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::model::{Identifier, Patient, PatientInput};
use super::repo::{self, Archived, ListFilter, Sort};
use crate::audit::Audit;
use crate::auth::pages::render_status;
use crate::auth::CsrfForm;
use crate::console::home::{selected_organization, OrgOption};
use crate::console::{query_string, Console, FormErrors, Paging, Shell, PAGE_SIZES};
use crate::error::AppError;
use crate::organization::{self, Organization, Role};
use crate::startup::AppState;
use crate::tag::{self, Tag};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/patients", web::get().to(list))
        .route("/patients", web::post().to(create));
    super::record::routes(cfg);
    super::bulk::routes(cfg);
}

/// The list's state, all of it in the query string so a list is bookmarkable.
#[derive(Deserialize, Default, Clone)]
pub struct ListQuery {
    pub organization_id: Option<String>,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub archived: String,
    #[serde(default)]
    pub sort: String,
    pub page: Option<String>,
    pub page_size: Option<String>,
    #[serde(default)]
    pub modal: String,
    #[serde(default)]
    pub email: String,
    /// Only patients with this tag (its id).
    pub tag: Option<String>,
    /// never, issued, expired or redeemed.
    #[serde(default)]
    pub invited: String,
    /// The study whose enrolled patients the list shows.
    pub study_id: Option<String>,
    /// With a study: consented, declined or pending.
    #[serde(default)]
    pub consent: String,
}

impl ListQuery {
    pub(super) fn archived(&self) -> Archived {
        match self.archived.as_str() {
            "archived" => Archived::Archived,
            "all" => Archived::All,
            _ => Archived::Active,
        }
    }
    pub(super) fn invited(&self) -> Option<repo::Invited> {
        repo::Invited::parse(&self.invited)
    }
    pub(super) fn tag_id(&self) -> Option<i64> {
        crate::console::num(&self.tag)
    }
    pub fn study(&self) -> Option<i64> {
        crate::console::num(&self.study_id)
    }
    /// The filter this list applies in `org_id`; `study` is the selected study of that
    /// organization (checked by the caller) with its requested scope ids.
    pub(super) fn filter(&self, org_id: i64, study: Option<(i64, Vec<i64>)>) -> ListFilter {
        let (study_id, consent) = match study {
            Some((id, scopes)) => (
                Some(id),
                repo::ConsentState::parse(&self.consent).map(|c| (c, scopes)),
            ),
            None => (None, None),
        };
        ListFilter {
            org_ids: vec![org_id],
            terms: super::search::query_terms(&self.q),
            archived: self.archived(),
            tag_id: self.tag_id(),
            invited: self.invited(),
            study_id,
            consent,
            ..ListFilter::default()
        }
    }
    fn sort(&self) -> Sort {
        match self.sort.as_str() {
            "birth_date" => Sort::BirthDate,
            "added" => Sort::Added,
            _ => Sort::FamilyName,
        }
    }
    /// This list's URL with some parameters changed.
    pub fn url(&self, org: i64, changes: &[(&str, String)]) -> String {
        let mut pairs = vec![
            ("organization_id", org.to_string()),
            ("q", self.q.clone()),
            ("archived", self.archived.clone()),
            ("sort", self.sort.clone()),
            ("page_size", self.page_size.clone().unwrap_or_default()),
            ("page", self.page.clone().unwrap_or_default()),
            ("tag", self.tag.clone().unwrap_or_default()),
            ("invited", self.invited.clone()),
            ("study_id", self.study_id.clone().unwrap_or_default()),
            ("consent", self.consent.clone()),
        ];
        for (k, v) in changes {
            match pairs.iter_mut().find(|(pk, _)| pk == k) {
                Some(p) => p.1 = v.clone(),
                None => pairs.push((k, v.clone())),
            }
        }
        format!("/patients?{}", query_string(&pairs))
    }
}

pub struct Row {
    pub p: Patient,
    pub identifiers: Vec<Identifier>,
    pub archived: bool,
    pub tags: Vec<Tag>,
    /// With a study selected: (consented, declined, pending) over its requested scopes.
    pub consent: (i64, i64, i64),
    /// With a study selected: what became of the latest invitation, if any.
    pub invitation: Option<&'static str>,
}

/// The add-patient modal's state: the e-mail step, then a match or the create form.
#[derive(Default)]
pub struct AddState {
    pub open: bool,
    pub email: String,
    pub email_error: String,
    pub searched: bool,
    /// A patient with this e-mail already here.
    pub here: Option<Patient>,
    /// A patient with this e-mail elsewhere: (id, name if the practitioner may see it).
    pub elsewhere: Option<(i64, Option<String>)>,
    pub form: PatientForm,
    pub errors: FormErrors,
}

#[derive(Template, WebTemplate)]
#[template(path = "patient/list.html")]
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
    add: AddState,
    /// The organization's tags, for the filter and the bulk actions.
    tags: Vec<Tag>,
    max_bulk: i64,
    /// Every study of the organization, for the selector and bulk enrolment.
    studies: Vec<crate::study::Study>,
    /// The selected study, with how many scopes it requests.
    study: Option<(crate::study::Study, usize)>,
}

impl ListPage {
    fn is_study(&self, id: &i64) -> bool {
        self.q.study() == Some(*id)
    }
}

async fn list_page(
    c: &Console,
    state: &web::Data<AppState>,
    q: ListQuery,
    mut add: AddState,
) -> Result<ListPage, AppError> {
    let user = c.user.clone();
    let requested = crate::console::num(&q.organization_id);
    let paging = Paging::new(
        crate::console::num(&q.page),
        crate::console::num(&q.page_size),
        &PAGE_SIZES,
    );
    // The page asked for, as the audit log notes it.
    let asked = paging.page;
    let q2 = q.clone();
    let lookup_email =
        (add.open && !add.searched && !q.email.trim().is_empty()).then(|| q.email.clone());
    let u = user.clone();
    let (org, options, rows, paging, found, tags, (studies, study)) = state
        .db
        .run(move |conn| {
            let user = u;
            let mut paging = paging;
            let (org, options) = selected_organization(conn, &user, requested)?;
            let Some((org, role)) = org else {
                paging.page = 1;
                return Ok((
                    None,
                    options,
                    Vec::new(),
                    paging,
                    None,
                    Vec::new(),
                    (Vec::new(), None),
                ));
            };
            let scope = organization::authorize(conn, &user, org.id, Role::Viewer)?;
            let studies = crate::study::repo::all_of(conn, org.id)?;
            let study = q2
                .study()
                .and_then(|id| studies.iter().find(|s| s.id == id).cloned());
            let requested: Vec<i64> = match &study {
                Some(s) => crate::study::repo::requested(conn, s.id)?
                    .iter()
                    .map(|sc| sc.id)
                    .collect(),
                None => Vec::new(),
            };
            let filter = q2.filter(org.id, study.as_ref().map(|s| (s.id, requested.clone())));
            let patients =
                paging.load(|off, lim| repo::list(conn, &filter, q2.sort(), off, lim))?;
            let ids: Vec<i64> = patients.iter().map(|p| p.id).collect();
            let mut idents = repo::identifiers(conn, &ids)?;
            let mut tagged = tag::repo::of_patients(conn, &scope, &ids)?;
            let (decisions, latest) = match &study {
                Some(s) => (
                    crate::consent::repo::decisions(conn, s.id, &ids)?,
                    crate::invitation::repo::latest_in_org(conn, org.id, &ids)?,
                ),
                None => (Vec::new(), Vec::new()),
            };
            let now = crate::util::now();
            let consent_of = |pid: i64| {
                let mine: Vec<_> = decisions
                    .iter()
                    .filter(|d| d.patient_id == pid && requested.contains(&d.scope_id))
                    .collect();
                let yes = mine.iter().filter(|d| d.consented).count() as i64;
                let no = mine.len() as i64 - yes;
                (yes, no, requested.len() as i64 - yes - no)
            };
            let invitation_of = |pid: i64| {
                latest
                    .iter()
                    .find(|i| i.patient_id == pid)
                    .map(|i| crate::invitation::status(i, now))
            };
            let archived: Vec<i64> = repo::organizations_of(conn, &ids)?
                .into_iter()
                .filter(|(_, o, at)| o.id == org.id && at.is_some())
                .map(|(pid, _, _)| pid)
                .collect();
            let rows = patients
                .into_iter()
                .map(|p| Row {
                    identifiers: {
                        let (mine, rest): (Vec<_>, Vec<_>) =
                            idents.drain(..).partition(|i| i.patient_id == p.id);
                        idents = rest;
                        mine
                    },
                    archived: archived.contains(&p.id),
                    consent: consent_of(p.id),
                    invitation: invitation_of(p.id),
                    tags: {
                        let (mine, rest): (Vec<_>, Vec<_>) =
                            tagged.drain(..).partition(|(pid, _)| *pid == p.id);
                        tagged = rest;
                        mine.into_iter().map(|(_, t)| t).collect()
                    },
                    p,
                })
                .collect();
            let found = match lookup_email {
                Some(email) => Some(find_for_add(conn, &user, &org, role, &email)?),
                None => None,
            };
            let tags = tag::repo::list(conn, &scope)?;
            let chosen = study.map(|s| (s, requested.len()));
            Ok((
                Some((org, role)),
                options,
                rows,
                paging,
                found,
                tags,
                (studies, chosen),
            ))
        })
        .await?;
    // The read's audit row goes through the batched queue (see patient::api::list).
    if let Some((o, _)) = &org {
        state.audit_queue.push(
            Audit::by(&user, "patient.list")
                .org(o.id)
                .detail(serde_json::json!({"q": q.q.clone(), "page": asked})),
        );
    }
    if let Some(found) = found {
        add = found;
    }
    let (org, role) = match org {
        Some((o, r)) => (Some(o), r),
        None => (None, Role::Viewer),
    };
    let org_id = org.as_ref().map(|o| o.id).unwrap_or_default();
    Ok(ListPage {
        shell: c.shell("Patients", "patients"),
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
        add,
        tags,
        max_bulk: super::bulk::MAX_BULK,
        studies,
        study,
    })
}

/// Find, in the add-patient flow: here already, elsewhere, or new.
fn find_for_add(
    conn: &mut crate::db::DbConnection,
    user: &crate::auth::CurrentUser,
    org: &Organization,
    role: Role,
    email: &str,
) -> Result<AddState, AppError> {
    let email = crate::util::normalize_email(email);
    let mut add = AddState {
        open: true,
        searched: true,
        email: email.clone(),
        ..AddState::default()
    };
    if role < Role::Member {
        return Err(AppError::Forbidden("Viewers cannot add patients.".into()));
    }
    if !crate::util::looks_like_email(&email) {
        add.searched = false;
        add.email_error = "Enter an e-mail address such as name@example.org.".into();
        return Ok(add);
    }
    match repo::find_by_email(conn, &email)? {
        Some(p) if repo::is_linked(conn, p.id, org.id)? => add.here = Some(p),
        Some(p) => {
            // Only what this practitioner may see: the name when they share an organization.
            let name = super::authorize(conn, user, p.id, Role::Viewer)
                .ok()
                .map(|_| format!("{} {}", p.name_given, p.name_family));
            add.elsewhere = Some((p.id, name));
        }
        None => {
            add.form = PatientForm {
                email: email.clone(),
                ..PatientForm::default()
            };
        }
    }
    Ok(add)
}

async fn list(
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<ListPage, AppError> {
    let q = q.into_inner();
    let add = AddState {
        open: q.modal == "add",
        ..AddState::default()
    };
    list_page(&c, &state, q, add).await
}

/// The create and edit form, as typed. Identifier rows come as `id_system_N`/`id_value_N`
/// for any N, so a patient with many identifiers keeps all of them through an edit.
#[derive(Default, Clone)]
pub struct PatientForm {
    pub organization_id: String,
    pub email: String,
    pub name_family: String,
    pub name_given: String,
    pub birth_date: String,
    pub phone: String,
    pub identifiers: Vec<(String, String)>,
    /// Create only: e-mail an invitation link as soon as the patient exists.
    pub send_invitation: bool,
}

impl PatientForm {
    pub(super) fn from_pairs(pairs: Vec<(String, String)>) -> PatientForm {
        let mut form = PatientForm::default();
        let mut rows: std::collections::BTreeMap<usize, (String, String)> = Default::default();
        for (k, v) in pairs {
            match k.as_str() {
                "organization_id" => form.organization_id = v,
                "email" => form.email = v,
                "name_family" => form.name_family = v,
                "name_given" => form.name_given = v,
                "birth_date" => form.birth_date = v,
                "phone" => form.phone = v,
                "send_invitation" => form.send_invitation = !v.is_empty(),
                _ => {
                    if let Some(n) = k.strip_prefix("id_system_").and_then(|n| n.parse().ok()) {
                        rows.entry(n).or_default().0 = v;
                    } else if let Some(n) = k.strip_prefix("id_value_").and_then(|n| n.parse().ok())
                    {
                        rows.entry(n).or_default().1 = v;
                    }
                }
            }
        }
        form.identifiers = rows.into_values().collect();
        form
    }

    pub(super) fn input(&self) -> PatientInput {
        PatientInput {
            email: self.email.clone(),
            name_family: self.name_family.clone(),
            name_given: self.name_given.clone(),
            birth_date: self.birth_date.clone(),
            phone: self.phone.clone(),
            identifiers: self.identifiers.clone(),
        }
    }

    /// The identifier rows to show: every one there is, and at least one empty to add to.
    pub fn rows(&self) -> Vec<(usize, String, String)> {
        let filled: Vec<&(String, String)> = self
            .identifiers
            .iter()
            .filter(|(s, v)| !s.trim().is_empty() || !v.trim().is_empty())
            .collect();
        let total = (filled.len() + 1).max(3);
        (0..total)
            .map(|i| {
                let (s, v) = filled
                    .get(i)
                    .map(|(s, v)| (s.clone(), v.clone()))
                    .unwrap_or_default();
                (i + 1, s, v)
            })
            .collect()
    }

    pub(super) fn from_patient(p: &Patient, ids: &[Identifier]) -> PatientForm {
        PatientForm {
            organization_id: String::new(),
            email: p.telecom_email.clone(),
            name_family: p.name_family.clone(),
            name_given: p.name_given.clone(),
            birth_date: p.birth_date.map(|d| d.to_string()).unwrap_or_default(),
            phone: p.telecom_phone.clone().unwrap_or_default(),
            identifiers: ids
                .iter()
                .map(|i| (i.system.clone(), i.value.clone()))
                .collect(),
            send_invitation: false,
        }
    }
}

pub(crate) fn org_param(s: &str) -> Result<i64, AppError> {
    s.trim().parse().map_err(|_| {
        AppError::BadRequest("The form did not say which organization; reload the page.".into())
    })
}

async fn create(
    c: Console,
    state: web::Data<AppState>,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let form = PatientForm::from_pairs(pairs);
    let org_id = org_param(&form.organization_id)?;
    let (user, input) = (c.user.clone(), form.input());
    let invite = form.send_invitation.then(|| {
        (
            state.config.public_url.clone(),
            state.config.invitation_days,
        )
    });
    let result = organization::act(
        &state.db,
        &user,
        org_id,
        Role::Member,
        move |conn, user, scope| {
            let id = super::create(conn, user, scope, &input)?;
            // The link is saved with the patient; the e-mail goes after the commit.
            let issued = match invite {
                Some((url, days)) => Some(crate::invitation::issue(
                    conn, user, scope, id, true, &url, days, None,
                )?),
                None => None,
            };
            Ok((id, issued))
        },
    )
    .await;
    match result {
        Ok((id, issued)) => {
            let name = format!("{} {}", form.name_given.trim(), form.name_family.trim());
            let to = format!("/patients/{id}?organization_id={org_id}");
            match issued {
                None => Ok(c.done(format!("Added {name}."), &to)),
                Some(issued) => match crate::invitation::pages::send(&state, &issued).await {
                    Ok(()) => Ok(c.done(
                        format!(
                            "Added {name} and e-mailed an invitation to {}.",
                            issued.email
                        ),
                        &to,
                    )),
                    Err(why) => {
                        c.flash(
                            "error",
                            format!("Added {name}, but the invitation e-mail was not delivered ({why}). Send a new link from the Invitations section."),
                        );
                        Ok(crate::console::see_other(&to))
                    }
                },
            }
        }
        Err(e @ (AppError::Forbidden(_) | AppError::NotFound(_))) => Err(e),
        Err(e) => {
            let q = ListQuery {
                organization_id: Some(org_id.to_string()),
                modal: "add".into(),
                ..ListQuery::default()
            };
            let add = AddState {
                open: true,
                searched: true,
                email: crate::util::normalize_email(&form.email),
                errors: FormErrors::from_error(e)?,
                form,
                ..AddState::default()
            };
            Ok(render_status(
                StatusCode::BAD_REQUEST,
                list_page(&c, &state, q, add).await?,
            ))
        }
    }
}
