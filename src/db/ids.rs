//! `column IN (list)` with the list bound as one text value, so the statement's text does
//! not depend on how long the list is and diesel keeps it prepared. `eq_any` writes one
//! placeholder per value, and diesel never caches such a statement: every call parses and
//! plans it afresh, which on a list page cost more than running it.

use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Bool, Text};

use super::MultiBackend;

/// See the module: built by [`InIds::in_ids`] and [`InTexts::in_texts`].
#[derive(Debug, Clone)]
pub struct InList<C> {
    column: C,
    /// The values: "1,2,3" for ids, a JSON array for texts.
    list: String,
    texts: bool,
}

pub trait InIds: Sized {
    /// `self IN (ids)`, as one prepared statement whatever the number of ids.
    fn in_ids(self, ids: &[i64]) -> InList<Self>;
}

impl<C> InIds for C
where
    C: Expression<SqlType = BigInt>,
{
    fn in_ids(self, ids: &[i64]) -> InList<Self> {
        use std::fmt::Write;
        let mut list = String::with_capacity(ids.len() * 8);
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                list.push(',');
            }
            let _ = write!(list, "{id}");
        }
        InList {
            column: self,
            list,
            texts: false,
        }
    }
}

/// Text columns, nullable or not.
pub trait TextLike {}
impl TextLike for Text {}
impl TextLike for diesel::sql_types::Nullable<Text> {}

pub trait InTexts: Sized {
    /// `self IN (texts)`, the texts bound as one JSON array.
    fn in_texts<S: AsRef<str>>(self, texts: &[S]) -> InList<Self>;
}

impl<C> InTexts for C
where
    C: Expression,
    C::SqlType: TextLike,
{
    fn in_texts<S: AsRef<str>>(self, texts: &[S]) -> InList<Self> {
        let texts: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        InList {
            column: self,
            list: serde_json::Value::from(texts).to_string(),
            texts: true,
        }
    }
}

impl<C> Expression for InList<C> {
    type SqlType = Bool;
}

impl<C, QS> AppearsOnTable<QS> for InList<C> where C: AppearsOnTable<QS> {}

impl<C, QS> SelectableExpression<QS> for InList<C> where C: SelectableExpression<QS> {}

impl<C, GB> ValidGrouping<GB> for InList<C>
where
    C: ValidGrouping<GB>,
{
    type IsAggregate = C::IsAggregate;
}

impl<C> QueryId for InList<C> {
    type QueryId = ();
    // Keyed by its SQL text in diesel's statement cache, which is the same for any list.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<C> QueryFragment<MultiBackend> for InList<C>
where
    C: QueryFragment<MultiBackend>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        let pg = matches!(out.backend(), MultiBackend::Postgres(_));
        self.column.walk_ast(out.reborrow())?;
        let (before, after) = match (pg, self.texts) {
            // An array comparison: PostgreSQL uses the column's index for each element.
            (true, false) => (" = ANY(CAST(string_to_array(", ", ',') AS BIGINT[]))"),
            (true, true) => (" IN (SELECT json_array_elements_text(CAST(", " AS json)))"),
            // SQLite reads the list as a JSON array and probes the index once per value.
            (false, false) => (" IN (SELECT value FROM json_each('[' || ", " || ']'))"),
            (false, true) => (" IN (SELECT value FROM json_each(", "))"),
        };
        out.push_sql(before);
        out.push_bind_param::<Text, _>(&self.list)?;
        out.push_sql(after);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_one_comma_separated_value() {
        use crate::db::schema::patients;
        assert_eq!(patients::id.in_ids(&[3, 1, 2]).list, "3,1,2");
        assert_eq!(patients::id.in_ids(&[]).list, "");
    }

    #[test]
    fn texts_become_one_json_array() {
        use crate::db::schema::patients;
        assert_eq!(
            patients::name_family.in_texts(&["a\"b", "c"]).list,
            r#"["a\"b","c"]"#
        );
    }
}
