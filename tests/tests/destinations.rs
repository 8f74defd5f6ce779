//! The SQS, SNS and S3 failure destinations (kcl-aws-destinations) against moto in server mode, and one end to end:
//! a worker on kinesis-mock + DynamoDB Local dead-letters a poison record to SQS and moves on.
//!
//! What is checked: the document is Lambda's on-failure record (condition, invoke count, KinesisBatchInfo with
//! shard, first/last sequence numbers and arrival times, batch size, stream ARN) carrying the records; batches
//! above 256 KiB are split, never truncated; a record too large for any message goes to the S3 overflow bucket
//! (or `send` fails before sending anything); `send` fails when the service does not accept the message.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use kcl_aws_destinations::{
    DestinationError, MAX_MESSAGE_BYTES, RecordFormat, S3Destination, SnsDestination, SqsDestination,
};
use kcl_core::lease::LeaseStore;
use kcl_core::process::{
    BatchFailure, BatchResult, Checkpointing, FailedRecords, FailureDestination, FailureReason, OnExhausted,
    ProcessingConfig, RetryPolicy,
};
use kcl_core::retrieve::PollingConfig;
use kcl_core::{Batch, Checkpointer, InitialPosition, Record, RecordProcessor, SequenceNumber, Worker};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::moto::{s3_client, sns_client, sqs_client};
use kcl_tests::{emulators, unique_name};
use serde_json::Value;

const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/readings";

fn failed(payloads: Vec<Bytes>) -> FailedRecords {
    let arrival = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_860_000_123);
    let records = payloads
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            let mut record = Record::new(data, format!("device-{i}"), SequenceNumber::from_u128(1000 + i as u128));
            record.approximate_arrival_timestamp = Some(arrival + Duration::from_secs(i as u64));
            record
        })
        .collect();
    FailedRecords::new("readings", "shardId-000000000003", records, FailureReason::AttemptsExhausted)
        .with_attempts(3)
        .with_last_error("cannot parse".to_owned())
}

async fn queue(sqs: &aws_sdk_sqs::Client) -> String {
    let output = sqs.create_queue().queue_name(unique_name("dlq")).send().await.expect("CreateQueue");
    output.queue_url().expect("a queue URL").to_owned()
}

/// Every message of the queue (waits briefly for the first), bodies parsed.
async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<Value> {
    let mut bodies = Vec::new();
    loop {
        let output = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(if bodies.is_empty() { 1 } else { 0 })
            .send()
            .await
            .expect("ReceiveMessage");
        let messages = output.messages();
        if messages.is_empty() {
            return bodies;
        }
        for message in messages {
            bodies.push(serde_json::from_str(message.body().expect("a body")).expect("JSON"));
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().expect("a receipt handle"))
                .send()
                .await
                .expect("DeleteMessage");
        }
    }
}

/// The payloads carried under `payload.Records[*].kinesis.data`, decoded.
fn carried(record: &Value) -> Vec<Vec<u8>> {
    record["payload"]["Records"]
        .as_array()
        .expect("payload.Records")
        .iter()
        .map(|r| base64::engine::general_purpose::STANDARD.decode(r["kinesis"]["data"].as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn sqs_gets_lambdas_on_failure_record_with_the_records() {
    let sqs = sqs_client().await;
    let queue_url = queue(&sqs).await;
    let batch = failed(vec![Bytes::from_static(br#"{"temp":1}"#), Bytes::from_static(b"\x00\x01binary")]);
    let destination = SqsDestination::new(sqs.clone(), &queue_url)
        .format(RecordFormat::new().stream_arn(STREAM_ARN).function_arn("iot-app"));
    destination.send(&batch).await.expect("send");

    let bodies = drain(&sqs, &queue_url).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let record = &bodies[0];
    assert_eq!(record["version"], "1.0");
    assert_eq!(record["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(record["requestContext"]["functionArn"], "iot-app");
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    let info = &record["KinesisBatchInfo"];
    assert_eq!(info["shardId"], "shardId-000000000003");
    assert_eq!(info["startSequenceNumber"], "1000");
    assert_eq!(info["endSequenceNumber"], "1001");
    assert_eq!(info["approximateArrivalOfFirstRecord"], "2025-12-04T14:53:20.123Z");
    assert_eq!(info["approximateArrivalOfLastRecord"], "2025-12-04T14:53:21.123Z");
    assert_eq!(info["batchSize"], 2);
    assert_eq!(info["streamArn"], STREAM_ARN);
    assert!(record["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(carried(record), vec![br#"{"temp":1}"#.to_vec(), b"\x00\x01binary".to_vec()]);
    let first = &record["payload"]["Records"][0];
    assert_eq!(first["kinesis"]["partitionKey"], "device-0");
    assert_eq!(first["eventSourceARN"], STREAM_ARN);
    assert_eq!(first["awsRegion"], "us-east-1");
    assert_eq!(record["kclContext"]["lastError"], "cannot parse");
}

#[tokio::test]
async fn metadata_only_is_lambdas_exact_message() {
    let sqs = sqs_client().await;
    let queue_url = queue(&sqs).await;
    let destination = SqsDestination::new(sqs.clone(), &queue_url).format(RecordFormat::new().metadata_only());
    destination.send(&failed(vec![Bytes::from(vec![b'x'; 200_000]); 3])).await.expect("send");
    let bodies = drain(&sqs, &queue_url).await;
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].get("payload").is_none());
    assert_eq!(bodies[0]["KinesisBatchInfo"]["batchSize"], 3);
    // No ARN known and no resolver: the stream's name stands in.
    assert_eq!(bodies[0]["KinesisBatchInfo"]["streamArn"], "readings");
}

#[tokio::test]
async fn batches_above_256_kib_are_split_into_messages_that_fit() {
    let sqs = sqs_client().await;
    let queue_url = queue(&sqs).await;
    let payloads: Vec<Bytes> = (0..10u8).map(|i| Bytes::from(vec![b'a' + i; 60 * 1024])).collect();
    let destination = SqsDestination::new(sqs.clone(), &queue_url).format(RecordFormat::new().stream_arn(STREAM_ARN));
    destination.send(&failed(payloads.clone())).await.expect("send");

    let mut bodies = drain(&sqs, &queue_url).await;
    assert!(bodies.len() >= 3, "10 × 80 KiB (base64) cannot fit in fewer than 3 messages: {}", bodies.len());
    bodies.sort_by_key(|b| b["KinesisBatchInfo"]["startSequenceNumber"].as_str().unwrap().parse::<u64>().unwrap());
    let mut all = Vec::new();
    let mut next = 1000u64;
    for body in &bodies {
        assert!(body.to_string().len() <= MAX_MESSAGE_BYTES);
        let info = &body["KinesisBatchInfo"];
        let start: u64 = info["startSequenceNumber"].as_str().unwrap().parse().unwrap();
        let end: u64 = info["endSequenceNumber"].as_str().unwrap().parse().unwrap();
        assert_eq!(start, next, "consecutive ranges");
        let records = carried(body);
        assert_eq!(info["batchSize"], records.len());
        assert_eq!(end - start + 1, records.len() as u64);
        next = end + 1;
        all.extend(records);
    }
    assert_eq!(all, payloads.iter().map(|p| p.to_vec()).collect::<Vec<_>>(), "every record once, in order");
}

#[tokio::test]
async fn a_record_too_large_for_any_message_goes_to_the_overflow_bucket_or_fails_the_send() {
    let (sqs, s3) = (sqs_client().await, s3_client().await);
    let queue_url = queue(&sqs).await;
    let bucket = unique_name("overflow");
    s3.create_bucket().bucket(&bucket).send().await.expect("CreateBucket");
    let big = Bytes::from(vec![b'z'; 300 * 1024]);
    let batch = failed(vec![Bytes::from_static(b"small"), big.clone(), Bytes::from_static(b"after")]);

    // Without an overflow bucket: refused before anything is sent, with the remedy.
    let plain = SqsDestination::new(sqs.clone(), &queue_url);
    let error = plain.send(&batch).await.expect_err("a 400 KiB message cannot be sent");
    let error = error.downcast::<DestinationError>().expect("a DestinationError");
    assert!(matches!(*error, DestinationError::TooLarge { .. }));
    assert!(error.to_string().contains("overflow"), "{error}");
    assert!(drain(&sqs, &queue_url).await.is_empty(), "nothing sent for a refused batch");

    let destination = plain.overflow(S3Destination::new(s3.clone(), &bucket).mapping_id("iot-app"));
    destination.send(&batch).await.expect("send");
    let bodies = drain(&sqs, &queue_url).await;
    assert_eq!(bodies.len(), 3, "small | big (pointer) | after: {bodies:?}");
    let pointer = bodies.iter().find(|b| b.get("payloadLocation").is_some()).expect("a message naming the object");
    assert_eq!(pointer["KinesisBatchInfo"]["startSequenceNumber"], "1001");
    assert_eq!(pointer["payloadLocation"]["s3Bucket"], bucket.as_str());
    let key = pointer["payloadLocation"]["s3Key"].as_str().unwrap();
    assert!(key.starts_with("aws/lambda/iot-app/shardId-000000000003/"), "{key}");
    let object = s3.get_object().bucket(&bucket).key(key).send().await.expect("GetObject");
    let object: Value = serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(carried(&object), vec![big.to_vec()]);
}

#[tokio::test]
async fn s3_stores_each_batch_as_lambdas_object_with_the_records() {
    let s3 = s3_client().await;
    let bucket = unique_name("failed");
    s3.create_bucket().bucket(&bucket).send().await.expect("CreateBucket");
    let destination =
        S3Destination::new(s3.clone(), &bucket).mapping_id("esm-1").format(RecordFormat::new().stream_arn(STREAM_ARN));
    let payloads = vec![Bytes::from(vec![7u8; 2 << 20]), Bytes::from_static(b"second")];
    destination.send(&failed(payloads.clone())).await.expect("send");

    let listed = s3.list_objects_v2().bucket(&bucket).send().await.expect("ListObjectsV2");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let parts: Vec<&str> = keys[0].split('/').collect();
    assert_eq!(&parts[..4], ["aws", "lambda", "esm-1", "shardId-000000000003"]);
    assert_eq!(parts.len(), 8, "aws/lambda/<id>/<shard>/YYYY/MM/DD/<time>-<uuid>: {}", keys[0]);
    assert!(parts[7].starts_with(&format!("{}-{}-{}T", parts[4], parts[5], parts[6])), "{}", keys[0]);
    let object = s3.get_object().bucket(&bucket).key(keys[0]).send().await.expect("GetObject");
    let record: Value = serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(record["KinesisBatchInfo"]["batchSize"], 2);
    assert_eq!(record["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(carried(&record), payloads.iter().map(|p| p.to_vec()).collect::<Vec<_>>());
}

#[tokio::test]
async fn sns_publishes_the_record_to_subscribers() {
    let (sns, sqs) = (sns_client().await, sqs_client().await);
    let topic = sns.create_topic().name(unique_name("failures")).send().await.expect("CreateTopic");
    let topic_arn = topic.topic_arn().expect("a topic ARN").to_owned();
    let queue_url = queue(&sqs).await;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes");
    let queue_arn = attributes.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn));
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn.expect("a queue ARN"))
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("Subscribe");

    let payloads: Vec<Bytes> = (0..6u8).map(|i| Bytes::from(vec![b'k' + i; 70 * 1024])).collect();
    SnsDestination::new(sns.clone(), &topic_arn).send(&failed(payloads.clone())).await.expect("send");
    let mut bodies = drain(&sqs, &queue_url).await;
    assert!(bodies.len() >= 2, "6 × 93 KiB is split: {}", bodies.len());
    bodies.sort_by_key(|b| b["KinesisBatchInfo"]["startSequenceNumber"].as_str().unwrap().to_owned());
    let all: Vec<Vec<u8>> = bodies.iter().flat_map(carried).collect();
    assert_eq!(all, payloads.iter().map(|p| p.to_vec()).collect::<Vec<_>>());
}

#[tokio::test]
async fn send_fails_when_the_service_does_not_accept_the_message() {
    let (sqs, sns, s3) = (sqs_client().await, sns_client().await, s3_client().await);
    let batch = failed(vec![Bytes::from_static(b"x")]);
    let missing_queue = format!("{}/123456789012/{}", kcl_tests::moto::moto_endpoint(), unique_name("absent"));
    assert!(SqsDestination::new(sqs, missing_queue).send(&batch).await.is_err());
    let missing_topic = format!("arn:aws:sns:us-east-1:123456789012:{}", unique_name("absent"));
    assert!(SnsDestination::new(sns, missing_topic).send(&batch).await.is_err());
    assert!(S3Destination::new(s3, unique_name("absent")).send(&batch).await.is_err());
}

/// Fails every call holding the poison record, naming it.
struct Poisoned {
    processed: Arc<Mutex<BTreeSet<String>>>,
}

#[async_trait::async_trait]
impl RecordProcessor for Poisoned {
    async fn process_records(&mut self, batch: &Batch, _checkpointer: &mut Checkpointer) -> BatchResult {
        let (poison, good): (Vec<&Record>, Vec<&Record>) =
            batch.records.iter().partition(|r| r.data.as_ref() == b"poison");
        self.processed.lock().unwrap().extend(good.iter().map(|r| String::from_utf8_lossy(&r.data).into_owned()));
        if poison.is_empty() { Ok(()) } else { Err(BatchFailure::failed_records(poison, "cannot parse the payload")) }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dead_letters_a_poison_record_to_sqs_and_moves_on() {
    let kinesis = emulators().kinesis_client().await;
    let dynamodb = emulators().dynamodb_client().await;
    let sqs = sqs_client().await;
    let queue_url = queue(&sqs).await;
    let stream = unique_name("dlq-e2e");
    let table = unique_name("dlq-e2e-leases");
    kcl_tests::kinesis::create_stream(&kinesis, &stream, 1).await;
    let mut poison_sequence = String::new();
    for i in 0..20 {
        let data = if i == 7 { "poison".to_owned() } else { format!("r{i}") };
        let put = kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("device-{}", i % 3))
            .data(aws_sdk_kinesis::primitives::Blob::new(data))
            .send()
            .await
            .expect("PutRecord");
        if i == 7 {
            poison_sequence = put.sequence_number().to_owned();
        }
    }
    let store = Arc::new(DynamoLeaseStore::builder(dynamodb.clone(), &table).build().await.expect("lease table"));
    let processed = Arc::new(Mutex::new(BTreeSet::new()));
    let destination =
        SqsDestination::new(sqs.clone(), &queue_url).format(RecordFormat::new().resolve_stream_arn(kinesis.clone()));
    let worker = Worker::builder(stream.as_str(), table.as_str())
        .worker_id("worker-1")
        .kinesis_client(kinesis.clone())
        .lease_store(store.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .polling_config(
            PollingConfig::default().with_max_records(5).with_idle_time_between_reads(Duration::from_millis(100)),
        )
        .processing(ProcessingConfig::default().checkpointing(Checkpointing::AfterEachBatch))
        .retry_policy(
            RetryPolicy::default()
                .max_attempts(Some(2))
                .backoff(Duration::from_millis(20), Duration::from_millis(50))
                .on_exhausted(OnExhausted::SendToDestination),
        )
        .failure_destination(Arc::new(destination))
        .processor_factory({
            let processed = processed.clone();
            move |_: &str| Poisoned { processed: processed.clone() }
        })
        .build()
        .expect("worker");
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while processed.lock().unwrap().len() < 19 {
        assert!(tokio::time::Instant::now() < deadline, "the shard did not move past the poison record");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.expect("stopped").expect("joined").expect("ran");

    let bodies = drain(&sqs, &queue_url).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let info = &bodies[0]["KinesisBatchInfo"];
    assert_eq!(info["startSequenceNumber"], poison_sequence.as_str());
    assert_eq!(info["endSequenceNumber"], poison_sequence.as_str());
    assert_eq!(info["batchSize"], 1);
    let arn = info["streamArn"].as_str().unwrap();
    assert!(arn.starts_with("arn:aws:kinesis:") && arn.ends_with(&format!("stream/{stream}")), "{arn}");
    assert_eq!(bodies[0]["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(carried(&bodies[0]), vec![b"poison".to_vec()]);
    // The checkpoint passed the dead-lettered record: it is at the shard's last record.
    let shard = info["shardId"].as_str().unwrap();
    let lease = store.get_lease(shard).await.expect("GetLease").expect("the lease");
    let poison = SequenceNumber::parse(&poison_sequence).expect("a sequence number");
    assert!(
        lease.checkpoint.sequence_number().is_some_and(|s| *s > poison),
        "checkpoint {} is past the poison",
        lease.checkpoint
    );
    kcl_tests::kinesis::delete_stream(&kinesis, &stream).await;
    let _ = dynamodb.delete_table().table_name(&table).send().await;
}
