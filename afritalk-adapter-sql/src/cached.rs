//! [`Cached`]: has diesel keep the prepared statement of a fixed-shape query
//! that it would otherwise prepare afresh on every call.
//!
//! diesel prepares every query, but keeps the prepared statement (once per
//! connection) only when the query says that is safe. `UPDATE`,
//! `ON CONFLICT … DO UPDATE`, inserts of `Option` fields left to `DEFAULT` and
//! `sql()` literals always say it is not: in general their SQL text varies
//! from call to call (one text per set of optional `SET` columns, per pattern
//! of `None`s, per generated literal), and caching an unbounded number of
//! texts would grow the cache (and, on Postgres, the server's prepared
//! statements) without limit. An uncached query costs Postgres a parse and a
//! plan on every call, and SQLite a `sqlite3_prepare`.
//!
//! That reason does not hold for a call site whose SQL text never varies:
//! every `SET` and `VALUES` part always present, no optional part, no
//! `sql()` text built at run time. Wrapping such a query in [`Cached`]
//! (`query.cached()`) tells diesel it may keep the statement. **Only wrap
//! queries of that shape**; the ones in [`sql_store!`](crate::sql_store) each
//! say why they qualify.
//!
//! The cache key stays the SQL text (the wrapper gives no static query id):
//! diesel-async renders the SQL of every query before its cache lookup
//! anyway, so a static id would only save hashing the text, while a text-keyed
//! entry can never hand one call site's statement to another. A wrongly
//! wrapped query with varying text would add cache entries, never run the
//! wrong statement.

use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A query whose prepared statement diesel may cache (see the module
/// documentation for when that is true).
#[derive(Debug, Clone, Copy)]
pub struct Cached<Q>(Q);

impl<Q> Cached<Q> {
    /// Wraps `query`, whose SQL text MUST be the same on every call of its call site.
    pub fn new(query: Q) -> Self {
        Self(query)
    }
}

/// `.cached()` on any query: [`Cached::new`] in method position.
pub trait CachedDsl: Sized {
    /// Marks this query as safe to keep prepared: its SQL text MUST be the same
    /// on every call of this call site (no optional parts).
    fn cached(self) -> Cached<Self> {
        Cached(self)
    }
}

impl<Q: QueryId> CachedDsl for Q {}

impl<Q> QueryId for Cached<Q> {
    // Keyed by SQL text, never by type (see the module documentation).
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}

// Lets synchronous diesel run it too (the SQLite hot paths do); diesel-async's
// `RunQueryDsl` already covers every query.
impl<Q, Conn> diesel::RunQueryDsl<Conn> for Cached<Q> {}

impl<Q, DB> QueryFragment<DB> for Cached<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        // The caller vouches that the text of this call site is fixed.
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::messages;
    use diesel::prelude::*;
    use diesel::sqlite::Sqlite;

    #[test]
    fn an_update_becomes_cacheable_and_keeps_its_sql() {
        let update = || {
            diesel::update(messages::table.filter(messages::id.eq("m")))
                .set(messages::content.eq("x"))
        };
        assert!(!update().is_safe_to_cache_prepared(&Sqlite).unwrap());
        assert!(
            update()
                .cached()
                .is_safe_to_cache_prepared(&Sqlite)
                .unwrap()
        );
        assert_eq!(
            diesel::debug_query::<Sqlite, _>(&update().cached()).to_string(),
            diesel::debug_query::<Sqlite, _>(&update()).to_string()
        );
    }
}
