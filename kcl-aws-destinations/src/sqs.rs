//! [`SqsDestination`]: failed batches as SQS messages holding Lambda's on-failure record.

use async_trait::async_trait;
use kcl_core::process::{FailedRecords, FailureDestination, ProcessorError};

use crate::error::describe;
use crate::message::messages;
use crate::{DestinationError, MAX_MESSAGE_BYTES, RecordFormat, S3Destination};

/// Sends each failed batch to an SQS queue as Lambda's on-failure record (with the records under `payload` unless
/// [`RecordFormat::metadata_only`]). A batch whose message would exceed 256 KiB is split into several messages;
/// a record too large for any message is stored in the [`overflow`](Self::overflow) bucket and its message names
/// the object (`payloadLocation`). FIFO queues (`.fifo`) get the shard id as message group, so failures of one
/// shard stay in order. `send` returns once SQS accepted every message.
#[derive(Clone, Debug)]
pub struct SqsDestination {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    format: RecordFormat,
    overflow: Option<S3Destination>,
    max_message_bytes: usize,
}

impl SqsDestination {
    /// Sends to the queue at `queue_url` through `client`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        let format = RecordFormat::new().default_region(client.config().region());
        Self { client, queue_url: queue_url.into(), format, overflow: None, max_message_bytes: MAX_MESSAGE_BYTES }
    }

    /// The record's options.
    pub fn format(mut self, format: RecordFormat) -> Self {
        self.format = format.default_region(self.client.config().region());
        self
    }

    /// Where records go that make a message above the limit on their own (default: none, and such a record makes
    /// `send` fail until one is configured).
    pub fn overflow(mut self, bucket: S3Destination) -> Self {
        self.overflow = Some(bucket);
        self
    }

    /// The largest message to send (default and maximum 256 KiB: lower it if the queue's `MaximumMessageSize` is
    /// lower).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes.clamp(1024, MAX_MESSAGE_BYTES);
        self
    }
}

#[async_trait]
impl FailureDestination for SqsDestination {
    async fn send(&self, failed: &FailedRecords) -> Result<(), ProcessorError> {
        let fifo = self.queue_url.ends_with(".fifo");
        for message in messages(failed, &self.format, self.max_message_bytes, self.overflow.as_ref()).await? {
            let mut request = self.client.send_message().queue_url(&self.queue_url).message_body(message.body);
            if fifo {
                request =
                    request.message_group_id(failed.shard_id.to_string()).message_deduplication_id(message.request_id);
            }
            request
                .send()
                .await
                .map_err(|e| DestinationError::service("SQS", "SendMessage", &self.queue_url, describe(&e)))?;
        }
        tracing::debug!(queue = %self.queue_url, records = failed.records.len(), "failed batch sent to SQS");
        Ok(())
    }
}
