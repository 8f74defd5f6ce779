//! Where the IoT consumer's stream and lease table live: in memory (default), or Kinesis + DynamoDB through the
//! standard AWS configuration (endpoint overrides for local emulators), as in the quickstart.

use std::sync::Arc;

use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{ProcessorFactory, WorkerBuilder};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_examples::kinesis::{self, BoxError};

/// The application name: the lease table's owner and the worker's name in metrics.
const APPLICATION: &str = "iot-consumer";

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
    pub shards: i32,
    pub keep: bool,
}

impl Backend {
    pub fn memory(shards: usize) -> Self {
        Backend::Memory { stream: MemoryStream::new("iot-telemetry", shards), store: Arc::new(MemoryLeaseStore::new()) }
    }

    /// Creates the stream (or uses it if it exists) and a lease table `<stream>-leases`.
    pub async fn aws(options: AwsOptions) -> Result<Self, BoxError> {
        let local = options.kinesis_endpoint.is_some() || options.dynamodb_endpoint.is_some();
        let base = kinesis::sdk_config(options.region.clone(), local).await;
        let kinesis = kinesis::kinesis_client(&base, options.kinesis_endpoint.as_deref());
        let mut dynamo_config = aws_sdk_dynamodb::config::Builder::from(&base);
        if let Some(endpoint) = &options.dynamodb_endpoint {
            dynamo_config = dynamo_config.endpoint_url(endpoint);
        }
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(dynamo_config.build());
        kinesis::create_stream(&kinesis, &options.stream, options.shards, true).await?;
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
            Backend::Memory { .. } => "in-memory stream `iot-telemetry`, in-memory lease table".to_owned(),
            Backend::Aws { stream, table, .. } => format!("Kinesis stream `{stream}`, DynamoDB lease table `{table}`"),
        }
    }

    /// A worker builder reading this backend's stream.
    pub fn worker<F: ProcessorFactory>(&self) -> WorkerBuilder<F> {
        match self {
            Backend::Memory { stream, store } => kcl_core::Worker::builder(stream.name().clone(), APPLICATION)
                .record_source(Arc::new(stream.clone()))
                .shard_lister(Arc::new(stream.clone()))
                .lease_store(store.clone()),
            Backend::Aws { kinesis, stream, store, .. } => kcl_core::Worker::builder(stream.as_str(), APPLICATION)
                .kinesis_client(kinesis.clone())
                .polling_config(kinesis::demo_polling_config())
                .lease_store(store.clone()),
        }
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

    /// Deletes the stream and the lease table unless asked to keep them.
    pub async fn cleanup(&self) {
        if let Backend::Aws { kinesis, dynamodb, stream, table, keep: false, .. } = self {
            let _ = kinesis.delete_stream().stream_name(stream).enforce_consumer_deletion(true).send().await;
            let _ = dynamodb.delete_table().table_name(table).send().await;
        }
    }
}
