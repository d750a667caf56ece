//! Hand-written SQL that stays prepared.
//!
//! diesel's `sql_query` marks every statement unsafe to cache, so each run parses and plans
//! its text again: a single observation upload spent more of the one writer's time preparing
//! statements than running them. `Sql` is the same thing (text plus bound values, rows read
//! by name) but diesel keeps the statement prepared, keyed by its text, when it is made with
//! [`Sql::kept`]. Only text drawn from a small set may be kept: diesel's cache is never
//! trimmed, so text that embeds values (id lists, row counts that vary) uses [`Sql::once`].
//!
//! The text marks each bound value with `?`, whatever the backend: it is cut at each mark
//! and diesel writes the backend's own placeholder (`?` or `$n`) there. No other `?` may
//! appear in the text.

use chrono::NaiveDateTime;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp, Untyped};
use diesel::RunQueryDsl;

use super::time::Stamp;
use super::{DbConnection, MultiBackend};

/// One bound value.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(std::borrow::Cow<'a, str>),
    OptText(Option<std::borrow::Cow<'a, str>>),
    Time(Stamp),
    OptTime(Option<Stamp>),
}

#[derive(Debug, Clone)]
pub struct Sql<'a> {
    text: String,
    values: Vec<Value<'a>>,
    keep: bool,
}

impl<'a> Sql<'a> {
    /// A statement diesel keeps prepared: its text must come from a small, fixed set.
    pub fn kept(text: impl Into<String>) -> Sql<'a> {
        Sql {
            text: text.into(),
            values: Vec::new(),
            keep: true,
        }
    }

    /// A statement prepared for this one run.
    pub fn once(text: impl Into<String>) -> Sql<'a> {
        Sql {
            keep: false,
            ..Sql::kept(text)
        }
    }

    pub fn bind(mut self, v: Value<'a>) -> Sql<'a> {
        self.values.push(v);
        self
    }

    pub fn int(self, v: i64) -> Sql<'a> {
        self.bind(Value::Int(v))
    }

    pub fn text(self, v: impl Into<std::borrow::Cow<'a, str>>) -> Sql<'a> {
        self.bind(Value::Text(v.into()))
    }

    pub fn time(self, v: NaiveDateTime) -> Sql<'a> {
        self.bind(Value::Time(Stamp(v)))
    }
}

impl QueryId for Sql<'_> {
    type QueryId = ();
    // Keyed by its text in diesel's statement cache.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Sql<'_> {
    type SqlType = Untyped;
}

impl RunQueryDsl<DbConnection> for Sql<'_> {}

impl QueryFragment<MultiBackend> for Sql<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        if !self.keep {
            out.unsafe_to_cache_prepared();
        }
        let mut pieces = self.text.split('?');
        if let Some(first) = pieces.next() {
            out.push_sql(first);
        }
        let mut values = self.values.iter();
        for piece in pieces {
            let Some(v) = values.next() else {
                return Err(mismatch(&self.text, self.values.len()));
            };
            match v {
                Value::Int(i) => out.push_bind_param::<BigInt, _>(i)?,
                Value::OptInt(i) => out.push_bind_param::<Nullable<BigInt>, _>(i)?,
                Value::Text(t) => out.push_bind_param::<Text, _>(t.as_ref())?,
                Value::OptText(t) => out.push_bind_param::<Nullable<Text>, _>(t)?,
                Value::Time(t) => out.push_bind_param::<Timestamp, _>(t)?,
                Value::OptTime(t) => out.push_bind_param::<Nullable<Timestamp>, _>(t)?,
            }
            out.push_sql(piece);
        }
        if values.next().is_some() {
            return Err(mismatch(&self.text, self.values.len()));
        }
        Ok(())
    }
}

fn mismatch(text: &str, values: usize) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(
        format!(
            "{values} values bound to a statement with {} places for them: {text}",
            text.matches('?').count()
        )
        .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::BigInt as Int;
    use diesel::Connection;

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Row {
        #[diesel(sql_type = Int)]
        n: i64,
        #[diesel(sql_type = Text)]
        t: String,
    }

    fn conn() -> DbConnection {
        DbConnection::Sqlite(
            diesel::sqlite::SqliteConnection::establish(":memory:").expect("an in-memory SQLite"),
        )
    }

    #[test]
    fn values_take_the_places_marked_in_the_text() {
        let mut c = conn();
        for (keep, n) in [(true, 1), (true, 2), (false, 3)] {
            let q = if keep {
                Sql::kept("SELECT ? + 1 AS n, ? AS t")
            } else {
                Sql::once("SELECT ? + 1 AS n, ? AS t")
            };
            let rows: Vec<Row> = q.int(n).text("x").load(&mut c).expect("runs");
            assert_eq!(
                rows,
                vec![Row {
                    n: n + 1,
                    t: "x".into()
                }]
            );
        }
    }

    #[test]
    fn a_value_too_many_or_too_few_is_an_error_not_a_wrong_statement() {
        let mut c = conn();
        let few = Sql::kept("SELECT ? AS n, ? AS t")
            .int(1)
            .load::<Row>(&mut c);
        assert!(format!("{:?}", few.expect_err("too few")).contains("1 values bound"));
        let many = Sql::kept("SELECT ? AS n, 'a' AS t")
            .int(1)
            .int(2)
            .load::<Row>(&mut c);
        assert!(format!("{:?}", many.expect_err("too many")).contains("2 values bound"));
    }
}
