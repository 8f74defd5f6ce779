//! Prefetch bounds, the shared byte budget, cancellation, and delivery through the queue.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{read_until, seqs};
use kcl_core::retrieve::memory_stream::{FaultConfig, MemoryStream, MemoryStreamConfig};
use kcl_core::retrieve::{ByteBudget, PollingFetcher, PrefetchConfig, PrefetchReader, ShardReader, ShardSpec};
use kcl_core::{ExtendedSequenceNumber, InitialPosition};

const S0: &str = "shardId-000000000000";
const PAYLOAD: usize = 100;
const KEY: usize = 6; // "k00000"

fn stream(name: &str, shards: usize, records: usize) -> MemoryStream {
    let mut config = MemoryStreamConfig::default();
    config.polling.prefetch = None;
    config.polling.max_records = 1000;
    let stream = MemoryStream::with_config(name, shards, config);
    stream.put_batch((0..records).map(|i| (format!("k{i:05}"), Bytes::from(vec![b'x'; PAYLOAD])))).unwrap();
    stream
}

fn prefetching(stream: &MemoryStream, shard: &str, config: PrefetchConfig, budget: ByteBudget) -> PrefetchReader {
    let fetcher = PollingFetcher::new(stream.clone(), stream.config().polling.clone()).unwrap();
    let spec = ShardSpec::new(stream.name().clone(), shard);
    let inner = fetcher.reader(&spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).unwrap();
    let limit = fetcher.config().max_records;
    PrefetchReader::spawn(inner, config, limit, budget, tracing::Span::none())
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_never_lets_the_queue_pass_its_bounds() {
    let stream = stream("bounds", 1, 50_000);
    stream.set_faults(FaultConfig::uniform(4, 0.1));
    let config = PrefetchConfig::new(4, 256 << 10, 3000);
    let mut reader = prefetching(&stream, S0, config.clone(), ByteBudget::new(1 << 30));
    let gauge = reader.gauge();
    let batch_bytes = 1000 * (PAYLOAD + KEY);
    let mut records = Vec::new();
    let mut saw_full_queue = false;
    while records.len() < 50_000 {
        // Processing is slow: the reader gets far ahead unless the bounds stop it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(gauge.queued_records() <= config.max_records);
        assert!(gauge.queued_batches() <= config.max_batches);
        assert!(gauge.queued_bytes() <= config.max_bytes + batch_bytes);
        saw_full_queue |=
            gauge.queued_records() + 1000 > config.max_records || gauge.queued_bytes() >= config.max_bytes;
        records.extend(reader.next_batch().await.unwrap().records);
    }
    assert!(saw_full_queue, "the test must actually fill the queue");
    assert!(gauge.peak_records() <= config.max_records, "records are bounded strictly: {}", gauge.peak_records());
    assert!(gauge.peak_batches() <= config.max_batches);
    assert!(gauge.peak_bytes() <= config.max_bytes + batch_bytes, "bytes pass the bound by at most one batch");
    assert_eq!(seqs(&records), seqs(&stream.records(S0)));
}

#[tokio::test(start_paused = true)]
async fn the_worker_budget_bounds_all_queues_together() {
    let stream = stream("budget", 4, 40_000);
    let budget = ByteBudget::new(300_000);
    let generous = PrefetchConfig::new(10, 64 << 20, 100_000);
    let mut readers: Vec<PrefetchReader> = stream
        .open_shard_ids()
        .iter()
        .map(|shard| prefetching(&stream, shard, generous.clone(), budget.clone()))
        .collect();
    // Nobody consumes: the queues fill until the budget runs out, then stay put.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let calls = stream.call_counts();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(stream.call_counts(), calls, "blocked readers make no calls");
    let queued: usize = readers.iter().map(|r| r.gauge().queued_bytes()).sum();
    assert!(queued <= budget.total(), "{queued} queued bytes within a {} byte budget", budget.total());
    // A batch waiting for budget already holds part of it (Tokio hands permits to waiters as they free up).
    assert!(queued + budget.available() <= budget.total(), "every queued byte holds a budget permit");
    assert!(queued > budget.total() / 2, "the budget is actually used: {queued}");

    // Each shard has its own consumer (as in the pipeline): draining releases budget and everything arrives in order.
    let shards = stream.open_shard_ids();
    let reads = readers.iter_mut().zip(&shards).map(|(reader, shard)| {
        let expected = stream.records(shard);
        async move {
            let records = read_until(reader, expected.len()).await.0;
            assert_eq!(seqs(&records), seqs(&expected));
        }
    });
    futures::future::join_all(reads).await;
    drop(readers);
    assert_eq!(budget.available(), budget.total(), "dropped readers return their bytes");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_reader_stops_its_task() {
    let stream = stream("drop", 1, 0);
    let reader = prefetching(&stream, S0, PrefetchConfig::default(), ByteBudget::new(1 << 20));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = stream.call_counts().0;
    assert!(before > 0, "the idle task polls while the reader lives");
    drop(reader);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let after_drop = stream.call_counts().0;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(stream.call_counts().0, after_drop, "no calls after the reader is dropped");
}

#[tokio::test(start_paused = true)]
async fn abandoned_reads_lose_nothing_through_the_queue() {
    let stream = stream("cancel", 1, 5000);
    let mut reader = prefetching(&stream, S0, PrefetchConfig::default(), ByteBudget::new(1 << 30));
    let mut records = Vec::new();
    while records.len() < 5000 {
        if let Ok(batch) = tokio::time::timeout(Duration::from_micros(1), reader.next_batch()).await {
            records.extend(batch.unwrap().records);
        }
    }
    assert_eq!(seqs(&records), seqs(&stream.records(S0)));
}

#[tokio::test(start_paused = true)]
async fn the_end_of_a_shard_and_fatal_errors_come_through_the_queue() {
    let stream = stream("end", 1, 2500);
    stream.split(S0, 1 << 100).unwrap();
    let mut reader = prefetching(&stream, S0, PrefetchConfig::default(), ByteBudget::new(1 << 30));
    let (records, last) = read_until(&mut reader, usize::MAX).await;
    assert_eq!(records.len(), 2500);
    let last = last.unwrap();
    assert_eq!(last.child_shards.map(|c| c.len()), Some(2));
    let again = reader.next_batch().await.unwrap();
    assert!(again.shard_end && again.child_shards.is_some(), "the end is sticky, children included");

    let mut reader = prefetching(&stream, "shardId-000000000042", PrefetchConfig::default(), ByteBudget::new(1 << 20));
    assert!(!reader.next_batch().await.unwrap_err().is_retryable());
    assert!(!reader.next_batch().await.unwrap_err().is_retryable());
}
