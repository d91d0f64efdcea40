//! Errors of the SQL adapters and their mapping to the ports' [`StoreError`].

use afritalk_ports::StoreError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What can go wrong while building a store or running its migrations.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The connection pool could not be built or could not hand out a connection.
    #[error("could not open the database pool for {target}: {reason}")]
    Pool {
        /// The database (URL without password, or file path).
        target: String,
        /// Why.
        reason: String,
    },
    /// The embedded migrations failed.
    #[error("database migrations failed: {0}")]
    Migration(String),
    /// The data directory or file could not be prepared.
    #[error("could not prepare {path}: {source}")]
    Io {
        /// The path at fault.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Error inside a transaction body: a database error (which rolls back and may
/// be inspected, e.g. for a unique violation) or a port answer decided midway.
#[derive(Debug)]
pub enum TxError {
    /// The database refused or failed a statement.
    Db(DieselError),
    /// The body decided to stop with this port error (the transaction rolls back).
    Store(StoreError),
}

impl From<DieselError> for TxError {
    fn from(err: DieselError) -> Self {
        TxError::Db(err)
    }
}

impl From<StoreError> for TxError {
    fn from(err: StoreError) -> Self {
        TxError::Store(err)
    }
}

impl TxError {
    /// The port error, with `context` saying what was being done.
    pub fn into_store(self, context: &str) -> StoreError {
        match self {
            TxError::Db(err) => db_error(context, err),
            TxError::Store(err) => err,
        }
    }
}

/// Whether a database error is a unique-key violation.
pub fn is_unique_violation(err: &TxError) -> bool {
    matches!(
        err,
        TxError::Db(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
}

/// Whether a transaction failed only because it met another one and was
/// chosen to give way (Postgres's deadlock detector, or a serialization
/// failure): run again, it succeeds or fails on its own merits.
pub fn is_retryable_conflict(err: &TxError) -> bool {
    match err {
        TxError::Db(DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _)) => true,
        // diesel names no kind for SQLSTATE 40P01; its message is fixed.
        TxError::Db(DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)) => {
            info.message().starts_with("deadlock detected")
        }
        _ => false,
    }
}

/// Maps a backend error met while doing `context` to `StoreError::Unavailable`.
pub fn db_error(context: &str, err: DieselError) -> StoreError {
    StoreError::Unavailable(format!("database error while {context}: {err}"))
}

/// Reports a stored row that no longer passes the domain's validation.
pub fn corrupt(what: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("stored {what} is invalid: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_deadlocks_and_serialization_failures_are_retried() {
        let db = |kind, message: &str| {
            TxError::Db(DieselError::DatabaseError(
                kind,
                Box::new(message.to_owned()),
            ))
        };
        assert!(is_retryable_conflict(&db(
            DatabaseErrorKind::Unknown,
            "deadlock detected"
        )));
        assert!(is_retryable_conflict(&db(
            DatabaseErrorKind::SerializationFailure,
            "could not serialize access"
        )));
        assert!(!is_retryable_conflict(&db(
            DatabaseErrorKind::UniqueViolation,
            "duplicate key"
        )));
        assert!(!is_retryable_conflict(&db(
            DatabaseErrorKind::Unknown,
            "relation does not exist"
        )));
        assert!(!is_retryable_conflict(&TxError::Store(
            StoreError::NotFound
        )));
    }
}
