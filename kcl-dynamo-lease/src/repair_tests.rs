//! The repair decision, case by case: what each kind of unreadable item becomes.

use kcl_core::types::SequenceNumberRange;
use kcl_core::{HashKeyRange, SequenceNumber, Shard};

use super::*;

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.into())
}

fn n(text: &str) -> AttributeValue {
    AttributeValue::N(text.into())
}

fn shard(id: &str, parents: &[&str]) -> Shard {
    Shard {
        shard_id: id.into(),
        parent_shard_ids: parents.iter().map(|p| p.to_string()).collect(),
        hash_key_range: HashKeyRange::parse("0", "100").unwrap(),
        sequence_number_range: SequenceNumberRange { start: SequenceNumber::parse("1").unwrap(), end: None },
    }
}

/// A readable lease item, then `change` applied to it.
fn item(key: &str, change: impl FnOnce(&mut Item)) -> UnreadableItem {
    let mut raw = Item::from([
        ("leaseKey".into(), s(key)),
        ("leaseCounter".into(), n("7")),
        ("leaseOwner".into(), s("worker-a")),
        ("checkpoint".into(), s("49590338271490256608559692538361571095921575989136588898")),
        ("checkpointSubSequenceNumber".into(), n("3")),
        ("ownerSwitchesSinceCheckpoint".into(), n("1")),
        ("startingHashKey".into(), s("0")),
        ("endingHashKey".into(), s("100")),
    ]);
    change(&mut raw);
    let reason = match schema::item_to_lease(&raw) {
        Err(malformed) => malformed.reason,
        Ok(_) => "readable".into(),
    };
    UnreadableItem { lease_key: key.into(), reason, raw }
}

fn rewrite(repair: Repair) -> (Lease, Vec<String>) {
    match repair {
        Repair::Rewrite { lease, changes } => (*lease, changes),
        other => panic!("expected a rewrite, got {other:?}"),
    }
}

#[test]
fn each_bad_field_is_reset_to_a_value_that_skips_no_record() {
    let kept = ExtendedSequenceNumber::parse("49590338271490256608559692538361571095921575989136588898", 3).unwrap();
    let sh = shard("shardId-1", &[]);
    // (what is broken, expected counter, expected checkpoint, attribute the changes must name)
    let cases: Vec<(&str, UnreadableItem, u64, ExtendedSequenceNumber, &str)> = vec![
        (
            "counter not a number",
            item("shardId-1", |i| drop(i.insert("leaseCounter".into(), s("seven")))),
            0,
            kept.clone(),
            "leaseCounter",
        ),
        (
            "checkpoint missing",
            item("shardId-1", |i| drop(i.remove("checkpoint"))),
            8,
            ExtendedSequenceNumber::TrimHorizon,
            "checkpoint",
        ),
        (
            "checkpoint not a sequence number",
            item("shardId-1", |i| drop(i.insert("checkpoint".into(), s("garbage")))),
            8,
            ExtendedSequenceNumber::TrimHorizon,
            "checkpoint",
        ),
        (
            "owner a number",
            item("shardId-1", |i| drop(i.insert("leaseOwner".into(), n("12")))),
            8,
            kept.clone(),
            "leaseOwner",
        ),
        (
            "sub-sequence not a number",
            item("shardId-1", |i| drop(i.insert("checkpointSubSequenceNumber".into(), s("x")))),
            8,
            ExtendedSequenceNumber::parse("49590338271490256608559692538361571095921575989136588898", 0).unwrap(),
            "checkpointSubSequenceNumber",
        ),
    ];
    for (what, bad, counter, checkpoint, named) in cases {
        assert_ne!(bad.reason, "readable", "{what}: the fixture must be unreadable");
        let (lease, changes) = rewrite(plan_repair(&bad, Some(&sh)));
        assert_eq!(lease.lease_counter, counter, "{what}");
        assert_eq!(lease.checkpoint, checkpoint, "{what}");
        assert_eq!(lease.lease_owner, None, "{what}: the owner is cleared");
        assert!(changes.iter().any(|c| c.contains(named)), "{what}: changes name `{named}`: {changes:?}");
        assert!(
            schema::item_to_lease(&schema::lease_to_item(&lease)).is_ok(),
            "{what}: the rewritten item is readable"
        );
    }
}

#[test]
fn parents_and_range_come_from_the_stream_and_a_missing_shard_is_deleted() {
    let bad = item("shardId-5", |i| drop(i.insert("parentShardId".into(), s("not-a-set"))));
    let (lease, changes) = rewrite(plan_repair(&bad, Some(&shard("shardId-5", &["shardId-2", "shardId-1"]))));
    assert_eq!(lease.parent_shard_ids, ["shardId-1", "shardId-2"]);
    assert_eq!(lease.hash_key_range, HashKeyRange::parse("0", "100"));
    assert!(changes.iter().any(|c| c.contains("parentShardId")), "{changes:?}");

    let gone = item("shardId-9", |i| drop(i.remove("checkpoint")));
    assert!(matches!(plan_repair(&gone, None), Repair::Delete { .. }));
}

#[test]
fn shard_and_stream_come_from_the_key_or_attributes() {
    let single = item("shardId-000000000001", |_| {});
    assert_eq!(single.shard_id(), "shardId-000000000001");
    assert_eq!(single.stream_identifier(), None);
    let multi = item("123456789012:orders:1690000000:shardId-000000000002", |_| {});
    assert_eq!(multi.shard_id(), "shardId-000000000002");
    assert_eq!(multi.stream_identifier(), Some("123456789012:orders:1690000000"));
}
