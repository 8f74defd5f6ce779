//! A processor for tests (feature `test-util`) that records what it is given: every payload (as text), every
//! delivery, and which leases have a live processor. It checkpoints after each batch and when asked to shut down.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Batch, BatchResult, Checkpointer, InitializeInput, LeaseLostInput, ProcessorError, RecordProcessor};

/// What [`RecordingProcessor`]s saw, shared by all of them.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Seen {
    /// Payloads processed, as text (lossy UTF-8).
    pub records: HashSet<String>,
    /// Records delivered, duplicates included.
    pub deliveries: usize,
    /// Lease keys with a live processor (initialized, not yet stopped).
    pub live: HashSet<String>,
}

/// Records into a shared [`Seen`]; checkpoints after every batch and at a requested shutdown.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use kcl_core::process::recording::{RecordingProcessor, Seen};
///
/// let seen = Arc::new(Mutex::new(Seen::default()));
/// let factory = move |_shard: &str| RecordingProcessor::new(seen.clone());
/// # let _ = factory("shardId-000000000000");
/// ```
pub struct RecordingProcessor {
    seen: Arc<Mutex<Seen>>,
    lease_key: String,
}

impl RecordingProcessor {
    /// A processor recording into `seen`.
    pub fn new(seen: Arc<Mutex<Seen>>) -> Self {
        Self { seen, lease_key: String::new() }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl RecordProcessor for RecordingProcessor {
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        self.lease_key = input.lease_key;
        let key = self.lease_key.clone();
        self.seen().live.insert(key);
        Ok(())
    }

    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        {
            let mut seen = self.seen();
            for record in &batch.records {
                seen.records.insert(String::from_utf8_lossy(&record.data).into_owned());
                seen.deliveries += 1;
            }
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn lease_lost(&mut self, _: LeaseLostInput) {
        let key = self.lease_key.clone();
        self.seen().live.remove(&key);
    }

    async fn shutdown_requested(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        checkpointer.checkpoint().await?;
        let key = self.lease_key.clone();
        self.seen().live.remove(&key);
        Ok(())
    }
}
