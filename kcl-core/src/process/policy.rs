//! What the framework does when `process_records` fails: the [`RetryPolicy`] (attempts, backoff, record age,
//! bisect, what to do when retries run out) and how processing is checkpointed and parallelised
//! ([`ProcessingConfig`]).

use std::time::Duration;

use super::interval::CheckpointInterval;

/// What happens to records whose retries ran out (attempts used up, or older than the maximum age).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnExhausted {
    /// Stop the shard at the first such record: nothing after it is delivered, the checkpoint stays just before it,
    /// and the lease stays with this worker until it shuts down or loses the lease (the next owner retries from the
    /// checkpoint). The default: nothing is ever skipped unless you configure a destination.
    #[default]
    Block,
    /// Hand the records to the consumer's [`FailureDestination`](super::FailureDestination) and carry on; the
    /// checkpoint moves past them only once the destination has durably accepted them.
    SendToDestination,
}

/// Which records are delivered again after a partial failure ([`BatchFailure::records`](super::BatchFailure::records)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PartialRetry {
    /// Lambda's `ReportBatchItemFailures`: records before the lowest failed one count as processed; that record and
    /// **everything after it** in the batch are delivered again — records that had succeeded are re-delivered
    /// (at-least-once). The default.
    #[default]
    FromLowestFailure,
    /// Only the failed records are delivered again, plus any later record of the batch with the same partition key
    /// as a failed one (so each key stays in order). Records that succeeded are not re-delivered; the checkpoint
    /// still waits just before the lowest failed record, so memory holds at most the failed batch's records.
    FailedOnly,
}

/// How a consumer retries failed batches. Java KCL has no equivalent (it skips a batch whose processor throws);
/// the names follow AWS Lambda's Kinesis event source.
///
/// | setting | default | Lambda |
/// |---|---|---|
/// | [`max_attempts`](Self::max_attempts) | `None` (until it succeeds) | `MaximumRetryAttempts` (−1) — Lambda counts retries, this counts calls |
/// | [`backoff`](Self::backoff) | 500 ms doubling to 30 s, full jitter | — |
/// | [`max_record_age`](Self::max_record_age) | `None` | `MaximumRecordAgeInSeconds` (−1) |
/// | [`bisect_on_error`](Self::bisect_on_error) | `false` | `BisectBatchOnFunctionError` |
/// | [`partial_retry`](Self::partial_retry) | [`PartialRetry::FromLowestFailure`] | `ReportBatchItemFailures` |
/// | [`on_exhausted`](Self::on_exhausted) | [`OnExhausted::Block`] | `DestinationConfig.OnFailure` |
///
/// Lambda's usual poison-pill set-up: three calls, then split the batch to find the bad record, and send what still
/// fails to the consumer's failure destination (`WorkerBuilder::failure_destination`) instead of blocking the shard:
///
/// ```
/// use std::time::Duration;
///
/// use kcl_core::process::{OnExhausted, PartialRetry, RetryPolicy};
///
/// let policy = RetryPolicy::default()
///     .max_attempts(Some(3))
///     .backoff(Duration::from_millis(100), Duration::from_secs(5))
///     .max_record_age(Some(Duration::from_secs(3600)))
///     .bisect_on_error(true)
///     .partial_retry(PartialRetry::FailedOnly)
///     .on_exhausted(OnExhausted::SendToDestination);
/// // Hand it to `Worker::builder(..).retry_policy(policy)`.
/// # let _ = policy;
/// ```
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub(crate) max_attempts: Option<u32>,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_cap: Duration,
    pub(crate) max_record_age: Option<Duration>,
    pub(crate) bisect_on_error: bool,
    pub(crate) partial_retry: PartialRetry,
    pub(crate) on_exhausted: OnExhausted,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: None,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            max_record_age: None,
            bisect_on_error: false,
            partial_retry: PartialRetry::default(),
            on_exhausted: OnExhausted::default(),
        }
    }
}

impl RetryPolicy {
    /// Calls of `process_records` a record may take part in before its retries run out (`Some(1)`: no retry;
    /// `None`: unlimited). Bisected halves do not count as new attempts.
    pub fn max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Wait between attempts: `base` doubling up to `cap`, with full jitter.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap;
        self
    }

    /// Records that arrived in Kinesis longer ago than this are not processed: checked when a batch is formed and
    /// again before each retry (Lambda's `MaximumRecordAgeInSeconds`). Such records count as exhausted:
    /// [`on_exhausted`](Self::on_exhausted) decides (block, or the failure destination with
    /// [`FailureReason::RecordTooOld`](super::FailureReason::RecordTooOld)).
    pub fn max_record_age(mut self, age: Option<Duration>) -> Self {
        self.max_record_age = age;
        self
    }

    /// After a whole-batch failure, split the batch in two halves and retry each, down to single records, so one
    /// poison record does not take its neighbours with it. Splits do not use up attempts.
    pub fn bisect_on_error(mut self, yes: bool) -> Self {
        self.bisect_on_error = yes;
        self
    }

    /// Which records are delivered again after a partial failure.
    pub fn partial_retry(mut self, mode: PartialRetry) -> Self {
        self.partial_retry = mode;
        self
    }

    /// What happens when retries run out.
    pub fn on_exhausted(mut self, action: OnExhausted) -> Self {
        self.on_exhausted = action;
        self
    }

    pub(crate) fn validate(&self, has_destination: bool) -> Result<(), String> {
        if self.max_attempts == Some(0) {
            return Err("RetryPolicy::max_attempts must be at least 1 (None = unlimited)".to_owned());
        }
        if self.backoff_base.is_zero() || self.backoff_cap < self.backoff_base {
            return Err("RetryPolicy::backoff needs 0 < base <= cap".to_owned());
        }
        if self.on_exhausted == OnExhausted::SendToDestination && !has_destination {
            return Err("RetryPolicy::on_exhausted(SendToDestination) needs a failure destination: call \
                        WorkerBuilder::failure_destination(..)"
                .to_owned());
        }
        Ok(())
    }
}

/// Who moves the checkpoint after successful batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Checkpointing {
    /// The processor calls the [`Checkpointer`](super::Checkpointer) when its work is durable (Java KCL's model;
    /// the default with parallelism 1). Records that failed for good and went to the failure destination are
    /// covered by the processor's next checkpoint.
    #[default]
    Manual,
    /// The framework checkpoints after every batch that completed (Lambda's model): returning `Ok` from
    /// `process_records` means the records are processed. Always used with parallelism above 1.
    AfterEachBatch,
}

/// How records are batched, filtered, checkpointed and spread over concurrent processors within a shard.
///
/// | setting | default | Java KCL / Lambda |
/// |---|---|---|
/// | [`max_records`](Self::max_records) | `None` (a batch = what retrieval returned) | `maxRecords` / `BatchSize` |
/// | [`max_bytes`](Self::max_bytes) | `None` | — / 6 MB payload limit |
/// | [`batching_window`](Self::batching_window) | 0 (deliver at once) | — / `MaximumBatchingWindowInSeconds` |
/// | [`parallelism`](Self::parallelism) | 1 | — / `ParallelizationFactor` |
/// | [`checkpointing`](Self::checkpointing) | [`Checkpointing::Manual`] | processor checkpoints / automatic |
/// | [`checkpoint_interval`](Self::checkpoint_interval) | after every batch | application code / every batch |
///
/// Batches of at most 500 records or 1 MiB, filled for up to 200 ms on a quiet stream, processed by 4 processors
/// per shard (records of one partition key stay in order), checkpointed by the framework after each batch:
///
/// ```
/// use std::time::Duration;
///
/// use kcl_core::process::{Checkpointing, ProcessingConfig};
///
/// let processing = ProcessingConfig::default()
///     .max_records(Some(500))
///     .max_bytes(Some(1 << 20))
///     .batching_window(Duration::from_millis(200))
///     .parallelism(4)
///     .checkpointing(Checkpointing::AfterEachBatch);
/// // Hand it to `Worker::builder(..).processing(processing)`.
/// # let _ = processing;
/// ```
#[derive(Clone, Debug)]
pub struct ProcessingConfig {
    pub(crate) max_records: Option<usize>,
    pub(crate) max_bytes: Option<usize>,
    pub(crate) batching_window: Duration,
    pub(crate) parallelism: usize,
    pub(crate) checkpointing: Checkpointing,
    pub(crate) checkpoint_interval: CheckpointInterval,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self {
            max_records: None,
            max_bytes: None,
            batching_window: Duration::ZERO,
            parallelism: 1,
            checkpointing: Checkpointing::Manual,
            checkpoint_interval: CheckpointInterval::every_batch(),
        }
    }
}

impl ProcessingConfig {
    /// At most this many user records per `process_records` call (larger reads are split).
    pub fn max_records(mut self, records: Option<usize>) -> Self {
        self.max_records = records;
        self
    }

    /// At most this many payload bytes per batch (a single larger record still goes alone).
    pub fn max_bytes(mut self, bytes: Option<usize>) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Wait up to this long after the first buffered record for more, so batches are fuller on a quiet stream.
    /// A batch goes as soon as it reaches `max_records` or `max_bytes`, or the shard ends.
    pub fn batching_window(mut self, window: Duration) -> Self {
        self.batching_window = window;
        self
    }

    /// Concurrent `process_records` calls per shard (1–64). Records are spread by partition key over this many
    /// processors (the factory makes one each), so each key stays in order; the checkpoint advances to the highest
    /// position below which every record has completed. Above 1, checkpointing is
    /// [`AfterEachBatch`](Checkpointing::AfterEachBatch).
    pub fn parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// Who checkpoints after successful batches.
    pub fn checkpointing(mut self, checkpointing: Checkpointing) -> Self {
        self.checkpointing = checkpointing;
        self
    }

    /// How often the framework's checkpoints are written when it checkpoints (parallelism above 1 or
    /// [`Checkpointing::AfterEachBatch`]): after every batch (the default), or every N records and/or T per shard.
    /// The checkpoints at shard end, graceful shutdown and hand-over are always written. A processor that
    /// checkpoints itself passes an interval to
    /// [`Checkpointer::checkpoint_when_due`](super::Checkpointer::checkpoint_when_due) instead.
    pub fn checkpoint_interval(mut self, interval: CheckpointInterval) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        self.checkpoint_interval.validate()?;
        if !self.checkpoint_interval.is_every_batch() && !self.auto_checkpoint() {
            return Err("ProcessingConfig::checkpoint_interval (checkpoint_every_records, checkpoint_every_ms) applies to the framework's checkpoints \
                        (Checkpointing::AfterEachBatch or parallelism above 1); a processor that checkpoints itself \
                        passes the interval to Checkpointer::checkpoint_when_due"
                .to_owned());
        }
        if !(1..=64).contains(&self.parallelism) {
            return Err(format!("ProcessingConfig::parallelism must be 1..=64, got {}", self.parallelism));
        }
        if self.max_records == Some(0) || self.max_bytes == Some(0) {
            return Err("ProcessingConfig::max_records and max_bytes must be at least 1 (None = no limit)".to_owned());
        }
        if self.batching_window > Duration::from_secs(300) {
            return Err("ProcessingConfig::batching_window must be at most 300 s (as Lambda's)".to_owned());
        }
        Ok(())
    }

    /// Whether the framework writes checkpoints after batches.
    pub(crate) fn auto_checkpoint(&self) -> bool {
        self.parallelism > 1 || self.checkpointing == Checkpointing::AfterEachBatch
    }
}
