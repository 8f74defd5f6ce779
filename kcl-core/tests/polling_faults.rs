//! The polling reader under injected faults, and its call pacing, against the in-memory stream (Tokio paused time).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{read_to_end, read_until, seqs};
use kcl_core::retrieve::memory_stream::{Fault, FaultConfig, MemoryStream, MemoryStreamConfig};
use kcl_core::retrieve::{PollingConfig, PollingFetcher, RecordSource, ShardReader, ShardSpec};
use kcl_core::{ExtendedSequenceNumber, InitialPosition};

const S0: &str = "shardId-000000000000";

fn spec(stream: &MemoryStream, shard: &str) -> ShardSpec {
    ShardSpec::new(stream.name().clone(), shard)
}

fn small_batches(prefetch: bool) -> MemoryStreamConfig {
    let mut config = MemoryStreamConfig::default();
    config.polling.max_records = 50;
    if !prefetch {
        config.polling.prefetch = None;
    }
    config.polling.backoff_seed = Some(1);
    config
}

/// Puts records, reshards half-way, and puts more: readers must cross a shard end under faults too.
fn busy_stream(name: &str, config: MemoryStreamConfig) -> MemoryStream {
    let stream = MemoryStream::with_config(name, 4, config);
    stream.put_batch((0..4000).map(|i| (format!("key-{i}"), format!("value-{i}")))).unwrap();
    let range = stream.shards()[0].hash_key_range;
    stream.split(S0, range.start + (range.end - range.start) / 2).unwrap();
    stream.merge("shardId-000000000002", "shardId-000000000003").unwrap();
    stream.put_batch((4000..8000).map(|i| (format!("key-{i}"), format!("value-{i}")))).unwrap();
    stream
}

/// Reads every shard (closed ones to their end, open ones up to what they hold) and checks exactly-once, in order.
async fn assert_every_record_once_in_order(stream: &MemoryStream) {
    let mut total = 0;
    for shard in stream.shards() {
        let expected = stream.records(&shard.shard_id);
        let mut reader = stream
            .open(&spec(stream, &shard.shard_id), &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest)
            .await
            .unwrap();
        let records = if shard.is_open() {
            read_until(reader.as_mut(), expected.len()).await.0
        } else {
            let (records, last) = read_to_end(reader.as_mut()).await;
            assert!(!last.child_shards.unwrap_or_default().is_empty(), "{} ends with its children", shard.shard_id);
            records
        };
        assert_eq!(seqs(&records), seqs(&expected), "shard {}", shard.shard_id);
        total += records.len();
    }
    assert_eq!(total, 8000);
}

#[tokio::test(start_paused = true)]
async fn ten_percent_faults_lose_and_duplicate_nothing_with_prefetch() {
    for seed in 1..=5 {
        let stream = busy_stream("faults-prefetch", small_batches(true));
        stream.set_faults(FaultConfig::uniform(seed, 0.10));
        assert_every_record_once_in_order(&stream).await;
        let counts = stream.fault_counts();
        assert!(counts.throttles > 0 && counts.internal_failures > 0 && counts.expired_iterators > 0, "{counts:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn ten_percent_faults_lose_and_duplicate_nothing_without_prefetch() {
    for seed in 11..=15 {
        let stream = busy_stream("faults-direct", small_batches(false));
        stream.set_faults(FaultConfig {
            latency: 0.02,
            latency_duration: Duration::from_secs(40),
            ..FaultConfig::uniform(seed, 0.10)
        });
        assert_every_record_once_in_order(&stream).await;
        let counts = stream.fault_counts();
        assert!(counts.latencies > 0, "latency beyond the call timeout was injected: {counts:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn every_scripted_fault_is_survived() {
    let stream = MemoryStream::with_config("scripted", 1, small_batches(false));
    stream.put_batch((0..500).map(|i| (format!("k{i}"), "v"))).unwrap();
    stream.script_faults(
        S0,
        [
            Fault::Throttle,
            Fault::InternalFailure,
            // Nothing returned yet: the new iterator starts at the start position again.
            Fault::ExpiredIterator,
            // Longer than the 30 s call timeout: the reader gives up on the call and retries it.
            Fault::Latency(Duration::from_secs(45)),
        ],
    );
    let mut reader =
        stream.open(&spec(&stream, S0), &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
    let mut records = read_until(reader.as_mut(), 100).await.0;
    // Records were returned: the next expiry must resume after the last one, neither repeating nor skipping.
    stream.script_faults(S0, [Fault::Throttle, Fault::ExpiredIterator, Fault::Throttle, Fault::ExpiredIterator]);
    records.extend(read_until(reader.as_mut(), 400).await.0);
    assert_eq!(seqs(&records), seqs(&stream.records(S0)));
    let counts = stream.fault_counts();
    assert_eq!((counts.throttles, counts.internal_failures, counts.expired_iterators, counts.latencies), (3, 1, 3, 1));
    assert_eq!(stream.call_counts().1, 4, "a new iterator at the start and after each expiry");
}

#[tokio::test(start_paused = true)]
async fn an_expiry_after_skipping_the_checkpointed_record_does_not_return_it() {
    let stream = MemoryStream::with_config("skip", 1, small_batches(false));
    let puts: Vec<_> = (0..10).map(|i| stream.put(format!("k{i}"), "v").unwrap()).collect();
    let checkpoint = ExtendedSequenceNumber::sequence(puts[9].sequence_number.clone());
    let mut reader = stream.open(&spec(&stream, S0), &checkpoint, &InitialPosition::Latest).await.unwrap();
    // The only record read is the checkpointed one, which is dropped.
    assert!(reader.next_batch().await.unwrap().records.is_empty());
    stream.script_faults(S0, [Fault::ExpiredIterator]);
    let fresh = stream.put("new", "n").unwrap();
    let records = read_until(reader.as_mut(), 1).await.0;
    assert_eq!(seqs(&records), vec![fresh.sequence_number.to_string()]);
    assert_eq!(stream.fault_counts().expired_iterators, 1);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_end_the_reader_clearly() {
    let stream = MemoryStream::new("fatal", 1);
    let mut reader = stream
        .open(&spec(&stream, "shardId-000000000099"), &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest)
        .await
        .unwrap();
    let error = reader.next_batch().await.unwrap_err();
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("not_found"), "{error}");
    assert!(!reader.next_batch().await.unwrap_err().is_retryable(), "the reader stays failed");

    let wrong_stream = ShardSpec::new("no-such-stream", S0);
    let mut reader =
        stream.open(&wrong_stream, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
    assert!(!reader.next_batch().await.unwrap_err().is_retryable());

    let foreign = ExtendedSequenceNumber::sequence("999999999999999999999999".parse().unwrap());
    let mut reader = stream.open(&spec(&stream, S0), &foreign, &InitialPosition::Latest).await.unwrap();
    let error = reader.next_batch().await.unwrap_err();
    assert!(error.to_string().contains("invalid_argument"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn max_retries_surfaces_a_retryable_error_and_the_reader_stays_usable() {
    let mut config = small_batches(false);
    config.polling.max_retries = Some(2);
    let stream = MemoryStream::with_config("retries", 1, config);
    stream.put_batch((0..10).map(|i| (format!("k{i}"), "v"))).unwrap();
    stream.script_faults(S0, [Fault::Throttle; 5]);
    let mut reader =
        stream.open(&spec(&stream, S0), &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
    let error = reader.next_batch().await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    let mut records = Vec::new();
    while records.len() < 10 {
        match reader.next_batch().await {
            Ok(batch) => records.extend(batch.records),
            Err(error) => assert!(error.is_retryable()),
        }
    }
    assert_eq!(seqs(&records), seqs(&stream.records(S0)));
}

/// A stream that behaves like Kinesis about rates: 200 ms floor, KCL idle time.
fn kinesis_like() -> MemoryStreamConfig {
    MemoryStreamConfig {
        polling: PollingConfig::default().with_prefetch(None).with_backoff_seed(Some(9)),
        min_time_between_calls: Duration::from_millis(200),
        ..MemoryStreamConfig::default()
    }
}

fn gaps(stream: &MemoryStream) -> HashMap<String, Vec<Duration>> {
    let mut last = HashMap::new();
    let mut gaps: HashMap<String, Vec<Duration>> = HashMap::new();
    for call in stream.call_log() {
        if let Some(previous) = last.insert(call.shard_id.to_string(), call.at) {
            gaps.entry(call.shard_id.to_string()).or_default().push(call.at - previous);
        }
    }
    gaps
}

#[tokio::test(start_paused = true)]
async fn never_more_than_five_calls_per_second_per_shard_even_when_behind_and_throttled() {
    let mut config = kinesis_like();
    config.polling.max_records = 10;
    // Configuration cannot go below the backend's floor.
    config.polling.min_time_between_calls = Duration::ZERO;
    config.polling.retry_base = Duration::from_millis(1);
    let stream = MemoryStream::with_config("rate", 2, config);
    stream.put_batch((0..600).map(|i| (format!("k{i}"), "v"))).unwrap();
    stream.set_faults(FaultConfig::uniform(3, 0.3));
    stream.record_calls(true);
    for shard in stream.open_shard_ids() {
        let expected = stream.records(&shard).len();
        let mut reader = stream
            .open(&spec(&stream, &shard), &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest)
            .await
            .unwrap();
        assert_eq!(read_until(reader.as_mut(), expected).await.0.len(), expected);
    }
    let gaps = gaps(&stream);
    assert_eq!(gaps.len(), 2);
    for (shard, gaps) in gaps {
        assert!(gaps.len() > 30, "{shard}: enough calls to judge");
        let smallest = gaps.iter().min().unwrap();
        assert!(*smallest >= Duration::from_millis(200), "{shard}: calls {smallest:?} apart");
        assert!(gaps.contains(&Duration::from_millis(200)), "{shard}: a shard that is behind reads at the full rate");
    }
}

#[tokio::test(start_paused = true)]
async fn caught_up_readers_back_off_to_the_idle_time_and_speed_up_when_data_arrives() {
    let stream = MemoryStream::with_config("idle", 1, kinesis_like());
    stream.record_calls(true);
    let fetcher = PollingFetcher::new(stream.clone(), stream.config().polling.clone()).unwrap();
    let mut reader =
        fetcher.reader(&spec(&stream, S0), &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).unwrap();
    for _ in 0..8 {
        assert!(reader.next_batch().await.unwrap().records.is_empty());
    }
    let idle: Vec<u128> = gaps(&stream)[S0].iter().map(|g| g.as_millis()).collect();
    // The first gap follows GetShardIterator; then empty reads double the wait up to 1500 ms.
    assert_eq!(idle, vec![200, 200, 400, 800, 1500, 1500, 1500, 1500]);

    stream.record_calls(false);
    stream.record_calls(true);
    stream.put_batch((0..25_000).map(|i| (format!("k{i}"), "v"))).unwrap();
    let records = read_until(&mut reader, 25_000).await.0;
    assert_eq!(records.len(), 25_000);
    let busy: Vec<u128> = gaps(&stream)[S0].iter().map(|g| g.as_millis()).collect();
    assert_eq!(busy, vec![200, 200], "full batches are followed by reads at the rate floor");
}

#[tokio::test(start_paused = true)]
async fn dropping_a_read_midway_loses_nothing() {
    let stream = MemoryStream::with_config("cancel", 1, small_batches(false));
    stream.put_batch((0..300).map(|i| (format!("k{i}"), "v"))).unwrap();
    stream.set_faults(FaultConfig {
        latency: 0.5,
        latency_duration: Duration::from_millis(20),
        ..FaultConfig::uniform(5, 0.1)
    });
    let fetcher = PollingFetcher::new(stream.clone(), stream.config().polling.clone()).unwrap();
    let mut reader =
        fetcher.reader(&spec(&stream, S0), &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).unwrap();
    let mut records = Vec::new();
    let mut dropped = 0;
    while records.len() < 300 {
        match tokio::time::timeout(Duration::from_millis(10), reader.next_batch()).await {
            Ok(batch) => records.extend(batch.unwrap().records),
            Err(_) => dropped += 1,
        }
    }
    assert!(dropped > 0, "some reads were abandoned");
    assert_eq!(seqs(&records), seqs(&stream.records(S0)));
}
