//! Smoke tests of the emulators themselves: the Kinesis and DynamoDB calls the framework is built on behave as the
//! framework expects. When one of these fails, look at the emulator set-up before at kcl-rs.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableStatus,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use futures::FutureExt;
use kcl_core::SequenceNumber;
use kcl_tests::{emulators, unique_name};

const RECORDS: usize = 48;
const SHARDS: i32 = 3;
const WAIT: Duration = Duration::from_secs(30);

/// Runs `test`, then `cleanup` whether or not the test panicked, then re-raises the test's panic.
async fn with_cleanup<T, C>(test: T, cleanup: C)
where
    T: Future<Output = ()>,
    C: Future<Output = ()>,
{
    let outcome = AssertUnwindSafe(test).catch_unwind().await;
    cleanup.await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn endpoints_are_on_loopback() {
    let emulators = emulators();
    for endpoint in [emulators.kinesis_endpoint(), emulators.dynamodb_endpoint()] {
        assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint} is not a loopback endpoint");
    }
    assert!(emulators.kinesis_tls_port().is_some_and(|port| port > 0), "the runner exports the TLS port");
}

#[tokio::test]
async fn kinesis_records_come_back_exactly_once_per_shard() {
    let kinesis = emulators().kinesis_client().await;
    let stream = unique_name("smoke");
    kinesis.create_stream().stream_name(&stream).shard_count(SHARDS).send().await.unwrap();

    let test = async {
        let deadline = Instant::now() + WAIT;
        loop {
            let summary = kinesis.describe_stream_summary().stream_name(&stream).send().await.unwrap();
            let summary = summary.stream_description_summary().unwrap();
            if summary.stream_status() == &StreamStatus::Active {
                assert_eq!(summary.open_shard_count(), SHARDS);
                break;
            }
            assert!(Instant::now() < deadline, "{stream} not ACTIVE after {WAIT:?}: {:?}", summary.stream_status());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Distinct partition keys spread the records over the shards by the MD5 of the key.
        let sent: BTreeMap<String, Vec<u8>> =
            (0..RECORDS).map(|i| (format!("pk-{i:03}"), format!("record {i} of {stream}").into_bytes())).collect();
        let entries = sent
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder().partition_key(key).data(Blob::new(data.clone())).build().unwrap()
            })
            .collect::<Vec<_>>();
        let put = kinesis.put_records().stream_name(&stream).set_records(Some(entries)).send().await.unwrap();
        assert_eq!(put.failed_record_count(), Some(0));
        assert_eq!(put.records().len(), RECORDS);
        // Where each record went, by partition key (PutRecords answers in request order).
        let mut placed: HashMap<&str, (String, String)> = HashMap::new();
        for (key, result) in sent.keys().zip(put.records()) {
            assert!(result.error_code().is_none(), "{key}: {:?}", result.error_message());
            let shard = result.shard_id().unwrap().to_owned();
            let sequence = result.sequence_number().unwrap().to_owned();
            placed.insert(key.as_str(), (shard, sequence));
        }

        let shards = kinesis.list_shards().stream_name(&stream).send().await.unwrap();
        let shard_ids: Vec<&str> = shards.shards().iter().map(|shard| shard.shard_id()).collect();
        assert_eq!(shard_ids.len(), SHARDS as usize, "{shard_ids:?}");
        assert!(shards.next_token().is_none());

        let mut received: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut shards_with_records = 0;
        for shard_id in &shard_ids {
            let expected = placed.values().filter(|(shard, _)| shard == shard_id).count();
            shards_with_records += usize::from(expected > 0);
            let iterator = kinesis
                .get_shard_iterator()
                .stream_name(&stream)
                .shard_id(*shard_id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap();
            let mut iterator = iterator.shard_iterator().unwrap().to_owned();
            let mut from_shard = 0;
            let mut last_sequence: Option<SequenceNumber> = None;
            let deadline = Instant::now() + WAIT;
            // Read until every record placed on this shard came back, then once more: the shard must be drained.
            loop {
                let page = kinesis.get_records().shard_iterator(&iterator).limit(10).send().await.unwrap();
                for record in page.records() {
                    let key = record.partition_key().to_owned();
                    let (shard, sequence) = placed.get(key.as_str()).unwrap_or_else(|| panic!("unknown key {key}"));
                    assert_eq!(shard, shard_id, "{key} came back on another shard than PutRecords said");
                    assert_eq!(record.sequence_number(), sequence, "{key}: sequence number differs");
                    let number = SequenceNumber::parse(sequence).unwrap();
                    assert!(
                        last_sequence.as_ref().is_none_or(|last| *last < number),
                        "{key}: sequence numbers not increasing"
                    );
                    last_sequence = Some(number);
                    let previous = received.insert(key.clone(), record.data().as_ref().to_vec());
                    assert!(previous.is_none(), "{key} came back twice");
                    from_shard += 1;
                }
                let drained = from_shard == expected && page.records().is_empty();
                iterator = page.next_shard_iterator().unwrap().to_owned();
                if drained {
                    break;
                }
                assert!(from_shard <= expected, "{shard_id}: {from_shard} records, {expected} were put there");
                assert!(Instant::now() < deadline, "{shard_id}: {from_shard} of {expected} records after {WAIT:?}");
            }
        }
        assert_eq!(received, sent, "every record comes back exactly once with its data");
        assert!(shards_with_records >= 2, "{RECORDS} distinct keys should land on more than one shard");
    };
    let cleanup = async {
        kinesis.delete_stream().stream_name(&stream).enforce_consumer_deletion(true).send().await.unwrap();
    };
    with_cleanup(test, cleanup).await;

    let deadline = Instant::now() + WAIT;
    loop {
        match kinesis.describe_stream_summary().stream_name(&stream).send().await {
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => break,
            Err(e) => panic!("describing deleted {stream}: {e:?}"),
            Ok(_) => assert!(Instant::now() < deadline, "{stream} still exists {WAIT:?} after DeleteStream"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn dynamodb_conditional_writes_reject_conflicts() {
    let dynamodb = emulators().dynamodb_client().await;
    let table = unique_name("smoke-leases");
    dynamodb
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("leaseKey")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("leaseKey").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();

    let test = async {
        let deadline = Instant::now() + WAIT;
        loop {
            let described = dynamodb.describe_table().table_name(&table).send().await.unwrap();
            let status = described.table().and_then(|table| table.table_status()).unwrap();
            if status == &TableStatus::Active {
                break;
            }
            assert!(Instant::now() < deadline, "{table} not ACTIVE after {WAIT:?}: {status:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let lease = |owner: &str, counter: u64| {
            HashMap::from([
                ("leaseKey".to_owned(), AttributeValue::S("shardId-000000000000".to_owned())),
                ("leaseOwner".to_owned(), AttributeValue::S(owner.to_owned())),
                ("leaseCounter".to_owned(), AttributeValue::N(counter.to_string())),
                ("checkpoint".to_owned(), AttributeValue::S("TRIM_HORIZON".to_owned())),
            ])
        };
        let create = |item: HashMap<String, AttributeValue>| {
            dynamodb
                .put_item()
                .table_name(&table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(leaseKey)")
                .send()
        };
        create(lease("worker-a", 1)).await.expect("the first create succeeds");
        let second = create(lease("worker-b", 1)).await.expect_err("the second create must fail");
        assert!(
            second.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()),
            "expected ConditionalCheckFailedException, got {second:?}"
        );

        let key = HashMap::from([("leaseKey".to_owned(), AttributeValue::S("shardId-000000000000".to_owned()))]);
        // Renewing with a stale lease counter fails and, when asked, returns the item as it is.
        let stale = dynamodb
            .update_item()
            .table_name(&table)
            .set_key(Some(key.clone()))
            .update_expression("SET leaseCounter = leaseCounter + :one")
            .condition_expression("leaseCounter = :expected AND leaseOwner = :owner")
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":expected", AttributeValue::N("7".to_owned()))
            .expression_attribute_values(":owner", AttributeValue::S("worker-a".to_owned()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await
            .expect_err("a stale counter must fail the condition");
        match stale.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                let current = e.item().expect("ReturnValuesOnConditionCheckFailure=ALL_OLD returns the item");
                assert_eq!(current.get("leaseCounter"), Some(&AttributeValue::N("1".to_owned())));
                assert_eq!(current.get("leaseOwner"), Some(&AttributeValue::S("worker-a".to_owned())));
            }
            _ => panic!("expected ConditionalCheckFailedException, got {stale:?}"),
        }

        // With the right counter the same renewal goes through, once.
        let renewed = dynamodb
            .update_item()
            .table_name(&table)
            .set_key(Some(key.clone()))
            .update_expression("SET leaseCounter = leaseCounter + :one")
            .condition_expression("leaseCounter = :expected AND leaseOwner = :owner")
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":expected", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":owner", AttributeValue::S("worker-a".to_owned()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .expect("the current counter satisfies the condition");
        assert_eq!(
            renewed.attributes().and_then(|item| item.get("leaseCounter")),
            Some(&AttributeValue::N("2".into()))
        );

        let stored =
            dynamodb.get_item().table_name(&table).set_key(Some(key)).consistent_read(true).send().await.unwrap();
        let stored = stored.item().expect("the lease exists");
        assert_eq!(stored.get("leaseCounter"), Some(&AttributeValue::N("2".to_owned())));
        assert_eq!(stored.get("leaseOwner"), Some(&AttributeValue::S("worker-a".to_owned())), "worker-b never wrote");
    };
    let cleanup = async {
        dynamodb.delete_table().table_name(&table).send().await.unwrap();
    };
    with_cleanup(test, cleanup).await;

    match dynamodb.describe_table().table_name(&table).send().await {
        Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {}
        other => panic!("{table} should be gone after DeleteTable: {other:?}"),
    }
}
