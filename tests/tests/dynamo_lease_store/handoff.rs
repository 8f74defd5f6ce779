//! Graceful handoff (checkpoint rights move with `checkpointOwner`) and listing one owner's leases.

use kcl_core::lease::LeaseStore;

use crate::common::*;

#[tokio::test]
async fn handoff_moves_ownership_but_keeps_the_checkpoint_right_with_the_old_owner() {
    let (store, _, _) = store("ddb-handoff").await;
    create(&store, &owned("s", "a", 5)).await;
    assert_condition_failed(store.assign_for_handoff(&fence("s", "a", 4), "b").await); // stale counter
    assert_condition_failed(store.assign_for_handoff(&fence("s", "c", 5), "b").await); // not the owner
    assert_eq!(store.assign_for_handoff(&fence("s", "a", 5), "b").await.unwrap(), 6);
    let handed = get(&store, "s").await;
    assert_eq!(handed.lease_owner.as_deref(), Some("b"));
    assert_eq!(handed.checkpoint_owner.as_deref(), Some("a"));
    assert_eq!(handed.checkpointing_owner(), Some("a"));

    // The old owner can no longer renew; only it may checkpoint, the new owner may not yet.
    assert_condition_failed(store.renew_lease(&fence("s", "a", 6)).await);
    assert_condition_failed(store.update_checkpoint(&fence("s", "b", 6), &seq(10)).await);
    assert_condition_failed(store.prepare_checkpoint(&fence("s", "b", 6), &seq(10), None).await);
    assert_condition_failed(store.update_checkpoint(&fence("s", "a", 5), &seq(10)).await); // stale counter
    assert_eq!(store.prepare_checkpoint(&fence("s", "a", 6), &seq(9), None).await.unwrap(), 7);
    assert_eq!(get(&store, "s").await.checkpoint_owner.as_deref(), Some("a"), "prepare keeps the handoff");

    // The final checkpoint ends the handoff.
    assert_eq!(store.update_checkpoint(&fence("s", "a", 7), &seq(10)).await.unwrap(), 8);
    let done = get(&store, "s").await;
    assert_eq!((done.checkpoint_owner, done.lease_owner.as_deref()), (None, Some("b")));
    assert_eq!(done.checkpoint, seq(10));
    assert_condition_failed(store.update_checkpoint(&fence("s", "a", 8), &seq(11)).await);
    assert_eq!(store.update_checkpoint(&fence("s", "b", 8), &seq(11)).await.unwrap(), 9);
    assert_eq!(store.renew_lease(&fence("s", "b", 9)).await.unwrap(), 10);
}

#[tokio::test]
async fn release_and_evict_end_a_handoff() {
    let (store, _, _) = store("ddb-handoff-end").await;
    create(&store, &owned("r", "a", 0)).await;
    create(&store, &owned("e", "a", 0)).await;
    store.assign_for_handoff(&fence("r", "a", 0), "b").await.unwrap();
    store.assign_for_handoff(&fence("e", "a", 0), "b").await.unwrap();
    assert_eq!(store.release_lease(&fence("r", "b", 1)).await.unwrap(), 2);
    assert_eq!(store.evict_lease("e", "b").await.unwrap(), 2);
    for key in ["r", "e"] {
        let lease = get(&store, key).await;
        assert_eq!((lease.lease_owner, lease.checkpoint_owner), (None, None), "{key}");
    }
}

async fn owners_leases(store: &kcl_dynamo_lease::DynamoLeaseStore, owner: &str) -> Vec<String> {
    let mut keys: Vec<String> =
        store.list_leases_by_owner(owner).await.unwrap().into_iter().map(|l| l.lease_key).collect();
    keys.sort();
    keys
}

async fn check_by_owner(store: &kcl_dynamo_lease::DynamoLeaseStore) {
    for (i, owner) in ["a", "b", "a", "", "a"].iter().enumerate() {
        let key = format!("shardId-{i}");
        let lease = if owner.is_empty() { lease(&key) } else { owned(&key, owner, 0) };
        create(store, &lease).await;
    }
    assert_eq!(owners_leases(store, "a").await, ["shardId-0", "shardId-2", "shardId-4"]);
    assert_eq!(owners_leases(store, "b").await, ["shardId-1"]);
    assert!(owners_leases(store, "nobody").await.is_empty());
    // Ownership changes are reflected (the items are read consistently, whatever the index says).
    store.take_lease("shardId-0", 0, "b").await.unwrap();
    store.release_lease(&fence("shardId-2", "a", 0)).await.unwrap();
    assert_eq!(owners_leases(store, "a").await, ["shardId-4"]);
    assert_eq!(owners_leases(store, "b").await, ["shardId-0", "shardId-1"]);
    let full = store.list_leases_by_owner("b").await.unwrap();
    assert!(full.iter().all(|l| l.lease_owner.as_deref() == Some("b") && l.checkpoint.is_sentinel()));
}

#[tokio::test]
async fn list_by_owner_uses_the_index_when_present() {
    let (store, client, table) = store("ddb-by-owner").await;
    assert!(store.owner_index_active(), "a new table gets the owner index");
    let description = client.describe_table().table_name(&table).send().await.unwrap().table.unwrap();
    let index = &description.global_secondary_indexes()[0];
    assert_eq!(index.index_name(), Some("LeaseOwnerToLeaseKeyIndex"));
    let keys: Vec<_> = index.key_schema().iter().map(|k| (k.attribute_name(), k.key_type().as_str())).collect();
    assert_eq!(keys, [("leaseOwner", "HASH"), ("leaseKey", "RANGE")]);
    assert_eq!(index.projection().and_then(|p| p.projection_type()).map(|p| p.as_str()), Some("KEYS_ONLY"));
    check_by_owner(&store).await;
}

#[tokio::test]
async fn list_by_owner_scans_without_the_index() {
    let (builder, _, _) = builder("ddb-by-owner-scan").await;
    let store = builder.create_owner_index(false).build().await.unwrap();
    assert!(!store.owner_index_active());
    check_by_owner(&store).await;
}
