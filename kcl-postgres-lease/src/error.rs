//! The crate's one error type, [`PostgresLeaseError`], and how PostgreSQL's errors map onto the `LeaseStore`
//! contract's classes (`ConditionFailed`, `Transient`, `Fatal`). The lowest file of the crate.

use kcl_core::lease::LeaseStoreError;
use tokio_postgres::error::SqlState;

/// What can go wrong in this crate: opening the store, a lease-store call, or a checkpoint inside the application's
/// transaction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresLeaseError {
    /// The checkpoint's fence no longer holds (the lease moved to another owner or its counter moved on): the
    /// transaction was rolled back, so none of its writes happened. Normal for a worker that lost its lease.
    #[error("lease {lease_key}: {reason}; the transaction was rolled back")]
    Fenced {
        /// The lease the checkpoint was for.
        lease_key: String,
        /// The condition that did not hold.
        reason: &'static str,
    },
    /// A checkpoint that cannot be written: not a record position, or beyond what was delivered.
    #[error("invalid checkpoint for lease {lease_key}: {message}")]
    InvalidCheckpoint {
        /// The lease the checkpoint was for.
        lease_key: String,
        /// Why.
        message: String,
    },
    /// A call to PostgreSQL failed. `retryable` tells whether trying again may help (connection lost, serialization
    /// failure, deadlock, server shutting down); when the failure hit a `COMMIT`, whether it committed is unknown.
    #[error("PostgreSQL error during {operation}: {source}")]
    Database {
        /// What the store was doing, e.g. `renew_lease`.
        operation: &'static str,
        /// Whether a retry may succeed.
        retryable: bool,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The transaction with the checkpoint committed, but the framework could not record the checkpoint (the lease is
    /// being lost or the worker stops). The batch's effects are durable; return the error and stop processing.
    #[error("lease {lease_key}: committed, but the framework could not record the checkpoint: {source}")]
    Framework {
        /// The lease the checkpoint was for.
        lease_key: String,
        /// The framework's error.
        #[source]
        source: kcl_core::KclError,
    },
    /// The table exists with other columns, a value is out of range, or the configuration is unusable.
    #[error("{operation}: {message}")]
    Unusable {
        /// What the store was doing.
        operation: &'static str,
        /// What is wrong and what to do about it.
        message: String,
    },
}

impl PostgresLeaseError {
    /// Wraps a driver error, classifying it.
    pub(crate) fn database(operation: &'static str, source: tokio_postgres::Error) -> Self {
        let retryable = is_retryable(&source);
        Self::Database { operation, retryable, source }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Database { retryable: true, .. })
    }

    /// Whether this is the fence of a checkpoint failing (the lease is no longer this worker's).
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }
}

/// Whether a driver error is worth retrying: no SQLSTATE (the connection broke, a timeout), a connection exception
/// (class 08), a transaction rollback (class 40: serialization failure, deadlock), insufficient resources (53), an
/// operator intervention (57: shutdown, cancel) or a lock not available (55P03). Everything else (a missing table or
/// column, a permission, a type) will fail again.
pub(crate) fn is_retryable(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            let class = &code.code()[..2];
            matches!(class, "08" | "40" | "53" | "57") || *code == SqlState::LOCK_NOT_AVAILABLE
        }
    }
}

impl From<PostgresLeaseError> for LeaseStoreError {
    fn from(error: PostgresLeaseError) -> Self {
        match error {
            PostgresLeaseError::Fenced { lease_key, reason } => LeaseStoreError::condition_failed(lease_key, reason),
            PostgresLeaseError::Database { operation, retryable: true, source } => {
                LeaseStoreError::Transient { operation, message: source.to_string(), source: Some(Box::new(source)) }
            }
            PostgresLeaseError::Database { operation, retryable: false, source } => {
                LeaseStoreError::Fatal { operation, message: source.to_string(), source: Some(Box::new(source)) }
            }
            PostgresLeaseError::InvalidCheckpoint { lease_key, message } => {
                LeaseStoreError::fatal("checkpoint", format!("lease {lease_key}: {message}"))
            }
            PostgresLeaseError::Unusable { operation, message } => LeaseStoreError::fatal(operation, message),
            PostgresLeaseError::Framework { lease_key, source } => {
                LeaseStoreError::fatal("commit_with_checkpoint", format!("lease {lease_key}: {source}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_and_unusable_map_to_the_contract_classes() {
        let fenced: LeaseStoreError = PostgresLeaseError::Fenced { lease_key: "k".into(), reason: "owner" }.into();
        assert!(fenced.is_condition_failed());
        let unusable: LeaseStoreError =
            PostgresLeaseError::Unusable { operation: "open", message: "other columns".into() }.into();
        assert!(matches!(unusable, LeaseStoreError::Fatal { .. }));
        assert!(!PostgresLeaseError::Unusable { operation: "open", message: String::new() }.is_retryable());
    }
}
