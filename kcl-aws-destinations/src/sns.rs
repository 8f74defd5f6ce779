//! [`SnsDestination`]: failed batches published to an SNS topic as Lambda's on-failure record.

use async_trait::async_trait;
use kcl_core::process::{FailedRecords, FailureDestination, ProcessorError};

use crate::error::describe;
use crate::message::messages;
use crate::{DestinationError, MAX_MESSAGE_BYTES, RecordFormat, S3Destination};

/// Publishes each failed batch to an SNS topic as Lambda's on-failure record; splitting, overflow and FIFO topics
/// as [`SqsDestination`](crate::SqsDestination). `send` returns once SNS accepted every message.
#[derive(Clone, Debug)]
pub struct SnsDestination {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    format: RecordFormat,
    overflow: Option<S3Destination>,
    max_message_bytes: usize,
}

impl SnsDestination {
    /// Publishes to `topic_arn` through `client`.
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        let format = RecordFormat::new().default_region(client.config().region());
        Self { client, topic_arn: topic_arn.into(), format, overflow: None, max_message_bytes: MAX_MESSAGE_BYTES }
    }

    /// The record's options.
    pub fn format(mut self, format: RecordFormat) -> Self {
        self.format = format.default_region(self.client.config().region());
        self
    }

    /// Where records go that make a message above the limit on their own.
    pub fn overflow(mut self, bucket: S3Destination) -> Self {
        self.overflow = Some(bucket);
        self
    }

    /// The largest message to publish (default and maximum 256 KiB).
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes.clamp(1024, MAX_MESSAGE_BYTES);
        self
    }
}

#[async_trait]
impl FailureDestination for SnsDestination {
    async fn send(&self, failed: &FailedRecords) -> Result<(), ProcessorError> {
        let fifo = self.topic_arn.ends_with(".fifo");
        for message in messages(failed, &self.format, self.max_message_bytes, self.overflow.as_ref()).await? {
            let mut request = self.client.publish().topic_arn(&self.topic_arn).message(message.body);
            if fifo {
                request =
                    request.message_group_id(failed.shard_id.to_string()).message_deduplication_id(message.request_id);
            }
            request
                .send()
                .await
                .map_err(|e| DestinationError::service("SNS", "Publish", &self.topic_arn, describe(&e)))?;
        }
        tracing::debug!(topic = %self.topic_arn, records = failed.records.len(), "failed batch published to SNS");
        Ok(())
    }
}
