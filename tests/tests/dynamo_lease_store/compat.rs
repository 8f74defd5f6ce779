//! Java KCL compatibility: items shaped exactly as Java KCL (2.x, 3.x, multi-stream) writes them are read
//! faithfully; items this store writes use KCL's attribute names and types; attributes it does not model survive
//! every write; items it cannot read are skipped with a warning that never shows their contents.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use kcl_core::lease::{Lease, LeaseStore};
use kcl_core::{ExtendedSequenceNumber, HashKeyRange, SequenceNumber};

use crate::common::*;

const SEQ: &str = "49590338271490256608559692538361571095921575989136588898";
const PENDING: &str = "49590338271490256608559692538361571095921575989136599999";
const HALF: &str = "170141183460469231731687303715884105727";
const MAX: &str = "340282366920938463463374607431768211455";
const STREAM: &str = "123456789012:my-stream:1690000000";
const MULTI_KEY: &str = "123456789012:my-stream:1690000000:shardId-000000000001";

fn blob(bytes: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(bytes.to_vec()))
}

fn java_items() -> Vec<Item> {
    vec![
        // KCL 2.x, after a merge: two parents, a KPL sub-sequence checkpoint, a prepared checkpoint with state.
        item(&[
            ("leaseKey", s("shardId-000000000003")),
            ("leaseOwner", s("worker-a")),
            ("leaseCounter", n("42")),
            ("ownerSwitchesSinceCheckpoint", n("2")),
            ("checkpoint", s(SEQ)),
            ("checkpointSubSequenceNumber", n("7")),
            ("parentShardId", ss(&["shardId-000000000000", "shardId-000000000001"])),
            ("pendingCheckpoint", s(PENDING)),
            ("pendingCheckpointSubSequenceNumber", n("2")),
            ("pendingCheckpointState", blob(b"app-state")),
            ("startingHashKey", s("0")),
            ("endingHashKey", s(HALF)),
        ]),
        // A finished parent: SHARD_END and its child.
        item(&[
            ("leaseKey", s("shardId-000000000000")),
            ("leaseCounter", n("100")),
            ("ownerSwitchesSinceCheckpoint", n("0")),
            ("checkpoint", s("SHARD_END")),
            ("checkpointSubSequenceNumber", n("0")),
            ("childShardIds", ss(&["shardId-000000000003"])),
            ("startingHashKey", s("0")),
            ("endingHashKey", s(HALF)),
        ]),
        item(&[
            ("leaseKey", s("shardId-000000000004")),
            ("leaseCounter", n("0")),
            ("ownerSwitchesSinceCheckpoint", n("0")),
            ("checkpoint", s("AT_TIMESTAMP")),
            ("checkpointSubSequenceNumber", n("0")),
        ]),
        item(&[
            ("leaseKey", s("shardId-000000000006")),
            ("leaseCounter", n("1")),
            ("ownerSwitchesSinceCheckpoint", n("0")),
            ("checkpoint", s("LATEST")),
            ("checkpointSubSequenceNumber", n("0")),
        ]),
        // Multi-stream (DynamoDBMultiStreamLeaseSerializer).
        item(&[
            ("leaseKey", s(MULTI_KEY)),
            ("leaseOwner", s("worker-a")),
            ("leaseCounter", n("3")),
            ("ownerSwitchesSinceCheckpoint", n("1")),
            ("checkpoint", s("TRIM_HORIZON")),
            ("checkpointSubSequenceNumber", n("0")),
            ("streamName", s(STREAM)),
            ("shardId", s("shardId-000000000001")),
            ("startingHashKey", s("0")),
            ("endingHashKey", s(MAX)),
        ]),
        // KCL 3.x, mid-handoff, with throughput and entity type.
        item(&[
            ("leaseKey", s("shardId-000000000005")),
            ("leaseOwner", s("worker-b")),
            ("checkpointOwner", s("worker-a")),
            ("leaseCounter", n("9")),
            ("ownerSwitchesSinceCheckpoint", n("1")),
            ("checkpoint", s(SEQ)),
            ("checkpointSubSequenceNumber", n("0")),
            ("throughputKBps", n("12.5")),
            ("entityType", s("LEASE")),
        ]),
        // KCL 3.5 keeps other entities in the lease table: not leases.
        item(&[("leaseKey", s("leader-lock")), ("entityType", s("LEADER")), ("leaseCounter", n("5"))]),
    ]
}

fn expected_leases() -> Vec<Lease> {
    let seq = SequenceNumber::parse(SEQ).unwrap();
    let half: u128 = HALF.parse().unwrap();

    let mut merged = Lease::new_for_shard("shardId-000000000003", ExtendedSequenceNumber::with_sub(seq.clone(), 7));
    merged.lease_owner = Some("worker-a".into());
    merged.lease_counter = 42;
    merged.owner_switches_since_checkpoint = 2;
    merged.parent_shard_ids = vec!["shardId-000000000000".into(), "shardId-000000000001".into()];
    merged.pending_checkpoint = Some(ExtendedSequenceNumber::with_sub(SequenceNumber::parse(PENDING).unwrap(), 2));
    merged.pending_checkpoint_state = Some(Bytes::from_static(b"app-state"));
    merged.hash_key_range = HashKeyRange::new(0, half);

    let mut parent = Lease::new_for_shard("shardId-000000000000", ExtendedSequenceNumber::ShardEnd);
    parent.lease_counter = 100;
    parent.child_shard_ids = vec!["shardId-000000000003".into()];
    parent.hash_key_range = HashKeyRange::new(0, half);

    let at_timestamp = Lease::new_for_shard("shardId-000000000004", ExtendedSequenceNumber::AtTimestamp(None));
    let mut latest = Lease::new_for_shard("shardId-000000000006", ExtendedSequenceNumber::Latest);
    latest.lease_counter = 1;

    let mut multi = Lease::new_for_stream_shard(STREAM, "shardId-000000000001", ExtendedSequenceNumber::TrimHorizon);
    multi.lease_owner = Some("worker-a".into());
    multi.lease_counter = 3;
    multi.owner_switches_since_checkpoint = 1;
    multi.hash_key_range = Some(HashKeyRange::FULL);

    let mut handoff = Lease::new_for_shard("shardId-000000000005", ExtendedSequenceNumber::sequence(seq));
    handoff.lease_owner = Some("worker-b".into());
    handoff.checkpoint_owner = Some("worker-a".into());
    handoff.lease_counter = 9;
    handoff.owner_switches_since_checkpoint = 1;

    let mut all = vec![merged, parent, at_timestamp, latest, multi, handoff];
    all.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    all
}

#[tokio::test]
async fn items_written_by_java_kcl_are_read_faithfully() {
    let (store, client, table) = store("ddb-java-read").await;
    for java_item in java_items() {
        put_raw(&client, &table, java_item).await;
    }
    let expected = expected_leases();
    let mut listed = store.list_all_leases().await.unwrap();
    listed.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    assert_eq!(listed, expected, "every lease, and only leases");
    for lease in &expected {
        assert_eq!(&get(&store, &lease.lease_key).await, lease);
    }
    assert_eq!(store.get_lease("leader-lock").await.unwrap(), None, "other entity types are not leases");
    let multi = get(&store, MULTI_KEY).await;
    assert_eq!((multi.stream_identifier.as_deref(), multi.shard_id.as_str()), (Some(STREAM), "shardId-000000000001"));
    let by_owner: Vec<_> =
        store.list_leases_by_owner("worker-a").await.unwrap().into_iter().map(|l| l.lease_key).collect();
    assert_eq!(by_owner, [MULTI_KEY, "shardId-000000000003"]);
}

#[tokio::test]
async fn items_written_by_the_store_have_kcl_names_and_types() {
    let (store, client, table) = store("ddb-java-write").await;
    let mut full = expected_leases().into_iter().find(|l| l.lease_key == MULTI_KEY).unwrap();
    full.checkpoint = ExtendedSequenceNumber::with_sub(SequenceNumber::parse(SEQ).unwrap(), 7);
    full.pending_checkpoint = Some(ExtendedSequenceNumber::ShardEnd);
    full.pending_checkpoint_state = Some(Bytes::from_static(b"state"));
    full.parent_shard_ids = vec!["shardId-000000000000".into()];
    full.child_shard_ids = vec!["shardId-000000000008".into(), "shardId-000000000009".into()];
    full.checkpoint_owner = Some("worker-z".into());
    create(&store, &full).await;
    let raw = get_raw(&client, &table, MULTI_KEY).await;
    let expected_shape = [
        ("checkpoint", "S"),
        ("checkpointOwner", "S"),
        ("checkpointSubSequenceNumber", "N"),
        ("childShardIds", "SS"),
        ("endingHashKey", "S"),
        ("entityType", "S"),
        ("leaseCounter", "N"),
        ("leaseKey", "S"),
        ("leaseOwner", "S"),
        ("ownerSwitchesSinceCheckpoint", "N"),
        ("parentShardId", "SS"),
        ("pendingCheckpoint", "S"),
        ("pendingCheckpointState", "B"),
        ("pendingCheckpointSubSequenceNumber", "N"),
        ("shardId", "S"),
        ("startingHashKey", "S"),
        ("streamName", "S"),
    ];
    let actual = shape(&raw);
    let actual: Vec<(&str, &str)> = actual.iter().map(|(name, kind)| (name.as_str(), *kind)).collect();
    assert_eq!(actual, expected_shape);
    assert_eq!(raw["checkpoint"], s(SEQ));
    assert_eq!(raw["checkpointSubSequenceNumber"], n("7"));
    assert_eq!(raw["pendingCheckpoint"], s("SHARD_END"));
    assert_eq!(raw["endingHashKey"], s(MAX));
    assert_eq!(raw["entityType"], s("LEASE"));
    assert_eq!(raw["streamName"], s(STREAM));

    // A plain new lease: exactly the attributes Java KCL always writes.
    create(&store, &lease("shardId-000000000000")).await;
    let minimal = shape(&get_raw(&client, &table, "shardId-000000000000").await);
    let names: Vec<&str> = minimal.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "checkpoint",
            "checkpointSubSequenceNumber",
            "entityType",
            "leaseCounter",
            "leaseKey",
            "ownerSwitchesSinceCheckpoint"
        ]
    );
}

#[tokio::test]
async fn every_write_preserves_attributes_the_store_does_not_model() {
    let (store, client, table) = store("ddb-java-preserve").await;
    let mut kcl3 = java_items().into_iter().find(|i| i["leaseKey"] == s("shardId-000000000005")).unwrap();
    kcl3.insert("someFutureAttribute".into(), AttributeValue::M([("x".to_string(), n("1"))].into()));
    put_raw(&client, &table, kcl3).await;
    let key = "shardId-000000000005";
    let check = |step: &'static str| {
        let client = client.clone();
        let table = table.clone();
        async move {
            let raw = get_raw(&client, &table, key).await;
            assert_eq!(raw.get("throughputKBps"), Some(&n("12.5")), "after {step}");
            assert_eq!(raw.get("entityType"), Some(&s("LEASE")), "after {step}");
            assert!(raw.contains_key("someFutureAttribute"), "after {step}");
            raw
        }
    };
    // The item is mid-handoff (checkpointOwner = worker-a): nobody renews until the final checkpoint.
    assert!(store.renew_lease(&fence(key, "worker-b", 9)).await.is_err(), "no renewal during a handoff");
    store.prepare_checkpoint(&fence(key, "worker-a", 9), &seq(5), Some(Bytes::from_static(b"s"))).await.unwrap();
    let raw = check("prepare").await;
    assert_eq!(raw["pendingCheckpointState"], blob(b"s"));
    assert_eq!(raw["pendingCheckpointSubSequenceNumber"], n("0"));
    store.update_checkpoint(&fence(key, "worker-a", 10), &seq(6)).await.unwrap();
    let raw = check("checkpoint").await;
    assert_eq!((raw["checkpoint"].clone(), raw["ownerSwitchesSinceCheckpoint"].clone()), (s("6"), n("0")));
    assert!(!raw.contains_key("pendingCheckpoint") && !raw.contains_key("pendingCheckpointState"));
    assert!(!raw.contains_key("checkpointOwner"), "the final checkpoint of a handoff clears checkpointOwner");
    assert_eq!(store.renew_lease(&fence(key, "worker-b", 11)).await.unwrap(), 12);
    check("renew").await;
    store.update_child_shards(&fence(key, "worker-b", 12), &["shardId-000000000007".into()]).await.unwrap();
    assert_eq!(check("child shards").await["childShardIds"], ss(&["shardId-000000000007"]));
    store.assign_for_handoff(&fence(key, "worker-b", 13), "worker-c").await.unwrap();
    assert_eq!(check("handoff").await["checkpointOwner"], s("worker-b"));
    store.take_lease(key, 14, "worker-d").await.unwrap();
    check("take").await;
    store.release_lease(&fence(key, "worker-d", 15)).await.unwrap();
    let raw = check("release").await;
    assert!(!raw.contains_key("leaseOwner"), "unowned means no leaseOwner attribute, as in KCL");
    store.take_lease(key, 16, "worker-e").await.unwrap();
    store.evict_lease(key, "worker-e").await.unwrap();
    let raw = check("evict").await;
    assert_eq!(raw["leaseCounter"], n("18"));
}

#[tokio::test]
async fn malformed_items_are_listed_apart_with_reasons_that_hide_their_contents() {
    // Current-thread test runtime: the thread-local subscriber sees everything the store logs.
    let (captured, _guard) = kcl_tests::logs::CapturedLogs::install();

    // No owner index: a `leaseOwner` of the wrong type could not even be written to an indexed table.
    let (builder, client, table) = builder("ddb-malformed").await;
    let store = builder.create_owner_index(false).build().await.unwrap();
    let base = |key: &str| {
        item(&[
            ("leaseKey", s(key)),
            ("leaseCounter", n("1")),
            ("checkpoint", s("TRIM_HORIZON")),
            ("pendingCheckpointState", blob(b"SECRET-STATE-BYTES")),
        ])
    };
    let broken: Vec<(&str, &str, AttributeValue)> = vec![
        ("bad-counter-type", "leaseCounter", s("SECRET-7")),
        ("bad-checkpoint", "checkpoint", s("SECRET-not-a-sequence")),
        ("bad-owner", "leaseOwner", n("12345")),
        ("bad-parents", "parentShardId", s("SECRET-shard")),
        ("bad-hash", "startingHashKey", s("SECRET-hash")),
        ("bad-switches", "ownerSwitchesSinceCheckpoint", s("SECRET")),
    ];
    for (key, attribute, value) in &broken {
        let mut bad = base(key);
        bad.insert(attribute.to_string(), value.clone());
        if *attribute == "startingHashKey" {
            // A range needs both ends (with one, KCL and this store ignore it): make both present, one unparsable.
            bad.insert("endingHashKey".into(), s("100"));
        }
        put_raw(&client, &table, bad).await;
    }
    let mut no_counter = base("no-counter");
    no_counter.remove("leaseCounter");
    put_raw(&client, &table, no_counter).await;
    put_raw(&client, &table, base("good-1")).await;
    put_raw(&client, &table, base("good-2")).await;

    let mut listed: Vec<_> = store.list_all_leases().await.unwrap().into_iter().map(|l| l.lease_key).collect();
    listed.sort();
    assert_eq!(listed, ["good-1", "good-2"]);
    let (mut paged, mut reported) = (0, 0);
    let mut page = None;
    loop {
        let result = store.list_leases(page, 2).await.expect("paging past malformed items is not an error");
        paged += result.leases.len();
        reported += result.unreadable.len();
        match result.next_page {
            Some(next) => page = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, 2);
    assert_eq!(reported, 7, "every page reports its unreadable items");
    let everything = store.list_everything().await.unwrap();
    let mut unreadable: Vec<_> =
        everything.unreadable.iter().map(|u| (u.lease_key.as_str(), u.reason.as_str())).collect();
    unreadable.sort();
    let mut expected: Vec<_> = broken.iter().map(|(key, attribute, _)| (*key, *attribute)).collect();
    expected.push(("no-counter", "leaseCounter"));
    expected.sort();
    assert_eq!(unreadable.len(), expected.len(), "{unreadable:?}");
    for ((key, reason), (expected_key, attribute)) in unreadable.iter().zip(&expected) {
        assert_eq!(key, expected_key);
        let names_it = reason.contains(attribute) || (*attribute == "startingHashKey" && reason.contains("hash key"));
        assert!(names_it, "the reason for {key} names what is wrong: {reason}");
        assert!(!reason.contains("SECRET"), "reasons never show item contents: {reason}");
    }
    assert_eq!(store.get_lease("bad-checkpoint").await.unwrap(), None);
    assert!(store.list_leases_by_owner("12345").await.unwrap().is_empty());

    let logs = captured.text();
    assert!(logs.contains("bad-checkpoint"), "reading an unreadable item by key warns, naming it:\n{logs}");
    assert!(logs.contains("WARN"), "{logs}");
    assert!(!logs.contains("SECRET"), "warnings never show item contents:\n{logs}");
    assert!(!logs.contains("good-1"), "readable items are not warned about");
}
