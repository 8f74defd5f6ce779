//! A lane: one processor of a shard and the retry engine around it. A shard has 1..=parallelism lanes; records
//! are spread over them by partition key, and each lane processes its deliveries one after the other, so a key's
//! records stay in order. Here live the batch semantics: partial failures, retries with backoff, bisection, the
//! maximum record age, the failure destination, blocking — and the rule that a record completes (and the
//! checkpoint may pass it) only when it was processed or durably accepted by the destination.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::FutureExt;
use metrics::{Counter, Gauge, Histogram};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::retry::panic_message;
use super::stop::StopSignal;
use super::watermark::Watermark;
use crate::process::failure::{FailedRecords, FailureDestination, FailureReason};
use crate::process::{
    Batch, CheckpointInterval, Checkpointer, OnExhausted, PartialRetry, RecordProcessor, RetryPolicy,
};
use crate::retrieve::Backoff;
use crate::telemetry;
use crate::types::{ExtendedSequenceNumber, Record};

/// What every lane of a shard shares.
pub(crate) struct LaneShared {
    pub(crate) stream: Arc<str>,
    pub(crate) shard_id: Arc<str>,
    pub(crate) policy: RetryPolicy,
    pub(crate) destination: Option<Arc<dyn FailureDestination>>,
    pub(crate) watermark: Arc<Mutex<Watermark>>,
    /// The framework checkpoints the watermark after deliveries, when `checkpoint_interval` says it is due.
    pub(crate) auto_checkpoint: bool,
    pub(crate) checkpoint_interval: CheckpointInterval,
    /// One lane only: the processor may checkpoint inside the batch it is given (Java KCL's model).
    pub(crate) single: bool,
}

/// Records handed to a lane, in shard order, with their watermark indices.
pub(crate) struct Delivery {
    pub(crate) records: Vec<Record>,
    pub(crate) indices: Vec<u64>,
    pub(crate) millis_behind_latest: Option<u64>,
}

/// Why a lane stopped before its input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaneHalt {
    /// A stop was requested.
    Stopped,
    /// Retries ran out and the policy says block: the shard stops here.
    Blocked,
}

/// Records retried together and their failure history.
struct WorkItem {
    records: Vec<Record>,
    indices: Vec<u64>,
    failed_calls: u32,
    first_failure: Option<SystemTime>,
    last_error: String,
}

/// How a call ended, in terms of offsets into the work item.
enum CallOutcome {
    Succeeded,
    Failed { error: String, failed: Option<Vec<usize>> },
}

pub(crate) struct Lane<P> {
    pub(crate) processor: P,
    pub(crate) checkpointer: Checkpointer,
    shared: Arc<LaneShared>,
    backoff: Backoff,
    metrics: LaneMetrics,
    /// Records this lane completed since it last reported them to the checkpointer's interval count.
    completed: u64,
}

/// The handles bumped on every call, registered once per lane so the hot path allocates no labels.
struct LaneMetrics {
    attempts: Counter,
    duration: Histogram,
    records: Counter,
    bytes: Counter,
    pending: Gauge,
}

impl LaneMetrics {
    fn new(shared: &LaneShared) -> Self {
        let (stream, shard) = (shared.stream.to_string(), shared.shard_id.to_string());
        Self {
            attempts: metrics::counter!(telemetry::PROCESS_ATTEMPTS, "stream" => stream.clone()),
            duration: metrics::histogram!(telemetry::PROCESS_DURATION, "stream" => stream.clone()),
            records: metrics::counter!(telemetry::RECORDS_PROCESSED, "stream" => stream.clone(), "shard" => shard.clone()),
            bytes: metrics::counter!(telemetry::BYTES_PROCESSED, "stream" => stream.clone(), "shard" => shard.clone()),
            pending: metrics::gauge!(telemetry::WATERMARK_PENDING, "stream" => stream, "shard" => shard),
        }
    }
}

impl<P: RecordProcessor> Lane<P> {
    pub(crate) fn new(processor: P, checkpointer: Checkpointer, shared: Arc<LaneShared>) -> Self {
        let backoff = Backoff::new(shared.policy.backoff_base, shared.policy.backoff_cap);
        let metrics = LaneMetrics::new(&shared);
        Self { processor, checkpointer, shared, backoff, metrics, completed: 0 }
    }

    /// Processes deliveries until the input closes (`Ok`) or the lane halts.
    pub(crate) async fn run(
        mut self,
        mut input: mpsc::Receiver<Delivery>,
        mut stop: StopSignal,
    ) -> (Self, Result<(), LaneHalt>) {
        let in_flight = metrics::gauge!(telemetry::BATCHES_IN_FLIGHT, "stream" => self.shared.stream.to_string());
        loop {
            // With a checkpoint period, records completed but not yet written are written when it runs out, even
            // when no further delivery comes (a quiet shard). `recv` is cancel-safe: nothing is lost to the race.
            let flush_at = match self.shared.auto_checkpoint {
                true => self.checkpointer.due_by_time(self.shared.checkpoint_interval).await,
                false => None,
            };
            let delivery = tokio::select! {
                delivery = input.recv() => delivery,
                () = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                    self.checkpoint_watermark_when_due().await;
                    continue;
                }
            };
            let Some(delivery) = delivery else { break };
            let result =
                if stop.current().is_some() { Err(LaneHalt::Stopped) } else { self.deliver(delivery, &mut stop).await };
            in_flight.decrement(1.0);
            if let Err(halt) = result {
                // Deliveries still queued stay pending: the checkpoint never passes them.
                while input.try_recv().is_ok() {
                    in_flight.decrement(1.0);
                }
                return (self, Err(halt));
            }
        }
        (self, Ok(()))
    }

    async fn deliver(&mut self, delivery: Delivery, stop: &mut StopSignal) -> Result<(), LaneHalt> {
        let millis_behind_latest = delivery.millis_behind_latest;
        if delivery.records.is_empty() {
            // An empty batch (call_process_records_even_for_empty) has nothing to lose: one call, no retry.
            let batch = Batch { records: Vec::new(), millis_behind_latest, shard_id: self.shared.shard_id.clone() };
            self.permit(None);
            let call = std::panic::AssertUnwindSafe(self.processor.process_records(&batch, &mut self.checkpointer));
            if let Err(error) = call
                .catch_unwind()
                .await
                .map_err(|panic| panic_message(&panic).to_owned())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                tracing::warn!(%error, "process_records failed on an empty batch");
            }
            return Ok(());
        }
        let mut queue = VecDeque::from([WorkItem {
            records: delivery.records,
            indices: delivery.indices,
            failed_calls: 0,
            first_failure: None,
            last_error: String::new(),
        }]);
        while let Some(mut item) = queue.pop_front() {
            if stop.current().is_some() {
                return Err(LaneHalt::Stopped);
            }
            // Lambda's MaximumRecordAgeInSeconds: records already too old when their batch is formed (a consumer far
            // behind, a shard blocked for a while) are given up before any call, not only when a retry is due.
            self.give_up_old_records(&mut item, stop).await?;
            if item.records.is_empty() {
                continue;
            }
            let (item_back, outcome) = self.call(item, millis_behind_latest).await;
            item = item_back;
            match outcome {
                CallOutcome::Succeeded => {
                    self.backoff.reset();
                    self.complete(&item.indices, &item.records);
                }
                CallOutcome::Failed { error, failed: None } => {
                    item.first_failure.get_or_insert_with(SystemTime::now);
                    item.last_error = error;
                    if self.shared.policy.bisect_on_error && item.records.len() > 1 {
                        metrics::counter!(telemetry::BISECTS, "stream" => self.shared.stream.to_string()).increment(1);
                        let (left, right) = split(item);
                        queue.push_front(right);
                        queue.push_front(left);
                        continue;
                    }
                    item.failed_calls += 1;
                    if self.exhausted(item.failed_calls) {
                        self.give_up(item, FailureReason::AttemptsExhausted, stop).await?;
                    } else {
                        self.wait(stop).await?;
                        queue.push_front(item);
                    }
                }
                CallOutcome::Failed { error, failed: Some(offsets) } => {
                    item.first_failure.get_or_insert_with(SystemTime::now);
                    item.last_error = error;
                    item.failed_calls += 1;
                    let failed: HashSet<usize> = offsets.iter().copied().collect();
                    if self.exhausted(item.failed_calls) {
                        // Only the records that failed in this call are given up; the others were processed by it.
                        let (given_up, processed) = select(item, |offset, _| failed.contains(&offset));
                        self.complete(&processed.indices, &processed.records);
                        self.give_up(given_up, FailureReason::AttemptsExhausted, stop).await?;
                        continue;
                    }
                    let lowest = offsets.first().copied().unwrap_or(0);
                    let (retry, done) = match self.shared.policy.partial_retry {
                        PartialRetry::FromLowestFailure => select(item, |offset, _| offset >= lowest),
                        PartialRetry::FailedOnly => {
                            let keys: HashSet<Arc<str>> = offsets
                                .iter()
                                .filter_map(|&o| item.records.get(o))
                                .map(|r| r.partition_key.clone())
                                .collect();
                            select(item, |offset, record| {
                                offset >= lowest && (failed.contains(&offset) || keys.contains(&record.partition_key))
                            })
                        }
                    };
                    self.complete(&done.indices, &done.records);
                    self.wait(stop).await?;
                    queue.push_front(retry);
                }
            }
        }
        if self.shared.auto_checkpoint {
            self.checkpoint_watermark_when_due().await;
        }
        Ok(())
    }
}

impl<P: RecordProcessor> Lane<P> {
    /// Calls the processor once with the item's records; a panic counts as a whole-batch failure.
    async fn call(&mut self, item: WorkItem, millis_behind_latest: Option<u64>) -> (WorkItem, CallOutcome) {
        let WorkItem { records, indices, failed_calls, first_failure, last_error } = item;
        self.permit(records.last().map(Record::extended_sequence_number));
        let batch = Batch { records, millis_behind_latest, shard_id: self.shared.shard_id.clone() };
        self.metrics.attempts.increment(1);
        let call = std::panic::AssertUnwindSafe(self.processor.process_records(&batch, &mut self.checkpointer));
        let started = std::time::Instant::now();
        let result = call.catch_unwind().await;
        self.metrics.duration.record(started.elapsed());
        let item = WorkItem { records: batch.records, indices, failed_calls, first_failure, last_error };
        let outcome = match result {
            Ok(Ok(())) => CallOutcome::Succeeded,
            Ok(Err(failure)) => {
                let (error, positions) = failure.into_parts();
                let error = error.to_string();
                match positions {
                    None => CallOutcome::Failed { error, failed: None },
                    Some(positions) => self.locate(&item, positions, error),
                }
            }
            Err(panic) => {
                metrics::counter!(telemetry::PROCESSOR_PANICS, "call" => "process_records").increment(1);
                CallOutcome::Failed { error: format!("panicked: {}", panic_message(&panic)), failed: None }
            }
        };
        if let CallOutcome::Failed { error, failed } = &outcome {
            let kind = if failed.is_some() { "partial" } else { "batch" };
            metrics::counter!(telemetry::PROCESS_FAILURES, "stream" => self.shared.stream.to_string(), "kind" => kind)
                .increment(1);
            tracing::warn!(
                %error,
                records = item.records.len(),
                failed = failed.as_ref().map(Vec::len),
                previous_failures = item.failed_calls,
                "process_records failed"
            );
        }
        // Nothing beyond what has completed may be checkpointed until it completes.
        self.permit(None);
        (item, outcome)
    }

    /// Maps reported failed positions to offsets in `item`. Lambda's rules: an empty list is a success, a position
    /// not in the batch makes the whole batch fail. Positions at or below a checkpoint the processor wrote during
    /// the call cannot be retried (the checkpoint is stored); they count as processed, with a warning.
    fn locate(&self, item: &WorkItem, positions: Vec<ExtendedSequenceNumber>, error: String) -> CallOutcome {
        let checkpointed = self.checkpointer.last_checkpoint().clone();
        let mut offsets = Vec::with_capacity(positions.len());
        for position in positions {
            match item.records.binary_search_by(|record| record.extended_sequence_number().cmp(&position)) {
                Ok(_) if position <= checkpointed => {
                    tracing::warn!(%position, "a record reported failed is at or below the processor's own checkpoint; it counts as processed");
                }
                Ok(offset) => offsets.push(offset),
                Err(_) => {
                    tracing::warn!(%position, "a record reported failed is not in the batch; the whole batch counts as failed");
                    return CallOutcome::Failed { error, failed: None };
                }
            }
        }
        offsets.sort_unstable();
        offsets.dedup();
        if offsets.is_empty() { CallOutcome::Succeeded } else { CallOutcome::Failed { error, failed: Some(offsets) } }
    }

    /// Sets what the processor may checkpoint: with one lane, up to `during_call` (the batch it is given);
    /// otherwise (and between calls) up to the watermark.
    fn permit(&mut self, during_call: Option<ExtendedSequenceNumber>) {
        let mark = self.mark();
        match during_call {
            Some(last) if self.shared.single => {
                self.checkpointer.permit_only(mark);
                self.checkpointer.set_largest_permitted(last);
            }
            _ => self.checkpointer.permit_only(mark),
        }
    }

    fn mark(&self) -> Option<ExtendedSequenceNumber> {
        self.shared.watermark.lock().ok().and_then(|w| w.mark().cloned())
    }

    fn exhausted(&self, failed_calls: u32) -> bool {
        self.shared.policy.max_attempts.is_some_and(|max| failed_calls >= max)
    }

    async fn wait(&mut self, stop: &mut StopSignal) -> Result<(), LaneHalt> {
        let delay = self.backoff.next_delay();
        tokio::select! {
            biased;
            _ = stop.requested() => Err(LaneHalt::Stopped),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// Marks records completed (processed, filtered or in the failure destination); `processed` are the ones the
    /// processor completed (empty for records the failure destination took).
    fn complete(&mut self, indices: &[u64], processed: &[Record]) {
        if indices.is_empty() {
            return;
        }
        self.completed += indices.len() as u64;
        if let Ok(mut watermark) = self.shared.watermark.lock() {
            for &index in indices {
                watermark.complete(index);
            }
            self.metrics.pending.set(watermark.pending() as f64);
        }
        if !processed.is_empty() {
            self.metrics.bytes.increment(processed.iter().map(|r| r.data.len() as u64).sum());
            self.metrics.records.increment(processed.len() as u64);
        }
    }

    /// Records older than the maximum age are given up instead of delivered (first call) or retried.
    async fn give_up_old_records(&mut self, item: &mut WorkItem, stop: &mut StopSignal) -> Result<(), LaneHalt> {
        let Some(max_age) = self.shared.policy.max_record_age else { return Ok(()) };
        let now = SystemTime::now();
        let too_old = |record: &Record| {
            record
                .approximate_arrival_timestamp
                .and_then(|at| now.duration_since(at).ok())
                .is_some_and(|age| age > max_age)
        };
        if !item.records.iter().any(too_old) {
            return Ok(());
        }
        let taken = std::mem::replace(
            item,
            WorkItem {
                records: Vec::new(),
                indices: Vec::new(),
                failed_calls: 0,
                first_failure: None,
                last_error: String::new(),
            },
        );
        let (old, young) = select(taken, |_, record| too_old(record));
        *item = young;
        self.give_up(old, FailureReason::RecordTooOld, stop).await
    }

    /// Retries ran out for `item`: send it to the destination (and complete it once accepted), or block.
    async fn give_up(&mut self, item: WorkItem, reason: FailureReason, stop: &mut StopSignal) -> Result<(), LaneHalt> {
        let stream = self.shared.stream.to_string();
        metrics::counter!(telemetry::RECORDS_FAILED, "stream" => stream.clone(), "reason" => reason.as_str())
            .increment(item.records.len() as u64);
        let destination = match (self.shared.policy.on_exhausted, &self.shared.destination) {
            (OnExhausted::SendToDestination, Some(destination)) => destination.clone(),
            _ => {
                metrics::counter!(telemetry::SHARD_BLOCKS, "stream" => stream).increment(1);
                tracing::error!(
                    position = %item.records.first().map(Record::extended_sequence_number).map(|p| p.to_string()).unwrap_or_default(),
                    reason = reason.as_str(),
                    attempts = item.failed_calls,
                    error = %item.last_error,
                    "retries ran out; the shard is blocked at this record (on_exhausted = Block)"
                );
                return Err(LaneHalt::Blocked);
            }
        };
        let failed = FailedRecords {
            stream: self.shared.stream.clone(),
            shard_id: self.shared.shard_id.clone(),
            records: item.records,
            attempts: item.failed_calls,
            last_error: item.last_error,
            first_failure: item.first_failure.unwrap_or_else(SystemTime::now),
            reason,
        };
        let mut backoff = Backoff::new(self.shared.policy.backoff_base, self.shared.policy.backoff_cap);
        loop {
            match destination.send(&failed).await {
                Ok(()) => break,
                Err(error) => {
                    metrics::counter!(telemetry::DESTINATION_ERRORS, "stream" => stream.clone()).increment(1);
                    tracing::warn!(%error, records = failed.records.len(), "the failure destination refused records; retrying");
                }
            }
            tokio::select! {
                biased;
                _ = stop.requested() => return Err(LaneHalt::Stopped),
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
        metrics::counter!(telemetry::RECORDS_SENT_TO_DESTINATION, "stream" => stream)
            .increment(failed.records.len() as u64);
        self.complete(&item.indices, &[]);
        if self.shared.auto_checkpoint {
            self.checkpoint_watermark_when_due().await;
        }
        Ok(())
    }

    /// Permits the processor to checkpoint up to the watermark (before its final callbacks).
    pub(crate) fn permit_watermark(&mut self) {
        self.checkpointer.permit_only(self.mark());
    }

    /// Writes the watermark as the checkpoint when the checkpoint interval says it is due (auto checkpointing).
    /// Failures are logged: the next interval retries, and a lost lease stops the consumer anyway.
    async fn checkpoint_watermark_when_due(&mut self) {
        self.checkpointer.permit_only(self.mark());
        let completed = std::mem::take(&mut self.completed);
        let interval = self.shared.checkpoint_interval;
        if let Err(error) = self.checkpointer.checkpoint_when_due(interval, completed as usize).await {
            tracing::warn!(%error, "could not checkpoint the watermark");
        }
    }

    /// Writes the watermark as the checkpoint now (auto checkpointing at a graceful stop). Failures are logged: a
    /// lost lease stops the consumer anyway.
    pub(crate) async fn checkpoint_watermark(&mut self) {
        self.checkpointer.permit_only(self.mark());
        if let Err(error) = self.checkpointer.checkpoint().await {
            tracing::warn!(%error, "could not checkpoint the watermark");
        }
    }
}

/// Splits `item` into (records matching `pick`, the others), both in order and with the item's history.
fn select(item: WorkItem, mut pick: impl FnMut(usize, &Record) -> bool) -> (WorkItem, WorkItem) {
    let WorkItem { records, indices, failed_calls, first_failure, last_error } = item;
    let history =
        |records, indices| WorkItem { records, indices, failed_calls, first_failure, last_error: last_error.clone() };
    let (mut picked, mut picked_idx, mut rest, mut rest_idx) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (offset, (record, index)) in records.into_iter().zip(indices).enumerate() {
        if pick(offset, &record) {
            picked.push(record);
            picked_idx.push(index);
        } else {
            rest.push(record);
            rest_idx.push(index);
        }
    }
    (history(picked, picked_idx), history(rest, rest_idx))
}

/// Bisects a failed item into halves that keep its history (splits are not attempts).
fn split(item: WorkItem) -> (WorkItem, WorkItem) {
    let half = item.records.len() / 2;
    select(item, |offset, _| offset < half)
}
