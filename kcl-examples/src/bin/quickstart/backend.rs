//! Where the quickstart's stream and lease table live: in memory (default), or Kinesis + DynamoDB reached through
//! the standard AWS configuration (endpoint overrides for local emulators).

use std::sync::Arc;

use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{ProcessorFactory, WorkerBuilder};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_examples::kinesis;
pub use kcl_examples::kinesis::BoxError;

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
        let local = options.kinesis_endpoint.is_some() || options.dynamodb_endpoint.is_some();
        let base = kinesis::sdk_config(options.region.clone(), local).await;
        let kinesis = kinesis::kinesis_client(&base, options.kinesis_endpoint.as_deref());
        let mut dynamo_config = aws_sdk_dynamodb::config::Builder::from(&base);
        if let Some(endpoint) = &options.dynamodb_endpoint {
            dynamo_config = dynamo_config.endpoint_url(endpoint);
        }
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(dynamo_config.build());
        kinesis::create_stream(&kinesis, &options.stream, 4, false).await?;
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
            Backend::Aws { kinesis, stream, store, .. } => kcl_core::Worker::builder(stream.as_str(), "quickstart")
                .kinesis_client(kinesis.clone())
                .polling_config(kinesis::demo_polling_config())
                .lease_store(store.clone()),
        })
    }

    /// Puts `(partition key, payload)` records.
    pub async fn put(&self, records: Vec<(String, Vec<u8>)>) -> Result<(), BoxError> {
        match self {
            Backend::Memory { stream, .. } => {
                stream.put_batch(records)?;
            }
            Backend::Aws { kinesis, stream, .. } => {
                kinesis::put_records(kinesis, stream, records).await?;
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
                kinesis::wait_active(kinesis, stream).await?;
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
                kinesis::wait_active(kinesis, stream).await?;
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
