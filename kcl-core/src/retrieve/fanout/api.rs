//! `SubscribeApi`: the `SubscribeToShard` call and its event stream, behind a trait so the reader's resubscribe,
//! health-timeout and backpressure logic runs the same over the AWS SDK and over in-process fakes.

use async_trait::async_trait;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_sdk_kinesis::types::{ShardIteratorType, StartingPosition, SubscribeToShardEventStream};
use aws_smithy_types::DateTime;

use crate::retrieve::api::{ApiError, ApiErrorKind, IteratorPosition};
use crate::retrieve::kinesis::classify_code;
use crate::retrieve::quiet_sdk::QuietSdkBodies;
use crate::retrieve::{ChildShard, ShardSpec, classify_sdk_error};
use crate::types::{KinesisRecord, SequenceNumber};

/// One `SubscribeToShardEvent`, converted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FanOutEvent {
    /// The records, in order.
    pub records: Vec<KinesisRecord>,
    /// `ContinuationSequenceNumber`: where the next subscription continues (`AFTER_SEQUENCE_NUMBER`); `None` in the
    /// final event of a closed shard.
    pub continuation: Option<SequenceNumber>,
    /// `MillisBehindLatest`.
    pub millis_behind_latest: Option<u64>,
    /// `ChildShards` (present in the final event of a closed shard).
    pub child_shards: Vec<ChildShard>,
}

impl FanOutEvent {
    /// Payload plus partition-key bytes of the records (what the buffer's byte bound counts).
    pub fn size_bytes(&self) -> usize {
        self.records.iter().map(KinesisRecord::size_bytes).sum()
    }
}

/// An open subscription: events until it ends (`Ok(None)`, e.g. after 5 minutes on AWS) or fails.
#[async_trait]
pub trait EventSubscription: Send + 'static {
    /// The next event. Dropping the subscription cancels it.
    async fn next_event(&mut self) -> Result<Option<FanOutEvent>, ApiError>;
}

/// The enhanced fan-out read call, implemented for the AWS SDK client ([`KinesisSubscribeApi`]). One service call
/// per [`subscribe`](Self::subscribe) (no hidden retries), so the reader's pacing is the only source of calls.
#[async_trait]
pub trait SubscribeApi: Send + Sync + 'static {
    /// The subscription type.
    type Subscription: EventSubscription;

    /// `SubscribeToShard` for `consumer_arn` on `shard`, starting at `position`.
    async fn subscribe(
        &self,
        consumer_arn: &str,
        shard: &ShardSpec,
        position: &IteratorPosition,
    ) -> Result<Self::Subscription, ApiError>;
}

/// [`SubscribeApi`] over an `aws_sdk_kinesis::Client`. Real Kinesis needs HTTP/2 for `SubscribeToShard`: the SDK's
/// default HTTPS client negotiates it.
#[derive(Clone, Debug)]
pub struct KinesisSubscribeApi {
    client: aws_sdk_kinesis::Client,
    quiet: QuietSdkBodies,
}

impl KinesisSubscribeApi {
    /// Wraps a client.
    pub fn new(client: aws_sdk_kinesis::Client) -> Self {
        Self { client, quiet: QuietSdkBodies::default() }
    }
}

/// The SDK's event stream for one subscription.
pub struct KinesisSubscription {
    receiver: aws_sdk_kinesis::primitives::event_stream::EventReceiver<
        SubscribeToShardEventStream,
        SubscribeToShardEventStreamError,
    >,
    quiet: QuietSdkBodies,
}

impl std::fmt::Debug for KinesisSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KinesisSubscription")
    }
}

fn starting_position(position: &IteratorPosition) -> Result<StartingPosition, ApiError> {
    let builder = StartingPosition::builder();
    let builder = match position {
        IteratorPosition::TrimHorizon => builder.r#type(ShardIteratorType::TrimHorizon),
        IteratorPosition::Latest => builder.r#type(ShardIteratorType::Latest),
        IteratorPosition::AtTimestamp(at) => {
            builder.r#type(ShardIteratorType::AtTimestamp).timestamp(DateTime::from(*at))
        }
        IteratorPosition::AtSequence(seq) => {
            builder.r#type(ShardIteratorType::AtSequenceNumber).sequence_number(seq.as_str())
        }
        IteratorPosition::AfterSequence(seq) => {
            builder.r#type(ShardIteratorType::AfterSequenceNumber).sequence_number(seq.as_str())
        }
    };
    builder.build().map_err(|e| ApiError::new(ApiErrorKind::InvalidArgument, e.to_string()))
}

#[async_trait]
impl SubscribeApi for KinesisSubscribeApi {
    type Subscription = KinesisSubscription;

    async fn subscribe(
        &self,
        consumer_arn: &str,
        shard: &ShardSpec,
        position: &IteratorPosition,
    ) -> Result<KinesisSubscription, ApiError> {
        // Subscribing reads the stream's first message (records, maybe), which the SDK prints at TRACE.
        let call = self
            .client
            .subscribe_to_shard()
            .consumer_arn(consumer_arn)
            .shard_id(shard.shard_id.as_ref())
            .starting_position(starting_position(position)?)
            .customize()
            // The reader's pacing (1 call per second per shard) and backoff are the only retries.
            .config_override(
                aws_sdk_kinesis::config::Builder::default()
                    .retry_config(aws_smithy_types::retry::RetryConfig::disabled()),
            )
            .send();
        let output = self.quiet.run(call).await.map_err(|e| classify_sdk_error(&e))?;
        Ok(KinesisSubscription { receiver: output.event_stream, quiet: self.quiet.clone() })
    }
}

#[async_trait]
impl EventSubscription for KinesisSubscription {
    async fn next_event(&mut self) -> Result<Option<FanOutEvent>, ApiError> {
        loop {
            // The SDK prints each event-stream message, records included, at TRACE.
            let event = match self.quiet.run(self.receiver.recv()).await {
                Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event))) => event,
                // An event type this SDK does not know: skip it rather than fail the subscription.
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(None),
                Err(error) => return Err(classify_stream_error(&error)),
            };
            return convert(event).map(Some);
        }
    }
}

/// Event-stream errors carry no HTTP status, and the modelled ones may carry no error code in their metadata, so
/// they are classified by variant (or transport failure).
fn classify_stream_error<R: std::fmt::Debug>(error: &SdkError<SubscribeToShardEventStreamError, R>) -> ApiError {
    use SubscribeToShardEventStreamError as E;
    let message = aws_sdk_kinesis::error::DisplayErrorContext(error).to_string();
    let kind = match error {
        SdkError::TimeoutError(_) => ApiErrorKind::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => ApiErrorKind::Timeout,
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => ApiErrorKind::Dispatch,
        SdkError::ConstructionFailure(_) => ApiErrorKind::InvalidArgument,
        SdkError::ServiceError(service) => {
            let code = match service.err() {
                E::ResourceNotFoundException(_) => Some("ResourceNotFoundException"),
                E::ResourceInUseException(_) => Some("ResourceInUseException"),
                E::KmsDisabledException(_) => Some("KMSDisabledException"),
                E::KmsInvalidStateException(_) => Some("KMSInvalidStateException"),
                E::KmsAccessDeniedException(_) => Some("KMSAccessDeniedException"),
                E::KmsNotFoundException(_) => Some("KMSNotFoundException"),
                E::KmsOptInRequired(_) => Some("KMSOptInRequired"),
                E::KmsThrottlingException(_) => Some("KMSThrottlingException"),
                E::InternalFailureException(_) => Some("InternalFailureException"),
                other => other.code(),
            };
            // An error event without a known code is most likely transient (the stream is reset, not the request
            // wrong).
            match classify_code(code, 500) {
                ApiErrorKind::Other => ApiErrorKind::ServerError,
                kind => kind,
            }
        }
        _ => ApiErrorKind::Other,
    };
    ApiError::new(kind, message)
}

fn convert(event: aws_sdk_kinesis::types::SubscribeToShardEvent) -> Result<FanOutEvent, ApiError> {
    let records = crate::retrieve::kinesis::records_from_sdk("SubscribeToShard", event.records)?;
    // The SDK fills an absent ContinuationSequenceNumber with "", which marks the final event of a closed shard.
    let continuation = match event.continuation_sequence_number.as_str() {
        "" => None,
        text => Some(SequenceNumber::parse(text).map_err(|e| {
            ApiError::new(ApiErrorKind::Other, format!("SubscribeToShard returned continuation sequence number {e}"))
        })?),
    };
    let child_shards = crate::retrieve::kinesis::child_shards_from_sdk("SubscribeToShard", event.child_shards)?;
    Ok(FanOutEvent {
        records,
        continuation,
        // A negative lag would be a service bug; treat it as caught up rather than failing the read.
        millis_behind_latest: Some(u64::try_from(event.millis_behind_latest).unwrap_or(0)),
        child_shards,
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::types::{ChildShard as SdkChild, HashKeyRange as SdkRange, Record, SubscribeToShardEvent};

    use super::*;

    fn record(seq: &str) -> Record {
        let record = Record::builder()
            .sequence_number(seq)
            .data(aws_sdk_kinesis::primitives::Blob::new("payload"))
            .partition_key("pk")
            .build();
        record.unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_final_event_has_no_continuation_and_carries_the_children() {
        let range = SdkRange::builder().starting_hash_key("0").ending_hash_key("99").build();
        let child = SdkChild::builder()
            .shard_id("shardId-000000000002")
            .parent_shards("shardId-000000000000")
            .hash_key_range(range.unwrap_or_else(|e| panic!("{e}")))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        // What the SDK hands over when ContinuationSequenceNumber is absent: an empty string.
        let event = SubscribeToShardEvent::builder()
            .records(record("17"))
            .continuation_sequence_number("")
            .millis_behind_latest(0)
            .child_shards(child)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let converted = convert(event).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(converted.continuation, None);
        assert_eq!(converted.records.len(), 1);
        assert_eq!(converted.child_shards.len(), 1);
        assert_eq!(converted.child_shards[0].parent_shard_ids, vec!["shardId-000000000000".to_owned()]);
    }

    #[test]
    fn bad_sequence_numbers_are_errors_not_panics() {
        let event = SubscribeToShardEvent::builder()
            .records(record("not-a-number"))
            .continuation_sequence_number("18")
            .millis_behind_latest(-5)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(convert(event).map_err(|e| e.kind), Err(ApiErrorKind::Other));
        let event = SubscribeToShardEvent::builder()
            .continuation_sequence_number("x")
            .millis_behind_latest(-5)
            .set_records(Some(Vec::new()))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(convert(event).map_err(|e| e.kind), Err(ApiErrorKind::Other));
        let event = SubscribeToShardEvent::builder()
            .continuation_sequence_number("18")
            .millis_behind_latest(-5)
            .set_records(Some(Vec::new()))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let converted = convert(event).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(converted.millis_behind_latest, Some(0), "a negative lag reads as caught up");
    }
}
