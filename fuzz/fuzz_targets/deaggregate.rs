//! Feeds arbitrary bytes to the KPL de-aggregator and checks its invariants.
//!
//! The first input byte picks how the rest becomes a Kinesis record's data:
//! `% 3 == 0` as is, `1` after the KPL magic, `2` after the magic and followed by its valid MD5 (so the protobuf
//! decoder is reached); bit 3 (`& 8`) also applies a shard hash key range (the lower half of the key space).
#![no_main]

use bytes::Bytes;
use kcl_core::deaggregate::{Deaggregated, KPL_MAGIC, KinesisRecord, deaggregate_into_for_shard, effective_hash_key};
use kcl_core::{HashKeyRange, SequenceNumber};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let data = match mode % 3 {
        0 => rest.to_vec(),
        1 => [&KPL_MAGIC[..], rest].concat(),
        _ => [&KPL_MAGIC[..], rest, &Md5::digest(rest)[..]].concat(),
    };
    let range = (mode & 8 != 0).then_some(HashKeyRange { start: 0, end: u128::MAX >> 1 });
    check(Bytes::from(data), range);
});

fn check(blob: Bytes, range: Option<HashKeyRange>) {
    let raw = KinesisRecord::new(blob.clone(), "outer", SequenceNumber::from_u128(42));
    let mut out = Vec::new();
    let outcome = deaggregate_into_for_shard(raw.clone(), range, &mut out);
    assert_eq!(outcome.records_appended(), out.len());
    match outcome {
        Deaggregated::Plain => {
            assert!(!blob.starts_with(&KPL_MAGIC));
            assert_eq!(out, [raw.into_record()]);
        }
        Deaggregated::Corrupt { .. } => {
            assert!(blob.starts_with(&KPL_MAGIC));
            // Exactly the input, as one ordinary record.
            assert_eq!(out, [raw.into_record()]);
        }
        Deaggregated::Aggregate { user_records } => {
            assert!(user_records >= 1);
            let bounds = blob.as_ptr_range();
            for (i, record) in out.iter().enumerate() {
                assert!(record.aggregated);
                assert_eq!(record.sub_sequence_number, i as u64);
                assert!(record.data.is_empty() || bounds.contains(&record.data.as_ptr()));
                let hash_key = effective_hash_key(record);
                assert!(hash_key.is_some());
                if let (Some(range), Some(hash_key)) = (range, hash_key) {
                    assert!(range.contains(hash_key));
                }
            }
        }
        Deaggregated::OutsideShard { user_records, outside } => {
            assert!(range.is_some());
            assert!(out.is_empty());
            assert!(1 <= outside && outside <= user_records);
        }
    }
    // Filtering never changes whether a blob is plain or corrupt.
    if range.is_some() {
        let mut unfiltered = Vec::new();
        let plain = deaggregate_into_for_shard(raw_again(&blob), None, &mut unfiltered);
        if matches!(outcome, Deaggregated::Plain | Deaggregated::Corrupt { .. }) {
            assert_eq!(plain, outcome);
        } else {
            assert!(matches!(plain, Deaggregated::Aggregate { .. }));
        }
    }
}

fn raw_again(blob: &Bytes) -> KinesisRecord {
    KinesisRecord::new(blob.clone(), "outer", SequenceNumber::from_u128(42))
}
