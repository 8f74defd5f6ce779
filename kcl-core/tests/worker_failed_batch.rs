//! A worker stopped while its processor keeps failing a batch: the usual "checkpoint what you have" in
//! `shutdown_requested` must not checkpoint the failed batch (regression: it used to write the batch's last record,
//! so a restart skipped every record of it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::process::{BatchResult, ProcessorError};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Batch, Checkpointer, ExtendedSequenceNumber, InitialPosition, RecordProcessor, Worker};

#[derive(Default)]
struct Seen {
    /// The last record of the last batch processed successfully.
    processed: Option<ExtendedSequenceNumber>,
    failed_attempts: usize,
}

/// Checkpoints after every batch and on shutdown; fails every attempt at a batch holding a record whose data is
/// `poison` (alternating errors and panics).
struct Processor {
    seen: Arc<Mutex<Seen>>,
    poison: &'static [u8],
}

#[async_trait::async_trait]
impl RecordProcessor for Processor {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        if batch.records.iter().any(|r| r.data.as_ref() == self.poison) {
            let attempt = {
                let mut seen = self.seen.lock().unwrap();
                seen.failed_attempts += 1;
                seen.failed_attempts
            };
            if attempt % 2 == 0 {
                panic!("injected panic");
            }
            return Err("injected failure".into());
        }
        self.seen.lock().unwrap().processed = batch.last_position();
        checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        checkpointer.checkpoint().await?;
        Ok(())
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
async fn a_batch_failing_at_shutdown_is_not_checkpointed() {
    let stream = MemoryStream::new("failing", 1);
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let worker = Worker::builder(stream.name().clone(), "app")
        .worker_id("worker-1")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(store.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build().unwrap())
        .parent_poll_interval(Duration::from_millis(50))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .processor_factory({
            let seen = seen.clone();
            move |_: &str| Processor { seen: seen.clone(), poison: b"poison" }
        })
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());

    let first = stream.put("key", "first").unwrap();
    let processed = ExtendedSequenceNumber::sequence(first.sequence_number);
    wait_for("the first record to be processed", || seen.lock().unwrap().processed.as_ref() == Some(&processed)).await;
    stream.put("key", "poison").unwrap();
    stream.put("key", "after").unwrap();
    wait_for("the poisoned batch to fail three times", || seen.lock().unwrap().failed_attempts >= 3).await;
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();

    let lease = store.get_lease("shardId-000000000000").await.unwrap().unwrap();
    assert_eq!(lease.checkpoint, processed, "the checkpoint stays at the last processed record");
}
