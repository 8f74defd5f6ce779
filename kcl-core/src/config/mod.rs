//! [`WorkerConfig`]: every setting of a worker, stored once. The [`WorkerBuilder`](crate::WorkerBuilder) fills it,
//! the worker keeps it behind an `Arc`, and the shard lifecycle reads it from there.
//!
//! # Settings and defaults
//!
//! This table is the one place the defaults are documented. The third column is the key in a configuration file
//! (TOML) and, upper-cased with a `KCL_` prefix, the environment variable; the fourth is the Java KCL / multilang
//! `.properties` name (accepted as an alias in files and, as `KCL_FAILOVER_TIME_MILLIS` and so on, in the
//! environment) or the AWS Lambda event-source name.
//!
//! | setting | default | file key / `KCL_…` variable | Java KCL / Lambda |
//! |---|---|---|---|
//! | [`worker_id`](WorkerConfig::worker_id) | host name, process id and a random suffix | `worker_id` | `workerId`, `workerIdentifier` |
//! | [`initial_position`](WorkerConfig::initial_position) | `LATEST` | `initial_position` (`LATEST`, `TRIM_HORIZON`, `AT_TIMESTAMP`) | `initialPositionInStream` |
//! | (its time, for `AT_TIMESTAMP`) | — | `initial_position_timestamp_secs` (seconds since the epoch) | `initialPositionInStreamExtended` |
//! | [`lease`](WorkerConfig::lease) | [`LeaseCoordinatorConfig::default`] | see the rows below | `LeaseManagementConfig` |
//! | — lease duration | 10 s | `lease_duration_ms` | `failoverTimeMillis` |
//! | — renewal interval | lease duration / 3 − 25 ms | `lease_renewal_interval_ms` | `leaseRenewalIntervalMillis` |
//! | — take interval | 2 × (lease duration + 25 ms) | `lease_take_interval_ms` | `takerIntervalMillis` |
//! | — most leases held | unlimited | `max_leases_for_worker` | `maxLeasesForWorker` |
//! | — most leases stolen at once | 1 | `max_leases_to_steal_at_one_time` | `maxLeasesToStealAtOneTime` |
//! | — renewal mode | `per_lease` (Java-compatible) | `lease_renewal_mode` (`per_lease`, `worker_heartbeat`) | — |
//! | — graceful handoff timeout | 30 s | `handoff_timeout_ms` | `gracefulLeaseHandoffTimeoutMillis` |
//! | [`retrieval`](WorkerConfig::retrieval) | polling | `retrieval_mode` (`polling`, `fan_out`) | `retrievalMode` (KCL 2+ defaults to fan-out) |
//! | — records per `GetRecords` | 10000 | `max_records` | `maxRecords` |
//! | — idle time between reads | 1.5 s (Java 1 s) | `idle_time_between_reads_ms` | `idleTimeBetweenReadsInMillis` |
//! | — fan-out consumer name | the application name | `consumer_name` | `consumerName` |
//! | [`get_records_path`](WorkerConfig::get_records_path) | kcl-rs's own decoder | `get_records_path` (`lean`, `sdk`) | — |
//! | [`shard_sync_interval`](WorkerConfig::shard_sync_interval) | 60 s | `shard_sync_interval_ms` | `shardSyncIntervalMillis` |
//! | [`finished_lease_grace`](WorkerConfig::finished_lease_grace) | 5 min | `finished_lease_grace_ms` | `completedLeaseCleanupIntervalMillis` |
//! | [`give_up_after`](WorkerConfig::give_up_after) | never: retry every second | `give_up_after_ms` | none (Java KCL retries forever) |
//! | [`parent_poll_interval`](WorkerConfig::parent_poll_interval) | 1 s (Java 10 s) | `parent_poll_interval_ms` | `parentShardPollIntervalMillis` |
//! | [`retry_base`](WorkerConfig::retry_base) | 500 ms (Java: fixed, no doubling) | `retry_base_ms` | `taskBackoffTimeMillis` |
//! | [`retry_cap`](WorkerConfig::retry_cap) | 30 s | `retry_cap_ms` | — |
//! | [`call_process_records_even_for_empty`](WorkerConfig::call_process_records_even_for_empty) | `false` | `call_process_records_even_for_empty` | `callProcessRecordsEvenForEmptyRecordList` |
//! | [`processing`](WorkerConfig::processing) | [`ProcessingConfig::default`] | see the rows below | — |
//! | — records per batch | as read | `batch_max_records` | Lambda `BatchSize` |
//! | — bytes per batch | unlimited | `batch_max_bytes` | — |
//! | — batching window | 0 (deliver at once) | `batching_window_ms` | Lambda `MaximumBatchingWindowInSeconds` |
//! | — processors per shard | 1 | `parallelism` | Lambda `ParallelizationFactor` |
//! | — who checkpoints | the processor | `checkpointing` (`manual`, `after_each_batch`) | — |
//! | — framework checkpoint every N records | after every batch | `checkpoint_every_records` | none (application code in Java KCL) |
//! | — framework checkpoint every T | after every batch | `checkpoint_every_ms` | none (application code in Java KCL) |
//! | [`retry_policy`](WorkerConfig::retry_policy) | retry until success, never skip, with the backoff above | see the rows below | none (Java KCL skips failed batches) |
//! | — calls per record | unlimited | `max_attempts` | Lambda `MaximumRetryAttempts` (+ 1) |
//! | — maximum record age | unlimited | `max_record_age_secs` | Lambda `MaximumRecordAgeInSeconds` |
//! | — bisect failed batches | `false` | `bisect_on_error` | Lambda `BisectBatchOnFunctionError` |
//! | — after a partial failure, retry | from the lowest failure | `partial_retry` (`from_lowest_failure`, `failed_only`) | Lambda `ReportBatchItemFailures` |
//! | — when retries run out | block the shard | `on_exhausted` (`block`, `send_to_destination`) | Lambda `DestinationConfig.OnFailure` |
//! | [`failure_destination`](WorkerConfig::failure_destination) | none | code only | — |
//! | [`filter`](WorkerConfig::filter) | none (every record) | code only | Lambda `FilterCriteria` |
//! | [`stream_discovery_interval`](WorkerConfig::stream_discovery_interval) | 30 s (multi-stream only) | `stream_discovery_interval_ms` | none (fixed in Java KCL's `Scheduler`) |
//! | [`removed_stream_grace`](WorkerConfig::removed_stream_grace) | 5 min (multi-stream only) | `removed_stream_grace_ms` | `waitPeriodToDeleteFormerStreams` |
//!
//! # Configuration files and the environment (feature `config`)
//!
//! [`WorkerConfig::load`] reads the defaults, then a TOML file of the keys above (one flat table; unknown keys are
//! an error), then every `KCL_…` variable of the environment that names a key — the key upper-cased
//! (`KCL_LEASE_DURATION_MS`) or a Java name in upper snake case (`KCL_FAILOVER_TIME_MILLIS`). Later sources win;
//! settings the code sets on the [`WorkerBuilder`](crate::WorkerBuilder) afterwards win over all of them. An error
//! names the key or variable and the form its value should take.
//!
//! ```toml
//! initial_position = "TRIM_HORIZON"
//! lease_duration_ms = 20000            # or Java's: failoverTimeMillis = 20000
//! max_records = 1000
//! idle_time_between_reads_ms = 500
//! parallelism = 4
//! bisect_on_error = true
//! ```

#[cfg(feature = "config")]
mod file;
#[cfg(feature = "config")]
mod load;
#[cfg(all(test, feature = "config"))]
mod tests;
#[cfg(feature = "config")]
mod value;

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub use load::ENV_PREFIX;

use crate::error::KclError;
use crate::lease::coordinator::LeaseCoordinatorConfig;
use crate::process::{FailureDestination, ProcessingConfig, RecordFilter, RetryPolicy};
use crate::retrieve::fanout::FanOutConfig;
use crate::retrieve::{GetRecordsPath, PollingConfig};
use crate::types::InitialPosition;

/// How a worker built with [`WorkerBuilder::kinesis_client`](crate::WorkerBuilder::kinesis_client) reads its
/// shards. Processor code is the same either way.
#[derive(Clone, Debug)]
pub enum Retrieval {
    /// `GetRecords` polling (KCL `PollingConfig`): shares the shard's 2 MiB/s read limit with every polling consumer.
    Polling(PollingConfig),
    /// Enhanced fan-out (`SubscribeToShard`, KCL `FanOutConfig`): a dedicated 2 MiB/s per shard and ~70 ms
    /// propagation. Registers the stream consumer on first use, or reuses it.
    FanOut {
        /// The consumer name (KCL `consumerName`); `None` (default) uses the application name, as KCL does.
        consumer_name: Option<String>,
        /// Resubscribe, health-timeout and buffer settings (see [`FanOutConfig`] for defaults and KCL names).
        config: FanOutConfig,
    },
}

impl Default for Retrieval {
    fn default() -> Self {
        Self::Polling(PollingConfig::default())
    }
}

impl Retrieval {
    /// Enhanced fan-out through the consumer named after the application, with default settings.
    pub fn fan_out() -> Self {
        Self::FanOut { consumer_name: None, config: FanOutConfig::default() }
    }
}

/// Every setting of a worker, with the defaults the [module table](self) lists. Start from [`Default`] and set
/// fields, or let [`WorkerBuilder`](crate::WorkerBuilder)'s methods set them; pass a whole one to
/// [`WorkerBuilder::config`](crate::WorkerBuilder::config).
#[derive(Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// This worker's id, unique in the fleet; `None` makes one from the host name, process id and a random suffix.
    /// A restarted process that keeps its id adopts the leases its predecessor held.
    pub worker_id: Option<String>,
    /// Where shards without a checkpoint start.
    pub initial_position: InitialPosition,
    /// Lease timings, renewal mode and balancing limits.
    pub lease: LeaseCoordinatorConfig,
    /// Polling or enhanced fan-out, with their settings (used with a Kinesis client).
    pub retrieval: Retrieval,
    /// How polling sends and decodes `GetRecords` (used with a Kinesis client and polling).
    pub get_records_path: GetRecordsPath,
    /// How often the sync leader lists shards to find new ones (shard ends create child leases at once anyway).
    pub shard_sync_interval: Duration,
    /// How long the lease of a finished shard (at `SHARD_END`, children started) is kept before the sync leader
    /// deletes it.
    pub finished_lease_grace: Duration,
    /// How long shard sync may keep failing because the stream or the lease table is missing, or access is denied,
    /// before [`Worker::run`](crate::Worker::run) returns the error; `None` retries forever (every second, one
    /// ERROR naming the resource and the remedy). Single-stream workers only.
    pub give_up_after: Option<Duration>,
    /// How often a child shard checks whether its parents have finished.
    pub parent_poll_interval: Duration,
    /// First backoff between retries of a failed callback or store call; doubles up to [`retry_cap`](Self::retry_cap).
    pub retry_base: Duration,
    /// Largest backoff between retries.
    pub retry_cap: Duration,
    /// Deliver empty batches too (for time-based flushing in the processor).
    pub call_process_records_even_for_empty: bool,
    /// Batch limits, batching window, parallelism within a shard and who checkpoints.
    pub processing: ProcessingConfig,
    /// What happens when `process_records` fails; `None` retries until success with the backoff of
    /// [`retry_base`](Self::retry_base) and [`retry_cap`](Self::retry_cap) (see
    /// [`effective_retry_policy`](Self::effective_retry_policy)).
    pub retry_policy: Option<RetryPolicy>,
    /// Where records go whose retries ran out (with `on_exhausted = send_to_destination`). Set in code only.
    pub failure_destination: Option<Arc<dyn FailureDestination>>,
    /// Processes only the records this filter keeps; dropped records count as processed. Set in code only.
    pub filter: Option<RecordFilter>,
    /// Multi-stream: how often the stream source is asked for the current streams.
    pub stream_discovery_interval: Duration,
    /// Multi-stream: how long a stream no longer listed keeps its leases (and checkpoints) before they are deleted.
    pub removed_stream_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: None,
            initial_position: InitialPosition::Latest,
            lease: LeaseCoordinatorConfig::default(),
            retrieval: Retrieval::default(),
            get_records_path: GetRecordsPath::default(),
            shard_sync_interval: Duration::from_secs(60),
            finished_lease_grace: Duration::from_secs(300),
            give_up_after: None,
            parent_poll_interval: Duration::from_secs(1),
            retry_base: Duration::from_millis(500),
            retry_cap: Duration::from_secs(30),
            call_process_records_even_for_empty: false,
            processing: ProcessingConfig::default(),
            retry_policy: None,
            failure_destination: None,
            filter: None,
            stream_discovery_interval: Duration::from_secs(30),
            removed_stream_grace: Duration::from_secs(300),
        }
    }
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("worker_id", &self.worker_id)
            .field("initial_position", &self.initial_position)
            .field("lease", &self.lease)
            .field("retrieval", &self.retrieval)
            .field("get_records_path", &self.get_records_path)
            .field("shard_sync_interval", &self.shard_sync_interval)
            .field("finished_lease_grace", &self.finished_lease_grace)
            .field("give_up_after", &self.give_up_after)
            .field("parent_poll_interval", &self.parent_poll_interval)
            .field("retry_base", &self.retry_base)
            .field("retry_cap", &self.retry_cap)
            .field("call_process_records_even_for_empty", &self.call_process_records_even_for_empty)
            .field("processing", &self.processing)
            .field("retry_policy", &self.retry_policy)
            .field("failure_destination", &self.failure_destination.as_ref().map(|_| "(set)"))
            .field("filter", &self.filter)
            .field("stream_discovery_interval", &self.stream_discovery_interval)
            .field("removed_stream_grace", &self.removed_stream_grace)
            .finish()
    }
}

impl WorkerConfig {
    /// The retry policy in force: [`retry_policy`](Self::retry_policy), or else [`RetryPolicy::default`] with the
    /// backoff of [`retry_base`](Self::retry_base) and [`retry_cap`](Self::retry_cap).
    pub fn effective_retry_policy(&self) -> RetryPolicy {
        self.retry_policy.clone().unwrap_or_else(|| RetryPolicy::default().backoff(self.retry_base, self.retry_cap))
    }

    /// Checks the settings that do not depend on how the worker reads (`multi_stream`: the worker consumes a
    /// stream source). Until the worker is built (`building` false) a failure destination may still be set.
    pub(crate) fn validate(&self, multi_stream: bool, building: bool) -> Result<(), KclError> {
        let invalid = |what: &str| Err(KclError::InvalidConfig(what.to_owned()));
        if multi_stream
            && (self.stream_discovery_interval.is_zero() || self.removed_stream_grace < self.stream_discovery_interval)
        {
            return invalid("multi-stream needs 0 < stream_discovery_interval <= removed_stream_grace");
        }
        if self.worker_id.as_deref() == Some("") {
            return invalid("worker_id must not be empty");
        }
        if self.parent_poll_interval.is_zero() || self.shard_sync_interval.is_zero() {
            return invalid("parent_poll_interval and shard_sync_interval must be greater than zero");
        }
        if self.retry_base.is_zero() || self.retry_cap < self.retry_base {
            return invalid("retry_backoff needs 0 < base <= cap");
        }
        let has_destination = self.failure_destination.is_some() || !building;
        if let Err(problem) = self.effective_retry_policy().validate(has_destination) {
            return invalid(&problem);
        }
        if let Err(problem) = self.processing.validate() {
            return invalid(&problem);
        }
        Ok(())
    }
}
