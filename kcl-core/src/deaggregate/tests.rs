//! Unit tests: outcomes, corrupt inputs, protobuf leniency, shard filtering, metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use md5::{Digest, Md5};
use metrics::{Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use super::aggregate::frame;
use super::proto::{AggregatedRecord, ProtoRecord};
use super::*;
use crate::types::{HashKeyRange, Record, SequenceNumber};

// ---- helpers shared with the property tests ----

pub(super) fn raw(data: impl Into<Bytes>) -> KinesisRecord {
    KinesisRecord {
        data: data.into(),
        partition_key: "outer-key".into(),
        sequence_number: SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898")
            .unwrap_or_else(|_| SequenceNumber::from_u128(1)),
        approximate_arrival_timestamp: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
    }
}

/// Magic ‖ `body` ‖ MD5(`body`): a correctly framed aggregate around arbitrary protobuf bytes.
pub(super) fn frame_body(body: &[u8]) -> Bytes {
    let mut blob = KPL_MAGIC.to_vec();
    blob.extend_from_slice(body);
    blob.extend_from_slice(&Md5::digest(body));
    Bytes::from(blob)
}

pub(super) fn run(raw: KinesisRecord, range: Option<HashKeyRange>) -> (Deaggregated, Vec<Record>) {
    let mut out = Vec::new();
    let outcome = deaggregate_into_for_shard(raw, range, &mut out);
    (outcome, out)
}

fn record(pk: u64, ehk: Option<u64>, data: &[u8]) -> ProtoRecord {
    ProtoRecord { partition_key_index: pk, explicit_hash_key_index: ehk, data: data.to_vec(), tags: Vec::new() }
}

fn message(pks: &[&str], ehks: &[&str], records: Vec<ProtoRecord>) -> AggregatedRecord {
    AggregatedRecord {
        partition_key_table: pks.iter().map(|s| s.to_string()).collect(),
        explicit_hash_key_table: ehks.iter().map(|s| s.to_string()).collect(),
        records,
    }
}

/// Counts counter increments per (name, labels), for the current thread only.
#[derive(Default)]
struct Counts(Arc<Mutex<HashMap<String, u64>>>);

struct Handle(Arc<Mutex<HashMap<String, u64>>>, String);

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        *self.0.lock().unwrap().entry(self.1.clone()).or_default() += value;
    }
    fn absolute(&self, _value: u64) {}
}

impl Recorder for Counts {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        Counter::from_arc(Arc::new(Handle(self.0.clone(), format!("{}{{{}}}", key.name(), labels.join(",")))))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

impl Counts {
    fn snapshot(&self) -> HashMap<String, u64> {
        self.0.lock().unwrap().clone()
    }
}

/// De-aggregates `blob` and checks it came back whole, as one ordinary record, with the failure counted once.
fn assert_corrupt(blob: Bytes, reason: CorruptReason) {
    let counts = Counts::default();
    let (outcome, out) = metrics::with_local_recorder(&counts, || run(raw(blob.clone()), None));
    assert_eq!(outcome, Deaggregated::Corrupt { reason });
    assert_eq!(out, vec![raw(blob).into_record()]);
    let key = format!("{FAILURES_METRIC}{{reason={}}}", reason.label());
    assert_eq!(counts.snapshot(), HashMap::from([(key, 1)]));
}

fn sample() -> AggregatedRecord {
    message(&["a", "b"], &["42"], vec![record(0, None, b"one"), record(1, Some(0), b"two"), record(0, None, b"")])
}

// ---- outcomes ----

#[test]
fn plain_records_pass_through() {
    for data in [&b""[..], b"\xf3\x89\x9a", b"hello", b"\xf3\x89\x9a\xc3 almost the magic"] {
        let counts = Counts::default();
        let (outcome, out) = metrics::with_local_recorder(&counts, || run(raw(data.to_vec()), None));
        assert_eq!(outcome, Deaggregated::Plain);
        assert_eq!(out, vec![raw(data.to_vec()).into_record()]);
        assert!(counts.snapshot().is_empty());
    }
}

#[test]
fn aggregate_yields_user_records_in_order() {
    let blob = frame(&sample());
    let (outcome, out) = run(raw(blob.clone()), None);
    assert_eq!(outcome, Deaggregated::Aggregate { user_records: 3 });
    assert_eq!(outcome.records_appended(), 3);
    let outer = raw(blob.clone());
    let expected = [("a", None, &b"one"[..]), ("b", Some("42"), b"two"), ("a", None, b"")];
    for (i, (record, (pk, ehk, data))) in out.iter().zip(expected).enumerate() {
        assert_eq!(&*record.partition_key, pk);
        assert_eq!(record.explicit_hash_key.as_deref(), ehk);
        assert_eq!(&record.data[..], data);
        assert_eq!(record.sub_sequence_number, i as u64);
        assert_eq!(record.sequence_number, outer.sequence_number);
        assert_eq!(record.approximate_arrival_timestamp, outer.approximate_arrival_timestamp);
        assert!(record.aggregated);
    }
    // One allocation per key-table entry, shared by the records that use it.
    assert!(Arc::ptr_eq(&out[0].partition_key, &out[2].partition_key));
    // Payloads are slices of the blob, not copies.
    let blob_range = blob.as_ptr_range();
    for record in out.iter().filter(|r| !r.data.is_empty()) {
        assert!(blob_range.contains(&record.data.as_ptr()));
    }
}

#[test]
fn appends_to_existing_output() {
    let mut out = vec![raw(&b"earlier"[..]).into_record()];
    let outcome = deaggregate_into(raw(frame(&sample())), &mut out);
    assert_eq!(outcome, Deaggregated::Aggregate { user_records: 3 });
    assert_eq!(out.len(), 4);
    assert_eq!(&out[0].data[..], b"earlier");

    let mut bad = frame(&sample()).to_vec();
    bad[10] ^= 1;
    let outcome = deaggregate_into(raw(bad.clone()), &mut out);
    assert!(outcome.is_corrupt());
    assert_eq!(out.len(), 5);
    assert_eq!(out[4], raw(bad).into_record());
}

// ---- corrupt inputs: delivered whole, counted ----

#[test]
fn flipped_md5_byte() {
    let mut blob = frame(&sample()).to_vec();
    let last = blob.len() - 1;
    blob[last] ^= 0x80;
    assert_corrupt(blob.into(), CorruptReason::BadMd5);
}

#[test]
fn flipped_body_byte() {
    let mut blob = frame(&sample()).to_vec();
    blob[8] ^= 0x01;
    assert_corrupt(blob.into(), CorruptReason::BadMd5);
}

#[test]
fn truncated_blob() {
    let blob = frame(&sample());
    assert_corrupt(blob.slice(..blob.len() - 1), CorruptReason::BadMd5);
    assert_corrupt(blob.slice(..30), CorruptReason::BadMd5);
}

#[test]
fn truncated_protobuf_with_valid_md5() {
    let body = prost::Message::encode_to_vec(&sample());
    for cut in [1, 2, 5, body.len() - 1] {
        let blob = frame_body(&body[..cut]);
        let (outcome, out) = run(raw(blob.clone()), None);
        assert!(
            matches!(outcome, Deaggregated::Corrupt { reason: CorruptReason::Malformed(_) }),
            "cut at {cut}: {outcome:?}"
        );
        assert_eq!(out, vec![raw(blob).into_record()]);
    }
    assert_corrupt(frame_body(&body[..body.len() - 1]), CorruptReason::Malformed(MalformedKind::Truncated));
}

#[test]
fn too_short_after_magic() {
    assert_corrupt(Bytes::from_static(&KPL_MAGIC), CorruptReason::TooShort);
    assert_corrupt(Bytes::from([&KPL_MAGIC[..], &[0u8; 16]].concat()), CorruptReason::TooShort);
    // An empty protobuf with its (valid) MD5 is exactly 16 bytes after the magic: too short too.
    assert_corrupt(frame_body(b""), CorruptReason::TooShort);
    assert_corrupt(Bytes::from([&KPL_MAGIC[..], &[0u8; 17]].concat()), CorruptReason::BadMd5);
}

#[test]
fn bad_partition_key_index() {
    assert_corrupt(
        frame(&message(&["a"], &[], vec![record(0, None, b"ok"), record(1, None, b"bad")])),
        CorruptReason::BadIndex(KeyTable::PartitionKey),
    );
    // 2^32: Java KCL's `(int)` cast would wrap this to 0.
    assert_corrupt(
        frame(&message(&["a"], &[], vec![record(1 << 32, None, b"x")])),
        CorruptReason::BadIndex(KeyTable::PartitionKey),
    );
    assert_corrupt(
        frame(&message(&[], &[], vec![record(0, None, b"x")])),
        CorruptReason::BadIndex(KeyTable::PartitionKey),
    );
}

#[test]
fn bad_explicit_hash_key_index() {
    assert_corrupt(
        frame(&message(&["a"], &["1"], vec![record(0, Some(0), b"ok"), record(0, Some(1), b"bad")])),
        CorruptReason::BadIndex(KeyTable::ExplicitHashKey),
    );
    assert_corrupt(
        frame(&message(&["a"], &[], vec![record(0, Some(0), b"x")])),
        CorruptReason::BadIndex(KeyTable::ExplicitHashKey),
    );
}

#[test]
fn bad_explicit_hash_key_text() {
    for bad in ["abc", "-1", "340282366920938463463374607431768211456", ""] {
        assert_corrupt(
            frame(&message(&["a"], &[bad], vec![record(0, Some(0), b"x")])),
            CorruptReason::BadExplicitHashKey,
        );
    }
    // An unused bad entry does no harm.
    let (outcome, _) = run(raw(frame(&message(&["a"], &["abc"], vec![record(0, None, b"x")]))), None);
    assert_eq!(outcome, Deaggregated::Aggregate { user_records: 1 });
}

#[test]
fn no_user_records() {
    assert_corrupt(frame(&message(&["a", "b"], &["1"], vec![])), CorruptReason::NoRecords);
    // An unknown field only.
    assert_corrupt(frame_body(&[0x28, 0x01]), CorruptReason::NoRecords);
}

#[test]
fn missing_required_fields() {
    let missing = CorruptReason::Malformed(MalformedKind::MissingRequiredField);
    // Record { data } without partition_key_index: 0a 01 'a' | 1a 03 (1a 01 'x')
    assert_corrupt(frame_body(&[0x0a, 0x01, b'a', 0x1a, 0x03, 0x1a, 0x01, b'x']), missing);
    // Record { partition_key_index } without data.
    assert_corrupt(frame_body(&[0x0a, 0x01, b'a', 0x1a, 0x02, 0x08, 0x00]), missing);
    // A tag without its key: records[0] = { 0, "x", tags: [{ value "v" }] }.
    let body = [0x0a, 0x01, b'a', 0x1a, 0x0a, 0x08, 0x00, 0x1a, 0x01, b'x', 0x22, 0x03, 0x12, 0x01, b'v'];
    assert_corrupt(frame_body(&body), missing);
}

#[test]
fn invalid_utf8_key() {
    // partition_key_table = ["\xff"], records = [{0, "x"}]
    assert_corrupt(
        frame_body(&[0x0a, 0x01, 0xff, 0x1a, 0x05, 0x08, 0x00, 0x1a, 0x01, b'x']),
        CorruptReason::Malformed(MalformedKind::InvalidUtf8),
    );
}

#[test]
fn garbage_protobuf() {
    assert_corrupt(frame_body(&[0x00]), CorruptReason::Malformed(MalformedKind::InvalidKey));
    assert_corrupt(frame_body(&[0x0f, 0x00]), CorruptReason::Malformed(MalformedKind::InvalidKey));
    assert_corrupt(frame_body(&[0x08, 0xff]), CorruptReason::Malformed(MalformedKind::Truncated));
    let overflow = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_corrupt(frame_body(&overflow), CorruptReason::Malformed(MalformedKind::VarintOverflow));
}

// ---- protobuf leniency, as protobuf-java ----

#[test]
fn accepts_any_field_order_unknown_fields_and_tags() {
    // records before the tables, an unknown varint, fixed32, fixed64 and group at both levels,
    // a known field with the wrong wire type (skipped), a repeated scalar (last wins) and a tag with a value.
    let body = [
        0x1a, 0x1a, // records[0], 26 bytes:
        0x08, 0x05, 0x08, 0x01, // partition_key_index 5, then 1 (last wins)
        0x0a, 0x01, b'z', // field 1 as bytes: wrong wire type, skipped
        0x1a, 0x02, b'h', b'i', // data "hi"
        0x22, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // tag { key "k", value "v" }
        0x2d, 1, 2, 3, 4, // field 5 fixed32
        0x33, 0x34, // field 6 empty group
        0x0a, 0x01, b'a', // partition_key_table[0] = "a"
        0x49, 1, 2, 3, 4, 5, 6, 7, 8, // field 9 fixed64
        0x50, 0x07, // field 10 varint
        0x5b, 0x08, 0x01, 0x5c, // field 11 group { field 1 varint }
        0x0a, 0x01, b'b', // partition_key_table[1] = "b"
        0x18, 0x01, // field 3 as a varint: wrong wire type, skipped
    ];
    let (outcome, out) = run(raw(frame_body(&body)), None);
    assert_eq!(outcome, Deaggregated::Aggregate { user_records: 1 });
    assert_eq!(&*out[0].partition_key, "b");
    assert_eq!(&out[0].data[..], b"hi");
    assert_eq!(out[0].explicit_hash_key, None);
}

// ---- shard filtering ----

/// Effective hash keys: "a" → md5("a") = 0x0cc1…, explicit "42" → 42.
fn filter_sample() -> Bytes {
    frame(&message(&["a", "b"], &["42"], vec![record(0, None, b"one"), record(1, Some(0), b"two")]))
}

#[test]
fn shard_filter_keeps_aggregates_inside_the_range() {
    let pk_a = partition_key_hash_key("a");
    for range in [None, Some(HashKeyRange::FULL), HashKeyRange::new(42, pk_a), HashKeyRange::new(0, u128::MAX / 2)] {
        let (outcome, out) = run(raw(filter_sample()), range);
        assert_eq!(outcome, Deaggregated::Aggregate { user_records: 2 }, "{range:?}");
        assert_eq!(out.len(), 2);
    }
}

#[test]
fn shard_filter_drops_the_whole_aggregate_if_any_record_is_outside() {
    let pk_a = partition_key_hash_key("a");
    let cases = [
        (HashKeyRange::new(43, u128::MAX), 1),
        (HashKeyRange::new(0, pk_a - 1), 1),
        (HashKeyRange::new(pk_a + 1, u128::MAX), 2),
    ];
    for (range, outside) in cases {
        let counts = Counts::default();
        let mut out = vec![raw(&b"earlier"[..]).into_record()];
        let outcome =
            metrics::with_local_recorder(&counts, || deaggregate_into_for_shard(raw(filter_sample()), range, &mut out));
        assert_eq!(outcome, Deaggregated::OutsideShard { user_records: 2, outside }, "{range:?}");
        assert_eq!(outcome.records_appended(), 0);
        assert_eq!(out.len(), 1, "nothing appended, nothing removed");
        assert_eq!(counts.snapshot(), HashMap::from([(FILTERED_METRIC.to_string() + "{}", 2)]));
    }
}

#[test]
fn shard_filter_never_drops_plain_or_corrupt_records() {
    let range = HashKeyRange::new(0, 0);
    let (outcome, out) = run(raw(&b"plain"[..]), range);
    assert_eq!((outcome, out.len()), (Deaggregated::Plain, 1));
    // Outside the range *and* corrupt (bad index after the outside record): corrupt wins, delivered whole.
    let blob = frame(&message(&["a"], &[], vec![record(0, None, b"x"), record(7, None, b"y")]));
    let (outcome, out) = run(raw(blob.clone()), range);
    assert_eq!(outcome, Deaggregated::Corrupt { reason: CorruptReason::BadIndex(KeyTable::PartitionKey) });
    assert_eq!(out, vec![raw(blob).into_record()]);
}
