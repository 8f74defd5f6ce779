//! Stream set-up for tests: create a stream and wait until it is ACTIVE, wait after a reshard, delete; put numbered
//! records and read them back through a `ShardReader`. They panic on failure (test helpers).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use kcl_core::KinesisRecord;
use kcl_core::retrieve::{ReadBatch, ShardReader};

/// Creates a stream with `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(client: &Client, name: &str, shards: i32) {
    client.create_stream().stream_name(name).shard_count(shards).send().await.expect("CreateStream");
    wait_active(client, name).await;
}

/// Waits until the stream is ACTIVE (at most 30 s), e.g. after a split or a merge.
pub async fn wait_active(client: &Client, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let summary = client.describe_stream_summary().stream_name(name).send().await.expect("DescribeStreamSummary");
        if summary.stream_description_summary.is_some_and(|s| s.stream_status == StreamStatus::Active) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "stream {name} did not become ACTIVE in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Splits `shard` in the middle of its hash range and waits until the stream is ACTIVE again.
pub async fn split_in_half(client: &Client, name: &str, shard: &str) {
    let listed = client.list_shards().stream_name(name).send().await.expect("ListShards");
    let found = listed.shards().iter().find(|s| s.shard_id() == shard).expect("the shard to split is listed");
    let range = found.hash_key_range().expect("a hash key range");
    let start: u128 = range.starting_hash_key().parse().expect("a decimal start");
    let end: u128 = range.ending_hash_key().parse().expect("a decimal end");
    client
        .split_shard()
        .stream_name(name)
        .shard_to_split(shard)
        .new_starting_hash_key((start + (end - start) / 2).to_string())
        .send()
        .await
        .expect("SplitShard");
    wait_active(client, name).await;
}

/// Deletes the stream and its consumers; errors are ignored (cleanup).
pub async fn delete_stream(client: &Client, name: &str) {
    let _ = client.delete_stream().stream_name(name).enforce_consumer_deletion(true).send().await;
}

/// What `PutRecords` reported: shard id → (sequence number, payload) in put order.
pub type Written = BTreeMap<String, Vec<(String, String)>>;

/// Puts `count` records `{prefix}-{i}` with partition keys `{prefix}-key-{i}` (250 per call) and adds where each
/// went to `written`.
pub async fn put_numbered(client: &Client, name: &str, prefix: &str, count: usize, written: &mut Written) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(250) {
        let entries = chunk
            .iter()
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("{prefix}-key-{i}"))
                    .data(Blob::new(format!("{prefix}-{i}")))
                    .build()
                    .expect("both required fields set")
            })
            .collect();
        let output =
            client.put_records().stream_name(name).set_records(Some(entries)).send().await.expect("PutRecords");
        assert_eq!(output.failed_record_count.unwrap_or(0), 0);
        for (entry, i) in output.records.into_iter().zip(chunk) {
            let shard = entry.shard_id.expect("PutRecords reports the shard of a record it stored");
            let sequence = entry.sequence_number.expect("PutRecords reports the sequence number it gave");
            written.entry(shard).or_default().push((sequence, format!("{prefix}-{i}")));
        }
    }
}

/// (sequence number, UTF-8 payload) of each record, to compare with [`Written`].
pub fn pairs(records: &[KinesisRecord]) -> Vec<(String, String)> {
    let text = |r: &KinesisRecord| String::from_utf8(r.data.to_vec()).expect("a UTF-8 payload");
    records.iter().map(|r| (r.sequence_number.to_string(), text(r))).collect()
}

/// Reads until `n` records or the shard end (then with its final batch), panicking when that takes longer than
/// `within` or a read fails.
pub async fn read_records(
    reader: &mut dyn ShardReader,
    n: usize,
    within: Duration,
) -> (Vec<KinesisRecord>, Option<ReadBatch>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut records = Vec::new();
    while records.len() < n {
        let batch = tokio::time::timeout_at(deadline, reader.next_batch())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {n} records", records.len()))
            .expect("read a batch");
        records.extend(batch.records.iter().cloned());
        if batch.shard_end {
            return (records, Some(batch));
        }
    }
    (records, None)
}
