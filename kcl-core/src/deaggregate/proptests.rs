//! Property tests: round trips, shard filtering, arbitrary and mutated input, and a differential check against
//! prost as an independent reference decoder.

use bytes::Bytes;
use proptest::prelude::*;

use super::proto::AggregatedRecord;
use super::tests::{frame_body, raw, run};
use super::*;
use crate::types::HashKeyRange;

/// A user record: partition key, optional explicit hash key, data.
type Input = (String, Option<String>, Vec<u8>);

fn input() -> impl Strategy<Value = Input> {
    let partition_key = prop_oneof![3 => "[a-c]{1,2}", 1 => any::<String>(), 1 => "\\PC{0,40}"];
    let explicit_hash_key =
        proptest::option::of(prop_oneof![any::<u128>().prop_map(|v| v.to_string()), Just("0".into())]);
    let data = prop_oneof![3 => proptest::collection::vec(any::<u8>(), 0..200), 1 => Just(Vec::new())];
    (partition_key, explicit_hash_key, data)
}

fn inputs() -> impl Strategy<Value = Vec<Input>> {
    proptest::collection::vec(input(), 1..40)
}

fn encode(inputs: &[Input]) -> Bytes {
    let records: Vec<UserRecordInput<'_>> = inputs
        .iter()
        .map(|(pk, ehk, data)| UserRecordInput { partition_key: pk, explicit_hash_key: ehk.as_deref(), data })
        .collect();
    aggregate(&records)
}

/// What must hold for any input.
fn check_invariants(blob: &Bytes, outcome: Deaggregated, out: &[Record]) -> Result<(), TestCaseError> {
    prop_assert_eq!(outcome.records_appended(), out.len());
    match outcome {
        Deaggregated::Plain => {
            prop_assert!(!blob.starts_with(&KPL_MAGIC));
            prop_assert_eq!(out, &[raw(blob.clone()).into_record()][..]);
        }
        Deaggregated::Corrupt { .. } => {
            prop_assert!(blob.starts_with(&KPL_MAGIC));
            prop_assert_eq!(out, &[raw(blob.clone()).into_record()][..]);
        }
        Deaggregated::Aggregate { user_records } => {
            prop_assert!(user_records >= 1);
            let range = blob.as_ptr_range();
            for (i, record) in out.iter().enumerate() {
                prop_assert!(record.aggregated);
                prop_assert_eq!(record.sub_sequence_number, i as u64);
                prop_assert!(record.data.is_empty() || range.contains(&record.data.as_ptr()));
                if let Some(ehk) = &record.explicit_hash_key {
                    prop_assert!(parse_explicit_hash_key(ehk).is_some());
                }
            }
        }
        Deaggregated::OutsideShard { .. } => prop_assert!(false, "no range was given"),
    }
    Ok(())
}

/// prost's reading of an aggregate body, resolved through the key tables; `None` where either side would fail.
fn reference(body: &[u8]) -> Option<Vec<Input>> {
    let message: AggregatedRecord = prost::Message::decode(body).ok()?;
    if message.records.is_empty() {
        return None;
    }
    message
        .records
        .iter()
        .map(|r| {
            let pk = message.partition_key_table.get(usize::try_from(r.partition_key_index).ok()?)?.clone();
            let ehk = match r.explicit_hash_key_index {
                None => None,
                Some(i) => {
                    let text = message.explicit_hash_key_table.get(usize::try_from(i).ok()?)?;
                    parse_explicit_hash_key(text)?;
                    Some(text.clone())
                }
            };
            Some((pk, ehk, r.data.clone()))
        })
        .collect()
}

fn as_inputs(out: &[Record]) -> Vec<Input> {
    out.iter()
        .map(|r| (r.partition_key.to_string(), r.explicit_hash_key.as_deref().map(str::to_owned), r.data.to_vec()))
        .collect()
}

/// Applies byte-level mutations: overwrite, insert, delete, truncate.
fn mutate(mut body: Vec<u8>, mutations: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, byte, op) in mutations {
        let at = if body.is_empty() { 0 } else { at % body.len() };
        match op % 4 {
            0 if !body.is_empty() => body[at] = byte,
            1 => body.insert(at, byte),
            2 if !body.is_empty() => drop(body.remove(at)),
            3 => body.truncate(at),
            _ => {}
        }
    }
    body
}

/// De-aggregates a correctly framed `body`, checks the invariants and agrees with prost wherever both succeed.
fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    let blob = frame_body(body);
    let (outcome, out) = run(raw(blob.clone()), None);
    check_invariants(&blob, outcome, &out)?;
    if let (Deaggregated::Aggregate { .. }, Some(expected)) = (outcome, reference(body)) {
        prop_assert_eq!(as_inputs(&out), expected);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn aggregate_then_deaggregate_round_trips(records in inputs()) {
        let blob = encode(&records);
        let (outcome, out) = run(raw(blob.clone()), None);
        prop_assert_eq!(outcome, Deaggregated::Aggregate { user_records: records.len() });
        check_invariants(&blob, outcome, &out)?;
        prop_assert_eq!(as_inputs(&out), records.clone());
        // prost reads our encoding the same way.
        prop_assert_eq!(reference(&blob[KPL_MAGIC.len()..blob.len() - 16]), Some(records));
    }

    #[test]
    fn shard_filter_drops_exactly_the_aggregates_with_a_record_outside(
        records in inputs(),
        a in any::<u128>(),
        b in any::<u128>(),
    ) {
        let range = HashKeyRange { start: a.min(b), end: a.max(b) };
        let blob = encode(&records);
        let (outcome, out) = run(raw(blob), Some(range));
        let outside = all_records_outside(&records, range);
        if outside == 0 {
            prop_assert_eq!(outcome, Deaggregated::Aggregate { user_records: records.len() });
            prop_assert_eq!(out.len(), records.len());
        } else {
            prop_assert_eq!(outcome, Deaggregated::OutsideShard { user_records: records.len(), outside });
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..600), magic in any::<bool>()) {
        let mut data = if magic { KPL_MAGIC.to_vec() } else { Vec::new() };
        data.extend_from_slice(&tail);
        let blob = Bytes::from(data);
        let (outcome, out) = run(raw(blob.clone()), None);
        check_invariants(&blob, outcome, &out)?;
    }

    #[test]
    fn arbitrary_protobuf_with_valid_md5_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_body(&body)?;
    }

    #[test]
    fn mutated_aggregates_never_panic_and_agree_with_prost(
        records in inputs(),
        mutations in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
    ) {
        let blob = encode(&records);
        let body = mutate(blob[KPL_MAGIC.len()..blob.len() - 16].to_vec(), &mutations);
        check_body(&body)?;
    }
}

fn all_records_outside(records: &[Input], range: HashKeyRange) -> usize {
    records
        .iter()
        .filter(|(pk, ehk, _)| {
            let hash = match ehk {
                Some(ehk) => ehk.parse::<u128>().unwrap_or_default(),
                None => partition_key_hash_key(pk),
            };
            !range.contains(hash)
        })
        .count()
}
