//! The Observations tab: the filtered list (newest first, paged by key), one observation's
//! detail, a patient's chart of one data type, and the CSV and FHIR NDJSON exports.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use askama_web::WebTemplate;
use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::Deserialize;

use super::repo::{Filter, Key, Order};
use super::{omh, Concept, Concepts, Observation};
use crate::audit::Audit;
use crate::auth::CurrentUser;
use crate::console::home::{selected_organization, OrgOption};
use crate::console::{num, query_string, Console, Shell, PAGE_SIZES};
use crate::db::DbConnection;
use crate::error::AppError;
use crate::organization::Organization;
use crate::patient::model::Patient;
use crate::startup::AppState;
use crate::study::Study;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/observations", web::get().to(list))
        .route("/observations/chart", web::get().to(chart))
        .route("/observations/export.csv", web::get().to(export_csv))
        .route("/observations/export.ndjson", web::get().to(export_ndjson))
        .route("/observations/{id}", web::get().to(show));
}

/// A patient search matching more people than this asks to be narrowed.
const MAX_PATIENT_MATCHES: i64 = 500;
/// Points drawn on one chart at most: the newest in the range.
pub const MAX_CHART_POINTS: i64 = 5000;

/// The viewer's time zone: the `tz` cookie that the console's script sets from the browser,
/// else UTC.
pub fn viewer_zone(req: &HttpRequest) -> Tz {
    req.cookie("tz")
        .and_then(|c| c.value().parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

pub fn local(t: NaiveDateTime, tz: Tz) -> String {
    tz.from_utc_datetime(&t)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// Midnight of a local date, as UTC.
fn local_midnight(d: NaiveDate, tz: Tz) -> NaiveDateTime {
    let m = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&m)
        .earliest()
        .map(|t| t.naive_utc())
        .unwrap_or(m)
}

#[derive(Deserialize, Default, Clone)]
pub struct ListQuery {
    pub organization_id: Option<String>,
    pub study_id: Option<String>,
    pub patient_id: Option<String>,
    #[serde(default)]
    pub patient: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    pub page_size: Option<String>,
    pub page: Option<String>,
    #[serde(default)]
    pub after: String,
    #[serde(default)]
    pub before: String,
}

impl ListQuery {
    /// The filters (not the position) as query pairs.
    fn filter_pairs(&self, org_id: i64, size: i64) -> Vec<(&'static str, String)> {
        vec![
            ("organization_id", org_id.to_string()),
            ("study_id", self.study_id.clone().unwrap_or_default()),
            ("patient_id", self.patient_id.clone().unwrap_or_default()),
            ("patient", self.patient.clone()),
            ("code", self.code.clone()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
            ("page_size", size.to_string()),
        ]
    }
}

pub struct Row {
    pub o: Observation,
    pub patient: String,
    pub data_type: String,
    pub value: String,
    pub effective: String,
    pub source: String,
    pub received: String,
}

/// What the filters resolved to, for the page and the exports alike.
struct Resolved {
    org: Option<Organization>,
    options: Vec<OrgOption>,
    studies: Vec<Study>,
    /// The data types the type selector offers: the study's, or all.
    types: Vec<Concept>,
    filter: Option<Filter>,
    /// A sentence on why nothing can be shown (e.g. a patient search that matched no one).
    note: Option<String>,
    patient: Option<Patient>,
}

fn parse_date(s: &str, what: &str) -> Result<Option<NaiveDate>, AppError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| {
            AppError::BadRequest(format!("The {what} date must be YYYY-MM-DD; got \"{s}\"."))
        })
}

/// Resolves the query into a filter the caller may see. Runs inside a transaction because
/// choosing an organization remembers it.
fn resolve(
    conn: &mut DbConnection,
    user: &CurrentUser,
    q: &ListQuery,
    tz: Tz,
    concepts: &Concepts,
) -> Result<Resolved, AppError> {
    let (org, options) = selected_organization(conn, user, num(&q.organization_id))?;
    let Some((org, _)) = org else {
        return Ok(Resolved {
            org: None,
            options,
            studies: Vec::new(),
            types: Vec::new(),
            filter: None,
            note: None,
            patient: None,
        });
    };
    let studies = crate::study::repo::all_of(conn, org.id)?;
    let study = num(&q.study_id).and_then(|id| studies.iter().find(|s| s.id == id).cloned());
    let all = concepts.all().to_vec();
    let types: Vec<Concept> = match &study {
        Some(s) => {
            let requested: Vec<i64> = crate::study::repo::requested(conn, s.id)?
                .iter()
                .map(|sc| sc.id)
                .collect();
            all.into_iter()
                .filter(|c| requested.contains(&c.id))
                .collect()
        }
        None => all,
    };
    let from = parse_date(&q.from, "from")?;
    let to = parse_date(&q.to, "to")?;
    if let (Some(f), Some(t)) = (from, to) {
        if t < f {
            return Err(AppError::BadRequest(
                "The to date is before the from date; swap them.".into(),
            ));
        }
    }
    // Every part of this filter is already proved visible: the organization was offered to
    // the caller, the study is one of its studies, a patient is checked to be linked to it.
    let mut filter = Filter {
        orgs: Some(vec![org.id]),
        study: study.as_ref().map(|s| s.id),
        // A data type the selector does not offer (not requested by the study, or unknown)
        // matches nothing rather than being dropped.
        concept: (!q.code.is_empty()).then(|| {
            types
                .iter()
                .find(|c| c.code == q.code)
                .map(|c| c.id)
                .unwrap_or(-1)
        }),
        from: from.map(|d| local_midnight(d, tz)),
        to: to.map(|d| local_midnight(d + chrono::Duration::days(1), tz)),
        ..Filter::default()
    };
    let mut note = None;
    let mut patient = None;
    if let Some(pid) = num(&q.patient_id) {
        if crate::patient::repo::is_linked(conn, pid, org.id)? {
            filter.patient = Some(pid);
            patient = crate::patient::repo::find(conn, pid)?;
        } else {
            note = Some("That patient is not in this organization.".to_string());
        }
    } else if !q.patient.trim().is_empty() {
        let terms = crate::patient::search::query_terms(&q.patient);
        let lf = crate::patient::repo::ListFilter {
            org_ids: vec![org.id],
            terms,
            archived: crate::patient::repo::Archived::All,
            ..Default::default()
        };
        let (found, total) = crate::patient::repo::list(
            conn,
            &lf,
            crate::patient::repo::Sort::FamilyName,
            0,
            MAX_PATIENT_MATCHES,
        )?;
        if total == 0 {
            note = Some(format!(
                "No patient of {} matches “{}”.",
                org.name,
                q.patient.trim()
            ));
        } else if total > MAX_PATIENT_MATCHES {
            note = Some(format!(
                "{total} patients match “{}”; add a word (a name, e-mail, identifier or birth date) to narrow it.",
                q.patient.trim()
            ));
        } else {
            if found.len() == 1 {
                patient = found.first().cloned();
            }
            filter.patients = Some(found.iter().map(|p| p.id).collect::<Vec<_>>());
        }
    }
    let filter = note.is_none().then_some(filter);
    Ok(Resolved {
        org: Some(org),
        options,
        studies,
        types,
        filter,
        note,
        patient,
    })
}

fn rows_for(
    conn: &mut DbConnection,
    list: Vec<Observation>,
    concepts: &Concepts,
    tz: Tz,
) -> Result<Vec<Row>, AppError> {
    let ids: Vec<i64> = list.iter().map(|o| o.patient_id).collect();
    let people: HashMap<i64, Patient> = crate::patient::repo::find_many(conn, &ids)?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let sources: HashMap<i64, String> = super::repo::source_names(conn)?;
    Ok(list
        .into_iter()
        .map(|o| {
            let c = concepts.get(o.codeable_concept_id);
            let doc: serde_json::Value = serde_json::from_str(&o.omh_data).unwrap_or_default();
            Row {
                patient: people
                    .get(&o.patient_id)
                    .map(|p| format!("{}, {}", p.name_family, p.name_given))
                    .unwrap_or_else(|| format!("Patient {}", o.patient_id)),
                data_type: c.map(|c| c.text.clone()).unwrap_or_default(),
                value: c
                    .map(|c| omh::display_value(&c.code, &doc))
                    .unwrap_or_else(|| "—".into()),
                effective: match o.effective_end {
                    Some(end) => format!("{} – {}", local(o.effective_start, tz), local(end, tz)),
                    None => local(o.effective_start, tz),
                },
                source: o
                    .data_source_id
                    .and_then(|d| sources.get(&d).cloned())
                    .unwrap_or_else(|| "—".into()),
                received: local(o.created_at, tz),
                o,
            }
        })
        .collect())
}

#[derive(Template, WebTemplate)]
#[template(path = "observation/list.html")]
struct ListPage {
    shell: Shell,
    org: Option<Organization>,
    org_id: i64,
    options: Vec<OrgOption>,
    studies: Vec<Study>,
    types: Vec<Concept>,
    q: ListQuery,
    rows: Vec<Row>,
    note: Option<String>,
    patient: Option<Patient>,
    zone: String,
    page: i64,
    page_size: i64,
    page_sizes: [i64; 4],
    first_url: Option<String>,
    newer_url: Option<String>,
    older_url: Option<String>,
    export_query: String,
    chart_url: Option<String>,
    filtered: bool,
}

async fn list(
    req: HttpRequest,
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<ListPage, AppError> {
    let q = q.into_inner();
    let tz = viewer_zone(&req);
    let size = num(&q.page_size)
        .filter(|s| PAGE_SIZES.contains(s))
        .unwrap_or(PAGE_SIZES[0]);
    let order = Order::EffectiveDesc;
    let after = Key::decode(q.after.trim(), order);
    let before = Key::decode(q.before.trim(), order);
    let user = c.user.clone();
    let q2 = q.clone();
    let st = state.clone();
    // A read: it takes no turn at the (SQLite) write lock. Choosing another organization
    // remembers it, a write of its own that happens only on that change.
    let (r, rows, newer, older) = state
        .db
        .run(move |conn| {
            let concepts = st.concepts(conn)?;
            let r = resolve(conn, &user, &q2, tz, &concepts)?;
            let Some(f) = &r.filter else {
                return Ok((r, Vec::new(), false, false));
            };
            let (list, newer, older) = match (before, after) {
                (Some(k), _) => {
                    // Walking back towards the newest: read upwards, then show in list order.
                    let mut l =
                        super::repo::page(conn, f, Order::EffectiveAsc, Some(&k), 0, size + 1)?;
                    let newer = l.len() as i64 > size;
                    l.truncate(size as usize);
                    l.reverse();
                    (l, newer, true)
                }
                (None, k) => {
                    let mut l = super::repo::page(conn, f, order, k.as_ref(), 0, size + 1)?;
                    let older = l.len() as i64 > size;
                    l.truncate(size as usize);
                    (l, k.is_some(), older)
                }
            };
            let rows = rows_for(conn, list, &concepts, tz)?;
            Ok((r, rows, newer, older))
        })
        .await?;
    let org_id = r.org.as_ref().map(|o| o.id).unwrap_or_default();
    let page = num(&q.page).unwrap_or(1).max(1);
    let base = q.filter_pairs(org_id, size);
    let with = |extra: &[(&'static str, String)]| {
        let mut pairs = base.clone();
        pairs.extend_from_slice(extra);
        format!("/observations?{}", query_string(&pairs))
    };
    let newer_url = newer.then(|| match rows.first() {
        Some(first) if page > 2 => with(&[
            ("before", order.key_of(&first.o).encode()),
            ("page", (page - 1).to_string()),
        ]),
        _ => with(&[]),
    });
    let older_url = older.then(|| rows.last()).flatten().map(|last| {
        with(&[
            ("after", order.key_of(&last.o).encode()),
            ("page", (page + 1).to_string()),
        ])
    });
    let chart_url = match (&r.patient, r.types.iter().find(|c| c.code == q.code)) {
        (Some(p), Some(c)) => Some(format!(
            "/observations/chart?{}",
            query_string(&[
                ("organization_id", org_id.to_string()),
                ("patient_id", p.id.to_string()),
                ("code", c.code.clone()),
                ("from", q.from.clone()),
                ("to", q.to.clone()),
            ])
        )),
        _ => None,
    };
    let filtered = q.study_id.as_deref().is_some_and(|s| !s.is_empty())
        || q.patient_id.as_deref().is_some_and(|s| !s.is_empty())
        || !q.patient.trim().is_empty()
        || !q.code.is_empty()
        || !q.from.is_empty()
        || !q.to.is_empty();
    Ok(ListPage {
        shell: c.shell("Observations", "observations"),
        export_query: query_string(&base),
        first_url: (page > 1 || newer).then(|| with(&[])),
        newer_url,
        older_url,
        chart_url,
        org: r.org,
        org_id,
        options: r.options,
        studies: r.studies,
        types: r.types,
        note: r.note,
        patient: r.patient,
        zone: tz.name().to_string(),
        rows,
        page,
        page_size: size,
        page_sizes: PAGE_SIZES,
        filtered,
        q,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "observation/show.html")]
struct ShowPage {
    shell: Shell,
    row: Row,
    code: String,
    identifier: String,
    header: String,
    body: String,
    zone: String,
    chart_url: String,
    list_url: String,
}

async fn show(
    req: HttpRequest,
    c: Console,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<ShowPage, AppError> {
    let id = id.into_inner();
    let tz = viewer_zone(&req);
    let user = c.user.clone();
    let st = state.clone();
    let (row, concept, org_id) = state
        .db
        .tx(move |conn| {
            let missing = || AppError::NotFound("Observation not found.".into());
            let o = super::repo::find(conn, id)?.ok_or_else(missing)?;
            let scope = crate::patient::authorize(
                conn,
                &user,
                o.patient_id,
                crate::organization::Role::Viewer,
            )
            .map_err(|e| match e {
                AppError::NotFound(_) => missing(),
                other => other,
            })?;
            Audit::by(&user, "observation.read")
                .object("observation", o.id)
                .org(scope.org_id())
                .record(conn)?;
            let concepts = st.concepts(conn)?;
            let concept = concepts.get(o.codeable_concept_id).cloned();
            let mut rows = rows_for(conn, vec![o], &concepts, tz)?;
            let row = rows.pop().ok_or_else(missing)?;
            Ok((row, concept, scope.org_id()))
        })
        .await?;
    let doc: serde_json::Value = serde_json::from_str(&row.o.omh_data).unwrap_or_default();
    let pretty = |v: Option<&serde_json::Value>| {
        v.and_then(|v| serde_json::to_string_pretty(v).ok())
            .unwrap_or_else(|| "—".into())
    };
    let code = concept.map(|c| c.code).unwrap_or_default();
    Ok(ShowPage {
        shell: c.shell(format!("Observation {id}"), "observations"),
        identifier: match (&row.o.identifier_system, &row.o.identifier_value) {
            (Some(s), Some(v)) => format!("{s}|{v}"),
            _ => "—".into(),
        },
        header: pretty(doc.get("header")),
        body: pretty(doc.get("body")),
        zone: tz.name().to_string(),
        chart_url: format!(
            "/observations/chart?{}",
            query_string(&[
                ("organization_id", org_id.to_string()),
                ("patient_id", row.o.patient_id.to_string()),
                ("code", code.clone()),
            ])
        ),
        list_url: format!(
            "/observations?{}",
            query_string(&[
                ("organization_id", org_id.to_string()),
                ("patient_id", row.o.patient_id.to_string()),
            ])
        ),
        code,
        row,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "observation/chart.html")]
struct ChartPage {
    shell: Shell,
    org_id: i64,
    patient: Patient,
    types: Vec<Concept>,
    concept: Option<Concept>,
    q: ListQuery,
    svg: String,
    points: usize,
    capped: bool,
    zone: String,
    list_url: String,
}

async fn chart(
    req: HttpRequest,
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<ChartPage, AppError> {
    let q = q.into_inner();
    let tz = viewer_zone(&req);
    let pid = num(&q.patient_id).ok_or_else(|| {
        AppError::BadRequest("Choose a patient to chart: patient_id is missing.".into())
    })?;
    let user = c.user.clone();
    let q2 = q.clone();
    let st = state.clone();
    let (org_id, patient, types, concept, points) = state
        .db
        .run(move |conn| {
            let scope =
                crate::patient::authorize(conn, &user, pid, crate::organization::Role::Viewer)?;
            let patient = crate::patient::repo::find(conn, pid)?
                .ok_or_else(|| AppError::not_found("Patient"))?;
            let types = st.concepts(conn)?.all().to_vec();
            let concept = types.iter().find(|c| c.code == q2.code).cloned();
            let mut points = Vec::new();
            if let Some(c) = &concept {
                let from = parse_date(&q2.from, "from")?;
                let to = parse_date(&q2.to, "to")?;
                let f = Filter {
                    patient: Some(pid),
                    concept: Some(c.id),
                    from: from.map(|d| local_midnight(d, tz)),
                    to: to.map(|d| local_midnight(d + chrono::Duration::days(1), tz)),
                    ..Filter::default()
                };
                points = super::repo::page(
                    conn,
                    &f,
                    Order::EffectiveDesc,
                    None,
                    0,
                    MAX_CHART_POINTS + 1,
                )?;
            }
            Ok((scope.org_id(), patient, types, concept, points))
        })
        .await?;
    let capped = points.len() as i64 > MAX_CHART_POINTS;
    let points: Vec<Observation> = points.into_iter().take(MAX_CHART_POINTS as usize).collect();
    let svg = match &concept {
        Some(c) => super::chart::render(&c.code, &c.text, &points, tz),
        None => String::new(),
    };
    Ok(ChartPage {
        shell: c.shell("Chart", "observations"),
        list_url: format!(
            "/observations?{}",
            query_string(&[
                ("organization_id", org_id.to_string()),
                ("patient_id", pid.to_string()),
                ("code", q.code.clone()),
                ("from", q.from.clone()),
                ("to", q.to.clone()),
            ])
        ),
        org_id,
        patient,
        types,
        concept,
        points: points.len(),
        capped,
        svg,
        zone: tz.name().to_string(),
        q,
    })
}

/// Rows per database read while streaming an export.
const EXPORT_SLICE: i64 = 1000;

/// Streams every observation of the filter, a slice at a time, each slice turned into bytes.
/// `people`: whether `render` needs the slice's patients.
fn stream_export(
    state: &web::Data<AppState>,
    filter: Filter,
    head: String,
    concepts: std::sync::Arc<Concepts>,
    people: bool,
    mut render: impl FnMut(&mut Vec<u8>, &Observation, &Concepts, &HashMap<i64, Patient>)
        + Send
        + 'static,
) -> futures_util::stream::BoxStream<'static, Result<web::Bytes, AppError>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, AppError>>(4);
    let db = state.db.clone();
    actix_web::rt::spawn(async move {
        if !head.is_empty() && tx.send(Ok(web::Bytes::from(head))).await.is_err() {
            return;
        }
        let filter = std::sync::Arc::new(filter);
        let mut key: Option<Key> = None;
        // The walk is planned with the first slice and kept for the rest.
        let mut plan: Option<Option<Vec<i64>>> = None;
        loop {
            let (f, k, p) = (filter.clone(), key, plan.clone());
            let slice = db
                .run(move |conn| {
                    let p = match p {
                        Some(p) => p,
                        None => super::repo::plan(conn, &f)?,
                    };
                    let rows = super::repo::page_planned(
                        conn,
                        &f,
                        p.as_deref(),
                        Order::EffectiveAsc,
                        k.as_ref(),
                        0,
                        EXPORT_SLICE,
                    )?;
                    let mut found = HashMap::new();
                    if people {
                        let ids: Vec<i64> = rows.iter().map(|o| o.patient_id).collect();
                        for person in crate::patient::repo::find_many(conn, &ids)? {
                            found.insert(person.id, person);
                        }
                    }
                    Ok((rows, found, p))
                })
                .await;
            let (rows, found) = match slice {
                Ok((rows, found, p)) => {
                    plan = Some(p);
                    (rows, found)
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let Some(last) = rows.last() else { return };
            key = Some(Order::EffectiveAsc.key_of(last));
            let mut out = Vec::with_capacity(rows.len() * 700);
            for o in &rows {
                render(&mut out, o, &concepts, &found);
            }
            if tx.send(Ok(web::Bytes::from(out))).await.is_err() {
                return;
            }
            if (rows.len() as i64) < EXPORT_SLICE {
                return;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Resolves the export's filter and notes the export in the audit log.
async fn export_filter(
    c: &Console,
    state: &web::Data<AppState>,
    q: ListQuery,
    tz: Tz,
    kind: &'static str,
) -> Result<(Filter, Vec<Concept>, std::sync::Arc<Concepts>), AppError> {
    let user = c.user.clone();
    let st = state.clone();
    state
        .db
        .tx(move |conn| {
            let concepts = st.concepts(conn)?;
            let r = resolve(conn, &user, &q, tz, &concepts)?;
            let org = r.org.ok_or_else(|| AppError::not_found("Organization"))?;
            let filter = match r.filter {
                Some(f) => f,
                None => {
                    return Err(AppError::BadRequest(
                        r.note.unwrap_or_else(|| "Nothing to export.".into()),
                    ))
                }
            };
            Audit::by(&user, "observation.export")
                .org(org.id)
                .detail(serde_json::json!({
                    "format": kind,
                    "study_id": filter.study,
                    "patient_id": filter.patient,
                    "data_type": filter.concept,
                }))
                .record(conn)?;
            let types: Vec<Concept> = match filter.concept {
                Some(id) => r.types.into_iter().filter(|c| c.id == id).collect(),
                None => r.types,
            };
            Ok((filter, types, concepts))
        })
        .await
}

fn attachment_name(kind: &str) -> String {
    format!(
        "attachment; filename=\"observations-{}.{kind}\"",
        chrono::Utc::now().format("%Y%m%d-%H%M")
    )
}

async fn export_csv(
    req: HttpRequest,
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let tz = viewer_zone(&req);
    let (filter, types, concepts) = export_filter(&c, &state, q.into_inner(), tz, "csv").await?;
    // Value columns: those of every data type the export can hold, each once, in order.
    let mut columns: Vec<&'static str> = Vec::new();
    for t in &types {
        for col in omh::value_columns(&t.code) {
            if !columns.contains(col) {
                columns.push(col);
            }
        }
    }
    let mut head = String::from(
        "id,patient_id,family_name,given_name,coding_system,coding_code,data_type,effective_start,effective_end,status,identifier_system,identifier_value,data_source_id,received",
    );
    for col in &columns {
        head.push(',');
        head.push_str(col);
    }
    head.push('\n');
    let body = stream_export(
        &state,
        filter,
        head,
        concepts,
        true,
        move |out, o, concepts, people| {
            let mut line = String::with_capacity(256);
            let c = concepts.get(o.codeable_concept_id);
            let p = people.get(&o.patient_id);
            let cells: [String; 14] = [
                o.id.to_string(),
                o.patient_id.to_string(),
                p.map(|p| p.name_family.clone()).unwrap_or_default(),
                p.map(|p| p.name_given.clone()).unwrap_or_default(),
                c.map(|c| c.system.clone()).unwrap_or_default(),
                c.map(|c| c.code.clone()).unwrap_or_default(),
                c.map(|c| c.text.clone()).unwrap_or_default(),
                crate::fhir::instant(o.effective_start),
                o.effective_end
                    .map(crate::fhir::instant)
                    .unwrap_or_default(),
                o.status.clone(),
                o.identifier_system.clone().unwrap_or_default(),
                o.identifier_value.clone().unwrap_or_default(),
                o.data_source_id.map(|d| d.to_string()).unwrap_or_default(),
                crate::fhir::instant(o.created_at),
            ];
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                crate::consent::pages::csv_field(&mut line, cell);
            }
            let doc: serde_json::Value = serde_json::from_str(&o.omh_data).unwrap_or_default();
            let readings = c.map(|c| omh::readings(&c.code, &doc)).unwrap_or_default();
            for col in &columns {
                line.push(',');
                let (name, part) = match col.rsplit_once('_') {
                    Some(x) => x,
                    None => continue,
                };
                if let Some(r) = readings.iter().find(|r| r.name == name) {
                    match part {
                        "value" => line.push_str(&r.value.to_string()),
                        _ => crate::consent::pages::csv_field(&mut line, &r.unit),
                    }
                }
            }
            line.push('\n');
            out.extend_from_slice(line.as_bytes());
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", attachment_name("csv")))
        .streaming(body))
}

async fn export_ndjson(
    req: HttpRequest,
    c: Console,
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let tz = viewer_zone(&req);
    let (filter, _, concepts) = export_filter(&c, &state, q.into_inner(), tz, "ndjson").await?;
    let body = stream_export(
        &state,
        filter,
        String::new(),
        concepts,
        false,
        |out, o, concepts, _| {
            crate::fhir::write_observation(out, o, concepts);
            out.push(b'\n');
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("application/fhir+ndjson")
        .insert_header(("Content-Disposition", attachment_name("ndjson")))
        .streaming(body))
}
