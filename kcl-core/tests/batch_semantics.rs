//! Property test of the batch semantics on the in-memory stream: random processors fail random records
//! (partially, whole batches, panics), with random parallelism 1–10, batch sizes, bisection, retry scopes, a
//! failure destination that refuses some calls, and a filter; the worker is shut down midway and a second one
//! resumes from the checkpoints. The framework checkpoints after every batch or at a random interval (every N
//! records and/or T ms). Invariants:
//! - every record ends processed, filtered or in the failure destination;
//! - no checkpoint write ever passes a record that had not finished (checked at the moment of the write);
//! - per partition key, records are first delivered in put order, every delivery holds a key's records in order,
//!   and the last successful processing of each record follows put order (among records never given up on);
//! - the final checkpoints sit at or after each shard's last unfiltered record.

mod batch_semantics {
    pub mod audit;
    pub mod model;
}

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use batch_semantics::audit::{AuditStore, History};
use batch_semantics::model::{Behaviour, Model, RecordingDestination, Style};
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::process::{
    CheckpointInterval, Checkpointing, OnExhausted, PartialRetry, ProcessingConfig, RecordFilter, RetryPolicy,
};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{ExtendedSequenceNumber, InitialPosition, Record, Worker};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Case {
    behaviour: Behaviour,
    shards: usize,
    records: usize,
    keys: usize,
    parallelism: usize,
    max_records: usize,
    window_ms: u64,
    bisect: bool,
    failed_only: bool,
    max_attempts: Option<u32>,
    filter: bool,
    refuse_share: f64,
    /// The framework's checkpoint interval (ignored with manual checkpointing): every N records and/or T ms.
    checkpoint_every: (Option<u64>, Option<u64>),
}

fn case() -> impl Strategy<Value = Case> {
    let style = prop_oneof![Just(Style::Partial), Just(Style::Whole), Just(Style::Mixed)];
    (
        (any::<u64>(), 0.0..0.4f64, 1u32..4, style, any::<bool>()),
        (1usize..=3, 40usize..=240, 1usize..=20, 1usize..=10, 1usize..=50),
        (prop_oneof![Just(0u64), Just(5u64)], any::<bool>(), any::<bool>(), prop::option::of(1u32..=4)),
        (any::<bool>(), 0.0..0.5f64, 0.0..0.05f64, prop::option::of(1u64..=60), prop::option::of(1u64..=50)),
    )
        .prop_map(|(b, s, p, f)| {
            let (seed, fail_share, max_transient, style, manual) = b;
            let (shards, records, keys, parallelism, max_records) = s;
            let (window_ms, bisect, failed_only, max_attempts) = p;
            let (filter, refuse_share, poison, every_records, every_ms) = f;
            Case {
                behaviour: Behaviour {
                    seed,
                    fail_share,
                    max_transient,
                    // Records that never succeed need an end to their retries.
                    poison_share: if max_attempts.is_some() { poison } else { 0.0 },
                    style,
                    manual_checkpoint: manual && parallelism == 1,
                },
                shards,
                records,
                keys,
                parallelism,
                max_records,
                window_ms,
                bisect,
                failed_only,
                max_attempts,
                filter,
                refuse_share,
                checkpoint_every: (every_records, every_ms),
            }
        })
}

fn build_worker(
    case: &Case,
    stream: &MemoryStream,
    store: Arc<dyn LeaseStore>,
    history: &Arc<Mutex<History>>,
    worker_id: &str,
) -> Worker<impl kcl_core::ProcessorFactory> {
    let attempts = Arc::new(Mutex::new(HashMap::new()));
    let behaviour = case.behaviour.clone();
    let factory_history = history.clone();
    let mut policy = RetryPolicy::default()
        .backoff(Duration::from_millis(1), Duration::from_millis(8))
        .bisect_on_error(case.bisect)
        .partial_retry(if case.failed_only { PartialRetry::FailedOnly } else { PartialRetry::FromLowestFailure })
        .max_attempts(case.max_attempts);
    if case.max_attempts.is_some() {
        policy = policy.on_exhausted(OnExhausted::SendToDestination);
    }
    let processing = ProcessingConfig::default()
        .parallelism(case.parallelism)
        .max_records(Some(case.max_records))
        .batching_window(Duration::from_millis(case.window_ms))
        .checkpointing(if case.behaviour.manual_checkpoint {
            Checkpointing::Manual
        } else {
            Checkpointing::AfterEachBatch
        });
    let mut interval = CheckpointInterval::every_batch();
    if let Some(records) = case.checkpoint_every.0 {
        interval = interval.records(records);
    }
    if let Some(ms) = case.checkpoint_every.1 {
        interval = interval.period(Duration::from_millis(ms));
    }
    let processing =
        if case.behaviour.manual_checkpoint { processing } else { processing.checkpoint_interval(interval) };
    let mut builder = Worker::builder(stream.name().clone(), "app")
        .worker_id(worker_id)
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(store)
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build().unwrap())
        .parent_poll_interval(Duration::from_millis(20))
        .retry_policy(policy)
        .processing(processing)
        .failure_destination(Arc::new(RecordingDestination {
            history: history.clone(),
            seed: case.behaviour.seed,
            refuse_share: case.refuse_share,
            calls: Mutex::new(0),
        }))
        .processor_factory(move |_: &str| Model {
            behaviour: behaviour.clone(),
            history: factory_history.clone(),
            attempts: attempts.clone(),
            calls: 0,
        });
    if case.filter {
        builder = builder.filter(RecordFilter::new(|r: &Record| !r.data.ends_with(b"#skip")));
    }
    builder.build().unwrap()
}

async fn run_until(
    case: &Case,
    stream: &MemoryStream,
    store: Arc<dyn LeaseStore>,
    history: &Arc<Mutex<History>>,
    worker_id: &str,
    done: impl Fn(&History) -> bool,
) {
    let worker = build_worker(case, stream, store, history, worker_id);
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done(&history.lock().unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {} finished of {}",
            history.lock().unwrap().finished_count(),
            case.records
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
}

async fn check(case: Case) {
    let stream = MemoryStream::new("batch-semantics", case.shards);
    let history = Arc::new(Mutex::new(History::default()));
    for i in 0..case.records {
        let skip = case.filter && i % 10 == 3;
        let data = if skip { format!("r{i}#skip") } else { format!("r{i}") };
        stream.put(format!("key-{}", i % case.keys), data).unwrap();
    }
    {
        let mut h = history.lock().unwrap();
        for shard in stream.open_shard_ids() {
            let records: Vec<(ExtendedSequenceNumber, String)> = stream
                .records(&shard)
                .into_iter()
                .map(|r| {
                    let position = ExtendedSequenceNumber::sequence(r.sequence_number.clone());
                    if r.data.ends_with(b"#skip") {
                        h.filtered.insert((shard.clone(), position.clone()));
                    }
                    (position, r.partition_key.to_string())
                })
                .collect();
            h.put.insert(shard, records);
        }
    }
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let audited: Arc<dyn LeaseStore> = Arc::new(AuditStore { inner: store.clone(), history: history.clone() });
    let half = case.records / 2;
    run_until(&case, &stream, audited.clone(), &history, "worker-1", |h| h.finished_count() >= half).await;
    // The second worker must redo everything after the first one's checkpoints (and nothing may be missing).
    let mut checkpoints = HashMap::new();
    let shards: Vec<String> = history.lock().unwrap().put.keys().cloned().collect();
    for shard in &shards {
        if let Some(lease) = store.get_lease(shard).await.unwrap() {
            checkpoints.insert(shard.clone(), lease.checkpoint);
        }
    }
    history.lock().unwrap().current.clear();
    run_until(&case, &stream, audited, &history, "worker-2", |h| h.finished_after(&checkpoints)).await;
    assert!(history.lock().unwrap().all_finished());

    let h = history.lock().unwrap();
    assert!(h.violations.is_empty(), "checkpoints passed unfinished records: {:?}", h.violations);
    // Per key: each delivery in order; first deliveries in put order; last successes in put order.
    let mut first_seen: HashMap<(String, String), Vec<ExtendedSequenceNumber>> = HashMap::new();
    let mut delivered: HashSet<(String, ExtendedSequenceNumber)> = HashSet::new();
    for (shard, records) in &h.deliveries {
        let mut last_in_call: HashMap<&str, &ExtendedSequenceNumber> = HashMap::new();
        for (position, key) in records {
            if let Some(previous) = last_in_call.insert(key, position) {
                assert!(previous < position, "a delivery holds key {key}'s records out of order");
            }
            if delivered.insert((shard.clone(), position.clone())) {
                first_seen.entry((shard.clone(), key.clone())).or_default().push(position.clone());
            }
        }
    }
    for ((shard, key), firsts) in &first_seen {
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "first deliveries of {shard}/{key} out of put order");
    }
    let mut last_success: BTreeMap<(String, ExtendedSequenceNumber), (usize, String)> = BTreeMap::new();
    for (i, (shard, position, key)) in h.successes.iter().enumerate() {
        // A record given up on (even after an earlier success) may legitimately end after later records of its key:
        // the processor processed those in the call that reported it failed.
        if h.dead_lettered.contains(&(shard.clone(), position.clone())) {
            continue;
        }
        last_success.insert((shard.clone(), position.clone()), (i, key.clone()));
    }
    let mut per_key: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for ((shard, _), (i, key)) in &last_success {
        per_key.entry((shard.clone(), key.clone())).or_default().push(*i);
    }
    for ((shard, key), order) in per_key {
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "the last processing of {shard}/{key}'s records is out of put order"
        );
    }
    drop(h);
    let h = history.lock().unwrap();
    for (shard, records) in &h.put {
        // Filtered records are never seen by the test, so the tail of a shard may be filtered and not yet read.
        let unfiltered = |p: &ExtendedSequenceNumber| !h.filtered.contains(&(shard.clone(), p.clone()));
        let Some((last, _)) = records.iter().rev().find(|(p, _)| unfiltered(p)) else { continue };
        let lease = futures::executor::block_on(store.get_lease(shard)).unwrap().unwrap();
        assert!(&lease.checkpoint >= last, "final checkpoint of {shard}: {} before {last}", lease.checkpoint);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("KCL_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_record_finishes_and_checkpoints_never_pass_unfinished_ones(case in case()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(check(case));
    }
}
