//! The pages patients open: an invitation link (answer per study, come back to change,
//! then connect an app) and a study's sign-up link. Small, without JavaScript, readable on
//! a phone; every sentence comes from `text`.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::NaiveDate;
use serde::Deserialize;

use super::text::{fill, Texts};
use super::{LinkState, Offer, Via};
use crate::auth::pages::render_status;
use crate::auth::session::{self, Flash};
use crate::auth::CsrfForm;
use crate::console::see_other;
use crate::error::AppError;
use crate::startup::AppState;
use crate::study::Status;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/invite/connected", web::get().to(connected))
        .route("/invite/{token}", web::get().to(invitation))
        .route("/invite/{token}", web::post().to(answer))
        .route("/invite/{token}/qr.svg", web::get().to(qr))
        .route("/join/{study}", web::get().to(join_form))
        .route("/join/{study}", web::post().to(join));
}

/// What portal/base.html needs.
pub struct Page {
    pub t: &'static Texts,
    pub title: String,
    pub flash: Vec<Flash>,
    pub csrf: String,
}

impl Page {
    fn new(req: &HttpRequest, session: &Session, title: impl Into<String>) -> Page {
        Page {
            t: super::text::for_request(req),
            title: title.into(),
            flash: session::take_flash(session),
            csrf: session::csrf_token(session),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/message.html")]
struct Message {
    page: Page,
    heading: String,
    body: String,
    alert: bool,
}

fn message(
    req: &HttpRequest,
    session: &Session,
    status: StatusCode,
    heading: String,
    body: String,
) -> HttpResponse {
    let alert = !status.is_success();
    render_status(
        status,
        Message {
            page: Page::new(req, session, heading.clone()),
            heading,
            body,
            alert,
        },
    )
}

/// One requested item on a form.
pub struct ItemView {
    pub scope_id: i64,
    pub name: String,
    /// "yes", "no" or "" (not answered).
    pub answer: &'static str,
}

pub struct StudyView {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub paused: bool,
    pub devices: String,
    pub items: Vec<ItemView>,
}

fn answer_word(a: Option<bool>) -> &'static str {
    match a {
        Some(true) => "yes",
        Some(false) => "no",
        None => "",
    }
}

fn study_views(t: &Texts, offers: &[Offer]) -> Vec<StudyView> {
    offers
        .iter()
        .map(|o| StudyView {
            id: o.study.id,
            name: o.study.name.clone(),
            description: o.study.description.clone(),
            paused: o.paused(),
            devices: if o.devices.is_empty() {
                t.from_any_device.to_string()
            } else {
                fill(t.from_devices, &[("devices", &o.devices.join(", "))])
            },
            items: o
                .items
                .iter()
                .map(|i| ItemView {
                    scope_id: i.scope.id,
                    name: i.scope.text.clone(),
                    answer: answer_word(i.answer),
                })
                .collect(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "portal/invite.html")]
struct InvitePage {
    page: Page,
    token: String,
    intro: String,
    until: String,
    no_studies: String,
    studies: Vec<StudyView>,
    /// Any answer given yet: then the page explains the data path and offers an app.
    answered: bool,
    any_yes: bool,
    link: String,
    /// (label, address) of each registered app besides Cohort's own page.
    apps: Vec<(String, String)>,
}

/// The refusal page for a link that does not open.
fn closed_link(req: &HttpRequest, session: &Session, state: LinkState) -> HttpResponse {
    let t = super::text::for_request(req);
    let (status, title, body) = match state {
        LinkState::Unknown | LinkState::Open(_) => (
            StatusCode::NOT_FOUND,
            t.unknown_title,
            t.unknown_body.to_string(),
        ),
        LinkState::Expired { org, on } => (
            StatusCode::GONE,
            t.expired_title,
            fill(
                t.expired_body,
                &[("date", &on.format("%Y-%m-%d").to_string()), ("org", &org)],
            ),
        ),
        LinkState::Replaced { org } => (
            StatusCode::GONE,
            t.replaced_title,
            fill(t.replaced_body, &[("org", &org)]),
        ),
        LinkState::Used { org } => (
            StatusCode::CONFLICT,
            t.used_title,
            fill(t.used_body, &[("org", &org)]),
        ),
    };
    message(req, session, status, title.to_string(), body)
}

async fn invitation(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let session = actix_session::SessionExt::get_session(&req);
    let token = token.into_inner();
    let tk = token.clone();
    let (link_state, offers, apps) = state
        .db
        .run(move |conn| {
            let s = super::open_link(conn, &tk)?;
            let (offers, apps) = match &s {
                LinkState::Open(open) => (
                    super::offers(conn, open.patient.id, open.invitation.organization_id)?,
                    super::oauth::clients(conn)?,
                ),
                _ => (Vec::new(), Vec::new()),
            };
            Ok((s, offers, apps))
        })
        .await?;
    let LinkState::Open(open) = link_state else {
        return Ok(closed_link(&req, &session, link_state));
    };
    let url = &state.config.public_url;
    let page = Page::new(&req, &session, String::new());
    let t = page.t;
    let org = open.org.as_str();
    let title = fill(t.invite_title, &[("org", org)]);
    let answered = offers
        .iter()
        .any(|o| o.items.iter().any(|i| i.answer.is_some()));
    let any_yes = offers
        .iter()
        .any(|o| o.items.iter().any(|i| i.answer == Some(true)));
    Ok(render_status(
        StatusCode::OK,
        InvitePage {
            page: Page { title, ..page },
            intro: fill(t.invite_intro, &[("org", org)]),
            until: fill(
                t.invite_until,
                &[(
                    "date",
                    &open.invitation.expires_at.format("%Y-%m-%d").to_string(),
                )],
            ),
            no_studies: fill(t.no_studies, &[("org", org)]),
            studies: study_views(t, &offers),
            answered,
            any_yes,
            link: crate::invitation::link(url, &token),
            apps: apps
                .iter()
                .filter(|c| !c.is_default())
                .map(|c| (fill(t.open_in, &[("app", &c.name)]), c.link(url, &token)))
                .collect(),
            token,
        },
    ))
}

/// The form's answers: `a-{study}-{scope}` = yes | no; a `all` button = `{study}:yes|no`
/// answers every item of that study.
fn answers_of(
    form: &[(String, String)],
    offers: &[Offer],
) -> Result<Vec<(i64, i64, Option<bool>)>, AppError> {
    let all: Option<(i64, bool)> = form
        .iter()
        .find(|(k, _)| k == "all")
        .and_then(|(_, v)| v.split_once(':'))
        .and_then(|(s, a)| Some((s.parse().ok()?, a == "yes")));
    let mut out = Vec::new();
    for (k, v) in form {
        let Some(rest) = k.strip_prefix("a-") else {
            continue;
        };
        let (s, c) = rest
            .split_once('-')
            .ok_or_else(|| AppError::BadRequest("The form could not be read.".into()))?;
        let (Ok(study), Ok(scope)) = (s.parse::<i64>(), c.parse::<i64>()) else {
            return Err(AppError::BadRequest("The form could not be read.".into()));
        };
        // Only what the page offered: a closed study takes no answers.
        if !offers.iter().any(|o| o.study.id == study) {
            return Err(AppError::BadRequest(
                "That study is not taking answers on this page; reload it to see what is open."
                    .into(),
            ));
        }
        if all.is_some_and(|(a, _)| a == study) {
            continue;
        }
        let yes = match v.as_str() {
            "yes" => true,
            "no" => false,
            _ => continue,
        };
        out.push((study, scope, Some(yes)));
    }
    if let Some((study, yes)) = all {
        let offer = offers
            .iter()
            .find(|o| o.study.id == study)
            .ok_or_else(|| AppError::not_found("Study"))?;
        out.extend(offer.items.iter().map(|i| (study, i.scope.id, Some(yes))));
    }
    Ok(out)
}

async fn answer(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let session = actix_session::SessionExt::get_session(&req);
    let t = super::text::for_request(&req);
    let token = token.into_inner();
    let tk = token.clone();
    let ip = crate::auth::client_ip(&req);
    let outcome = state
        .db
        .tx(move |conn| {
            let s = super::open_link(conn, &tk)?;
            let LinkState::Open(open) = s else {
                return Ok(Err(s));
            };
            let org = open.invitation.organization_id;
            let offers = super::offers(conn, open.patient.id, org)?;
            let changes = answers_of(&form, &offers)?;
            let via = Via {
                channel: "invitation",
                ip,
                token_id: None,
            };
            Ok(Ok(super::decide(
                conn,
                &open.patient,
                Some(org),
                &changes,
                &via,
            )?))
        })
        .await?;
    match outcome {
        Err(closed) => Ok(closed_link(&req, &session, closed)),
        Ok(changed) => {
            let (kind, text) = if changed > 0 {
                ("success", t.saved)
            } else {
                ("info", t.nothing_changed)
            };
            session::flash(&session, kind, text);
            Ok(see_other(&format!("/invite/{token}")))
        }
    }
}

async fn qr(
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let token = token.into_inner();
    let tk = token.clone();
    let open = state
        .db
        .run(move |conn| Ok(matches!(super::open_link(conn, &tk)?, LinkState::Open(_))))
        .await?;
    if !open {
        return Err(AppError::not_found("Invitation"));
    }
    let svg =
        crate::invitation::qr_svg(&crate::invitation::link(&state.config.public_url, &token))?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("Cache-Control", "private, max-age=300"))
        .body(svg))
}

/// Where Cohort's own client lands after an app connected.
async fn connected(req: HttpRequest) -> HttpResponse {
    let session = actix_session::SessionExt::get_session(&req);
    let t = super::text::for_request(&req);
    message(
        &req,
        &session,
        StatusCode::OK,
        t.connected_title.into(),
        t.connected_body.into(),
    )
}

// ---- Study sign-up --------------------------------------------------------------------------

#[derive(Deserialize)]
struct JoinQuery {
    #[serde(default)]
    sig: String,
    #[serde(rename = "ref")]
    reference: Option<String>,
}

#[derive(Default)]
struct JoinErrors {
    email: String,
    given: String,
    family: String,
    birth: String,
}

impl JoinErrors {
    fn any(&self) -> bool {
        !(self.email.is_empty()
            && self.given.is_empty()
            && self.family.is_empty()
            && self.birth.is_empty())
    }
}

#[derive(Default)]
struct JoinValues {
    email: String,
    given: String,
    family: String,
    birth: String,
}

/// One input of the sign-up form.
struct FieldView {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    auto: &'static str,
    value: String,
    hint: &'static str,
    error: String,
    described_by: String,
}

impl FieldView {
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &'static str,
        label: &'static str,
        kind: &'static str,
        auto: &'static str,
        value: String,
        hint: &'static str,
        error: String,
    ) -> FieldView {
        let mut ids = Vec::new();
        if !hint.is_empty() {
            ids.push(format!("f-{name}-hint"));
        }
        if !error.is_empty() {
            ids.push(format!("f-{name}-error"));
        }
        FieldView {
            name,
            label,
            kind,
            auto,
            value,
            hint,
            error,
            described_by: ids.join(" "),
        }
    }
}

#[derive(Template)]
#[template(path = "portal/join.html")]
struct JoinPage {
    page: Page,
    action: String,
    intro: String,
    personal: String,
    study: StudyView,
    fields: Vec<FieldView>,
}

/// The study a sign-up link names, when its signature holds and it takes people in; else
/// the page that says why not.
async fn signed_study(
    req: &HttpRequest,
    session: &Session,
    state: &AppState,
    study_id: &str,
    q: &JoinQuery,
) -> Result<Result<(crate::study::Study, String, Offer), HttpResponse>, AppError> {
    let t = super::text::for_request(req);
    let bad = || {
        message(
            req,
            session,
            StatusCode::NOT_FOUND,
            t.join_bad_title.into(),
            t.join_bad_body.into(),
        )
    };
    let Ok(study_id) = study_id.parse::<i64>() else {
        return Ok(Err(bad()));
    };
    let reference = q.reference.as_deref();
    if !super::signup::verify(state.secret(), study_id, reference, q.sig.trim()) {
        return Ok(Err(bad()));
    }
    let found = state
        .db
        .run(move |conn| {
            let Some(study) = crate::study::repo::find(conn, study_id)? else {
                return Ok(None);
            };
            let org = crate::organization::repo::find(conn, study.organization_id)?
                .map(|o| o.name)
                .unwrap_or_default();
            let items = crate::study::repo::requested(conn, study.id)?
                .into_iter()
                .map(|scope| super::Item {
                    scope,
                    answer: None,
                })
                .collect();
            let devices = crate::study::repo::data_sources_of(conn, &[study.id])?
                .into_iter()
                .map(|(_, d)| d.name)
                .collect();
            Ok(Some((study, org, items, devices)))
        })
        .await?;
    let Some((study, org, items, devices)) = found else {
        return Ok(Err(bad()));
    };
    if let Err(status) = super::signup::open_for_joining(&study) {
        let name = study.name.as_str();
        let vals = [("study", name), ("org", org.as_str())];
        return Ok(Err(match status {
            Status::Paused => message(
                req,
                session,
                StatusCode::CONFLICT,
                t.join_paused_title.into(),
                fill(t.join_paused_body, &vals),
            ),
            _ => message(
                req,
                session,
                StatusCode::GONE,
                t.join_closed_title.into(),
                fill(t.join_closed_body, &vals),
            ),
        }));
    }
    let offer = Offer {
        study: study.clone(),
        items,
        devices,
    };
    Ok(Ok((study, org, offer)))
}

fn join_page(
    req: &HttpRequest,
    session: &Session,
    org: &str,
    offer: &Offer,
    q: &JoinQuery,
    values: JoinValues,
    errors: JoinErrors,
) -> HttpResponse {
    let page = Page::new(req, session, String::new());
    let t = page.t;
    let title = fill(t.join_title, &[("study", &offer.study.name)]);
    let mut action = format!("/join/{}?sig={}", offer.study.id, q.sig.trim());
    if let Some(r) = &q.reference {
        action.push_str("&ref=");
        action.extend(url::form_urlencoded::byte_serialize(r.as_bytes()));
    }
    let status = if errors.any() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    // Only an active study's form is shown, so its view is never marked paused.
    let study = study_views(t, std::slice::from_ref(offer))
        .pop()
        .expect("one offer, one view");
    render_status(
        status,
        JoinPage {
            page: Page { title, ..page },
            action,
            intro: fill(t.join_intro, &[("org", org)]),
            personal: q
                .reference
                .as_deref()
                .map(|r| fill(t.join_personal, &[("ref", r)]))
                .unwrap_or_default(),
            study,
            fields: vec![
                FieldView::new(
                    "email",
                    t.email,
                    "email",
                    "email",
                    values.email,
                    "",
                    errors.email,
                ),
                FieldView::new(
                    "given",
                    t.given,
                    "text",
                    "given-name",
                    values.given,
                    "",
                    errors.given,
                ),
                FieldView::new(
                    "family",
                    t.family,
                    "text",
                    "family-name",
                    values.family,
                    "",
                    errors.family,
                ),
                FieldView::new(
                    "birth",
                    t.birth,
                    "date",
                    "bday",
                    values.birth,
                    t.birth_hint,
                    errors.birth,
                ),
            ],
        },
    )
}

async fn join_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    study: web::Path<String>,
    q: web::Query<JoinQuery>,
) -> Result<HttpResponse, AppError> {
    let session = actix_session::SessionExt::get_session(&req);
    Ok(
        match signed_study(&req, &session, &state, &study, &q).await? {
            Err(page) => page,
            Ok((_, org, offer)) => join_page(
                &req,
                &session,
                &org,
                &offer,
                &q,
                JoinValues::default(),
                JoinErrors::default(),
            ),
        },
    )
}

fn form_value(form: &[(String, String)], key: &str) -> String {
    form.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

async fn join(
    req: HttpRequest,
    state: web::Data<AppState>,
    study: web::Path<String>,
    q: web::Query<JoinQuery>,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let session = actix_session::SessionExt::get_session(&req);
    let t = super::text::for_request(&req);
    let (study, org, offer) = match signed_study(&req, &session, &state, &study, &q).await? {
        Err(page) => return Ok(page),
        Ok(found) => found,
    };
    let values = JoinValues {
        email: form_value(&form, "email"),
        given: form_value(&form, "given"),
        family: form_value(&form, "family"),
        birth: form_value(&form, "birth"),
    };
    // The answers are kept on the form when it comes back with an error.
    let changes = answers_of(&form, std::slice::from_ref(&offer))?;
    let mut offer = offer;
    for item in &mut offer.items {
        if let Some(c) = changes.iter().find(|c| c.1 == item.scope.id) {
            item.answer = c.2;
        }
    }
    let mut errors = JoinErrors::default();
    if !crate::util::looks_like_email(&values.email) {
        errors.email = t.err_email.into();
    }
    if values.given.is_empty() || values.given.chars().count() > 100 {
        errors.given = t.err_given.into();
    }
    if values.family.is_empty() || values.family.chars().count() > 100 {
        errors.family = t.err_family.into();
    }
    let birth = NaiveDate::parse_from_str(&values.birth, "%Y-%m-%d").ok();
    match birth {
        None => errors.birth = t.err_birth.into(),
        Some(b) if b > crate::util::now().date() => errors.birth = t.err_birth_future.into(),
        Some(_) => {}
    }
    let (Some(birth), false) = (birth, errors.any()) else {
        session::flash(&session, "error", t.fix_below);
        return Ok(join_page(&req, &session, &org, &offer, &q, values, errors));
    };
    let details = super::signup::Details {
        email: crate::util::normalize_email(&values.email),
        given: values.given.clone(),
        family: values.family.clone(),
        birth,
    };
    let reference = q.reference.clone();
    let ip = crate::auth::client_ip(&req);
    let days = state.config.invitation_days;
    let sid = study.id;
    let outcome = state
        .db
        .tx(move |conn| {
            let joined = match super::signup::join(
                conn,
                &study,
                reference.as_deref(),
                &details,
                ip.clone(),
            )? {
                Ok(j) => j,
                Err(refused) => return Ok(Err(refused)),
            };
            let answers: Vec<(i64, i64, Option<bool>)> =
                changes.into_iter().filter(|c| c.0 == sid).collect();
            super::decide(
                conn,
                &joined.patient,
                Some(study.organization_id),
                &answers,
                &Via {
                    channel: "sign-up",
                    ip,
                    token_id: None,
                },
            )?;
            // Someone new gets their own invitation page at once, to come back to and to
            // connect an app; a matched participant's link goes to their known address only.
            let token = if joined.existing {
                None
            } else {
                let (_, token) = crate::invitation::repo::issue(
                    conn,
                    joined.patient.id,
                    study.organization_id,
                    None,
                    false,
                    days,
                    None,
                )?;
                Some(token)
            };
            Ok(Ok((joined, token)))
        })
        .await?;
    let vals = [("study", offer.study.name.as_str()), ("org", org.as_str())];
    match outcome {
        Err(refused) => {
            match refused {
                super::signup::Refused::Mismatch => errors.birth = fill(t.err_mismatch, &vals),
                super::signup::Refused::ReferenceTaken => {
                    errors.email = fill(t.err_ref_taken, &vals)
                }
                super::signup::Refused::Practitioner => errors.email = t.err_practitioner.into(),
            }
            session::flash(&session, "error", t.fix_below);
            Ok(join_page(&req, &session, &org, &offer, &q, values, errors))
        }
        Ok((_, Some(token))) => {
            session::flash(
                &session,
                "success",
                format!(
                    "{}. {}",
                    fill(t.joined_title, &vals),
                    fill(t.joined_new, &vals)
                ),
            );
            Ok(see_other(&format!("/invite/{token}")))
        }
        Ok((_, None)) => Ok(message(
            &req,
            &session,
            StatusCode::OK,
            fill(t.joined_title, &vals),
            fill(t.joined_existing, &vals),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(study: i64, scopes: &[i64]) -> Offer {
        let t = crate::util::now();
        Offer {
            study: crate::study::Study {
                id: study,
                organization_id: 1,
                name: "S".into(),
                description: String::new(),
                icon_url: None,
                status: "active".into(),
                created_at: t,
                updated_at: t,
            },
            items: scopes
                .iter()
                .map(|id| super::super::Item {
                    scope: crate::study::Scope {
                        id: *id,
                        coding_system: "s".into(),
                        coding_code: format!("c{id}"),
                        text: format!("Scope {id}"),
                    },
                    answer: None,
                })
                .collect(),
            devices: Vec::new(),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn each_answer_is_read_and_unanswered_items_stay_pending() {
        let got = answers_of(
            &pairs(&[("a-1-10", "yes"), ("a-1-11", "no"), ("csrf_token", "x")]),
            &[offer(1, &[10, 11, 12])],
        )
        .expect("reads");
        assert_eq!(got, vec![(1, 10, Some(true)), (1, 11, Some(false))]);
    }

    #[test]
    fn all_at_once_answers_every_item_of_that_study_only() {
        let got = answers_of(
            &pairs(&[("a-1-10", "yes"), ("a-2-20", "yes"), ("all", "1:no")]),
            &[offer(1, &[10, 11]), offer(2, &[20])],
        )
        .expect("reads");
        assert_eq!(
            got,
            vec![
                (2, 20, Some(true)),
                (1, 10, Some(false)),
                (1, 11, Some(false))
            ]
        );
    }

    #[test]
    fn a_mangled_field_is_refused() {
        assert!(answers_of(&pairs(&[("a-x-1", "yes")]), &[]).is_err());
        assert!(answers_of(&pairs(&[("all", "9:yes")]), &[offer(1, &[10])]).is_err());
        // A study the page did not offer (closed, or another organization's).
        assert!(answers_of(&pairs(&[("a-2-10", "yes")]), &[offer(1, &[10])]).is_err());
    }
}
