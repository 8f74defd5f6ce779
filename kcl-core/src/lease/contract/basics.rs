//! Creating, reading, round-tripping and deleting leases; writes to leases that do not exist.

use std::sync::Arc;

use super::check::{Ctx, fence, owned, position, race, state, unowned};
use crate::lease::{Lease, LeaseStore};
use crate::types::{ExtendedSequenceNumber, HashKeyRange};

/// `create_lease_if_not_exists` returns `true` for a new key, then `false`, and the second call changes nothing
/// even when it carries different content.
pub async fn create_if_not_exists<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("create_if_not_exists");
    let first = owned("shardId-000000000001", "worker-a", 5);
    ctx.create(&**store, &first).await;
    ctx.same_lease("get_lease after create", &first, &ctx.lease(&**store, &first.lease_key).await);

    let mut second = owned(&first.lease_key, "worker-b", 99);
    second.checkpoint = ExtendedSequenceNumber::ShardEnd;
    second.child_shard_ids = vec!["shardId-000000000002".to_owned()];
    let op = "create_lease_if_not_exists on an existing key";
    ctx.eq(op, "created", false, ctx.ok(op, store.create_lease_if_not_exists(&second).await));
    ctx.unchanged(&**store, &first, op).await;
}

/// Sixteen tasks create the same key at once: exactly one gets `true`, and its lease is the one stored.
pub async fn concurrent_creates_have_one_winner<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("concurrent_creates_have_one_winner");
    let op = "16 concurrent create_lease_if_not_exists calls for one key";
    let key = "shardId-000000000001";
    let results = race(&ctx, op, store, 16, |store, task| async move {
        store.create_lease_if_not_exists(&owned(key, &format!("worker-{task}"), task as u64)).await
    })
    .await;
    let winners: Vec<usize> =
        results.into_iter().enumerate().filter_map(|(task, r)| ctx.ok(op, r).then_some(task)).collect();
    let [winner] = winners[..] else { ctx.fail(op, format_args!("expected exactly one `true`, got {winners:?}")) };
    ctx.unchanged(&**store, &owned(key, &format!("worker-{winner}"), winner as u64), op).await;
}

/// `get_lease` returns `None` for an absent key (including a prefix of a present one) and the lease when present.
pub async fn get_absent_and_present<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("get_absent_and_present");
    ctx.absent(&**store, "shardId-000000000001", "nothing was created").await;
    let lease = unowned("shardId-0000000000010");
    ctx.create(&**store, &lease).await;
    ctx.same_lease("get_lease of a present lease", &lease, &ctx.lease(&**store, &lease.lease_key).await);
    ctx.absent(&**store, "shardId-000000000001", "creating a key it is a prefix of").await;
    ctx.absent(&**store, "shardId-00000000001", "creating a key it is a prefix of").await;
}

/// Leases that between them set every field to demanding values.
fn round_trip_leases() -> Vec<Lease> {
    let full = Lease {
        lease_key: "shardId-000000000042".to_owned(),
        lease_owner: Some("worker-a".to_owned()),
        lease_counter: 42,
        owner_switches_since_checkpoint: 3,
        checkpoint: position(1, 7),
        pending_checkpoint: Some(position(2, 4_294_967_297)),
        pending_checkpoint_state: Some(state(1)),
        parent_shard_ids: vec!["shardId-000000000007".to_owned(), "shardId-000000000008".to_owned()],
        child_shard_ids: vec!["shardId-000000000050".to_owned(), "shardId-000000000051".to_owned()],
        hash_key_range: Some(HashKeyRange::FULL),
        checkpoint_owner: Some("worker-b".to_owned()),
        stream_identifier: None,
        shard_id: "shardId-000000000042".to_owned(),
    };
    let mut multi_stream =
        Lease::new_for_stream_shard("123456789012:orders:1700000000", "shardId-000000000003", position(3, 0));
    multi_stream.lease_owner = Some("worker-c".to_owned());
    multi_stream.lease_counter = 7;
    multi_stream.pending_checkpoint = Some(position(4, 1));
    multi_stream.parent_shard_ids = vec!["shardId-000000000001".to_owned()];
    multi_stream.hash_key_range = HashKeyRange::new(u128::MAX / 2 + 1, u128::MAX);

    let mut point_range = unowned("shardId-000000000043");
    point_range.hash_key_range = HashKeyRange::new(5, 5);
    point_range.checkpoint = position(0, 0);

    let sentinels = [
        ExtendedSequenceNumber::TrimHorizon,
        ExtendedSequenceNumber::Latest,
        ExtendedSequenceNumber::AtTimestamp(None),
        ExtendedSequenceNumber::ShardEnd,
    ];
    let sentinel_leases = sentinels.into_iter().enumerate().map(|(i, checkpoint)| Lease {
        owner_switches_since_checkpoint: i as u64,
        ..Lease::new_for_shard(format!("shardId-00000000010{i}"), checkpoint)
    });

    let minimal = unowned("shardId-000000000000");
    [full, multi_stream, point_range, minimal].into_iter().chain(sentinel_leases).collect()
}

/// Every `Lease` field comes back from `get_lease` and from listing as it was created: pending checkpoint with
/// binary state, two parents, children, a hash range ending at `u128::MAX`, a multi-stream key, every sentinel,
/// 56-digit sequence numbers with sub-sequence numbers, and absent optional fields staying absent.
pub async fn every_field_round_trips<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("every_field_round_trips");
    let leases = round_trip_leases();
    for lease in &leases {
        ctx.create(&**store, lease).await;
    }
    for lease in &leases {
        ctx.same_lease("get_lease after create", lease, &ctx.lease(&**store, &lease.lease_key).await);
    }
    ctx.same_leases("list_all_leases", &leases, &ctx.ok("list_all_leases", store.list_all_leases().await));
}

/// Every conditional write to a key that does not exist fails with `ConditionFailed` and creates nothing.
pub async fn writes_to_an_absent_lease_fail<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("writes_to_an_absent_lease_fail");
    let other = owned("shardId-000000000001", "worker-a", 1);
    ctx.create(&**store, &other).await;
    let key = "shardId-000000000002";
    let f = fence(key, "worker-a", 1);
    let s = &**store;
    ctx.rejected("renew_lease of an absent lease", s.renew_lease(&f).await);
    ctx.absent(s, key, "renew_lease").await;
    ctx.rejected("take_lease of an absent lease", s.take_lease(key, 0, "worker-a").await);
    ctx.absent(s, key, "take_lease").await;
    ctx.rejected("release_lease of an absent lease", s.release_lease(&f).await);
    ctx.absent(s, key, "release_lease").await;
    ctx.rejected("evict_lease of an absent lease", s.evict_lease(key, "worker-a").await);
    ctx.absent(s, key, "evict_lease").await;
    ctx.rejected("assign_for_handoff of an absent lease", s.assign_for_handoff(&f, "worker-b").await);
    ctx.absent(s, key, "assign_for_handoff").await;
    ctx.rejected("update_checkpoint of an absent lease", s.update_checkpoint(&f, &position(1, 0)).await);
    ctx.absent(s, key, "update_checkpoint").await;
    ctx.rejected("prepare_checkpoint of an absent lease", s.prepare_checkpoint(&f, &position(1, 0), None).await);
    ctx.absent(s, key, "prepare_checkpoint").await;
    ctx.rejected("update_child_shards of an absent lease", s.update_child_shards(&f, &["c".to_owned()]).await);
    ctx.absent(s, key, "update_child_shards").await;
    ctx.unchanged(s, &other, "writes to another key").await;
}

/// `delete_lease` removes a present lease (and only it), succeeds for an absent one, and frees the key for a new
/// `create_lease_if_not_exists`.
pub async fn delete_present_and_absent<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("delete_present_and_absent");
    let s = &**store;
    let doomed = owned("shardId-000000000001", "worker-a", 4);
    let kept = owned("shardId-000000000002", "worker-a", 4);
    ctx.create(s, &doomed).await;
    ctx.create(s, &kept).await;
    ctx.ok("delete_lease of a present lease", s.delete_lease(&doomed.lease_key).await);
    ctx.absent(s, &doomed.lease_key, "delete_lease").await;
    ctx.unchanged(s, &kept, "deleting another lease").await;
    let listed = ctx.ok("list_all_leases after delete_lease", s.list_all_leases().await);
    let keys: Vec<&str> = listed.iter().map(|l| l.lease_key.as_str()).collect();
    ctx.eq("list_all_leases after delete_lease", "keys", vec![kept.lease_key.as_str()], keys);

    ctx.ok("delete_lease of a deleted lease", s.delete_lease(&doomed.lease_key).await);
    ctx.ok("delete_lease of a key that never existed", s.delete_lease("shardId-000000000099").await);
    ctx.absent(s, "shardId-000000000099", "delete_lease of an absent key").await;

    let reborn = unowned(&doomed.lease_key);
    ctx.create(s, &reborn).await;
    ctx.unchanged(s, &reborn, "create_lease_if_not_exists after delete_lease").await;
}
