//! The emulator endpoints (kinesis-mock, DynamoDB Local), SDK clients for them, and stream set-up.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use clap::Args;

/// Where the emulators listen. Flags win over the environment the emulator runner exports.
#[derive(Args, Debug, Clone)]
pub struct EndpointArgs {
    /// Kinesis endpoint (kinesis-mock), e.g. http://127.0.0.1:4567.
    #[arg(long, env = "KCL_TEST_KINESIS_ENDPOINT")]
    pub kinesis_endpoint: Option<String>,
    /// DynamoDB endpoint (DynamoDB Local), e.g. http://127.0.0.1:8000.
    #[arg(long, env = "KCL_TEST_DYNAMODB_ENDPOINT")]
    pub dynamodb_endpoint: Option<String>,
}

/// Both endpoints, checked.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub kinesis: String,
    pub dynamodb: String,
}

impl EndpointArgs {
    /// The endpoints, or an error saying how to start the emulators for `scenario`.
    pub fn resolve(&self, scenario: &str) -> Result<Endpoints, String> {
        match (&self.kinesis_endpoint, &self.dynamodb_endpoint) {
            (Some(kinesis), Some(dynamodb)) if !kinesis.is_empty() && !dynamodb.is_empty() => {
                Ok(Endpoints { kinesis: kinesis.clone(), dynamodb: dynamodb.clone() })
            }
            _ => Err(format!(
                "the `{scenario}` scenario needs kinesis-mock and DynamoDB Local, and no endpoint was given \
                 (KCL_TEST_KINESIS_ENDPOINT / KCL_TEST_DYNAMODB_ENDPOINT, or --kinesis-endpoint / \
                 --dynamodb-endpoint). Start them around the benchmark with:\n\n    \
                 cargo run -q -p kcl-tests --bin emulators -- run -- \
                 cargo run --release -p kcl-bench --bin bench -- {scenario}\n\n\
                 (or `cargo run -q -p kcl-tests --bin emulators -- serve` and export what it prints)"
            )),
        }
    }
}

/// The region every benchmark client uses (the emulators accept any).
pub const REGION: &str = "us-east-1";

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::for_tests())
        .endpoint_url(endpoint)
        .load()
        .await
}

pub async fn kinesis_client(endpoints: &Endpoints) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&sdk_config(&endpoints.kinesis).await)
}

pub async fn dynamodb_client(endpoints: &Endpoints) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config(&endpoints.dynamodb).await)
}

/// A name no other run uses: prefix, process id and a random suffix.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

/// Creates a stream and waits until it is ACTIVE.
pub async fn create_stream(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    shards: i32,
) -> Result<(), Box<dyn std::error::Error>> {
    client.create_stream().stream_name(name).shard_count(shards).send().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let summary = client.describe_stream_summary().stream_name(name).send().await?;
        if summary.stream_description_summary.is_some_and(|s| s.stream_status == StreamStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("stream {name} did not become ACTIVE within 60 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The starting hash key of each shard, in shard order.
pub async fn shard_start_keys(
    client: &aws_sdk_kinesis::Client,
    name: &str,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let listed = client.list_shards().stream_name(name).send().await?;
    let mut starts: Vec<(String, String)> = listed
        .shards
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| s.hash_key_range.map(|r| (s.shard_id, r.starting_hash_key)))
        .collect();
    starts.sort();
    Ok(starts.into_iter().map(|(_, key)| key).collect())
}

/// Puts `count` records of `bytes` bytes into the shard whose range starts at `hash_key`, 500 per `PutRecords`.
pub async fn fill_shard(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    hash_key: &str,
    shard_index: usize,
    count: usize,
    bytes: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut next = 0;
    while next < count {
        let batch = (count - next).min(500);
        let entries = (next..next + batch)
            .map(|i| {
                let mut data = format!("shard-{shard_index}-record-{i:08}-").into_bytes();
                data.resize(bytes, b'x');
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{shard_index}-{i}"))
                    .explicit_hash_key(hash_key)
                    .data(Blob::new(data))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = client.put_records().stream_name(stream).set_records(Some(entries)).send().await?;
        if output.failed_record_count.unwrap_or(0) > 0 {
            return Err(format!("PutRecords failed for {:?} records", output.failed_record_count).into());
        }
        next += batch;
    }
    Ok(())
}

/// Deletes the stream and the lease table; failures are reported, not fatal.
pub async fn clean_up(
    kinesis: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    stream: &str,
    table: &str,
) {
    if let Err(error) = kinesis.delete_stream().stream_name(stream).enforce_consumer_deletion(true).send().await {
        eprintln!("warning: could not delete stream {stream}: {}", aws_sdk_kinesis::error::DisplayErrorContext(error));
    }
    if let Err(error) = dynamodb.delete_table().table_name(table).send().await {
        eprintln!("warning: could not delete table {table}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(error));
    }
}
