//! Each write's condition holds and fails as the `LeaseStore` contract says, and the counter moves by exactly one.

use std::sync::Arc;

use bytes::Bytes;
use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{LeaseStore, LeaseStoreError};

use crate::common::*;

#[tokio::test]
async fn create_get_and_create_again() {
    let (store, _, _) = store("ddb-create").await;
    assert_eq!(store.get_lease("shardId-0").await.unwrap(), None);
    let mut lease = owned("shardId-0", "worker-a", 5);
    lease.hash_key_range = kcl_core::HashKeyRange::new(0, u128::MAX);
    create(&store, &lease).await;
    assert_eq!(get(&store, "shardId-0").await, lease, "stored counter is the lease's own");
    let mut other = lease.clone();
    other.lease_owner = Some("worker-b".into());
    assert!(!store.create_lease_if_not_exists(&other).await.unwrap(), "an existing lease is not overwritten");
    assert_eq!(get(&store, "shardId-0").await, lease);
}

#[tokio::test]
async fn renew_only_by_owner_at_counter() {
    let (store, _, _) = store("ddb-renew").await;
    create(&store, &owned("s", "a", 3)).await;
    assert_eq!(store.renew_lease(&fence("s", "a", 3)).await.unwrap(), 4);
    assert_condition_failed(store.renew_lease(&fence("s", "a", 3)).await); // stale counter
    assert_condition_failed(store.renew_lease(&fence("s", "b", 4)).await); // not the owner
    assert_condition_failed(store.renew_lease(&fence("absent", "a", 0)).await);
    assert_eq!(store.renew_lease(&fence("s", "a", 4)).await.unwrap(), 5);
    assert_eq!(get(&store, "s").await.lease_counter, 5);
    assert_eq!(store.get_lease("absent").await.unwrap(), None, "a failed renew creates nothing");
}

#[tokio::test]
async fn take_counts_owner_switches_and_clears_checkpoint_owner() {
    let (store, _, _) = store("ddb-take").await;
    create(&store, &lease("s")).await;
    assert_condition_failed(store.take_lease("s", 7, "a").await); // stale counter
    assert_condition_failed(store.take_lease("absent", 0, "a").await);
    assert_eq!(store.get_lease("absent").await.unwrap(), None, "take never creates");

    let taken = store.take_lease("s", 0, "a").await.unwrap();
    assert_eq!((taken.lease_owner.as_deref(), taken.lease_counter), (Some("a"), 1));
    assert_eq!(taken.owner_switches_since_checkpoint, 1, "unowned -> a is an owner change");
    assert_eq!(taken, get(&store, "s").await, "take returns the lease as stored");

    // A handoff sets checkpoint_owner; a take clears it.
    store.assign_for_handoff(&fence("s", "a", 1), "b").await.unwrap();
    let before = store.request_counts();
    let stolen = store.take_lease("s", 2, "c").await.unwrap();
    let after = store.request_counts();
    assert_eq!((after.reads - before.reads, after.writes - before.writes), (0, 1), "a steal is one write");
    assert_eq!((stolen.lease_owner.as_deref(), stolen.lease_counter), (Some("c"), 3));
    assert_eq!(stolen.owner_switches_since_checkpoint, 2);
    assert_eq!(stolen.checkpoint_owner, None);

    // Re-taking one's own lease (e.g. after a restart) is not a switch.
    let before = store.request_counts();
    let again = store.take_lease("s", 3, "c").await.unwrap();
    let after = store.request_counts();
    // The first attempt fails on "owner differs"; DynamoDB returns the item with the failure, so no read is needed.
    assert_eq!((after.reads - before.reads, after.writes - before.writes), (0, 2));
    assert_eq!((again.lease_counter, again.owner_switches_since_checkpoint), (4, 2));
    assert_condition_failed(store.take_lease("s", 3, "c").await);
}

#[tokio::test]
async fn concurrent_takes_have_exactly_one_winner() {
    let (store, _, _) = store("ddb-race").await;
    let store = Arc::new(store);
    create(&store, &owned("s", "dead-worker", 41)).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { (i, store.take_lease("s", 41, &format!("worker-{i}")).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        match result {
            Ok(lease) => winners.push((i, lease)),
            Err(err) => assert!(err.is_condition_failed(), "loser {i} got {err:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one take wins");
    let (i, won) = &winners[0];
    let stored = get(&store, "s").await;
    assert_eq!(stored.lease_owner, Some(format!("worker-{i}")));
    assert_eq!((stored.lease_counter, stored.owner_switches_since_checkpoint), (42, 1));
    assert_eq!(&stored, won);
}

#[tokio::test]
async fn release_then_take() {
    let (store, _, _) = store("ddb-release").await;
    create(&store, &owned("s", "a", 2)).await;
    assert_condition_failed(store.release_lease(&fence("s", "b", 2)).await);
    assert_condition_failed(store.release_lease(&fence("s", "a", 1)).await);
    assert_eq!(store.release_lease(&fence("s", "a", 2)).await.unwrap(), 3);
    let released = get(&store, "s").await;
    assert_eq!((released.lease_owner, released.checkpoint_owner, released.lease_counter), (None, None, 3));
    assert_condition_failed(store.renew_lease(&fence("s", "a", 3)).await);
    let taken = store.take_lease("s", 3, "b").await.unwrap();
    assert_eq!((taken.lease_owner.as_deref(), taken.lease_counter), (Some("b"), 4));
}

#[tokio::test]
async fn evict_needs_only_the_owner() {
    let (store, _, _) = store("ddb-evict").await;
    create(&store, &owned("s", "a", 9)).await;
    assert_condition_failed(store.evict_lease("s", "b").await);
    assert_condition_failed(store.evict_lease("absent", "a").await);
    assert_eq!(store.evict_lease("s", "a").await.unwrap(), 10, "any counter");
    assert_eq!(get(&store, "s").await.lease_owner, None);
    assert_condition_failed(store.evict_lease("s", "a").await); // no owner any more
    assert_eq!(store.get_lease("absent").await.unwrap(), None);
}

#[tokio::test]
async fn checkpoint_needs_counter_and_right_and_resets_state() {
    let (store, _, _) = store("ddb-checkpoint").await;
    let mut lease = owned("s", "a", 1);
    lease.owner_switches_since_checkpoint = 4;
    create(&store, &lease).await;
    assert_eq!(
        store.prepare_checkpoint(&fence("s", "a", 1), &seq(50), Some(Bytes::from_static(b"st"))).await.unwrap(),
        2
    );
    let prepared = get(&store, "s").await;
    assert_eq!(prepared.pending_checkpoint, Some(seq(50)));
    assert_eq!(prepared.pending_checkpoint_state.as_deref(), Some(&b"st"[..]));

    assert_condition_failed(store.update_checkpoint(&fence("s", "a", 1), &seq(60)).await); // stale counter
    assert_condition_failed(store.update_checkpoint(&fence("s", "b", 2), &seq(60)).await); // not the owner
    assert_condition_failed(store.prepare_checkpoint(&fence("s", "a", 1), &seq(60), None).await);
    assert_eq!(get(&store, "s").await, prepared, "failed writes change nothing");

    assert_eq!(store.update_checkpoint(&fence("s", "a", 2), &seq(60)).await.unwrap(), 3);
    let done = get(&store, "s").await;
    assert_eq!(done.checkpoint, seq(60));
    assert_eq!((done.pending_checkpoint, done.pending_checkpoint_state), (None, None));
    assert_eq!(done.owner_switches_since_checkpoint, 0);
    assert_eq!(done.lease_owner.as_deref(), Some("a"));

    // Preparing without state removes earlier state; sentinels and sub-sequence numbers are kept exactly.
    store.prepare_checkpoint(&fence("s", "a", 3), &seq(70), Some(Bytes::from_static(b"x"))).await.unwrap();
    let sub = ExtendedSequenceNumber::with_sub(kcl_core::SequenceNumber::from_u128(80), 3);
    assert_eq!(store.prepare_checkpoint(&fence("s", "a", 4), &sub, None).await.unwrap(), 5);
    let prepared = get(&store, "s").await;
    assert_eq!((prepared.pending_checkpoint, prepared.pending_checkpoint_state), (Some(sub.clone()), None));
    assert_eq!(store.update_checkpoint(&fence("s", "a", 5), &ExtendedSequenceNumber::ShardEnd).await.unwrap(), 6);
    assert_eq!(get(&store, "s").await.checkpoint, ExtendedSequenceNumber::ShardEnd);
}

#[tokio::test]
async fn child_shards_need_owner_and_counter() {
    let (store, _, _) = store("ddb-children").await;
    create(&store, &owned("s", "a", 0)).await;
    let children = vec!["shardId-2".to_string(), "shardId-1".to_string()];
    assert_condition_failed(store.update_child_shards(&fence("s", "b", 0), &children).await);
    assert_condition_failed(store.update_child_shards(&fence("s", "a", 1), &children).await);
    assert_eq!(store.update_child_shards(&fence("s", "a", 0), &children).await.unwrap(), 1);
    assert_eq!(get(&store, "s").await.child_shard_ids, ["shardId-1", "shardId-2"], "a set, read back sorted");
    assert_eq!(store.update_child_shards(&fence("s", "a", 1), &[]).await.unwrap(), 2);
    assert!(get(&store, "s").await.child_shard_ids.is_empty());
}

#[tokio::test]
async fn delete_is_idempotent() {
    let (store, _, _) = store("ddb-delete").await;
    create(&store, &owned("s", "a", 0)).await;
    store.delete_lease("s").await.unwrap();
    assert_eq!(store.get_lease("s").await.unwrap(), None);
    store.delete_lease("s").await.unwrap();
    assert!(store.create_lease_if_not_exists(&lease("s")).await.unwrap(), "a deleted key can be created again");
}

#[tokio::test]
async fn heartbeats_are_conditional_and_separate_from_leases() {
    let (store, client, table) = store("ddb-heartbeat").await;
    assert_eq!(store.heartbeat_table_name(), Some(format!("{table}-WorkerHeartbeats").as_str()));
    assert_eq!(store.renew_heartbeat("w1", None).await.unwrap(), 1);
    assert_condition_failed(store.renew_heartbeat("w1", None).await); // exists already
    assert_condition_failed(store.renew_heartbeat("w1", Some(7)).await);
    assert_condition_failed(store.renew_heartbeat("w2", Some(0)).await); // absent
    assert_eq!(store.renew_heartbeat("w1", Some(1)).await.unwrap(), 2);
    assert_eq!(store.renew_heartbeat("w2", None).await.unwrap(), 1);
    let listed = store.list_heartbeats().await.unwrap();
    let listed: Vec<_> = listed.iter().map(|h| (h.worker_id.as_str(), h.counter)).collect();
    assert_eq!(listed, [("w1", 2), ("w2", 1)]);
    assert!(store.list_all_leases().await.unwrap().is_empty(), "heartbeats are not in the lease table");
    let raw = client.scan().table_name(&table).send().await.unwrap();
    assert_eq!(raw.count(), 0);
    store.delete_heartbeat("w1").await.unwrap();
    store.delete_heartbeat("w1").await.unwrap();
    assert_eq!(store.list_heartbeats().await.unwrap().len(), 1);

    // A store without heartbeats refuses clearly.
    let without = kcl_dynamo_lease::DynamoLeaseStore::builder(client, table).build().await.unwrap();
    assert_eq!(without.heartbeat_table_name(), None);
    match without.renew_heartbeat("w1", None).await {
        Err(LeaseStoreError::Fatal { message, .. }) => {
            assert!(message.contains("worker_heartbeats(true)"), "{message}")
        }
        other => panic!("expected Fatal, got {other:?}"),
    }
}

#[tokio::test]
async fn request_counts_follow_dynamodb_requests() {
    let (store, _, _) = store("ddb-counts").await;
    let before = store.request_counts();
    assert_eq!((before.reads, before.writes), (0, 0), "building is table management, not reads or writes");
    create(&store, &owned("s", "a", 0)).await;
    store.renew_lease(&fence("s", "a", 0)).await.unwrap();
    assert_condition_failed(store.renew_lease(&fence("s", "a", 0)).await);
    store.get_lease("s").await.unwrap();
    store.list_leases(None, 10).await.unwrap();
    let after = store.request_counts();
    assert_eq!((after.reads, after.writes), (2, 3), "a failed conditional write is a write too");
}

#[tokio::test]
async fn a_deleted_table_is_a_fatal_error() {
    let (store, client, table) = store("ddb-gone").await;
    client.delete_table().table_name(&table).send().await.unwrap();
    for result in [
        store.get_lease("s").await.map(|_| ()),
        store.renew_lease(&fence("s", "a", 0)).await.map(|_| ()),
        store.list_leases(None, 10).await.map(|_| ()),
    ] {
        match result {
            Err(LeaseStoreError::Fatal { message, .. }) => assert!(message.contains("ResourceNotFound"), "{message}"),
            other => panic!("expected Fatal, got {other:?}"),
        }
    }
}
