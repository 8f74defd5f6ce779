//! Where an example's stream and lease table live: in memory (the default, no AWS account or emulator needed), or
//! Kinesis + DynamoDB reached through the standard AWS configuration (endpoint overrides for local emulators).
//!
//! The quickstart, the IoT consumer and the Prometheus example share the command-line flags ([`BackendArgs`], used
//! with `#[command(flatten)]`) and the backend itself ([`Backend`]); what differs between them is described by an
//! [`ExampleStream`]: the application name, the default stream name's prefix, the shard count, and whether an
//! existing stream may be reused.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{ProcessorFactory, WorkerBuilder};
use kcl_dynamo_lease::DynamoLeaseStore;

use crate::kinesis::{self, BoxError};

/// The in-memory stream's name (every example reads IoT telemetry).
const MEMORY_STREAM: &str = "iot-telemetry";

/// The backend flags every stream-consuming example takes. Without any of them the example runs in memory.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BackendArgs {
    /// Kinesis endpoint (for example kinesis-mock); switches from the in-memory stream to Kinesis.
    #[arg(long)]
    pub kinesis_endpoint: Option<String>,
    /// DynamoDB endpoint (for example DynamoDB Local) for the lease table.
    #[arg(long)]
    pub dynamodb_endpoint: Option<String>,
    /// Use real AWS (standard credential chain and region) instead of memory.
    #[arg(long)]
    pub aws: bool,
    /// AWS region (default: from the environment; us-east-1 with local endpoints).
    #[arg(long)]
    pub region: Option<String>,
    /// Stream name in Kinesis mode (default: a fresh `kcl-<example>-…` name).
    #[arg(long)]
    pub stream: Option<String>,
    /// Keep the stream and lease table at the end (Kinesis mode).
    #[arg(long)]
    pub keep: bool,
}

impl BackendArgs {
    /// Whether the flags ask for Kinesis + DynamoDB (real AWS or emulators) rather than memory.
    pub fn uses_aws(&self) -> bool {
        self.aws || self.kinesis_endpoint.is_some() || self.dynamodb_endpoint.is_some()
    }
}

/// What one example's stream looks like; the rest of the backend is the same for every example.
#[derive(Debug, Clone)]
pub struct ExampleStream {
    /// The application name: the worker's name in metrics and the lease table's owner.
    pub application: &'static str,
    /// Prefix of the stream name made up when `--stream` is not given (`<prefix>-<number>`).
    pub stream_prefix: &'static str,
    /// Shards of the stream it creates (and of the in-memory stream).
    pub shards: usize,
    /// Use a Kinesis stream of that name if it already exists (else creating it fails: for examples whose script
    /// needs the shards it created, such as the quickstart's split and merge).
    pub reuse_existing: bool,
}

/// An example's stream and lease table.
pub struct Backend {
    application: &'static str,
    /// The stream's shard count when this backend made the stream (a reused Kinesis stream has its own).
    shards: Option<usize>,
    place: Place,
}

enum Place {
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

impl Backend {
    /// The backend `args` ask for: in memory, or a Kinesis stream and a lease table `<stream>-leases` (the stream
    /// is created; with [`ExampleStream::reuse_existing`] an existing one is used as it is).
    pub async fn connect(args: &BackendArgs, example: &ExampleStream) -> Result<Self, BoxError> {
        if !args.uses_aws() {
            return Ok(Self::memory(example));
        }
        let shards = i32::try_from(example.shards).map_err(|_| "--shards is too large")?;
        let local = args.kinesis_endpoint.is_some() || args.dynamodb_endpoint.is_some();
        let base = kinesis::sdk_config(args.region.clone(), local).await;
        let kinesis = kinesis::kinesis_client(&base, args.kinesis_endpoint.as_deref());
        let mut dynamo_config = aws_sdk_dynamodb::config::Builder::from(&base);
        if let Some(endpoint) = &args.dynamodb_endpoint {
            dynamo_config = dynamo_config.endpoint_url(endpoint);
        }
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(dynamo_config.build());
        let stream = match &args.stream {
            Some(stream) => stream.clone(),
            None => {
                // A fresh name per run, so runs (and concurrent tests) never share a stream.
                let suffix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros()) % 1_000_000_000;
                format!("{}-{suffix}", example.stream_prefix)
            }
        };
        kinesis::create_stream(&kinesis, &stream, shards, example.reuse_existing).await?;
        let table = format!("{stream}-leases");
        let store = DynamoLeaseStore::builder(dynamodb.clone(), table.clone()).build().await?;
        Ok(Self {
            application: example.application,
            shards: (!example.reuse_existing).then_some(example.shards),
            place: Place::Aws { kinesis, dynamodb, stream, table, store: Arc::new(store), keep: args.keep },
        })
    }

    /// An in-memory stream of `example.shards` shards and an in-memory lease table.
    pub fn memory(example: &ExampleStream) -> Self {
        Self {
            application: example.application,
            shards: Some(example.shards),
            place: Place::Memory {
                stream: MemoryStream::new(MEMORY_STREAM, example.shards),
                store: Arc::new(MemoryLeaseStore::new()),
            },
        }
    }

    /// One line saying where the stream and the lease table are.
    pub fn describe(&self) -> String {
        let shards = self.shards.map(|n| format!(" ({n} shards)")).unwrap_or_default();
        match &self.place {
            Place::Memory { .. } => format!("in-memory stream `{MEMORY_STREAM}`{shards}, in-memory lease table"),
            Place::Aws { stream, table, .. } => {
                format!("Kinesis stream `{stream}`{shards}, DynamoDB lease table `{table}`")
            }
        }
    }

    /// The lease table.
    pub fn store(&self) -> Arc<dyn LeaseStore> {
        match &self.place {
            Place::Memory { store, .. } | Place::Aws { store, .. } => store.clone(),
        }
    }

    /// A worker builder reading this backend's stream, with its lease table, under the example's application name.
    pub fn worker<F: ProcessorFactory>(&self) -> WorkerBuilder<F> {
        match &self.place {
            Place::Memory { stream, store } => kcl_core::Worker::builder(stream.name().clone(), self.application)
                .record_source(Arc::new(stream.clone()))
                .shard_lister(Arc::new(stream.clone()))
                .lease_store(store.clone()),
            Place::Aws { kinesis, stream, store, .. } => kcl_core::Worker::builder(stream.as_str(), self.application)
                .kinesis_client(kinesis.clone())
                .polling_config(kinesis::demo_polling_config())
                .lease_store(store.clone()),
        }
    }

    /// Puts `(partition key, payload)` records.
    pub async fn put(&self, records: Vec<(String, Vec<u8>)>) -> Result<(), BoxError> {
        match &self.place {
            Place::Memory { stream, .. } => {
                stream.put_batch(records)?;
            }
            Place::Aws { kinesis, stream, .. } => {
                kinesis::put_records(kinesis, stream, records).await?;
            }
        }
        Ok(())
    }

    /// Splits `shard` at hash key `at` and waits until the stream is ACTIVE again.
    pub async fn split(&self, shard: &str, at: u128) -> Result<(), BoxError> {
        match &self.place {
            Place::Memory { stream, .. } => {
                stream.split(shard, at)?;
            }
            Place::Aws { kinesis, stream, .. } => {
                kinesis
                    .split_shard()
                    .stream_name(stream)
                    .shard_to_split(shard)
                    .new_starting_hash_key(at.to_string())
                    .send()
                    .await?;
                kinesis::wait_active(kinesis, stream).await?;
            }
        }
        Ok(())
    }

    /// Merges two adjacent shards and waits until the stream is ACTIVE again.
    pub async fn merge(&self, shard: &str, adjacent: &str) -> Result<(), BoxError> {
        match &self.place {
            Place::Memory { stream, .. } => {
                stream.merge(shard, adjacent)?;
            }
            Place::Aws { kinesis, stream, .. } => {
                kinesis
                    .merge_shards()
                    .stream_name(stream)
                    .shard_to_merge(shard)
                    .adjacent_shard_to_merge(adjacent)
                    .send()
                    .await?;
                kinesis::wait_active(kinesis, stream).await?;
            }
        }
        Ok(())
    }

    /// Connects to the backend `args` choose, runs `scenario` on it, cleans up whatever the outcome, and exits the
    /// process with status 1 when the scenario's verdict is `false` (an error is returned as an error).
    pub async fn run_scenario(
        args: &BackendArgs,
        example: &ExampleStream,
        scenario: impl AsyncFnOnce(&Backend) -> Result<bool, BoxError>,
    ) -> Result<(), BoxError> {
        let backend = Self::connect(args, example).await?;
        let outcome = scenario(&backend).await;
        backend.cleanup().await;
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            Err(error) => Err(error),
        }
    }

    /// Deletes the stream and the lease table unless asked to keep them (nothing to do in memory). Failures are
    /// ignored: this runs on the way out, and the example's own outcome matters more.
    pub async fn cleanup(&self) {
        if let Place::Aws { kinesis, dynamodb, stream, table, keep: false, .. } = &self.place {
            let _ = kinesis.delete_stream().stream_name(stream).enforce_consumer_deletion(true).send().await;
            let _ = dynamodb.delete_table().table_name(table).send().await;
        }
    }
}
