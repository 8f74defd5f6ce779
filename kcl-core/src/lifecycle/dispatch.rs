//! Between reading and processing: the [`Lanes`] of a shard spread records over concurrent processors by partition
//! key, each lane with its own [`Batcher`] (record, byte and time limits per batch) — so every lane gets full
//! batches, as Lambda's parallelization factor does — and a bounded queue, so a slow processor slows reading
//! instead of filling memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use super::lane::{Delivery, Lane, LaneHalt, LaneShared};
use super::stop::StopSignal;
use crate::process::{Checkpointer, ProcessingConfig, RecordProcessor};
use crate::types::Record;

/// Collects read records into batches of at most `max_records` / `max_bytes`, waiting up to the batching window
/// after the first buffered record.
pub(crate) struct Batcher {
    max_records: usize,
    max_bytes: usize,
    window: Duration,
    records: Vec<Record>,
    indices: Vec<u64>,
    bytes: usize,
    since: Option<Instant>,
}

impl Batcher {
    pub(crate) fn new(config: &ProcessingConfig) -> Self {
        Self {
            max_records: config.max_records.unwrap_or(usize::MAX),
            max_bytes: config.max_bytes.unwrap_or(usize::MAX),
            window: config.batching_window,
            records: Vec::new(),
            indices: Vec::new(),
            bytes: 0,
            since: None,
        }
    }

    pub(crate) fn push(&mut self, record: Record, index: u64) {
        if self.records.is_empty() {
            self.since = Some(Instant::now());
        }
        self.bytes += record.data.len();
        self.records.push(record);
        self.indices.push(index);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// When the buffered records must go even if the batch is not full.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.since.filter(|_| !self.records.is_empty()).map(|since| since + self.window)
    }

    /// The batches ready now: every full one, and the rest too when `all` (shard end, zero window, deadline).
    pub(crate) fn take_ready(&mut self, all: bool) -> Vec<(Vec<Record>, Vec<u64>)> {
        let mut ready = Vec::new();
        let flush_all = all || self.window.is_zero();
        loop {
            let cut = self.full_prefix();
            match cut {
                Some(cut) => ready.push(self.cut(cut)),
                None if flush_all && !self.records.is_empty() => {
                    let len = self.records.len();
                    ready.push(self.cut(len));
                }
                None => break,
            }
        }
        ready
    }

    /// The length of a full batch at the front, if there is one.
    fn full_prefix(&self) -> Option<usize> {
        if self.records.len() < self.max_records && self.bytes < self.max_bytes {
            return None;
        }
        let mut bytes = 0usize;
        for (i, record) in self.records.iter().enumerate() {
            if i == self.max_records || (i > 0 && bytes + record.data.len() > self.max_bytes) {
                return Some(i);
            }
            bytes += record.data.len();
        }
        (bytes >= self.max_bytes || self.records.len() >= self.max_records).then_some(self.records.len())
    }

    fn cut(&mut self, len: usize) -> (Vec<Record>, Vec<u64>) {
        let rest_records = self.records.split_off(len);
        let rest_indices = self.indices.split_off(len);
        let records = std::mem::replace(&mut self.records, rest_records);
        let indices = std::mem::replace(&mut self.indices, rest_indices);
        self.bytes = self.records.iter().map(|r| r.data.len()).sum();
        self.since = if self.records.is_empty() { None } else { Some(Instant::now()) };
        (records, indices)
    }
}

/// The running lanes of a shard.
pub(crate) struct Lanes<P: RecordProcessor> {
    senders: Vec<mpsc::Sender<Delivery>>,
    tasks: JoinSet<(usize, Lane<P>, Result<(), LaneHalt>)>,
    /// Lanes that ended early (seen by [`halted`](Lanes::halted)), kept for their processors' final callbacks.
    ended: Vec<(usize, Lane<P>, Result<(), LaneHalt>)>,
    /// One batcher per lane.
    batchers: Vec<Batcher>,
    stream: Arc<str>,
}

/// FNV-1a: a fixed, fast spread of partition keys over lanes.
fn lane_of(key: &str, lanes: usize) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (hash % lanes as u64) as usize
}

impl<P: RecordProcessor> Lanes<P> {
    /// Starts one lane per processor. Each queue holds one delivery besides the one being processed.
    pub(crate) fn start(
        processors: Vec<P>,
        checkpointer: &Checkpointer,
        shared: Arc<LaneShared>,
        config: &ProcessingConfig,
        stop: &StopSignal,
    ) -> Self {
        let mut tasks = JoinSet::new();
        let mut senders = Vec::with_capacity(processors.len());
        for (number, processor) in processors.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(1);
            senders.push(tx);
            let lane = Lane::new(processor, checkpointer.handle(), shared.clone());
            let stop = stop.clone();
            tasks.spawn(
                async move {
                    let (lane, result) = lane.run(rx, stop).await;
                    (number, lane, result)
                }
                .in_current_span(),
            );
        }
        let batchers = senders.iter().map(|_| Batcher::new(config)).collect();
        Self { senders, tasks, ended: Vec::new(), batchers, stream: shared.stream.clone() }
    }

    /// Buffers a record in its lane's batcher (by partition key).
    pub(crate) fn push(&mut self, record: Record, index: u64) {
        let lanes = self.batchers.len();
        let lane = if lanes == 1 { 0 } else { lane_of(&record.partition_key, lanes) };
        self.batchers[lane].push(record, index);
    }

    /// Whether no record is buffered.
    pub(crate) fn nothing_buffered(&self) -> bool {
        self.batchers.iter().all(Batcher::is_empty)
    }

    /// The earliest batching-window deadline of the lanes.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.batchers.iter().filter_map(Batcher::deadline).min()
    }

    /// Sends every full batch, and the rest too when `all` (shard end, zero window, deadline passed), taking the
    /// lanes in turn so one busy lane holds up the others as little as possible. Waits while a lane's queue is
    /// full. `Err` when a stop is requested or a lane has halted (blocked).
    pub(crate) async fn send_ready(
        &mut self,
        all: bool,
        millis_behind_latest: Option<u64>,
        stop: &mut StopSignal,
    ) -> Result<(), LaneHalt> {
        let now = Instant::now();
        let mut ready: Vec<std::collections::VecDeque<(Vec<Record>, Vec<u64>)>> = self
            .batchers
            .iter_mut()
            .map(|batcher| {
                let due = all || batcher.deadline().is_some_and(|deadline| deadline <= now);
                batcher.take_ready(due).into()
            })
            .collect();
        while ready.iter().any(|batches| !batches.is_empty()) {
            for (lane, batches) in ready.iter_mut().enumerate() {
                if let Some((records, indices)) = batches.pop_front() {
                    self.send(lane, Delivery { records, indices, millis_behind_latest }, stop).await?;
                }
            }
        }
        Ok(())
    }

    /// Delivers an empty batch to every lane (`call_process_records_even_for_empty`).
    pub(crate) async fn send_empty(
        &mut self,
        millis_behind_latest: Option<u64>,
        stop: &mut StopSignal,
    ) -> Result<(), LaneHalt> {
        for lane in 0..self.senders.len() {
            let delivery = Delivery { records: Vec::new(), indices: Vec::new(), millis_behind_latest };
            self.send(lane, delivery, stop).await?;
        }
        Ok(())
    }

    async fn send(&mut self, lane: usize, delivery: Delivery, stop: &mut StopSignal) -> Result<(), LaneHalt> {
        let sender = &self.senders[lane];
        let sent = tokio::select! {
            biased;
            _ = stop.requested() => return Err(LaneHalt::Stopped),
            sent = sender.send(delivery) => sent,
        };
        match sent {
            Ok(()) => {
                metrics::gauge!(crate::telemetry::BATCHES_IN_FLIGHT, "stream" => self.stream.to_string())
                    .increment(1.0);
                Ok(())
            }
            // The lane returned early: it halted (blocked, or stopped).
            Err(_) => Err(LaneHalt::Blocked),
        }
    }

    /// Resolves when a lane ends before its input closed (it halted).
    pub(crate) async fn halted(&mut self) -> LaneHalt {
        match self.tasks.join_next().await {
            Some(Ok(ended)) => {
                let halt = ended.2.err().unwrap_or(LaneHalt::Blocked);
                self.ended.push(ended);
                halt
            }
            Some(Err(error)) => {
                tracing::error!(%error, "a processing lane panicked outside the processor");
                LaneHalt::Blocked
            }
            None => futures::future::pending().await,
        }
    }

    /// Closes the inputs and waits for every lane; returns them in order and the first halt, if any.
    pub(crate) async fn finish(mut self) -> (Vec<Lane<P>>, Option<LaneHalt>) {
        self.senders.clear();
        let mut lanes: Vec<(usize, Lane<P>)> = Vec::new();
        let mut halt = None;
        for (number, lane, result) in self.ended.drain(..) {
            if let Err(h) = result {
                halt.get_or_insert(h);
            }
            lanes.push((number, lane));
        }
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((number, lane, result)) => {
                    if let Err(h) = result {
                        halt.get_or_insert(h);
                    }
                    lanes.push((number, lane));
                }
                Err(error) => {
                    tracing::error!(%error, "a processing lane panicked outside the processor");
                    halt.get_or_insert(LaneHalt::Blocked);
                }
            }
        }
        lanes.sort_by_key(|(number, _)| *number);
        (lanes.into_iter().map(|(_, lane)| lane).collect(), halt)
    }
}
