//! Failure scenarios: injected Kinesis faults on the in-memory stream, and processors that fail or panic, once or
//! until the worker stops. Run with both retrievals from `pipeline.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::retrieve::memory_stream::{FaultConfig, MemoryStream};
use kcl_core::{Batch, ExtendedSequenceNumber};

use super::fleet::{CheckpointWatch, Env, Fleet, PATIENCE, RetrievalKind, Settings, eventually};
use super::journal::{Failure, FailurePlan, Journal, Outcome, Plan, order_violations};
use super::streams::{self, Written, note, put, random_plain};
use super::{all_processed, assert_delivered_exactly};

/// In memory, no emulator: 10 % of `GetRecords`/`GetShardIterator` calls throttled, failed with a 500 or (for
/// `GetRecords`) an expired iterator. Two workers still process every record, in per-shard order. With fan-out the
/// same faults hit the in-memory subscriptions (a `GetShardIterator` fault fails the subscribe call, a `GetRecords`
/// fault breaks the event stream), so every resubscribe path runs.
pub async fn in_memory_throttling_server_errors_and_expired_iterators_lose_nothing(kind: RetrievalKind) {
    let stream = MemoryStream::new("faulty", 4);
    stream.set_faults(FaultConfig::uniform(20_261_122, 0.10));
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let journal = Journal::new();
    let plan = Plan::default();
    let fleet = Fleet::start_memory(&stream, &store, &Fleet::ids("memory", 2), &Settings::with(kind), |id| {
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

/// Fails (`Err`) the first attempt at the 1st, 4th, 7th… batch the fleet sees and panics on the first attempt at
/// the 2nd, 5th, 8th…: two batches in three, and both kinds as soon as there are two batches, however the retrieval
/// cuts the records into batches. A retry (a batch starting at the same record) succeeds.
fn fail_first_attempts() -> FailurePlan {
    let batches = AtomicUsize::new(0);
    Arc::new(move |_shard: &str, _batch: &Batch, earlier: usize| {
        if earlier > 0 {
            return None;
        }
        match batches.fetch_add(1, Ordering::SeqCst) % 3 {
            0 => Some(Failure::Error),
            1 => Some(Failure::Panic),
            _ => None,
        }
    })
}

/// A processor that fails or panics on its first attempt at many batches: each is retried from the same record,
/// nothing is skipped, and the lease table never shows a checkpoint past what was processed.
pub async fn failed_and_panicking_batches_are_retried_and_never_skipped_or_checkpointed(kind: RetrievalKind) {
    Env::new("failing", 2)
        .await
        .run(|env| async move {
            let journal = Journal::new();
            let plan = Plan { failures: Some(fail_first_attempts()), ..Plan::default() };
            let watch = CheckpointWatch::start(&env, &journal);
            let fleet = Fleet::start(&env, &Fleet::ids("failing", 2), &Settings::with(kind).max_records(25), |id| {
                journal.factory(id, &plan)
            })
            .await;
            // Rounds, each processed before the next is put: every round makes new batches on both shards, also with
            // fan-out, whose batches are the service's events (kinesis-mock: everything new, once a second).
            let mut written = Written::new();
            for round in 0..4 {
                let entries: Vec<_> = (0..150).map(|i| random_plain(format!("failing-{round}-{i}"))).collect();
                note(&mut written, put(&env.kinesis, &env.stream, &entries).await);
                eventually("every record to be processed", PATIENCE, || async { all_processed(&journal, &written) })
                    .await;
            }
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
pub async fn a_batch_still_failing_at_shutdown_is_not_checkpointed_and_is_delivered_after_restart(kind: RetrievalKind) {
    Env::new("poison", 1)
        .await
        .run(|env| async move {
            // The poisoned record is the first of a second put, made once the first 100 records were processed, so
            // records before it are processed however the retrieval cuts batches (with fan-out a batch is an event:
            // on kinesis-mock, everything new once a second). It is known by its data: the plan exists before the
            // put returns its sequence number.
            let failures: FailurePlan = Arc::new(move |_shard: &str, batch: &Batch, earlier: usize| {
                batch.records.iter().any(|r| r.data.as_ref() == b"poison-100").then_some(if earlier.is_multiple_of(2) {
                    Failure::Error
                } else {
                    Failure::Panic
                })
            });
            let plan = Plan { failures: Some(failures), ..Plan::default() };
            let settings = Settings::with(kind).max_records(20);
            let journal = Journal::new();
            let watch = CheckpointWatch::start(&env, &journal);
            let fleet =
                Fleet::start(&env, &Fleet::ids("poison-a", 1), &settings, |id| journal.factory(id, &plan)).await;
            let mut written = Written::new();
            let entries: Vec<_> = (0..100).map(|i| random_plain(format!("poison-{i}"))).collect();
            note(&mut written, put(&env.kinesis, &env.stream, &entries).await);
            eventually("the first 100 records to be processed", PATIENCE, || async {
                all_processed(&journal, &written)
            })
            .await;
            let entries: Vec<_> = (100..200).map(|i| random_plain(format!("poison-{i}"))).collect();
            note(&mut written, put(&env.kinesis, &env.stream, &entries).await);
            let (shard, records) = written.iter().next().map(|(s, r)| (s.clone(), r.clone())).unwrap();
            assert_eq!(records[100].data.as_ref(), b"poison-100");
            let poison = records[100].position.clone();
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
