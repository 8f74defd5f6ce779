//! Decoder tests on constructed bodies in both wire formats: the forms AWS and the emulators send, and malformed
//! bodies (every truncation, wrong types, bad base64, hostile nesting), which must be errors, never panics.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::super::api::ApiErrorKind;
use super::WireFormat;

fn at_millis(millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

const JSON_BODY: &str = r#"{"Records":[
  {"Data":"aGVsbG8=","PartitionKey":"k1","SequenceNumber":"49590338271490256608559692538361571095921575989136588801",
   "ApproximateArrivalTimestamp":1700000000.123,"EncryptionType":"NONE"},
  {"Data":"AAEC/w==","PartitionKey":"k1","SequenceNumber":"49590338271490256608559692538361571095921575989136588802",
   "ApproximateArrivalTimestamp":1700000000.5},
  {"Data":"","PartitionKey":"k2","SequenceNumber":"3"}
 ],"NextShardIterator":"AAAA-next","MillisBehindLatest":42}"#;

#[test]
fn json_response_decodes_into_records_sharing_one_buffer() {
    let output = WireFormat::Json.decode_get_records(Bytes::from_static(JSON_BODY.as_bytes())).unwrap();
    assert_eq!(output.records.len(), 3);
    assert_eq!(&output.records[0].data[..], b"hello");
    assert_eq!(&output.records[1].data[..], &[0, 1, 2, 255]);
    assert!(output.records[2].data.is_empty());
    assert_eq!(&*output.records[0].partition_key, "k1");
    // Consecutive equal keys share one allocation.
    assert!(std::sync::Arc::ptr_eq(&output.records[0].partition_key, &output.records[1].partition_key));
    assert_eq!(output.records[1].sequence_number.as_str(), "49590338271490256608559692538361571095921575989136588802");
    assert_eq!(output.records[0].approximate_arrival_timestamp, Some(at_millis(1_700_000_000_123)));
    assert_eq!(output.records[2].approximate_arrival_timestamp, None);
    // Both payloads are slices of one decoded buffer.
    let gap = output.records[1].data.as_ptr() as usize - output.records[0].data.as_ptr() as usize;
    assert_eq!(gap, 5);
    assert_eq!(output.next_iterator.as_deref(), Some("AAAA-next"));
    assert_eq!(output.millis_behind_latest, Some(42));
    assert!(output.child_shards.is_empty());
}

#[test]
fn json_shard_end_reports_children_and_no_iterator() {
    let body = r#"{"Records":[],"MillisBehindLatest":0,"NextShardIterator":null,"ChildShards":[
        {"ShardId":"shardId-000000000002","ParentShards":["shardId-000000000000","shardId-000000000001"],
         "HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"340282366920938463463374607431768211455"}}]}"#;
    let output = WireFormat::Json.decode_get_records(Bytes::from(body)).unwrap();
    assert!(output.records.is_empty());
    assert_eq!(output.next_iterator, None);
    assert_eq!(output.child_shards.len(), 1);
    assert_eq!(output.child_shards[0].shard_id, "shardId-000000000002");
    assert_eq!(output.child_shards[0].parent_shard_ids.len(), 2);
    assert_eq!(output.child_shards[0].hash_key_range.end, u128::MAX);
}

#[test]
fn json_escaped_base64_and_negative_lag_are_accepted() {
    let body =
        r#"{"Records":[{"Data":"AAEC\/w==","PartitionKey":"k\u00e9","SequenceNumber":"7"}],"MillisBehindLatest":-5}"#;
    let output = WireFormat::Json.decode_get_records(Bytes::from(body)).unwrap();
    assert_eq!(&output.records[0].data[..], &[0, 1, 2, 255]);
    assert_eq!(&*output.records[0].partition_key, "ké");
    assert_eq!(output.millis_behind_latest, Some(0));
}

#[test]
fn malformed_json_bodies_are_retryable_dispatch_errors() {
    let cases = [
        ("empty", ""),
        ("not an object", "[]"),
        ("bad base64", r#"{"Records":[{"Data":"@@@","PartitionKey":"k","SequenceNumber":"1"}]}"#),
        ("bad sequence", r#"{"Records":[{"Data":"","PartitionKey":"k","SequenceNumber":"12a"}]}"#),
        ("missing key", r#"{"Records":[{"Data":"","SequenceNumber":"1"}]}"#),
        ("wrong type", r#"{"Records":[{"Data":5,"PartitionKey":"k","SequenceNumber":"1"}]}"#),
        ("child without range", r#"{"Records":[],"ChildShards":[{"ShardId":"s","ParentShards":[]}]}"#),
    ];
    for (name, body) in cases {
        let error = WireFormat::Json.decode_get_records(Bytes::from(body)).unwrap_err();
        assert_eq!(error.kind, ApiErrorKind::Dispatch, "{name}: {error}");
        assert!(error.kind.is_retryable(), "{name}");
    }
    for cut in 0..JSON_BODY.len() {
        let error = WireFormat::Json.decode_get_records(Bytes::copy_from_slice(&JSON_BODY.as_bytes()[..cut]));
        assert!(error.is_err(), "truncated at {cut}");
    }
}

#[test]
fn error_bodies_classify_like_the_sdk_path() {
    let json = |code: &str| format!(r#"{{"__type":"{code}","message":"m"}}"#).into_bytes();
    /// Format, HTTP status, `x-amzn-ErrorType`, body, expected classification.
    type Case<'a> = (WireFormat, u16, Option<&'a str>, Vec<u8>, ApiErrorKind);
    let cases: [Case<'_>; 11] = [
        (WireFormat::Cbor, 400, None, json("ProvisionedThroughputExceededException"), ApiErrorKind::Throttled),
        (WireFormat::Json, 400, None, json("ProvisionedThroughputExceededException"), ApiErrorKind::Throttled),
        (WireFormat::Json, 400, None, json("com.amazonaws.kinesis#LimitExceededException"), ApiErrorKind::Throttled),
        (WireFormat::Json, 400, None, json("ExpiredIteratorException"), ApiErrorKind::ExpiredIterator),
        (WireFormat::Json, 400, None, json("KMSThrottlingException"), ApiErrorKind::Throttled),
        (WireFormat::Json, 400, None, json("KMSAccessDeniedException"), ApiErrorKind::AccessDenied),
        (WireFormat::Json, 400, Some("ResourceNotFoundException:http://internal"), json("X"), ApiErrorKind::NotFound),
        (WireFormat::Json, 500, None, b"<html>oops".to_vec(), ApiErrorKind::ServerError),
        (WireFormat::Json, 503, None, Vec::new(), ApiErrorKind::ServerError),
        (WireFormat::Cbor, 400, None, cbor_error("ExpiredIteratorException"), ApiErrorKind::ExpiredIterator),
        (WireFormat::Cbor, 400, None, cbor_error("ProvisionedThroughputExceededException"), ApiErrorKind::Throttled),
    ];
    for (format, status, header, body, kind) in cases {
        let error = format.decode_error(status, header, &body);
        assert_eq!(error.kind, kind, "{format:?} {status} {header:?}: {error}");
    }
}

// --- CBOR ---

/// A CBOR writer for the tests: definite or indefinite maps, every `Data` and timestamp form.
#[derive(Default)]
struct Cbor(Vec<u8>);

impl Cbor {
    fn head(&mut self, major: u8, value: u64) -> &mut Self {
        let major = major << 5;
        if value < 24 {
            self.0.push(major | value as u8);
        } else if value <= 0xff {
            self.0.extend_from_slice(&[major | 24, value as u8]);
        } else if value <= 0xffff {
            self.0.push(major | 25);
            self.0.extend_from_slice(&(value as u16).to_be_bytes());
        } else {
            self.0.push(major | 27);
            self.0.extend_from_slice(&value.to_be_bytes());
        }
        self
    }
    fn text(&mut self, text: &str) -> &mut Self {
        self.head(3, text.len() as u64);
        self.0.extend_from_slice(text.as_bytes());
        self
    }
    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.head(2, bytes.len() as u64);
        self.0.extend_from_slice(bytes);
        self
    }
    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn f64(&mut self, value: f64) -> &mut Self {
        self.0.push(0xfb);
        self.0.extend_from_slice(&value.to_bits().to_be_bytes());
        self
    }
}

fn cbor_error(code: &str) -> Vec<u8> {
    let mut c = Cbor::default();
    c.head(5, 2).text("__type").text(code).text("message").text("m");
    c.0
}

/// Records as AWS sends them: byte-string data, tag-1 timestamps, an indefinite-length outer map.
fn aws_style_body() -> Vec<u8> {
    let mut c = Cbor::default();
    c.raw(&[0xbf]).text("Records").head(4, 2);
    c.head(5, 5).text("Data").bytes(b"hello").text("PartitionKey").text("k1");
    c.text("SequenceNumber").text("1001").text("ApproximateArrivalTimestamp").head(6, 1).f64(1_700_000_000.25);
    c.text("EncryptionType").text("NONE");
    c.raw(&[0xbf]).text("Data").raw(&[0x5f, 0x42, 1, 2, 0x41, 3, 0xff]).text("PartitionKey").text("k2");
    c.text("SequenceNumber").text("1002").text("Unknown").head(4, 2).head(5, 1).text("a").head(0, 1).raw(&[0xf6]);
    c.raw(&[0xff]);
    c.text("NextShardIterator").text("it-2").text("MillisBehindLatest").head(0, 500).raw(&[0xff]);
    c.0
}

#[test]
fn cbor_byte_string_data_is_a_slice_of_the_body() {
    let body = Bytes::from(aws_style_body());
    let output = WireFormat::Cbor.decode_get_records(body.clone()).unwrap();
    assert_eq!(output.records.len(), 2);
    assert_eq!(&output.records[0].data[..], b"hello");
    let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
    assert!(range.contains(&(output.records[0].data.as_ptr() as usize)), "zero-copy: data points into the body");
    assert_eq!(&output.records[1].data[..], &[1, 2, 3], "chunked byte string");
    assert_eq!(output.records[0].approximate_arrival_timestamp, Some(at_millis(1_700_000_000_250)));
    assert_eq!(output.records[1].sequence_number.as_str(), "1002");
    assert_eq!(output.next_iterator.as_deref(), Some("it-2"));
    assert_eq!(output.millis_behind_latest, Some(500));
}

#[test]
fn cbor_as_kinesis_mock_sends_it_base64_text_and_integer_millis() {
    let mut c = Cbor::default();
    c.head(5, 3).text("Records").head(4, 1);
    c.head(5, 4).text("Data").text("AAEC/w==").text("PartitionKey").text("k");
    c.text("SequenceNumber").text("0042").text("ApproximateArrivalTimestamp").head(0, 1_700_000_000_123);
    c.text("NextShardIterator").raw(&[0xf6]).text("ChildShards").head(4, 1);
    c.head(5, 3).text("ShardId").text("shardId-1").text("ParentShards").head(4, 1).text("shardId-0");
    c.text("HashKeyRange").head(5, 2).text("StartingHashKey").text("0").text("EndingHashKey").text("99");
    let output = WireFormat::Cbor.decode_get_records(Bytes::from(c.0)).unwrap();
    assert_eq!(&output.records[0].data[..], &[0, 1, 2, 255]);
    assert_eq!(output.records[0].sequence_number.as_str(), "42");
    assert_eq!(output.records[0].approximate_arrival_timestamp, Some(at_millis(1_700_000_000_123)));
    assert_eq!(output.next_iterator, None);
    assert_eq!(output.child_shards[0].parent_shard_ids, vec!["shardId-0".to_owned()]);
    assert_eq!(output.child_shards[0].hash_key_range.end, 99);
}

#[test]
fn malformed_cbor_bodies_are_errors_not_panics() {
    let body = aws_style_body();
    for cut in 0..body.len() {
        let result = WireFormat::Cbor.decode_get_records(Bytes::copy_from_slice(&body[..cut]));
        let error = result.expect_err("a truncated body must not decode");
        assert_eq!(error.kind, ApiErrorKind::Dispatch, "cut at {cut}");
    }
    let mut trailing = body.clone();
    trailing.push(0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("trailing bytes", trailing),
        ("deep nesting", [&[0xa1, 0x61, b'X'][..], &[0x81; 10_000][..]].concat()),
        ("huge length", vec![0xa1, 0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        (
            "huge count",
            vec![0xa1, 0x67, b'R', b'e', b'c', b'o', b'r', b'd', b's', 0x9b, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
        ),
        ("data is a number", {
            let mut c = Cbor::default();
            c.head(5, 1).text("Records").head(4, 1).head(5, 3).text("Data").head(0, 1000);
            c.text("PartitionKey").text("k").text("SequenceNumber").text("1");
            c.0
        }),
        ("bad base64 text", {
            let mut c = Cbor::default();
            c.head(5, 1).text("Records").head(4, 1).head(5, 3).text("Data").text("!!");
            c.text("PartitionKey").text("k").text("SequenceNumber").text("1");
            c.0
        }),
        ("invalid UTF-8 key", vec![0xa1, 0x62, 0xff, 0xfe, 0x00]),
        ("reserved head", vec![0xa1, 0x61, b'X', 0x1c]),
    ];
    for (name, body) in cases {
        let error = WireFormat::Cbor.decode_get_records(Bytes::from(body)).unwrap_err();
        assert_eq!(error.kind, ApiErrorKind::Dispatch, "{name}: {error}");
    }
}

#[test]
fn requests_carry_the_iterator_and_limit() {
    let json: serde_json::Value = serde_json::from_slice(&WireFormat::Json.get_records_request("it", 10_000)).unwrap();
    assert_eq!(json, serde_json::json!({"ShardIterator": "it", "Limit": 10000}));
    let cbor = WireFormat::Cbor.get_records_request("it", 10_000);
    let mut expected = Cbor::default();
    expected.head(5, 2).text("ShardIterator").text("it").text("Limit").head(0, 10_000);
    assert_eq!(cbor, expected.0);
}
