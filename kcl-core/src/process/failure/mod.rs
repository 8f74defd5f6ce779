//! Failure destinations (a dead-letter path, Lambda's `OnFailure`): where records go whose retries ran out, so the
//! shard can move on without losing them. The checkpoint passes such records only after
//! [`FailureDestination::send`] returned `Ok`, i.e. once the destination holds them durably.
//!
//! Shipped: [`JsonLinesDestination`] (a local file, fsynced, rotating) and [`KinesisStreamDestination`] (another
//! stream, partition keys kept).

mod file;
mod kinesis;

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

pub use file::JsonLinesDestination;
pub use kinesis::KinesisStreamDestination;

use super::ProcessorError;
use crate::types::Record;

/// Why records were given up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// They took part in `max_attempts` failed calls.
    AttemptsExhausted,
    /// They were older than `max_record_age` when their batch was formed or a retry was due.
    RecordTooOld,
}

impl FailureReason {
    /// `attempts_exhausted` or `record_too_old`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::RecordTooOld => "record_too_old",
        }
    }
}

/// Records given up on, with what a person (or a replay tool) needs to act on them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FailedRecords {
    /// The stream they were read from.
    pub stream: Arc<str>,
    /// Their shard.
    pub shard_id: Arc<str>,
    /// The records, in shard order (positions: [`Record::extended_sequence_number`]).
    pub records: Vec<Record>,
    /// Failed `process_records` calls they took part in.
    pub attempts: u32,
    /// The processor's last error, as text.
    pub last_error: String,
    /// When they first failed.
    pub first_failure: SystemTime,
    /// Why they were given up on.
    pub reason: FailureReason,
}

impl FailedRecords {
    /// `records` of `stream`/`shard_id` given up on for `reason`, first failed now, with no attempt or error recorded
    /// yet (set them with the `with_*` setters). For tests of destinations; the framework fills every field.
    pub fn new(
        stream: impl Into<Arc<str>>,
        shard_id: impl Into<Arc<str>>,
        records: Vec<Record>,
        reason: FailureReason,
    ) -> Self {
        Self {
            stream: stream.into(),
            shard_id: shard_id.into(),
            records,
            attempts: 0,
            last_error: String::new(),
            first_failure: SystemTime::now(),
            reason,
        }
    }
}

with_setters!(FailedRecords {
    with_records => records: Vec<Record>,
    with_attempts => attempts: u32,
    with_last_error => last_error: String,
    with_first_failure => first_failure: SystemTime,
});

/// Receives records whose retries ran out. `send` must return `Ok` only once the records are durably stored: the
/// shard's checkpoint then moves past them. An `Err` is retried with backoff (the shard waits), so a destination
/// that is down never causes loss.
#[async_trait]
pub trait FailureDestination: Send + Sync + 'static {
    /// Stores `failed` durably.
    async fn send(&self, failed: &FailedRecords) -> Result<(), ProcessorError>;
}
