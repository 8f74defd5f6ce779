//! The [`Checkpointer`]: how a processor records progress, and the rules that keep delivery at-least-once.
//!
//! A checkpoint may only name a position the framework has already delivered to the processor, and may never go
//! backwards. Writes go through a [`CheckpointSink`] (the lease coordinator), which fences them with the lease owner
//! and counter, so a worker that lost its lease cannot move the checkpoint.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use tokio::time::Instant;

use super::interval::CheckpointInterval;
use crate::error::KclError;
use crate::types::{ExtendedSequenceNumber, Record};

/// Where fenced checkpoint writes go. The lease coordinator implements it; tests can record calls.
#[async_trait]
pub trait CheckpointSink: Send + Sync + 'static {
    /// Writes `position` as the lease's checkpoint, fenced by the current owner and counter.
    async fn checkpoint(&self, lease_key: &str, position: &ExtendedSequenceNumber) -> Result<(), KclError>;
    /// Writes a prepared (two-phase) checkpoint with optional application state, fenced likewise.
    async fn prepare_checkpoint(
        &self,
        lease_key: &str,
        position: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<(), KclError>;
}

/// Records a processor's progress on one shard. Handed to every processor callback that may checkpoint.
///
/// A checkpoint never passes what the processor was given: [`checkpoint`](Self::checkpoint) writes the last position
/// delivered, [`checkpoint_at`](Self::checkpoint_at) refuses one beyond it. Writes go to a [`CheckpointSink`] (the
/// lease coordinator, fenced by the lease owner and counter); here a sink that only records them:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kcl_core::KclError> {
/// use std::sync::{Arc, Mutex};
///
/// use kcl_core::process::CheckpointSink;
/// use kcl_core::{Checkpointer, ExtendedSequenceNumber, KclError, SequenceNumber};
///
/// #[derive(Default)]
/// struct Recorded(Mutex<Vec<ExtendedSequenceNumber>>);
///
/// #[async_trait::async_trait]
/// impl CheckpointSink for Recorded {
///     async fn checkpoint(&self, _lease: &str, position: &ExtendedSequenceNumber) -> Result<(), KclError> {
///         self.0.lock().unwrap().push(position.clone());
///         Ok(())
///     }
///     async fn prepare_checkpoint(
///         &self,
///         _lease: &str,
///         _position: &ExtendedSequenceNumber,
///         _state: Option<bytes::Bytes>,
///     ) -> Result<(), KclError> {
///         Ok(())
///     }
/// }
///
/// let sink = Arc::new(Recorded::default());
/// let mut checkpointer = Checkpointer::new("shardId-0", sink.clone(), ExtendedSequenceNumber::TrimHorizon);
/// let delivered = ExtendedSequenceNumber::sequence(SequenceNumber::from_u128(42));
/// checkpointer.set_largest_permitted(delivered.clone()); // the framework does this for each batch
///
/// let beyond = ExtendedSequenceNumber::sequence(SequenceNumber::from_u128(43));
/// assert!(checkpointer.checkpoint_at(beyond).await.is_err(), "never past what was delivered");
/// checkpointer.checkpoint().await?;
/// assert_eq!(*sink.0.lock().unwrap(), vec![delivered.clone()]);
/// assert_eq!(checkpointer.last_checkpoint(), &delivered);
/// # Ok(()) }
/// ```
pub struct Checkpointer {
    lease_key: Arc<str>,
    sink: Arc<dyn CheckpointSink>,
    /// The last position delivered to the processor: nothing beyond it may be checkpointed.
    largest_permitted: Option<ExtendedSequenceNumber>,
    /// The checkpoint as this handle last wrote or saw it.
    last_checkpoint: ExtendedSequenceNumber,
    /// The checkpoint as last written through any handle of this shard (concurrent processors of one shard share
    /// it); writes hold the lock so they reach the store in order and never move the checkpoint back.
    shared: Arc<tokio::sync::Mutex<ShardCheckpoint>>,
}

/// What every handle of one shard's checkpoint shares.
#[derive(Debug)]
struct ShardCheckpoint {
    position: ExtendedSequenceNumber,
    /// Records reported processed ([`Checkpointer::checkpoint_when_due`]) since the last write.
    processed: u64,
    /// When the last write (or the start) was.
    written_at: Instant,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("lease_key", &self.lease_key)
            .field("largest_permitted", &self.largest_permitted)
            .field("last_checkpoint", &self.last_checkpoint)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// A checkpointer for `lease_key` whose stored checkpoint is `current`. Frameworks and tests create these;
    /// processors only use them.
    pub fn new(lease_key: impl Into<Arc<str>>, sink: Arc<dyn CheckpointSink>, current: ExtendedSequenceNumber) -> Self {
        let shared = Arc::new(tokio::sync::Mutex::new(ShardCheckpoint {
            position: current.clone(),
            processed: 0,
            written_at: Instant::now(),
        }));
        Self { lease_key: lease_key.into(), sink, largest_permitted: None, last_checkpoint: current, shared }
    }

    /// Another handle on the same shard's checkpoint (for a concurrent processor of the shard), with nothing
    /// permitted yet.
    pub(crate) fn handle(&self) -> Self {
        Self {
            lease_key: self.lease_key.clone(),
            sink: self.sink.clone(),
            largest_permitted: None,
            last_checkpoint: self.last_checkpoint.clone(),
            shared: self.shared.clone(),
        }
    }

    /// The lease this checkpointer writes to.
    pub fn lease_key(&self) -> &str {
        &self.lease_key
    }

    /// The checkpoint as this handle last wrote or found it (with parallel processing, another processor of the
    /// shard may have moved it further since).
    pub fn last_checkpoint(&self) -> &ExtendedSequenceNumber {
        &self.last_checkpoint
    }

    /// The newest position delivered to the processor, if any.
    pub fn largest_permitted(&self) -> Option<&ExtendedSequenceNumber> {
        self.largest_permitted.as_ref()
    }

    /// Tells the checkpointer that records up to `position` have been handed to the processor.
    pub fn set_largest_permitted(&mut self, position: ExtendedSequenceNumber) {
        if self.largest_permitted.as_ref().is_none_or(|current| position > *current) {
            self.largest_permitted = Some(position);
        }
    }

    /// Permits exactly up to `previous` — the position below which every delivered record has completed — taking
    /// back the permission for records handed to the processor that did not complete (failed, retried, or never
    /// processed before a stop); the last checkpoint stays permitted if the processor checkpointed further inside a
    /// batch before failing. A [`checkpoint`](Self::checkpoint) in `shutdown_requested` then stays before the
    /// unfinished records instead of skipping them.
    pub(crate) fn permit_only(&mut self, previous: Option<ExtendedSequenceNumber>) {
        let checkpointed = self.last_checkpoint.sequence_number().map(|_| self.last_checkpoint.clone());
        self.largest_permitted = match (previous, checkpointed) {
            (Some(previous), Some(checkpointed)) => Some(previous.max(checkpointed)),
            (previous, checkpointed) => previous.or(checkpointed),
        };
    }

    /// Checkpoints everything delivered so far (the last record of the last batch).
    pub async fn checkpoint(&mut self) -> Result<(), KclError> {
        match self.largest_permitted.clone() {
            Some(position) => self.write(position).await,
            None => Ok(()),
        }
    }

    /// Counts `processed` more records as done and, when `interval` says a checkpoint is due (counted and timed since
    /// the last write through any handle of this shard), checkpoints everything delivered so far, as
    /// [`checkpoint`](Self::checkpoint) does. Returns whether it was due.
    ///
    /// For processors that checkpoint themselves: call it at the end of `process_records` with the batch's size, and
    /// still [`checkpoint`](Self::checkpoint) in `shutdown_requested`. On a quiet shard the last records stay
    /// unwritten until the next batch (or the shutdown): a crash redelivers them, nothing is skipped.
    ///
    /// ```
    /// # async fn example(checkpointer: &mut kcl_core::Checkpointer, batch: &kcl_core::Batch) -> Result<(), kcl_core::KclError> {
    /// use std::time::Duration;
    /// use kcl_core::process::CheckpointInterval;
    ///
    /// let interval = CheckpointInterval::every_batch().records(10_000).period(Duration::from_secs(60));
    /// checkpointer.checkpoint_when_due(interval, batch.records.len()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn checkpoint_when_due(
        &mut self,
        interval: CheckpointInterval,
        processed: usize,
    ) -> Result<bool, KclError> {
        if interval.is_every_batch() {
            // Nothing to count or time (and the shard's lock is not taken twice more per batch on the default path).
            if processed == 0 {
                return Ok(false);
            }
            return self.checkpoint().await.map(|()| true);
        }
        let due = {
            let mut shared = self.shared.lock().await;
            shared.processed = shared.processed.saturating_add(processed as u64);
            interval.is_due(shared.processed, shared.written_at.elapsed())
        };
        if !due {
            return Ok(false);
        }
        let written = self.checkpoint().await;
        // Also when nothing new could be written (the delivered position was already stored) or the write failed:
        // the next try comes with the next interval, not at once (a failing store is not hammered; a lost lease
        // stops the shard anyway).
        let mut shared = self.shared.lock().await;
        shared.processed = 0;
        shared.written_at = Instant::now();
        written.map(|()| true)
    }

    /// When `interval`'s period runs out with records processed but not written (None: nothing waits, or no period).
    pub(crate) async fn due_by_time(&self, interval: CheckpointInterval) -> Option<Instant> {
        let period = interval.period_limit()?;
        let shared = self.shared.lock().await;
        (shared.processed > 0).then(|| shared.written_at + period)
    }

    /// Checkpoints at `record`: it and every record before it in the shard are processed.
    pub async fn checkpoint_record(&mut self, record: &Record) -> Result<(), KclError> {
        self.checkpoint_at(record.extended_sequence_number()).await
    }

    /// Checkpoints at an explicit position (a delivered record's sequence and sub-sequence number).
    pub async fn checkpoint_at(&mut self, position: ExtendedSequenceNumber) -> Result<(), KclError> {
        self.validate(&position)?;
        self.write(position).await
    }

    /// Stores a prepared checkpoint and optional application state without moving the checkpoint (two-phase
    /// commit: prepare, make your side effects durable, then [`checkpoint_at`](Self::checkpoint_at)).
    pub async fn prepare_checkpoint(
        &mut self,
        position: ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<(), KclError> {
        self.validate(&position)?;
        self.sink.prepare_checkpoint(&self.lease_key, &position, state).await
    }

    /// Writes `SHARD_END`; only the framework calls this, after the shard's last record was processed.
    pub(crate) async fn checkpoint_shard_end(&mut self) -> Result<(), KclError> {
        self.write(ExtendedSequenceNumber::ShardEnd).await
    }

    fn validate(&self, position: &ExtendedSequenceNumber) -> Result<(), KclError> {
        if position.is_sentinel() {
            return Err(KclError::InvalidCheckpoint(format!(
                "{position} is not a record position; checkpoint a delivered record"
            )));
        }
        match &self.largest_permitted {
            Some(largest) if position <= largest => {}
            _ => {
                return Err(KclError::InvalidCheckpoint(format!(
                    "{position} is beyond the last record delivered to the processor ({}); checkpointing it could \
                     skip records that were never processed",
                    self.largest_permitted.as_ref().map_or_else(|| "none".to_owned(), ToString::to_string)
                )));
            }
        }
        if *position < self.last_checkpoint {
            return Err(KclError::InvalidCheckpoint(format!(
                "{position} is before the current checkpoint {}; checkpoints never go backwards",
                self.last_checkpoint
            )));
        }
        Ok(())
    }

    async fn write(&mut self, position: ExtendedSequenceNumber) -> Result<(), KclError> {
        if position == self.last_checkpoint {
            return Ok(());
        }
        let mut shared = self.shared.lock().await;
        if position <= shared.position {
            // Another processor of this shard already checkpointed at or beyond it.
            self.last_checkpoint = shared.position.clone();
            return Ok(());
        }
        self.sink.checkpoint(&self.lease_key, &position).await?;
        shared.position = position.clone();
        shared.processed = 0;
        shared.written_at = Instant::now();
        self.last_checkpoint = position;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::types::SequenceNumber;

    #[derive(Default)]
    struct RecordingSink {
        written: Mutex<Vec<ExtendedSequenceNumber>>,
    }

    #[async_trait]
    impl CheckpointSink for RecordingSink {
        async fn checkpoint(&self, _lease_key: &str, position: &ExtendedSequenceNumber) -> Result<(), KclError> {
            self.written.lock().unwrap().push(position.clone());
            Ok(())
        }
        async fn prepare_checkpoint(
            &self,
            _lease_key: &str,
            _position: &ExtendedSequenceNumber,
            _state: Option<Bytes>,
        ) -> Result<(), KclError> {
            Ok(())
        }
    }

    fn pos(seq: u128, sub: u64) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::with_sub(SequenceNumber::from_u128(seq), sub)
    }

    #[tokio::test]
    async fn refuses_positions_not_yet_delivered_and_going_backwards() {
        let sink = Arc::new(RecordingSink::default());
        let mut checkpointer = Checkpointer::new("shard-0", sink.clone(), ExtendedSequenceNumber::TrimHorizon);
        // Nothing delivered: a checkpoint() is a no-op and any explicit position is refused.
        checkpointer.checkpoint().await.unwrap();
        assert!(matches!(checkpointer.checkpoint_at(pos(5, 0)).await, Err(KclError::InvalidCheckpoint(_))));

        checkpointer.set_largest_permitted(pos(10, 2));
        assert!(matches!(checkpointer.checkpoint_at(pos(10, 3)).await, Err(KclError::InvalidCheckpoint(_))));
        assert!(matches!(checkpointer.checkpoint_at(pos(11, 0)).await, Err(KclError::InvalidCheckpoint(_))));
        assert!(matches!(
            checkpointer.checkpoint_at(ExtendedSequenceNumber::ShardEnd).await,
            Err(KclError::InvalidCheckpoint(_))
        ));
        checkpointer.checkpoint_at(pos(7, 0)).await.unwrap();
        assert!(matches!(checkpointer.checkpoint_at(pos(6, 0)).await, Err(KclError::InvalidCheckpoint(_))));
        checkpointer.checkpoint().await.unwrap();
        // Checkpointing the same position again writes nothing.
        checkpointer.checkpoint().await.unwrap();
        assert_eq!(*sink.written.lock().unwrap(), vec![pos(7, 0), pos(10, 2)]);
        assert_eq!(checkpointer.last_checkpoint(), &pos(10, 2));
    }

    #[tokio::test]
    async fn revoking_an_unprocessed_batch_keeps_checkpoints_before_it() {
        let sink = Arc::new(RecordingSink::default());
        let mut checkpointer = Checkpointer::new("shard-0", sink.clone(), ExtendedSequenceNumber::TrimHorizon);
        // Nothing processed before the failed batch: nothing may be checkpointed.
        checkpointer.set_largest_permitted(pos(10, 0));
        checkpointer.permit_only(None);
        checkpointer.checkpoint().await.unwrap();
        assert!(matches!(checkpointer.checkpoint_at(pos(10, 0)).await, Err(KclError::InvalidCheckpoint(_))));
        assert!(sink.written.lock().unwrap().is_empty());

        // Processed through 10; the batch 11..=20 failed: a checkpoint stays at 10.
        checkpointer.set_largest_permitted(pos(10, 0));
        checkpointer.checkpoint().await.unwrap();
        checkpointer.set_largest_permitted(pos(20, 0));
        checkpointer.permit_only(Some(pos(10, 0)));
        checkpointer.checkpoint().await.unwrap();
        assert_eq!(checkpointer.largest_permitted(), Some(&pos(10, 0)));

        // The processor checkpointed 25 inside the batch 21..=30 before failing: what it checkpointed stands, and
        // nothing goes backwards.
        checkpointer.set_largest_permitted(pos(30, 0));
        checkpointer.checkpoint_at(pos(25, 0)).await.unwrap();
        checkpointer.permit_only(Some(pos(20, 0)));
        assert_eq!(checkpointer.largest_permitted(), Some(&pos(25, 0)));
        checkpointer.checkpoint().await.unwrap();
        assert_eq!(*sink.written.lock().unwrap(), vec![pos(10, 0), pos(25, 0)]);
    }

    #[tokio::test]
    async fn largest_permitted_never_moves_back() {
        let sink = Arc::new(RecordingSink::default());
        let mut checkpointer = Checkpointer::new("shard-0", sink, ExtendedSequenceNumber::TrimHorizon);
        checkpointer.set_largest_permitted(pos(10, 0));
        checkpointer.set_largest_permitted(pos(3, 0));
        assert_eq!(checkpointer.largest_permitted(), Some(&pos(10, 0)));
    }
}
