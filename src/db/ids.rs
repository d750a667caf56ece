//! `column IN (ids)` with the ids bound as one text value, so the statement's text does not
//! depend on how many ids there are and diesel keeps it prepared. `eq_any` writes one
//! placeholder per id, and diesel never caches such a statement: every call parses and plans
//! it afresh, which on a list page cost more than running it.

use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{BigInt, Bool, Text};

use super::MultiBackend;

/// See the module: built by [`InIds::in_ids`].
#[derive(Debug, Clone)]
pub struct IdIn<C> {
    column: C,
    /// "1,2,3": the ids, comma-separated.
    list: String,
}

pub trait InIds: Sized {
    /// `self IN (ids)`, as one prepared statement whatever the number of ids.
    fn in_ids(self, ids: &[i64]) -> IdIn<Self>;
}

impl<C> InIds for C
where
    C: Expression<SqlType = BigInt>,
{
    fn in_ids(self, ids: &[i64]) -> IdIn<Self> {
        use std::fmt::Write;
        let mut list = String::with_capacity(ids.len() * 8);
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                list.push(',');
            }
            let _ = write!(list, "{id}");
        }
        IdIn { column: self, list }
    }
}

impl<C> Expression for IdIn<C> {
    type SqlType = Bool;
}

impl<C, QS> AppearsOnTable<QS> for IdIn<C> where C: AppearsOnTable<QS> {}

impl<C, QS> SelectableExpression<QS> for IdIn<C> where C: SelectableExpression<QS> {}

impl<C, GB> ValidGrouping<GB> for IdIn<C>
where
    C: ValidGrouping<GB>,
{
    type IsAggregate = C::IsAggregate;
}

impl<C> QueryId for IdIn<C> {
    type QueryId = ();
    // Keyed by its SQL text in diesel's statement cache, which is the same for any ids.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<C> QueryFragment<MultiBackend> for IdIn<C>
where
    C: QueryFragment<MultiBackend>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
        let pg = matches!(out.backend(), MultiBackend::Postgres(_));
        self.column.walk_ast(out.reborrow())?;
        if pg {
            // An array comparison: PostgreSQL uses the column's index for each element.
            out.push_sql(" = ANY(CAST(string_to_array(");
            out.push_bind_param::<Text, _>(&self.list)?;
            out.push_sql(", ',') AS BIGINT[]))");
        } else {
            // SQLite reads the list as a JSON array and probes the index once per id.
            out.push_sql(" IN (SELECT value FROM json_each('[' || ");
            out.push_bind_param::<Text, _>(&self.list)?;
            out.push_sql(" || ']'))");
        }
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
}
