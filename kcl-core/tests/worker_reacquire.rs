//! A worker that self-fences a lease (its renewals failed for a while) while its processor is stuck in a batch, and
//! then gets the same lease back (nobody else took it), starts the next processor only after the old one has
//! finished. The old one's checkpoint, made on its way out, belongs to an acquisition that has ended: the store's
//! fence cannot tell it apart (same worker, same lease, current counter), so the coordinator refuses it by
//! acquisition (issue 17: checkpoints fenced by consumer generation). The next processor starts from the stored
//! checkpoint and delivers the stuck batch again: at-least-once, nothing skipped, no checkpoint moved backwards.
//! (Before, the late checkpoint landed through the new acquisition's fence; the chaos suite had found the next
//! processor then starting from the acquisition's older copy, which is why the worker re-reads a re-acquired lease.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{FaultConfig, FaultyLeaseStore, LeaseStore, MemoryLeaseStore};
use kcl_core::process::{BatchResult, InitializeInput};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Batch, Checkpointer, ExtendedSequenceNumber, InitialPosition, RecordProcessor, Worker};
use tokio::sync::watch;

#[derive(Default)]
struct Seen {
    /// Where each processor started.
    starts: Vec<ExtendedSequenceNumber>,
    /// Every record processed, in order.
    processed: Vec<ExtendedSequenceNumber>,
    /// The first processor is inside its first batch.
    stuck: bool,
    /// Checkpoints refused as `LeaseLost`, by processor (0: the stuck one).
    refused: Vec<usize>,
}

struct Processor {
    seen: Arc<Mutex<Seen>>,
    /// The first processor's first batch waits until this is `true`.
    release: watch::Receiver<bool>,
    first: bool,
    /// Which processor this is (0: the first).
    index: usize,
}

#[async_trait::async_trait]
impl RecordProcessor for Processor {
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), kcl_core::process::ProcessorError> {
        let mut seen = self.seen.lock().unwrap();
        self.first = seen.starts.is_empty();
        self.index = seen.starts.len();
        seen.starts.push(input.checkpoint);
        Ok(())
    }

    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        if self.first {
            self.first = false;
            self.seen.lock().unwrap().stuck = true;
            let _ = self.release.wait_for(|released| *released).await;
        }
        self.seen.lock().unwrap().processed.extend(batch.records.iter().map(|r| r.extended_sequence_number()));
        // The lease may have been lost meanwhile; a refused checkpoint is fine, the next owner redelivers.
        if let Err(kcl_core::KclError::LeaseLost { .. }) = checkpointer.checkpoint().await {
            self.seen.lock().unwrap().refused.push(self.index);
        }
        Ok(())
    }
}

/// Counts `kcl_leases_lost_total` (leases this worker lost without asking: self-fenced ones included), so the test
/// waits for the self-fence itself rather than for a guess of how long it takes. Recorders are process-global; this
/// file is its own test binary with one test.
struct LeasesLost(Arc<AtomicU64>);

impl metrics::Recorder for LeasesLost {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() == kcl_core::telemetry::LEASES_LOST {
            metrics::Counter::from_arc(self.0.clone())
        } else {
            metrics::Counter::noop()
        }
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_reacquired_while_its_processor_was_stuck_refuses_that_processors_late_checkpoint() {
    let leases_lost = Arc::new(AtomicU64::new(0));
    metrics::set_global_recorder(LeasesLost(leases_lost.clone())).expect("the only recorder of this binary");
    let stream = MemoryStream::new("reacquire", 1);
    let memory = Arc::new(MemoryLeaseStore::new());
    let faulty = Arc::new(FaultyLeaseStore::shared(memory.clone()));
    let store: Arc<dyn LeaseStore> = faulty.clone();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (release, released) = watch::channel(false);
    let mut last = None;
    for i in 0..5 {
        last = Some(stream.put("key", format!("record {i}")).unwrap());
    }
    let last = last.unwrap();
    let worker = Worker::builder(stream.name().clone(), "app")
        .worker_id("worker-1")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(store)
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_millis(600)).build().unwrap())
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .processor_factory({
            let seen = seen.clone();
            move |_: &str| Processor { seen: seen.clone(), release: released.clone(), first: false, index: 0 }
        })
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());

    wait_for("the first processor to be stuck in its first batch", || seen.lock().unwrap().stuck).await;
    // Cut the worker off from its lease table for longer than a lease: it self-fences the lease.
    faulty.switch().set(FaultConfig::fail_all());
    wait_for("the worker to self-fence the lease", || leases_lost.load(Ordering::Relaxed) >= 1).await;
    faulty.switch().heal();
    // Nobody else wants the lease: the worker gets it back (the stuck processor still holds the shard, so the next
    // one waits for it). Then the stuck processor finishes its batch and tries to checkpoint it.
    let lease_key = "shardId-000000000000";
    let before = memory.get_lease(lease_key).await.unwrap().unwrap().lease_counter;
    wait_for("the worker to own the lease again", || {
        stored_counter(&memory, lease_key).is_some_and(|counter| counter > before)
    })
    .await;
    release.send_replace(true);
    let checkpointed = ExtendedSequenceNumber::sequence(last.sequence_number);
    wait_for("a second processor", || seen.lock().unwrap().starts.len() >= 2).await;
    let second_start = seen.lock().unwrap().starts[1].clone();
    assert_eq!(second_start, ExtendedSequenceNumber::TrimHorizon, "the late checkpoint must not move the stored one");
    wait_for("the second processor to process the shard", || seen.lock().unwrap().processed.len() >= 10).await;
    wait_for("the second processor's checkpoint", || memory_checkpoint(&memory, lease_key) == checkpointed).await;
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.refused.first(), Some(&0), "the stuck processor's late checkpoint was refused: {:?}", seen.refused);
    assert!(!seen.refused.contains(&1), "the current processor's checkpoints are accepted: {:?}", seen.refused);
    assert_eq!(seen.starts.len(), 2, "{:?}", seen.starts);
    // The stuck batch twice (at-least-once), nothing skipped, then nothing more.
    let once: Vec<_> = seen.processed[..5].to_vec();
    assert_eq!(seen.processed[5..], once[..], "the second processor redelivers the whole stuck batch");
    assert_eq!(seen.processed.len(), 10, "{:?}", seen.processed);
}

fn stored_counter(store: &MemoryLeaseStore, key: &str) -> Option<u64> {
    futures::executor::block_on(store.get_lease(key)).ok().flatten().map(|lease| lease.lease_counter)
}

fn memory_checkpoint(store: &MemoryLeaseStore, key: &str) -> ExtendedSequenceNumber {
    futures::executor::block_on(store.get_lease(key)).unwrap().unwrap().checkpoint
}
