//! The framework's error type.

use crate::lease::LeaseStoreError;
use crate::types::ParseSequenceNumberError;

/// Errors the framework returns to the application.
#[derive(Debug, thiserror::Error)]
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
