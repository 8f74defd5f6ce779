//! De-aggregation of KPL aggregates made by an independent encoder (PyPI `aws-kinesis-agg`, see
//! `tests/data/gen_kpl_vectors.py`), compared with the source records it was given.

use std::path::PathBuf;

use base64::Engine;
use bytes::Bytes;
use kcl_core::deaggregate::{
    CorruptReason, Deaggregated, KPL_MAGIC, KeyTable, KinesisRecord, UserRecordInput, aggregate, deaggregate_into,
    deaggregate_into_for_shard, effective_hash_key,
};
use kcl_core::{HashKeyRange, Record, SequenceNumber};
use md5::{Digest, Md5};
use serde_json::Value;

struct Source {
    partition_key: String,
    explicit_hash_key: Option<String>,
    data: Vec<u8>,
    effective_hash_key: u128,
}

struct Vector {
    name: String,
    blob: Bytes,
    records: Vec<Source>,
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn vectors() -> Vec<Vector> {
    let listing: Value = serde_json::from_slice(&std::fs::read(data_dir().join("kpl_vectors.json")).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    listing["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            name: v["name"].as_str().unwrap().to_owned(),
            blob: std::fs::read(data_dir().join(v["file"].as_str().unwrap())).unwrap().into(),
            records: v["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| Source {
                    partition_key: r["partition_key"].as_str().unwrap().to_owned(),
                    explicit_hash_key: r["explicit_hash_key"].as_str().map(str::to_owned),
                    data: b64.decode(r["data"].as_str().unwrap()).unwrap(),
                    effective_hash_key: r["effective_hash_key"].as_str().unwrap().parse().unwrap(),
                })
                .collect(),
        })
        .collect()
}

fn raw(blob: Bytes) -> KinesisRecord {
    KinesisRecord::new(
        blob,
        "outer",
        SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898").unwrap(),
    )
}

fn deaggregate(blob: Bytes) -> (Deaggregated, Vec<Record>) {
    let mut out = Vec::new();
    let outcome = deaggregate_into(raw(blob), &mut out);
    (outcome, out)
}

#[test]
fn vectors_cover_what_they_should() {
    let vectors = vectors();
    let names: Vec<&str> = vectors.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["several", "explicit_hash_key_some", "empty_data", "binary", "unicode_keys", "large"]);
    let all = || vectors.iter().flat_map(|v| &v.records);
    assert!(all().any(|r| r.explicit_hash_key.is_some()) && all().any(|r| r.explicit_hash_key.is_none()));
    assert!(all().any(|r| r.data.is_empty()));
    assert!(all().any(|r| r.data == (0..=255).collect::<Vec<u8>>()));
    assert!(all().any(|r| !r.partition_key.is_ascii()));
    assert!(vectors.iter().any(|v| v.records.len() >= 500 && v.blob.len() > 64 * 1024));
}

#[test]
fn deaggregates_independently_encoded_vectors() {
    for vector in vectors() {
        let (outcome, out) = deaggregate(vector.blob.clone());
        assert_eq!(outcome, Deaggregated::Aggregate { user_records: vector.records.len() }, "{}", vector.name);
        for (i, (got, want)) in out.iter().zip(&vector.records).enumerate() {
            let at = format!("{} record {i}", vector.name);
            assert_eq!(&*got.partition_key, want.partition_key, "{at}");
            assert_eq!(got.explicit_hash_key.as_deref(), want.explicit_hash_key.as_deref(), "{at}");
            assert_eq!(&got.data[..], &want.data[..], "{at}");
            assert_eq!(got.sub_sequence_number, i as u64, "{at}");
            assert!(got.aggregated, "{at}");
            assert_eq!(effective_hash_key(got), Some(want.effective_hash_key), "{at}");
        }
    }
}

#[test]
fn our_encoder_writes_the_same_bytes() {
    for vector in vectors() {
        let inputs: Vec<UserRecordInput<'_>> = vector
            .records
            .iter()
            .map(|r| UserRecordInput {
                partition_key: &r.partition_key,
                explicit_hash_key: r.explicit_hash_key.as_deref(),
                data: &r.data,
            })
            .collect();
        assert!(aggregate(&inputs) == vector.blob, "{}", vector.name);
    }
}

#[test]
fn shard_filter_on_vectors() {
    for vector in vectors() {
        let keys = vector.records.iter().map(|r| r.effective_hash_key);
        let (lowest, highest) = (keys.clone().min().unwrap(), keys.max().unwrap());
        let mut out = Vec::new();
        let tight = HashKeyRange::new(lowest, highest);
        let outcome = deaggregate_into_for_shard(raw(vector.blob.clone()), tight, &mut out);
        assert_eq!(outcome, Deaggregated::Aggregate { user_records: vector.records.len() }, "{}", vector.name);
        if lowest < highest {
            let outside = vector.records.iter().filter(|r| r.effective_hash_key == highest).count();
            let mut out = Vec::new();
            let outcome =
                deaggregate_into_for_shard(raw(vector.blob), HashKeyRange::new(lowest, highest - 1), &mut out);
            assert_eq!(outcome, Deaggregated::OutsideShard { user_records: vector.records.len(), outside });
            assert!(out.is_empty());
        }
    }
}

/// Checks that `blob` comes back whole, as one ordinary record, with the given outcome.
fn assert_delivered_whole(blob: Vec<u8>, expected: Deaggregated) {
    let blob = Bytes::from(blob);
    let (outcome, out) = deaggregate(blob.clone());
    assert_eq!(outcome, expected);
    assert_eq!(out, vec![raw(blob).into_record()]);
    assert!(!out[0].aggregated);
}

fn reframe(body: &[u8]) -> Vec<u8> {
    [&KPL_MAGIC[..], body, &Md5::digest(body)[..]].concat()
}

#[test]
fn corrupted_vectors_are_delivered_whole() {
    let corrupt = |reason| Deaggregated::Corrupt { reason };
    for vector in vectors() {
        let blob = vector.blob.to_vec();
        let body = &blob[4..blob.len() - 16];

        let mut flipped = blob.clone();
        *flipped.last_mut().unwrap() ^= 0x01;
        assert_delivered_whole(flipped, corrupt(CorruptReason::BadMd5));

        assert_delivered_whole(blob[..blob.len() - 5].to_vec(), corrupt(CorruptReason::BadMd5));
        // Truncated protobuf with a matching MD5.
        let truncated = reframe(&body[..body.len() - 1]);
        let (outcome, _) = deaggregate(truncated.clone().into());
        assert!(matches!(outcome, Deaggregated::Corrupt { reason: CorruptReason::Malformed(_) }), "{}", vector.name);
        assert_delivered_whole(truncated, outcome);

        let mut wrong_magic = blob.clone();
        wrong_magic[0] = 0xF4;
        assert_delivered_whole(wrong_magic, Deaggregated::Plain);

        assert_delivered_whole(KPL_MAGIC.to_vec(), corrupt(CorruptReason::TooShort));
    }
}

#[test]
fn bad_key_index_in_a_real_vector() {
    // kpl_several: the first record is `1a 10 | 08 00 | 1a 0c "first record"`; point it at table entry 3 of 3.
    let vector = vectors().into_iter().find(|v| v.name == "several").unwrap();
    let mut body = vector.blob[4..vector.blob.len() - 16].to_vec();
    let at = body.windows(4).position(|w| w == [0x1a, 0x10, 0x08, 0x00]).unwrap();
    body[at + 3] = 3;
    let expected = Deaggregated::Corrupt { reason: CorruptReason::BadIndex(KeyTable::PartitionKey) };
    assert_delivered_whole(reframe(&body), expected);
    body[at + 3] = 2;
    assert_eq!(deaggregate(reframe(&body).into()).0, Deaggregated::Aggregate { user_records: 4 });
}
