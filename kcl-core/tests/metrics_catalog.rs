//! The documented metrics (`kcl_core::telemetry`) appear with the right values for known runs on the in-memory
//! stream: records and bytes processed equal what was put, leases held equal the shards, attempts and failures
//! move by known amounts for a failing batch, filtered and given-up records are counted exactly, GetRecords calls,
//! errors and throttles match what the stream served and injected.
//!
//! Recorders are process-global, so this file is its own test binary; its tests use distinct stream names and
//! worker ids, and every assertion selects the series by those labels.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::process::{
    CheckpointInterval, Checkpointing, FailedRecords, FailureDestination, OnExhausted, ProcessingConfig,
    ProcessorError, RecordFilter, RetryPolicy,
};
use kcl_core::retrieve::memory_stream::{Fault, MemoryStream};
use kcl_core::telemetry::{self as t, CATALOG};
use kcl_core::{
    Batch, BatchResult, Checkpointer, ExtendedSequenceNumber, InitialPosition, RecordProcessor, Worker, WorkerBuilder,
};
use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};

// ---- a recorder that keeps every series ----

type Labels = Vec<(String, String)>;

#[derive(Default)]
struct Series {
    counter: AtomicU64,
    gauge: Mutex<f64>,
    samples: Mutex<Vec<f64>>,
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        self.counter.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.counter.fetch_max(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Series {
    fn increment(&self, value: f64) {
        *self.gauge.lock().unwrap() += value;
    }
    fn decrement(&self, value: f64) {
        *self.gauge.lock().unwrap() -= value;
    }
    fn set(&self, value: f64) {
        *self.gauge.lock().unwrap() = value;
    }
}

impl HistogramFn for Series {
    fn record(&self, value: f64) {
        self.samples.lock().unwrap().push(value);
    }
}

#[derive(Default)]
struct Recording {
    series: Mutex<BTreeMap<(String, Labels), Arc<Series>>>,
    described: Mutex<BTreeMap<String, Option<Unit>>>,
}

impl Recording {
    fn series(&self, key: &Key) -> Arc<Series> {
        let labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
        self.series.lock().unwrap().entry((key.name().to_owned(), labels)).or_default().clone()
    }

    /// Every series of `name` whose labels include all of `with`.
    fn matching(&self, name: &str, with: &[(&str, &str)]) -> Vec<(Labels, Arc<Series>)> {
        self.series
            .lock()
            .unwrap()
            .iter()
            .filter(|((n, labels), _)| {
                n == name && with.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|((_, labels), series)| (labels.clone(), series.clone()))
            .collect()
    }

    fn counter(&self, name: &str, with: &[(&str, &str)]) -> u64 {
        self.matching(name, with).iter().map(|(_, s)| s.counter.load(Ordering::Relaxed)).sum()
    }

    fn gauge(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        let found = self.matching(name, with);
        assert!(found.len() <= 1, "{name} {with:?} selects several series");
        found.first().map(|(_, s)| *s.gauge.lock().unwrap())
    }

    fn samples(&self, name: &str, with: &[(&str, &str)]) -> Vec<f64> {
        self.matching(name, with).iter().flat_map(|(_, s)| s.samples.lock().unwrap().clone()).collect()
    }
}

struct Recorder(&'static Recording);

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, name: KeyName, unit: Option<Unit>, _: SharedString) {
        self.0.described.lock().unwrap().insert(name.as_str().to_owned(), unit);
    }
    fn describe_gauge(&self, name: KeyName, unit: Option<Unit>, _: SharedString) {
        self.0.described.lock().unwrap().insert(name.as_str().to_owned(), unit);
    }
    fn describe_histogram(&self, name: KeyName, unit: Option<Unit>, _: SharedString) {
        self.0.described.lock().unwrap().insert(name.as_str().to_owned(), unit);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.0.series(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.0.series(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.0.series(key))
    }
}

/// The recording, installed as the global recorder on first use.
fn recording() -> &'static Recording {
    static RECORDING: OnceLock<&'static Recording> = OnceLock::new();
    RECORDING.get_or_init(|| {
        let recording: &'static Recording = Box::leak(Box::default());
        metrics::set_global_recorder(Recorder(recording)).unwrap();
        recording
    })
}

// ---- the runs ----

#[derive(Default)]
struct Seen {
    /// Calls of process_records (the framework never calls it empty here).
    calls: u64,
    /// Data of the records in successful calls.
    processed: HashSet<Vec<u8>>,
    failed_once: bool,
}

/// Fails the first call holding `fail-once`, every call holding `poison`; checkpoints after each success.
struct Processor(Arc<Mutex<Seen>>);

#[async_trait::async_trait]
impl RecordProcessor for Processor {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        {
            let mut seen = self.0.lock().unwrap();
            seen.calls += 1;
            if batch.records.iter().any(|r| r.data.as_ref() == b"poison") {
                return Err("poison".into());
            }
            if !seen.failed_once && batch.records.iter().any(|r| r.data.as_ref() == b"fail-once") {
                seen.failed_once = true;
                return Err("fails once".into());
            }
            seen.processed.extend(batch.records.iter().map(|r| r.data.to_vec()));
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// Accepts every failed record.
#[derive(Default)]
struct Destination(Mutex<Vec<Vec<u8>>>);

#[async_trait::async_trait]
impl FailureDestination for Destination {
    async fn send(&self, failed: &FailedRecords) -> Result<(), ProcessorError> {
        self.0.lock().unwrap().extend(failed.records.iter().map(|r| r.data.to_vec()));
        Ok(())
    }
}

fn builder(
    stream: &MemoryStream,
    worker_id: &str,
    seen: &Arc<Mutex<Seen>>,
) -> WorkerBuilder<impl kcl_core::ProcessorFactory> {
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let seen = seen.clone();
    Worker::builder(stream.name().clone(), "app")
        .worker_id(worker_id)
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(store)
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build().unwrap())
        .parent_poll_interval(Duration::from_millis(50))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .processor_factory(move |_: &str| Processor(seen.clone()))
}

/// Waits (up to a generous deadline, so a hang fails instead of blocking) until `done`.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_run_produces_the_documented_figures() {
    let m = recording();
    t::describe();
    let stream = MemoryStream::new("metrics-run", 2);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let worker = builder(&stream, "metrics-worker", &seen)
        .retry_policy(RetryPolicy::default().backoff(Duration::from_millis(10), Duration::from_millis(50)))
        .filter(RecordFilter::new(|r| !r.data.starts_with(b"skip")))
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());

    // 40 kept records of varied sizes over many keys (so both shards get some), one failing once, 7 filtered.
    let mut kept: Vec<Vec<u8>> = (0..40).map(|i| vec![b'x'; 1 + i * 3]).collect();
    kept.push(b"fail-once".to_vec());
    let mut shards = HashSet::new();
    for (i, data) in kept.iter().enumerate() {
        shards.insert(stream.put(format!("key-{i}"), data.clone()).unwrap().shard_id);
        if i % 6 == 0 {
            stream.put(format!("key-{i}"), format!("skip-{i}")).unwrap();
        }
    }
    assert_eq!(shards.len(), 2, "the keys reach both shards");
    let records = kept.len() as u64;
    let bytes: u64 = kept.iter().map(|d| d.len() as u64).sum();
    let stream_label = [("stream", "metrics-run")];
    wait_for("every kept record to be counted", || m.counter(t::RECORDS_PROCESSED, &stream_label) >= records).await;
    wait_for("both leases to count as held", || m.gauge(t::LEASES_HELD, &[("worker", "metrics-worker")]) == Some(2.0))
        .await;

    let calls = seen.lock().unwrap().calls;
    assert_eq!(seen.lock().unwrap().processed.len() as u64, records);
    assert_eq!(m.counter(t::RECORDS_PROCESSED, &stream_label), records, "records processed = records put and kept");
    assert_eq!(m.counter(t::BYTES_PROCESSED, &stream_label), bytes, "bytes processed = payload bytes kept");
    for shard in &shards {
        let shard_labels = [("stream", "metrics-run"), ("shard", &**shard)];
        assert!(m.counter(t::RECORDS_PROCESSED, &shard_labels) > 0, "{shard} has its own series");
        assert!(m.counter(t::GET_RECORDS_CALLS, &shard_labels) > 0, "{shard} was read");
        assert!(m.gauge(t::MILLIS_BEHIND_LATEST, &shard_labels).is_some(), "{shard} reports its lag");
        let age = m.gauge(t::ITERATOR_AGE, &shard_labels).expect("iterator age");
        assert!(age >= 0.0, "{shard} iterator age {age}");
    }
    assert_eq!(m.counter(t::RECORDS_FILTERED, &stream_label), 7, "filtered count");
    assert_eq!(m.counter(t::PROCESS_ATTEMPTS, &stream_label), calls, "one attempt per process_records call");
    assert_eq!(m.counter(t::PROCESS_FAILURES, &[("stream", "metrics-run"), ("kind", "batch")]), 1);
    assert_eq!(m.counter(t::PROCESS_FAILURES, &[("stream", "metrics-run"), ("kind", "partial")]), 0);
    let durations = m.samples(t::PROCESS_DURATION, &stream_label);
    assert_eq!(durations.len() as u64, calls, "one duration sample per call");
    assert!(durations.iter().all(|d| *d >= 0.0 && d.is_finite()));
    assert_eq!(m.counter(t::RECORDS_FAILED, &stream_label), 0);
    assert_eq!(m.counter(t::LEASES_TAKEN, &[("worker", "metrics-worker")]), 2, "one take per shard");
    assert_eq!(m.counter(t::LEASES_LOST, &[("worker", "metrics-worker")]), 0);
    assert_eq!(m.gauge(t::UNREADABLE_LEASES, &[("worker", "metrics-worker")]), Some(0.0), "every item readable");
    assert!(
        m.counter(t::CHECKPOINTS, &[("worker", "metrics-worker"), ("outcome", "ok")]) >= 1,
        "checkpoints were written"
    );
    assert_eq!(m.counter(t::CHECKPOINTS, &[("worker", "metrics-worker"), ("outcome", "failed")]), 0);

    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
    assert_eq!(m.counter(t::RECORDS_PROCESSED, &stream_label), records, "nothing counted twice by the shutdown");
    assert_eq!(m.gauge(t::LEASES_HELD, &[("worker", "metrics-worker")]), Some(0.0), "a stopped worker holds none");

    // Every series emitted is in the catalogue, under its documented labels; `describe` gave each its unit.
    let described = m.described.lock().unwrap().clone();
    for ((name, labels), _) in m.series.lock().unwrap().iter() {
        let def = CATALOG.iter().find(|d| d.name == name).unwrap_or_else(|| panic!("{name} is not catalogued"));
        let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, def.labels, "labels of {name}");
        assert_eq!(described.get(name), Some(&Some(def.unit)), "unit of {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_given_up_are_counted_once_and_not_as_processed() {
    let m = recording();
    let stream = MemoryStream::new("metrics-poison", 1);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let destination = Arc::new(Destination::default());
    let worker = builder(&stream, "poison-worker", &seen)
        .retry_policy(
            RetryPolicy::default()
                .backoff(Duration::from_millis(10), Duration::from_millis(50))
                .max_attempts(Some(3))
                .on_exhausted(OnExhausted::SendToDestination),
        )
        .failure_destination(destination.clone())
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let label = [("stream", "metrics-poison")];

    stream.put("key", "first").unwrap();
    wait_for("the first record to be counted", || m.counter(t::RECORDS_PROCESSED, &label) == 1).await;
    // Alone in its batch, so every attempt at it is one call of the processor.
    stream.put("key", "poison").unwrap();
    wait_for("the poison record to reach the destination", || !destination.0.lock().unwrap().is_empty()).await;
    stream.put("key", "after").unwrap();
    wait_for("the record after it to be counted", || m.counter(t::RECORDS_PROCESSED, &label) == 2).await;

    assert_eq!(*destination.0.lock().unwrap(), vec![b"poison".to_vec()]);
    assert_eq!(m.counter(t::PROCESS_ATTEMPTS, &label), 2 + 3, "two good calls and three at the poison record");
    assert_eq!(m.counter(t::PROCESS_FAILURES, &[("stream", "metrics-poison"), ("kind", "batch")]), 3);
    assert_eq!(m.counter(t::RECORDS_FAILED, &[("stream", "metrics-poison"), ("reason", "attempts_exhausted")]), 1);
    assert_eq!(m.counter(t::RECORDS_SENT_TO_DESTINATION, &label), 1);
    assert_eq!(m.counter(t::DESTINATION_ERRORS, &label), 0);
    assert_eq!(m.counter(t::SHARD_BLOCKS, &label), 0);
    assert_eq!(m.counter(t::BYTES_PROCESSED, &label), ("first".len() + "after".len()) as u64);
    assert_eq!(m.counter(t::RECORDS_PROCESSED, &label), 2, "the given-up record is not counted as processed");

    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_records_calls_errors_and_throttles_match_the_stream() {
    let m = recording();
    let stream = MemoryStream::new("metrics-faults", 1);
    let shard = "shardId-000000000000";
    stream.script_faults(shard, [Fault::Throttle, Fault::InternalFailure, Fault::Throttle]);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let worker = builder(&stream, "faults-worker", &seen).build().unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    stream.put("key", "through the faults").unwrap();
    let labels = [("stream", "metrics-faults"), ("shard", shard)];
    wait_for("the record to be counted", || m.counter(t::RECORDS_PROCESSED, &labels) == 1).await;
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();

    let injected = stream.fault_counts();
    assert_eq!((injected.throttles, injected.internal_failures), (2, 1), "every scripted fault was served");
    assert_eq!(m.counter(t::THROTTLES, &labels), 2);
    let errors = |kind| m.counter(t::GET_RECORDS_ERRORS, &[("stream", "metrics-faults"), ("kind", kind)]);
    assert_eq!(errors("throttled"), 2);
    assert_eq!(errors("server_error"), 1);
    assert_eq!(m.counter(t::GET_RECORDS_ERRORS, &labels), 3, "no other errors");
    let (get_records, _) = stream.call_counts();
    assert_eq!(m.counter(t::GET_RECORDS_CALLS, &labels), get_records, "one count per GetRecords the stream served");
}

/// A lease item the store cannot read raises `kcl_unreadable_leases`, and its shard is not processed (its checkpoint
/// is unknown: any start could skip records) while the other shard is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_lease_is_counted_and_its_shard_waits() {
    let m = recording();
    let stream = MemoryStream::new("metrics-unreadable", 2);
    let store = Arc::new(MemoryLeaseStore::new());
    store.insert_unreadable("shardId-000000000000", "`checkpoint` is missing");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let processor_seen = seen.clone();
    let worker = Worker::builder(stream.name().clone(), "app")
        .worker_id("unreadable-worker")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(store.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build().unwrap())
        .parent_poll_interval(Duration::from_millis(50))
        .processor_factory(move |_: &str| Processor(processor_seen.clone()))
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let mut per_shard: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..40 {
        *per_shard
            .entry(stream.put(format!("key-{i}"), format!("r-{i}")).unwrap().shard_id.to_string())
            .or_default() += 1;
    }
    let readable = per_shard.get("shardId-000000000001").copied().unwrap_or(0);
    assert!(readable > 0 && per_shard.len() == 2, "the keys reach both shards: {per_shard:?}");
    let worker_label = [("worker", "unreadable-worker")];
    wait_for("the unreadable item to be counted", || m.gauge(t::UNREADABLE_LEASES, &worker_label) == Some(1.0)).await;
    let shard1 = [("stream", "metrics-unreadable"), ("shard", "shardId-000000000001")];
    wait_for("the readable shard's records", || m.counter(t::RECORDS_PROCESSED, &shard1) >= readable).await;
    let shard0 = [("stream", "metrics-unreadable"), ("shard", "shardId-000000000000")];
    assert_eq!(m.counter(t::RECORDS_PROCESSED, &shard0), 0, "the unreadable shard is not processed");
    assert_eq!(m.gauge(t::LEASES_HELD, &worker_label), Some(1.0));
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
    assert_eq!(seen.lock().unwrap().processed.len() as u64, readable);
}

/// Counts records and never checkpoints itself: the framework does (`Checkpointing::AfterEachBatch`).
struct CountOnly(Arc<AtomicU64>);

#[async_trait::async_trait]
impl RecordProcessor for CountOnly {
    async fn process_records(&mut self, batch: &Batch, _: &mut Checkpointer) -> BatchResult {
        self.0.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// The same 1,005 records in batches of at most 10, checkpointed by the framework after every batch and then every
/// 100 records or 300 ms: `kcl_checkpoints_total` drops from one write per batch (≥ 100) to about one per 100
/// records, and on the now quiet shard the period still writes the last record without a new batch or a shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_interval_writes_less_and_still_reaches_the_last_record() {
    let m = recording();
    let mut writes = Vec::new();
    for (worker_id, interval) in [
        ("every-batch-worker", CheckpointInterval::every_batch()),
        ("interval-worker", CheckpointInterval::every_batch().records(100).period(Duration::from_millis(300))),
    ] {
        let stream = MemoryStream::new(worker_id, 1);
        let mut last = None;
        // 1,005: the last 5 records reach no count of 100, only the period writes them.
        for i in 0..1005 {
            last = Some(stream.put(format!("key-{}", i % 7), format!("r{i}")).unwrap().sequence_number);
        }
        let last = ExtendedSequenceNumber::sequence(last.unwrap());
        let store = Arc::new(MemoryLeaseStore::new());
        let processed = Arc::new(AtomicU64::new(0));
        let counted = processed.clone();
        let worker = Worker::builder(stream.name().clone(), "app")
            .worker_id(worker_id)
            .record_source(Arc::new(stream.clone()))
            .shard_lister(Arc::new(stream.clone()))
            .lease_store(store.clone())
            .initial_position(InitialPosition::TrimHorizon)
            .processing(
                ProcessingConfig::default()
                    .max_records(Some(10))
                    .checkpointing(Checkpointing::AfterEachBatch)
                    .checkpoint_interval(interval),
            )
            .processor_factory(move |_: &str| CountOnly(counted.clone()))
            .build()
            .unwrap();
        let shutdown = worker.shutdown_handle();
        let task = tokio::spawn(worker.run());
        wait_for("every record to be processed", || processed.load(Ordering::Relaxed) >= 1005).await;
        let shard = stream.open_shard_ids().remove(0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let stored = store.get_lease(&shard).await.unwrap().map(|lease| lease.checkpoint);
            if stored.as_ref() == Some(&last) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{worker_id}: checkpoint stayed at {stored:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        writes.push(m.counter(t::CHECKPOINTS, &[("worker", worker_id), ("outcome", "ok")]));
        shutdown.shutdown();
        tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
    }
    println!(
        "checkpoint writes for 1,005 records in batches of 10: every batch {}, every 100 records {}",
        writes[0], writes[1]
    );
    assert!(writes[0] >= 100, "one write per batch of at most 10: {}", writes[0]);
    assert!(writes[1] <= 20, "every 100 records (or 300 ms): {} writes", writes[1]);
}
