//! The crate's error type.

/// Why a failed batch could not be stored. kcl-core retries `send` with backoff while the shard waits, so none of
/// these loses records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DestinationError {
    /// An SQS, SNS or S3 call failed.
    #[error("{service} {operation} to {target} failed: {message}")]
    Service {
        /// `SQS`, `SNS` or `S3`.
        service: &'static str,
        /// The API call, e.g. `SendMessage`.
        operation: &'static str,
        /// The queue URL, topic ARN or bucket.
        target: String,
        /// What the SDK reported.
        message: String,
    },
    /// One record makes a message larger than the service takes, and no overflow bucket is configured.
    #[error(
        "record {sequence_number} of {shard_id} makes a {bytes}-byte message, above the {limit}-byte limit: configure \
         an S3 overflow bucket (`.overflow(S3Destination::new(..))`) or use RecordFormat::metadata_only()"
    )]
    TooLarge {
        /// The record's shard.
        shard_id: String,
        /// The record's sequence number.
        sequence_number: String,
        /// The message's size.
        bytes: usize,
        /// The service's limit.
        limit: usize,
    },
}

impl DestinationError {
    pub(crate) fn service(
        service: &'static str,
        operation: &'static str,
        target: &str,
        error: impl std::fmt::Display,
    ) -> Self {
        Self::Service { service, operation, target: target.to_owned(), message: error.to_string() }
    }
}

/// The SDK's error with its source chain (its `Display` alone says only "service error").
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
