//! Log hygiene (issue 17): with every log at TRACE, neither the AWS secret access key nor record payloads appear in
//! any output — not from a worker reading, processing, checkpointing and dead-lettering records on kinesis-mock +
//! DynamoDB Local, not from the failure destinations (SQS, SNS, S3 on moto, a Kinesis stream), not from their
//! errors, and not from `kcl-admin` (stdout and stderr, `RUST_LOG=trace`).
//!
//! The clients carry a known secret key, the records a known marker. The output is also checked for the base64 forms
//! of both (Kinesis and the destinations carry payloads base64-encoded) and must hold TRACE lines of kcl-rs and of
//! the SDK, so the test cannot pass by capturing nothing.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use base64::Engine;
use bytes::Bytes;
use kcl_aws_destinations::{S3Destination, SnsDestination, SqsDestination};
use kcl_core::process::{
    BatchFailure, BatchResult, Checkpointing, FailedRecords, FailureDestination, FailureReason,
    KinesisStreamDestination, OnExhausted, ProcessingConfig, ProcessorError, RetryPolicy,
};
use kcl_core::retrieve::fanout::FanOutConfig;
use kcl_core::retrieve::{GetRecordsPath, PollingConfig};
use kcl_core::{Batch, Checkpointer, InitialPosition, Record, RecordProcessor, Retrieval, SequenceNumber, Worker};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::logs::CapturedLogs;
use kcl_tests::moto::moto_endpoint;
use kcl_tests::{emulators, unique_name};

const ACCESS_KEY_ID: &str = "AKIAHYGIENE000000001";
const SECRET_ACCESS_KEY: &str = "hYg1eneS3cretAcce55KeyMarker0123456789ab";
const PAYLOAD_MARKER: &str = "pAyL0adMarker-7f3c1e";
const RECORDS: usize = 12;

/// Every form in which a secret or a payload could leak: the strings, and base64 of each record's data.
fn forbidden() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = vec![SECRET_ACCESS_KEY.to_owned(), PAYLOAD_MARKER.to_owned(), b64.encode(SECRET_ACCESS_KEY)];
    // Inside a longer payload the marker's base64 depends on where it starts modulo 3 bytes: for each start, the
    // characters encoded from marker bytes alone.
    for shift in 0..3 {
        let encoded = b64.encode(format!("{}{PAYLOAD_MARKER}", "x".repeat(shift)));
        let from = if shift == 0 { 0 } else { 4 };
        let to = 4 * ((shift + PAYLOAD_MARKER.len()) / 3);
        forms.push(encoded[from..to].to_owned());
    }
    forms.extend((0..RECORDS).map(|n| b64.encode(payload(n))));
    // Bytes printed as a list of numbers (`Debug` of a `Vec<u8>`).
    forms.push(PAYLOAD_MARKER.bytes().map(|b| b.to_string()).collect::<Vec<_>>().join(", "));
    forms
}

fn payload(n: usize) -> String {
    format!(r#"{{"timestamp":{n},"client_id":"device-{}","marker":"{PAYLOAD_MARKER}","temp":21.5}}"#, n % 3)
}

fn assert_clean(what: &str, text: &str) {
    let forms = forbidden();
    let leaks: Vec<&str> = text.lines().filter(|line| forms.iter().any(|form| line.contains(form.as_str()))).collect();
    if !leaks.is_empty() {
        // Each leaking line cut short: where it comes from is what matters, and the payload is the test's own.
        let shown: Vec<String> = leaks.iter().take(20).map(|line| line.chars().take(400).collect()).collect();
        panic!("{what} holds a secret or a payload in {} lines, e.g.:\n{}", leaks.len(), shown.join("\n"));
    }
}

async fn config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "log-hygiene"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// Fails every record whose `timestamp` is a multiple of 4; the rest are processed.
struct EveryFourthFails {
    processed: Arc<Mutex<BTreeSet<Bytes>>>,
}

#[async_trait::async_trait]
impl RecordProcessor for EveryFourthFails {
    async fn process_records(&mut self, batch: &Batch, _checkpointer: &mut Checkpointer) -> BatchResult {
        let poison: Vec<&Record> = batch
            .records
            .iter()
            .filter(|r| (0..RECORDS).step_by(4).any(|n| r.data.as_ref() == payload(n).as_bytes()))
            .collect();
        let mut processed = self.processed.lock().unwrap();
        processed.extend(batch.records.iter().filter(|r| !poison.contains(r)).map(|r| r.data.clone()));
        if poison.is_empty() { Ok(()) } else { Err(BatchFailure::failed_records(poison, "cannot parse the reading")) }
    }
}

/// Counts the records it forwards to `inner`.
struct Counted {
    inner: Arc<dyn FailureDestination>,
    records: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl FailureDestination for Counted {
    async fn send(&self, failed: &FailedRecords) -> Result<(), ProcessorError> {
        self.inner.send(failed).await?;
        self.records.fetch_add(failed.records.len(), Ordering::SeqCst);
        Ok(())
    }
}

/// How a worker reads: the three ways a record reaches kcl-rs.
#[derive(Clone, Copy, Debug)]
enum Read {
    /// Polling through kcl-rs's own `GetRecords` codec (the default).
    Lean,
    /// Polling through the AWS SDK's `GetRecords`.
    Sdk,
    /// Enhanced fan-out (`SubscribeToShard` through the SDK; HTTP/1.1 event stream on kinesis-mock's plain port).
    FanOut,
}

/// A worker reads the whole stream as `read` says on a table of its own, dead-lettering every fourth record after
/// two attempts.
async fn consume(
    stream: &str,
    read: Read,
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    dead_letters: Arc<dyn FailureDestination>,
) {
    let table = unique_name("hygiene-leases");
    let store = Arc::new(DynamoLeaseStore::builder(dynamodb, &table).build().await.expect("lease table"));
    let processed = Arc::new(Mutex::new(BTreeSet::new()));
    let dead_lettered = Arc::new(AtomicUsize::new(0));
    let worker = Worker::builder(stream, table.as_str())
        .worker_id("hygiene-1")
        .kinesis_client(kinesis)
        .lease_store(store)
        .initial_position(InitialPosition::TrimHorizon)
        .processing(ProcessingConfig::default().checkpointing(Checkpointing::AfterEachBatch))
        .retry_policy(
            RetryPolicy::default()
                .max_attempts(Some(2))
                .backoff(Duration::from_millis(20), Duration::from_millis(50))
                .on_exhausted(OnExhausted::SendToDestination),
        )
        .failure_destination(Arc::new(Counted { inner: dead_letters, records: dead_lettered.clone() }))
        .processor_factory({
            let processed = processed.clone();
            move |_: &str| EveryFourthFails { processed: processed.clone() }
        });
    let polling = PollingConfig::default().with_max_records(5).with_idle_time_between_reads(Duration::from_millis(100));
    let worker = match read {
        Read::Lean => worker.polling_config(polling),
        Read::Sdk => worker.polling_config(polling).get_records_path(GetRecordsPath::Sdk),
        Read::FanOut => {
            let config = FanOutConfig::default().with_retry_base(Duration::from_millis(100));
            worker.retrieval(Retrieval::FanOut { consumer_name: None, config })
        }
    };
    let worker = worker.build().expect("worker");
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let poison = RECORDS.div_ceil(4);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while processed.lock().unwrap().len() < RECORDS - poison || dead_lettered.load(Ordering::SeqCst) < poison {
        assert!(tokio::time::Instant::now() < deadline, "{read:?}: the worker did not get through the records");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.expect("stopped").expect("joined").expect("ran");
}

fn failed_batch() -> FailedRecords {
    let records = (0..3)
        .map(|n| {
            let mut record = Record::new(Bytes::from(payload(n)), format!("device-{n}"), SequenceNumber::from_u128(7));
            record.approximate_arrival_timestamp = Some(SystemTime::now());
            record
        })
        .collect();
    FailedRecords::new("readings", "shardId-000000000000", records, FailureReason::AttemptsExhausted)
        .with_attempts(3)
        .with_last_error("cannot parse the reading".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_and_the_failure_destinations_log_no_secret_and_no_payload_at_trace() {
    let logs = CapturedLogs::install_global_at(tracing::Level::TRACE);
    let e = emulators();
    let kinesis = aws_sdk_kinesis::Client::new(&config(e.kinesis_endpoint()).await);
    let dynamodb = aws_sdk_dynamodb::Client::new(&config(e.dynamodb_endpoint()).await);
    let moto = config(moto_endpoint()).await;
    let sqs = aws_sdk_sqs::Client::new(&moto);
    let sns = aws_sdk_sns::Client::new(&moto);
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&moto).force_path_style(true).build());

    let stream = unique_name("hygiene");
    let replay = unique_name("hygiene-replay");
    kcl_tests::kinesis::create_stream(&kinesis, &stream, 1).await;
    kcl_tests::kinesis::create_stream(&kinesis, &replay, 1).await;
    for n in 0..RECORDS {
        let data = aws_sdk_kinesis::primitives::Blob::new(payload(n));
        let put = kinesis.put_record().stream_name(&stream).partition_key(format!("device-{}", n % 3)).data(data);
        put.send().await.expect("PutRecord");
    }
    let queue = sqs.create_queue().queue_name(unique_name("hygiene-dlq")).send().await.expect("CreateQueue");
    let queue_url = queue.queue_url().expect("a queue URL").to_owned();
    let dead_letters = Arc::new(SqsDestination::new(sqs.clone(), &queue_url));
    for read in [Read::Lean, Read::Sdk, Read::FanOut] {
        consume(&stream, read, kinesis.clone(), dynamodb.clone(), dead_letters.clone()).await;
    }

    // The other destinations, each once successfully and once failing (their errors are logged by workers).
    let topic = sns.create_topic().name(unique_name("hygiene-topic")).send().await.expect("CreateTopic");
    let topic_arn = topic.topic_arn().expect("a topic ARN").to_owned();
    let bucket = unique_name("hygiene-bucket");
    s3.create_bucket().bucket(&bucket).send().await.expect("CreateBucket");
    let destinations: Vec<(&str, Box<dyn FailureDestination>, bool)> = vec![
        ("SNS", Box::new(SnsDestination::new(sns.clone(), &topic_arn)), true),
        ("S3", Box::new(S3Destination::new(s3.clone(), &bucket)), true),
        ("Kinesis", Box::new(KinesisStreamDestination::new(kinesis.clone(), &replay)), true),
        ("SQS, no such queue", Box::new(SqsDestination::new(sqs.clone(), format!("{queue_url}-absent"))), false),
        ("SNS, no such topic", Box::new(SnsDestination::new(sns.clone(), format!("{topic_arn}-absent"))), false),
        ("S3, no such bucket", Box::new(S3Destination::new(s3.clone(), format!("{bucket}-absent"))), false),
        ("Kinesis, no such stream", Box::new(KinesisStreamDestination::new(kinesis.clone(), "hygiene-absent")), false),
    ];
    for (name, destination, succeeds) in destinations {
        let sent = destination.send(&failed_batch()).await;
        assert_eq!(sent.is_ok(), succeeds, "{name}: {sent:?}");
        if let Err(error) = sent {
            // What a worker would log about it.
            assert_clean(&format!("the {name} error"), &format!("{error}\n{error:?}"));
        }
    }
    kcl_tests::kinesis::delete_stream(&kinesis, &stream).await;
    kcl_tests::kinesis::delete_stream(&kinesis, &replay).await;

    let text = logs.text();
    // The capture saw the worker's own detail and the SDK's wire-level events, or the test would prove nothing.
    let seen = |level: &str, target: &str| text.lines().any(|line| line.contains(level) && line.contains(target));
    assert!(seen(" DEBUG ", "kcl_core"), "no DEBUG line of kcl_core in {} lines", text.lines().count());
    assert!(seen(" TRACE ", "aws_smithy_runtime"), "no TRACE line of the SDK in {} lines", text.lines().count());
    assert_clean("the TRACE log", &text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcl_admin_logs_no_secret_at_trace() {
    let binary = kcl_tests::chaos::kcl_admin().unwrap_or_else(|e| panic!("{e}"));
    let e = emulators();
    let kinesis = emulators().kinesis_client().await;
    let stream = unique_name("hygiene-admin");
    kcl_tests::kinesis::create_stream(&kinesis, &stream, 1).await;
    // A lease table with one lease, as a worker leaves it.
    let table = unique_name("hygiene-admin-leases");
    let store = DynamoLeaseStore::builder(emulators().dynamodb_client().await, &table).build().await.expect("table");
    let lease =
        kcl_core::lease::Lease::new_for_shard("shardId-000000000000", kcl_core::ExtendedSequenceNumber::TrimHorizon);
    kcl_core::lease::LeaseStore::create_lease_if_not_exists(&store, &lease).await.expect("CreateLease");
    let endpoints = ["--kinesis-endpoint", e.kinesis_endpoint(), "--dynamodb-endpoint", e.dynamodb_endpoint()];
    let runs: [(&[&str], bool); 3] = [
        (&["leases", "--table", &table], true),
        (&["lag", "--table", &table, "--stream", &stream], true),
        (&["leases", "--table", "hygiene-no-such-table"], false),
    ];
    for (args, succeeds) in runs {
        let output = tokio::process::Command::new(&binary)
            .args(args)
            .args(endpoints)
            .env("RUST_LOG", "trace")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_REGION", "us-east-1")
            .output()
            .await
            .expect("kcl-admin runs");
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            output.status.success(),
            succeeds,
            "kcl-admin {args:?} (exit {:?}):\n{stdout}\n{stderr}",
            output.status.code()
        );
        assert!(
            stderr.lines().any(|line| line.contains(" TRACE ")),
            "kcl-admin {args:?} logged nothing at RUST_LOG=trace (exit {:?}):\n{stdout}\n{stderr}",
            output.status.code()
        );
        assert_clean(&format!("kcl-admin {args:?} stdout"), &stdout);
        assert_clean(&format!("kcl-admin {args:?} stderr"), &stderr);
    }
    kcl_tests::kinesis::delete_stream(&kinesis, &stream).await;
}
