//! `ShardSyncer`: which leases to create for a stream's shards, and creating them.
//! The rules are documented on [`plan_new_leases`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::error::KclError;
use crate::lease::{Lease, LeaseStore};
use crate::retrieve::ChildShard;
use crate::retrieve::backoff::SplitMix64;
use crate::types::{ExtendedSequenceNumber, InitialPosition, Shard};

use super::{ShardListFilter, ShardLister};

/// Settings of a [`ShardSyncer`].
#[derive(Clone, Debug)]
pub struct ShardSyncConfig {
    /// Where shards with no leased ancestry start (KCL `initialPositionInStream`, default `LATEST`).
    pub initial_position: InitialPosition,
    /// `Some(account:stream:creationEpoch)` in a multi-stream application: leases use `identifier:shardId` keys.
    pub stream_identifier: Option<String>,
    /// Time between the leader's periodic syncs (KCL `shardSyncIntervalMillis`, default 60 s), jittered ± 10 %.
    pub shard_sync_interval: Duration,
}

impl Default for ShardSyncConfig {
    fn default() -> Self {
        Self {
            initial_position: InitialPosition::default(),
            stream_identifier: None,
            shard_sync_interval: Duration::from_secs(60),
        }
    }
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Shards the listing returned.
    pub shards_listed: usize,
    /// Keys of the leases this sync created (others may have been created concurrently by other workers).
    pub created: Vec<String>,
    /// Every shard of the stream, when the listing was complete (`ShardListFilter::All`); `None` when only open
    /// shards were listed. Garbage-lease cleanup needs a complete listing to tell a missing shard.
    pub all_shards: Option<Vec<Shard>>,
}

/// Creates leases for new shards; see [`plan_new_leases`] for the rules and [the module](super) for the
/// `ListShards` call budget.
pub struct ShardSyncer {
    lister: Arc<dyn ShardLister>,
    store: Arc<dyn LeaseStore>,
    config: ShardSyncConfig,
    jitter: std::sync::Mutex<SplitMix64>,
}

impl std::fmt::Debug for ShardSyncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardSyncer").field("config", &self.config).finish_non_exhaustive()
    }
}

impl ShardSyncer {
    /// A syncer for one stream.
    pub fn new(lister: Arc<dyn ShardLister>, store: Arc<dyn LeaseStore>, config: ShardSyncConfig) -> Self {
        let seed = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u8);
        Self { lister, store, config, jitter: std::sync::Mutex::new(SplitMix64(seed)) }
    }

    /// The settings.
    pub fn config(&self) -> &ShardSyncConfig {
        &self.config
    }

    /// The leases of this syncer's stream.
    pub async fn stream_leases(&self) -> Result<Vec<Lease>, KclError> {
        let mut leases = self.store.list_all_leases().await?;
        leases.retain(|l| l.stream_identifier.as_deref() == self.config.stream_identifier.as_deref());
        Ok(leases)
    }

    /// Lists shards and leases and creates the missing leases. Safe to run from several workers at once: creation is
    /// conditional, so they agree on the result.
    pub async fn sync(&self) -> Result<SyncReport, KclError> {
        let leases = self.stream_leases().await?;
        self.sync_with(&leases).await
    }

    /// [`sync`](Self::sync) when this worker is the sync leader ([`is_sync_leader`]); `None` otherwise. Costs one lease
    /// listing when not leader, and no `ListShards` call.
    pub async fn sync_if_leader(&self, worker_id: &str) -> Result<Option<SyncReport>, KclError> {
        let leases = self.stream_leases().await?;
        if !is_sync_leader(worker_id, &leases) {
            return Ok(None);
        }
        self.sync_with(&leases).await.map(Some)
    }

    /// [`sync`](Self::sync) given a listing of the whole lease table (a multi-stream worker lists it once for all its
    /// streams); only this syncer's stream's leases count.
    pub async fn sync_among(&self, all_leases: &[Lease]) -> Result<SyncReport, KclError> {
        let stream = self.config.stream_identifier.as_deref();
        let leases: Vec<Lease> =
            all_leases.iter().filter(|l| l.stream_identifier.as_deref() == stream).cloned().collect();
        self.sync_with(&leases).await
    }

    async fn sync_with(&self, leases: &[Lease]) -> Result<SyncReport, KclError> {
        // With no leases and LATEST, only open shards can get one: the cheaper listing is enough.
        let filter = if leases.is_empty() && self.config.initial_position == InitialPosition::Latest {
            ShardListFilter::Open
        } else {
            ShardListFilter::All
        };
        let shards = self.lister.list_shards(filter).await?;
        let plan =
            plan_new_leases(&shards, leases, &self.config.initial_position, self.config.stream_identifier.as_deref());
        let mut created = Vec::new();
        for lease in plan {
            if self.store.create_lease_if_not_exists(&lease).await? {
                tracing::info!(lease = %lease.lease_key, checkpoint = %lease.checkpoint, parents = ?lease.parent_shard_ids, "created lease");
                created.push(lease.lease_key);
            }
        }
        let all_shards = (filter == ShardListFilter::All).then_some(shards.clone());
        Ok(SyncReport { shards_listed: shards.len(), created, all_shards })
    }

    /// Creates the leases of a finished shard's children (from the `ChildShards` of its last read) without listing
    /// shards. Children start at `TRIM_HORIZON` (`AT_TIMESTAMP` when that is the initial position) and wait, through
    /// their parent ids, for every parent to finish. Returns the keys created.
    pub async fn create_child_leases(&self, children: &[ChildShard]) -> Result<Vec<String>, KclError> {
        let checkpoint = descendant_checkpoint(&self.config.initial_position);
        let mut created = Vec::new();
        for child in children {
            let mut lease = new_lease(self.config.stream_identifier.as_deref(), &child.shard_id, checkpoint.clone());
            lease.parent_shard_ids = child.parent_shard_ids.clone();
            lease.hash_key_range = Some(child.hash_key_range);
            if self.store.create_lease_if_not_exists(&lease).await? {
                tracing::info!(lease = %lease.lease_key, parents = ?lease.parent_shard_ids, "created child lease");
                created.push(lease.lease_key);
            }
        }
        Ok(created)
    }

    /// Whether the stream still lists `shard_id` (open or closed; a shard past the retention period is gone). One
    /// `ListShards` (every page).
    pub async fn shard_listed(&self, shard_id: &str) -> Result<bool, KclError> {
        let shards = self.lister.list_shards(ShardListFilter::All).await?;
        Ok(shards.iter().any(|shard| shard.shard_id == shard_id))
    }

    /// How long to wait before the next periodic sync: the interval ± 10 %, so a fleet's syncs drift apart.
    pub fn next_sync_delay(&self) -> Duration {
        let base = self.config.shard_sync_interval;
        let spread = u64::try_from((base / 5).as_millis()).unwrap_or(u64::MAX);
        let offset = self.jitter.lock().unwrap_or_else(|p| p.into_inner()).below(spread.saturating_add(1));
        (base - base / 10) + Duration::from_millis(offset)
    }
}

/// Whether `worker_id` should run the periodic sync for the stream whose leases are `leases`: it owns the lease with
/// the lowest key among owned leases. While no lease is owned (a fleet starting up) every worker may sync.
pub fn is_sync_leader(worker_id: &str, leases: &[Lease]) -> bool {
    leases
        .iter()
        .filter_map(|lease| lease.lease_owner.as_deref().map(|owner| (lease.lease_key.as_str(), owner)))
        .min()
        .is_none_or(|(_, owner)| owner == worker_id)
}

fn descendant_checkpoint(initial: &InitialPosition) -> ExtendedSequenceNumber {
    match initial {
        InitialPosition::AtTimestamp(_) => ExtendedSequenceNumber::AtTimestamp(None),
        _ => ExtendedSequenceNumber::TrimHorizon,
    }
}

fn new_lease(stream_identifier: Option<&str>, shard_id: &str, checkpoint: ExtendedSequenceNumber) -> Lease {
    match stream_identifier {
        Some(stream) => Lease::new_for_stream_shard(stream, shard_id, checkpoint),
        None => Lease::new_for_shard(shard_id, checkpoint),
    }
}

/// The leases to create for `shards` given the stream's existing `leases`, in creation order (parents first).
/// Pure: no I/O.
///
/// # Rules (a documented subset of Java KCL's `HierarchicalShardSyncer`, non-empty-table synchronizer)
/// Only shards in the listing count; a parent missing from it has expired and is ignored. For every **open** shard
/// without a lease (an open shard whose parent is still open is skipped: the listing raced a reshard):
/// 1. It is a *descendant* when one of its ancestors has a lease, or — for `TRIM_HORIZON` and `AT_TIMESTAMP`, which
///    want everything retained — when its lineage reaches a shard with no listed parents.
/// 2. A descendant starts at `TRIM_HORIZON` (`AT_TIMESTAMP` when that is the initial position): its parents are, or
///    will be, read to their end first, so nothing in between is lost. Any other shard starts at the initial position.
/// 3. Walking up from a descendant, every parent without a lease gets one — `TRIM_HORIZON` if that parent is itself a
///    descendant, the initial position if not — so children never start before all their parents are finished.
///    The walk stops at shards that have leases: closed shards above a leased shard are never re-created, even after
///    their own leases were cleaned up.
///
/// New leases carry parent ids and hash ranges, and are created parents first (ordered by starting sequence number),
/// so a sync that fails halfway leaves no child without its parents.
pub fn plan_new_leases(
    shards: &[Shard],
    leases: &[Lease],
    initial: &InitialPosition,
    stream_identifier: Option<&str>,
) -> Vec<Lease> {
    let mut planner = Planner {
        shards: shards.iter().map(|s| (s.shard_id.as_str(), s)).collect(),
        leased: leases.iter().map(|l| l.shard_id.as_str()).collect(),
        initial,
        stream_identifier,
        memo: HashMap::new(),
        new: HashMap::new(),
    };
    for shard in shards.iter().filter(|s| s.is_open()) {
        let id = shard.shard_id.as_str();
        if planner.leased.contains(id) {
            continue;
        }
        if planner.parents(shard).iter().any(|p| p.is_open()) {
            tracing::info!(
                shard = id,
                "open shard has an open parent (listing raced a reshard); skipping it this time"
            );
            continue;
        }
        let checkpoint = if planner.descends(id) { descendant_checkpoint(initial) } else { initial.to_checkpoint() };
        planner.plan(shard, checkpoint);
    }
    let Planner { new, shards: by_id, .. } = planner;
    let mut planned: Vec<Lease> = new.into_values().collect();
    planned.sort_by(|a, b| {
        let start = |l: &Lease| by_id.get(l.shard_id.as_str()).map(|s| s.sequence_number_range.start.clone());
        start(a).cmp(&start(b)).then_with(|| a.shard_id.cmp(&b.shard_id))
    });
    planned
}

struct Planner<'a> {
    shards: HashMap<&'a str, &'a Shard>,
    leased: HashSet<&'a str>,
    initial: &'a InitialPosition,
    stream_identifier: Option<&'a str>,
    /// Shard id → "is a descendant"; an entry is written before recursing, so a cyclic listing cannot recurse forever.
    memo: HashMap<&'a str, bool>,
    new: HashMap<String, Lease>,
}

impl<'a> Planner<'a> {
    /// The parents still in the listing.
    fn parents(&self, shard: &'a Shard) -> Vec<&'a Shard> {
        shard.parent_shard_ids.iter().filter_map(|p| self.shards.get(p.as_str()).copied()).collect()
    }

    fn plan(&mut self, shard: &Shard, checkpoint: ExtendedSequenceNumber) {
        let mut lease = new_lease(self.stream_identifier, &shard.shard_id, checkpoint);
        lease.parent_shard_ids = shard.parent_shard_ids.clone();
        lease.hash_key_range = Some(shard.hash_key_range);
        self.new.insert(shard.shard_id.clone(), lease);
    }

    /// Whether the shard is (or will be) read from its start because an ancestor is processed; plans leases for the
    /// unleased parents of descendants on the way.
    fn descends(&mut self, id: &'a str) -> bool {
        if let Some(&known) = self.memo.get(id) {
            return known;
        }
        self.memo.insert(id, false);
        let Some(shard) = self.shards.get(id).copied() else { return false };
        let result = if self.leased.contains(id) {
            true
        } else {
            let parents = self.parents(shard);
            let descendant_parents: Vec<&str> =
                parents.iter().filter(|p| self.descends(p.shard_id.as_str())).map(|p| p.shard_id.as_str()).collect();
            if descendant_parents.is_empty() {
                // No processed ancestry: read it from its start only when the application wants everything retained.
                matches!(self.initial, InitialPosition::TrimHorizon | InitialPosition::AtTimestamp(_))
            } else {
                for parent in parents {
                    if self.leased.contains(parent.shard_id.as_str()) {
                        continue;
                    }
                    let checkpoint = if descendant_parents.contains(&parent.shard_id.as_str()) {
                        descendant_checkpoint(self.initial)
                    } else {
                        self.initial.to_checkpoint()
                    };
                    self.plan(parent, checkpoint);
                }
                true
            }
        };
        self.memo.insert(id, result);
        result
    }
}
