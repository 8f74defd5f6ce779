//! Consumer-pipeline acceptance tests: fleets of `Worker`s on kinesis-mock with a DynamoDB Local lease table (and one
//! in-memory run with injected faults). Every delivery goes to a journal (worker, shard, sequence and sub-sequence
//! number, partition key, data, time order); the tests judge it against what `PutRecords` returned and against the
//! lease table.

#[path = "pipeline/fleet.rs"]
mod fleet;
#[path = "pipeline/journal.rs"]
mod journal;
#[path = "pipeline/streams.rs"]
mod streams;

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kcl_core::lease::{Lease, LeaseStore, MemoryLeaseStore};
use kcl_core::retrieve::memory_stream::{FaultConfig, MemoryStream};
use kcl_core::{Batch, ExtendedSequenceNumber};
use tokio::sync::watch;

use fleet::{CheckpointWatch, Env, Fleet, PATIENCE, Settings, eventually};
use journal::{Delivery, Failure, FailurePlan, Journal, Outcome, Plan, duplicates, first_deliveries, order_violations};
use streams::{Entry, Written, count, key_in, list_shards, merge, note, put, random_plain, split_in_half};

/// Checks that the delivered records are exactly the written ones (same shard, position, partition key and data).
fn assert_delivered_exactly(written: &Written, deliveries: &[Delivery]) {
    let mut delivered: BTreeMap<(String, ExtendedSequenceNumber), (String, Vec<u8>)> = BTreeMap::new();
    for d in deliveries {
        delivered.insert((d.shard.to_string(), d.position.clone()), (d.partition_key.to_string(), d.data.to_vec()));
    }
    let mut missing = Vec::new();
    for (shard, puts) in written {
        for p in puts {
            match delivered.remove(&(shard.clone(), p.position.clone())) {
                Some((key, data)) => {
                    assert_eq!(
                        (key.as_str(), data.as_slice()),
                        (p.partition_key.as_str(), p.data.as_ref()),
                        "{shard} {}",
                        p.position
                    );
                }
                None => missing.push(format!("{shard} {}", p.position)),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} records never processed, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        delivered.is_empty(),
        "records processed that were never put: {:?}",
        delivered.keys().take(5).collect::<Vec<_>>()
    );
}

/// `Ok` once every record of `written` was delivered; otherwise what is missing, per shard.
fn all_processed(journal: &Journal, written: &Written) -> Result<(), String> {
    let delivered: HashSet<(String, ExtendedSequenceNumber)> =
        journal.deliveries().into_iter().map(|d| (d.shard.to_string(), d.position)).collect();
    let mut missing = Vec::new();
    for (shard, puts) in written {
        let absent: Vec<&streams::Put> =
            puts.iter().filter(|p| !delivered.contains(&(shard.clone(), p.position.clone()))).collect();
        if let Some(first) = absent.first() {
            missing.push(format!("{shard}: {} of {} missing, from {}", absent.len(), puts.len(), first.position));
        }
    }
    if missing.is_empty() { Ok(()) } else { Err(missing.join("; ")) }
}

/// 2 workers, a 4-shard stream, 4,000 records with random partition keys: every record once, in shard order, and a
/// graceful shutdown leaves every checkpoint at its shard's last record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_every_record_once_in_order_and_checkpoints_at_the_end() {
    Env::new("steady", 4)
        .await
        .run(|env| async move {
            let journal = Journal::new();
            let plan = Plan::default();
            let ids = Fleet::ids("steady", 2);
            let fleet = Fleet::start(&env, &ids, &Settings::default(), |id| journal.factory(id, &plan)).await;

            // Both workers hold leases before the records arrive, so both have work.
            eventually("both workers to hold leases", PATIENCE, || async {
                let leases = env.leases().await;
                let owners: HashSet<String> = leases.iter().filter_map(|l| l.lease_owner.clone()).collect();
                if leases.len() == 4 && ids.iter().all(|id| owners.contains(id)) {
                    Ok(())
                } else {
                    Err(format!("{:?}", leases.iter().map(|l| (&l.lease_key, &l.lease_owner)).collect::<Vec<_>>()))
                }
            })
            .await;

            let mut written = Written::new();
            let entries: Vec<_> = (0..4000).map(|i| random_plain(format!("steady-{i}"))).collect();
            note(&mut written, put(&env.kinesis, &env.stream, &entries).await);
            assert_eq!(count(&written), 4000);
            assert_eq!(written.len(), 4, "4,000 random keys reach all four shards");

            eventually("every record to be processed", PATIENCE, || async { all_processed(&journal, &written) }).await;
            fleet.shutdown().await;

            let deliveries = journal.deliveries();
            assert_delivered_exactly(&written, &deliveries);
            assert_eq!(order_violations(&deliveries), Vec::<String>::new(), "per-shard order");
            let dups = duplicates(&deliveries);
            assert!(
                dups.is_empty(),
                "a failure-free run delivers nothing twice; {} records were ({} leases lost), e.g. {:?}",
                dups.len(),
                journal.leases_lost(),
                &dups[..dups.len().min(5)]
            );
            for id in &ids {
                assert!(deliveries.iter().any(|d| &*d.worker == id), "worker {id} processed nothing");
            }
            let leases = env.leases().await;
            assert_eq!(leases.len(), 4);
            for lease in &leases {
                let last = &written[&lease.shard_id].last().unwrap().position;
                assert_eq!(&lease.checkpoint, last, "{}: the checkpoint is the shard's last record", lease.lease_key);
            }
            assert_eq!(first_deliveries(&deliveries).len(), 4);
        })
        .await;
}

/// Split one shard and merge two adjacent ones while a producer keeps putting records: nothing is lost, each child is
/// processed only after the last record of each of its parents, parent leases end at `SHARD_END` with their
/// children recorded, and the running workers pick the children up.
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
                        .filter(|p| !attempts[since..].iter().any(|a| &*a.shard == p.as_str() && a.outcome == Outcome::Failed))
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
            eventually("every record to be processed", PATIENCE, || async { all_processed(&journal, &written) })
            .await;
            fleet.shutdown().await;

            let deliveries = journal.deliveries();
            assert_delivered_exactly(&written, &deliveries);
            assert_eq!(order_violations(&deliveries), Vec::<String>::new(), "per-shard order");

            let mut lineage: Vec<(String, Vec<String>)> =
                split_children.iter().map(|child| (child.clone(), vec![split.clone()])).collect();
            lineage.push((merged.clone(), vec![low.clone(), high.clone()]));
            for (child, parents) in &lineage {
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

            let leases: BTreeMap<String, Lease> = env.leases().await.into_iter().map(|l| (l.lease_key.clone(), l)).collect();
            let mut sorted_split_children = split_children.clone();
            sorted_split_children.sort();
            for (parent, children) in
                [(&split, sorted_split_children), (&low, vec![merged.clone()]), (&high, vec![merged.clone()])]
            {
                let lease = &leases[parent];
                assert_eq!(lease.checkpoint, ExtendedSequenceNumber::ShardEnd, "{parent} finished");
                assert_eq!(lease.child_shard_ids, children, "{parent} records its children");
            }
            for child in split_children.iter().chain([&merged]) {
                let lease = leases.get(child).unwrap_or_else(|| panic!("{child} has a lease"));
                let last = &written.get(child).and_then(|r| r.last()).expect("records in every child").position;
                assert_eq!(&lease.checkpoint, last, "{child}: checkpoint at its last record after a graceful shutdown");
            }
            let ended: HashSet<String> = journal.shards_ended().into_iter().collect();
            for parent in [&split, &low, &high] {
                assert!(ended.contains(parent), "shard_ended ran for {parent}");
            }
        })
        .await;
}

/// Workers stop gracefully once each shard's processor has checkpointed at a chosen record — a plain record, and the
/// first, a middle and the last user record of a KPL aggregate — and a new fleet resumes exactly after each
/// checkpoint, sub-sequence included, with nothing after it missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_exactly_after_the_checkpoint_even_inside_an_aggregate() {
    Env::new("restart", 4)
        .await
        .run(|env| async move {
            let mut shards = list_shards(&env.kinesis, &env.stream).await;
            shards.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
            assert_eq!(shards.len(), 4);
            // Per shard: 40 records alternating plain ones and aggregates of 5 user records, every key hashing into the
            // shard (the consumer drops an aggregate holding a user record of another shard, as Java KCL does).
            let mut entries = Vec::new();
            for (i, shard) in shards.iter().enumerate() {
                let range = &shard.hash_key_range;
                for j in 0..40 {
                    entries.push(if j % 2 == 0 {
                        let name = format!("s{i}-p{j}");
                        Entry::Plain { partition_key: key_in(range, &name), data: Bytes::from(name) }
                    } else {
                        Entry::Aggregate(
                            (0..5)
                                .map(|u| {
                                    let name = format!("s{i}-a{j}-u{u}");
                                    (key_in(range, &name), Bytes::from(name))
                                })
                                .collect(),
                        )
                    });
                }
            }
            let mut written = Written::new();
            note(&mut written, put(&env.kinesis, &env.stream, &entries).await);
            for shard in &shards {
                assert_eq!(written[&shard.shard_id].len(), 20 + 20 * 5, "{} got exactly its records", shard.shard_id);
            }

            // Where each shard stops: a plain record; user record 0, 2 and 4 (the last) of an aggregate.
            let mut targets: BTreeMap<String, usize> = BTreeMap::new();
            for (i, shard) in shards.iter().enumerate() {
                let records = &written[&shard.shard_id];
                let wanted = |p: &streams::Put| match i {
                    0 => !p.aggregated,
                    _ => p.aggregated && p.position.sub_sequence() == [0, 2, 4][i - 1],
                };
                let index = (records.len() * 2 / 5..records.len()).find(|&k| wanted(&records[k])).unwrap();
                targets.insert(shard.shard_id.clone(), index);
            }
            let plan = Plan {
                stop_at: targets.iter().map(|(s, &k)| (s.clone(), written[s][k].position.clone())).collect(),
                failures: None,
            };
            // Small reads: several batches (and checkpoints) before each target, and records after it in its batch.
            let settings = Settings::default().max_records(7);

            let journal = Journal::new();
            let fleet =
                Fleet::start(&env, &Fleet::ids("restart-a", 2), &settings, |id| journal.factory(id, &plan)).await;
            eventually("every shard to checkpoint at its target and stop", PATIENCE, || async {
                let stopped = journal.stopped_shards();
                if stopped.len() == 4 { Ok(()) } else { Err(format!("stopped: {stopped:?}")) }
            })
            .await;
            fleet.shutdown().await;

            for lease in env.leases().await {
                let target = &plan.stop_at[&lease.shard_id];
                assert_eq!(lease.checkpoint, *target, "{}: the lease holds the chosen checkpoint", lease.lease_key);
                assert_eq!(lease.checkpoint.sub_sequence(), target.sub_sequence());
            }
            let before: Written = written.iter().map(|(s, r)| (s.clone(), r[..=targets[s]].to_vec())).collect();
            assert_delivered_exactly(&before, &journal.deliveries());

            // More records arrive while no worker runs.
            let late: Vec<Entry> = shards
                .iter()
                .enumerate()
                .flat_map(|(i, shard)| {
                    (0..10).map(move |j| {
                        let name = format!("s{i}-late{j}");
                        Entry::Plain { partition_key: key_in(&shard.hash_key_range, &name), data: Bytes::from(name) }
                    })
                })
                .collect();
            note(&mut written, put(&env.kinesis, &env.stream, &late).await);

            let after: Written = written.iter().map(|(s, r)| (s.clone(), r[targets[s] + 1..].to_vec())).collect();
            let journal = Journal::new();
            let plan = Plan::default();
            // The leases are still owned by the stopped fleet's last worker: the new fleet steals or takes them
            // (a lease stolen from a stopped owner is taken by force once the handoff times out).
            let fleet =
                Fleet::start(&env, &Fleet::ids("restart-b", 2), &settings, |id| journal.factory(id, &plan)).await;
            eventually("every record after the checkpoints to be processed", PATIENCE, || async {
                all_processed(&journal, &after)
            })
            .await;
            fleet.shutdown().await;

            let deliveries = journal.deliveries();
            let firsts = first_deliveries(&deliveries);
            for (shard, records) in &after {
                let checkpoint = &before[shard].last().unwrap().position;
                assert_eq!(
                    firsts[shard][0].position, records[0].position,
                    "{shard}: the first record after the restart is the one right after the checkpoint {checkpoint}"
                );
            }
            assert_delivered_exactly(&after, &deliveries);
            assert_eq!(order_violations(&deliveries), Vec::<String>::new(), "per-shard order");
            for lease in env.leases().await {
                assert_eq!(
                    &lease.checkpoint,
                    &written[&lease.shard_id].last().unwrap().position,
                    "{}",
                    lease.lease_key
                );
            }
        })
        .await;
}

/// In memory, no emulator: 10 % of `GetRecords`/`GetShardIterator` calls throttled, failed with a 500 or (for
/// `GetRecords`) an expired iterator. Two workers still process every record, in per-shard order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_throttling_server_errors_and_expired_iterators_lose_nothing() {
    let stream = MemoryStream::new("faulty", 4);
    stream.set_faults(FaultConfig::uniform(20_261_122, 0.10));
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let journal = Journal::new();
    let plan = Plan::default();
    let fleet = Fleet::start_memory(&stream, &store, &Fleet::ids("memory", 2), &Settings::default(), |id| {
        journal.factory(id, &plan)
    });

    let mut written = Written::new();
    for round in 0..16 {
        let mut puts = Vec::new();
        for i in 0..500 {
            let key = format!("pk-{:016x}", rand::random::<u64>());
            let data = Bytes::from(format!("memory-{round}-{i}"));
            let placed = stream.put(key.as_str(), data.clone()).expect("put");
            puts.push(streams::Put {
                shard: placed.shard_id.to_string(),
                position: ExtendedSequenceNumber::sequence(placed.sequence_number),
                partition_key: key,
                data,
                aggregated: false,
            });
        }
        note(&mut written, puts);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("every record to be processed", PATIENCE, || async { all_processed(&journal, &written) }).await;
    fleet.shutdown().await;

    let faults = stream.fault_counts();
    assert!(
        faults.throttles > 0 && faults.internal_failures > 0 && faults.expired_iterators > 0,
        "every kind of fault was injected: {faults:?}"
    );
    let deliveries = journal.deliveries();
    assert_delivered_exactly(&written, &deliveries);
    assert_eq!(order_violations(&deliveries), Vec::<String>::new(), "per-shard order");
    let leases = store.list_all_leases().await.expect("leases");
    assert_eq!(leases.len(), 4);
    for lease in leases {
        assert_eq!(&lease.checkpoint, &written[&lease.shard_id].last().unwrap().position, "{}", lease.lease_key);
    }
}

/// Fails (`Err`) or panics on the first attempt at about two batches in three.
fn fail_first_attempts(_shard: &str, batch: &Batch, earlier: usize) -> Option<Failure> {
    if earlier > 0 {
        return None;
    }
    let mut hasher = DefaultHasher::new();
    batch.records.first()?.sequence_number.hash(&mut hasher);
    match hasher.finish() % 3 {
        1 => Some(Failure::Error),
        2 => Some(Failure::Panic),
        _ => None,
    }
}

/// A processor that fails or panics on its first attempt at many batches: each is retried from the same record,
/// nothing is skipped, and the lease table never shows a checkpoint past what was processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_panicking_batches_are_retried_and_never_skipped_or_checkpointed() {
    Env::new("failing", 2)
        .await
        .run(|env| async move {
            let journal = Journal::new();
            let plan = Plan { failures: Some(Arc::new(fail_first_attempts)), ..Plan::default() };
            let watch = CheckpointWatch::start(&env, &journal);
            let fleet = Fleet::start(&env, &Fleet::ids("failing", 2), &Settings::default().max_records(25), |id| {
                journal.factory(id, &plan)
            })
            .await;
            let mut written = Written::new();
            let entries: Vec<_> = (0..600).map(|i| random_plain(format!("failing-{i}"))).collect();
            note(&mut written, put(&env.kinesis, &env.stream, &entries).await);
            eventually("every record to be processed", PATIENCE, || async { all_processed(&journal, &written) }).await;
            fleet.shutdown().await;
            let (observed, violations) = watch.finish().await;

            assert!(observed > 0, "the watch saw record checkpoints");
            assert_eq!(violations, Vec::<String>::new(), "checkpoints past unprocessed records");
            let attempts = journal.attempts();
            let failed = attempts.iter().filter(|a| a.outcome == Outcome::Failed).count();
            let panicked = attempts.iter().filter(|a| a.outcome == Outcome::Panicked).count();
            assert!(failed > 0 && panicked > 0, "{failed} failed and {panicked} panicked attempts");
            for (i, attempt) in attempts.iter().enumerate() {
                if attempt.outcome == Outcome::Processed {
                    continue;
                }
                let next = attempts[i + 1..].iter().find(|a| a.shard == attempt.shard).unwrap_or_else(|| {
                    panic!("the failed batch at {} of {} was never retried", attempt.first, attempt.shard)
                });
                assert_eq!(
                    next.first, attempt.first,
                    "{}: the retry starts at the failed batch's first record",
                    attempt.shard
                );
                if next.worker == attempt.worker {
                    assert_eq!((&next.last, next.len), (&attempt.last, attempt.len), "the same batch is retried");
                }
            }
            let deliveries = journal.deliveries();
            assert_delivered_exactly(&written, &deliveries);
            assert_eq!(order_violations(&deliveries), Vec::<String>::new(), "per-shard order");
            for lease in env.leases().await {
                assert_eq!(
                    &lease.checkpoint,
                    &written[&lease.shard_id].last().unwrap().position,
                    "{}",
                    lease.lease_key
                );
            }
        })
        .await;
}

/// A batch that keeps failing (errors and panics in turn) when the worker is stopped: the processor's usual
/// "checkpoint what you have" on shutdown must not checkpoint the failed batch; after a restart it is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_still_failing_at_shutdown_is_not_checkpointed_and_is_delivered_after_restart() {
    Env::new("poison", 1)
        .await
        .run(|env| async move {
            let mut written = Written::new();
            let entries: Vec<_> = (0..200).map(|i| random_plain(format!("poison-{i}"))).collect();
            note(&mut written, put(&env.kinesis, &env.stream, &entries).await);
            let (shard, records) = written.iter().next().map(|(s, r)| (s.clone(), r.clone())).unwrap();
            let poison = records[100].position.clone();
            let failures: FailurePlan = {
                let poison = poison.clone();
                Arc::new(move |_shard: &str, batch: &Batch, earlier: usize| {
                    batch
                        .records
                        .iter()
                        .any(|r| r.extended_sequence_number() == poison)
                        .then_some(if earlier.is_multiple_of(2) { Failure::Error } else { Failure::Panic })
                })
            };
            let plan = Plan { failures: Some(failures), ..Plan::default() };
            let settings = Settings::default().max_records(20);
            let journal = Journal::new();
            let watch = CheckpointWatch::start(&env, &journal);
            let fleet =
                Fleet::start(&env, &Fleet::ids("poison-a", 1), &settings, |id| journal.factory(id, &plan)).await;
            eventually("the poisoned batch to fail three times", PATIENCE, || async {
                let failed = journal.attempts().iter().filter(|a| a.outcome != Outcome::Processed).count();
                if failed >= 3 { Ok(()) } else { Err(format!("{failed} failed attempts")) }
            })
            .await;
            fleet.shutdown().await;
            let (observed, violations) = watch.finish().await;

            let processed = journal.processed(&shard).expect("records before the poisoned batch were processed");
            assert!(processed < poison);
            let lease = env.store.get_lease(&shard).await.expect("get lease").expect("lease");
            assert_eq!(
                lease.checkpoint, processed,
                "the checkpoint is the last processed record, not the end of the batch that failed"
            );
            assert!(observed > 0, "the watch saw record checkpoints");
            assert_eq!(violations, Vec::<String>::new(), "checkpoints past unprocessed records");

            let after: Written =
                [(shard.clone(), records.iter().filter(|p| p.position > processed).cloned().collect())].into();
            let journal = Journal::new();
            let plan = Plan::default();
            let fleet =
                Fleet::start(&env, &Fleet::ids("poison-b", 1), &settings, |id| journal.factory(id, &plan)).await;
            eventually("the rest of the shard to be processed", PATIENCE, || async { all_processed(&journal, &after) })
                .await;
            fleet.shutdown().await;
            let deliveries = journal.deliveries();
            assert_eq!(deliveries[0].position, after[&shard][0].position, "resumes right after the checkpoint");
            assert_delivered_exactly(&after, &deliveries);
        })
        .await;
}
