//! `ShardConsumer`: the per-shard task. Ordering and at-least-once live here:
//!
//! * a shard is processed only after every parent's lease reaches `SHARD_END` (or is gone): children never
//!   overtake parents after a split or merge;
//! * a batch is retried (same records, same processor) until `process_records` succeeds — the checkpointer only
//!   permits positions that were delivered, so the checkpoint never passes an unprocessed record;
//! * after a restart inside a KPL aggregate, user records at or below the checkpoint are dropped;
//! * at the shard end the child leases are created and recorded, the processor's `shard_ended` runs, and the
//!   framework writes `SHARD_END` itself.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tracing::Instrument;

use super::retry::{Stopped, until_ok};
use crate::KclError;
use crate::deaggregate::deaggregate_batch_into_for_shard;
use crate::discover::ShardSyncer;
use crate::lease::{Lease, LeaseStore};
use crate::process::{Batch, CheckpointSink, Checkpointer, InitializeInput, LeaseLostInput, RecordProcessor};
use crate::retrieve::{ChildShard, RecordSource, ShardReader, ShardSpec};
use crate::types::{ExtendedSequenceNumber, InitialPosition, Record};

/// Fenced writes a consumer makes to its own lease (the worker implements it over the lease coordinator).
#[async_trait]
pub(crate) trait ShardLeaseControl: CheckpointSink {
    /// Records the children of a finished shard on its lease.
    async fn update_child_shards(&self, lease_key: &str, child_shard_ids: &[String]) -> Result<(), KclError>;
}

/// Why the worker stops a consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The worker is shutting down: checkpoint and stop (`shutdown_requested`).
    Shutdown,
    /// The lease is being handed to another worker: checkpoint and stop (`shutdown_requested`).
    Handoff,
    /// The lease was lost: stop without checkpointing (`lease_lost`).
    LeaseLost,
}

/// The receiving side of a stop request.
#[derive(Clone, Debug)]
pub(crate) struct StopSignal(watch::Receiver<Option<StopReason>>);

impl StopSignal {
    /// A signal and the sender that fires it.
    pub(crate) fn new() -> (watch::Sender<Option<StopReason>>, Self) {
        let (tx, rx) = watch::channel(None);
        (tx, Self(rx))
    }

    /// The stop requested so far, if any.
    pub(crate) fn current(&self) -> Option<StopReason> {
        *self.0.borrow()
    }

    /// Resolves once a stop is requested (at once if it already was). If the sender is dropped the worker is gone,
    /// which is treated as a lost lease: nothing may be checkpointed any more.
    pub(crate) async fn requested(&mut self) -> StopReason {
        match self.0.wait_for(Option::is_some).await {
            Ok(reason) => reason.unwrap_or(StopReason::LeaseLost),
            Err(_) => StopReason::LeaseLost,
        }
    }
}

/// Settings of the per-shard lifecycle.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerConfig {
    pub(crate) stream: Arc<str>,
    pub(crate) initial_position: InitialPosition,
    pub(crate) parent_poll_interval: Duration,
    pub(crate) retry_base: Duration,
    pub(crate) retry_cap: Duration,
    pub(crate) call_process_records_even_for_empty: bool,
}

/// How a consumer ended.
#[derive(Debug)]
pub(crate) enum ConsumerExit {
    /// Every record was processed and `SHARD_END` was written.
    ShardEnded,
    /// The lease already said `SHARD_END`: nothing to do.
    AlreadyFinished,
    /// Stopped on request.
    Stopped(StopReason),
    /// A non-retryable error (for example the stream or shard no longer exists).
    Failed(KclError),
}

/// Everything a consumer needs besides its lease and processor.
pub(crate) struct ShardConsumer {
    pub(crate) config: ConsumerConfig,
    pub(crate) source: Arc<dyn RecordSource>,
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) control: Arc<dyn ShardLeaseControl>,
    pub(crate) syncer: Arc<ShardSyncer>,
}

impl ShardConsumer {
    /// Runs the lifecycle of `lease` with `processor` until the shard ends or `stop` fires.
    pub(crate) async fn run<P: RecordProcessor>(&self, lease: Lease, processor: P, stop: StopSignal) -> ConsumerExit {
        let span = tracing::info_span!("shard", shard_id = %lease.shard_id, lease_counter = lease.lease_counter);
        self.run_inner(lease, processor, stop).instrument(span).await
    }

    async fn run_inner<P: RecordProcessor>(
        &self,
        lease: Lease,
        mut processor: P,
        mut stop: StopSignal,
    ) -> ConsumerExit {
        if lease.checkpoint.is_shard_end() {
            return ConsumerExit::AlreadyFinished;
        }
        if let Err(Stopped) = self.wait_for_parents(&lease, &mut stop).await {
            // Nothing was delivered, so there is nothing to checkpoint and no processor to tell.
            return ConsumerExit::Stopped(stop.current().unwrap_or(StopReason::LeaseLost));
        }
        let cfg = &self.config;
        let input = InitializeInput {
            shard_id: lease.shard_id.clone(),
            lease_key: lease.lease_key.clone(),
            checkpoint: lease.checkpoint.clone(),
            pending_checkpoint: lease.pending_checkpoint.clone(),
            pending_checkpoint_state: lease.pending_checkpoint_state.clone(),
        };
        let initialized: Result<(), Stopped> =
            until_ok!("initialize", cfg, &mut stop, processor.initialize(input.clone()));
        if initialized.is_err() {
            return ConsumerExit::Stopped(stop.current().unwrap_or(StopReason::LeaseLost));
        }
        let sink: Arc<dyn CheckpointSink> = self.control.clone();
        let mut checkpointer = Checkpointer::new(lease.lease_key.as_str(), sink, lease.checkpoint.clone());
        let exit = self.process_shard(&lease, &mut processor, &mut checkpointer, &mut stop).await;
        match &exit {
            ConsumerExit::Stopped(StopReason::LeaseLost) => {
                processor.lease_lost(LeaseLostInput { shard_id: lease.shard_id.clone() }).await;
            }
            ConsumerExit::Stopped(StopReason::Shutdown | StopReason::Handoff) => {
                if let Err(error) = processor.shutdown_requested(&mut checkpointer).await {
                    tracing::warn!(%error, "shutdown_requested failed; records since the last checkpoint will be redelivered");
                }
            }
            _ => {}
        }
        exit
    }

    /// Waits until every parent lease is finished (`SHARD_END`) or gone, polling the store.
    async fn wait_for_parents(&self, lease: &Lease, stop: &mut StopSignal) -> Result<(), Stopped> {
        for parent in &lease.parent_shard_ids {
            let parent_key = match &lease.stream_identifier {
                Some(stream) => format!("{stream}:{parent}"),
                None => parent.clone(),
            };
            loop {
                let finished = match self.store.get_lease(&parent_key).await {
                    Ok(None) => true,
                    Ok(Some(parent_lease)) => parent_lease.checkpoint.is_shard_end(),
                    Err(error) => {
                        tracing::warn!(parent = %parent_key, %error, "could not read the parent lease; will retry");
                        false
                    }
                };
                if finished {
                    break;
                }
                tracing::debug!(parent = %parent_key, "waiting for the parent shard to finish");
                tokio::select! {
                    biased;
                    _ = stop.requested() => return Err(Stopped),
                    _ = tokio::time::sleep(self.config.parent_poll_interval) => {}
                }
            }
        }
        Ok(())
    }

    async fn open_reader(
        &self,
        spec: &ShardSpec,
        from: &ExtendedSequenceNumber,
        stop: &mut StopSignal,
    ) -> Result<Box<dyn ShardReader>, ConsumerExit> {
        let mut backoff = crate::retrieve::Backoff::new(self.config.retry_base, self.config.retry_cap);
        loop {
            match self.source.open(spec, from, &self.config.initial_position).await {
                Ok(reader) => return Ok(reader),
                Err(error) if error.is_retryable() => {
                    tracing::warn!(%error, "could not open the shard; retrying");
                }
                Err(error) => return Err(ConsumerExit::Failed(error)),
            }
            tokio::select! {
                biased;
                reason = stop.requested() => return Err(ConsumerExit::Stopped(reason)),
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn process_shard<P: RecordProcessor>(
        &self,
        lease: &Lease,
        processor: &mut P,
        checkpointer: &mut Checkpointer,
        stop: &mut StopSignal,
    ) -> ConsumerExit {
        let cfg = &self.config;
        let mut spec = ShardSpec::new(cfg.stream.clone(), lease.shard_id.as_str());
        spec.hash_key_range = lease.hash_key_range;
        let shard_id: Arc<str> = Arc::from(lease.shard_id.as_str());
        // Records at or below this position were processed before a restart (possibly inside an aggregate).
        let mut skip_through = lease.checkpoint.sequence_number().map(|_| lease.checkpoint.clone());
        let mut reader = match self.open_reader(&spec, &lease.checkpoint, stop).await {
            Ok(reader) => reader,
            Err(exit) => return exit,
        };
        // One vector for every batch: processors only borrow a batch, so it comes back after each one (see
        // `recycle`). The metric handle is registered once, not per batch.
        let mut records: Vec<Record> = Vec::new();
        let records_processed = metrics::counter!("kcl_records_processed_total", "stream" => cfg.stream.to_string());
        loop {
            let read = tokio::select! {
                biased;
                reason = stop.requested() => return ConsumerExit::Stopped(reason),
                read = reader.next_batch() => read,
            };
            let read = match read {
                Ok(read) => read,
                Err(error) if error.is_retryable() => {
                    // The reader gave up after its own retries: reopen after the last delivered record.
                    tracing::warn!(%error, "reader gave up; reopening after the last delivered record");
                    let from = checkpointer.largest_permitted().cloned().unwrap_or_else(|| lease.checkpoint.clone());
                    reader = match self.open_reader(&spec, &from, stop).await {
                        Ok(reader) => reader,
                        Err(exit) => return exit,
                    };
                    continue;
                }
                Err(error) => return ConsumerExit::Failed(error),
            };
            debug_assert!(records.is_empty(), "the previous batch was delivered and recycled");
            deaggregate_batch_into_for_shard(read.records, spec.hash_key_range, &mut records);
            if let Some(skip) = &skip_through {
                records.retain(|record| record.extended_sequence_number() > *skip);
                if !records.is_empty() {
                    skip_through = None;
                }
            }
            // Permitted before processing so the processor can checkpoint inside the batch; taken back below if the
            // batch is never processed.
            let permitted_before = checkpointer.largest_permitted().cloned();
            if let Some(last) = records.last() {
                checkpointer.set_largest_permitted(last.extended_sequence_number());
            }
            if !records.is_empty() || cfg.call_process_records_even_for_empty {
                let delivered = records.len();
                let batch =
                    Batch { records, millis_behind_latest: read.millis_behind_latest, shard_id: shard_id.clone() };
                let processed: Result<(), Stopped> =
                    until_ok!("process_records", cfg, stop, processor.process_records(&batch, checkpointer));
                if processed.is_err() {
                    // Stopped while retrying a failed batch: it stays unprocessed and uncheckpointed, also by the
                    // `checkpoint()` a processor typically makes in `shutdown_requested`.
                    checkpointer.revoke_unprocessed(permitted_before);
                    return ConsumerExit::Stopped(stop.current().unwrap_or(StopReason::LeaseLost));
                }
                records = recycle(batch.records, delivered);
                records_processed.increment(delivered as u64);
            } else {
                // Nothing new (caught up): give back the room the last batches needed.
                records = recycle(records, 0);
            }
            if read.shard_end {
                return self
                    .finish_shard(lease, processor, checkpointer, stop, read.child_shards.unwrap_or_default())
                    .await;
            }
        }
    }

    /// Creates and records the children, lets the processor flush, then writes `SHARD_END`.
    async fn finish_shard<P: RecordProcessor>(
        &self,
        lease: &Lease,
        processor: &mut P,
        checkpointer: &mut Checkpointer,
        stop: &mut StopSignal,
        children: Vec<ChildShard>,
    ) -> ConsumerExit {
        let cfg = &self.config;
        let child_ids: Vec<String> = children.iter().map(|child| child.shard_id.clone()).collect();
        let steps = async {
            let _created: Vec<String> =
                until_ok!("create_child_leases", cfg, stop, self.syncer.create_child_leases(&children))?;
            if !child_ids.is_empty() {
                until_ok!(
                    "update_child_shards",
                    cfg,
                    stop,
                    self.control.update_child_shards(&lease.lease_key, &child_ids)
                )?;
            }
            until_ok!("shard_ended", cfg, stop, processor.shard_ended(checkpointer))
        };
        let finished: Result<(), Stopped> = steps.await;
        if finished.is_err() {
            return ConsumerExit::Stopped(stop.current().unwrap_or(StopReason::LeaseLost));
        }
        match checkpointer.checkpoint_shard_end().await {
            Ok(()) => {
                tracing::info!(children = ?child_ids, "shard finished");
                ConsumerExit::ShardEnded
            }
            Err(KclError::LeaseLost { .. }) => ConsumerExit::Stopped(StopReason::LeaseLost),
            Err(error) => ConsumerExit::Failed(error),
        }
    }
}

/// Room for this many records is always kept in a consumer's batch vector once it has grown (a few KiB: a worker
/// may hold many idle shards).
const MIN_KEPT_CAPACITY: usize = 64;

/// Empties a delivered batch's vector for the next batch. It keeps room for a batch like this one (the next is
/// usually similar) and gives back the rest, so a shard whose batches got smaller, or that caught up (`delivered`
/// is 0 after an empty read), does not hold on to the memory of its largest batch.
pub(super) fn recycle(mut records: Vec<Record>, delivered: usize) -> Vec<Record> {
    records.clear();
    records.shrink_to(delivered.saturating_mul(2).max(MIN_KEPT_CAPACITY));
    records
}
