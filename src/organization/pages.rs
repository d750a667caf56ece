//! The Organizations tab: the tree, one organization with its members, and the forms to
//! create, rename, delete and manage membership.

use actix_web::{web, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::access::{Manager, OrgAccess, Viewer};
use super::model::Member;
use super::{repo, Organization, Role, TreeNode, ORG_TYPES, ROOT_ID};
use crate::auth::csrf::NoFields;
use crate::auth::CsrfForm;
use crate::console::{Console, FormErrors, Shell};
use crate::error::AppError;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/organizations", web::get().to(list))
        .route("/organizations", web::post().to(create))
        .route("/organizations/{org_id}", web::get().to(show))
        .route("/organizations/{org_id}/update", web::post().to(update))
        .route("/organizations/{org_id}/delete", web::post().to(delete))
        .route(
            "/organizations/{org_id}/members",
            web::post().to(add_member),
        )
        .route(
            "/organizations/{org_id}/members/{practitioner_id}/role",
            web::post().to(change_role),
        )
        .route(
            "/organizations/{org_id}/members/{practitioner_id}/remove",
            web::post().to(remove_member),
        );
}

/// One line of the tree, flattened so the template can nest lists without recursion.
pub struct TreeRow {
    pub org: Organization,
    pub type_label: &'static str,
    pub role: Role,
    pub has_children: bool,
    /// How many nested lists close after this row.
    pub closes: usize,
}

fn flatten(nodes: &[TreeNode], out: &mut Vec<TreeRow>) {
    for n in nodes {
        out.push(TreeRow {
            org: n.org.clone(),
            type_label: super::type_label(&n.org.org_type),
            role: n.role,
            has_children: !n.children.is_empty(),
            closes: 0,
        });
        if !n.children.is_empty() {
            flatten(&n.children, out);
            if let Some(last) = out.last_mut() {
                last.closes += 1;
            }
        }
    }
}

/// What the create form holds, for re-showing it after a mistake.
#[derive(Default, Deserialize, Clone)]
pub struct OrgForm {
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "type")]
    pub org_type: String,
    #[serde(default)]
    pub part_of: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "organization/list.html")]
struct ListPage {
    shell: Shell,
    rows: Vec<TreeRow>,
    is_superuser: bool,
    /// The create modal, when open: the parent's id and name.
    create: Option<(i64, String)>,
    form: OrgForm,
    errors: FormErrors,
    types: &'static [(&'static str, &'static str)],
}

#[derive(Deserialize)]
struct ListQuery {
    modal: Option<String>,
    parent: Option<String>,
}

async fn list_page(
    c: &Console,
    state: &web::Data<AppState>,
    create_parent: Option<i64>,
    form: OrgForm,
    errors: FormErrors,
) -> Result<ListPage, AppError> {
    let user = c.user.clone();
    let (all, roles) = state
        .db
        .run(move |conn| super::visible(conn, &user))
        .await?;
    let mut rows = Vec::new();
    flatten(&super::build_tree(&all, &roles), &mut rows);
    let create = match create_parent {
        Some(ROOT_ID) if c.user.is_superuser() => Some((ROOT_ID, String::new())),
        Some(p) if roles.get(&p).is_some_and(|r| *r >= Role::Manager) => {
            all.iter().find(|o| o.id == p).map(|o| (p, o.name.clone()))
        }
        _ => None,
    };
    Ok(ListPage {
        shell: c.shell("Organizations", "organizations"),
        rows,
        is_superuser: c.user.is_superuser(),
        create,
        form,
        errors,
        types: ORG_TYPES,
    })
}

async fn list(
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<ListPage, AppError> {
    let parent = match q.modal.as_deref() {
        Some("create") => Some(
            q.parent
                .as_deref()
                .and_then(|p| p.parse().ok())
                .unwrap_or(ROOT_ID),
        ),
        _ => None,
    };
    let form = OrgForm {
        org_type: "team".into(),
        ..OrgForm::default()
    };
    list_page(&c, &state, parent, form, FormErrors::default()).await
}

async fn create(
    c: Console,
    state: web::Data<AppState>,
    CsrfForm(form): CsrfForm<OrgForm>,
) -> Result<HttpResponse, AppError> {
    let part_of: i64 = form.part_of.trim().parse().unwrap_or(ROOT_ID);
    let (user, f) = (c.user.clone(), form.clone());
    let result = state
        .db
        .tx(move |conn| super::create(conn, &user, &f.name, &f.org_type, part_of))
        .await;
    match result {
        Ok(id) => Ok(c.done(
            format!("Created {}.", form.name.trim()),
            &format!("/organizations/{id}"),
        )),
        // A refusal (no right to create here) is the error page's to explain: there is no
        // form this user may see again.
        Err(e @ (AppError::Forbidden(_) | AppError::NotFound(_))) => Err(e),
        Err(e) => {
            let errors = FormErrors::from_error(e)?;
            let page = list_page(&c, &state, Some(part_of), form, errors).await?;
            Ok(crate::auth::pages::render_status(
                actix_web::http::StatusCode::BAD_REQUEST,
                page,
            ))
        }
    }
}

pub struct MemberRow {
    pub m: Member,
    pub role: Role,
    pub is_me: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "organization/show.html")]
struct ShowPage {
    shell: Shell,
    org: Organization,
    type_label: &'static str,
    parents: Vec<Organization>,
    children: Vec<Organization>,
    members: Vec<MemberRow>,
    my_role: Role,
    can_manage: bool,
    modal: String,
    /// For the remove-member modal.
    removing: Option<MemberRow>,
    dependents: String,
    form: OrgForm,
    errors: FormErrors,
    member_email: String,
    member_role: String,
    member_errors: FormErrors,
    types: &'static [(&'static str, &'static str)],
    roles: [Role; 3],
}

#[derive(Deserialize, Default)]
struct ShowQuery {
    modal: Option<String>,
    member: Option<String>,
}

#[derive(Default)]
struct ShowState {
    modal: String,
    member: Option<i64>,
    form: Option<OrgForm>,
    errors: FormErrors,
    member_email: String,
    member_role: String,
    member_errors: FormErrors,
}

async fn show_page(
    c: &Console,
    state: &web::Data<AppState>,
    access: OrgAccess<Viewer>,
    s: ShowState,
) -> Result<ShowPage, AppError> {
    let scope = access.scope.clone();
    let me = c.user.practitioner_id;
    let user = c.user.clone();
    let (org, all, members, deps) = state
        .db
        .tx(move |conn| {
            let org = repo::get(conn, &scope)?;
            let (all, _) = super::visible(conn, &user)?;
            let members = repo::members(conn, &scope)?;
            let deps = repo::dependents(conn, &scope)?;
            if user.user.selected_organization_id != Some(org.id) {
                crate::practitioner::repo::set_selected_organization(
                    conn,
                    user.id(),
                    Some(org.id),
                )?;
            }
            Ok((org, all, members, deps))
        })
        .await?;
    let mut parents = Vec::new();
    let mut cur = org.part_of;
    while let Some(p) = cur.filter(|p| *p != ROOT_ID) {
        match all.iter().find(|o| o.id == p) {
            Some(o) if parents.len() < 64 => {
                parents.insert(0, o.clone());
                cur = o.part_of;
            }
            _ => break,
        }
    }
    let children = all
        .iter()
        .filter(|o| o.part_of == Some(org.id))
        .cloned()
        .collect();
    let rows: Vec<MemberRow> = members
        .into_iter()
        .map(|m| MemberRow {
            role: Role::parse(&m.role).unwrap_or(Role::Viewer),
            is_me: Some(m.practitioner_id) == me,
            m,
        })
        .collect();
    let removing = s
        .member
        .and_then(|pid| rows.iter().find(|r| r.m.practitioner_id == pid))
        .map(|r| MemberRow {
            m: r.m.clone(),
            role: r.role,
            is_me: r.is_me,
        });
    let can_manage = access.scope.can(Role::Manager);
    let form = s.form.unwrap_or_else(|| OrgForm {
        name: org.name.clone(),
        org_type: org.org_type.clone(),
        part_of: String::new(),
    });
    Ok(ShowPage {
        shell: c.shell(org.name.clone(), "organizations"),
        type_label: super::type_label(&org.org_type),
        org,
        parents,
        children,
        members: rows,
        my_role: access.scope.role(),
        can_manage,
        modal: if can_manage { s.modal } else { String::new() },
        removing,
        dependents: super::describe_dependents(deps),
        form,
        errors: s.errors,
        member_email: s.member_email,
        member_role: if s.member_role.is_empty() {
            "member".into()
        } else {
            s.member_role
        },
        member_errors: s.member_errors,
        types: ORG_TYPES,
        roles: Role::ALL,
    })
}

async fn show(
    c: Console,
    state: web::Data<AppState>,
    access: OrgAccess<Viewer>,
    q: web::Query<ShowQuery>,
) -> Result<ShowPage, AppError> {
    let s = ShowState {
        modal: q.modal.clone().unwrap_or_default(),
        member: q.member.as_deref().and_then(|m| m.parse().ok()),
        ..ShowState::default()
    };
    show_page(&c, &state, access, s).await
}

fn bad_request(page: ShowPage) -> HttpResponse {
    crate::auth::pages::render_status(actix_web::http::StatusCode::BAD_REQUEST, page)
}

/// Re-checks as a viewer, so the page can be shown again after a refused change.
fn as_viewer(a: &OrgAccess<Manager>) -> OrgAccess<Viewer> {
    OrgAccess::<Viewer>::from_parts(a.user.clone(), a.scope.clone())
}

async fn update(
    c: Console,
    state: web::Data<AppState>,
    access: OrgAccess<Manager>,
    CsrfForm(form): CsrfForm<OrgForm>,
) -> Result<HttpResponse, AppError> {
    let (scope, user, f) = (access.scope.clone(), c.user.clone(), form.clone());
    let result = state
        .db
        .tx(move |conn| super::update(conn, &user, &scope, &f.name, &f.org_type))
        .await;
    let id = access.scope.org_id();
    match result {
        Ok(()) => Ok(c.done("Saved the organization.", &format!("/organizations/{id}"))),
        Err(e) => {
            let s = ShowState {
                modal: "edit".into(),
                form: Some(form),
                errors: FormErrors::from_error(e)?,
                ..ShowState::default()
            };
            Ok(bad_request(
                show_page(&c, &state, as_viewer(&access), s).await?,
            ))
        }
    }
}

async fn delete(
    c: Console,
    state: web::Data<AppState>,
    access: OrgAccess<Manager>,
    _f: CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    let (scope, user) = (access.scope.clone(), c.user.clone());
    let result = state
        .db
        .tx(move |conn| super::delete(conn, &user, &scope))
        .await;
    match result {
        Ok(()) => Ok(c.done("Deleted the organization.", "/organizations")),
        Err(e) => {
            let s = ShowState {
                modal: "delete".into(),
                errors: FormErrors::from_error(e)?,
                ..ShowState::default()
            };
            Ok(bad_request(
                show_page(&c, &state, as_viewer(&access), s).await?,
            ))
        }
    }
}

#[derive(Deserialize)]
struct MemberForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

async fn add_member(
    c: Console,
    state: web::Data<AppState>,
    access: OrgAccess<Manager>,
    CsrfForm(form): CsrfForm<MemberForm>,
) -> Result<HttpResponse, AppError> {
    let (scope, user) = (access.scope.clone(), c.user.clone());
    let (email, role_text) = (form.email.clone(), form.role.clone());
    let result = state
        .db
        .tx(move |conn| {
            let role = Role::parse(&role_text)
                .ok_or_else(|| AppError::invalid("role", "Choose manager, member or viewer."))?;
            if email.trim().is_empty() {
                return Err(AppError::invalid(
                    "email",
                    "Enter the practitioner's e-mail address.",
                ));
            }
            super::add_member(conn, &user, &scope, &email, role)
        })
        .await;
    let id = access.scope.org_id();
    match result {
        Ok(_) => Ok(c.done(
            format!(
                "Added {} as {}.",
                crate::util::normalize_email(&form.email),
                Role::parse(&form.role)
                    .map(Role::as_str)
                    .unwrap_or_default()
            ),
            &format!("/organizations/{id}"),
        )),
        Err(e) => {
            let s = ShowState {
                member_email: form.email,
                member_role: form.role,
                member_errors: FormErrors::from_error(e)?,
                ..ShowState::default()
            };
            Ok(bad_request(
                show_page(&c, &state, as_viewer(&access), s).await?,
            ))
        }
    }
}

#[derive(Deserialize)]
struct RoleForm {
    #[serde(default)]
    role: String,
}

async fn change_role(
    c: Console,
    state: web::Data<AppState>,
    access: OrgAccess<Manager>,
    path: web::Path<(i64, i64)>,
    CsrfForm(form): CsrfForm<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let (org_id, pid) = path.into_inner();
    let (scope, user) = (access.scope.clone(), c.user.clone());
    let result = state
        .db
        .tx(move |conn| {
            let role = Role::parse(&form.role)
                .ok_or_else(|| AppError::invalid("role", "Choose manager, member or viewer."))?;
            super::change_role(conn, &user, &scope, pid, role)?;
            Ok(role)
        })
        .await;
    let back = format!("/organizations/{org_id}");
    match result {
        Ok(role) => Ok(c.done(format!("Changed the role to {}.", role.as_str()), &back)),
        Err(e) => {
            let errors = FormErrors::from_error(e)?;
            c.flash(
                "error",
                if errors.form.is_empty() {
                    errors.get("role")
                } else {
                    errors.form
                },
            );
            Ok(crate::console::see_other(&back))
        }
    }
}

async fn remove_member(
    c: Console,
    state: web::Data<AppState>,
    access: OrgAccess<Manager>,
    path: web::Path<(i64, i64)>,
    _f: CsrfForm<NoFields>,
) -> Result<HttpResponse, AppError> {
    let (org_id, pid) = path.into_inner();
    let (scope, user) = (access.scope.clone(), c.user.clone());
    let result = state
        .db
        .tx(move |conn| super::remove_member(conn, &user, &scope, pid))
        .await;
    let back = format!("/organizations/{org_id}");
    match result {
        Ok(()) => Ok(c.done("Removed the member.", &back)),
        Err(e) => {
            let errors = FormErrors::from_error(e)?;
            c.flash("error", errors.form);
            Ok(crate::console::see_other(&back))
        }
    }
}
