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

use async_trait::async_trait;
use tracing::Instrument;

use super::dispatch::Lanes;
use super::lane::{Lane, LaneHalt, LaneShared};
use super::pause::PauseGate;
use super::retry::{Stopped, until_ok};
use super::stop::{StopReason, StopSignal};
use super::watermark::Watermark;
use crate::config::WorkerConfig;
use crate::deaggregate::deaggregate_batch_into_for_shard;
use crate::discover::ShardSyncer;
use crate::error::KclError;
use crate::lease::{Lease, LeaseGeneration, LeaseStore};
use crate::process::{
    CheckpointSink, Checkpointer, InitializeInput, LeaseLostInput, ProcessorFactory, RecordProcessor,
};
use crate::retrieve::{ChildShard, RecordSource, ShardReader, ShardSpec};
use crate::types::{ExtendedSequenceNumber, Record};

/// Fenced writes a consumer makes to its own lease (the worker implements it over the lease coordinator).
#[async_trait]
pub(crate) trait ShardLeaseControl: CheckpointSink {
    /// Records the children of a finished shard on its lease.
    async fn update_child_shards(&self, lease_key: &str, child_shard_ids: &[String]) -> Result<(), KclError>;

    /// Leases were created (children at a shard end): look for leases to take now.
    fn leases_created(&self) {}

    /// The same control with every write made on behalf of `acquisition`, refused once that acquisition ended.
    fn for_acquisition(&self, acquisition: LeaseGeneration) -> Arc<dyn ShardLeaseControl>;
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
#[derive(Clone)]
pub(crate) struct ShardConsumer {
    /// The stream this consumer reads (name or ARN).
    pub(crate) stream: Arc<str>,
    /// The worker's settings, shared by every consumer of the worker.
    pub(crate) config: Arc<WorkerConfig>,
    /// The worker's pause switch (Lambda's `Enabled`).
    pub(crate) pause: PauseGate,
    pub(crate) source: Arc<dyn RecordSource>,
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) control: Arc<dyn ShardLeaseControl>,
    pub(crate) syncer: Arc<ShardSyncer>,
}

impl ShardConsumer {
    /// Runs the lifecycle of `lease` with processors from `factory` (one per lane) until the shard ends or `stop`
    /// fires.
    /// Every write it makes is on behalf of `acquisition`, so a consumer whose acquisition ended cannot move the
    /// checkpoint even after this worker acquired the lease again.
    pub(crate) async fn run<F: ProcessorFactory>(
        &self,
        lease: Lease,
        acquisition: LeaseGeneration,
        factory: &F,
        stop: StopSignal,
    ) -> ConsumerExit {
        let span = tracing::info_span!("shard", shard_id = %lease.shard_id, lease_counter = lease.lease_counter);
        let this = ShardConsumer { control: self.control.for_acquisition(acquisition), ..self.clone() };
        this.run_inner(lease, factory, stop).instrument(span).await
    }

    async fn run_inner<F: ProcessorFactory>(&self, lease: Lease, factory: &F, mut stop: StopSignal) -> ConsumerExit {
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
        let mut processors = Vec::with_capacity(cfg.processing.parallelism);
        for _ in 0..cfg.processing.parallelism.max(1) {
            let mut processor = factory.create(&lease.shard_id);
            let initialized: Result<(), Stopped> =
                until_ok!("initialize", cfg, &mut stop, processor.initialize(input.clone()));
            if initialized.is_err() {
                return ConsumerExit::Stopped(stop.current().unwrap_or(StopReason::LeaseLost));
            }
            processors.push(processor);
        }
        // A windowed processor checkpoints window by window: the framework must not checkpoint for it, and must
        // deliver empty batches on a caught-up shard so windows end on time.
        let windowed = processors.first().and_then(RecordProcessor::tumbling_window).is_some();
        if windowed && cfg.processing.auto_checkpoint() {
            return ConsumerExit::Failed(KclError::InvalidConfig(
                "a tumbling-window processor checkpoints window by window: use parallelism 1 and \
                 Checkpointing::Manual (the defaults)"
                    .to_owned(),
            ));
        }
        let sink: Arc<dyn CheckpointSink> = self.control.clone();
        let checkpointer = Checkpointer::new(lease.lease_key.as_str(), sink, lease.checkpoint.clone());
        let (exit, mut lanes) = self.process_shard(&lease, processors, checkpointer, windowed, &mut stop).await;
        // The reason as it is now, not as it was when the stop was first seen: a graceful stop (handoff, shutdown)
        // waits for the batches in flight, and if one outlives the handoff timeout the lease is lost meanwhile. The
        // processors must then hear `lease_lost`, not `shutdown_requested` (whose checkpoint would be refused).
        let exit = match exit {
            ConsumerExit::Stopped(_) => ConsumerExit::Stopped(stop.current().unwrap_or(StopReason::LeaseLost)),
            other => other,
        };
        match &exit {
            ConsumerExit::Stopped(StopReason::LeaseLost) => {
                for lane in &mut lanes {
                    lane.processor.lease_lost(LeaseLostInput { shard_id: lease.shard_id.clone() }).await;
                }
            }
            ConsumerExit::Stopped(StopReason::Shutdown | StopReason::Handoff) => {
                if let Some(first) = lanes.first_mut()
                    && cfg.processing.auto_checkpoint()
                {
                    first.checkpoint_watermark().await;
                }
                for lane in &mut lanes {
                    lane.permit_watermark();
                    if let Err(error) = lane.processor.shutdown_requested(&mut lane.checkpointer).await {
                        tracing::warn!(%error, "shutdown_requested failed; records since the last checkpoint will be redelivered");
                    }
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
                    Ok(None) => self.parent_without_lease_is_finished(lease, parent).await,
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

    /// A parent with no lease counts as finished when nothing has to wait for it: the child starts at the
    /// application's initial position (`LATEST`, a timestamp: it has no ancestry to respect), or has started already,
    /// or the parent shard has left the stream (past retention). A child that starts from its beginning while the
    /// parent is still listed waits: the parent's lease is yet to be created. That happens to a merge child, created
    /// at the end of one parent from its `ChildShards` while the other parent (itself a young child) has no lease yet;
    /// treating the absence as "finished" started the child first and broke per-key order (found by the chaos suite).
    /// Its lease comes from that parent's own parent ending, or from the next shard sync. Finished leases are deleted
    /// only once all their children have started, so a deleted parent never holds this child back.
    async fn parent_without_lease_is_finished(&self, child: &Lease, parent: &str) -> bool {
        if !matches!(child.checkpoint, ExtendedSequenceNumber::TrimHorizon | ExtendedSequenceNumber::AtTimestamp(None))
        {
            return true;
        }
        match self.syncer.shard_listed(parent).await {
            Ok(listed) => {
                if listed {
                    tracing::debug!(parent, "the parent shard has no lease yet; waiting for it");
                }
                !listed
            }
            Err(error) => {
                tracing::warn!(parent, %error, "could not list shards to find the parent shard; will retry");
                false
            }
        }
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

    /// Reads, de-aggregates, filters and batches the shard's records and hands them to the lanes; at the shard end
    /// finishes it. Returns how it ended and the lanes (for the processors' final callbacks).
    async fn process_shard<P: RecordProcessor>(
        &self,
        lease: &Lease,
        processors: Vec<P>,
        checkpointer: Checkpointer,
        windowed: bool,
        stop: &mut StopSignal,
    ) -> (ConsumerExit, Vec<Lane<P>>) {
        let cfg = &self.config;
        let mut spec = ShardSpec::new(self.stream.clone(), lease.shard_id.as_str());
        spec.hash_key_range = lease.hash_key_range;
        let start = lease.checkpoint.sequence_number().map(|_| lease.checkpoint.clone());
        // Records at or below this position were processed before a restart (possibly inside an aggregate).
        let mut skip_through = start.clone();
        let watermark = Arc::new(std::sync::Mutex::new(Watermark::new(start)));
        let shared = Arc::new(LaneShared {
            stream: self.stream.clone(),
            shard_id: Arc::from(lease.shard_id.as_str()),
            policy: cfg.effective_retry_policy(),
            destination: cfg.failure_destination.clone(),
            watermark: watermark.clone(),
            auto_checkpoint: cfg.processing.auto_checkpoint(),
            checkpoint_interval: cfg.processing.checkpoint_interval,
            single: processors.len() == 1,
        });
        let mut lanes = Lanes::start(processors, &checkpointer, shared, &cfg.processing, stop);
        let records_filtered =
            metrics::counter!(crate::telemetry::RECORDS_FILTERED, "stream" => self.stream.to_string());
        let mut reader = match self.open_reader(&spec, &lease.checkpoint, stop).await {
            Ok(reader) => Some(reader),
            Err(exit) => return (exit, lanes.finish().await.0),
        };
        // The read in progress owns the reader, so waiting for the batching window never cancels a read.
        let mut reading: Option<ReadFuture> = None;
        let mut buffer = Vec::new();
        let mut last_read: Option<ExtendedSequenceNumber> = None;
        let mut pause = self.pause.clone();
        let empty_calls = cfg.call_process_records_even_for_empty || windowed;
        let ended: Result<Vec<ChildShard>, ConsumerExit> = loop {
            let paused = pause.is_paused();
            if reading.is_none()
                && !paused
                && let Some(mut taken) = reader.take()
            {
                reading = Some(Box::pin(async move {
                    let read = taken.next_batch().await;
                    (taken, read)
                }));
            }
            let deadline = lanes.deadline();
            let event = tokio::select! {
                biased;
                reason = stop.requested() => break Err(ConsumerExit::Stopped(reason)),
                halt = lanes.halted() => Event::Halted(halt),
                () = pause.changed() => Event::Deadline,
                _ = sleep_until(deadline), if deadline.is_some() && !paused => Event::Deadline,
                (taken, read) = async {
                    match reading.as_mut() {
                        Some(read) => read.await,
                        None => futures::future::pending().await,
                    }
                }, if reading.is_some() => {
                    reading = None;
                    reader = Some(taken);
                    Event::Read(read)
                }
            };
            let read = match event {
                Event::Halted(halt) => break Err(self.halted(halt, stop).await),
                Event::Deadline => {
                    // A window's deadline, or the pause switch flipped: send what is due unless paused.
                    if pause.is_paused() {
                        continue;
                    }
                    if let Err(halt) = lanes.send_ready(false, None, stop).await {
                        break Err(self.halted(halt, stop).await);
                    }
                    continue;
                }
                Event::Read(Ok(read)) => read,
                Event::Read(Err(error)) if error.is_retryable() => {
                    // The reader gave up after its own retries: reopen after the last record read.
                    tracing::warn!(%error, "reader gave up; reopening after the last record read");
                    let from = last_read.clone().unwrap_or_else(|| lease.checkpoint.clone());
                    match self.open_reader(&spec, &from, stop).await {
                        Ok(opened) => reader = Some(opened),
                        Err(exit) => break Err(exit),
                    }
                    continue;
                }
                Event::Read(Err(error)) => break Err(ConsumerExit::Failed(error)),
            };
            deaggregate_batch_into_for_shard(read.records, spec.hash_key_range, &mut buffer);
            if let Some(skip) = &skip_through {
                buffer.retain(|record| record.extended_sequence_number() > *skip);
                if !buffer.is_empty() {
                    skip_through = None;
                }
            }
            let read_len = buffer.len();
            let read_any = read_len > 0;
            if let Some(last) = buffer.last() {
                last_read = Some(last.extended_sequence_number());
            }
            if let Ok(mut watermark) = watermark.lock() {
                for record in buffer.drain(..) {
                    let index = watermark.register(record.extended_sequence_number());
                    match &cfg.filter {
                        Some(filter) if !filter.keeps(&record) => {
                            watermark.complete(index);
                            records_filtered.increment(1);
                        }
                        _ => lanes.push(record, index),
                    }
                }
            }
            // Keep room for a read like this one (the next is usually similar) instead of regrowing every read.
            buffer = recycle(buffer, read_len);
            if pause.is_paused() && !read.shard_end {
                // Paused during the read: its records wait in the lanes' buffers until resumed.
                continue;
            }
            let empty_call = !read_any && lanes.nothing_buffered() && empty_calls;
            let sent = if empty_call {
                lanes.send_empty(read.millis_behind_latest, stop).await
            } else {
                lanes.send_ready(read.shard_end, read.millis_behind_latest, stop).await
            };
            if let Err(halt) = sent {
                break Err(self.halted(halt, stop).await);
            }
            if read.shard_end {
                break Ok(read.child_shards.unwrap_or_default());
            }
        };
        let (mut lanes, halt) = lanes.finish().await;
        let exit = match (ended, halt) {
            (Err(exit), _) => exit,
            (Ok(_), Some(halt)) => self.halted(halt, stop).await,
            (Ok(children), None) => self.finish_shard(lease, &mut lanes, stop, children).await,
        };
        (exit, lanes)
    }

    /// A lane halted: when blocked, the shard stays where it is (nothing more is read or delivered) until the worker
    /// stops the consumer.
    async fn halted(&self, halt: LaneHalt, stop: &mut StopSignal) -> ConsumerExit {
        if halt == LaneHalt::Blocked {
            tracing::error!("the shard is blocked: a record's retries ran out (on_exhausted = Block)");
        }
        ConsumerExit::Stopped(stop.requested().await)
    }

    /// Creates and records the children, lets the processors flush, then writes `SHARD_END`.
    async fn finish_shard<P: RecordProcessor>(
        &self,
        lease: &Lease,
        lanes: &mut [Lane<P>],
        stop: &mut StopSignal,
        children: Vec<ChildShard>,
    ) -> ConsumerExit {
        let cfg = &self.config;
        let child_ids: Vec<String> = children.iter().map(|child| child.shard_id.clone()).collect();
        let steps = async {
            let created: Vec<String> =
                until_ok!("create_child_leases", cfg, stop, self.syncer.create_child_leases(&children))?;
            if !created.is_empty() {
                self.control.leases_created();
            }
            if !child_ids.is_empty() {
                until_ok!(
                    "update_child_shards",
                    cfg,
                    stop,
                    self.control.update_child_shards(&lease.lease_key, &child_ids)
                )?;
            }
            for lane in lanes.iter_mut() {
                lane.permit_watermark();
                until_ok!("shard_ended", cfg, stop, lane.processor.shard_ended(&mut lane.checkpointer))?;
            }
            Ok::<(), Stopped>(())
        };
        let finished: Result<(), Stopped> = steps.await;
        if finished.is_err() {
            return ConsumerExit::Stopped(stop.current().unwrap_or(StopReason::LeaseLost));
        }
        let Some(first) = lanes.first_mut() else {
            return ConsumerExit::Failed(KclError::InvalidConfig("a shard consumer without processors".to_owned()));
        };
        match first.checkpointer.checkpoint_shard_end().await {
            Ok(()) => {
                tracing::info!(children = ?child_ids, "shard finished");
                ConsumerExit::ShardEnded
            }
            Err(KclError::LeaseLost { .. }) => ConsumerExit::Stopped(StopReason::LeaseLost),
            Err(error) => ConsumerExit::Failed(error),
        }
    }
}

/// A read in progress: it owns the reader and gives it back with the result.
type ReadFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = (Box<dyn ShardReader>, Result<crate::retrieve::ReadBatch, KclError>)> + Send>,
>;

/// What woke the read loop.
enum Event {
    Read(Result<crate::retrieve::ReadBatch, KclError>),
    Deadline,
    Halted(LaneHalt),
}

/// Sleeps until `deadline` (forever without one; the select guards that branch anyway).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => futures::future::pending().await,
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
