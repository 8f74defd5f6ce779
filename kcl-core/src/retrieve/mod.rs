//! Retrieval: reading the raw records of one shard, behind a transport-neutral trait.
//!
//! * [`RecordSource`] opens a [`ShardReader`] for a shard from a checkpoint; the reader hands out [`ReadBatch`]es
//!   until the shard ends. Polling ([`PollingFetcher`]) and enhanced fan-out ([`fanout::FanOutSource`]) plug in behind these two traits.
//! * [`PollingFetcher`] drives the `GetShardIterator`/`GetRecords` loop over any [`PollingApi`]: kcl-rs's own
//!   `GetRecords` codec over a Kinesis client ([`LeanPollingApi`], [`wire`]), the AWS SDK client
//!   ([`KinesisPollingApi`]) or, with feature `test-util`, the in-memory stream ([`memory_stream::MemoryStream`]),
//!   so the same pacing, backoff and iterator-recovery code runs in production and in deterministic tests.
//! * [`PrefetchReader`] reads ahead on a background task into a queue bounded by batches, records and bytes, with a
//!   per-worker [`ByteBudget`] shared by all shards.
//!
//! Readers yield raw [`KinesisRecord`]s; KPL de-aggregation is applied by the pipeline on top.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::KclError;
use crate::types::{ExtendedSequenceNumber, HashKeyRange, InitialPosition, KinesisRecord};

pub(crate) mod api;
pub(crate) mod backoff;
pub mod fanout;
pub(crate) mod kinesis;
mod lean;
mod metrics;
mod polling;
mod prefetch;
mod quiet_sdk;
pub mod wire;

#[cfg(feature = "test-util")]
pub mod memory_stream;

pub use api::{ApiError, ApiErrorKind, GetRecordsOutput, IteratorPosition, PollingApi};
pub use backoff::Backoff;
pub use kinesis::KinesisPollingApi;
pub(crate) use kinesis::classify as classify_sdk_error;
pub use lean::LeanPollingApi;
pub use polling::{MAX_RECORDS_PER_CALL, PollingConfig, PollingFetcher, PollingReader};
pub use prefetch::{ByteBudget, PrefetchConfig, PrefetchGauge, PrefetchReader};
pub use wire::WireFormat;

/// How a polling reader over a Kinesis client sends and decodes `GetRecords`
/// ([`WorkerBuilder::get_records_path`](crate::WorkerBuilder::get_records_path)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GetRecordsPath {
    /// kcl-rs's own signed request and decoder in this wire format ([`LeanPollingApi`]): records are slices of one
    /// buffer, and `http://` endpoints need no TLS set-up. The default, with [`WireFormat::default`].
    Lean(WireFormat),
    /// The AWS SDK's `GetRecords` operation ([`KinesisPollingApi`]): its HTTP client, deserialiser and one
    /// allocation per record.
    Sdk,
}

impl Default for GetRecordsPath {
    fn default() -> Self {
        Self::Lean(WireFormat::default())
    }
}

/// The shard a reader is opened for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShardSpec {
    /// The stream name, or its ARN (a value starting with `arn:` is sent as `StreamARN`).
    pub stream: Arc<str>,
    /// The shard id, e.g. `shardId-000000000001`.
    pub shard_id: Arc<str>,
    /// The shard's hash key range, when known (de-aggregation uses it to drop KPL user records that belong to another
    /// shard after a reshard).
    pub hash_key_range: Option<HashKeyRange>,
}

impl ShardSpec {
    /// A shard of a stream, without a known hash range.
    pub fn new(stream: impl Into<Arc<str>>, shard_id: impl Into<Arc<str>>) -> Self {
        Self { stream: stream.into(), shard_id: shard_id.into(), hash_key_range: None }
    }

    /// The same shard with its hash key range.
    pub fn with_hash_key_range(mut self, range: HashKeyRange) -> Self {
        self.hash_key_range = Some(range);
        self
    }
}

/// A shard that a closed shard's records continue in, as `GetRecords` reports it at the end of the parent.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChildShard {
    /// The child's shard id.
    pub shard_id: String,
    /// All parents of the child: one after a split, two after a merge.
    pub parent_shard_ids: Vec<String>,
    /// The child's hash key range.
    pub hash_key_range: HashKeyRange,
}

/// One read from a shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadBatch {
    /// Raw records in sequence-number order (may be empty: an empty read is normal, even before the shard's end).
    pub records: Vec<KinesisRecord>,
    /// How far the read position is behind the tip of the shard, in milliseconds (0 = caught up), when known.
    pub millis_behind_latest: Option<u64>,
    /// The children of a closed shard; `Some` on the final batch (`shard_end`), when the service reported them.
    pub child_shards: Option<Vec<ChildShard>>,
    /// This is the last batch: the shard is closed and every record in it has been returned.
    pub shard_end: bool,
}

impl ReadBatch {
    /// Payload plus partition-key bytes of every record (what the prefetch byte limits count).
    pub fn size_bytes(&self) -> usize {
        self.records.iter().map(KinesisRecord::size_bytes).sum()
    }
}

/// Reads one shard, batch by batch.
///
/// `next_batch` is cancellation-safe: dropping its future before it completes loses no records (the reader's
/// position only moves when a batch is returned). After the final batch (`shard_end`), further calls return an empty
/// final batch again. Readers retry transient failures themselves (see [`PollingConfig`]); an `Err` means the reader
/// gave up, and a non-retryable one ([`KclError::is_retryable`] false) will not go away by calling again.
#[async_trait]
pub trait ShardReader: Send {
    /// The next batch of records.
    async fn next_batch(&mut self) -> Result<ReadBatch, KclError>;
}

/// Opens readers: one per shard, from a checkpoint.
#[async_trait]
pub trait RecordSource: Send + Sync {
    /// A reader for `shard` that returns the records after the checkpoint `start`.
    ///
    /// * a sequence number (whole record, sub-sequence 0): records after it;
    /// * a sequence number with sub-sequence > 0 (a checkpoint inside a KPL aggregate): that aggregate again, then
    ///   the rest — the pipeline drops user records at or below the checkpoint;
    /// * `TRIM_HORIZON` / `LATEST`: the oldest retained record / records written from now on;
    /// * `AT_TIMESTAMP`: the timestamp it carries, or else the one in `initial_position`;
    /// * `SHARD_END`: nothing — the reader returns one empty final batch without calling the service.
    async fn open(
        &self,
        shard: &ShardSpec,
        start: &ExtendedSequenceNumber,
        initial_position: &InitialPosition,
    ) -> Result<Box<dyn ShardReader>, KclError>;
}
