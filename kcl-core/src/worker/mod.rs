//! The [`Worker`]: one member of a consumer fleet. It runs the lease coordinator, keeps shard leases in sync with
//! the stream, and runs one shard consumer per lease it holds, stopping each on a lease loss, a handoff or
//! shutdown. A multi-stream worker ([`Worker::multi_stream_builder`]) does the same for every stream of its
//! [`StreamSource`](crate::discover::StreamSource), with one lease table (`streams.rs`).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use kcl_core::{Batch, Checkpointer, RecordProcessor, Worker, process::{BatchResult, ProcessorError}};
//! # use kcl_core::lease::MemoryLeaseStore;
//! struct Printer;
//!
//! #[async_trait::async_trait]
//! impl RecordProcessor for Printer {
//!     async fn process_records(&mut self, batch: &Batch, cp: &mut Checkpointer) -> BatchResult {
//!         for record in &batch.records {
//!             println!("{} {}", record.partition_key, record.data.len());
//!         }
//!         cp.checkpoint().await?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn run(client: aws_sdk_kinesis::Client) -> Result<(), kcl_core::KclError> {
//! let worker = Worker::builder("my-stream", "my-app")
//!     .kinesis_client(client)
//!     .lease_store(Arc::new(MemoryLeaseStore::new()))
//!     .processor_factory(|_shard: &str| Printer)
//!     .build()?;
//! let shutdown = worker.shutdown_handle();
//! tokio::spawn(async move {
//!     let _ = tokio::signal::ctrl_c().await;
//!     shutdown.shutdown();
//! });
//! worker.run().await
//! # }
//! ```

mod builder;
mod control;
mod pause;
mod running;
mod streams;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

pub use crate::config::{Retrieval, WorkerConfig};
pub use builder::WorkerBuilder;
use control::CoordinatorControl;
pub use pause::PauseHandle;
use running::{Running, set_once};
use streams::{Consumers, Idle, MultiStream, NoShards, StreamTracker, on_streams_changed, start_or_idle};

use crate::discover::{LeaseCleaner, Missing, Outage, ShardLister, ShardSyncConfig, ShardSyncer, missing};
use crate::error::KclError;
use crate::lease::coordinator::{LeaseCoordinator, LeaseCoordinatorHandle, LeaseEvent};
use crate::lease::{Lease, LeaseGeneration, LeaseStore};
use crate::lifecycle::{ConsumerExit, PauseGate, ShardConsumer, StopReason};
use crate::process::ProcessorFactory;
use crate::retrieve::RecordSource;

/// Asks a running [`Worker`] to stop gracefully: processors get `shutdown_requested` and checkpoint, and every
/// lease is handed directly to another live worker. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Requests the graceful shutdown; [`Worker::run`] returns once it is complete.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

/// The streams a worker consumes.
pub(crate) enum StreamMode {
    /// One stream; lease keys are bare shard ids.
    Single { stream: Arc<str>, lister: Arc<dyn ShardLister> },
    /// Several, discovered at run time; lease keys are `account:stream:creationEpoch:shardId`.
    Multi(MultiStream),
}

impl StreamMode {
    /// The stream name, or `(multi-stream)`, for logs.
    fn label(&self) -> Arc<str> {
        match self {
            Self::Single { stream, .. } => stream.clone(),
            Self::Multi(_) => Arc::from("(multi-stream)"),
        }
    }
}

pub(crate) struct Parts<F> {
    mode: StreamMode,
    application_name: String,
    worker_id: String,
    store: Arc<dyn LeaseStore>,
    source: Arc<dyn RecordSource>,
    factory: Arc<F>,
    /// Every setting, stored once; the shard consumers and the stream tracker share it.
    config: Arc<WorkerConfig>,
}

/// One worker of a consumer application. Build it with [`Worker::builder`], then drive [`run`](Self::run).
pub struct Worker<F> {
    parts: Parts<F>,
    shutdown_tx: watch::Sender<bool>,
    pause_tx: watch::Sender<bool>,
}

impl<F> std::fmt::Debug for Worker<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("stream", &self.parts.mode.label())
            .field("application_name", &self.parts.application_name)
            .field("worker_id", &self.parts.worker_id)
            .finish_non_exhaustive()
    }
}

impl<F: ProcessorFactory> Worker<F> {
    /// Starts building a worker for `stream` (a name or an ARN) in application `application_name`.
    pub fn builder(stream: impl Into<Arc<str>>, application_name: impl Into<String>) -> WorkerBuilder<F> {
        WorkerBuilder::new(stream, application_name)
    }

    /// Starts building a worker of a multi-stream application: one lease table for every stream `streams` lists,
    /// now and as it changes. Lease keys are `account:stream:creationEpoch:shardId` (Java KCL's multi-stream
    /// format); processors see the stream in [`InitializeInput::lease_key`](crate::process::InitializeInput).
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use kcl_core::{Batch, Checkpointer, RecordProcessor, Worker, process::BatchResult};
    /// # use kcl_core::discover::StreamSource;
    /// # use kcl_core::lease::MemoryLeaseStore;
    /// # struct Printer;
    /// # #[async_trait::async_trait]
    /// # impl RecordProcessor for Printer {
    /// #     async fn process_records(&mut self, _: &Batch, cp: &mut Checkpointer) -> BatchResult {
    /// #         cp.checkpoint().await?;
    /// #         Ok(())
    /// #     }
    /// # }
    /// # async fn run(client: aws_sdk_kinesis::Client) -> Result<(), kcl_core::KclError> {
    /// // Streams named `orders-*`, as a config service (here: the environment) says at each discovery.
    /// let streams = StreamSource::from_fn(|| async {
    ///     let list = std::env::var("ORDER_STREAMS").unwrap_or_default();
    ///     Ok(list.split(',').map(str::to_owned).collect())
    /// });
    /// let worker = Worker::multi_stream_builder("orders-app", streams)
    ///     .kinesis_client(client)
    ///     .lease_store(Arc::new(MemoryLeaseStore::new()))
    ///     .stream_discovery_interval(std::time::Duration::from_secs(30))
    ///     .removed_stream_grace(std::time::Duration::from_secs(600))
    ///     .processor_factory(|_shard: &str| Printer)
    ///     .build()?;
    /// worker.run().await
    /// # }
    /// ```
    pub fn multi_stream_builder(
        application_name: impl Into<String>,
        streams: crate::discover::StreamSource,
    ) -> WorkerBuilder<F> {
        WorkerBuilder::new_multi_stream(application_name, streams)
    }

    fn assemble(parts: Parts<F>) -> Self {
        Self { parts, shutdown_tx: watch::channel(false).0, pause_tx: watch::channel(false).0 }
    }

    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.parts.worker_id
    }

    /// A handle that asks [`run`](Self::run) to shut down gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown_tx.clone())
    }

    /// A handle that pauses and resumes consumption (Lambda's `Enabled`) while the worker keeps its leases.
    pub fn pause_handle(&self) -> PauseHandle {
        PauseHandle(self.pause_tx.clone())
    }

    /// Runs until a graceful shutdown completes. Dropping the future stops the worker like a crash: nothing is
    /// released, and other workers take its leases once they expire.
    pub async fn run(self) -> Result<(), KclError> {
        let span = tracing::info_span!("worker", worker_id = %self.parts.worker_id, stream = %self.parts.mode.label());
        self.run_inner().instrument(span).await
    }

    async fn run_inner(self) -> Result<(), KclError> {
        let pause = PauseGate::new(self.pause_tx.subscribe());
        let p = self.parts;
        let (coordinator, mut events) =
            LeaseCoordinator::start(p.store.clone(), p.worker_id.clone(), p.config.lease.clone())?;
        let (stream, lister) = match &p.mode {
            StreamMode::Single { stream, lister } => (stream.clone(), lister.clone()),
            // The template's stream and syncer are replaced per stream (see `Consumers`).
            StreamMode::Multi(_) => (Arc::from(""), Arc::new(NoShards) as Arc<dyn ShardLister>),
        };
        let syncer = Arc::new(ShardSyncer::new(
            lister,
            p.store.clone(),
            ShardSyncConfig {
                initial_position: p.config.initial_position,
                stream_identifier: None,
                shard_sync_interval: p.config.shard_sync_interval,
            },
        ));
        let consumer = Arc::new(ShardConsumer {
            stream,
            config: p.config.clone(),
            pause,
            source: p.source.clone(),
            store: p.store.clone(),
            control: Arc::new(CoordinatorControl::new(coordinator.clone())),
            syncer: syncer.clone(),
        });
        let (mut consumers, mut sync_task) = match &p.mode {
            StreamMode::Single { .. } => {
                let cleaner = LeaseCleaner::new(p.store.clone(), None).with_grace(p.config.finished_lease_grace);
                let (label, limit) = (p.mode.label().to_string(), p.config.give_up_after);
                let task = sync_loop(syncer, cleaner, p.worker_id.clone(), coordinator.clone(), label, limit);
                (Consumers::Single(consumer), tokio::spawn(task.in_current_span()))
            }
            StreamMode::Multi(settings) => {
                let (tracker, active) = StreamTracker::new(
                    settings.clone(),
                    p.store.clone(),
                    p.worker_id.clone(),
                    p.config.clone(),
                    coordinator.clone(),
                );
                let consumers = Consumers::Multi { template: consumer, active, by_stream: HashMap::new() };
                let task = async move {
                    tracker.run().await;
                    Ok(())
                };
                (consumers, tokio::spawn(task.in_current_span()))
            }
        };

        let mut shutdown_rx = self.shutdown_tx.subscribe();
        let mut running: HashMap<String, Running> = HashMap::new();
        // Leases acquired again while their previous consumer is still stopping; started when it exits.
        let mut waiting: HashMap<String, (Lease, LeaseGeneration)> = HashMap::new();
        // Held leases of streams not consumed now (multi-stream: not yet discovered here, or removed), by key, with
        // their stream identifier. They are renewed but not processed until their stream is listed again.
        let mut idle: HashMap<String, Idle> = HashMap::new();
        let mut tasks: JoinSet<(String, ConsumerExit)> = JoinSet::new();
        // Leases whose consumer this worker ran and saw exit without finishing the shard. Acquiring one of them again
        // re-reads its checkpoint: that consumer's last checkpoint may have landed after the coordinator's copy was
        // read (e.g. a checkpoint in flight when the lease self-fenced), and starting from the older copy would deliver
        // checkpointed records again.
        let mut ran_before: HashSet<String> = HashSet::new();
        let (shutdown_done_tx, mut shutdown_done) = mpsc::channel::<Result<(), KclError>>(1);
        let mut shutting_down = false;
        // Set when shard sync gave up (`give_up_after`): returned once the graceful shutdown it starts completes.
        let mut gave_up: Option<KclError> = None;

        let result = loop {
            tokio::select! {
                // The guard `wait_for` returns is not Send: reduce it to a bool inside the future.
                requested = async { shutdown_rx.wait_for(|requested| *requested).await.is_ok() }, if !shutting_down => {
                    if requested {
                        shutting_down = true;
                        tracing::info!(leases = running.len(), "graceful shutdown requested");
                        sync_task.abort();
                        let coordinator = coordinator.clone();
                        let done = shutdown_done_tx.clone();
                        tokio::spawn(async move {
                            let _ = done.send(coordinator.shutdown().await).await;
                        }.in_current_span());
                    }
                }
                Some(outcome) = shutdown_done.recv() => {
                    break gave_up.take().map_or(outcome, Err);
                }
                joined = &mut sync_task, if !shutting_down && gave_up.is_none() => {
                    let error = match joined {
                        Ok(Err(error)) => error,
                        Ok(Ok(())) => KclError::Shutdown,
                        Err(error) => KclError::InvalidConfig(format!("the shard sync task failed: {error}")),
                    };
                    gave_up = Some(error);
                    let _ = self.shutdown_tx.send(true);
                }
                event = events.recv() => match event {
                    Some(LeaseEvent::Acquired { lease, generation }) => {
                        if running.contains_key(&lease.lease_key) {
                            waiting.insert(lease.lease_key.clone(), (lease, generation));
                        } else {
                            let lease = if ran_before.contains(&lease.lease_key) {
                                with_stored_checkpoint(p.store.as_ref(), lease).await
                            } else {
                                lease
                            };
                            start_or_idle(&mut tasks, &mut running, &mut idle, &mut consumers, &p.factory, lease, generation);
                        }
                    }
                    Some(LeaseEvent::HandoffRequested { lease_key }) => match running.get(&lease_key) {
                        Some(run) => {
                            let reason = if shutting_down { StopReason::Shutdown } else { StopReason::Handoff };
                            run.stop.send_if_modified(|current| set_once(current, reason));
                        }
                        None => handoff_done(&coordinator, &lease_key).await,
                    },
                    Some(LeaseEvent::Lost { lease_key, reason }) => {
                        waiting.remove(&lease_key);
                        idle.remove(&lease_key);
                        if let Some(run) = running.get(&lease_key) {
                            tracing::info!(lease_key, ?reason, "lease lost; stopping its consumer");
                            run.stop.send_if_modified(|current| set_once(current, StopReason::LeaseLost));
                        }
                    }
                    None if shutting_down => {
                        // The coordinator closes its events when shutdown completes; wait for its result. A shutdown
                        // that shard sync started by giving up returns that error, whichever branch sees the end.
                        let outcome = shutdown_done.recv().await.unwrap_or(Ok(()));
                        break gave_up.take().map_or(outcome, Err);
                    }
                    None => break Err(KclError::Shutdown),
                },
                Some(joined) = tasks.join_next() => {
                    let (lease_key, exit) = match joined {
                        Ok(done) => done,
                        Err(error) => {
                            // Consumer tasks catch user panics themselves; this is a bug in the framework.
                            tracing::error!(%error, "a shard consumer task failed");
                            continue;
                        }
                    };
                    let Some(Running { stream, acquisition, .. }) = running.remove(&lease_key) else {
                        tracing::error!(lease_key, "a shard consumer the worker did not track exited");
                        continue;
                    };
                    let stopped_gracefully = matches!(exit, ConsumerExit::Stopped(StopReason::Handoff));
                    if matches!(exit, ConsumerExit::ShardEnded | ConsumerExit::AlreadyFinished) {
                        ran_before.remove(&lease_key);
                    } else {
                        ran_before.insert(lease_key.clone());
                    }
                    on_consumer_exit(&coordinator, &lease_key, exit).await;
                    if let Some((lease, generation)) = waiting.remove(&lease_key)
                        && coordinator.is_held(&lease.lease_key)
                    {
                        let lease = with_stored_checkpoint(p.store.as_ref(), lease).await;
                        start_or_idle(&mut tasks, &mut running, &mut idle, &mut consumers, &p.factory, lease, generation);
                    } else if !shutting_down && stopped_gracefully && stream.is_some()
                        && let Some(lease) = coordinator.held_leases().into_iter().find(|l| l.lease_key == lease_key)
                    {
                        // Stopped because its stream was removed, and still ours (no handoff): hold it idle (the sync
                        // leader deletes it after the grace period) so that no other worker starts on it again — or
                        // restart it at once if the stream was listed again meanwhile. Still the same acquisition: a
                        // newer one would have been waiting, and an older one's writes are refused anyway.
                        let lease = with_stored_checkpoint(p.store.as_ref(), lease).await;
                        start_or_idle(&mut tasks, &mut running, &mut idle, &mut consumers, &p.factory, lease, acquisition);
                    }
                }
                () = consumers.changed(), if !shutting_down => {
                    on_streams_changed(&mut tasks, &mut running, &mut idle, &mut consumers, &p.factory, &coordinator);
                }
            }
        };
        sync_task.abort();
        // The coordinator is done (shut down, or failed): this worker holds no lease any more. Consumers still running
        // (one whose lease was lost while its processor sat in a slow call, say) are told so and given the handoff
        // timeout to return and run their processor's `lease_lost`, rather than being dropped mid-call; the rest are
        // aborted after it.
        for run in running.values() {
            run.stop.send_if_modified(|current| set_once(current, StopReason::LeaseLost));
        }
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(p.config.lease.handoff_timeout(), drain).await.is_err() {
            tracing::warn!(
                consumers = tasks.len(),
                "shard consumers still running after the handoff timeout; aborting them"
            );
            tasks.shutdown().await;
        }
        result
    }
}

async fn on_consumer_exit(coordinator: &LeaseCoordinatorHandle, lease_key: &str, exit: ConsumerExit) {
    match exit {
        ConsumerExit::ShardEnded | ConsumerExit::AlreadyFinished => {
            // A finished lease needs no owner: release it so it does not count toward this worker's share.
            if let Err(error) = coordinator.release(lease_key).await {
                tracing::debug!(lease_key, %error, "could not release a finished lease");
            }
        }
        ConsumerExit::Stopped(StopReason::Shutdown | StopReason::Handoff) => handoff_done(coordinator, lease_key).await,
        ConsumerExit::Stopped(StopReason::LeaseLost) => {}
        ConsumerExit::Failed(error) => {
            metrics::counter!(crate::telemetry::SHARD_CONSUMER_FAILURES).increment(1);
            tracing::error!(lease_key, %error, "shard consumer failed; releasing the lease");
            if let Err(error) = coordinator.release(lease_key).await {
                tracing::debug!(lease_key, %error, "could not release the lease");
            }
        }
    }
}

/// A lease acquired again after (or while) a consumer of this worker ran it, brought up to the checkpoint that
/// consumer left. Its last checkpoint may have landed after the lease was read for the acquisition: this worker
/// holds the lease again, so the write went through with the new fence. Starting from the older copy would deliver
/// checkpointed records again, and the new consumer's first checkpoint could move the stored one backwards. The
/// checkpoint only ever moves forwards here; if the read fails, the acquisition's copy is used (at-least-once holds
/// either way).
async fn with_stored_checkpoint(store: &dyn LeaseStore, mut lease: Lease) -> Lease {
    match store.get_lease(&lease.lease_key).await {
        Ok(Some(stored)) if stored.checkpoint > lease.checkpoint => {
            lease.checkpoint = stored.checkpoint;
            lease.pending_checkpoint = stored.pending_checkpoint;
            lease.pending_checkpoint_state = stored.pending_checkpoint_state;
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(lease_key = %lease.lease_key, %error, "could not re-read a re-acquired lease; starting from \
                           the checkpoint read when it was acquired");
        }
    }
    lease
}

async fn handoff_done(coordinator: &LeaseCoordinatorHandle, lease_key: &str) {
    if let Err(error) = coordinator.handoff_done(lease_key).await {
        tracing::debug!(lease_key, %error, "handoff could not be completed; the lease will expire instead");
    }
}

/// Syncs shards when this worker is the sync leader (every worker is, while no lease has an owner: a fleet starting
/// up), then again after each jittered interval; a failed sync is retried after a second. After each sync the leader
/// deletes leases of shards that finished (and whose children started) at least `finished_lease_grace` ago. The
/// children are known from the leases' `childShardIds`, so no extra `ListShards` call is needed.
async fn sync_loop(
    syncer: Arc<ShardSyncer>,
    mut cleaner: LeaseCleaner,
    worker_id: String,
    coordinator: LeaseCoordinatorHandle,
    stream: String,
    give_up_after: Option<Duration>,
) -> Result<(), KclError> {
    let mut outage = Outage::default();
    loop {
        let result = syncer.sync_if_leader(&worker_id).await;
        outage.after(result.as_ref().map(|_| ()), &stream, give_up_after)?;
        let delay = match result {
            Ok(report) => {
                if let Some(report) = &report
                    && !report.created.is_empty()
                {
                    tracing::info!(
                        created = report.created.len(),
                        shards = report.shards_listed,
                        "shard sync created leases"
                    );
                    // Without this a fresh fleet waits a whole take interval for its first leases.
                    coordinator.wake_taker();
                }
                if let Some(report) = &report {
                    match cleaner.run(report.all_shards.as_deref().unwrap_or_default()).await {
                        Ok(deleted) if !deleted.is_empty() => {
                            tracing::info!(deleted = deleted.len(), "deleted the leases of finished shards");
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "lease cleanup failed; will retry after the next sync"),
                    }
                }
                syncer.next_sync_delay()
            }
            Err(error) => {
                // A missing stream, table or permission was logged by `outage` (once, as an ERROR).
                if missing(&error) == Missing::Nothing {
                    tracing::warn!(%error, "shard sync failed; will retry");
                }
                Duration::from_secs(1)
            }
        };
        tokio::time::sleep(delay).await;
    }
}
