//! Kinesis plumbing the examples share: SDK configuration for AWS or local emulators, creating a stream and waiting
//! for it to be ACTIVE, putting records (retrying the entries `PutRecords` rejects), and the snappy polling setting
//! demos use.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use kcl_core::retrieve::PollingConfig;

/// The examples' error type: they report and exit.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Shared AWS configuration. `local`: endpoints are emulators, which only check that a request is signed, so dummy
/// credentials and `us-east-1` are used unless the environment sets credentials or `region` is given.
pub async fn sdk_config(region: Option<String>, local: bool) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region.clone() {
        loader = loader.region(Region::new(region));
    }
    if local && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new("LOCAL", "LOCAL", None, None, "examples"));
        if region.is_none() {
            loader = loader.region(Region::new("us-east-1"));
        }
    }
    loader.load().await
}

/// A Kinesis client from `base`, sent to `endpoint` when given (kinesis-mock).
pub fn kinesis_client(base: &SdkConfig, endpoint: Option<&str>) -> aws_sdk_kinesis::Client {
    let mut config = aws_sdk_kinesis::config::Builder::from(base);
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_kinesis::Client::from_conf(config.build())
}

/// Creates a stream with `shards` shards and waits until it is ACTIVE. With `reuse`, a stream that already exists is
/// used as it is (several processes of one fleet may start at once and race to create it).
pub async fn create_stream(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shards: i32,
    reuse: bool,
) -> Result<(), BoxError> {
    if let Err(error) = kinesis.create_stream().stream_name(stream).shard_count(shards).send().await {
        let exists = error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception());
        if !(reuse && exists) {
            return Err(format!("CreateStream {stream}: {}", DisplayErrorContext(error)).into());
        }
    }
    wait_active(kinesis, stream).await
}

/// Waits (up to 60 s) until the stream is ACTIVE.
pub async fn wait_active(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Result<(), BoxError> {
    for _ in 0..600 {
        let summary = kinesis.describe_stream_summary().stream_name(stream).send().await?;
        if summary.stream_description_summary().is_some_and(|s| s.stream_status() == &StreamStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("stream {stream} did not become ACTIVE within 60 s").into())
}

/// Where Kinesis put a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecord {
    /// The shard the record landed in.
    pub shard_id: String,
    /// Its sequence number.
    pub sequence_number: String,
}

/// Puts `(partition key, payload)` records, 500 per request, retrying entries Kinesis rejected (throttling) up to 20
/// times. Returns where each record landed, in the order given.
pub async fn put_records(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    records: Vec<(String, Vec<u8>)>,
) -> Result<Vec<PutRecord>, BoxError> {
    let mut placed: Vec<Option<PutRecord>> = vec![None; records.len()];
    let mut pending: Vec<usize> = (0..records.len()).collect();
    for _attempt in 0..20 {
        if pending.is_empty() {
            break;
        }
        let mut failed = Vec::new();
        for chunk in pending.chunks(500) {
            let entries = chunk
                .iter()
                .map(|&i| {
                    let (key, data) = &records[i];
                    PutRecordsRequestEntry::builder().partition_key(key).data(Blob::new(data.clone())).build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = kinesis.put_records().stream_name(stream).set_records(Some(entries)).send().await?;
            if output.records().len() != chunk.len() {
                return Err(format!(
                    "PutRecords answered {} results for {} records",
                    output.records().len(),
                    chunk.len()
                )
                .into());
            }
            for (&i, result) in chunk.iter().zip(output.records()) {
                match (result.error_code(), result.shard_id(), result.sequence_number()) {
                    (None, Some(shard_id), Some(sequence_number)) => {
                        placed[i] = Some(PutRecord {
                            shard_id: shard_id.to_owned(),
                            sequence_number: sequence_number.to_owned(),
                        })
                    }
                    _ => failed.push(i),
                }
            }
        }
        pending = failed;
    }
    let placed: Option<Vec<PutRecord>> = placed.into_iter().collect();
    placed.ok_or_else(|| format!("{} records could not be put after 20 attempts", pending.len()).into())
}

/// Polling for demos and tests: every 200 ms (Kinesis's floor) so records show up at once; KCL idles 1.5 s.
pub fn demo_polling_config() -> PollingConfig {
    PollingConfig::default().with_idle_time_between_reads(Duration::from_millis(200))
}
