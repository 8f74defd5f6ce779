//! The multi-stream side of a worker: the [`StreamTracker`] task (discovering streams, syncing each one's shards,
//! deleting the leases of removed streams after a grace period) and [`Consumers`], which gives each lease the shard
//! consumer of its stream — or none while the stream is not being consumed — and the worker loop's reactions to
//! that (`start_or_idle`, `on_streams_changed`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use tokio::task::JoinSet;

use super::running::{Running, set_once, start_consumer};
use crate::config::WorkerConfig;
use crate::discover::{LeaseCleaner, ShardSyncConfig, ShardSyncer, StreamCatalog, StreamSource, is_sync_leader};
use crate::error::KclError;
use crate::lease::coordinator::LeaseCoordinatorHandle;
use crate::lease::{Lease, LeaseGeneration, LeaseStore};
use crate::lifecycle::{ConsumerExit, ShardConsumer, StopReason};
use crate::process::ProcessorFactory;
use crate::retrieve::backoff::SplitMix64;

/// The multi-stream settings of a worker.
#[derive(Clone)]
pub(crate) struct MultiStream {
    pub(crate) source: StreamSource,
    pub(crate) catalog: Arc<dyn StreamCatalog>,
}

/// A stream being consumed now.
pub(crate) struct ActiveStream {
    /// The name (or ARN) as the application listed it: what reads and listings are addressed to.
    name: Arc<str>,
    /// Creates the stream's leases, keyed `identifier:shardId`.
    syncer: Arc<ShardSyncer>,
}

/// The streams consumed now, by serialized identifier (`account:stream:creationEpoch`).
pub(crate) type ActiveStreams = HashMap<String, Arc<ActiveStream>>;

/// Discovers streams and syncs their shards; runs on every worker of a multi-stream application.
pub(crate) struct StreamTracker {
    settings: MultiStream,
    store: Arc<dyn LeaseStore>,
    worker_id: String,
    /// The worker's settings: discovery and sync intervals, grace periods, the initial position.
    config: Arc<WorkerConfig>,
    coordinator: LeaseCoordinatorHandle,
    /// Listed name → its identifier and stream; a name is described once, when it first appears.
    resolved: HashMap<String, (String, Arc<ActiveStream>)>,
    cleaners: HashMap<String, LeaseCleaner>,
    /// Identifiers with leases but no longer listed → when this worker first saw that (monotonic clock).
    removed_since: HashMap<String, Instant>,
    active_tx: watch::Sender<Arc<ActiveStreams>>,
    jitter: SplitMix64,
}

impl StreamTracker {
    pub(crate) fn new(
        settings: MultiStream,
        store: Arc<dyn LeaseStore>,
        worker_id: String,
        config: Arc<WorkerConfig>,
        coordinator: LeaseCoordinatorHandle,
    ) -> (Self, watch::Receiver<Arc<ActiveStreams>>) {
        let (active_tx, active_rx) = watch::channel(Arc::new(ActiveStreams::new()));
        let seed = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 1u8);
        let tracker = Self {
            settings,
            store,
            worker_id,
            config,
            coordinator,
            resolved: HashMap::new(),
            cleaners: HashMap::new(),
            removed_since: HashMap::new(),
            active_tx,
            jitter: SplitMix64(seed),
        };
        (tracker, active_rx)
    }

    /// Discovers every `discovery_interval` and syncs every `shard_sync_interval` (± 10 %), and at once when a
    /// stream appears. Nothing is synced or deleted before the first successful discovery.
    pub(crate) async fn run(mut self) {
        let mut next_discovery = Instant::now();
        let mut next_sync: Option<Instant> = None;
        loop {
            let wake = next_sync.map_or(next_discovery, |sync| sync.min(next_discovery));
            tokio::time::sleep_until(wake).await;
            if Instant::now() >= next_discovery {
                next_discovery = match self.discover().await {
                    Ok(added) => {
                        if added || next_sync.is_none() {
                            next_sync = Some(Instant::now());
                        }
                        Instant::now() + self.config.stream_discovery_interval
                    }
                    Err(error) => {
                        tracing::warn!(%error, "stream discovery failed; keeping the current streams");
                        Instant::now() + self.config.stream_discovery_interval.min(Duration::from_secs(1))
                    }
                };
            }
            if next_sync.is_some_and(|sync| Instant::now() >= sync) {
                let delay = match self.sync_all().await {
                    Ok(()) => self.next_sync_delay(),
                    Err(error) => {
                        tracing::warn!(%error, "shard sync failed; will retry");
                        Duration::from_secs(1)
                    }
                };
                next_sync = Some(Instant::now() + delay);
            }
        }
    }

    /// Asks the stream source, describes names not seen before, and publishes the active streams. Returns whether a
    /// stream was added.
    async fn discover(&mut self) -> Result<bool, crate::discover::DiscoveryError> {
        let names = self.settings.source.current().await?;
        self.resolved.retain(|name, _| names.contains(name));
        for name in &names {
            if self.resolved.contains_key(name) {
                continue;
            }
            match self.settings.catalog.describe_stream(name).await {
                Ok(Some(identifier)) => {
                    let identifier = identifier.to_string();
                    let syncer = ShardSyncer::new(
                        self.settings.catalog.shard_lister(name),
                        self.store.clone(),
                        ShardSyncConfig {
                            initial_position: self.config.initial_position,
                            stream_identifier: Some(identifier.clone()),
                            shard_sync_interval: self.config.shard_sync_interval,
                        },
                    );
                    let stream = ActiveStream { name: Arc::from(name.as_str()), syncer: Arc::new(syncer) };
                    self.resolved.insert(name.clone(), (identifier, Arc::new(stream)));
                }
                Ok(None) => tracing::warn!(stream = %name, "a listed stream does not exist; will look again"),
                Err(error) => tracing::warn!(stream = %name, %error, "could not describe a listed stream; will retry"),
            }
        }
        Ok(self.publish())
    }

    /// Publishes the resolved streams when the set changed; returns whether one was added.
    fn publish(&mut self) -> bool {
        let active: ActiveStreams = self.resolved.values().map(|(id, stream)| (id.clone(), stream.clone())).collect();
        let previous = self.active_tx.borrow().clone();
        let added: Vec<&String> = active.keys().filter(|id| !previous.contains_key(*id)).collect();
        let removed: Vec<&String> = previous.keys().filter(|id| !active.contains_key(*id)).collect();
        if added.is_empty() && removed.is_empty() {
            return false;
        }
        tracing::info!(?added, ?removed, streams = active.len(), "the consumed streams changed");
        let any_added = !added.is_empty();
        self.active_tx.send_replace(Arc::new(active));
        any_added
    }

    /// One lease listing for everything. The fleet's sync leader (owner of the lowest lease key, as for a single
    /// stream) syncs every stream and cleans up finished shards, as Java KCL's single leader does; any worker syncs a
    /// stream that has no lease yet (a stream just added), as at a fleet's start. Then removed streams are handled.
    async fn sync_all(&mut self) -> Result<(), KclError> {
        let leases = self.store.list_all_leases().await?;
        let active = self.active_tx.borrow().clone();
        let leader = is_sync_leader(&self.worker_id, &leases);
        let mut created = 0;
        let mut gone = Vec::new();
        for (identifier, stream) in active.iter() {
            let has_leases = leases.iter().any(|l| l.stream_identifier.as_deref() == Some(identifier.as_str()));
            if !leader && has_leases {
                continue;
            }
            match stream.syncer.sync_among(&leases).await {
                Ok(report) => {
                    created += report.created.len();
                    let cleaner = self.cleaners.entry(identifier.clone()).or_insert_with(|| {
                        LeaseCleaner::new(self.store.clone(), Some(identifier.clone()))
                            .with_grace(self.config.finished_lease_grace)
                    });
                    match cleaner.run_among(&leases, report.all_shards.as_deref().unwrap_or_default()).await {
                        Ok(deleted) if !deleted.is_empty() => {
                            tracing::info!(stream = %identifier, deleted = deleted.len(), "deleted finished leases");
                        }
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "lease cleanup failed; will retry after the next sync"),
                    }
                }
                Err(error) if !error.is_retryable() => {
                    // Most likely the stream was deleted: describe it again at the next discovery.
                    tracing::warn!(stream = %identifier, %error, "shard sync failed; describing the stream again");
                    gone.push(stream.name.clone());
                }
                Err(error) => tracing::warn!(stream = %identifier, %error, "shard sync failed; will retry"),
            }
        }
        if created > 0 {
            // Without this a new stream waits a whole take interval for its first consumers.
            self.coordinator.wake_taker();
        }
        self.cleaners.retain(|identifier, _| active.contains_key(identifier));
        if !gone.is_empty() {
            self.resolved.retain(|name, _| !gone.iter().any(|g| **g == **name));
            self.publish();
        }
        let active = self.active_tx.borrow().clone();
        self.delete_removed(&leases, &active, leader).await
    }

    /// Notes streams that have leases but are no longer consumed; the fleet's sync leader (owner of the lowest lease
    /// key) deletes their leases once this worker has seen them removed for `removed_grace`.
    async fn delete_removed(&mut self, leases: &[Lease], active: &ActiveStreams, leader: bool) -> Result<(), KclError> {
        let now = Instant::now();
        let removed: HashSet<&str> = leases
            .iter()
            .filter_map(|lease| lease.stream_identifier.as_deref())
            .filter(|identifier| !active.contains_key(*identifier))
            .collect();
        self.removed_since.retain(|identifier, _| removed.contains(identifier.as_str()));
        for identifier in &removed {
            self.removed_since.entry((*identifier).to_owned()).or_insert_with(|| {
                tracing::info!(stream = %identifier, grace = ?self.config.removed_stream_grace, "a stream with leases is not listed any more; deleting its leases after the grace period");
                now
            });
        }
        if !leader {
            return Ok(());
        }
        let due: Vec<String> = self
            .removed_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= self.config.removed_stream_grace)
            .map(|(identifier, _)| identifier.clone())
            .collect();
        for identifier in due {
            let keys = leases.iter().filter(|l| l.stream_identifier.as_deref() == Some(identifier.as_str()));
            let mut deleted = 0;
            for lease in keys {
                self.store.delete_lease(&lease.lease_key).await?;
                deleted += 1;
            }
            tracing::info!(stream = %identifier, deleted, "deleted the leases of a removed stream");
            self.removed_since.remove(&identifier);
        }
        Ok(())
    }

    /// The shard sync interval ± 10 %, so a fleet's syncs drift apart.
    fn next_sync_delay(&mut self) -> Duration {
        let base = self.config.shard_sync_interval;
        let spread = u64::try_from((base / 5).as_millis()).unwrap_or(u64::MAX);
        (base - base / 10) + Duration::from_millis(self.jitter.below(spread.saturating_add(1)))
    }
}

/// Picks the shard consumer for a lease: the one consumer of a single-stream worker, or the consumer of the lease's
/// stream in a multi-stream worker (none while that stream is not consumed).
pub(crate) enum Consumers {
    Single(Arc<ShardConsumer>),
    Multi {
        /// Everything but the stream; `stream` and `syncer` are replaced per stream.
        template: Arc<ShardConsumer>,
        active: watch::Receiver<Arc<ActiveStreams>>,
        by_stream: HashMap<String, Arc<ShardConsumer>>,
    },
}

impl Consumers {
    /// The consumer for a lease of `stream` (its stream identifier), if that stream is consumed now.
    pub(crate) fn for_stream(&mut self, stream: Option<&str>) -> Option<Arc<ShardConsumer>> {
        match self {
            Self::Single(consumer) => Some(consumer.clone()),
            Self::Multi { template, active, by_stream } => {
                let stream = stream?;
                let active = active.borrow().get(stream)?.clone();
                let consumer = by_stream.entry(stream.to_owned()).or_insert_with(|| {
                    Arc::new(ShardConsumer {
                        stream: active.name.clone(),
                        config: template.config.clone(),
                        pause: template.pause.clone(),
                        source: template.source.clone(),
                        store: template.store.clone(),
                        control: template.control.clone(),
                        syncer: active.syncer.clone(),
                    })
                });
                Some(consumer.clone())
            }
        }
    }

    /// Whether leases of `stream` are consumed now.
    pub(crate) fn is_active(&self, stream: Option<&str>) -> bool {
        match self {
            Self::Single(_) => true,
            Self::Multi { active, .. } => stream.is_some_and(|s| active.borrow().contains_key(s)),
        }
    }

    /// Resolves when the consumed streams change (never for a single-stream worker, or once the tracker is gone).
    pub(crate) async fn changed(&mut self) {
        let Self::Multi { active, by_stream, .. } = self else { return futures::future::pending().await };
        if active.changed().await.is_err() {
            return futures::future::pending().await;
        }
        let current = active.borrow().clone();
        by_stream.retain(|stream, _| current.contains_key(stream));
    }
}

/// A held lease whose stream is not consumed now (multi-stream): renewed, not processed.
pub(super) struct Idle {
    /// The lease's stream identifier.
    pub(super) stream: Option<String>,
    /// The acquisition to start its consumer under once the stream is consumed again.
    pub(super) acquisition: LeaseGeneration,
}

/// Starts the consumer of a newly held lease, or keeps the lease idle while its stream is not consumed.
pub(super) fn start_or_idle<F: ProcessorFactory>(
    tasks: &mut JoinSet<(String, ConsumerExit)>,
    running: &mut HashMap<String, Running>,
    idle: &mut HashMap<String, Idle>,
    consumers: &mut Consumers,
    factory: &Arc<F>,
    lease: Lease,
    acquisition: LeaseGeneration,
) {
    match consumers.for_stream(lease.stream_identifier.as_deref()) {
        Some(consumer) => {
            idle.remove(&lease.lease_key);
            start_consumer(tasks, running, &consumer, factory, lease, acquisition);
        }
        None => {
            tracing::debug!(lease_key = %lease.lease_key, "holding the lease of a stream not consumed now");
            idle.insert(lease.lease_key, Idle { stream: lease.stream_identifier, acquisition });
        }
    }
}

/// The consumed streams changed: stop the consumers of removed streams (they checkpoint, and their leases stay held,
/// idle) and start those of held leases whose stream is consumed now.
pub(super) fn on_streams_changed<F: ProcessorFactory>(
    tasks: &mut JoinSet<(String, ConsumerExit)>,
    running: &mut HashMap<String, Running>,
    idle: &mut HashMap<String, Idle>,
    consumers: &mut Consumers,
    factory: &Arc<F>,
    coordinator: &LeaseCoordinatorHandle,
) {
    for (lease_key, run) in running.iter() {
        if !consumers.is_active(run.stream.as_deref()) {
            tracing::info!(lease_key, "its stream is no longer consumed; stopping the consumer");
            run.stop.send_if_modified(|current| set_once(current, StopReason::Handoff));
        }
    }
    let ready: Vec<(String, LeaseGeneration)> = idle
        .iter()
        .filter(|(_, held)| consumers.is_active(held.stream.as_deref()))
        .map(|(key, held)| (key.clone(), held.acquisition))
        .collect();
    if ready.is_empty() {
        return;
    }
    // The coordinator's copy has the latest checkpoint.
    for lease in coordinator.held_leases() {
        let acquisition = ready.iter().find(|(key, _)| *key == lease.lease_key).map(|(_, acquisition)| *acquisition);
        if let Some(acquisition) = acquisition
            && !running.contains_key(&lease.lease_key)
        {
            start_or_idle(tasks, running, idle, consumers, factory, lease, acquisition);
        }
    }
}

/// The single-stream syncer's lister in a multi-stream worker's consumer template: never called, because every
/// multi-stream consumer gets its stream's syncer.
pub(super) struct NoShards;

#[async_trait::async_trait]
impl crate::discover::ShardLister for NoShards {
    async fn list_shards(&self, _: crate::discover::ShardListFilter) -> Result<Vec<crate::Shard>, KclError> {
        Ok(Vec::new())
    }
}
