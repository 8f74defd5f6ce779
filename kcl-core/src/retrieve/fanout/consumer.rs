//! Registering (or finding) the stream consumer that enhanced fan-out reads through.

use std::time::Duration;

use aws_sdk_kinesis::types::ConsumerStatus;
use tokio::time::Instant;

use crate::error::KclError;
use crate::retrieve::api::{ApiError, ApiErrorKind};
use crate::retrieve::backoff::Backoff;
use crate::retrieve::classify_sdk_error;

/// How [`register_consumer`] waits.
#[derive(Clone, Debug)]
pub(crate) struct RegistrationTiming {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) timeout: Duration,
}

/// The consumer's state as `DescribeStreamConsumer` reports it.
enum Found {
    Active(String),
    /// Being created, or being deleted (then it will vanish and can be registered again).
    Transitioning,
    Absent,
}

/// The stream's ARN: the value itself when it is one, else from `DescribeStreamSummary`.
pub(crate) async fn stream_arn(client: &aws_sdk_kinesis::Client, stream: &str) -> Result<String, ApiError> {
    if stream.starts_with("arn:") {
        return Ok(stream.to_owned());
    }
    let output =
        client.describe_stream_summary().stream_name(stream).send().await.map_err(|e| classify_sdk_error(&e))?;
    output
        .stream_description_summary
        .map(|summary| summary.stream_arn)
        .filter(|arn| !arn.is_empty())
        .ok_or_else(|| ApiError::new(ApiErrorKind::Other, format!("DescribeStreamSummary of {stream} has no ARN")))
}

async fn describe(client: &aws_sdk_kinesis::Client, stream_arn: &str, name: &str) -> Result<Found, ApiError> {
    let result = client.describe_stream_consumer().stream_arn(stream_arn).consumer_name(name).send().await;
    match result {
        Ok(output) => Ok(match output.consumer_description {
            Some(d) if d.consumer_status == ConsumerStatus::Active && !d.consumer_arn.is_empty() => {
                Found::Active(d.consumer_arn)
            }
            Some(_) => Found::Transitioning,
            None => Found::Absent,
        }),
        Err(error) => {
            let error = classify_sdk_error(&error);
            if error.kind == ApiErrorKind::NotFound { Ok(Found::Absent) } else { Err(error) }
        }
    }
}

/// Returns the ARN of the ACTIVE consumer `name` of the stream, registering it if absent and waiting while it is
/// being created.
///
/// Safe to call from many workers at once: a worker that loses the race to `RegisterStreamConsumer` gets
/// `ResourceInUseException` (or `LimitExceededException` while another registration is in flight) and simply goes
/// back to describing and waiting. Retryable failures back off; the whole call gives up after `timeout` with a
/// retryable error.
pub(crate) async fn register_consumer(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    name: &str,
    timing: &RegistrationTiming,
) -> Result<String, KclError> {
    let deadline = Instant::now() + timing.timeout;
    let mut backoff = Backoff::new(timing.base, timing.cap);
    let mut stream_arn_cache: Option<String> = None;
    let mut last_error = String::from("no answer yet");
    loop {
        if Instant::now() >= deadline {
            return Err(KclError::Kinesis {
                operation: "RegisterStreamConsumer",
                message: format!("consumer {name} not ACTIVE after {:?}: {last_error}", timing.timeout),
                retryable: true,
            });
        }
        match step(client, stream, name, &mut stream_arn_cache).await {
            Ok(Some(arn)) => {
                tracing::info!(consumer = name, %arn, "enhanced fan-out consumer is ACTIVE");
                return Ok(arn);
            }
            Ok(None) => last_error = "the consumer is not ACTIVE yet (or another registration is in flight)".to_owned(),
            Err(error) if error.kind.is_retryable() => last_error = error.to_string(),
            Err(error) => return Err(error.into_kcl("RegisterStreamConsumer")),
        }
        let delay = backoff.next_delay().max(timing.base / 4);
        tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// One round: describe, register when absent. `Ok(None)` = wait and look again.
async fn step(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    name: &str,
    stream_arn_cache: &mut Option<String>,
) -> Result<Option<String>, ApiError> {
    let arn = match stream_arn_cache {
        Some(arn) => arn.clone(),
        None => {
            let arn = stream_arn(client, stream).await?;
            *stream_arn_cache = Some(arn.clone());
            arn
        }
    };
    match describe(client, &arn, name).await? {
        Found::Active(consumer_arn) => return Ok(Some(consumer_arn)),
        Found::Transitioning => return Ok(None),
        Found::Absent => {}
    }
    tracing::info!(consumer = name, stream = %arn, "registering enhanced fan-out consumer");
    match client.register_stream_consumer().stream_arn(&arn).consumer_name(name).send().await {
        // Usually CREATING: the next round describes it until ACTIVE.
        Ok(output) => Ok(output
            .consumer
            .filter(|c| c.consumer_status == ConsumerStatus::Active && !c.consumer_arn.is_empty())
            .map(|c| c.consumer_arn)),
        Err(error) => {
            let code = aws_sdk_kinesis::error::ProvideErrorMetadata::code(&error).unwrap_or_default().to_owned();
            match code.as_str() {
                // Another worker registered it first, or its registration is still in flight: describe and wait.
                "ResourceInUseException" | "LimitExceededException" => {
                    tracing::debug!(consumer = name, code, "consumer registration raced; waiting for it");
                    Ok(None)
                }
                _ => Err(classify_sdk_error(&error)),
            }
        }
    }
}
