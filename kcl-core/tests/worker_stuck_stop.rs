//! A graceful stop that outlives its processor: the worker shuts down while the processor is inside a batch longer
//! than the handoff timeout, so the lease is lost (self-fenced: a draining lease is valid for the handoff timeout)
//! before the batch returns. The processor must then hear `lease_lost`, not `shutdown_requested`: the stop reason is read when the
//! batches in flight have finished, not when the stop was first seen. (The chaos suite caught a processor told to
//! shut down, and trying to checkpoint, after its lease had moved during a slow batch.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcl_core::lease::MemoryLeaseStore;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::process::{BatchResult, LeaseLostInput, ProcessorError};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Batch, Checkpointer, InitialPosition, KclError, RecordProcessor, Worker};
use tokio::sync::watch;

const HANDOFF_TIMEOUT: Duration = Duration::from_millis(600);
/// In one batch, checkpointed 10 ms apart: several seconds, many handoff timeouts.
const RECORDS: usize = 500;

/// Its first batch lasts until the lease is lost: it checkpoints one record further every 10 ms (allowed while the
/// stop drains; each write also keeps the lease valid) until the coordinator refuses because the lease is gone.
/// Longer than the graceful stop was willing to wait, and no guess of how long that is.
struct Slow {
    calls: Arc<Mutex<Vec<&'static str>>>,
    in_batch: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl RecordProcessor for Slow {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        self.calls.lock().unwrap().push("process_records");
        self.in_batch.send_replace(true);
        for record in &batch.records {
            if let Err(KclError::LeaseLost { .. }) = checkpointer.checkpoint_at(record.extended_sequence_number()).await
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the lease was not lost while {} records were checkpointed one by one", batch.records.len());
    }

    async fn lease_lost(&mut self, _input: LeaseLostInput) {
        self.calls.lock().unwrap().push("lease_lost");
    }

    async fn shutdown_requested(&mut self, _checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        self.calls.lock().unwrap().push("shutdown_requested");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_whose_lease_was_lost_during_a_graceful_stop_hears_lease_lost() {
    let stream = MemoryStream::new("stuck-stop", 1);
    for i in 0..RECORDS {
        stream.put("key", format!("record {i}")).unwrap();
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (in_batch, mut entered) = watch::channel(false);
    let lease_config = LeaseCoordinatorConfig::builder()
        .lease_duration(Duration::from_secs(2))
        .handoff_timeout(HANDOFF_TIMEOUT)
        .build()
        .unwrap();
    let worker = Worker::builder(stream.name().clone(), "app")
        .worker_id("worker-1")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(Arc::new(MemoryLeaseStore::new()))
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(lease_config)
        .processor_factory({
            let calls = calls.clone();
            move |_: &str| Slow { calls: calls.clone(), in_batch: in_batch.clone() }
        })
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    tokio::time::timeout(Duration::from_secs(30), entered.wait_for(|inside| *inside))
        .await
        .expect("the processor got its batch within 30 s")
        .unwrap();
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.expect("the worker stopped").unwrap().unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls, ["process_records", "lease_lost"], "the lease was given up while the batch ran");
}
