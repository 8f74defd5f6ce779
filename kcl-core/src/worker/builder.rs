//! `WorkerBuilder`: assembles a worker from its parts (stream, lease store, Kinesis access, processor factory) and
//! its settings, a [`WorkerConfig`] whose fields the setting methods fill.

use std::sync::Arc;
use std::time::Duration;

use super::streams::MultiStream;
use super::{StreamMode, Worker};
use crate::config::{Retrieval, WorkerConfig};
use crate::discover::{KinesisShardLister, KinesisStreamCatalog, ShardLister, StreamCatalog, StreamSource};
use crate::error::KclError;
use crate::lease::LeaseStore;
use crate::lease::coordinator::LeaseCoordinatorConfig;
use crate::process::{FailureDestination, ProcessingConfig, ProcessorFactory, RecordFilter, RetryPolicy};
use crate::retrieve::fanout::FanOutSource;
use crate::retrieve::{GetRecordsPath, KinesisPollingApi, LeanPollingApi, PollingConfig, PollingFetcher, RecordSource};
use crate::types::InitialPosition;

/// Builds a [`Worker`]. Required: the stream, the application name, a lease store, a processor factory, and either
/// a Kinesis client ([`kinesis_client`](Self::kinesis_client)) or a record source plus a shard lister.
///
/// Every setting method sets a field of the builder's [`WorkerConfig`]; the defaults, with their Java KCL and Lambda
/// names and their configuration-file keys, are listed in one table in the [`config`](crate::config) module.
pub struct WorkerBuilder<F> {
    pub(super) stream: Arc<str>,
    pub(super) application_name: String,
    pub(super) store: Option<Arc<dyn LeaseStore>>,
    pub(super) source: Option<Arc<dyn RecordSource>>,
    pub(super) lister: Option<Arc<dyn ShardLister>>,
    pub(super) kinesis: Option<aws_sdk_kinesis::Client>,
    pub(super) factory: Option<F>,
    pub(super) streams: Option<StreamSource>,
    pub(super) catalog: Option<Arc<dyn StreamCatalog>>,
    pub(super) config: WorkerConfig,
}

impl<F: ProcessorFactory> WorkerBuilder<F> {
    pub(super) fn new(stream: impl Into<Arc<str>>, application_name: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            application_name: application_name.into(),
            store: None,
            source: None,
            lister: None,
            kinesis: None,
            factory: None,
            streams: None,
            catalog: None,
            config: WorkerConfig::default(),
        }
    }

    pub(super) fn new_multi_stream(application_name: impl Into<String>, streams: StreamSource) -> Self {
        let mut builder = Self::new("", application_name);
        builder.streams = Some(streams);
        builder
    }

    /// This worker's id; unique in the fleet. A restarted process that keeps its id adopts the leases its
    /// predecessor held.
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.config.worker_id = Some(worker_id.into());
        self
    }

    /// Where leases and checkpoints live (the DynamoDB store, the memory store, or your own).
    pub fn lease_store(mut self, store: Arc<dyn LeaseStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Reads Kinesis through this client — by polling (`GetRecords`), or with enhanced fan-out when
    /// [`retrieval`](Self::retrieval) says so — and lists shards with `ListShards`. Build it
    /// with `aws_config::defaults(BehaviorVersion::latest())` (set `endpoint_url` for local emulators).
    pub fn kinesis_client(mut self, client: aws_sdk_kinesis::Client) -> Self {
        self.kinesis = Some(client);
        self
    }

    /// Reads Kinesis through a client built from shared AWS configuration (region, credentials, retry and timeout
    /// settings, `endpoint_url` for local emulators), as `aws_config::defaults(BehaviorVersion::latest()).load()`
    /// returns it. Same as [`kinesis_client`](Self::kinesis_client) with `aws_sdk_kinesis::Client::new(config)`.
    pub fn sdk_config(self, config: &aws_types::SdkConfig) -> Self {
        self.kinesis_client(aws_sdk_kinesis::Client::new(config))
    }

    /// A custom record source (for example the in-memory stream, or a [`FanOutSource`] over your own
    /// [`SubscribeApi`](crate::retrieve::fanout::SubscribeApi)). Needs
    /// [`shard_lister`](Self::shard_lister) too.
    pub fn record_source(mut self, source: Arc<dyn RecordSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// The catalog of a multi-stream worker with a custom [`record_source`](Self::record_source) (for example
    /// `MemoryStreams`): it resolves stream names to identifiers and lists their shards. With
    /// [`kinesis_client`](Self::kinesis_client) it is [`KinesisStreamCatalog`].
    pub fn stream_catalog(mut self, catalog: Arc<dyn StreamCatalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Multi-stream: how often the [`StreamSource`] is asked for the current streams.
    pub fn stream_discovery_interval(mut self, interval: Duration) -> Self {
        self.config.stream_discovery_interval = interval;
        self
    }

    /// Multi-stream: how long a stream that is no longer listed (or no longer exists) keeps its leases — and so its
    /// checkpoints, should it be listed again — before the sync leader deletes them. At least the discovery
    /// interval, so that a worker that has not yet seen a new stream does not count it as removed.
    pub fn removed_stream_grace(mut self, grace: Duration) -> Self {
        self.config.removed_stream_grace = grace;
        self
    }

    /// A custom shard lister, paired with [`record_source`](Self::record_source).
    pub fn shard_lister(mut self, lister: Arc<dyn ShardLister>) -> Self {
        self.lister = Some(lister);
        self
    }

    /// Makes one [`RecordProcessor`](crate::RecordProcessor) per shard.
    pub fn processor_factory(mut self, factory: F) -> Self {
        self.factory = Some(factory);
        self
    }

    /// Where shards without a checkpoint start.
    pub fn initial_position(mut self, position: InitialPosition) -> Self {
        self.config.initial_position = position;
        self
    }

    /// Lease timings, renewal mode and balancing limits.
    pub fn lease_config(mut self, config: LeaseCoordinatorConfig) -> Self {
        self.config.lease = config;
        self
    }

    /// `GetRecords` batch size, idle time, retries and prefetch (used with [`kinesis_client`](Self::kinesis_client)):
    /// the same as `retrieval(Retrieval::Polling(config))`.
    pub fn polling_config(self, config: PollingConfig) -> Self {
        self.retrieval(Retrieval::Polling(config))
    }

    /// How polling sends and decodes `GetRecords` (used with [`kinesis_client`](Self::kinesis_client) and polling):
    /// kcl-rs's own signed request and decoder (default, see [`LeanPollingApi`]), or the AWS SDK's
    /// ([`GetRecordsPath::Sdk`]; choose it when the client has a custom HTTP client such as a proxy or private CA).
    pub fn get_records_path(mut self, path: GetRecordsPath) -> Self {
        self.config.get_records_path = path;
        self
    }

    /// Polling or enhanced fan-out (used with [`kinesis_client`](Self::kinesis_client); default: polling).
    pub fn retrieval(mut self, retrieval: Retrieval) -> Self {
        self.config.retrieval = retrieval;
        self
    }

    /// How often the sync leader lists shards to find new ones (shard ends create child leases at once anyway).
    pub fn shard_sync_interval(mut self, interval: Duration) -> Self {
        self.config.shard_sync_interval = interval;
        self
    }

    /// How long the lease of a finished shard (at `SHARD_END`, children started) is kept before the sync leader
    /// deletes it.
    pub fn finished_lease_grace(mut self, grace: Duration) -> Self {
        self.config.finished_lease_grace = grace;
        self
    }

    /// How long shard sync may keep failing because the stream or the lease table is missing, or access is denied,
    /// before [`Worker::run`] returns the error. Until then it retries every second (one ERROR names the resource
    /// and the remedy). Default: retry forever. Single-stream workers only.
    pub fn give_up_after(mut self, limit: Duration) -> Self {
        self.config.give_up_after = Some(limit);
        self
    }

    /// How often a child shard checks whether its parents have finished.
    pub fn parent_poll_interval(mut self, interval: Duration) -> Self {
        self.config.parent_poll_interval = interval;
        self
    }

    /// Backoff between retries of a failed `process_records` (and other callbacks): `base` doubling up to `cap`.
    pub fn retry_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.config.retry_base = base;
        self.config.retry_cap = cap;
        self
    }

    /// Deliver empty batches too (for time-based flushing in the processor).
    pub fn call_process_records_even_for_empty(mut self, yes: bool) -> Self {
        self.config.call_process_records_even_for_empty = yes;
        self
    }

    /// Batch size limits, the batching window, parallelism within a shard and who checkpoints (see
    /// [`ProcessingConfig`] for defaults).
    pub fn processing(mut self, config: ProcessingConfig) -> Self {
        self.config.processing = config;
        self
    }

    /// What happens when `process_records` fails: attempts, backoff, bisection, maximum record age, and whether
    /// records whose retries ran out block the shard or go to the [`failure_destination`](Self::failure_destination).
    /// Default: [`RetryPolicy::default`] with the backoff of [`retry_backoff`](Self::retry_backoff) — retry until
    /// it succeeds, never skip.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.config.retry_policy = Some(policy);
        self
    }

    /// Where records go whose retries ran out, with `RetryPolicy::on_exhausted(OnExhausted::SendToDestination)`.
    pub fn failure_destination(mut self, destination: Arc<dyn FailureDestination>) -> Self {
        self.config.failure_destination = Some(destination);
        self
    }

    /// Processes only the records this filter keeps; dropped records count as processed for checkpointing.
    pub fn filter(mut self, filter: impl Into<RecordFilter>) -> Self {
        self.config.filter = Some(filter.into());
        self
    }

    /// Replaces every setting with `config` (for example one read from a configuration file): call it before the
    /// setting methods that should adjust it, since it overwrites what they set.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Lays the TOML file at `path` (when given) and then the `KCL_…` environment variables over the settings made so
    /// far (see [`WorkerConfig::with_file_and_env`]): what an application's `--config FILE` option calls, after the
    /// application's own choices and before the settings it must keep whatever the file says.
    #[cfg(feature = "config")]
    pub fn config_file_and_env(mut self, path: Option<&std::path::Path>) -> Result<Self, KclError> {
        self.config = self.config.with_file_and_env(path)?;
        Ok(self)
    }

    /// The settings so far.
    pub fn settings(&self) -> &WorkerConfig {
        &self.config
    }

    /// Checks the settings and builds the worker.
    pub fn build(mut self) -> Result<Worker<F>, KclError> {
        let invalid = |what: &str| Err(KclError::InvalidConfig(what.to_owned()));
        if self.stream.is_empty() && self.streams.is_none() {
            return invalid("the stream name (or ARN) must not be empty");
        }
        if self.streams.is_some() {
            if self.lister.is_some() {
                return invalid("a multi-stream worker lists shards through stream_catalog(..), not shard_lister(..)");
            }
        } else if self.catalog.is_some() {
            return invalid("stream_catalog(..) is for multi-stream workers (Worker::multi_stream_builder)");
        }
        if self.application_name.is_empty() {
            return invalid("the application name must not be empty");
        }
        self.config.validate(self.streams.is_some(), true)?;
        let Some(store) = self.store.clone() else {
            return invalid("a lease store is required: call lease_store(..)");
        };
        let Some(factory) = self.factory else {
            return invalid("a processor factory is required: call processor_factory(..)");
        };
        // In multi-stream mode the catalog stands where the lister is, and one record source reads every stream.
        let multi = self.streams.is_some();
        let lister_or_catalog =
            if multi { self.catalog.as_ref().map(|_| ()) } else { self.lister.as_ref().map(|_| ()) };
        let (source, lister): (Arc<dyn RecordSource>, Option<Arc<dyn ShardLister>>) =
            match (self.source, lister_or_catalog, self.kinesis.clone()) {
                (Some(source), Some(()), None) => (source, self.lister),
                (None, None, Some(client)) => {
                    let source: Arc<dyn RecordSource> = match &self.config.retrieval {
                        Retrieval::Polling(config) => match self.config.get_records_path {
                            GetRecordsPath::Sdk => {
                                Arc::new(PollingFetcher::new(KinesisPollingApi::new(client.clone()), config.clone())?)
                            }
                            GetRecordsPath::Lean(format) => Arc::new(PollingFetcher::new(
                                LeanPollingApi::new(client.clone(), format),
                                config.clone(),
                            )?),
                        },
                        Retrieval::FanOut { consumer_name, config } => {
                            let name = consumer_name.clone().unwrap_or_else(|| self.application_name.clone());
                            Arc::new(FanOutSource::new(client.clone(), name, config.clone())?)
                        }
                    };
                    if multi {
                        self.catalog = Some(Arc::new(KinesisStreamCatalog::new(client)));
                        (source, None)
                    } else {
                        (source, Some(Arc::new(KinesisShardLister::new(client, self.stream.to_string()))))
                    }
                }
                (None, None, None) if multi => {
                    return invalid(
                        "no Kinesis access: call kinesis_client(..), or record_source(..) with stream_catalog(..)",
                    );
                }
                (None, None, None) => {
                    return invalid(
                        "no Kinesis access: call kinesis_client(..), or record_source(..) with shard_lister(..)",
                    );
                }
                _ if multi => {
                    return invalid(
                        "choose one: kinesis_client(..), or record_source(..) together with stream_catalog(..)",
                    );
                }
                _ => {
                    return invalid(
                        "choose one: kinesis_client(..), or record_source(..) together with shard_lister(..)",
                    );
                }
            };
        let mode = match (self.streams, self.catalog, lister) {
            (Some(source), Some(catalog), _) => StreamMode::Multi(MultiStream { source, catalog }),
            (None, _, Some(lister)) => StreamMode::Single { stream: self.stream, lister },
            _ => return invalid("internal: no shard lister or stream catalog"),
        };
        let worker_id = self.config.worker_id.clone().unwrap_or_else(default_worker_id);
        Ok(Worker::assemble(super::Parts {
            mode,
            application_name: self.application_name,
            worker_id,
            store,
            source,
            factory: Arc::new(factory),
            config: Arc::new(self.config),
        }))
    }
}

/// The host name (from the OS, else `HOSTNAME`, else `worker`) plus the process id and a random suffix, so two
/// processes on one host never share an id, and a restarted process does not reuse its predecessor's.
fn default_worker_id() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    let random =
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), std::time::SystemTime::now());
    format!("{host}-{}-{:08x}", std::process::id(), random as u32)
}

#[cfg(test)]
mod tests {
    use super::default_worker_id;

    #[test]
    fn default_worker_ids_name_the_host_and_process_and_differ() {
        let (a, b) = (default_worker_id(), default_worker_id());
        assert_ne!(a, b, "two workers of one process must not share an id");
        let pid = format!("-{}-", std::process::id());
        assert!(a.contains(&pid), "{a} should contain the process id");
        let host = hostname::get().ok().and_then(|h| h.into_string().ok()).filter(|h| !h.is_empty());
        if let Some(host) = host {
            assert!(a.starts_with(&format!("{host}-")), "{a} should start with the host name {host}");
        }
    }
}
