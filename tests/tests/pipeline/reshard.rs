//! Resharding while records flow: on kinesis-mock (polling only, see the test's comment) and on the in-memory stream
//! (polling and fan-out), judged by the same lineage check.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kcl_core::lease::{Lease, LeaseStore, MemoryLeaseStore};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Batch, ExtendedSequenceNumber};
use tokio::sync::watch;

use super::fleet::{Env, Fleet, PATIENCE, RetrievalKind, Settings, eventually};
use super::journal::{Delivery, Failure, Journal, Outcome, Plan, order_violations};
use super::streams::{self, Written, list_shards, merge, note, put, random_plain, split_in_half};
use super::{all_processed, assert_delivered_exactly};

/// Split one shard and merge two adjacent ones while a producer keeps putting records: nothing is lost, each child is
/// processed only after the last record of each of its parents, parent leases end at `SHARD_END` with their
/// children recorded, and the running workers pick the children up.
///
/// Polling only. Fan-out cannot run this on kinesis-mock 0.6.2: its `SubscribeToShard` stream on a closed shard
/// never sends the final event (every event carries a `ContinuationSequenceNumber`, none carries `ChildShards`;
/// `GetRecords` does report them), so a fan-out reader never reaches the parent's end, the parent lease never
/// reaches `SHARD_END`, and the children wait for it forever. The fan-out path — final event without continuation →
/// `shard_end` with `child_shards` → child leases, `SHARD_END`, children after parents — runs in
/// `fanout::in_memory_resharding_follows_child_shards_and_children_wait_for_their_parents` below, and the reader's
/// part in kcl-core (`retrieve::fanout::reader` tests, `memory_stream` fan-out test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_while_records_flow_loses_nothing_and_children_wait_for_their_parents() {
    Env::new("reshard", 3)
        .await
        .run(|env| async move {
            // Parents of a reshard are held back (their processor fails) until the children are owned by a worker and
            // other shards have moved on, so children that did not wait for their parents would overtake them.
            let held: Arc<Mutex<HashSet<String>>> = Arc::default();
            let plan = Plan {
                failures: Some(Arc::new({
                    let held = held.clone();
                    move |shard: &str, _: &Batch, _| held.lock().unwrap().contains(shard).then_some(Failure::Error)
                })),
                ..Plan::default()
            };
            let journal = Journal::new();
            let fleet =
                Fleet::start(&env, &Fleet::ids("reshard", 2), &Settings::default(), |id| journal.factory(id, &plan))
                    .await;

            // The producer: 20 records with random keys every 100 ms until told to stop.
            let (stop, mut stopped) = watch::channel(false);
            let producer = tokio::spawn({
                let (kinesis, stream) = (env.kinesis.clone(), env.stream.clone());
                async move {
                    let mut written = Written::new();
                    let mut n = 0;
                    while !*stopped.borrow() {
                        let entries: Vec<_> = (n..n + 20).map(|i| random_plain(format!("reshard-{i}"))).collect();
                        n += 20;
                        note(&mut written, put(&kinesis, &stream, &entries).await);
                        tokio::select! {
                            _ = stopped.changed() => {}
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                    written
                }
            });
            let processed_from = |shards: &[&String]| {
                let deliveries = journal.deliveries();
                let idle: Vec<&&String> =
                    shards.iter().filter(|s| !deliveries.iter().any(|d| &*d.shard == s.as_str())).collect();
                if idle.is_empty() { Ok(()) } else { Err(format!("nothing processed yet from {idle:?}")) }
            };
            let hold = async |parents: &[&String]| {
                let since = journal.attempts().len();
                held.lock().unwrap().extend(parents.iter().map(|p| p.to_string()));
                eventually("the held parents to have records waiting", PATIENCE, || async {
                    let attempts = journal.attempts();
                    let waiting: Vec<&&String> = parents
                        .iter()
                        .filter(|p| {
                            !attempts[since..].iter().any(|a| &*a.shard == p.as_str() && a.outcome == Outcome::Failed)
                        })
                        .collect();
                    if waiting.is_empty() { Ok(()) } else { Err(format!("no held batch yet in {waiting:?}")) }
                })
                .await;
            };
            let children_owned_then_release = async |children: &[&String], parents: &[&String]| {
                eventually("the children's leases to be owned by a worker", PATIENCE, || async {
                    let leases = env.leases().await;
                    let unowned: Vec<&&String> = children
                        .iter()
                        .filter(|c| !leases.iter().any(|l| &l.lease_key == **c && l.lease_owner.is_some()))
                        .collect();
                    if unowned.is_empty() { Ok(()) } else { Err(format!("not owned yet: {unowned:?}")) }
                })
                .await;
                let progress = journal.deliveries().len() + 100;
                eventually("other shards to move on while the parents are held", PATIENCE, || async {
                    let n = journal.deliveries().len();
                    if n >= progress { Ok(()) } else { Err(format!("{n} of {progress} deliveries")) }
                })
                .await;
                let mut held = held.lock().unwrap();
                for parent in parents {
                    held.remove(parent.as_str());
                }
            };

            let mut shards = list_shards(&env.kinesis, &env.stream).await;
            shards.sort_by_key(|s| s.hash_key_range.start);
            let [split, low, high] = [0, 1, 2].map(|i| shards[i].shard_id.clone());
            eventually("records of every original shard to be processed", PATIENCE, || async {
                processed_from(&[&split, &low, &high])
            })
            .await;

            hold(&[&split]).await;
            let split_children = split_in_half(&env.kinesis, &env.stream, &split).await;
            assert_eq!(split_children.len(), 2);
            children_owned_then_release(&split_children.iter().collect::<Vec<_>>(), &[&split]).await;
            eventually("the running fleet to process both children of the split", PATIENCE, || async {
                processed_from(&split_children.iter().collect::<Vec<_>>())
            })
            .await;

            hold(&[&low, &high]).await;
            let merged = merge(&env.kinesis, &env.stream, &low, &high).await;
            children_owned_then_release(&[&merged], &[&low, &high]).await;
            eventually("the running fleet to process the child of the merge", PATIENCE, || async {
                processed_from(&[&merged])
            })
            .await;

            stop.send_replace(true);
            let written = producer.await.expect("producer");
            eventually("every record to be processed", PATIENCE, || async { all_processed(&journal, &written) }).await;
            fleet.shutdown().await;

            let deliveries = journal.deliveries();
            assert_delivered_exactly(&written, &deliveries);
            assert_eq!(order_violations(&deliveries), Vec::<String>::new(), "per-shard order");

            let mut lineage: Vec<(String, Vec<String>)> =
                split_children.iter().map(|child| (child.clone(), vec![split.clone()])).collect();
            lineage.push((merged.clone(), vec![low.clone(), high.clone()]));
            assert_lineage(&lineage, &written, &deliveries, &env.leases().await, &journal.shards_ended());
        })
        .await;
}

/// In memory: split one shard and merge two adjacent ones while a producer keeps putting records, with polling and
/// with fan-out. With fan-out this is where a closed shard's final event (no continuation, `ChildShards`) drives the
/// pipeline — child leases, the parent's `SHARD_END`, children processed after their parents — which kinesis-mock
/// cannot show (see the emulator test above).
pub async fn in_memory_resharding_follows_child_shards_and_children_wait_for_their_parents(kind: RetrievalKind) {
    let stream = MemoryStream::new("reshard-memory", 3);
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let journal = Journal::new();
    let plan = Plan::default();
    let fleet = Fleet::start_memory(&stream, &store, &Fleet::ids("memory-reshard", 2), &Settings::with(kind), |id| {
        journal.factory(id, &plan)
    });

    // The producer: 20 records with random keys every 20 ms until told to stop.
    let (stop, mut stopped) = watch::channel(false);
    let producer = tokio::spawn({
        let stream = stream.clone();
        async move {
            let mut written = Written::new();
            let mut n = 0;
            while !*stopped.borrow() {
                let puts: Vec<streams::Put> = (n..n + 20)
                    .map(|i| {
                        let key = format!("pk-{:016x}", rand::random::<u64>());
                        let data = Bytes::from(format!("memory-reshard-{i}"));
                        let placed = stream.put(key.as_str(), data.clone()).expect("put");
                        streams::Put {
                            shard: placed.shard_id.to_string(),
                            position: ExtendedSequenceNumber::sequence(placed.sequence_number),
                            partition_key: key,
                            data,
                            aggregated: false,
                        }
                    })
                    .collect();
                n += 20;
                note(&mut written, puts);
                tokio::select! {
                    _ = stopped.changed() => {}
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
            written
        }
    });
    let processed_from = |shards: &[&String]| {
        let deliveries = journal.deliveries();
        let idle: Vec<&&String> =
            shards.iter().filter(|s| !deliveries.iter().any(|d| &*d.shard == s.as_str())).collect();
        if idle.is_empty() { Ok(()) } else { Err(format!("nothing processed yet from {idle:?}")) }
    };

    let mut shards = stream.shards();
    shards.sort_by_key(|s| s.hash_key_range.start);
    let [split, low, high] = [0, 1, 2].map(|i| shards[i].shard_id.clone());
    eventually("records of every original shard to be processed", PATIENCE, || async {
        processed_from(&[&split, &low, &high])
    })
    .await;
    let range = shards[0].hash_key_range;
    let split_children = stream.split(&split, range.start + (range.end - range.start) / 2).expect("split");
    eventually("the running fleet to process both children of the split", PATIENCE, || async {
        processed_from(&split_children.iter().collect::<Vec<_>>())
    })
    .await;
    let merged = stream.merge(&low, &high).expect("merge");
    eventually("the running fleet to process the child of the merge", PATIENCE, || async {
        processed_from(&[&merged])
    })
    .await;

    stop.send_replace(true);
    let written = producer.await.expect("producer");
    eventually("every record to be processed", PATIENCE, || async { all_processed(&journal, &written) }).await;
    fleet.shutdown().await;

    let deliveries = journal.deliveries();
    assert_delivered_exactly(&written, &deliveries);
    assert_eq!(order_violations(&deliveries), Vec::<String>::new(), "per-shard order");
    let mut lineage: Vec<(String, Vec<String>)> =
        split_children.iter().map(|child| (child.clone(), vec![split.clone()])).collect();
    lineage.push((merged.clone(), vec![low.clone(), high.clone()]));
    let leases = store.list_all_leases().await.expect("leases");
    assert_lineage(&lineage, &written, &deliveries, &leases, &journal.shards_ended());
}

/// Judges a run with resharding, given each child's parents: a child's first delivery comes after the last record of
/// each of its parents, and no parent record is processed after it; a parent's lease ends at `SHARD_END` naming its
/// children; a child's lease holds its last record (after a graceful shutdown); `shard_ended` ran for every parent.
fn assert_lineage(
    lineage: &[(String, Vec<String>)],
    written: &Written,
    deliveries: &[Delivery],
    leases: &[Lease],
    shards_ended: &[String],
) {
    for (child, parents) in lineage {
        let child_first =
            deliveries.iter().filter(|d| &*d.shard == child).map(|d| d.order).min().expect("child processed");
        for parent in parents {
            let last = &written.get(parent).and_then(|r| r.last()).expect("records in every parent").position;
            let parent_last = deliveries
                .iter()
                .filter(|d| &*d.shard == parent && &d.position == last)
                .map(|d| d.order)
                .min()
                .expect("the parent's last record was processed");
            assert!(
                parent_last < child_first,
                "{child} started (delivery #{child_first}) before {parent}'s last record {last} (#{parent_last})"
            );
            let late: Vec<&Delivery> =
                deliveries.iter().filter(|d| &*d.shard == parent && d.order > child_first).collect();
            assert!(late.is_empty(), "{parent} records processed after its child {child} started: {late:?}");
        }
    }

    let leases: BTreeMap<&str, &Lease> = leases.iter().map(|l| (l.lease_key.as_str(), l)).collect();
    let mut children_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (child, parents) in lineage {
        for parent in parents {
            children_of.entry(parent.as_str()).or_default().push(child.clone());
        }
    }
    let ended: HashSet<&str> = shards_ended.iter().map(String::as_str).collect();
    for (parent, mut children) in children_of {
        children.sort();
        let lease = leases.get(parent).unwrap_or_else(|| panic!("{parent} has a lease"));
        assert_eq!(lease.checkpoint, ExtendedSequenceNumber::ShardEnd, "{parent} finished");
        assert_eq!(lease.child_shard_ids, children, "{parent} records its children");
        assert!(ended.contains(parent), "shard_ended ran for {parent}");
    }
    for (child, _) in lineage {
        let lease = leases.get(child.as_str()).unwrap_or_else(|| panic!("{child} has a lease"));
        let last = &written.get(child).and_then(|r| r.last()).expect("records in every child").position;
        assert_eq!(&lease.checkpoint, last, "{child}: checkpoint at its last record after a graceful shutdown");
    }
}
