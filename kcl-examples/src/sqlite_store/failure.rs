//! What a call of the SQLite lease store can fail with, and the classification of SQLite's errors into the
//! contract's classes (`Transient` or `Fatal`). The lowest file of the store: the pool, the schema and the store
//! all return it.

use kcl_core::lease::LeaseStoreError;
use rusqlite::ErrorCode;

/// What a call inside a connection can fail with: SQLite itself (classified later, knowing the operation) or a
/// contract outcome such as a lost condition.
pub(super) enum Failure {
    Sql(rusqlite::Error),
    Store(LeaseStoreError),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sql(error)
    }
}

impl From<LeaseStoreError> for Failure {
    fn from(error: LeaseStoreError) -> Self {
        Self::Store(error)
    }
}

impl Failure {
    pub(super) fn into_store_error(self, operation: &'static str) -> LeaseStoreError {
        match self {
            Self::Sql(error) => classify(operation, error),
            Self::Store(error) => error,
        }
    }
}

/// Maps a SQLite error onto the contract: lock contention that outlived the busy timeout, I/O trouble and a full
/// disk may clear up, so they are `Transient` (and a write that failed with them may or may not have happened, as the
/// contract warns); a corrupt or read-only file, a missing permission or a wrong schema will not, so they are `Fatal`.
pub(super) fn classify(operation: &'static str, error: rusqlite::Error) -> LeaseStoreError {
    let transient = matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::OutOfMemory
                | ErrorCode::OperationInterrupted
                | ErrorCode::SchemaChanged
        )
    );
    let message = match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            format!("the database stayed locked by another connection past the busy timeout: {error}")
        }
        _ => error.to_string(),
    };
    let source: Option<Box<dyn std::error::Error + Send + Sync>> = Some(Box::new(error));
    if transient {
        LeaseStoreError::Transient { operation, message, source }
    } else {
        LeaseStoreError::Fatal { operation, message, source }
    }
}
