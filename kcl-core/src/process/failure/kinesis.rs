//! [`KinesisStreamDestination`]: failed records put to another Kinesis stream with their partition keys.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::{FailedRecords, FailureDestination};
use crate::process::ProcessorError;

/// Puts failed records to another stream (a dead-letter stream), keeping each record's partition key (and explicit
/// hash key) and payload, so a replay consumer sees them as they were. Metadata (attempts, error) is not
/// carried; log it or use [`JsonLinesDestination`](super::JsonLinesDestination) if you need it.
///
/// `send` returns `Ok` only when Kinesis accepted every record; entries it rejects (throttling) are put again,
/// up to 500 per `PutRecords` call.
#[derive(Clone, Debug)]
pub struct KinesisStreamDestination {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisStreamDestination {
    /// Puts to `stream` (name or ARN) through `client`.
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        Self { client, stream: stream.into() }
    }
}

#[async_trait]
impl FailureDestination for KinesisStreamDestination {
    async fn send(&self, failed: &FailedRecords) -> Result<(), ProcessorError> {
        for chunk in failed.records.chunks(500) {
            let mut pending: Vec<PutRecordsRequestEntry> = chunk
                .iter()
                .map(|record| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(record.data.to_vec()))
                        .partition_key(record.partition_key.to_string())
                        .set_explicit_hash_key(record.explicit_hash_key.as_deref().map(str::to_owned))
                        .build()
                })
                .collect::<Result<_, _>>()?;
            let mut rounds = 0u32;
            while !pending.is_empty() {
                let mut request = self.client.put_records();
                if self.stream.starts_with("arn:") {
                    request = request.stream_arn(&self.stream);
                } else {
                    request = request.stream_name(&self.stream);
                }
                let output = request.set_records(Some(pending.clone())).send().await?;
                if output.failed_record_count().unwrap_or(0) == 0 {
                    break;
                }
                // Keep only the rejected entries, in order; the accepted ones are stored.
                pending = pending
                    .into_iter()
                    .zip(output.records())
                    .filter(|(_, result)| result.error_code().is_some())
                    .map(|(entry, _)| entry)
                    .collect();
                rounds += 1;
                if rounds >= 10 {
                    return Err(
                        format!("{} records still rejected after {rounds} PutRecords calls", pending.len()).into()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100 << rounds.min(5))).await;
            }
        }
        Ok(())
    }
}
