//! [`S3Destination`]: each failed batch as one S3 object holding Lambda's on-failure record with the records
//! themselves, as Lambda's S3 on-failure destination writes it.

use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use kcl_core::process::{FailedRecords, FailureDestination, ProcessorError};

use crate::error::describe;
use crate::invocation::{self, Context};
use crate::{DestinationError, RecordFormat};

/// Writes each failed batch to `bucket` as one JSON object (Lambda's record with `payload`: the records, payloads
/// base64), under `aws/lambda/<mapping id>/<shard id>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>` as Lambda names them.
/// `send` returns once `PutObject` succeeded. Also serves as the overflow bucket of [`SqsDestination`] and
/// [`SnsDestination`](crate::SnsDestination).
///
/// [`SqsDestination`]: crate::SqsDestination
#[derive(Clone, Debug)]
pub struct S3Destination {
    client: aws_sdk_s3::Client,
    bucket: String,
    mapping_id: String,
    format: RecordFormat,
}

impl S3Destination {
    /// Writes to `bucket` (which must exist) through `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        let format = RecordFormat::new().default_region(client.config().region());
        Self { client, bucket: bucket.into(), mapping_id: "kcl".to_owned(), format }
    }

    /// The key segment Lambda fills with the event source mapping's UUID (default `kcl`; the application name is
    /// a good choice).
    pub fn mapping_id(mut self, id: impl Into<String>) -> Self {
        self.mapping_id = id.into();
        self
    }

    /// The record's options (stream ARN, function ARN, region); `metadata_only` does not apply to S3.
    pub fn format(mut self, format: RecordFormat) -> Self {
        self.format = format.default_region(self.client.config().region());
        self
    }

    /// Stores `failed` with its records; returns the bucket and key.
    pub(crate) async fn put(
        &self,
        failed: &FailedRecords,
        context: &Context,
    ) -> Result<(String, String), DestinationError> {
        let now = SystemTime::now();
        let uuid = invocation::uuid_v4();
        let key = invocation::s3_key(&self.mapping_id, &failed.shard_id, now, &uuid);
        let body = invocation::invocation_record(failed, context, true, &uuid, now).to_string();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .map_err(|e| DestinationError::service("S3", "PutObject", &self.bucket, describe(&e)))?;
        tracing::debug!(bucket = %self.bucket, key, records = failed.records.len(), "failed batch stored in S3");
        Ok((self.bucket.clone(), key))
    }
}

#[async_trait]
impl FailureDestination for S3Destination {
    async fn send(&self, failed: &FailedRecords) -> Result<(), ProcessorError> {
        let context = self.format.context(failed).await;
        self.put(failed, &context).await?;
        Ok(())
    }
}
