//! `KinesisStreamDestination` on kinesis-mock behind the fault proxy: records reach the dead-letter stream with their
//! partition keys, and a `PutRecords` answer with fewer results than entries sent is not taken as "all stored" —
//! the destination puts every entry of that call again (kinesis-mock stored them all; only the answer was cut).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use kcl_core::process::{FailedRecords, FailureDestination, FailureReason, KinesisStreamDestination};
use kcl_core::{Record, SequenceNumber};
use kcl_tests::emulators::Emulators;
use kcl_tests::kinesis::{create_stream, delete_stream};
use kcl_tests::proxy::{FaultKind, FaultPlan, FaultProxy, Flavor};
use kcl_tests::{emulators, unique_name};

fn failed(n: u128) -> FailedRecords {
    let records = (0..n)
        .map(|i| Record::new(format!("dead {i}"), format!("key-{i}"), SequenceNumber::from_u128(100 + i)))
        .collect();
    FailedRecords::new("source", "shardId-000000000000", records, FailureReason::AttemptsExhausted)
        .with_attempts(3)
        .with_last_error("cannot parse".to_owned())
}

/// Every record in the stream's only shard: payload -> (partition key, how many times).
async fn stored(client: &aws_sdk_kinesis::Client, stream: &str) -> BTreeMap<String, (String, usize)> {
    let shards = client.list_shards().stream_name(stream).send().await.expect("ListShards");
    let shard = shards.shards()[0].shard_id().to_owned();
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator;
    let mut seen: BTreeMap<String, (String, usize)> = BTreeMap::new();
    // kinesis-mock answers from what it holds; a few reads reach the end (an empty answer).
    for _ in 0..20 {
        let Some(current) = iterator else { break };
        let read = client.get_records().shard_iterator(current).send().await.expect("GetRecords");
        if read.records().is_empty() {
            break;
        }
        for record in read.records() {
            let data = String::from_utf8_lossy(record.data().as_ref()).into_owned();
            seen.entry(data).or_insert_with(|| (record.partition_key().to_owned(), 0)).1 += 1;
        }
        iterator = read.next_shard_iterator;
    }
    seen
}

#[tokio::test]
async fn a_put_records_answer_shorter_than_the_request_is_not_taken_as_stored() {
    let direct = emulators().kinesis_client().await;
    let stream = unique_name("dead-letters");
    create_stream(&direct, &stream, 1).await;
    let proxy = FaultProxy::start(emulators().kinesis_endpoint(), Flavor::Kinesis, 17).await.unwrap();
    let through_proxy = aws_sdk_kinesis::Client::new(&Emulators::sdk_config(&proxy.endpoint()).await);
    let destination = KinesisStreamDestination::new(through_proxy, &stream);

    // The first answer loses its last result (all 5 were stored, but the answer vouches for 4 only).
    proxy.control().set(Some(FaultPlan::always(FaultKind::ShortRecordsAnswer, Duration::ZERO).limited(1)));
    destination.send(&failed(5)).await.expect("the second PutRecords is answered in full");
    let stats = proxy.control().stats();
    assert_eq!(stats.injected.get(&FaultKind::ShortRecordsAnswer), Some(&1));
    assert_eq!(stats.requests, 2, "the destination put the unconfirmed entries again instead of counting them stored");

    let stored = stored(&direct, &stream).await;
    assert_eq!(stored.len(), 5, "{stored:?}");
    for i in 0..5 {
        // Every entry of the short-answered call went again: each payload twice, with its partition key.
        assert_eq!(stored.get(&format!("dead {i}")), Some(&(format!("key-{i}"), 2)), "{stored:?}");
    }
    delete_stream(&direct, &stream).await;
}
