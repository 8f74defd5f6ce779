//! Our own `GetRecords` wire codec: the request body, and the response decoded into records that share the
//! response's memory — JSON (`application/x-amz-json-1.1`, what the Rust SDK speaks) and CBOR
//! (`application/x-amz-cbor-1.1`, what the Java SDK speaks).
//!
//! Payloads are handed out as [`Bytes`] slices: of one buffer holding every record's base64-decoded data (JSON, and
//! CBOR from emulators that send `Data` as base64 text), or of the response body itself (CBOR byte strings, as AWS
//! sends them). A response costs a handful of allocations, not one per payload; the partition key and sequence
//! number are `Arc<str>`s as [`KinesisRecord`] requires (consecutive equal partition keys share one).
//!
//! Every decoding failure is an [`ApiError`] of kind [`Dispatch`](ApiErrorKind::Dispatch) — the response could not
//! be read, as the SDK classifies its own deserialisation failures — so the reader retries it; nothing here panics
//! on any input (the `get_records_decode` fuzz target checks that).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::ChildShard;
use super::api::{ApiError, ApiErrorKind, GetRecordsOutput};
use super::kinesis::classify_code;
use crate::types::{HashKeyRange, KinesisRecord, SequenceNumber};

mod cbor;
mod json;
#[cfg(test)]
mod tests;

/// The wire format of `GetRecords` requests and responses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireFormat {
    /// `application/x-amz-json-1.1`; `Data` is base64 text.
    #[default]
    Json,
    /// `application/x-amz-cbor-1.1`; `Data` is a byte string (AWS) or base64 text (kinesis-mock).
    Cbor,
}

impl WireFormat {
    /// The `Content-Type` of requests (and of the responses to them).
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/x-amz-json-1.1",
            Self::Cbor => "application/x-amz-cbor-1.1",
        }
    }

    /// The `GetRecords` request body.
    pub fn get_records_request(self, iterator: &str, limit: usize) -> Vec<u8> {
        match self {
            Self::Json => json::get_records_request(iterator, limit),
            Self::Cbor => cbor::get_records_request(iterator, limit),
        }
    }

    /// Decodes a successful (HTTP 2xx) `GetRecords` response body.
    pub fn decode_get_records(self, body: Bytes) -> Result<GetRecordsOutput<Arc<str>>, ApiError> {
        match self {
            Self::Json => json::decode_get_records(&body),
            Self::Cbor => cbor::decode_get_records(&body),
        }
        .map_err(|error| malformed(self, &error))
    }

    /// The error a failed (non-2xx) response stands for: its code from the `x-amzn-ErrorType` header or the body's
    /// `__type`, classified like the SDK path's errors.
    pub fn decode_error(self, status: u16, error_type_header: Option<&str>, body: &[u8]) -> ApiError {
        // A proxy or load balancer in between may answer in the other format (or in neither): try both.
        let (body_code, message) = match self {
            Self::Json => or_else(json::error_fields(body), || cbor::error_fields(body)),
            Self::Cbor => or_else(cbor::error_fields(body), || json::error_fields(body)),
        };
        let code = error_type_header.map(str::to_owned).or(body_code).map(|c| bare_error_code(&c).to_owned());
        let kind = classify_code(code.as_deref(), status);
        let text = match (&code, message) {
            (Some(code), Some(message)) => format!("{code}: {message} (HTTP {status})"),
            (Some(code), None) => format!("{code} (HTTP {status})"),
            (None, Some(message)) => format!("{message} (HTTP {status})"),
            (None, None) => format!("HTTP {status} without an error code"),
        };
        ApiError::new(kind, format!("GetRecords: {text}"))
    }
}

fn or_else(
    fields: (Option<String>, Option<String>),
    other: impl FnOnce() -> (Option<String>, Option<String>),
) -> (Option<String>, Option<String>) {
    if fields.0.is_some() { fields } else { other() }
}

/// `aws.protocol#Foo:http://...` and `com.amazonaws.kinesis#Foo` both name `Foo`.
fn bare_error_code(code: &str) -> &str {
    let code = code.split(':').next().unwrap_or(code);
    code.rsplit('#').next().unwrap_or(code)
}

fn malformed(format: WireFormat, error: &str) -> ApiError {
    ApiError::new(
        ApiErrorKind::Dispatch,
        format!("GetRecords response could not be decoded ({format:?}): {error}; retried like a failed read"),
    )
}

/// Where one record's payload lives until the response is assembled.
#[derive(Clone, Copy, Debug)]
enum DataRef {
    /// Bytes of the response body (a CBOR byte string).
    Body(usize, usize),
    /// Bytes of the decoded-data buffer.
    Decoded(usize, usize),
}

/// One record as parsed, borrowing from the body.
struct RawRecord<'a> {
    data: DataRef,
    partition_key: Cow<'a, str>,
    sequence_number: Cow<'a, str>,
    arrival: Option<SystemTime>,
}

/// Collects a response's parts, then builds the records over one decoded-data buffer.
#[derive(Default)]
struct Assembler<'a> {
    records: Vec<RawRecord<'a>>,
    decoded: Vec<u8>,
    next_iterator: Option<Cow<'a, str>>,
    millis_behind_latest: Option<u64>,
    child_shards: Vec<ChildShard>,
}

impl<'a> Assembler<'a> {
    /// Appends the base64 text's bytes to the decoded-data buffer.
    fn decode_base64(&mut self, text: &[u8]) -> Result<DataRef, String> {
        let start = self.decoded.len();
        base64_simd::STANDARD
            .decode_append(text, &mut self.decoded)
            .map_err(|_| format!("record Data is not valid base64 ({} characters)", text.len()))?;
        Ok(DataRef::Decoded(start, self.decoded.len()))
    }

    fn finish(self, body: &Bytes) -> Result<GetRecordsOutput<Arc<str>>, String> {
        let decoded = Bytes::from(self.decoded);
        let mut records = Vec::with_capacity(self.records.len());
        let mut last_key: Option<Arc<str>> = None;
        for raw in self.records {
            let data = match raw.data {
                DataRef::Body(start, end) => body.slice(start..end),
                DataRef::Decoded(start, end) => decoded.slice(start..end),
            };
            let partition_key = match last_key {
                Some(ref key) if **key == *raw.partition_key => key.clone(),
                _ => {
                    let key: Arc<str> = Arc::from(raw.partition_key.as_ref());
                    last_key = Some(key.clone());
                    key
                }
            };
            let sequence_number =
                SequenceNumber::parse(&raw.sequence_number).map_err(|e| format!("record SequenceNumber {e}"))?;
            records.push(KinesisRecord {
                data,
                partition_key,
                sequence_number,
                approximate_arrival_timestamp: raw.arrival,
            });
        }
        Ok(GetRecordsOutput {
            records,
            next_iterator: self.next_iterator.map(|i| Arc::from(i.as_ref())),
            millis_behind_latest: self.millis_behind_latest,
            child_shards: self.child_shards,
        })
    }
}

/// A child shard from its parsed fields; a missing or invalid hash key range is an error, as on the SDK path.
fn child_shard(
    shard_id: Option<Cow<'_, str>>,
    parents: Vec<String>,
    range: Option<(Cow<'_, str>, Cow<'_, str>)>,
) -> Result<ChildShard, String> {
    let shard_id = shard_id.ok_or("a child shard has no ShardId")?.into_owned();
    let hash_key_range = range
        .and_then(|(start, end)| HashKeyRange::parse(&start, &end))
        .ok_or_else(|| format!("child shard {shard_id} has no valid HashKeyRange"))?;
    Ok(ChildShard { shard_id, parent_shard_ids: parents, hash_key_range })
}

/// An arrival time from seconds since the epoch, to the nearest microsecond (binary fractions such as
/// `0.123` land exactly on the millisecond the service meant); `None` for values no `SystemTime` holds.
fn time_from_secs(seconds: f64) -> Option<SystemTime> {
    let micros = (seconds * 1e6).round();
    if !(0.0..=u64::MAX as f64).contains(&micros) {
        return None;
    }
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_micros(micros as u64))
}

/// A lag from the wire; a negative one (a service bug) reads as caught up, as on the SDK path.
fn lag(millis: i64) -> u64 {
    u64::try_from(millis).unwrap_or(0)
}
