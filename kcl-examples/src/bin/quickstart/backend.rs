//! Where the quickstart's stream and lease table live: in memory (default), or Kinesis + DynamoDB reached through
//! the standard AWS configuration (endpoint overrides for local emulators).

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::retrieve::PollingConfig;
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{ProcessorFactory, WorkerBuilder};
use kcl_dynamo_lease::DynamoLeaseStore;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The shard the quickstart splits, and the two it merges (as Kinesis names a new 4-shard stream's shards).
pub const SPLIT: &str = "shardId-000000000000";
pub const MERGE: [&str; 2] = ["shardId-000000000002", "shardId-000000000003"];
/// The middle of shard 0's hash key range in a 4-shard stream.
pub const SPLIT_AT: u128 = 1 << 125;

pub enum Backend {
    Memory {
        stream: MemoryStream,
        store: Arc<dyn LeaseStore>,
    },
    Aws {
        kinesis: aws_sdk_kinesis::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        stream: String,
        table: String,
        store: Arc<dyn LeaseStore>,
        keep: bool,
    },
}

/// Settings for the AWS backend.
pub struct AwsOptions {
    pub kinesis_endpoint: Option<String>,
    pub dynamodb_endpoint: Option<String>,
    pub region: Option<String>,
    pub stream: String,
    pub keep: bool,
}

impl Backend {
    pub fn memory() -> Self {
        Backend::Memory { stream: MemoryStream::new("iot-telemetry", 4), store: Arc::new(MemoryLeaseStore::new()) }
    }

    /// Creates a 4-shard stream and a lease table (`<stream>-leases`).
    pub async fn aws(options: AwsOptions) -> Result<Self, BoxError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = options.region.clone() {
            loader = loader.region(Region::new(region));
        }
        let local = options.kinesis_endpoint.is_some() || options.dynamodb_endpoint.is_some();
        if local && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            // Emulators check only that a signature is present.
            loader = loader.credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                "LOCAL",
                "LOCAL",
                None,
                None,
                "quickstart",
            ));
            if options.region.is_none() {
                loader = loader.region(Region::new("us-east-1"));
            }
        }
        let base = loader.load().await;
        let mut kinesis_config = aws_sdk_kinesis::config::Builder::from(&base);
        if let Some(endpoint) = &options.kinesis_endpoint {
            kinesis_config = kinesis_config.endpoint_url(endpoint);
        }
        let mut dynamo_config = aws_sdk_dynamodb::config::Builder::from(&base);
        if let Some(endpoint) = &options.dynamodb_endpoint {
            dynamo_config = dynamo_config.endpoint_url(endpoint);
        }
        let kinesis = aws_sdk_kinesis::Client::from_conf(kinesis_config.build());
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(dynamo_config.build());
        kinesis.create_stream().stream_name(&options.stream).shard_count(4).send().await.map_err(|e| {
            format!("CreateStream {}: {}", options.stream, aws_sdk_kinesis::error::DisplayErrorContext(e))
        })?;
        wait_active(&kinesis, &options.stream).await?;
        let table = format!("{}-leases", options.stream);
        let store = DynamoLeaseStore::builder(dynamodb.clone(), table.clone()).build().await?;
        Ok(Backend::Aws {
            kinesis,
            dynamodb,
            stream: options.stream,
            table,
            store: Arc::new(store),
            keep: options.keep,
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Backend::Memory { .. } => "in-memory stream `iot-telemetry` (4 shards), in-memory lease table".to_owned(),
            Backend::Aws { stream, table, .. } => {
                format!("Kinesis stream `{stream}` (4 shards), DynamoDB lease table `{table}`")
            }
        }
    }

    pub fn store(&self) -> Arc<dyn LeaseStore> {
        match self {
            Backend::Memory { store, .. } | Backend::Aws { store, .. } => store.clone(),
        }
    }

    /// A worker builder reading this backend's stream.
    pub fn worker<F: ProcessorFactory>(&self) -> Result<WorkerBuilder<F>, BoxError> {
        Ok(match self {
            Backend::Memory { stream, store } => kcl_core::Worker::builder(stream.name().clone(), "quickstart")
                .record_source(Arc::new(stream.clone()))
                .shard_lister(Arc::new(stream.clone()))
                .lease_store(store.clone()),
            Backend::Aws { kinesis, stream, store, .. } => {
                // Poll every 200 ms (Kinesis's floor) so the demo is snappy; KCL's default idles 1.5 s.
                let polling =
                    PollingConfig { idle_time_between_reads: Duration::from_millis(200), ..PollingConfig::default() };
                kcl_core::Worker::builder(stream.as_str(), "quickstart")
                    .kinesis_client(kinesis.clone())
                    .polling_config(polling)
                    .lease_store(store.clone())
            }
        })
    }

    /// Puts `(partition key, payload)` records.
    pub async fn put(&self, records: Vec<(String, Vec<u8>)>) -> Result<(), BoxError> {
        match self {
            Backend::Memory { stream, .. } => {
                stream.put_batch(records)?;
            }
            Backend::Aws { kinesis, stream, .. } => {
                let mut pending: Vec<(String, Vec<u8>)> = records;
                for _attempt in 0..20 {
                    if pending.is_empty() {
                        return Ok(());
                    }
                    let mut failed = Vec::new();
                    for chunk in pending.chunks(500) {
                        let entries = chunk
                            .iter()
                            .map(|(key, data)| {
                                PutRecordsRequestEntry::builder()
                                    .partition_key(key)
                                    .data(Blob::new(data.clone()))
                                    .build()
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        let output =
                            kinesis.put_records().stream_name(stream).set_records(Some(entries)).send().await?;
                        for (entry, result) in chunk.iter().zip(output.records()) {
                            if result.error_code().is_some() {
                                failed.push(entry.clone());
                            }
                        }
                    }
                    pending = failed;
                }
                if !pending.is_empty() {
                    return Err(format!("{} records could not be put after 20 attempts", pending.len()).into());
                }
            }
        }
        Ok(())
    }

    pub async fn split(&self) -> Result<(), BoxError> {
        match self {
            Backend::Memory { stream, .. } => {
                stream.split(SPLIT, SPLIT_AT)?;
            }
            Backend::Aws { kinesis, stream, .. } => {
                kinesis
                    .split_shard()
                    .stream_name(stream)
                    .shard_to_split(SPLIT)
                    .new_starting_hash_key(SPLIT_AT.to_string())
                    .send()
                    .await?;
                wait_active(kinesis, stream).await?;
            }
        }
        Ok(())
    }

    pub async fn merge(&self) -> Result<(), BoxError> {
        match self {
            Backend::Memory { stream, .. } => {
                stream.merge(MERGE[0], MERGE[1])?;
            }
            Backend::Aws { kinesis, stream, .. } => {
                kinesis
                    .merge_shards()
                    .stream_name(stream)
                    .shard_to_merge(MERGE[0])
                    .adjacent_shard_to_merge(MERGE[1])
                    .send()
                    .await?;
                wait_active(kinesis, stream).await?;
            }
        }
        Ok(())
    }

    /// Deletes the stream and the lease table unless asked to keep them.
    pub async fn cleanup(&self) {
        if let Backend::Aws { kinesis, dynamodb, stream, table, keep: false, .. } = self {
            let _ = kinesis.delete_stream().stream_name(stream).enforce_consumer_deletion(true).send().await;
            let _ = dynamodb.delete_table().table_name(table).send().await;
        }
    }
}

async fn wait_active(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Result<(), BoxError> {
    for _ in 0..600 {
        let summary = kinesis.describe_stream_summary().stream_name(stream).send().await?;
        if summary.stream_description_summary().is_some_and(|s| s.stream_status() == &StreamStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("stream {stream} did not become ACTIVE within 60 s").into())
}
