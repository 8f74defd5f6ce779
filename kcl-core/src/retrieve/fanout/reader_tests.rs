//! The reader's policy over an in-process fake `SubscribeApi`: resubscribe positions, shard end, health timeout,
//! the checkpoint skip and the backpressure bound, on paused time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::retrieve::api::ApiErrorKind;
use crate::retrieve::fanout::FanOutConfig;
use crate::types::{HashKeyRange, KinesisRecord};

#[derive(Clone, Copy)]
enum Mode {
    /// Deliver `per_subscription` events of `per_event` records, then end the subscription.
    Normal { per_event: usize, per_subscription: usize },
    /// Never send an event.
    Silent,
}

struct Shard {
    records: Vec<KinesisRecord>,
    /// Closed: after the last record the final event carries the children.
    closed: bool,
}

struct FakeApi {
    shard: Arc<Shard>,
    mode: Mode,
    positions: Mutex<Vec<IteratorPosition>>,
    /// The first `fail_first` calls fail with this kind.
    fail_first: Mutex<Vec<ApiErrorKind>>,
    dropped: Arc<AtomicUsize>,
}

struct FakeSubscription {
    shard: Arc<Shard>,
    mode: Mode,
    next: usize,
    sent: usize,
    dropped: Arc<AtomicUsize>,
}

impl Drop for FakeSubscription {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn seq(n: usize) -> SequenceNumber {
    SequenceNumber::from_u128(1_000 + n as u128)
}

fn child() -> ChildShard {
    ChildShard {
        shard_id: "shardId-000000000002".into(),
        parent_shard_ids: vec!["shardId-000000000000".into()],
        hash_key_range: HashKeyRange::parse("0", "100").unwrap_or_else(|| panic!("range")),
    }
}

#[async_trait]
impl EventSubscription for FakeSubscription {
    async fn next_event(&mut self) -> Result<Option<FanOutEvent>, ApiError> {
        let Mode::Normal { per_event, per_subscription } = self.mode else {
            return std::future::pending().await;
        };
        if self.sent == per_subscription {
            return Ok(None);
        }
        self.sent += 1;
        let end = (self.next + per_event).min(self.shard.records.len());
        let records = self.shard.records[self.next..end].to_vec();
        self.next = end;
        let at_end = end == self.shard.records.len() && self.shard.closed;
        Ok(Some(FanOutEvent {
            records,
            // An idle open shard still reports where it is (the last record), like Kinesis does.
            continuation: (!at_end).then(|| seq(end.max(1) - 1)),
            millis_behind_latest: Some(0),
            child_shards: if at_end { vec![child()] } else { Vec::new() },
        }))
    }
}

#[async_trait]
impl SubscribeApi for FakeApi {
    type Subscription = FakeSubscription;

    async fn subscribe(
        &self,
        _: &str,
        _: &ShardSpec,
        position: &IteratorPosition,
    ) -> Result<FakeSubscription, ApiError> {
        self.positions.lock().unwrap_or_else(|e| e.into_inner()).push(position.clone());
        if let Some(kind) = self.fail_first.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Err(ApiError::new(kind, "injected"));
        }
        let index_of = |s: &SequenceNumber| self.shard.records.iter().position(|r| &r.sequence_number == s);
        let next = match position {
            IteratorPosition::TrimHorizon => 0,
            IteratorPosition::AtSequence(s) => index_of(s).unwrap_or(0),
            IteratorPosition::AfterSequence(s) => index_of(s).map_or(0, |i| i + 1),
            _ => self.shard.records.len(),
        };
        Ok(FakeSubscription {
            shard: Arc::clone(&self.shard),
            mode: self.mode,
            next,
            sent: 0,
            dropped: Arc::clone(&self.dropped),
        })
    }
}

fn fake(records: usize, closed: bool, mode: Mode) -> Arc<FakeApi> {
    let records = (0..records).map(|n| KinesisRecord::new(vec![0u8; 100], "pk", seq(n))).collect();
    Arc::new(FakeApi {
        shard: Arc::new(Shard { records, closed }),
        mode,
        positions: Mutex::new(Vec::new()),
        fail_first: Mutex::new(Vec::new()),
        dropped: Arc::new(AtomicUsize::new(0)),
    })
}

fn spec() -> ShardSpec {
    ShardSpec::new("stream", "shardId-000000000000")
}

fn config() -> FanOutConfig {
    FanOutConfig { backoff_seed: Some(1), ..FanOutConfig::default() }
}

async fn read_all(reader: &mut FanOutReader, n: usize) -> (Vec<SequenceNumber>, Option<ReadBatch>) {
    let mut seen = Vec::new();
    while seen.len() < n {
        let batch = reader.next_batch().await.unwrap_or_else(|e| panic!("next_batch: {e}"));
        seen.extend(batch.records.iter().map(|r| r.sequence_number.clone()));
        if batch.shard_end {
            return (seen, Some(batch));
        }
    }
    (seen, None)
}

#[tokio::test(start_paused = true)]
async fn resubscribes_after_the_continuation_and_ends_with_the_children() {
    let api = fake(95, true, Mode::Normal { per_event: 10, per_subscription: 3 });
    let start = Some((IteratorPosition::TrimHorizon, None));
    let mut reader = FanOutReader::spawn(Arc::clone(&api), Arc::from("arn"), spec(), start, &config(), None);
    let (seen, end) = read_all(&mut reader, 1_000).await;
    assert_eq!(seen, (0..95).map(seq).collect::<Vec<_>>());
    let end = end.unwrap_or_else(|| panic!("no shard end"));
    assert_eq!(end.child_shards, Some(vec![child()]));
    let again = reader.next_batch().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(again.shard_end && again.records.is_empty());
    let positions = api.positions.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(positions[0], IteratorPosition::TrimHorizon);
    assert_eq!(positions[1], IteratorPosition::AfterSequence(seq(29)));
    assert_eq!(positions.len(), 4, "{positions:?}");
}

#[tokio::test(start_paused = true)]
async fn a_whole_record_checkpoint_is_skipped_and_retryable_errors_back_off() {
    let api = fake(20, false, Mode::Normal { per_event: 5, per_subscription: 100 });
    api.fail_first.lock().unwrap_or_else(|e| e.into_inner()).extend([ApiErrorKind::Throttled, ApiErrorKind::Dispatch]);
    let start = Some((IteratorPosition::AtSequence(seq(7)), Some(seq(7))));
    let mut reader = FanOutReader::spawn(Arc::clone(&api), Arc::from("arn"), spec(), start, &config(), None);
    let (seen, _) = read_all(&mut reader, 12).await;
    assert_eq!(seen, (8..20).map(seq).collect::<Vec<_>>());
    let positions = api.positions.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(
        positions[..3],
        [
            IteratorPosition::AtSequence(seq(7)),
            IteratorPosition::AtSequence(seq(7)),
            IteratorPosition::AtSequence(seq(7))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_subscription_is_replaced_after_the_health_timeout() {
    let api = fake(5, false, Mode::Silent);
    let config = FanOutConfig { health_timeout: Duration::from_secs(5), ..config() };
    let start = Some((IteratorPosition::TrimHorizon, None));
    let reader = FanOutReader::spawn(Arc::clone(&api), Arc::from("arn"), spec(), start, &config, None);
    tokio::time::sleep(Duration::from_secs(16)).await;
    let calls = api.positions.lock().unwrap_or_else(|e| e.into_inner()).len();
    assert!((3..=4).contains(&calls), "one subscription per health timeout: {calls}");
    assert!(api.dropped.load(Ordering::SeqCst) >= 3);
    drop(reader);
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_ends_the_reader_and_not_found_forgets_the_consumer() {
    let api = fake(5, false, Mode::Normal { per_event: 5, per_subscription: 1 });
    api.fail_first.lock().unwrap_or_else(|e| e.into_inner()).push(ApiErrorKind::NotFound);
    let forgotten = Arc::new(AtomicUsize::new(0));
    let forget: Forget = {
        let forgotten = Arc::clone(&forgotten);
        Arc::new(move || {
            forgotten.fetch_add(1, Ordering::SeqCst);
        })
    };
    let start = Some((IteratorPosition::TrimHorizon, None));
    let mut reader = FanOutReader::spawn(api, Arc::from("arn"), spec(), start, &config(), Some(forget));
    let error = reader.next_batch().await.err().unwrap_or_else(|| panic!("expected an error"));
    assert!(!error.is_retryable());
    assert!(reader.next_batch().await.is_err());
    assert_eq!(forgotten.load(Ordering::SeqCst), 1, "the stale consumer ARN is dropped from the cache");
}

#[tokio::test(start_paused = true)]
async fn a_slow_processor_bounds_the_buffer_and_drops_then_resumes_the_subscription() {
    let api = fake(2_000, false, Mode::Normal { per_event: 10, per_subscription: usize::MAX });
    let config = FanOutConfig {
        max_buffered_events: 4,
        max_buffered_bytes: 2_500, // 10 records of 100 bytes + "pk" = 1020 bytes per event: the byte bound binds
        max_stall: Duration::from_secs(10),
        health_timeout: Duration::from_secs(60),
        ..config()
    };
    let mut reader = FanOutReader::spawn(
        Arc::clone(&api),
        Arc::from("arn"),
        spec(),
        Some((IteratorPosition::TrimHorizon, None)),
        &config,
        None,
    );
    // The processor does not read: the buffer fills to its bound and stays there.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (events, bytes) = reader.buffered();
    assert_eq!((events, bytes), (3, 3 * 1_020), "stops reading once the byte bound is reached");
    assert_eq!(api.dropped.load(Ordering::SeqCst), 0, "flow control first; the subscription stays open");
    // Past max_stall the subscription is cancelled, and no new one starts while the buffer is still full.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(api.dropped.load(Ordering::SeqCst), 1);
    assert_eq!(api.positions.lock().unwrap_or_else(|e| e.into_inner()).len(), 1);
    assert_eq!(reader.buffered(), (3, 3 * 1_020), "memory did not grow");
    // Reading again resumes after the last queued record, without gaps or duplicates.
    let (seen, _) = read_all(&mut reader, 200).await;
    assert_eq!(seen, (0..200).map(seq).collect::<Vec<_>>());
    let positions = api.positions.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(positions[1], IteratorPosition::AfterSequence(seq(29)));
}

struct PanickingApi;

#[async_trait]
impl SubscribeApi for PanickingApi {
    type Subscription = FakeSubscription;

    async fn subscribe(&self, _: &str, _: &ShardSpec, _: &IteratorPosition) -> Result<FakeSubscription, ApiError> {
        panic!("a bug in a SubscribeApi implementation");
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_subscription_task_is_an_error_not_a_hang() {
    let start = Some((IteratorPosition::TrimHorizon, None));
    let mut reader = FanOutReader::spawn(Arc::new(PanickingApi), Arc::from("arn"), spec(), start, &config(), None);
    let result = tokio::time::timeout(Duration::from_secs(5), reader.next_batch()).await;
    let error = result.unwrap_or_else(|_| panic!("next_batch hung")).err().unwrap_or_else(|| panic!("no error"));
    assert!(!error.is_retryable(), "{error}");
}
