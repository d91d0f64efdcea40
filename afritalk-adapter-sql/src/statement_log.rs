//! Test support (feature `testing`): [`StatementLog`] records, through diesel's
//! connection instrumentation, which statements a connection ran and which it
//! prepared into its statement cache, so a test can prove that a workload is
//! prepared once per connection and then only reused.
//!
//! diesel reports `CacheQuery` exactly when it prepares a statement *to keep*
//! it; a statement it refuses to keep is prepared (and, on Postgres, parsed and
//! planned) again on every call without any such event. Hence the check of
//! [`assert_prepared_once`]: every prepared statement the workload ran must
//! have been cached, and a repeat of the workload must cache nothing new.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use diesel::connection::{Instrumentation, InstrumentationEvent};

/// How a query sent as a prepared statement renders in diesel's
/// `StartQuery` event (`<sql> -- binds: [...]`); plain-text batches such as
/// `BEGIN` and `COMMIT` render bare and are never prepared.
const BINDS_MARKER: &str = " -- binds: ";

/// What a connection did while the log listened.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Statements {
    /// SQL of every prepared statement run (once per distinct text).
    pub run: BTreeSet<String>,
    /// SQL of every prepared statement run, in order (repeats included).
    pub sequence: Vec<String>,
    /// SQL of every statement prepared into the statement cache, in order.
    pub cached: Vec<String>,
}

/// A shared record of one connection's statements (see the module documentation).
#[derive(Debug, Default, Clone)]
pub struct StatementLog {
    inner: Arc<Mutex<Statements>>,
}

impl StatementLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The instrumentation to install with `AsyncConnection::set_instrumentation`.
    pub fn recorder(&self) -> impl Instrumentation + use<> {
        let inner = Arc::clone(&self.inner);
        move |event: InstrumentationEvent<'_>| {
            let mut log = inner.lock().unwrap_or_else(PoisonError::into_inner);
            match event {
                InstrumentationEvent::StartQuery { query, .. } => {
                    let rendered = query.to_string();
                    if let Some((sql, _binds)) = rendered.split_once(BINDS_MARKER) {
                        log.run.insert(sql.to_owned());
                        log.sequence.push(sql.to_owned());
                    }
                }
                InstrumentationEvent::CacheQuery { sql, .. } => log.cached.push(sql.to_owned()),
                _ => {}
            }
        }
    }

    /// Returns what was recorded since the last call and starts afresh.
    pub fn take(&self) -> Statements {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Panics unless the workload behind `first` and its repeat behind `second`
/// were prepared once: every statement either run was kept in the cache, and
/// the repeat kept nothing new. Returns the statements of the workload.
pub fn assert_prepared_once(first: &Statements, second: &Statements) -> BTreeSet<String> {
    let kept: BTreeSet<&String> = first.cached.iter().chain(&second.cached).collect();
    let not_kept: BTreeSet<&String> = first
        .run
        .iter()
        .chain(&second.run)
        .filter(|sql| !kept.contains(sql))
        .collect();
    assert!(
        not_kept.is_empty(),
        "{} statement(s) prepared on every call (not kept in the statement cache):\n{}",
        not_kept.len(),
        not_kept
            .iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        second.cached.is_empty(),
        "the repeat prepared {} new statement(s):\n{}",
        second.cached.len(),
        second.cached.join("\n")
    );
    first.run.clone()
}
