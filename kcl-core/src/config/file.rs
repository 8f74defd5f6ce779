//! The settings a configuration file (or the `KCL_…` environment) may hold, one flat table of keys named as in the
//! [module table](super), with the Java KCL property names as aliases; and how they are laid over the defaults.

use serde::Deserialize;

use super::value::{Amount, Count, EpochSecs, Flag, Millis, Mode, Position, Secs, Text, scalar};
use super::{Retrieval, WorkerConfig};
use crate::lease::coordinator::{LeaseCoordinatorConfig, RenewalMode};
use crate::process::{CheckpointInterval, Checkpointing, OnExhausted, PartialRetry};
use crate::retrieve::GetRecordsPath;
use crate::retrieve::fanout::FanOutConfig;
use crate::types::InitialPosition;

/// Every key of a configuration file and its Java KCL aliases. The environment variable of a key is `KCL_` and the
/// key upper-cased (`KCL_LEASE_DURATION_MS`), or `KCL_` and a Java alias in upper snake case
/// (`KCL_FAILOVER_TIME_MILLIS`). [`FileSettings`] has one field per entry; a test keeps the two in step.
pub(super) const KEYS: &[(&str, &[&str])] = &[
    ("worker_id", &["workerId", "workerIdentifier"]),
    ("initial_position", &["initialPositionInStream"]),
    ("initial_position_timestamp_secs", &["initialPositionInStreamExtended"]),
    ("lease_duration_ms", &["failoverTimeMillis"]),
    ("lease_renewal_interval_ms", &["leaseRenewalIntervalMillis"]),
    ("lease_take_interval_ms", &["takerIntervalMillis"]),
    ("max_leases_for_worker", &["maxLeasesForWorker"]),
    ("max_leases_to_steal_at_one_time", &["maxLeasesToStealAtOneTime"]),
    ("lease_renewal_mode", &[]),
    ("handoff_timeout_ms", &["gracefulLeaseHandoffTimeoutMillis"]),
    ("retrieval_mode", &["retrievalMode"]),
    ("max_records", &["maxRecords"]),
    ("idle_time_between_reads_ms", &["idleTimeBetweenReadsInMillis"]),
    ("consumer_name", &["consumerName"]),
    ("get_records_path", &[]),
    ("shard_sync_interval_ms", &["shardSyncIntervalMillis"]),
    ("finished_lease_grace_ms", &["completedLeaseCleanupIntervalMillis"]),
    ("give_up_after_ms", &[]),
    ("parent_poll_interval_ms", &["parentShardPollIntervalMillis"]),
    ("retry_base_ms", &["taskBackoffTimeMillis"]),
    ("retry_cap_ms", &[]),
    ("call_process_records_even_for_empty", &["callProcessRecordsEvenForEmptyRecordList"]),
    ("batch_max_records", &[]),
    ("batch_max_bytes", &[]),
    ("batching_window_ms", &[]),
    ("parallelism", &[]),
    ("checkpointing", &[]),
    ("checkpoint_every_records", &[]),
    ("checkpoint_every_ms", &[]),
    ("max_attempts", &[]),
    ("max_record_age_secs", &[]),
    ("bisect_on_error", &[]),
    ("partial_retry", &[]),
    ("on_exhausted", &[]),
    ("stream_discovery_interval_ms", &[]),
    ("removed_stream_grace_ms", &[]),
];

/// The settings given in a file or the environment; absent ones keep their defaults.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSettings {
    #[serde(default, deserialize_with = "scalar", alias = "workerId", alias = "workerIdentifier")]
    worker_id: Option<Text>,
    #[serde(default, deserialize_with = "scalar", alias = "initialPositionInStream")]
    initial_position: Option<Position>,
    #[serde(default, deserialize_with = "scalar", alias = "initialPositionInStreamExtended")]
    initial_position_timestamp_secs: Option<EpochSecs>,
    #[serde(default, deserialize_with = "scalar", alias = "failoverTimeMillis")]
    lease_duration_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar", alias = "leaseRenewalIntervalMillis")]
    lease_renewal_interval_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar", alias = "takerIntervalMillis")]
    lease_take_interval_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar", alias = "maxLeasesForWorker")]
    max_leases_for_worker: Option<Count>,
    #[serde(default, deserialize_with = "scalar", alias = "maxLeasesToStealAtOneTime")]
    max_leases_to_steal_at_one_time: Option<Amount>,
    #[serde(default, deserialize_with = "scalar")]
    lease_renewal_mode: Option<RenewalMode>,
    #[serde(default, deserialize_with = "scalar", alias = "gracefulLeaseHandoffTimeoutMillis")]
    handoff_timeout_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar", alias = "retrievalMode")]
    retrieval_mode: Option<Mode>,
    #[serde(default, deserialize_with = "scalar", alias = "maxRecords")]
    max_records: Option<Count>,
    #[serde(default, deserialize_with = "scalar", alias = "idleTimeBetweenReadsInMillis")]
    idle_time_between_reads_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar", alias = "consumerName")]
    consumer_name: Option<Text>,
    #[serde(default, deserialize_with = "scalar")]
    get_records_path: Option<GetRecordsPath>,
    #[serde(default, deserialize_with = "scalar", alias = "shardSyncIntervalMillis")]
    shard_sync_interval_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar", alias = "completedLeaseCleanupIntervalMillis")]
    finished_lease_grace_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar")]
    give_up_after_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar", alias = "parentShardPollIntervalMillis")]
    parent_poll_interval_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar", alias = "taskBackoffTimeMillis")]
    retry_base_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar")]
    retry_cap_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar", alias = "callProcessRecordsEvenForEmptyRecordList")]
    call_process_records_even_for_empty: Option<Flag>,
    #[serde(default, deserialize_with = "scalar")]
    batch_max_records: Option<Count>,
    #[serde(default, deserialize_with = "scalar")]
    batch_max_bytes: Option<Count>,
    #[serde(default, deserialize_with = "scalar")]
    batching_window_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar")]
    parallelism: Option<Count>,
    #[serde(default, deserialize_with = "scalar")]
    checkpointing: Option<Checkpointing>,
    #[serde(default, deserialize_with = "scalar")]
    checkpoint_every_records: Option<Count>,
    #[serde(default, deserialize_with = "scalar")]
    checkpoint_every_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar")]
    max_attempts: Option<Count>,
    #[serde(default, deserialize_with = "scalar")]
    max_record_age_secs: Option<Secs>,
    #[serde(default, deserialize_with = "scalar")]
    bisect_on_error: Option<Flag>,
    #[serde(default, deserialize_with = "scalar")]
    partial_retry: Option<PartialRetry>,
    #[serde(default, deserialize_with = "scalar")]
    on_exhausted: Option<OnExhausted>,
    #[serde(default, deserialize_with = "scalar")]
    stream_discovery_interval_ms: Option<Millis>,
    #[serde(default, deserialize_with = "scalar")]
    removed_stream_grace_ms: Option<Millis>,
}

/// A problem with the settings as a whole: the key to blame and what is wrong.
pub(super) type Problem = (&'static str, String);

fn problem(key: &'static str, message: impl Into<String>) -> Problem {
    (key, message.into())
}

impl FileSettings {
    /// `config` with these settings laid over it. Any lease key replaces the whole lease group with the lease
    /// defaults plus the lease keys given, so that intervals derived from the lease duration (as
    /// [`LeaseCoordinatorConfig`] says) follow it; polling, processing and retry keys change only themselves.
    pub(super) fn apply_to(self, mut config: WorkerConfig) -> Result<WorkerConfig, Problem> {
        if self.lease_given() {
            config.lease = self.lease()?;
        }
        config.retrieval = self.retrieval(std::mem::take(&mut config.retrieval))?;
        if let Some(Text(id)) = self.worker_id {
            config.worker_id = Some(id);
        }
        config.initial_position = match (self.initial_position, self.initial_position_timestamp_secs) {
            (None, None) => config.initial_position,
            (Some(Position::Latest), None) => InitialPosition::Latest,
            (Some(Position::TrimHorizon), None) => InitialPosition::TrimHorizon,
            (None | Some(Position::AtTimestamp), Some(EpochSecs(at))) => InitialPosition::AtTimestamp(at),
            (Some(Position::AtTimestamp), None) => {
                return Err(problem(
                    "initial_position",
                    "AT_TIMESTAMP needs initial_position_timestamp_secs (seconds since the epoch)",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(problem(
                    "initial_position_timestamp_secs",
                    "a timestamp goes with initial_position = AT_TIMESTAMP only",
                ));
            }
        };
        set(&mut config.get_records_path, self.get_records_path);
        set_millis(&mut config.shard_sync_interval, self.shard_sync_interval_ms);
        set_millis(&mut config.finished_lease_grace, self.finished_lease_grace_ms);
        if let Some(Millis(limit)) = self.give_up_after_ms {
            config.give_up_after = Some(limit);
        }
        set_millis(&mut config.parent_poll_interval, self.parent_poll_interval_ms);
        set_millis(&mut config.retry_base, self.retry_base_ms);
        set_millis(&mut config.retry_cap, self.retry_cap_ms);
        if let Some(Flag(yes)) = self.call_process_records_even_for_empty {
            config.call_process_records_even_for_empty = yes;
        }
        let mut processing = config.processing.clone();
        if let Some(Count(n)) = self.batch_max_records {
            processing = processing.max_records(Some(n));
        }
        if let Some(Count(n)) = self.batch_max_bytes {
            processing = processing.max_bytes(Some(n));
        }
        if let Some(Millis(window)) = self.batching_window_ms {
            processing = processing.batching_window(window);
        }
        if let Some(Count(n)) = self.parallelism {
            processing = processing.parallelism(n);
        }
        if let Some(checkpointing) = self.checkpointing {
            processing = processing.checkpointing(checkpointing);
        }
        if self.checkpoint_every_records.is_some() || self.checkpoint_every_ms.is_some() {
            let mut interval = CheckpointInterval::every_batch();
            if let Some(Count(n)) = self.checkpoint_every_records {
                interval = interval.records(n as u64);
            }
            if let Some(Millis(period)) = self.checkpoint_every_ms {
                interval = interval.period(period);
            }
            processing = processing.checkpoint_interval(interval);
        }
        config.processing = processing;
        let retry_given = self.max_attempts.is_some()
            || self.max_record_age_secs.is_some()
            || self.bisect_on_error.is_some()
            || self.partial_retry.is_some()
            || self.on_exhausted.is_some();
        if retry_given {
            let mut policy = config.effective_retry_policy();
            if let Some(Count(n)) = self.max_attempts {
                policy = policy.max_attempts(Some(u32::try_from(n).unwrap_or(u32::MAX)));
            }
            if let Some(Secs(age)) = self.max_record_age_secs {
                policy = policy.max_record_age(Some(age));
            }
            if let Some(Flag(yes)) = self.bisect_on_error {
                policy = policy.bisect_on_error(yes);
            }
            if let Some(mode) = self.partial_retry {
                policy = policy.partial_retry(mode);
            }
            if let Some(action) = self.on_exhausted {
                policy = policy.on_exhausted(action);
            }
            config.retry_policy = Some(policy);
        }
        set_millis(&mut config.stream_discovery_interval, self.stream_discovery_interval_ms);
        set_millis(&mut config.removed_stream_grace, self.removed_stream_grace_ms);
        Ok(config)
    }

    fn lease_given(&self) -> bool {
        self.lease_duration_ms.is_some()
            || self.lease_renewal_interval_ms.is_some()
            || self.lease_take_interval_ms.is_some()
            || self.max_leases_for_worker.is_some()
            || self.max_leases_to_steal_at_one_time.is_some()
            || self.lease_renewal_mode.is_some()
            || self.handoff_timeout_ms.is_some()
    }

    fn lease(&self) -> Result<LeaseCoordinatorConfig, Problem> {
        let mut lease = LeaseCoordinatorConfig::builder();
        let mut blame = None;
        if let Some(Millis(duration)) = self.lease_duration_ms {
            lease = lease.lease_duration(duration);
            blame = Some("lease_duration_ms");
        }
        if let Some(Millis(interval)) = self.lease_renewal_interval_ms {
            lease = lease.renewal_interval(interval);
            blame = Some("lease_renewal_interval_ms");
        }
        if let Some(Millis(interval)) = self.lease_take_interval_ms {
            lease = lease.take_interval(interval);
            blame = Some("lease_take_interval_ms");
        }
        if let Some(Count(n)) = self.max_leases_for_worker {
            lease = lease.max_leases_for_worker(n);
        }
        if let Some(Amount(n)) = self.max_leases_to_steal_at_one_time {
            lease = lease.max_leases_to_steal_at_one_time(n);
        }
        if let Some(mode) = self.lease_renewal_mode {
            lease = lease.renewal_mode(mode);
        }
        if let Some(Millis(timeout)) = self.handoff_timeout_ms {
            lease = lease.handoff_timeout(timeout);
            blame = blame.or(Some("handoff_timeout_ms"));
        }
        lease.build().map_err(|error| problem(blame.unwrap_or("lease_duration_ms"), error.to_string()))
    }

    fn retrieval(&self, current: Retrieval) -> Result<Retrieval, Problem> {
        let mode = match (self.retrieval_mode, &current) {
            (Some(mode), _) => mode,
            (None, Retrieval::Polling(_)) => Mode::Polling,
            (None, Retrieval::FanOut { .. }) => Mode::FanOut,
        };
        match mode {
            Mode::Polling => {
                if self.consumer_name.is_some() {
                    return Err(problem(
                        "consumer_name",
                        "names the fan-out consumer: set retrieval_mode = \"fan_out\"",
                    ));
                }
                let mut polling = match current {
                    Retrieval::Polling(polling) => polling,
                    Retrieval::FanOut { .. } => crate::retrieve::PollingConfig::default(),
                };
                if let Some(Count(n)) = self.max_records {
                    if n > crate::retrieve::MAX_RECORDS_PER_CALL {
                        return Err(problem(
                            "max_records",
                            format!("expected 1..=10000 (the GetRecords Limit), found {n}"),
                        ));
                    }
                    polling.max_records = n;
                }
                if let Some(Millis(idle)) = self.idle_time_between_reads_ms {
                    polling.idle_time_between_reads = idle;
                }
                Ok(Retrieval::Polling(polling))
            }
            Mode::FanOut => {
                if self.max_records.is_some() {
                    return Err(problem("max_records", "applies to polling only; retrieval_mode is fan_out"));
                }
                if self.idle_time_between_reads_ms.is_some() {
                    return Err(problem(
                        "idle_time_between_reads_ms",
                        "applies to polling only; retrieval_mode is fan_out",
                    ));
                }
                let (name, config) = match current {
                    Retrieval::FanOut { consumer_name, config } => (consumer_name, config),
                    Retrieval::Polling(_) => (None, FanOutConfig::default()),
                };
                let consumer_name = self.consumer_name.as_ref().map(|Text(name)| name.clone()).or(name);
                Ok(Retrieval::FanOut { consumer_name, config })
            }
        }
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

fn set_millis(slot: &mut std::time::Duration, value: Option<Millis>) {
    if let Some(Millis(value)) = value {
        *slot = value;
    }
}
