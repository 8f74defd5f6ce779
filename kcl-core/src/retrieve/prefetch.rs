//! Read-ahead: a background task per shard fills a bounded queue, so processing and reading overlap.
//! See [`PrefetchReader`] for the bounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::AbortHandle;
use tracing::Instrument;

use super::{ChildShard, ReadBatch, ShardReader};
use crate::error::KclError;

/// Per-shard read-ahead limits. Defaults are Java KCL's (`SimpleRecordsFetcherFactory` for
/// `PrefetchRecordsPublisher`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrefetchConfig {
    /// Batches queued or being read (default 4: KCL queues `maxPendingProcessRecordsInput` = 3 and holds one more
    /// while waiting to enqueue it).
    pub max_batches: usize,
    /// Bytes queued before reading pauses (KCL `maxByteSize`, default 8 MiB; may be passed by one batch, see
    /// [`PrefetchReader`]).
    pub max_bytes: usize,
    /// Records queued, strictly (KCL `maxRecordsCount`, default 30000).
    pub max_records: usize,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        Self { max_batches: 4, max_bytes: 8 << 20, max_records: 30_000 }
    }
}

impl PrefetchConfig {
    /// Limits of `max_batches` batches, `max_bytes` bytes and `max_records` records (each must be positive).
    pub fn new(max_batches: usize, max_bytes: usize, max_records: usize) -> Self {
        Self { max_batches, max_bytes, max_records }
    }

    pub(crate) fn validate(&self) -> Result<(), KclError> {
        if self.max_batches == 0 || self.max_bytes == 0 || self.max_records == 0 {
            return Err(KclError::InvalidConfig(
                "prefetch max_batches, max_bytes and max_records must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Bytes that all prefetch queues of a worker may hold together: a semaphore of bytes, cheap to clone and share.
///
/// Size it at several times the per-shard `max_bytes`: a shard whose consumer stops holds up to its own bound, and
/// the other shards share what is left.
#[derive(Clone, Debug)]
pub struct ByteBudget {
    semaphore: Arc<Semaphore>,
    total: usize,
}

impl ByteBudget {
    /// A budget of `total` bytes (at least 1, at most what a semaphore can count).
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Self { semaphore: Arc::new(Semaphore::new(total)), total }
    }

    /// The budget's size in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes not held by any queue right now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Holds `bytes` (capped at the whole budget, so one huge batch can still pass) until the permit drops.
    async fn acquire(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes.min(self.total)).unwrap_or(u32::MAX);
        // The semaphore is never closed, so acquiring only fails if that changes; then it simply stops limiting.
        Arc::clone(&self.semaphore).acquire_many_owned(n).await.ok()
    }
}

/// What one prefetch queue holds now and the most it ever held (the "test hook" for the bounds).
#[derive(Debug, Default)]
pub struct PrefetchGauge {
    batches: AtomicUsize,
    records: AtomicUsize,
    bytes: AtomicUsize,
    peak_batches: AtomicUsize,
    peak_records: AtomicUsize,
    peak_bytes: AtomicUsize,
}

impl PrefetchGauge {
    /// Batches queued now.
    pub fn queued_batches(&self) -> usize {
        self.batches.load(Ordering::Acquire)
    }
    /// Records queued now.
    pub fn queued_records(&self) -> usize {
        self.records.load(Ordering::Acquire)
    }
    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
    /// The most batches ever queued at once.
    pub fn peak_batches(&self) -> usize {
        self.peak_batches.load(Ordering::Acquire)
    }
    /// The most records ever queued at once.
    pub fn peak_records(&self) -> usize {
        self.peak_records.load(Ordering::Acquire)
    }
    /// The most bytes ever queued at once.
    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes.load(Ordering::Acquire)
    }

    fn add(&self, records: usize, bytes: usize) {
        let batches = self.batches.fetch_add(1, Ordering::AcqRel) + 1;
        let records = self.records.fetch_add(records, Ordering::AcqRel) + records;
        let bytes = self.bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.peak_batches.fetch_max(batches, Ordering::AcqRel);
        self.peak_records.fetch_max(records, Ordering::AcqRel);
        self.peak_bytes.fetch_max(bytes, Ordering::AcqRel);
    }

    fn remove(&self, records: usize, bytes: usize) {
        self.batches.fetch_sub(1, Ordering::AcqRel);
        self.records.fetch_sub(records, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

struct Item {
    result: Result<ReadBatch, KclError>,
    records: usize,
    bytes: usize,
    // Returned to the budget when the consumer takes the batch.
    _budget: Option<OwnedSemaphorePermit>,
}

enum Terminal {
    Ended(Option<Vec<ChildShard>>),
    Failed(String),
}

/// A [`ShardReader`] that reads ahead of its consumer on a background task.
///
/// # Bounds
/// * **Batches**: at most `max_batches` (queued plus the one being read: a queue slot is reserved before each read).
/// * **Records**: the task reads only when `queued + limit ≤ max_records` (or the queue is empty), where `limit` is
///   the reader's per-call maximum, so the queue never holds more than `max_records` when `limit ≤ max_records` (the
///   [`PollingFetcher`](super::PollingFetcher) makes sure of that).
/// * **Bytes per shard**: the task reads only while the queue holds less than `max_bytes`; a read cannot be limited
///   in bytes, so the queue may pass `max_bytes` by at most one batch (≤ 10 MiB from Kinesis).
/// * **Bytes per worker**: every queued batch holds permits of a shared [`ByteBudget`] for its size until the
///   consumer takes it; a shard whose next batch does not fit waits with that one batch in hand.
///
/// Backpressure is the task waiting; memory never grows without bound. Each shard's queue must be drained by its
/// own consumer: one consumer waiting on shard A while shard B holds the whole budget would wait forever.
/// Dropping the [`PrefetchReader`] stops its task.
pub struct PrefetchReader {
    rx: mpsc::Receiver<Item>,
    gauge: Arc<PrefetchGauge>,
    room: Arc<Notify>,
    task: AbortHandle,
    terminal: Option<Terminal>,
}

impl PrefetchReader {
    /// Starts reading `inner` ahead on a Tokio task (call inside a runtime). `limit` is the most records one
    /// `inner.next_batch()` returns; `span` is entered by the task.
    pub fn spawn<R: ShardReader + 'static>(
        inner: R,
        config: PrefetchConfig,
        limit: usize,
        budget: ByteBudget,
        span: tracing::Span,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.max_batches.max(1));
        let gauge = Arc::new(PrefetchGauge::default());
        let room = Arc::new(Notify::new());
        let task = tokio::spawn(
            fill(inner, tx, Arc::clone(&gauge), Arc::clone(&room), config, limit.max(1), budget).instrument(span),
        );
        Self { rx, gauge, room, task: task.abort_handle(), terminal: None }
    }

    /// The queue's live counters.
    pub fn gauge(&self) -> Arc<PrefetchGauge> {
        Arc::clone(&self.gauge)
    }
}

impl Drop for PrefetchReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl ShardReader for PrefetchReader {
    async fn next_batch(&mut self) -> Result<ReadBatch, KclError> {
        match &self.terminal {
            Some(Terminal::Ended(children)) => {
                return Ok(ReadBatch { child_shards: children.clone(), shard_end: true, ..ReadBatch::default() });
            }
            Some(Terminal::Failed(message)) => {
                return Err(KclError::Kinesis {
                    operation: "GetRecords",
                    message: format!("reader stopped after an earlier error: {message}"),
                    retryable: false,
                });
            }
            None => {}
        }
        // `recv` is cancellation-safe: an item is either returned here or stays queued.
        let Some(item) = self.rx.recv().await else {
            let message = "the prefetch task stopped unexpectedly".to_owned();
            self.terminal = Some(Terminal::Failed(message.clone()));
            return Err(KclError::Kinesis { operation: "GetRecords", message, retryable: false });
        };
        self.gauge.remove(item.records, item.bytes);
        self.room.notify_one();
        match &item.result {
            Ok(batch) if batch.shard_end => self.terminal = Some(Terminal::Ended(batch.child_shards.clone())),
            Err(error) if !error.is_retryable() => self.terminal = Some(Terminal::Failed(error.to_string())),
            _ => {}
        }
        item.result
    }
}

/// The background task: wait for room, reserve a slot, read, account, queue; stop at the end, on a fatal error, or
/// when the consumer is gone.
async fn fill<R: ShardReader>(
    mut inner: R,
    tx: mpsc::Sender<Item>,
    gauge: Arc<PrefetchGauge>,
    room: Arc<Notify>,
    config: PrefetchConfig,
    limit: usize,
    budget: ByteBudget,
) {
    loop {
        loop {
            let records = gauge.queued_records();
            let bytes = gauge.queued_bytes();
            let records_fit = records == 0 || records + limit <= config.max_records;
            if records_fit && bytes < config.max_bytes {
                break;
            }
            // `notify_one` stores a wake-up when nobody waits, so one sent between the check and here is not lost.
            room.notified().await;
        }
        let Ok(slot) = tx.reserve().await else { return };
        let result = inner.next_batch().await;
        let (records, bytes) = match &result {
            Ok(batch) => (batch.records.len(), batch.size_bytes()),
            Err(_) => (0, 0),
        };
        let permit = if bytes > 0 { budget.acquire(bytes).await } else { None };
        let last = match &result {
            Ok(batch) => batch.shard_end,
            Err(error) => !error.is_retryable(),
        };
        gauge.add(records, bytes);
        slot.send(Item { result, records, bytes, _budget: permit });
        if last {
            return;
        }
    }
}
