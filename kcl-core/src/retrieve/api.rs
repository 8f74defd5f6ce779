//! `PollingApi`: the two Kinesis calls a polling reader makes, with errors classified once, at the edge.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{ChildShard, ShardSpec};
use crate::error::KclError;
use crate::types::{KinesisRecord, SequenceNumber};

/// Where a shard iterator starts (`ShardIteratorType` plus its argument).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IteratorPosition {
    /// `TRIM_HORIZON`: the oldest retained record.
    TrimHorizon,
    /// `LATEST`: just after the newest record.
    Latest,
    /// `AT_TIMESTAMP`: the first record that arrived at or after the time.
    AtTimestamp(SystemTime),
    /// `AT_SEQUENCE_NUMBER`: the record with this sequence number, then the rest.
    AtSequence(SequenceNumber),
    /// `AFTER_SEQUENCE_NUMBER`: the records after this sequence number.
    AfterSequence(SequenceNumber),
}

/// What kind of failure a Kinesis call had, which decides what the reader does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiErrorKind {
    /// `ProvisionedThroughputExceededException`, `KMSThrottlingException`, `LimitExceededException`: back off.
    Throttled,
    /// `ExpiredIteratorException`: get a new iterator from the last returned record.
    ExpiredIterator,
    /// `InternalFailureException` or any HTTP 5xx.
    ServerError,
    /// The call timed out (no answer within the SDK's or the reader's timeout).
    Timeout,
    /// The request could not be sent or the response could not be read (connection reset, DNS, truncated body).
    Dispatch,
    /// `ResourceNotFoundException`: no such stream or shard (or, on some emulators, a foreign sequence number).
    NotFound,
    /// `InvalidArgumentException` and other request errors.
    InvalidArgument,
    /// `AccessDeniedException` and the KMS errors other than throttling: permissions or key state.
    AccessDenied,
    /// Anything else the reader does not know how to recover from.
    Other,
}

impl ApiErrorKind {
    /// Whether retrying (after a backoff, or with a fresh iterator) may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::ExpiredIterator | Self::ServerError | Self::Timeout | Self::Dispatch)
    }

    /// The `kind` label of `kcl_get_records_errors_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::ExpiredIterator => "expired_iterator",
            Self::ServerError => "server_error",
            Self::Timeout => "timeout",
            Self::Dispatch => "dispatch",
            Self::NotFound => "not_found",
            Self::InvalidArgument => "invalid_argument",
            Self::AccessDenied => "access_denied",
            Self::Other => "other",
        }
    }
}

/// A failed [`PollingApi`] call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The classification.
    pub kind: ApiErrorKind,
    /// What the service or transport said (never credentials or payloads).
    pub message: String,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// The framework error for a failed `operation`.
    pub fn into_kcl(self, operation: &'static str) -> KclError {
        KclError::Kinesis {
            operation,
            message: format!("{} ({})", self.message, self.kind.as_str()),
            retryable: self.kind.is_retryable(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// One `GetRecords` response.
#[derive(Clone, Debug)]
pub struct GetRecordsOutput<I> {
    /// The records, in order.
    pub records: Vec<KinesisRecord>,
    /// The iterator for the next call; `None` when the shard is closed and fully read (`SHARD_END`).
    pub next_iterator: Option<I>,
    /// `MillisBehindLatest`, when present.
    pub millis_behind_latest: Option<u64>,
    /// `ChildShards` (present at the end of a closed shard).
    pub child_shards: Vec<ChildShard>,
}

/// The polling calls of Kinesis, implemented for the AWS SDK client
/// ([`KinesisPollingApi`](super::KinesisPollingApi)) and the in-memory stream. Implementations make exactly one
/// service call per method call (no hidden retries), so the reader's pacing is the only source of calls.
#[async_trait]
pub trait PollingApi: Send + Sync + 'static {
    /// A shard iterator (an opaque string for Kinesis).
    type Iterator: Clone + Send + Sync + 'static;

    /// The least time between two calls for one shard that the backend tolerates. Kinesis allows 5 `GetRecords`
    /// calls per second per shard, hence the 200 ms default; readers never call faster, whatever their configuration.
    fn min_time_between_calls(&self) -> Duration {
        Duration::from_millis(200)
    }

    /// `GetShardIterator`. `Ok(None)` means there is nothing left to read at that position (a closed shard read past
    /// its end).
    async fn get_shard_iterator(
        &self,
        shard: &ShardSpec,
        position: &IteratorPosition,
    ) -> Result<Option<Self::Iterator>, ApiError>;

    /// `GetRecords` with `Limit = limit` (1..=10000).
    async fn get_records(
        &self,
        iterator: &Self::Iterator,
        limit: usize,
    ) -> Result<GetRecordsOutput<Self::Iterator>, ApiError>;
}
