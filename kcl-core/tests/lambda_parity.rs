//! Lambda-parity batch semantics through a whole worker on the in-memory stream (the emulator versions are in
//! `tests/tests/lambda_parity.rs`):
//! - `max_record_age` is checked when a batch is formed: records already too old are never handed to the processor;
//! - tumbling windows: the framework drives windows to their end on an idle shard and checkpoints window by window;
//!   a windowed processor with automatic checkpointing is refused;
//! - pause and resume: nothing is delivered while paused, leases and checkpoints stay, delivery resumes after.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::process::{
    Batch, BatchResult, Checkpointing, FailedRecords, FailureDestination, FailureReason, OnExhausted, ProcessingConfig,
    ProcessorError, RetryPolicy, TumblingWindows, Window, WindowEnd, WindowProcessor,
};
use kcl_core::retrieve::PollingConfig;
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Checkpointer, ExtendedSequenceNumber, InitialPosition, ProcessorFactory, RecordProcessor, Worker};

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn leases(store: &Arc<dyn LeaseStore>) -> Vec<kcl_core::lease::Lease> {
    let mut leases = store.list_all_leases().await.unwrap();
    leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    leases
}

fn polling() -> PollingConfig {
    PollingConfig::default()
        .with_idle_time_between_reads(Duration::from_millis(50))
        .with_min_time_between_calls(Duration::from_millis(10))
}

fn worker<F: ProcessorFactory>(stream: &MemoryStream, store: &Arc<dyn LeaseStore>) -> kcl_core::WorkerBuilder<F> {
    Worker::builder(stream.name().clone(), "app")
        .worker_id("worker-1")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(store.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .polling_config(polling())
        .parent_poll_interval(Duration::from_millis(50))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
}

/// Records every payload it is given.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

#[async_trait::async_trait]
impl RecordProcessor for Recorder {
    async fn process_records(&mut self, batch: &Batch, _: &mut Checkpointer) -> BatchResult {
        let mut seen = self.0.lock().unwrap();
        seen.extend(batch.records.iter().map(|r| String::from_utf8_lossy(&r.data).into_owned()));
        Ok(())
    }
}

/// Collects what reaches the failure destination.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<(String, FailureReason)>>>);

#[async_trait::async_trait]
impl FailureDestination for Collected {
    async fn send(&self, failed: &FailedRecords) -> Result<(), ProcessorError> {
        let mut collected = self.0.lock().unwrap();
        collected.extend(failed.records.iter().map(|r| (String::from_utf8_lossy(&r.data).into_owned(), failed.reason)));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_too_old_when_the_batch_is_formed_are_never_processed() {
    let stream = MemoryStream::new("aged", 1);
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    for i in 0..5 {
        stream.put("k", format!("old-{i}")).unwrap();
    }
    // They age past the limit before any worker reads them (a consumer far behind).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (seen, dead) = (Recorder::default(), Collected::default());
    let worker = worker(&stream, &store)
        .processing(ProcessingConfig::default().checkpointing(Checkpointing::AfterEachBatch))
        .retry_policy(
            RetryPolicy::default()
                .max_record_age(Some(Duration::from_secs(1)))
                .on_exhausted(OnExhausted::SendToDestination),
        )
        .failure_destination(Arc::new(dead.clone()))
        .processor_factory({
            let seen = seen.clone();
            move |_: &str| seen.clone()
        })
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    wait_for("the old records to be given up", || dead.0.lock().unwrap().len() == 5).await;
    let fresh = stream.put("k", "fresh").unwrap();
    wait_for("the fresh record", || seen.0.lock().unwrap().contains(&"fresh".to_owned())).await;
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();

    assert_eq!(*seen.0.lock().unwrap(), vec!["fresh".to_owned()], "no old record reached the processor");
    assert!(dead.0.lock().unwrap().iter().all(|(_, reason)| *reason == FailureReason::RecordTooOld));
    let lease = store.get_lease("shardId-000000000000").await.unwrap().unwrap();
    assert_eq!(lease.checkpoint, ExtendedSequenceNumber::sequence(fresh.sequence_number));
}

/// Counts records per window and remembers the windows it ended.
#[derive(Clone, Default)]
struct Counts(Arc<Mutex<Vec<(Window, u64, WindowEnd)>>>);

struct Counter(Counts);

#[async_trait::async_trait]
impl WindowProcessor for Counter {
    type State = u64;
    async fn process(&mut self, _: &Window, count: &mut u64, batch: &Batch) -> Result<(), ProcessorError> {
        *count += batch.len() as u64;
        Ok(())
    }
    async fn window_ended(&mut self, window: &Window, count: &u64, end: WindowEnd) -> Result<(), ProcessorError> {
        self.0.0.lock().unwrap().push((window.clone(), *count, end));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_end_on_an_idle_shard_and_the_checkpoint_follows_them() {
    let stream = MemoryStream::new("windows", 1);
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let counts = Counts::default();
    let worker = worker(&stream, &store)
        .processor_factory(
            TumblingWindows::factory(Duration::from_secs(1), {
                let counts = counts.clone();
                move |_: &str| Counter(counts.clone())
            })
            .unwrap(),
        )
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let mut last = None;
    for i in 0..6 {
        last = Some(stream.put(format!("k{i}"), "x").unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // No record arrives after the last one: its window must still end, through the empty reads.
    let total = || counts.0.lock().unwrap().iter().map(|(_, n, _)| n).sum::<u64>();
    wait_for("every record counted in an ended window", || total() == 6).await;
    let lease = store.get_lease("shardId-000000000000").await.unwrap().unwrap();
    let last = ExtendedSequenceNumber::sequence(last.unwrap().sequence_number);
    assert_eq!(lease.checkpoint, last, "checkpointed at the last window's last record");
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
    let ended = counts.0.lock().unwrap().clone();
    assert!(ended.len() >= 2, "6 records over ~1.8 s span at least two 1-second windows: {ended:?}");
    let mut starts: BTreeMap<_, u64> = BTreeMap::new();
    for (window, n, end) in &ended {
        assert_eq!(*end, WindowEnd::Closed);
        assert_eq!(window.end.duration_since(window.start).unwrap(), Duration::from_secs(1));
        assert!(starts.insert(window.start, *n).is_none(), "each window ends once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_processor_with_automatic_checkpointing_is_refused() {
    let stream = MemoryStream::new("refused", 1);
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let counts = Counts::default();
    stream.put("k", "x").unwrap();
    let worker = worker(&stream, &store)
        .processing(ProcessingConfig::default().parallelism(2))
        .processor_factory(
            TumblingWindows::factory(Duration::from_secs(1), {
                let counts = counts.clone();
                move |_: &str| Counter(counts.clone())
            })
            .unwrap(),
        )
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
    assert!(counts.0.lock().unwrap().is_empty(), "nothing processed by a refused configuration");
    let lease = store.get_lease("shardId-000000000000").await.unwrap().unwrap();
    assert_eq!(lease.checkpoint, ExtendedSequenceNumber::TrimHorizon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_delivers_nothing_keeps_its_leases_and_resumes_where_it_stopped() {
    let stream = MemoryStream::new("paused", 2);
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let seen = Recorder::default();
    let worker = worker(&stream, &store)
        .lease_config(
            kcl_core::lease::coordinator::LeaseCoordinatorConfig::builder()
                .lease_duration(Duration::from_millis(600))
                .build()
                .unwrap(),
        )
        .processing(ProcessingConfig::default().checkpointing(Checkpointing::AfterEachBatch))
        .processor_factory({
            let seen = seen.clone();
            move |_: &str| seen.clone()
        })
        .build()
        .unwrap();
    let (pause, shutdown) = (worker.pause_handle(), worker.shutdown_handle());
    let task = tokio::spawn(worker.run());
    for i in 0..4 {
        stream.put(format!("k{i}"), format!("before-{i}")).unwrap();
    }
    wait_for("the first records", || seen.0.lock().unwrap().len() == 4).await;
    pause.pause();
    assert!(pause.is_paused());
    // A read may be in flight when the switch flips; give it time to land before taking the baseline.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let leases_before = leases(&store).await;
    for i in 0..6 {
        stream.put(format!("k{i}"), format!("during-{i}")).unwrap();
    }
    // Several lease durations: the leases must be renewed, not expire; nothing may be delivered.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(seen.0.lock().unwrap().len(), 4, "nothing delivered while paused: {:?}", seen.0.lock().unwrap());
    let leases_during = leases(&store).await;
    assert_eq!(leases_during.len(), 2);
    for (before, during) in leases_before.iter().zip(&leases_during) {
        assert_eq!(during.lease_owner.as_deref(), Some("worker-1"), "the lease is still held");
        assert!(during.lease_counter > before.lease_counter, "and renewed while paused");
        assert_eq!(during.checkpoint, before.checkpoint, "checkpoints stay where they were");
    }
    pause.resume();
    wait_for("the records put while paused", || seen.0.lock().unwrap().len() == 10).await;
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
    let mut all = seen.0.lock().unwrap().clone();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 10, "every record once: {all:?}");
}
