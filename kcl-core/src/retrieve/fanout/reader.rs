//! `FanOutReader`: one shard's subscriptions, driven by a background task that feeds a bounded buffer.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use metrics::{Counter, Gauge, counter, gauge};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::FanOutConfig;
use super::api::{EventSubscription, FanOutEvent, SubscribeApi};
use super::buffer::EventBuffer;
use crate::error::KclError;
use crate::retrieve::api::{ApiError, ApiErrorKind, IteratorPosition};
use crate::retrieve::backoff::{Backoff, fnv1a};
use crate::retrieve::metrics::set_iterator_age;
use crate::retrieve::{ChildShard, ReadBatch, ShardReader, ShardSpec};
use crate::telemetry::{
    BACKPRESSURE_DROPS, ITERATOR_AGE, MILLIS_BEHIND_LATEST, SUBSCRIBE_CALLS, SUBSCRIBE_ERRORS, THROTTLES,
};
use crate::types::SequenceNumber;

type Slot = Result<ReadBatch, KclError>;

/// Drops the source's cached consumer ARN (see `FanOutSource::forgetter`).
pub(crate) type Forget = Arc<dyn Fn() + Send + Sync>;

/// Reads one shard through enhanced fan-out; see [`FanOutSource`](super::FanOutSource) for the policy.
///
/// A background task subscribes and moves events into a bounded buffer; `next_batch` takes one event's records from
/// it. Dropping the reader stops the task and cancels the subscription.
pub struct FanOutReader {
    buffer: Arc<EventBuffer<Slot>>,
    task: Option<JoinHandle<()>>,
    ended: Option<Option<Vec<ChildShard>>>,
    failed: Option<String>,
}

impl std::fmt::Debug for FanOutReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOutReader").field("buffered", &self.buffer.len()).field("ended", &self.ended).finish()
    }
}

impl FanOutReader {
    /// Starts the subscription task. `start` is `None` at `SHARD_END` (nothing to read, no call made).
    pub(crate) fn spawn<A: SubscribeApi>(
        api: Arc<A>,
        consumer_arn: Arc<str>,
        shard: ShardSpec,
        start: Option<(IteratorPosition, Option<SequenceNumber>)>,
        config: &FanOutConfig,
        forget_consumer: Option<Forget>,
    ) -> Self {
        let buffer = EventBuffer::new(config.max_buffered_events, config.max_buffered_bytes);
        let Some((position, skip_record_at)) = start else {
            return Self { buffer, task: None, ended: Some(None), failed: None };
        };
        let seed = config.backoff_seed.map(|seed| seed ^ fnv1a(shard.shard_id.as_bytes()));
        let backoff = match seed {
            Some(seed) => Backoff::with_seed(config.retry_base, config.retry_cap, seed),
            None => Backoff::new(config.retry_base, config.retry_cap),
        };
        let span = tracing::info_span!("kcl_fanout_reader", stream = %shard.stream, shard = %shard.shard_id);
        let stream = shard.stream.to_string();
        let shard_label = shard.shard_id.to_string();
        let subscriber = Subscriber {
            api,
            consumer_arn,
            start: position,
            skip_record_at,
            resume_after: None,
            buffer: Arc::clone(&buffer),
            backoff,
            min_gap: config.min_time_between_subscribes,
            health_timeout: config.health_timeout,
            max_stall: config.max_stall,
            calls: counter!(SUBSCRIBE_CALLS, "stream" => stream.clone(), "shard" => shard_label.clone()),
            drops: counter!(BACKPRESSURE_DROPS, "stream" => stream.clone(), "shard" => shard_label.clone()),
            lag: gauge!(MILLIS_BEHIND_LATEST, "stream" => stream.clone(), "shard" => shard_label.clone()),
            age: gauge!(ITERATOR_AGE, "stream" => stream.clone(), "shard" => shard_label.clone()),
            labels: (stream, shard_label),
            shard,
            forget_consumer,
        };
        let task = tokio::spawn(subscriber.run().instrument(span));
        Self { buffer, task: Some(task), ended: None, failed: None }
    }

    /// Events and bytes waiting in the buffer now (the bound under test and for diagnostics).
    pub fn buffered(&self) -> (usize, usize) {
        self.buffer.len()
    }
}

impl Drop for FanOutReader {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[async_trait]
impl ShardReader for FanOutReader {
    async fn next_batch(&mut self) -> Result<ReadBatch, KclError> {
        if let Some(children) = &self.ended {
            return Ok(ReadBatch { child_shards: children.clone(), shard_end: true, ..ReadBatch::default() });
        }
        if let Some(message) = &self.failed {
            return Err(KclError::Kinesis {
                operation: "SubscribeToShard",
                message: format!("reader stopped after an earlier error: {message}"),
                retryable: false,
            });
        }
        match self.buffer.pop().await {
            Some(Ok(batch)) => {
                if batch.shard_end {
                    self.ended = Some(batch.child_shards.clone());
                }
                Ok(batch)
            }
            Some(Err(error)) => {
                if !error.is_retryable() {
                    self.failed = Some(error.to_string());
                }
                Err(error)
            }
            None => {
                let message = "the subscription task stopped".to_owned();
                self.failed = Some(message.clone());
                Err(KclError::Kinesis { operation: "SubscribeToShard", message, retryable: false })
            }
        }
    }
}

/// Why a subscription stopped being read.
enum Outcome {
    /// The service ended it (every 5 minutes on AWS): resubscribe at once.
    Ended,
    /// The final event of a closed shard was queued.
    ShardEnd,
    /// The buffer stayed full past `max_stall`: the subscription was dropped.
    Stalled,
    /// No event within the health timeout.
    Silent,
    /// The call or the stream failed.
    Failed(ApiError),
}

/// Closes the buffer however the task ends (return, abort, or a panic unwinding), so `next_batch` never waits for a
/// producer that is gone.
struct CloseOnDrop(Arc<EventBuffer<Slot>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct Subscriber<A: SubscribeApi> {
    api: Arc<A>,
    consumer_arn: Arc<str>,
    shard: ShardSpec,
    start: IteratorPosition,
    /// A whole-record checkpoint read with `AT_SEQUENCE_NUMBER`: drop that record unless it is a KPL aggregate.
    skip_record_at: Option<SequenceNumber>,
    /// The continuation of the last queued event: the next subscription starts after it.
    resume_after: Option<SequenceNumber>,
    buffer: Arc<EventBuffer<Slot>>,
    backoff: Backoff,
    min_gap: Duration,
    health_timeout: Duration,
    max_stall: Duration,
    calls: Counter,
    drops: Counter,
    lag: Gauge,
    age: Gauge,
    labels: (String, String),
    forget_consumer: Option<Forget>,
}

impl<A: SubscribeApi> Subscriber<A> {
    async fn run(mut self) {
        let _close = CloseOnDrop(Arc::clone(&self.buffer));
        let mut next_call_at = Instant::now();
        loop {
            // Subscribing while the buffer is full would only open a stream nobody reads.
            self.buffer.wait_for_room(None).await;
            tokio::time::sleep_until(next_call_at).await;
            // Kinesis allows one SubscribeToShard per second per consumer and shard.
            next_call_at = Instant::now() + self.min_gap;
            let position = match &self.resume_after {
                Some(after) => IteratorPosition::AfterSequence(after.clone()),
                None => self.start.clone(),
            };
            tracing::debug!(?position, "subscribing");
            self.calls.increment(1);
            let call = self.api.subscribe(&self.consumer_arn, &self.shard, &position);
            let outcome = match tokio::time::timeout(self.health_timeout, call).await {
                Ok(Ok(subscription)) => self.read(subscription).await,
                Ok(Err(error)) => Outcome::Failed(error),
                Err(_) => Outcome::Silent,
            };
            match outcome {
                Outcome::ShardEnd => {
                    tracing::debug!("shard end reached");
                    self.buffer.close();
                    return;
                }
                Outcome::Ended => tracing::debug!("subscription ended; resubscribing"),
                Outcome::Stalled => {
                    self.drops.increment(1);
                    tracing::info!(
                        stall = ?self.max_stall,
                        after = ?self.resume_after,
                        "processing is slower than the shard: subscription dropped; resubscribing when the buffer drains"
                    );
                }
                Outcome::Silent => {
                    self.error_metric("health_timeout");
                    tracing::info!(timeout = ?self.health_timeout, "no event within the health timeout; resubscribing");
                }
                Outcome::Failed(error) => {
                    self.error_metric(error.kind.as_str());
                    if !error.kind.is_retryable() {
                        tracing::error!(%error, "non-retryable SubscribeToShard error; the reader stops");
                        if error.kind == ApiErrorKind::NotFound
                            && let Some(forget) = &self.forget_consumer
                        {
                            forget();
                        }
                        self.buffer.push(Err(error.into_kcl("SubscribeToShard")), 0);
                        self.buffer.close();
                        return;
                    }
                    // ResourceInUseException (the previous subscription is still open) is classified as throttling.
                    let delay = self.backoff.next_delay();
                    next_call_at = next_call_at.max(Instant::now() + delay);
                    let attempts = self.backoff.attempts();
                    if attempts.is_multiple_of(10) {
                        tracing::warn!(%error, attempts, "SubscribeToShard keeps failing; still retrying");
                    } else {
                        tracing::debug!(%error, attempts, ?delay, "retryable SubscribeToShard error; backing off");
                    }
                }
            }
        }
    }

    fn error_metric(&self, kind: &'static str) {
        let (stream, shard) = self.labels.clone();
        if kind == ApiErrorKind::Throttled.as_str() {
            counter!(THROTTLES, "stream" => stream.clone(), "shard" => shard.clone()).increment(1);
        }
        counter!(SUBSCRIBE_ERRORS, "stream" => stream, "shard" => shard, "kind" => kind).increment(1);
    }

    /// Moves events into the buffer until the subscription stops; the subscription is dropped (cancelled) on return.
    async fn read(&mut self, mut subscription: A::Subscription) -> Outcome {
        loop {
            // No room: stop reading, so the transport's flow control pushes back on the service. If that lasts past
            // `max_stall`, give the subscription up rather than hold it open unread.
            if !self.buffer.wait_for_room(Some(self.max_stall)).await {
                return Outcome::Stalled;
            }
            let event = match tokio::time::timeout(self.health_timeout, subscription.next_event()).await {
                Err(_) => return Outcome::Silent,
                Ok(Ok(None)) => return Outcome::Ended,
                Ok(Err(error)) => return Outcome::Failed(error),
                Ok(Ok(Some(event))) => event,
            };
            self.backoff.reset();
            if self.queue(event) {
                return Outcome::ShardEnd;
            }
        }
    }

    /// Queues one event as a batch; `true` if it was the shard's final event.
    fn queue(&mut self, event: FanOutEvent) -> bool {
        let FanOutEvent { mut records, continuation, millis_behind_latest, child_shards } = event;
        let last = records.last().map(|r| r.sequence_number.clone());
        // Only a non-empty event proves the checkpointed record has gone by; empty ones keep the skip.
        if !records.is_empty()
            && let Some(skip) = self.skip_record_at.take()
        {
            records.retain(|r| r.sequence_number != skip || r.has_kpl_magic());
        }
        if let Some(millis) = millis_behind_latest {
            // f64 represents every lag below 2^53 ms exactly, i.e. every realistic one.
            self.lag.set(millis as f64);
        }
        set_iterator_age(&self.age, &records);
        let shard_end = continuation.is_none();
        // Resume after the continuation, but never before a record already queued (guards against a service that
        // reports a stale continuation).
        let resume = match (continuation, last) {
            (Some(c), Some(l)) => Some(c.max(l)),
            (c, l) => c.or(l),
        };
        if resume.is_some() {
            self.resume_after = resume;
        }
        let batch =
            ReadBatch { records, millis_behind_latest, child_shards: shard_end.then_some(child_shards), shard_end };
        let bytes = batch.size_bytes();
        self.buffer.push(Ok(batch), bytes);
        shard_end
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
