//! The framework's error types, the bottom layer every stage may use: [`KclError`], what the framework returns to
//! the application, and [`LeaseStoreError`], what a lease store returns (kept here, below `lease`, because
//! `KclError` wraps it).

use crate::types::ParseSequenceNumberError;

/// Errors the framework returns to the application.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KclError {
    /// The configuration cannot work; the message says which setting and why.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The lease store failed.
    #[error(transparent)]
    LeaseStore(#[from] LeaseStoreError),
    /// A sequence number or checkpoint value could not be parsed.
    #[error("invalid sequence number: {0}")]
    SequenceNumber(#[from] ParseSequenceNumberError),
    /// A Kinesis call failed.
    #[error("Kinesis {operation} failed: {message}")]
    Kinesis {
        /// The API call, e.g. `GetRecords`.
        operation: &'static str,
        /// What went wrong.
        message: String,
        /// Whether retrying may succeed (throttling, 5xx, timeouts, expired iterators).
        retryable: bool,
    },
    /// A checkpoint request the framework refused because it could break at-least-once delivery.
    #[error("invalid checkpoint: {0}")]
    InvalidCheckpoint(String),
    /// This worker does not hold the lease (any more): it was lost, handed off, or never acquired, or the store
    /// rejected the write's fence because another worker owns it now. Stop processing the shard.
    #[error("lease {lease_key} is not held by this worker")]
    LeaseLost {
        /// The lease.
        lease_key: String,
    },
    /// A filter pattern (Lambda's `FilterCriteria`) could not be parsed; the message names the filter and the
    /// position in its pattern.
    #[error("invalid filter pattern: {0}")]
    InvalidFilter(String),
    /// The worker was shut down.
    #[error("the worker is shutting down")]
    Shutdown,
}

impl KclError {
    /// Whether retrying the failed operation may succeed (throttling, 5xx, timeouts, transient store errors).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Kinesis { retryable, .. } => *retryable,
            Self::LeaseStore(error) => error.is_retryable(),
            Self::InvalidConfig(_)
            | Self::SequenceNumber(_)
            | Self::InvalidCheckpoint(_)
            | Self::InvalidFilter(_)
            | Self::LeaseLost { .. }
            | Self::Shutdown => false,
        }
    }
}

/// Errors a [`LeaseStore`](crate::lease::LeaseStore) returns (also reachable as `kcl_core::lease::LeaseStoreError`).
#[derive(Debug, thiserror::Error)]
pub enum LeaseStoreError {
    /// The write's condition did not hold (another worker won the race, the lease moved on, or it does not exist).
    #[error("condition failed for lease {lease_key}: {reason}")]
    ConditionFailed {
        /// The lease (or heartbeat) key the write was for.
        lease_key: String,
        /// What the condition was, for the operator.
        reason: &'static str,
    },
    /// A throttled, timed-out or failed call that may succeed when retried. The write may or may not have happened.
    #[error("transient lease store error during {operation}: {message}")]
    Transient {
        /// The store operation, e.g. `renew_lease`.
        operation: &'static str,
        /// What went wrong (never credentials or payloads).
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An error retrying will not fix: misconfiguration, an incompatible table, missing permissions.
    #[error("lease store error during {operation}: {message}")]
    Fatal {
        /// The store operation, e.g. `create_lease_if_not_exists`.
        operation: &'static str,
        /// What went wrong and what to do about it.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl LeaseStoreError {
    /// Whether this is a lost race ([`LeaseStoreError::ConditionFailed`]).
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, Self::ConditionFailed { .. })
    }

    /// Whether retrying the call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Shorthand for a [`LeaseStoreError::ConditionFailed`].
    pub fn condition_failed(lease_key: impl Into<String>, reason: &'static str) -> Self {
        Self::ConditionFailed { lease_key: lease_key.into(), reason }
    }

    /// Shorthand for a [`LeaseStoreError::Transient`] without a source.
    pub fn transient(operation: &'static str, message: impl Into<String>) -> Self {
        Self::Transient { operation, message: message.into(), source: None }
    }

    /// Shorthand for a [`LeaseStoreError::Fatal`] without a source.
    pub fn fatal(operation: &'static str, message: impl Into<String>) -> Self {
        Self::Fatal { operation, message: message.into(), source: None }
    }
}
