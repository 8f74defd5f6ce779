//! `PollingFetcher` and `PollingReader`: the `GetShardIterator`/`GetRecords` loop with pacing, backoff and
//! iterator recovery, over any [`PollingApi`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tracing::Instrument;

use super::api::{ApiError, ApiErrorKind, IteratorPosition, PollingApi};
use super::backoff::{Backoff, fnv1a};
use super::metrics::ReaderMetrics;
use super::prefetch::{ByteBudget, PrefetchConfig, PrefetchReader};
use super::{ChildShard, ReadBatch, RecordSource, ShardReader, ShardSpec};
use crate::error::KclError;
use crate::types::{ExtendedSequenceNumber, InitialPosition, SequenceNumber};

/// Kinesis's `GetRecords` `Limit` maximum.
pub const MAX_RECORDS_PER_CALL: usize = 10_000;

/// Settings of a [`PollingFetcher`]. Defaults follow Java KCL. Other crates start from `default()` and change what
/// they need with the `with_*` setters (the struct may grow, so it cannot be written as a literal outside kcl-core).
///
/// ```
/// use std::time::Duration;
///
/// use kcl_core::retrieve::{PollingConfig, PrefetchConfig};
///
/// // Smaller reads, a shorter wait on a caught-up shard, and a read-ahead of 2 batches or 4 MiB.
/// let polling = PollingConfig::default()
///     .with_max_records(1000)
///     .with_idle_time_between_reads(Duration::from_millis(500))
///     .with_prefetch(Some(PrefetchConfig::new(2, 4 << 20, 2000)));
/// assert_eq!(polling.max_records, 1000);
/// assert_eq!(polling.retry_cap, Duration::from_secs(10)); // untouched: the default
/// // Hand it to `Worker::builder(..).polling_config(polling)`.
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PollingConfig {
    /// `GetRecords` `Limit` (KCL `maxRecords`, default 10000; 1..=10000).
    pub max_records: usize,
    /// Longest wait between reads of a caught-up shard (KCL `idleTimeBetweenReadsInMillis`, default 1500 ms).
    pub idle_time_between_reads: Duration,
    /// Least time between the starts of two calls for one shard (default 200 ms; never below the backend's floor).
    pub min_time_between_calls: Duration,
    /// First retry backoff ceiling (KCL `taskBackoffTimeMillis`, default 500 ms).
    pub retry_base: Duration,
    /// Largest retry backoff ceiling (default 10 s).
    pub retry_cap: Duration,
    /// Consecutive retryable failures after which `next_batch` returns a retryable error (the reader stays usable);
    /// `None` (default) retries until it works, logging a warning every 10 failures.
    pub max_retries: Option<u32>,
    /// Timeout of one call, a guard above the SDK's own timeouts (default 30 s).
    pub call_timeout: Duration,
    /// Read-ahead per shard; `None` reads only when asked (default: KCL's 4 batches, 8 MiB, 30000 records).
    pub prefetch: Option<PrefetchConfig>,
    /// Bytes all prefetch queues of one fetcher may hold together (default 256 MiB; see [`ByteBudget`]).
    pub worker_prefetch_bytes: usize,
    /// Seed for the retry jitter; `None` (default) seeds randomly. Tests set it for reproducible schedules.
    pub backoff_seed: Option<u64>,
}

impl Default for PollingConfig {
    fn default() -> Self {
        Self {
            max_records: MAX_RECORDS_PER_CALL,
            idle_time_between_reads: Duration::from_millis(1500),
            min_time_between_calls: Duration::from_millis(200),
            retry_base: Duration::from_millis(500),
            retry_cap: Duration::from_secs(10),
            max_retries: None,
            call_timeout: Duration::from_secs(30),
            prefetch: Some(PrefetchConfig::default()),
            worker_prefetch_bytes: 256 << 20,
            backoff_seed: None,
        }
    }
}

with_setters!(PollingConfig {
    with_max_records => max_records: usize,
    with_idle_time_between_reads => idle_time_between_reads: Duration,
    with_min_time_between_calls => min_time_between_calls: Duration,
    with_retry_base => retry_base: Duration,
    with_retry_cap => retry_cap: Duration,
    with_max_retries => max_retries: Option<u32>,
    with_call_timeout => call_timeout: Duration,
    with_prefetch => prefetch: Option<PrefetchConfig>,
    with_worker_prefetch_bytes => worker_prefetch_bytes: usize,
    with_backoff_seed => backoff_seed: Option<u64>,
});

impl PollingConfig {
    fn validate(&self) -> Result<(), KclError> {
        let bad = |message: &str| Err(KclError::InvalidConfig(message.to_owned()));
        if !(1..=MAX_RECORDS_PER_CALL).contains(&self.max_records) {
            return bad("polling max_records must be between 1 and 10000 (the GetRecords Limit range)");
        }
        if self.call_timeout.is_zero() {
            return bad("polling call_timeout must be positive");
        }
        if let Some(prefetch) = &self.prefetch {
            prefetch.validate()?;
        }
        Ok(())
    }
}

/// Opens [`PollingReader`]s (wrapped in a [`PrefetchReader`] when prefetch is configured) over a [`PollingApi`].
///
/// # Call policy (per shard)
/// * **Rate.** Calls for one shard start at least `min_time_between_calls` apart (200 ms for Kinesis, whose limit is
///   5 `GetRecords` calls per second per shard); the floor is the backend's
///   ([`PollingApi::min_time_between_calls`]), so configuration cannot lower it.
/// * **Adaptive idle time.** After a full batch or a response with `MillisBehindLatest > 0` the reader reads again as
///   soon as the rate allows. When caught up, an empty response doubles the wait (from the rate floor) up to
///   `idle_time_between_reads` (Java KCL `idleTimeBetweenReadsInMillis`, 1500 ms); a caught-up response with records
///   keeps the current wait.
/// * **Retryable failures** (throttling, KMS throttling, 5xx, timeouts, dispatch errors) wait an exponential backoff
///   with full jitter (`retry_base`, capped at `retry_cap`) on top of the rate floor, then retry with the same
///   iterator. **Expired iterators** are replaced: `AFTER_SEQUENCE_NUMBER` of the last returned record, or the start
///   position if nothing was returned yet; the first expiry after a success is retried at once, later ones back off.
///   **Other failures** (not found, invalid argument, access denied) end the reader with a non-retryable error.
/// * **Start.** A sequence-number checkpoint is read with `AT_SEQUENCE_NUMBER`. With a sub-sequence number > 0 the
///   aggregate is returned again (the pipeline drops user records at or below the checkpoint). With sub-sequence 0 the
///   record itself is dropped unless it is a KPL aggregate — exactly `AFTER_SEQUENCE_NUMBER` for plain records, while
///   a checkpoint at user record 0 of an aggregate does not lose the aggregate's other user records.
pub struct PollingFetcher<A: PollingApi> {
    api: Arc<A>,
    config: PollingConfig,
    budget: ByteBudget,
}

impl<A: PollingApi> std::fmt::Debug for PollingFetcher<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollingFetcher").field("config", &self.config).field("budget", &self.budget).finish()
    }
}

impl<A: PollingApi> PollingFetcher<A> {
    /// A fetcher over `api`; fails on an invalid configuration.
    pub fn new(api: A, config: PollingConfig) -> Result<Self, KclError> {
        config.validate()?;
        let budget = ByteBudget::new(config.worker_prefetch_bytes);
        Ok(Self { api: Arc::new(api), config, budget })
    }

    /// Shares `budget` (e.g. one per worker across several streams) instead of the fetcher's own.
    pub fn with_byte_budget(mut self, budget: ByteBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The prefetch byte budget this fetcher's readers draw from.
    pub fn byte_budget(&self) -> &ByteBudget {
        &self.budget
    }

    /// The configuration.
    pub fn config(&self) -> &PollingConfig {
        &self.config
    }

    /// The backend.
    pub fn api(&self) -> &Arc<A> {
        &self.api
    }

    /// A reader without prefetch (reads when asked), as a concrete type.
    pub fn reader(
        &self,
        shard: &ShardSpec,
        start: &ExtendedSequenceNumber,
        initial_position: &InitialPosition,
    ) -> Result<PollingReader<A>, KclError> {
        PollingReader::new(Arc::clone(&self.api), shard.clone(), start, initial_position, &self.config)
    }
}

#[async_trait]
impl<A: PollingApi> RecordSource for PollingFetcher<A> {
    async fn open(
        &self,
        shard: &ShardSpec,
        start: &ExtendedSequenceNumber,
        initial_position: &InitialPosition,
    ) -> Result<Box<dyn ShardReader>, KclError> {
        let mut reader = self.reader(shard, start, initial_position)?;
        match &self.config.prefetch {
            None => Ok(Box::new(reader)),
            Some(prefetch) => {
                // A call never asks for more than the queue can take, so the record bound holds exactly.
                reader.limit = reader.limit.min(prefetch.max_records);
                let limit = reader.limit;
                let span = reader.span.clone();
                Ok(Box::new(PrefetchReader::spawn(reader, prefetch.clone(), limit, self.budget.clone(), span)))
            }
        }
    }
}

/// Where the reader is in its life.
enum Phase {
    Reading,
    /// The final batch was returned; `None` children when they are unknown.
    Ended(Option<Vec<ChildShard>>),
    /// A non-retryable error ended the reader.
    Failed(String),
}

/// Reads one shard by polling; see [`PollingFetcher`] for the call policy.
pub struct PollingReader<A: PollingApi> {
    api: Arc<A>,
    shard: ShardSpec,
    /// Where to start when nothing has been returned yet.
    start: IteratorPosition,
    /// A whole-record checkpoint read with `AT_SEQUENCE_NUMBER`: drop that record unless it is a KPL aggregate.
    skip_record_at: Option<SequenceNumber>,
    /// The last record read (returned, or skipped as the checkpoint); an expired iterator restarts after it.
    last_returned: Option<SequenceNumber>,
    iterator: Option<A::Iterator>,
    phase: Phase,
    limit: usize,
    min_gap: Duration,
    idle: Duration,
    idle_start: Duration,
    idle_max: Duration,
    next_call_at: Instant,
    backoff: Backoff,
    max_retries: Option<u32>,
    call_timeout: Duration,
    metrics: ReaderMetrics,
    span: tracing::Span,
}

impl<A: PollingApi> PollingReader<A> {
    fn new(
        api: Arc<A>,
        shard: ShardSpec,
        start: &ExtendedSequenceNumber,
        initial_position: &InitialPosition,
        config: &PollingConfig,
    ) -> Result<Self, KclError> {
        let (position, skip_record_at, phase) = match start_position(&shard, start, initial_position)? {
            Some((position, skip)) => (position, skip, Phase::Reading),
            None => (IteratorPosition::Latest, None, Phase::Ended(None)),
        };
        let min_gap = config.min_time_between_calls.max(api.min_time_between_calls());
        let idle_start = min_gap.max(Duration::from_millis(1));
        let seed = config.backoff_seed.map(|seed| seed ^ fnv1a(shard.shard_id.as_bytes()));
        let backoff = match seed {
            Some(seed) => Backoff::with_seed(config.retry_base, config.retry_cap, seed),
            None => Backoff::new(config.retry_base, config.retry_cap),
        };
        Ok(Self {
            metrics: ReaderMetrics::new(&shard),
            span: tracing::info_span!("kcl_shard_reader", stream = %shard.stream, shard = %shard.shard_id),
            api,
            shard,
            start: position,
            skip_record_at,
            last_returned: None,
            iterator: None,
            phase,
            limit: config.max_records,
            min_gap,
            idle: idle_start,
            idle_start,
            idle_max: config.idle_time_between_reads.max(idle_start),
            next_call_at: Instant::now(),
            backoff,
            max_retries: config.max_retries,
            call_timeout: config.call_timeout,
        })
    }

    /// The shard this reader reads.
    pub fn shard(&self) -> &ShardSpec {
        &self.shard
    }

    /// The last record read so far (returned, or skipped as the checkpointed record itself).
    pub fn last_returned(&self) -> Option<&SequenceNumber> {
        self.last_returned.as_ref()
    }

    async fn read(&mut self) -> Result<ReadBatch, KclError> {
        loop {
            match &self.phase {
                Phase::Reading => {}
                Phase::Ended(children) => {
                    return Ok(ReadBatch { child_shards: children.clone(), shard_end: true, ..ReadBatch::default() });
                }
                Phase::Failed(message) => {
                    return Err(KclError::Kinesis {
                        operation: "GetRecords",
                        message: format!("reader stopped after an earlier error: {message}"),
                        retryable: false,
                    });
                }
            }
            tokio::time::sleep_until(self.next_call_at).await;
            let Some(iterator) = self.iterator.clone() else {
                self.acquire_iterator().await?;
                continue;
            };
            let call_start = Instant::now();
            self.next_call_at = call_start + self.min_gap;
            self.metrics.call();
            let result =
                match tokio::time::timeout(self.call_timeout, self.api.get_records(&iterator, self.limit)).await {
                    Ok(result) => result,
                    Err(_) => {
                        Err(ApiError::new(ApiErrorKind::Timeout, format!("no answer within {:?}", self.call_timeout)))
                    }
                };
            match result {
                Ok(output) => {
                    self.backoff.reset();
                    let mut records = output.records;
                    let full = records.len() >= self.limit;
                    // Taken from the raw batch: a skipped record counts as passed, so an expiry restarts after it.
                    if let Some(last) = records.last() {
                        self.last_returned = Some(last.sequence_number.clone());
                    }
                    // Only a non-empty batch proves the checkpointed record has gone by; empty reads keep the skip.
                    if !records.is_empty()
                        && let Some(skip) = self.skip_record_at.take()
                    {
                        records.retain(|r| r.sequence_number != skip || r.has_kpl_magic());
                    }
                    if let Some(millis) = output.millis_behind_latest {
                        self.metrics.millis_behind_latest(millis);
                    }
                    self.metrics.records_read(&records);
                    self.pace_after_success(call_start, full, records.is_empty(), output.millis_behind_latest);
                    let shard_end = output.next_iterator.is_none();
                    self.iterator = output.next_iterator;
                    let child_shards = shard_end.then_some(output.child_shards);
                    if shard_end {
                        tracing::debug!(children = ?child_shards, "shard end reached");
                        self.phase = Phase::Ended(child_shards.clone());
                    }
                    return Ok(ReadBatch {
                        records,
                        millis_behind_latest: output.millis_behind_latest,
                        child_shards,
                        shard_end,
                    });
                }
                Err(error) => self.on_error(error, call_start, "GetRecords")?,
            }
        }
    }

    async fn acquire_iterator(&mut self) -> Result<(), KclError> {
        let position = match &self.last_returned {
            Some(last) => IteratorPosition::AfterSequence(last.clone()),
            None => self.start.clone(),
        };
        let call_start = Instant::now();
        self.next_call_at = call_start + self.min_gap;
        let call = self.api.get_shard_iterator(&self.shard, &position);
        let result = match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::new(ApiErrorKind::Timeout, format!("no answer within {:?}", self.call_timeout))),
        };
        match result {
            Ok(Some(iterator)) => {
                tracing::debug!(?position, "got shard iterator");
                self.iterator = Some(iterator);
                Ok(())
            }
            Ok(None) => {
                tracing::debug!(?position, "no iterator: the shard is closed and read to its end");
                self.phase = Phase::Ended(None);
                Ok(())
            }
            Err(error) => self.on_error(error, call_start, "GetShardIterator"),
        }
    }

    fn pace_after_success(&mut self, call_start: Instant, full: bool, empty: bool, millis_behind: Option<u64>) {
        let behind = full || millis_behind.is_some_and(|m| m > 0);
        let wait = if behind {
            self.idle = self.idle_start;
            Duration::ZERO
        } else if empty {
            let wait = self.idle;
            self.idle = self.idle.saturating_mul(2).min(self.idle_max);
            wait
        } else {
            self.idle
        };
        self.next_call_at = (call_start + self.min_gap).max(Instant::now() + wait);
    }

    /// Decides what a failed call means: `Ok` to try again (after the wait it sets), `Err` to give up.
    fn on_error(&mut self, error: ApiError, call_start: Instant, operation: &'static str) -> Result<(), KclError> {
        self.metrics.error(error.kind);
        if !error.kind.is_retryable() {
            tracing::error!(operation, %error, "non-retryable Kinesis error; the reader stops");
            self.phase = Phase::Failed(format!("{operation}: {error}"));
            return Err(error.into_kcl(operation));
        }
        if error.kind == ApiErrorKind::ExpiredIterator {
            tracing::info!(operation, after = ?self.last_returned, "shard iterator expired; getting a new one");
            self.iterator = None;
        }
        // Every failure counts towards the backoff, so a backend that keeps failing cannot spin; but the first expiry
        // after a success is routine (the consumer was slow for five minutes) and is retried without waiting.
        let first_expiry = error.kind == ApiErrorKind::ExpiredIterator && self.backoff.attempts() == 0;
        let delay = self.backoff.next_delay();
        let delay = if first_expiry { Duration::ZERO } else { delay };
        self.next_call_at = (call_start + self.min_gap).max(Instant::now() + delay);
        let attempts = self.backoff.attempts();
        if attempts.is_multiple_of(10) {
            tracing::warn!(operation, %error, attempts, "Kinesis keeps failing; still retrying");
        } else {
            tracing::debug!(operation, %error, attempts, ?delay, "retryable Kinesis error; backing off");
        }
        match self.max_retries {
            Some(max) if attempts > max => Err(error.into_kcl(operation)),
            _ => Ok(()),
        }
    }
}

/// Where a reader opened at checkpoint `start` begins: the position, and a whole-record checkpoint's sequence number
/// whose record must be dropped unless it is a KPL aggregate; `None` at `SHARD_END` (nothing to read). Shared by
/// polling and enhanced fan-out, so both start exactly alike.
pub(crate) fn start_position(
    shard: &ShardSpec,
    start: &ExtendedSequenceNumber,
    initial_position: &InitialPosition,
) -> Result<Option<(IteratorPosition, Option<SequenceNumber>)>, KclError> {
    let position = match start {
        ExtendedSequenceNumber::TrimHorizon => (IteratorPosition::TrimHorizon, None),
        ExtendedSequenceNumber::Latest => (IteratorPosition::Latest, None),
        ExtendedSequenceNumber::AtTimestamp(Some(at)) => (IteratorPosition::AtTimestamp(*at), None),
        ExtendedSequenceNumber::AtTimestamp(None) => match initial_position {
            InitialPosition::AtTimestamp(at) => (IteratorPosition::AtTimestamp(*at), None),
            _ => {
                return Err(KclError::InvalidConfig(format!(
                    "shard {} is checkpointed at AT_TIMESTAMP but the initial position has no timestamp",
                    shard.shard_id
                )));
            }
        },
        // Inside an aggregate: read the aggregate again; the pipeline drops user records at or below it.
        ExtendedSequenceNumber::Sequence { sequence, sub_sequence } if *sub_sequence > 0 => {
            (IteratorPosition::AtSequence(sequence.clone()), None)
        }
        // A whole-record checkpoint still uses AT_SEQUENCE_NUMBER: a checkpoint at sub-record 0 of an aggregate
        // looks exactly like this, and AFTER_SEQUENCE_NUMBER would lose the aggregate's remaining user records.
        // The reader drops the record itself unless it is an aggregate, which makes this AFTER for plain records.
        ExtendedSequenceNumber::Sequence { sequence, .. } => {
            (IteratorPosition::AtSequence(sequence.clone()), Some(sequence.clone()))
        }
        ExtendedSequenceNumber::ShardEnd => return Ok(None),
    };
    Ok(Some(position))
}

#[async_trait]
impl<A: PollingApi> ShardReader for PollingReader<A> {
    async fn next_batch(&mut self) -> Result<ReadBatch, KclError> {
        let span = self.span.clone();
        self.read().instrument(span).await
    }
}
