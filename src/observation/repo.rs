//! SQL for observations: the only place it lives. Lists page by key along the indexes of
//! migration 000005, so a page deep in ten million rows costs what the first one does.

use crate::db::sql::{Sql, Value as Bound};
use crate::db::time::Stamp;
use crate::db::{InIds, InTexts};
use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

use super::model::{NewObservation, Observation};
use crate::db::schema::{codeable_concepts, consents, observations, studies};
use crate::db::DbConnection;
use crate::error::AppResult;

/// Which observations a list or search holds. Every condition narrows it.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// The patients of these organizations; None means every patient (a superuser's view).
    pub orgs: Option<Vec<i64>>,
    /// The study's patients, and only the data types it requests.
    pub study: Option<i64>,
    pub patient: Option<i64>,
    /// One of these patients (a search's matches).
    pub patients: Option<Vec<i64>>,
    pub concept: Option<i64>,
    /// Effective time: from (inclusive) and to (exclusive).
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
    /// Last updated: from (inclusive) and to (exclusive).
    pub updated_from: Option<NaiveDateTime>,
    pub updated_to: Option<NaiveDateTime>,
}

/// The order of a list. Ties break on id in the same direction, so keys are unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    /// Newest effective time first: the console's order.
    #[default]
    EffectiveDesc,
    EffectiveAsc,
    UpdatedDesc,
    UpdatedAsc,
    /// Upload order: new uploads land at the end, so paging never skips or repeats.
    IdAsc,
}

impl Order {
    fn column(self) -> Option<&'static str> {
        match self {
            Order::EffectiveDesc | Order::EffectiveAsc => Some("o.effective_start"),
            Order::UpdatedDesc | Order::UpdatedAsc => Some("o.last_updated"),
            Order::IdAsc => None,
        }
    }

    pub fn descending(self) -> bool {
        matches!(self, Order::EffectiveDesc | Order::UpdatedDesc)
    }

    /// The key of a row in this order.
    pub fn key_of(self, o: &Observation) -> Key {
        Key {
            at: match self {
                Order::EffectiveDesc | Order::EffectiveAsc => Some(o.effective_start),
                Order::UpdatedDesc | Order::UpdatedAsc => Some(o.last_updated),
                Order::IdAsc => None,
            },
            id: o.id,
        }
    }
}

/// Where a page starts: strictly after this row in the list's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub at: Option<NaiveDateTime>,
    pub id: i64,
}

impl Key {
    /// "<microseconds since 1970>.<id>", or "<id>" for upload order.
    pub fn encode(&self) -> String {
        match self.at {
            Some(t) => format!("{}.{}", t.and_utc().timestamp_micros(), self.id),
            None => self.id.to_string(),
        }
    }

    pub fn decode(s: &str, order: Order) -> Option<Key> {
        match (order.column(), s.split_once('.')) {
            (Some(_), Some((t, id))) => Some(Key {
                at: Some(chrono::DateTime::from_timestamp_micros(t.parse().ok()?)?.naive_utc()),
                id: id.parse().ok()?,
            }),
            (None, None) => Some(Key {
                at: None,
                id: s.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// A WHERE clause with its bound values, each marked `?` in the text (see `db::sql`).
struct Where {
    pg: bool,
    clauses: Vec<String>,
    binds: Vec<Bound<'static>>,
    /// False once a clause holds values written into its text (a list of patients): such a
    /// statement is prepared for its one run, not kept.
    keep: bool,
}

impl Where {
    fn new(conn: &DbConnection) -> Where {
        Where {
            pg: matches!(conn, DbConnection::Postgres(_)),
            clauses: Vec::new(),
            binds: Vec::new(),
            keep: true,
        }
    }

    fn param(&mut self, b: Bound<'static>) -> &'static str {
        self.binds.push(b);
        "?"
    }

    /// The filter for a page: sets of patients or data types are checked row by row, by
    /// key, as the list walks the index of its order. Starting from the set would sort
    /// everything it holds, and an IN list would be built afresh for every page. (Small sets
    /// of patients are merged per patient instead: see `page`.)
    fn filter(&mut self, f: &Filter) {
        self.filter_as(f, false)
    }

    /// The filter for a count, which reads every matching row in no order: organizations
    /// and studies as sets of patients (and a study's data types as a set), so the count
    /// runs along the (patient, data type) index without reading a single row. Checking a
    /// study row by row instead read each row for its patient: 2.8 s against 0.1 s for two
    /// million observations.
    fn filter_for_count(&mut self, f: &Filter) {
        self.filter_as(f, true)
    }

    fn filter_as(&mut self, f: &Filter, as_sets: bool) {
        if let Some(orgs) = &f.orgs {
            let list = if orgs.is_empty() {
                "NULL".to_string()
            } else {
                orgs.iter()
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            self.clauses.push(if as_sets {
                format!(
                    "o.patient_id IN (SELECT po.patient_id FROM patient_organizations po WHERE po.organization_id IN ({list}))"
                )
            } else {
                format!(
                    "EXISTS (SELECT 1 FROM patient_organizations po WHERE po.patient_id = o.patient_id AND po.organization_id IN ({list}))"
                )
            });
        }
        if let (Some(s), Some(c)) = (f.study, f.concept) {
            // One data type: whether the study requests it is one question, asked once
            // (a sub-select that names no column of the row), not once a row.
            let p = self.param(Bound::Int(s));
            let q = self.param(Bound::Int(s));
            let c = self.param(Bound::Int(c));
            self.clauses.push(if as_sets {
                format!("o.patient_id IN (SELECT sp.patient_id FROM study_patients sp WHERE sp.study_id = {p})")
            } else {
                format!("EXISTS (SELECT 1 FROM study_patients sp WHERE sp.study_id = {p} AND sp.patient_id = o.patient_id)")
            });
            self.clauses.push(format!(
                "EXISTS (SELECT 1 FROM study_scope_requests sr WHERE sr.study_id = {q} AND sr.codeable_concept_id = {c})"
            ));
        } else if let Some(s) = f.study {
            let p = self.param(Bound::Int(s));
            let q = self.param(Bound::Int(s));
            self.clauses.push(if as_sets {
                format!(
                    "o.patient_id IN (SELECT sp.patient_id FROM study_patients sp WHERE sp.study_id = {p}) \
                     AND o.codeable_concept_id IN (SELECT sr.codeable_concept_id FROM study_scope_requests sr WHERE sr.study_id = {q})"
                )
            } else {
                format!(
                    "EXISTS (SELECT 1 FROM study_patients sp WHERE sp.study_id = {p} AND sp.patient_id = o.patient_id) \
                     AND EXISTS (SELECT 1 FROM study_scope_requests sr WHERE sr.study_id = {q} AND sr.codeable_concept_id = o.codeable_concept_id)"
                )
            });
        }
        if let Some(p) = f.patient {
            let p = self.param(Bound::Int(p));
            self.clauses.push(format!("o.patient_id = {p}"));
        }
        if let Some(ids) = &f.patients {
            let list = if ids.is_empty() {
                "NULL".to_string()
            } else {
                ids.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let pid = if self.pg || as_sets {
                "o.patient_id"
            } else {
                "+o.patient_id"
            };
            self.clauses.push(format!("{pid} IN ({list})"));
            self.keep = false;
        }
        if let Some(c) = f.concept {
            let p = self.param(Bound::Int(c));
            self.clauses.push(format!("o.codeable_concept_id = {p}"));
        }
        for (value, op, col) in [
            (f.from, ">=", "o.effective_start"),
            (f.to, "<", "o.effective_start"),
            (f.updated_from, ">=", "o.last_updated"),
            (f.updated_to, "<", "o.last_updated"),
        ] {
            if let Some(t) = value {
                let p = self.param(Bound::Time(Stamp(t)));
                self.clauses.push(format!("{col} {op} {p}"));
            }
        }
    }

    /// Rows strictly after `key` in `order`. The first condition bounds the index range;
    /// the second settles ties on the same time.
    fn after(&mut self, order: Order, key: &Key) {
        let (lt, le) = if order.descending() {
            ("<", "<=")
        } else {
            (">", ">=")
        };
        match (order.column(), key.at) {
            (Some(col), Some(at)) => {
                let a = self.param(Bound::Time(Stamp(at)));
                let b = self.param(Bound::Time(Stamp(at)));
                let c = self.param(Bound::Int(key.id));
                self.clauses.push(format!(
                    "{col} {le} {a} AND ({col} {lt} {b} OR o.id {lt} {c})"
                ));
            }
            _ => {
                let a = self.param(Bound::Int(key.id));
                self.clauses.push(format!("o.id {lt} {a}"));
            }
        }
    }

    fn where_clause(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    fn query(self, text: String) -> Sql<'static> {
        let q = if self.keep {
            Sql::kept(text)
        } else {
            Sql::once(text)
        };
        self.binds.into_iter().fold(q, Sql::bind)
    }
}

fn order_by(order: Order) -> &'static str {
    match order {
        Order::EffectiveDesc => " ORDER BY o.effective_start DESC, o.id DESC",
        Order::EffectiveAsc => " ORDER BY o.effective_start, o.id",
        Order::UpdatedDesc => " ORDER BY o.last_updated DESC, o.id DESC",
        Order::UpdatedAsc => " ORDER BY o.last_updated, o.id",
        Order::IdAsc => " ORDER BY o.id",
    }
}

const COLUMNS: &str = "o.id, o.patient_id, o.codeable_concept_id, o.data_source_id, o.status, \
    o.identifier_system, o.identifier_value, o.effective_start, o.effective_end, o.omh_data, \
    o.created_at, o.last_updated";

/// At most this many patients are listed by merging one index walk per patient.
const MERGE_PATIENTS: usize = 200;

/// Up to `limit` observations after `after` (or from the start, skipping `offset`) in `order`.
pub fn page(
    conn: &mut DbConnection,
    f: &Filter,
    order: Order,
    after: Option<&Key>,
    offset: i64,
    limit: i64,
) -> AppResult<Vec<Observation>> {
    let few = plan(conn, f)?;
    page_planned(conn, f, few.as_deref(), order, after, offset, limit)
}

/// How `page_planned` walks a filter: the patients to merge one by one when they are few,
/// else None (walk the index of the list's order). A long walk plans once.
pub fn plan(conn: &mut DbConnection, f: &Filter) -> AppResult<Option<Vec<i64>>> {
    if f.patient.is_some() {
        return Ok(None);
    }
    few_patients(conn, f)
}

/// `page` along a plan made by `plan` for the same filter.
pub fn page_planned(
    conn: &mut DbConnection,
    f: &Filter,
    few: Option<&[i64]>,
    order: Order,
    after: Option<&Key>,
    offset: i64,
    limit: i64,
) -> AppResult<Vec<Observation>> {
    let Some(few) = few else {
        return page_sql(conn, f, order, after, offset, limit);
    };
    // A handful of patients in a large exchange: walking the whole order's index for their
    // rows would take long; each patient's own index gives its first rows at once, and
    // merging those gives the page.
    let mut all = Vec::new();
    for p in few {
        let one = Filter {
            patient: Some(*p),
            ..f.clone()
        };
        all.extend(page_sql(conn, &one, order, after, 0, offset + limit)?);
    }
    all.sort_by(|a, b| {
        let (ka, kb) = (order.key_of(a), order.key_of(b));
        let c = (ka.at, ka.id).cmp(&(kb.at, kb.id));
        if order.descending() {
            c.reverse()
        } else {
            c
        }
    });
    Ok(all
        .into_iter()
        .skip(offset.max(0) as usize)
        .take(limit.max(0) as usize)
        .collect())
}

/// The patients the filter's sets allow, when they are few; None when many or unlimited.
fn few_patients(conn: &mut DbConnection, f: &Filter) -> AppResult<Option<Vec<i64>>> {
    use crate::db::schema::{patient_organizations as po, study_patients as sp};
    let mut set: Option<Vec<i64>> = f.patients.clone();
    if let Some(s) = f.study {
        let cap = if set.is_some() {
            i64::MAX
        } else {
            MERGE_PATIENTS as i64 + 1
        };
        let mut q = sp::table
            .filter(sp::study_id.eq(s))
            .select(sp::patient_id)
            .into_boxed();
        if let Some(ids) = &set {
            q = q.filter(sp::patient_id.in_ids(ids));
        }
        set = Some(q.limit(cap).load(conn)?);
    }
    if let Some(orgs) = &f.orgs {
        let cap = if set.is_some() {
            i64::MAX
        } else {
            MERGE_PATIENTS as i64 + 1
        };
        let mut q = po::table
            .filter(po::organization_id.in_ids(orgs))
            .select(po::patient_id)
            .distinct()
            .into_boxed();
        if let Some(ids) = &set {
            if ids.len() > MERGE_PATIENTS {
                return Ok(None);
            }
            q = q.filter(po::patient_id.in_ids(ids));
        }
        set = Some(q.limit(cap).load(conn)?);
    }
    Ok(set.filter(|s| s.len() <= MERGE_PATIENTS))
}

fn page_sql(
    conn: &mut DbConnection,
    f: &Filter,
    order: Order,
    after: Option<&Key>,
    offset: i64,
    limit: i64,
) -> AppResult<Vec<Observation>> {
    let mut sql = Where::new(conn);
    sql.filter(f);
    if let Some(k) = after {
        sql.after(order, k);
    }
    let text = format!(
        "SELECT {COLUMNS} FROM observations o{}{} LIMIT ? OFFSET ?",
        sql.where_clause(),
        order_by(order),
    );
    sql.param(Bound::Int(limit.max(0)));
    sql.param(Bound::Int(offset.max(0)));
    Ok(sql.query(text).load::<Observation>(conn)?)
}

/// How many observations the filter holds.
pub fn count(conn: &mut DbConnection, f: &Filter) -> AppResult<i64> {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut sql = Where::new(conn);
    sql.filter_for_count(f);
    let text = format!(
        "SELECT COUNT(*) AS n FROM observations o{}",
        sql.where_clause()
    );
    Ok(sql.query(text).get_result::<N>(conn)?.n)
}

pub fn find(conn: &mut DbConnection, id: i64) -> AppResult<Option<Observation>> {
    Ok(observations::table
        .find(id)
        .select(Observation::as_select())
        .first(conn)
        .optional()?)
}

/// The ids among `pairs` of (system, value) identifiers already used, with their observation.
pub fn identifiers_used(
    conn: &mut DbConnection,
    pairs: &[(String, String)],
) -> AppResult<HashMap<(String, String), i64>> {
    let mut by_system: HashMap<&str, Vec<String>> = HashMap::new();
    for (s, v) in pairs {
        by_system.entry(s.as_str()).or_default().push(v.clone());
    }
    let mut out = HashMap::new();
    for (system, values) in by_system {
        for chunk in values.chunks(500) {
            let found: Vec<(i64, Option<String>)> = observations::table
                .filter(observations::identifier_system.eq(system))
                .filter(observations::identifier_value.in_texts(chunk))
                .select((observations::id, observations::identifier_value))
                .load(conn)?;
            for (id, v) in found {
                if let Some(v) = v {
                    out.insert((system.to_string(), v), id);
                }
            }
        }
    }
    Ok(out)
}

/// Rows in one INSERT statement.
const INSERT_CHUNK: usize = 1000;
/// INSERT statements of up to this many rows are kept prepared.
const KEPT_ROWS: usize = 8;

/// Adds observations in one statement per thousand; rows whose identifier is already taken
/// are skipped. Returns (system, value) → new id for the rows that went in.
pub fn insert_many<R: std::borrow::Borrow<NewObservation>>(
    conn: &mut DbConnection,
    rows: &[R],
) -> AppResult<HashMap<(String, String), i64>> {
    #[derive(QueryableByName)]
    struct Made {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Nullable<Text>)]
        identifier_system: Option<String>,
        #[diesel(sql_type = Nullable<Text>)]
        identifier_value: Option<String>,
    }
    let mut out = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut values = String::with_capacity(chunk.len() * 36);
        for i in 0..chunk.len() {
            values.push_str(if i > 0 { ",(" } else { "(" });
            values.push_str("?,?,?,?,?,?,?,?,?,?,?)");
        }
        let text = format!(
            "INSERT INTO observations (patient_id, codeable_concept_id, data_source_id, status, \
             identifier_system, identifier_value, effective_start, effective_end, omh_data, \
             created_at, last_updated) VALUES {values} \
             ON CONFLICT (identifier_system, identifier_value) DO NOTHING \
             RETURNING id, identifier_system, identifier_value"
        );
        // The statements of a few rows (single uploads) and of a full chunk (large batches)
        // come back again and again; the sizes in between are prepared for their one run.
        let mut q = if chunk.len() <= KEPT_ROWS || chunk.len() == INSERT_CHUNK {
            Sql::kept(text)
        } else {
            Sql::once(text)
        };
        for r in chunk {
            let r: &NewObservation = r.borrow();
            q = q
                .int(r.patient_id)
                .int(r.codeable_concept_id)
                .bind(Bound::OptInt(r.data_source_id))
                .text(r.status.as_str())
                .text(r.identifier_system.as_str())
                .text(r.identifier_value.as_str())
                .time(r.effective_start)
                .bind(Bound::OptTime(r.effective_end.map(Stamp)))
                .text(r.omh_data.as_str())
                .time(r.at)
                .time(r.at);
        }
        for m in q.load::<Made>(conn)? {
            if let (Some(s), Some(v)) = (m.identifier_system, m.identifier_value) {
                out.insert((s, v), m.id);
            }
        }
    }
    Ok(out)
}

/// (id, system, code, text) of every data type, for resolving codings and naming them.
pub fn concepts(conn: &mut DbConnection) -> AppResult<Vec<(i64, String, String, String)>> {
    Ok(codeable_concepts::table
        .select((
            codeable_concepts::id,
            codeable_concepts::coding_system,
            codeable_concepts::coding_code,
            codeable_concepts::text,
        ))
        .order(codeable_concepts::id)
        .load(conn)?)
}

/// Every data source's name by id (the catalogue is small).
pub fn source_names(conn: &mut DbConnection) -> AppResult<HashMap<i64, String>> {
    use crate::db::schema::data_sources;
    Ok(data_sources::table
        .select((data_sources::id, data_sources::name))
        .load::<(i64, String)>(conn)?
        .into_iter()
        .collect())
}

/// (patient, organization) links of these patients.
pub fn organizations_of(
    conn: &mut DbConnection,
    patient_ids: &[i64],
) -> AppResult<Vec<(i64, i64)>> {
    use crate::db::schema::patient_organizations as po;
    let mut out = Vec::new();
    for chunk in patient_ids.chunks(500) {
        out.extend(
            po::table
                .filter(po::patient_id.in_ids(chunk))
                .select((po::patient_id, po::organization_id))
                .load::<(i64, i64)>(conn)?,
        );
    }
    Ok(out)
}

/// Every consent these patients gave: (patient, data type, study name, study status).
pub fn consents_of(
    conn: &mut DbConnection,
    patient_ids: &[i64],
) -> AppResult<Vec<(i64, i64, String, String)>> {
    let mut out = Vec::new();
    for chunk in patient_ids.chunks(500) {
        out.extend(
            consents::table
                .inner_join(studies::table)
                .filter(consents::patient_id.in_ids(chunk))
                .filter(consents::consented.eq(true))
                .select((
                    consents::patient_id,
                    consents::codeable_concept_id,
                    studies::name,
                    studies::status,
                ))
                .order((consents::patient_id, studies::id))
                .load::<(i64, i64, String, String)>(conn)?,
        );
    }
    Ok(out)
}
