//! Consumer-pipeline acceptance tests: fleets of `Worker`s on kinesis-mock with a DynamoDB Local lease table (and
//! in-memory runs: injected faults, resharding). Every delivery goes to a journal (worker, shard, sequence and
//! sub-sequence number, partition key, data, time order); the tests judge it against what `PutRecords` returned and
//! against the lease table.
//!
//! Each scenario runs twice, with polling (`polling::<scenario>`) and with enhanced fan-out (`fanout::<scenario>`),
//! the processor code unchanged (see [`both_retrievals!`]). One scenario runs with polling only, on the emulator:
//! resharding on kinesis-mock (`reshard::resharding_while_records_flow_…`), because kinesis-mock 0.6.2 never ends a
//! closed shard's fan-out subscription — its events always carry a `ContinuationSequenceNumber` and never
//! `ChildShards` — so a fan-out reader never reaches the parent's end and the children are never started. The
//! fan-out side of resharding runs on the in-memory stream instead (`fanout::in_memory_resharding_…`), whose
//! subscriptions end a closed shard with `ChildShards` as Kinesis does, and in kcl-core's reader tests.

#[path = "pipeline/failures.rs"]
mod failures;
#[path = "pipeline/fleet.rs"]
mod fleet;
#[path = "pipeline/journal.rs"]
mod journal;
#[path = "pipeline/reshard.rs"]
mod reshard;
#[path = "pipeline/streams.rs"]
mod streams;

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use kcl_core::ExtendedSequenceNumber;

use failures::{
    a_batch_still_failing_at_shutdown_is_not_checkpointed_and_is_delivered_after_restart,
    failed_and_panicking_batches_are_retried_and_never_skipped_or_checkpointed,
    in_memory_throttling_server_errors_and_expired_iterators_lose_nothing,
};
use fleet::{Env, Fleet, PATIENCE, RetrievalKind, Settings, eventually};
use journal::{Delivery, Journal, Plan, duplicates, first_deliveries, order_violations};
use reshard::in_memory_resharding_follows_child_shards_and_children_wait_for_their_parents;
use streams::{Entry, Written, count, key_in, list_shards, note, put, random_plain};

/// Generates, for each scenario `name(kind: RetrievalKind)`, the tests `polling::name` and `fanout::name`.
macro_rules! both_retrievals {
    ($($name:ident),* $(,)?) => {
        /// The scenarios with `GetRecords` polling.
        mod polling {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::RetrievalKind::Polling).await;
                }
            )*
        }
        /// The same scenarios with enhanced fan-out (`SubscribeToShard`).
        mod fanout {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::RetrievalKind::FanOut).await;
                }
            )*
        }
    };
}

both_retrievals!(
    steady_state_every_record_once_in_order_and_checkpoints_at_the_end,
    restart_resumes_exactly_after_the_checkpoint_even_inside_an_aggregate,
    failed_and_panicking_batches_are_retried_and_never_skipped_or_checkpointed,
    a_batch_still_failing_at_shutdown_is_not_checkpointed_and_is_delivered_after_restart,
    in_memory_throttling_server_errors_and_expired_iterators_lose_nothing,
    in_memory_resharding_follows_child_shards_and_children_wait_for_their_parents,
);

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
pub async fn steady_state_every_record_once_in_order_and_checkpoints_at_the_end(kind: RetrievalKind) {
    Env::new("steady", 4)
        .await
        .run(|env| async move {
            let journal = Journal::new();
            let plan = Plan::default();
            let ids = Fleet::ids("steady", 2);
            let fleet = Fleet::start(&env, &ids, &Settings::with(kind), |id| journal.factory(id, &plan)).await;

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

/// Workers stop gracefully once each shard's processor has checkpointed at a chosen record — a plain record, and the
/// first, a middle and the last user record of a KPL aggregate — and a new fleet resumes exactly after each
/// checkpoint, sub-sequence included, with nothing after it missing.
pub async fn restart_resumes_exactly_after_the_checkpoint_even_inside_an_aggregate(kind: RetrievalKind) {
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
            // Small reads: with polling, several batches (and checkpoints) before each target, and records after it in its
            // batch; with fan-out, a batch is an event (kinesis-mock: everything new, once a second), so usually one.
            let settings = Settings::with(kind).max_records(7);

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
