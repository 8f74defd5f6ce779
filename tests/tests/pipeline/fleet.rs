//! Fleets of workers on real Kinesis (kinesis-mock) and a real DynamoDB lease table (DynamoDB Local), with short
//! lease timings so that balancing, handoffs and resharding happen within seconds, reading by polling or with
//! enhanced fan-out ([`RetrievalKind`]); test resources that are deleted even when the test fails; waiting for
//! conditions with generous deadlines.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{Lease, LeaseStore};
use kcl_core::retrieve::PollingConfig;
use kcl_core::retrieve::RecordSource;
use kcl_core::retrieve::fanout::{FanOutConfig, FanOutSource};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{InitialPosition, KclError, ProcessorFactory, Retrieval, ShutdownHandle, Worker};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::{emulators, unique_name};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::streams;

/// How long any condition may take before a test gives up: generous, the machine is shared and loaded.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Framework logs on the test's output when `RUST_LOG` asks for them (e.g. `RUST_LOG=kcl_core=debug`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// One test's stream and lease table, and clients for both.
pub struct Env {
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub stream: String,
    pub table: String,
    /// The lease table, for the test's own reads.
    pub store: Arc<DynamoLeaseStore>,
}

impl Env {
    /// A new stream with `shards` shards (ACTIVE) and a new lease table, both named after `prefix`.
    pub async fn new(prefix: &str, shards: i32) -> Self {
        init_tracing();
        let kinesis = emulators().kinesis_client().await;
        let dynamodb = emulators().dynamodb_client().await;
        let stream = unique_name(prefix);
        let table = unique_name(&format!("{prefix}-leases"));
        streams::create_stream(&kinesis, &stream, shards).await;
        let store = Arc::new(DynamoLeaseStore::builder(dynamodb.clone(), &table).build().await.expect("lease table"));
        Self { kinesis, dynamodb, stream, table, store }
    }

    /// Runs `test`, then deletes the stream and the table whether it passed or not.
    pub async fn run<T: Future<Output = ()>>(self, test: impl FnOnce(Arc<Env>) -> T) {
        let env = Arc::new(self);
        let outcome = AssertUnwindSafe(test(env.clone())).catch_unwind().await;
        streams::delete_stream(&env.kinesis, &env.stream).await;
        let _ = env.dynamodb.delete_table().table_name(&env.table).send().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// A store for one worker: its own client, the same table.
    pub async fn worker_store(&self) -> Arc<dyn LeaseStore> {
        let client = emulators().dynamodb_client().await;
        Arc::new(DynamoLeaseStore::builder(client, &self.table).build().await.expect("lease table"))
    }

    /// Every lease, sorted by key.
    pub async fn leases(&self) -> Vec<Lease> {
        let mut leases = self.store.list_all_leases().await.expect("list leases");
        leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
        leases
    }
}

/// How a fleet reads its shards: every pipeline scenario runs with both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrievalKind {
    /// `GetRecords` polling ([`Settings::polling`]).
    Polling,
    /// Enhanced fan-out ([`Settings::fan_out`]) through one stream consumer named after the application (the lease
    /// table), shared by every worker of the test as on AWS. On the in-memory stream: a `FanOutSource` over the
    /// stream's own `SubscribeApi`.
    FanOut,
}

/// Worker settings for tests: 2 s leases, fast parent polls and shard syncs, short idle reads and retries.
#[derive(Clone, Debug)]
pub struct Settings {
    pub retrieval: RetrievalKind,
    pub lease_config: LeaseCoordinatorConfig,
    pub polling: PollingConfig,
    pub fan_out: FanOutConfig,
    pub shard_sync_interval: Duration,
    pub parent_poll_interval: Duration,
    pub retry: (Duration, Duration),
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retrieval: RetrievalKind::Polling,
            lease_config: LeaseCoordinatorConfig::builder()
                .lease_duration(Duration::from_secs(2))
                .build()
                .expect("lease config"),
            polling: PollingConfig::default()
                .with_max_records(1000)
                .with_idle_time_between_reads(Duration::from_millis(250))
                .with_retry_base(Duration::from_millis(50))
                .with_retry_cap(Duration::from_secs(1)),
            fan_out: FanOutConfig::default()
                // kinesis-mock registers consumers in 10 ms (runner setting) and frees the subscription of a reader
                // that went away (lease handoff, shutdown) within a second or two: short retries keep up with it.
                .with_retry_base(Duration::from_millis(100))
                .with_retry_cap(Duration::from_secs(1))
                // kinesis-mock sends an event every second, also on an idle shard.
                .with_health_timeout(Duration::from_secs(20)),
            shard_sync_interval: Duration::from_secs(1),
            parent_poll_interval: Duration::from_millis(100),
            retry: (Duration::from_millis(20), Duration::from_millis(200)),
        }
    }
}

impl Settings {
    /// The default settings, reading with `retrieval`.
    pub fn with(retrieval: RetrievalKind) -> Self {
        Self { retrieval, ..Self::default() }
    }

    /// How workers on Kinesis read.
    fn kinesis_retrieval(&self) -> Retrieval {
        match self.retrieval {
            RetrievalKind::Polling => Retrieval::Polling(self.polling.clone()),
            RetrievalKind::FanOut => Retrieval::FanOut { consumer_name: None, config: self.fan_out.clone() },
        }
    }

    /// The record source of workers on the in-memory stream: its own polling source, or fan-out over it with
    /// in-memory pacing (no 1 s floor between subscribes, millisecond retries).
    fn memory_source(&self, stream: &MemoryStream) -> Arc<dyn RecordSource> {
        match self.retrieval {
            RetrievalKind::Polling => Arc::new(stream.clone()),
            RetrievalKind::FanOut => {
                let config = self
                    .fan_out
                    .clone()
                    .with_min_time_between_subscribes(Duration::from_millis(5))
                    .with_retry_base(Duration::from_millis(5))
                    .with_retry_cap(Duration::from_millis(50));
                Arc::new(FanOutSource::with_api(stream.clone(), "memory-consumer", config).expect("fan-out config"))
            }
        }
    }

    /// The same settings with another `GetRecords` limit (small limits make many batches per shard; fan-out
    /// batches are the service's events, whatever the limit).
    pub fn max_records(mut self, max_records: usize) -> Self {
        self.polling.max_records = max_records;
        self
    }
}

struct Member {
    id: String,
    shutdown: ShutdownHandle,
    task: JoinHandle<Result<(), KclError>>,
}

/// Running workers. Dropping the fleet aborts them (a crash); [`shutdown`](Self::shutdown) stops them gracefully.
pub struct Fleet {
    members: Vec<Member>,
}

impl Fleet {
    /// Starts one worker per id on `env`'s stream and table (`TRIM_HORIZON`), each with its own store and a
    /// processor factory from `factory(worker_id)`.
    pub async fn start<F: ProcessorFactory>(
        env: &Env,
        ids: &[String],
        settings: &Settings,
        factory: impl Fn(&str) -> F,
    ) -> Self {
        let mut members = Vec::new();
        for id in ids {
            let worker = Worker::builder(env.stream.as_str(), env.table.as_str())
                .worker_id(id.as_str())
                .kinesis_client(env.kinesis.clone())
                .lease_store(env.worker_store().await)
                .initial_position(InitialPosition::TrimHorizon)
                .lease_config(settings.lease_config.clone())
                .retrieval(settings.kinesis_retrieval())
                .shard_sync_interval(settings.shard_sync_interval)
                .parent_poll_interval(settings.parent_poll_interval)
                .retry_backoff(settings.retry.0, settings.retry.1)
                .processor_factory(factory(id))
                .build()
                .expect("worker");
            let shutdown = worker.shutdown_handle();
            members.push(Member { id: id.clone(), shutdown, task: tokio::spawn(worker.run()) });
        }
        Self { members }
    }

    /// Starts one worker per id on an in-memory stream (its own shard lister; its polling source, or fan-out over it)
    /// and lease store.
    pub fn start_memory<F: ProcessorFactory>(
        stream: &MemoryStream,
        store: &Arc<dyn LeaseStore>,
        ids: &[String],
        settings: &Settings,
        factory: impl Fn(&str) -> F,
    ) -> Self {
        init_tracing();
        let members = ids
            .iter()
            .map(|id| {
                let worker = Worker::builder(stream.name().clone(), "memory-app")
                    .worker_id(id.as_str())
                    .record_source(settings.memory_source(stream))
                    .shard_lister(Arc::new(stream.clone()))
                    .lease_store(store.clone())
                    .initial_position(InitialPosition::TrimHorizon)
                    .lease_config(settings.lease_config.clone())
                    .shard_sync_interval(settings.shard_sync_interval)
                    .parent_poll_interval(settings.parent_poll_interval)
                    .retry_backoff(settings.retry.0, settings.retry.1)
                    .processor_factory(factory(id))
                    .build()
                    .expect("worker");
                let shutdown = worker.shutdown_handle();
                Member { id: id.clone(), shutdown, task: tokio::spawn(worker.run()) }
            })
            .collect();
        Self { members }
    }

    /// Worker ids `"{prefix}-1"`, `"{prefix}-2"`, …
    pub fn ids(prefix: &str, n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("{prefix}-{i}")).collect()
    }

    /// Stops every worker gracefully, one after the other, and checks each stopped cleanly in time.
    pub async fn shutdown(mut self) {
        for member in std::mem::take(&mut self.members) {
            member.shutdown.shutdown();
            let outcome = tokio::time::timeout(PATIENCE, member.task)
                .await
                .unwrap_or_else(|_| panic!("worker {} did not shut down within {PATIENCE:?}", member.id));
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(error)) => panic!("worker {} stopped with an error: {error}", member.id),
                Err(error) => panic!("worker {} task failed: {error}", member.id),
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for member in &self.members {
            member.task.abort();
        }
    }
}

/// Waits until `check` returns `Ok`, polling every 100 ms for up to `timeout`; panics with the last `Err` and `what`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(last) => last,
        };
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Watches the lease table while a fleet runs: every checkpoint it sees must be at or below the highest position
/// the journal's processors finished on that shard (they note it before they checkpoint). "The checkpoint never
/// passes an unprocessed record", checked while it matters rather than only at the end.
pub struct CheckpointWatch {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<(usize, Vec<String>)>,
}

impl CheckpointWatch {
    pub fn start(env: &Arc<Env>, journal: &Arc<super::journal::Journal>) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (env, journal) = (env.clone(), journal.clone());
        let task = tokio::spawn(async move {
            let (mut observed, mut violations) = (0, Vec::new());
            while !*stopped.borrow() {
                for lease in env.store.list_all_leases().await.unwrap_or_default() {
                    if lease.checkpoint.sequence_number().is_none() {
                        continue;
                    }
                    // Read after the lease: `processed` only grows, and was raised before the checkpoint was written.
                    match journal.processed(&lease.shard_id) {
                        Some(processed) if lease.checkpoint <= processed => observed += 1,
                        processed => violations.push(format!(
                            "{}: checkpoint {} but processed only up to {processed:?}",
                            lease.lease_key, lease.checkpoint
                        )),
                    }
                }
                tokio::select! {
                    _ = stopped.changed() => {}
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            (observed, violations)
        });
        Self { stop, task }
    }

    /// Stops watching; returns how many record checkpoints were checked, and the violations.
    pub async fn finish(self) -> (usize, Vec<String>) {
        self.stop.send_replace(true);
        self.task.await.expect("checkpoint watch")
    }
}
