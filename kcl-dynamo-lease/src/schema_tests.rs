use super::*;
use kcl_core::SequenceNumber;

fn full_lease() -> Lease {
    let mut lease = Lease::new_for_stream_shard(
        "123456789012:my-stream:1690000000",
        "shardId-000000000001",
        ExtendedSequenceNumber::with_sub(
            SequenceNumber::parse("49590338271490256608559692538361571095921575989136588898").unwrap(),
            4,
        ),
    );
    lease.lease_owner = Some("worker-a".into());
    lease.lease_counter = 17;
    lease.owner_switches_since_checkpoint = 3;
    lease.pending_checkpoint = Some(ExtendedSequenceNumber::with_sub(SequenceNumber::from_u128(99), 1));
    lease.pending_checkpoint_state = Some(Bytes::from_static(b"state"));
    lease.parent_shard_ids = vec!["shardId-000000000000".into(), "shardId-000000000002".into()];
    lease.child_shard_ids = vec!["shardId-000000000005".into()];
    lease.hash_key_range = HashKeyRange::new(0, u128::MAX);
    lease.checkpoint_owner = Some("worker-b".into());
    lease
}

fn parse(item: &Item) -> Result<Lease, Malformed> {
    match item_to_lease(item)? {
        Parsed::Lease(lease) => Ok(*lease),
        Parsed::NotALease => panic!("expected a lease"),
    }
}

#[test]
fn every_field_round_trips() {
    let lease = full_lease();
    assert_eq!(parse(&lease_to_item(&lease)).unwrap(), lease);
    let single = Lease::new_for_shard("shardId-000000000007", ExtendedSequenceNumber::TrimHorizon);
    assert_eq!(parse(&lease_to_item(&single)).unwrap(), single);
}

#[test]
fn item_has_kcl_attribute_names_and_types() {
    let item = lease_to_item(&full_lease());
    let expect = [
        (LEASE_KEY, "S"),
        (LEASE_OWNER, "S"),
        (LEASE_COUNTER, "N"),
        (OWNER_SWITCHES, "N"),
        (CHECKPOINT, "S"),
        (CHECKPOINT_SUB, "N"),
        (PENDING_CHECKPOINT, "S"),
        (PENDING_CHECKPOINT_SUB, "N"),
        (PENDING_CHECKPOINT_STATE, "B"),
        (PARENT_SHARD_ID, "SS"),
        (CHILD_SHARD_IDS, "SS"),
        (STARTING_HASH_KEY, "S"),
        (ENDING_HASH_KEY, "S"),
        (CHECKPOINT_OWNER, "S"),
        (ENTITY_TYPE, "S"),
        (STREAM_NAME, "S"),
        (SHARD_ID, "S"),
    ];
    assert_eq!(item.len(), expect.len());
    for (name, kind) in expect {
        let value = item.get(name).unwrap_or_else(|| panic!("{name} missing"));
        let actual = match value {
            AttributeValue::S(_) => "S",
            AttributeValue::N(_) => "N",
            AttributeValue::B(_) => "B",
            AttributeValue::Ss(_) => "SS",
            _ => "other",
        };
        assert_eq!(actual, kind, "{name}");
    }
    assert_eq!(item[ENDING_HASH_KEY], s(u128::MAX.to_string()));
}

#[test]
fn optional_attributes_are_omitted_not_empty() {
    let item = lease_to_item(&Lease::new_for_shard("shardId-0", ExtendedSequenceNumber::Latest));
    let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, [CHECKPOINT, CHECKPOINT_SUB, ENTITY_TYPE, LEASE_COUNTER, LEASE_KEY, OWNER_SWITCHES]);
}

#[test]
fn other_entity_types_are_not_leases() {
    let mut item = lease_to_item(&full_lease());
    item.insert(ENTITY_TYPE.into(), s("LEADER"));
    assert!(matches!(item_to_lease(&item), Ok(Parsed::NotALease)));
    item.remove(ENTITY_TYPE);
    assert!(parse(&item).is_ok(), "items from KCL before 3.5 have no entityType");
}

#[test]
fn kcl_create_path_numeric_pending_state_reads_as_no_state() {
    let mut item = lease_to_item(&full_lease());
    item.insert(PENDING_CHECKPOINT_STATE.into(), n(4));
    assert_eq!(parse(&item).unwrap().pending_checkpoint_state, None);
}

/// Damages an item in one way.
type Breaker = fn(&mut Item);

#[test]
fn malformed_items_are_refused_with_a_reason_and_no_values() {
    let good = lease_to_item(&full_lease());
    let cases: Vec<(&str, Breaker)> = vec![
        ("leaseKey", |i: &mut Item| {
            i.remove(LEASE_KEY);
        }),
        ("leaseCounter", |i: &mut Item| {
            i.remove(LEASE_COUNTER);
        }),
        ("leaseCounter", |i: &mut Item| {
            i.insert(LEASE_COUNTER.into(), s("7"));
        }),
        ("leaseCounter", |i: &mut Item| {
            i.insert(LEASE_COUNTER.into(), AttributeValue::N("-1".into()));
        }),
        ("checkpoint", |i: &mut Item| {
            i.insert(CHECKPOINT.into(), s("secret-garbage"));
        }),
        ("checkpoint", |i: &mut Item| {
            i.remove(CHECKPOINT);
        }),
        ("leaseOwner", |i: &mut Item| {
            i.insert(LEASE_OWNER.into(), n(3));
        }),
        ("parentShardId", |i: &mut Item| {
            i.insert(PARENT_SHARD_ID.into(), s("shardId-0"));
        }),
        ("hash key range", |i: &mut Item| {
            i.insert(STARTING_HASH_KEY.into(), s("abc"));
        }),
        ("pendingCheckpointState", |i: &mut Item| {
            i.insert(PENDING_CHECKPOINT_STATE.into(), s("secret-garbage"));
        }),
    ];
    for (what, break_it) in cases {
        let mut item = good.clone();
        break_it(&mut item);
        let err = parse(&item).expect_err(what);
        assert!(err.reason.contains(what), "{what}: {}", err.reason);
        assert!(!err.reason.contains("secret"), "reason must not echo values: {}", err.reason);
        if what != "leaseKey" {
            assert_eq!(err.lease_key.as_deref(), Some("123456789012:my-stream:1690000000:shardId-000000000001"));
        }
    }
}

#[test]
fn multi_stream_shard_id_falls_back_to_the_key() {
    let mut item = lease_to_item(&full_lease());
    item.remove(SHARD_ID);
    assert_eq!(parse(&item).unwrap().shard_id, "shardId-000000000001");
}

#[test]
fn sets_are_deduplicated_and_empty_sets_omitted() {
    assert_eq!(ss(&[]), None);
    assert_eq!(ss(&["b".into(), "a".into(), "b".into()]), Some(AttributeValue::Ss(vec!["a".into(), "b".into()])));
}
