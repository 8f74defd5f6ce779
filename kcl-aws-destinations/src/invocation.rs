//! Lambda's on-failure invocation record for a Kinesis event source, built from kcl-core's [`FailedRecords`]:
//! pure functions from records and context to JSON, so every destination sends the same document.
//!
//! ```json
//! {"requestContext":{"requestId":"…","functionArn":"…","condition":"RetryAttemptsExhausted","approximateInvokeCount":3},
//!  "responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},
//!  "version":"1.0","timestamp":"2026-12-04T16:38:06.021Z",
//!  "KinesisBatchInfo":{"shardId":"shardId-000000000001","startSequenceNumber":"…","endSequenceNumber":"…",
//!    "approximateArrivalOfFirstRecord":"…Z","approximateArrivalOfLastRecord":"…Z","batchSize":2,"streamArn":"arn:…"},
//!  "payload":{"Records":[{"kinesis":{…},"eventSource":"aws:kinesis",…}]},
//!  "kclContext":{"lastError":"…","firstFailure":"…Z","startSubSequenceNumber":0,"endSubSequenceNumber":0}}
//! ```
//!
//! `payload` (Lambda's Kinesis event, records and payloads included) is what Lambda's S3 destination adds; Lambda's
//! SQS and SNS messages carry metadata only. `kclContext` is kcl-rs's addition (readers of Lambda's shape ignore
//! it): the processor's last error, when the records first failed, and the KPL sub-sequence numbers of the first
//! and last record, which Lambda (it does not take KPL aggregates apart) has no field for.

use std::time::SystemTime;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use base64::Engine;
use kcl_core::Record;
use kcl_core::process::{FailedRecords, FailureReason};
use serde_json::{Map, Value, json};

/// What a record needs besides the failed records: where they came from and who processed them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Context {
    /// The stream's ARN (`streamArn`, `eventSourceARN`); the stream's name when no ARN is known.
    pub(crate) stream_arn: String,
    /// `requestContext.functionArn`, omitted when unset.
    pub(crate) function_arn: Option<String>,
    /// `awsRegion` of each event record, omitted when unset.
    pub(crate) region: Option<String>,
}

/// Lambda's `requestContext.condition`.
pub(crate) fn condition(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::AttemptsExhausted => "RetryAttemptsExhausted",
        FailureReason::RecordTooOld => "MaximumRecordAgeExceeded",
    }
}

/// ISO 8601 in UTC with milliseconds, as Lambda writes times: `2019-11-14T00:38:06.021Z`.
pub(crate) fn iso_millis(time: SystemTime) -> String {
    let millis = DateTime::from(time).to_millis().unwrap_or(0);
    with_millis(DateTime::from_millis(millis).fmt(Format::DateTime).unwrap_or_default())
}

fn arrival_text(record: &Record) -> Value {
    record.approximate_arrival_timestamp.map_or(Value::Null, |at| Value::from(iso_millis(at)))
}

/// aws-smithy writes whole seconds without a fraction; Lambda always has three digits.
fn with_millis(text: String) -> String {
    if text.len() == 20 && text.ends_with('Z') { format!("{}.000Z", &text[..19]) } else { text }
}

/// One record of Lambda's Kinesis event.
pub(crate) fn event_record(failed: &FailedRecords, record: &Record, context: &Context) -> Value {
    let mut kinesis = json!({
        "kinesisSchemaVersion": "1.0",
        "partitionKey": &*record.partition_key,
        "sequenceNumber": record.sequence_number.as_str(),
        "data": base64::engine::general_purpose::STANDARD.encode(&record.data),
        "approximateArrivalTimestamp": record.approximate_arrival_timestamp.map(|at| {
            at.duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
        }),
    });
    if record.aggregated {
        kinesis["subSequenceNumber"] = Value::from(record.sub_sequence_number);
        if let Some(key) = &record.explicit_hash_key {
            kinesis["explicitHashKey"] = Value::from(&**key);
        }
    }
    let mut event = json!({
        "kinesis": kinesis,
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{}:{}", failed.shard_id, record.sequence_number.as_str()),
        "eventName": "aws:kinesis:record",
        "eventSourceARN": context.stream_arn,
    });
    if let Some(region) = &context.region {
        event["awsRegion"] = Value::from(region.as_str());
    }
    event
}

/// Lambda's on-failure record for `failed` (all its records form the batch), with the records themselves under
/// `payload` when `with_payload`.
pub(crate) fn invocation_record(
    failed: &FailedRecords,
    context: &Context,
    with_payload: bool,
    request_id: &str,
    now: SystemTime,
) -> Value {
    let first = failed.records.first();
    let last = failed.records.last();
    let mut request = Map::new();
    request.insert("requestId".into(), request_id.into());
    if let Some(arn) = &context.function_arn {
        request.insert("functionArn".into(), arn.as_str().into());
    }
    request.insert("condition".into(), condition(failed.reason).into());
    request.insert("approximateInvokeCount".into(), failed.attempts.into());
    let mut record = json!({
        "requestContext": request,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": iso_millis(now),
        "KinesisBatchInfo": {
            "shardId": &*failed.shard_id,
            "startSequenceNumber": first.map(|r| r.sequence_number.as_str()),
            "endSequenceNumber": last.map(|r| r.sequence_number.as_str()),
            "approximateArrivalOfFirstRecord": first.map_or(Value::Null, arrival_text),
            "approximateArrivalOfLastRecord": last.map_or(Value::Null, arrival_text),
            "batchSize": failed.records.len(),
            "streamArn": context.stream_arn,
        },
    });
    if with_payload {
        let records: Vec<Value> = failed.records.iter().map(|r| event_record(failed, r, context)).collect();
        record["payload"] = json!({ "Records": records });
    }
    record["kclContext"] = json!({
        "lastError": failed.last_error,
        "firstFailure": iso_millis(failed.first_failure),
        "startSubSequenceNumber": first.map(|r| r.sub_sequence_number),
        "endSubSequenceNumber": last.map(|r| r.sub_sequence_number),
    });
    record
}

/// A random (version 4) UUID, as Lambda's request ids and S3 object keys have.
pub(crate) fn uuid_v4() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The S3 key Lambda uses for a failed batch: `aws/lambda/<mapping id>/<shard id>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<uuid>`.
pub(crate) fn s3_key(mapping_id: &str, shard_id: &str, now: SystemTime, uuid: &str) -> String {
    let text = iso_millis(now);
    let (date, time) = (&text[..10], &text[11..19]);
    format!(
        "aws/lambda/{mapping_id}/{shard_id}/{}/{}/{}/{date}T{}-{uuid}",
        &date[..4],
        &date[5..7],
        &date[8..10],
        time.replace(':', ".")
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use kcl_core::SequenceNumber;

    use super::*;

    fn failed(reason: FailureReason) -> FailedRecords {
        let mut first = Record::new(&br#"{"temp":1}"#[..], "device-1", SequenceNumber::from_u128(100));
        first.approximate_arrival_timestamp = Some(UNIX_EPOCH + Duration::from_millis(1_573_691_884_835));
        let mut last = Record::new(&b"\x00binary"[..], "device-2", SequenceNumber::from_u128(200));
        last.approximate_arrival_timestamp = Some(UNIX_EPOCH + Duration::from_millis(1_573_691_885_000));
        last.aggregated = true;
        last.sub_sequence_number = 3;
        FailedRecords::new("readings", "shardId-000000000001", vec![first, last], reason)
            .with_attempts(4)
            .with_last_error("bad payload".to_owned())
            .with_first_failure(UNIX_EPOCH + Duration::from_millis(1_573_691_886_000))
    }

    fn context() -> Context {
        Context {
            stream_arn: "arn:aws:kinesis:us-east-2:123456789012:stream/readings".to_owned(),
            function_arn: Some("arn:aws:lambda:us-east-2:123456789012:function:iot".to_owned()),
            region: Some("us-east-2".to_owned()),
        }
    }

    #[test]
    fn lambda_shape_without_payload() {
        let now = UNIX_EPOCH + Duration::from_millis(1_573_691_886_021);
        let record = invocation_record(&failed(FailureReason::AttemptsExhausted), &context(), false, "req-1", now);
        let expected = json!({
            "requestContext": {"requestId": "req-1", "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:iot",
                               "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 4},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2019-11-14T00:38:06.021Z",
            "KinesisBatchInfo": {
                "shardId": "shardId-000000000001",
                "startSequenceNumber": "100",
                "endSequenceNumber": "200",
                "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
                "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.000Z",
                "batchSize": 2,
                "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/readings"
            },
            "kclContext": {"lastError": "bad payload", "firstFailure": "2019-11-14T00:38:06.000Z",
                           "startSubSequenceNumber": 0, "endSubSequenceNumber": 3}
        });
        assert_eq!(record, expected);
    }

    #[test]
    fn payload_is_lambdas_kinesis_event() {
        let record =
            invocation_record(&failed(FailureReason::RecordTooOld), &context(), true, "req-2", SystemTime::now());
        assert_eq!(record["requestContext"]["condition"], "MaximumRecordAgeExceeded");
        let records = record["payload"]["Records"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0],
            json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "device-1", "sequenceNumber": "100",
                            "data": "eyJ0ZW1wIjoxfQ==", "approximateArrivalTimestamp": 1573691884.835},
                "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": "shardId-000000000001:100",
                "eventName": "aws:kinesis:record", "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/readings",
                "awsRegion": "us-east-2"
            })
        );
        assert_eq!(records[1]["kinesis"]["subSequenceNumber"], 3);
        assert_eq!(records[1]["kinesis"]["data"], "AGJpbmFyeQ==");
    }

    #[test]
    fn s3_keys_and_uuids_look_like_lambdas() {
        let now = UNIX_EPOCH + Duration::from_millis(1_573_691_886_021);
        assert_eq!(
            s3_key("esm-1", "shardId-000000000001", now, "u"),
            "aws/lambda/esm-1/shardId-000000000001/2019/11/14/2019-11-14T00.38.06-u"
        );
        let uuid = uuid_v4();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_ne!(uuid, uuid_v4());
        assert_eq!(iso_millis(UNIX_EPOCH + Duration::from_secs(1)), "1970-01-01T00:00:01.000Z");
    }
}
