//! [`PollingApi`] over the AWS SDK Kinesis client, and the one place SDK errors are classified.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use aws_smithy_types::DateTime;
use aws_smithy_types::retry::RetryConfig;
use bytes::Bytes;

use super::api::{ApiError, ApiErrorKind, GetRecordsOutput, IteratorPosition, PollingApi};
use super::quiet_sdk::QuietSdkBodies;
use super::{ChildShard, ShardSpec};
use crate::types::{HashKeyRange, KinesisRecord, SequenceNumber};

/// The polling calls over an `aws_sdk_kinesis::Client`.
///
/// The SDK's own retries are turned off for these calls: the reader's pacing and backoff are then the only source
/// of calls, which is what keeps a shard under 5 `GetRecords` calls per second.
#[derive(Clone, Debug)]
pub struct KinesisPollingApi {
    client: aws_sdk_kinesis::Client,
    quiet: QuietSdkBodies,
}

impl KinesisPollingApi {
    /// Wraps a client (configure region, credentials, endpoint and timeouts on it as usual).
    pub fn new(client: aws_sdk_kinesis::Client) -> Self {
        Self { client, quiet: QuietSdkBodies::default() }
    }

    /// The client.
    pub fn client(&self) -> &aws_sdk_kinesis::Client {
        &self.client
    }
}

fn no_sdk_retries() -> aws_sdk_kinesis::config::Builder {
    aws_sdk_kinesis::config::Builder::default().retry_config(RetryConfig::disabled())
}

impl KinesisPollingApi {
    /// `GetShardIterator`, with `interceptor` (if any) watching the request.
    pub(crate) async fn get_shard_iterator_with(
        &self,
        shard: &ShardSpec,
        position: &IteratorPosition,
        interceptor: Option<SharedInterceptor>,
    ) -> Result<Option<Arc<str>>, ApiError> {
        let mut request = self.client.get_shard_iterator().shard_id(shard.shard_id.as_ref());
        request = if shard.stream.starts_with("arn:") {
            request.stream_arn(shard.stream.as_ref())
        } else {
            request.stream_name(shard.stream.as_ref())
        };
        request = match position {
            IteratorPosition::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            IteratorPosition::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            IteratorPosition::AtTimestamp(at) => {
                request.shard_iterator_type(ShardIteratorType::AtTimestamp).timestamp(DateTime::from(*at))
            }
            IteratorPosition::AtSequence(seq) => {
                request.shard_iterator_type(ShardIteratorType::AtSequenceNumber).starting_sequence_number(seq.as_str())
            }
            IteratorPosition::AfterSequence(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq.as_str()),
        };
        let mut request = request.customize().config_override(no_sdk_retries());
        if let Some(interceptor) = interceptor {
            request = request.interceptor(interceptor);
        }
        let output = request.send().await.map_err(|e| classify(&e))?;
        Ok(output.shard_iterator.map(Arc::from))
    }
}

#[async_trait]
impl PollingApi for KinesisPollingApi {
    type Iterator = Arc<str>;

    async fn get_shard_iterator(
        &self,
        shard: &ShardSpec,
        position: &IteratorPosition,
    ) -> Result<Option<Arc<str>>, ApiError> {
        self.get_shard_iterator_with(shard, position, None).await
    }

    async fn get_records(&self, iterator: &Arc<str>, limit: usize) -> Result<GetRecordsOutput<Arc<str>>, ApiError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let call = self
            .client
            .get_records()
            .shard_iterator(iterator.as_ref())
            .limit(limit)
            .customize()
            .config_override(no_sdk_retries())
            .send();
        // The SDK prints the response body and the decoded records at TRACE.
        let output = self.quiet.run(call).await.map_err(|e| classify(&e))?;
        let records = records_from_sdk("GetRecords", output.records)?;
        let child_shards = child_shards_from_sdk("GetRecords", output.child_shards)?;
        Ok(GetRecordsOutput {
            records,
            next_iterator: output.next_shard_iterator.map(Arc::from),
            // A negative lag would be a service bug; treat it as caught up rather than failing the read.
            millis_behind_latest: output.millis_behind_latest.map(|m| u64::try_from(m).unwrap_or(0)),
            child_shards,
        })
    }
}

/// Classifies an SDK error by its error code, HTTP status and transport failure.
pub(crate) fn classify<E>(error: &SdkError<E>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = aws_sdk_kinesis::error::DisplayErrorContext(error).to_string();
    let kind = match error {
        SdkError::TimeoutError(_) => ApiErrorKind::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => ApiErrorKind::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_user() => ApiErrorKind::InvalidArgument,
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => ApiErrorKind::Dispatch,
        SdkError::ConstructionFailure(_) => ApiErrorKind::InvalidArgument,
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            classify_code(error.code(), status)
        }
        _ => ApiErrorKind::Other,
    };
    ApiError::new(kind, message)
}

pub(crate) fn classify_code(code: Option<&str>, status: u16) -> ApiErrorKind {
    match code.unwrap_or_default() {
        "ProvisionedThroughputExceededException"
        | "KMSThrottlingException"
        | "LimitExceededException"
        | "ThrottlingException" => ApiErrorKind::Throttled,
        "ExpiredIteratorException" => ApiErrorKind::ExpiredIterator,
        "InternalFailureException" | "ServiceUnavailable" | "ServiceUnavailableException" | "InternalFailure" => {
            ApiErrorKind::ServerError
        }
        // A stream being created or updated answers ListShards with this; it clears by itself.
        "ResourceInUseException" => ApiErrorKind::Throttled,
        "ResourceNotFoundException" => ApiErrorKind::NotFound,
        "InvalidArgumentException" | "ValidationException" | "ExpiredNextTokenException" => {
            ApiErrorKind::InvalidArgument
        }
        "AccessDeniedException"
        | "KMSAccessDeniedException"
        | "KMSDisabledException"
        | "KMSInvalidStateException"
        | "KMSNotFoundException"
        | "KMSOptInRequired"
        | "UnrecognizedClientException"
        | "InvalidSignatureException" => ApiErrorKind::AccessDenied,
        _ if status >= 500 => ApiErrorKind::ServerError,
        _ if status == 429 => ApiErrorKind::Throttled,
        _ => ApiErrorKind::Other,
    }
}

/// The SDK's records of one `GetRecords` or `SubscribeToShard` answer (`operation`, for the error) as ours; a
/// sequence number that does not parse fails the whole answer rather than dropping that record.
pub(crate) fn records_from_sdk(
    operation: &str,
    records: Vec<aws_sdk_kinesis::types::Record>,
) -> Result<Vec<KinesisRecord>, ApiError> {
    records
        .into_iter()
        .map(|record| {
            let sequence_number = SequenceNumber::parse(&record.sequence_number)
                .map_err(|e| ApiError::new(ApiErrorKind::Other, format!("{operation} returned sequence number {e}")))?;
            Ok(KinesisRecord {
                data: Bytes::from(record.data.into_inner()),
                partition_key: Arc::from(record.partition_key),
                sequence_number,
                approximate_arrival_timestamp: record
                    .approximate_arrival_timestamp
                    .and_then(|t| SystemTime::try_from(t).ok()),
            })
        })
        .collect()
}

/// The children a `GetRecords` response or a `SubscribeToShard` event reports at a shard's end; a child without a
/// valid hash key range is an error naming `operation`, never a panic.
pub(crate) fn child_shards_from_sdk(
    operation: &str,
    children: Option<Vec<aws_sdk_kinesis::types::ChildShard>>,
) -> Result<Vec<ChildShard>, ApiError> {
    children
        .unwrap_or_default()
        .into_iter()
        .map(|child| {
            let range = child
                .hash_key_range
                .as_ref()
                .and_then(|r| HashKeyRange::parse(&r.starting_hash_key, &r.ending_hash_key));
            let hash_key_range = range.ok_or_else(|| {
                ApiError::new(
                    ApiErrorKind::Other,
                    format!("{operation} returned child shard {} without a valid hash key range", child.shard_id),
                )
            })?;
            Ok(ChildShard { shard_id: child.shard_id, parent_shard_ids: child.parent_shards, hash_key_range })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_recovery_paths() {
        let cases = [
            ("ProvisionedThroughputExceededException", 400, ApiErrorKind::Throttled),
            ("KMSThrottlingException", 400, ApiErrorKind::Throttled),
            ("ExpiredIteratorException", 400, ApiErrorKind::ExpiredIterator),
            ("InternalFailureException", 500, ApiErrorKind::ServerError),
            ("SomethingNew", 503, ApiErrorKind::ServerError),
            ("ResourceNotFoundException", 400, ApiErrorKind::NotFound),
            ("InvalidArgumentException", 400, ApiErrorKind::InvalidArgument),
            ("AccessDeniedException", 400, ApiErrorKind::AccessDenied),
            ("KMSDisabledException", 400, ApiErrorKind::AccessDenied),
            ("SomethingNew", 400, ApiErrorKind::Other),
        ];
        for (code, status, kind) in cases {
            assert_eq!(classify_code(Some(code), status), kind, "{code}");
        }
        assert!(ApiErrorKind::Throttled.is_retryable());
        assert!(!ApiErrorKind::NotFound.is_retryable());
    }
}
