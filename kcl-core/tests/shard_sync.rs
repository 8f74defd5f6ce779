//! Shard discovery on the in-memory stream and lease store: which leases get created, with which parents and
//! checkpoints, after splits and merges; child leases at shard end; sync leadership; cleanup of finished leases.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::read_to_end;
use kcl_core::discover::{
    LeaseCleaner, ShardListFilter, ShardLister, ShardSyncConfig, ShardSyncer, finished_leases, is_sync_leader,
    plan_new_leases,
};
use kcl_core::lease::{Lease, LeaseStore, MemoryLeaseStore};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::retrieve::{RecordSource, ShardSpec};
use kcl_core::types::{HashKeyRange, SequenceNumberRange};
use kcl_core::{ExtendedSequenceNumber as Esn, InitialPosition, KclError, SequenceNumber, Shard};

fn id(n: u32) -> String {
    format!("shardId-{n:012}")
}

/// Lease key → (checkpoint, parents).
async fn leases(store: &MemoryLeaseStore) -> BTreeMap<String, (Esn, Vec<String>)> {
    let all = store.list_all_leases().await.unwrap();
    all.into_iter().map(|l| (l.lease_key, (l.checkpoint, l.parent_shard_ids))).collect()
}

fn syncer(stream: &MemoryStream, store: &Arc<MemoryLeaseStore>, initial: InitialPosition) -> ShardSyncer {
    let config = ShardSyncConfig { initial_position: initial, ..ShardSyncConfig::default() };
    ShardSyncer::new(Arc::new(stream.clone()), store.clone(), config)
}

/// Finishes a lease: take it, checkpoint `checkpoint`.
async fn checkpoint(store: &MemoryLeaseStore, key: &str, checkpoint: Esn) {
    let lease = store.get_lease(key).await.unwrap().unwrap();
    let taken = store.take_lease(key, lease.lease_counter, "worker").await.unwrap();
    store.update_checkpoint(&taken.fence().unwrap(), &checkpoint).await.unwrap();
}

#[tokio::test]
async fn a_new_application_leases_every_shard_and_then_follows_splits_and_merges() {
    let stream = MemoryStream::new("fresh", 4);
    let store = Arc::new(MemoryLeaseStore::new());
    let syncer = syncer(&stream, &store, InitialPosition::TrimHorizon);
    let report = syncer.sync().await.unwrap();
    assert_eq!(report.created, (0..4).map(id).collect::<Vec<_>>());
    let lease = store.get_lease(&id(0)).await.unwrap().unwrap();
    assert_eq!(lease.hash_key_range, Some(stream.shards()[0].hash_key_range));
    assert!(lease.parent_shard_ids.is_empty());
    assert!(syncer.sync().await.unwrap().created.is_empty(), "syncing again creates nothing");

    let range = stream.shards()[0].hash_key_range;
    stream.split(&id(0), range.start + (range.end - range.start) / 2).unwrap(); // 4, 5
    stream.merge(&id(1), &id(2)).unwrap(); // 6
    let report = syncer.sync().await.unwrap();
    assert_eq!(report.created, vec![id(4), id(5), id(6)]);
    let all = leases(&store).await;
    assert_eq!(all[&id(4)], (Esn::TrimHorizon, vec![id(0)]));
    assert_eq!(all[&id(5)], (Esn::TrimHorizon, vec![id(0)]));
    assert_eq!(all[&id(6)], (Esn::TrimHorizon, vec![id(1), id(2)]));
    let merged = store.get_lease(&id(6)).await.unwrap().unwrap();
    assert_eq!(
        merged.hash_key_range,
        Some(HashKeyRange {
            start: stream.shards()[1].hash_key_range.start,
            end: stream.shards()[2].hash_key_range.end
        })
    );
}

#[tokio::test]
async fn latest_on_a_stream_with_history_leases_only_the_open_shards() {
    let stream = MemoryStream::new("latest", 2);
    stream.split(&id(0), 1 << 120).unwrap(); // 2, 3
    stream.merge(&id(3), &id(1)).unwrap(); // 4
    let counting = Arc::new(Counting::new(stream.clone()));
    let store = Arc::new(MemoryLeaseStore::new());
    let config = ShardSyncConfig { initial_position: InitialPosition::Latest, ..ShardSyncConfig::default() };
    let syncer = ShardSyncer::new(counting.clone(), store.clone(), config);
    syncer.sync().await.unwrap();
    let all = leases(&store).await;
    assert_eq!(all.keys().cloned().collect::<Vec<_>>(), vec![id(2), id(4)]);
    assert!(all.values().all(|(checkpoint, _)| *checkpoint == Esn::Latest));
    assert_eq!(counting.filters(), vec![ShardListFilter::Open], "an empty table with LATEST needs open shards only");
}

#[tokio::test]
async fn trim_horizon_on_a_stream_with_history_leases_the_whole_lineage_parents_first() {
    let stream = MemoryStream::new("history", 2);
    stream.split(&id(0), 1 << 120).unwrap(); // 2, 3
    stream.merge(&id(3), &id(1)).unwrap(); // 4
    let plan = plan_new_leases(&stream.shards(), &[], &InitialPosition::TrimHorizon, None);
    let order: Vec<&str> = plan.iter().map(|l| l.lease_key.as_str()).collect();
    assert_eq!(order, [id(0), id(1), id(2), id(3), id(4)]);
    assert!(plan.iter().all(|l| l.checkpoint == Esn::TrimHorizon));
    let position = |key: String| order.iter().position(|k| *k == key).unwrap();
    for lease in &plan {
        for parent in &lease.parent_shard_ids {
            assert!(position(parent.clone()) < position(lease.lease_key.clone()), "parents are created first");
        }
    }
}

/// Java KCL's documented example (`HierarchicalShardSyncer.determineNewLeasesToCreate`), in this stream's numbering:
/// ```text
/// 0 1 2 3 4 5      KCL 6 = our 6, KCL 7 = our 7,
/// \ / \ / | |      KCL 8 = our 10 (merge of 6 and 7),
///  6   7  4 5      KCL 9, 10 = our 8, 9 (split of 5)
///   \ /   | |\
///    10   4 8 9
/// ```
fn kcl_example() -> MemoryStream {
    let stream = MemoryStream::new("kcl-example", 6);
    stream.merge(&id(0), &id(1)).unwrap(); // 6
    stream.merge(&id(2), &id(3)).unwrap(); // 7
    let range = stream.shards()[5].hash_key_range;
    stream.split(&id(5), range.start + 1000).unwrap(); // 8, 9
    stream.merge(&id(6), &id(7)).unwrap(); // 10
    stream
}

#[tokio::test]
async fn kcl_example_with_leases_for_3_4_5() {
    let stream = kcl_example();
    let existing: Vec<Lease> = [3, 4, 5].into_iter().map(|n| Lease::new_for_shard(id(n), Esn::TrimHorizon)).collect();
    let plan = |initial| -> BTreeMap<String, Esn> {
        plan_new_leases(&stream.shards(), &existing, &initial, None)
            .into_iter()
            .map(|l| (l.lease_key, l.checkpoint))
            .collect()
    };
    let th = Esn::TrimHorizon;
    let latest = plan(InitialPosition::Latest);
    let expected: BTreeMap<String, Esn> = [
        (id(2), Esn::Latest), // parent of 7, not a descendant of anything leased
        (id(6), Esn::Latest), // parent of 10, not a descendant of anything leased
        (id(7), th.clone()),
        (id(10), th.clone()),
        (id(8), th.clone()),
        (id(9), th.clone()),
    ]
    .into_iter()
    .collect();
    assert_eq!(latest, expected);

    let horizon = plan(InitialPosition::TrimHorizon);
    let keys: Vec<String> = horizon.keys().cloned().collect();
    let mut expected: Vec<String> = [0, 1, 2, 6, 7, 8, 9, 10].into_iter().map(id).collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert!(horizon.values().all(|c| *c == th));

    let at = plan(InitialPosition::AtTimestamp(std::time::SystemTime::UNIX_EPOCH));
    assert_eq!(at.len(), 8);
    assert!(at.values().all(|c| *c == Esn::AtTimestamp(None)), "AT_TIMESTAMP leases keep the sentinel");
}

#[tokio::test]
async fn cleaned_up_ancestors_are_not_created_again() {
    let stream = kcl_example();
    // The application processed everything down to the open shards; finished leases were deleted.
    let existing: Vec<Lease> =
        [10, 4, 8, 9].into_iter().map(|n| Lease::new_for_shard(id(n), Esn::TrimHorizon)).collect();
    for initial in [InitialPosition::TrimHorizon, InitialPosition::Latest] {
        assert!(plan_new_leases(&stream.shards(), &existing, &initial, None).is_empty());
    }
}

#[test]
fn an_open_child_of_an_open_parent_waits_for_a_consistent_listing() {
    let shard = |n: u32, parents: &[u32], open: bool| Shard {
        shard_id: id(n),
        parent_shard_ids: parents.iter().map(|p| id(*p)).collect(),
        hash_key_range: HashKeyRange::FULL,
        sequence_number_range: SequenceNumberRange {
            start: SequenceNumber::from_u128(u128::from(n) * 10),
            end: (!open).then(|| SequenceNumber::from_u128(u128::from(n) * 10 + 5)),
        },
    };
    let shards = vec![shard(0, &[], true), shard(1, &[0], true)];
    let existing = vec![Lease::new_for_shard(id(0), Esn::Latest)];
    assert!(plan_new_leases(&shards, &existing, &InitialPosition::Latest, None).is_empty());
    // A parent that expired from the listing does not count.
    let shards = vec![shard(1, &[0], true)];
    let plan = plan_new_leases(&shards, &[Lease::new_for_shard(id(7), Esn::Latest)], &InitialPosition::Latest, None);
    assert_eq!(plan.len(), 1);
    assert_eq!((plan[0].checkpoint.clone(), plan[0].parent_shard_ids.clone()), (Esn::Latest, vec![id(0)]));
}

#[tokio::test]
async fn multi_stream_leases_use_stream_qualified_keys() {
    let stream = MemoryStream::new("multi", 2);
    let store = Arc::new(MemoryLeaseStore::new());
    let config = ShardSyncConfig {
        initial_position: InitialPosition::TrimHorizon,
        stream_identifier: Some("123456789012:multi:1700000000".into()),
        ..ShardSyncConfig::default()
    };
    // A lease of another stream with the same shard id must not count as this stream's.
    store.create_lease_if_not_exists(&Lease::new_for_shard(id(0), Esn::Latest)).await.unwrap();
    let syncer = ShardSyncer::new(Arc::new(stream.clone()), store.clone(), config);
    let report = syncer.sync().await.unwrap();
    assert_eq!(
        report.created,
        vec![format!("123456789012:multi:1700000000:{}", id(0)), format!("123456789012:multi:1700000000:{}", id(1))]
    );
    let lease = store.get_lease(&report.created[0]).await.unwrap().unwrap();
    assert_eq!(lease.shard_id, id(0));
    assert_eq!(lease.stream_identifier.as_deref(), Some("123456789012:multi:1700000000"));
}

#[tokio::test(start_paused = true)]
async fn child_leases_come_from_the_last_read_of_a_parent_without_listing() {
    let stream = MemoryStream::new("children", 2);
    stream.put("k", "v").unwrap();
    stream.merge(&id(0), &id(1)).unwrap(); // 2
    let counting = Arc::new(Counting::new(stream.clone()));
    let store = Arc::new(MemoryLeaseStore::new());
    let syncer = ShardSyncer::new(counting.clone(), store.clone(), ShardSyncConfig::default());
    let spec = ShardSpec::new(stream.name().clone(), id(0));
    let mut reader = stream.open(&spec, &Esn::TrimHorizon, &InitialPosition::Latest).await.unwrap();
    let (_, last) = read_to_end(reader.as_mut()).await;
    let created = syncer.create_child_leases(&last.child_shards.unwrap()).await.unwrap();
    assert_eq!(created, vec![id(2)]);
    let lease = store.get_lease(&id(2)).await.unwrap().unwrap();
    assert_eq!((lease.checkpoint, lease.parent_shard_ids), (Esn::TrimHorizon, vec![id(0), id(1)]));
    assert_eq!(lease.hash_key_range, Some(HashKeyRange::FULL));
    assert!(counting.filters().is_empty(), "no ListShards call");
}

#[tokio::test]
async fn only_the_owner_of_the_lowest_lease_key_syncs_periodically() {
    let mut leases: Vec<Lease> = (0..3).map(|n| Lease::new_for_shard(id(n), Esn::Latest)).collect();
    assert!(is_sync_leader("anyone", &leases), "with no owners, every worker may sync");
    leases[1].lease_owner = Some("b".into());
    leases[2].lease_owner = Some("a".into());
    assert!(is_sync_leader("b", &leases) && !is_sync_leader("a", &leases));
    leases[0].lease_owner = Some("a".into());
    assert!(is_sync_leader("a", &leases) && !is_sync_leader("b", &leases));

    let stream = MemoryStream::new("leader", 2);
    let counting = Arc::new(Counting::new(stream.clone()));
    let store = Arc::new(MemoryLeaseStore::new());
    let syncer = ShardSyncer::new(counting.clone(), store.clone(), ShardSyncConfig::default());
    assert!(syncer.sync_if_leader("w1").await.unwrap().is_some(), "bootstrap: no owners yet");
    let lease = store.get_lease(&id(0)).await.unwrap().unwrap();
    store.take_lease(&id(0), lease.lease_counter, "w1").await.unwrap();
    assert!(syncer.sync_if_leader("w2").await.unwrap().is_none());
    assert!(syncer.sync_if_leader("w1").await.unwrap().is_some());
    assert_eq!(counting.filters().len(), 2, "the follower made no ListShards call");

    for _ in 0..100 {
        let delay = syncer.next_sync_delay();
        assert!(delay >= Duration::from_secs(54) && delay <= Duration::from_secs(66), "{delay:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn finished_leases_are_deleted_after_the_grace_period_once_children_started() {
    let stream = MemoryStream::new("cleanup", 2);
    let store = Arc::new(MemoryLeaseStore::new());
    let syncer = syncer(&stream, &store, InitialPosition::TrimHorizon);
    syncer.sync().await.unwrap();
    stream.split(&id(0), 1 << 100).unwrap(); // 2, 3
    syncer.sync().await.unwrap();
    checkpoint(&store, &id(0), Esn::ShardEnd).await;
    let shards = stream.shards();
    let all = store.list_all_leases().await.unwrap();
    assert!(finished_leases(&all, &shards).is_empty(), "children have not started");

    checkpoint(&store, &id(2), Esn::sequence(SequenceNumber::from_u128(7))).await;
    let all = store.list_all_leases().await.unwrap();
    assert!(finished_leases(&all, &shards).is_empty(), "one child has not started");
    checkpoint(&store, &id(3), Esn::ShardEnd).await;
    let all = store.list_all_leases().await.unwrap();
    assert_eq!(finished_leases(&all, &shards), vec![id(0)]);
    assert!(finished_leases(&all, &[]).is_empty(), "without a listing or child ids on the lease, children are unknown");

    let mut cleaner = LeaseCleaner::new(store.clone(), None).with_grace(Duration::from_secs(60));
    assert!(cleaner.run(&shards).await.unwrap().is_empty(), "first seen finished now");
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(cleaner.run(&shards).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cleaner.run(&shards).await.unwrap(), vec![id(0)]);
    assert!(store.get_lease(&id(0)).await.unwrap().is_none());
    // The deleted parent is not created again, and its children keep their leases.
    assert!(syncer.sync().await.unwrap().created.is_empty());
    assert_eq!(leases(&store).await.len(), 3);
}

#[test]
fn a_finished_lease_with_unknown_children_is_kept() {
    let mut lease = Lease::new_for_shard(id(0), Esn::ShardEnd);
    assert!(finished_leases(std::slice::from_ref(&lease), &[]).is_empty());
    lease.child_shard_ids = vec![id(1)];
    let mut child = Lease::new_for_shard(id(1), Esn::sequence(SequenceNumber::from_u128(1)));
    child.parent_shard_ids = vec![id(0)];
    assert_eq!(finished_leases(&[lease, child], &[]), vec![id(0)], "children known from the lease itself");
}

/// A lister that records the filters it was asked for.
struct Counting {
    inner: MemoryStream,
    calls: std::sync::Mutex<Vec<ShardListFilter>>,
    count: AtomicUsize,
}

impl Counting {
    fn new(inner: MemoryStream) -> Self {
        Self { inner, calls: std::sync::Mutex::new(Vec::new()), count: AtomicUsize::new(0) }
    }

    fn filters(&self) -> Vec<ShardListFilter> {
        assert_eq!(self.calls.lock().unwrap().len(), self.count.load(Ordering::Relaxed));
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl ShardLister for Counting {
    async fn list_shards(&self, filter: ShardListFilter) -> Result<Vec<Shard>, KclError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.calls.lock().unwrap().push(filter);
        self.inner.list_shards(filter).await
    }
}
