//! The one trait applications implement: [`RecordProcessor`], and the factory that makes one per shard.

use async_trait::async_trait;

use super::outcome::ProcessorError;
use super::{Batch, BatchResult, Checkpointer};
use crate::types::ExtendedSequenceNumber;

/// What a processor learns when it starts on a shard.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct InitializeInput {
    /// The shard this processor consumes.
    pub shard_id: String,
    /// The lease key: the shard id, or `account:stream:creationEpoch:shardId` in multi-stream applications.
    pub lease_key: String,
    /// Where processing resumes: records at or below this position are never delivered.
    pub checkpoint: ExtendedSequenceNumber,
    /// A prepared (two-phase) checkpoint left by a previous owner, if any.
    pub pending_checkpoint: Option<ExtendedSequenceNumber>,
    /// Application state stored with the prepared checkpoint.
    pub pending_checkpoint_state: Option<bytes::Bytes>,
}

/// Why processing of a shard stopped without a chance to checkpoint.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LeaseLostInput {
    /// The shard whose lease was lost.
    pub shard_id: String,
}

/// Processes the records of one shard. The framework creates one per shard lease (through a [`ProcessorFactory`])
/// and calls it from one task at a time, in this order:
///
/// `initialize` → `process_records`* → one of `shard_ended` | `shutdown_requested` | `lease_lost`.
///
/// Delivery is **at least once**: after a crash, a lease move or a failed batch, records after the last checkpoint
/// are delivered again. Checkpoint only what you have fully processed.
///
/// An error (or a panic) in `process_records` does not skip the batch, as Java KCL does: the records are delivered
/// again after a backoff, and the checkpoint stays before them, until they succeed or the consumer's
/// [`RetryPolicy`](super::RetryPolicy) gives up on them (blocking the shard, or handing them to a
/// [`FailureDestination`](super::FailureDestination)). Report individual bad records with
/// [`BatchFailure::records`](super::BatchFailure::records) so only they are retried.
///
/// With [`ProcessingConfig::parallelism`](super::ProcessingConfig::parallelism) above 1 the factory makes several
/// processors per shard, each given the records of some partition keys; each processor is still called from one
/// task at a time.
///
/// A processor that counts records and checkpoints after each batch, driven here by hand (a
/// [`Worker`](crate::Worker) does it for every shard it holds):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # use std::sync::Arc;
/// use kcl_core::process::{BatchResult, CheckpointSink};
/// use kcl_core::{Batch, Checkpointer, ExtendedSequenceNumber, KclError, Record, RecordProcessor, SequenceNumber};
///
/// #[derive(Default)]
/// struct Count(usize);
///
/// #[async_trait::async_trait]
/// impl RecordProcessor for Count {
///     async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
///         self.0 += batch.len();
///         checkpointer.checkpoint().await?; // everything in this batch is done
///         Ok(())
///     }
/// }
/// # struct Sink;
/// # #[async_trait::async_trait]
/// # impl CheckpointSink for Sink {
/// #     async fn checkpoint(&self, _: &str, _: &ExtendedSequenceNumber) -> Result<(), KclError> { Ok(()) }
/// #     async fn prepare_checkpoint(
/// #         &self, _: &str, _: &ExtendedSequenceNumber, _: Option<bytes::Bytes>,
/// #     ) -> Result<(), KclError> { Ok(()) }
/// # }
///
/// let records = (1..=3).map(|i| Record::new(format!("reading {i}"), "sensor-7", SequenceNumber::from_u128(i)));
/// let batch = Batch::new("shardId-0", records.collect(), Some(0));
/// let mut checkpointer = Checkpointer::new("shardId-0", Arc::new(Sink), ExtendedSequenceNumber::TrimHorizon);
/// checkpointer.set_largest_permitted(batch.last_position().unwrap());
///
/// let mut processor = Count::default();
/// processor.process_records(&batch, &mut checkpointer).await.unwrap();
/// assert_eq!(processor.0, 3);
/// assert_eq!(checkpointer.last_checkpoint(), &batch.last_position().unwrap());
/// # }
/// ```
#[async_trait]
pub trait RecordProcessor: Send + 'static {
    /// Called once before the first batch.
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        let _ = input;
        Ok(())
    }

    /// Processes one batch, in shard order. Use `checkpointer` to record progress (every batch, or less often), or
    /// let the framework do it ([`Checkpointing::AfterEachBatch`](super::Checkpointing::AfterEachBatch)).
    ///
    /// Return `Ok(())` when every record was processed, an error for the whole batch, or
    /// [`BatchFailure::records`](super::BatchFailure::records) naming the records that failed. Do not checkpoint past
    /// a record you then report as failed: a stored checkpoint cannot be taken back, so such a failure is ignored.
    ///
    /// The batch is borrowed because the framework may deliver the same records again: after an error here, or to
    /// the next owner of the lease after a crash. Clone what you keep (clones are cheap: payloads are `Bytes`).
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult;

    /// The lease moved to another worker (or could not be renewed). Checkpointing is no longer possible; release
    /// resources. Records since the last checkpoint will be delivered to the next owner.
    async fn lease_lost(&mut self, input: LeaseLostInput) {
        let _ = input;
    }

    /// Every record of the (closed) shard has been delivered. Flush what you buffer and checkpoint if you wish;
    /// unlike Java KCL, the framework writes the `SHARD_END` checkpoint itself when this returns `Ok`, so child
    /// shards can never be stuck because a processor forgot.
    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        let _ = checkpointer;
        Ok(())
    }

    /// The worker is shutting down or handing the lease to another worker: checkpoint what you have processed.
    async fn shutdown_requested(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        let _ = checkpointer;
        Ok(())
    }

    /// The length of the tumbling windows this processor checkpoints by, if it does
    /// ([`TumblingWindows`](super::TumblingWindows) says so; leave the default otherwise). The framework then
    /// delivers empty batches when the shard is caught up, so windows end on time, and refuses automatic
    /// checkpointing and parallelism above 1, which would move the checkpoint into an open window.
    fn tumbling_window(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Makes a [`RecordProcessor`] for a shard. Implemented for closures `Fn(&str) -> P`.
pub trait ProcessorFactory: Send + Sync + 'static {
    /// The processor type.
    type Processor: RecordProcessor;
    /// A fresh processor for `shard_id`.
    fn create(&self, shard_id: &str) -> Self::Processor;
}

impl<F, P> ProcessorFactory for F
where
    F: Fn(&str) -> P + Send + Sync + 'static,
    P: RecordProcessor,
{
    type Processor = P;
    fn create(&self, shard_id: &str) -> P {
        self(shard_id)
    }
}
