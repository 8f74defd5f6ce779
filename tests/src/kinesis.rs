//! Stream set-up for tests: create a stream and wait until it is ACTIVE, wait after a reshard, delete. They panic
//! on failure (test helpers).

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::types::StreamStatus;

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

/// Deletes the stream and its consumers; errors are ignored (cleanup).
pub async fn delete_stream(client: &Client, name: &str) {
    let _ = client.delete_stream().stream_name(name).enforce_consumer_deletion(true).send().await;
}
