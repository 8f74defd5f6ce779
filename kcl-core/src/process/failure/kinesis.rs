//! [`KinesisStreamDestination`]: failed records put to another Kinesis stream with their partition keys.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kinesis::operation::put_records::PutRecordsOutput;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::{FailedRecords, FailureDestination};
use crate::process::ProcessorError;

/// Puts failed records to another stream (a dead-letter stream), keeping each record's partition key (and explicit
/// hash key) and payload, so a replay consumer sees them as they were. Metadata (attempts, error) is not
/// carried; log it or use [`JsonLinesDestination`](super::JsonLinesDestination) if you need it.
///
/// `send` returns `Ok` only when Kinesis accepted every record; entries it rejects (throttling) are put again,
/// up to 500 per `PutRecords` call. An answer that does not hold one result per entry sent cannot say which entries
/// were stored, so every entry of that call is put again (a replay consumer may see some twice, never none).
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
                pending = still_pending(pending, &output);
                if pending.is_empty() {
                    break;
                }
                rounds += 1;
                if rounds >= 10 {
                    return Err(format!(
                        "{} records still not accepted after {rounds} PutRecords calls",
                        pending.len()
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(100 << rounds.min(5))).await;
            }
        }
        Ok(())
    }
}

/// The entries of a `PutRecords` call that Kinesis did not confirm, in order: the ones it rejected, or all of them
/// when its answer does not hold exactly one result per entry (results are matched to entries by position only).
fn still_pending(sent: Vec<PutRecordsRequestEntry>, output: &PutRecordsOutput) -> Vec<PutRecordsRequestEntry> {
    let results = output.records();
    if results.len() != sent.len() {
        tracing::warn!(
            sent = sent.len(),
            answered = results.len(),
            "PutRecords answered with a different number of results than entries sent; putting them all again"
        );
        return sent;
    }
    sent.into_iter().zip(results).filter(|(_, result)| result.error_code().is_some()).map(|(entry, _)| entry).collect()
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::types::PutRecordsResultEntry;

    use super::*;

    fn entries(n: usize) -> Vec<PutRecordsRequestEntry> {
        (0..n)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(vec![i as u8]))
                    .partition_key(format!("k{i}"))
                    .build()
                    .expect("data and partition key are set")
            })
            .collect()
    }

    fn answer(results: &[Option<&str>]) -> PutRecordsOutput {
        let records = results
            .iter()
            .map(|error| match error {
                None => PutRecordsResultEntry::builder().sequence_number("1").shard_id("shardId-0").build(),
                Some(code) => PutRecordsResultEntry::builder().error_code(*code).error_message("slow down").build(),
            })
            .collect();
        let failed = results.iter().filter(|e| e.is_some()).count() as i32;
        PutRecordsOutput::builder().set_records(Some(records)).failed_record_count(failed).build().expect("records set")
    }

    fn keys(entries: &[PutRecordsRequestEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.partition_key()).collect()
    }

    #[test]
    fn only_unconfirmed_entries_stay_pending() {
        let throttled = Some("ProvisionedThroughputExceededException");
        let cases: [(&[Option<&str>], &[&str]); 5] = [
            (&[None, None, None], &[]),
            (&[None, throttled, None], &["k1"]),
            (&[throttled, throttled, throttled], &["k0", "k1", "k2"]),
            // Fewer results than entries, none of them failed: nothing says the others were stored.
            (&[None, None], &["k0", "k1", "k2"]),
            // More results than entries: the answer is not about this request.
            (&[None, None, None, None], &["k0", "k1", "k2"]),
        ];
        for (results, expected) in cases {
            let pending = still_pending(entries(3), &answer(results));
            assert_eq!(keys(&pending), expected, "answer {results:?}");
        }
    }
}
