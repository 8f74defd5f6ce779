//! Checkpoints, prepared checkpoints, graceful handoff and child shards: the fenced writes that must never let a
//! worker that lost its lease move the checkpoint.

use std::sync::Arc;

use super::check::{Ctx, busy, fence, owned, position, state, unowned};
use crate::lease::{Lease, LeaseStore};
use crate::types::ExtendedSequenceNumber;

/// A checkpoint (or prepared checkpoint) fenced with a counter the lease has moved past fails, and the stored
/// checkpoint stays where it was: after the holder's own renewal, and after another worker took the lease.
pub async fn checkpoint_rejects_a_stale_counter<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("checkpoint_rejects_a_stale_counter");
    let s = &**store;
    let mut lease = busy("shardId-000000000001", "worker-a", 10);
    ctx.create(s, &lease).await;
    let key = lease.lease_key.clone();
    lease.lease_counter = ctx.ok("renew_lease", s.renew_lease(&fence(&key, "worker-a", 10)).await);

    let op = "update_checkpoint with the counter from before a renewal";
    ctx.rejected(op, s.update_checkpoint(&fence(&key, "worker-a", 10), &position(20, 0)).await);
    ctx.unchanged(s, &lease, op).await;
    let op = "prepare_checkpoint with the counter from before a renewal";
    ctx.rejected(op, s.prepare_checkpoint(&fence(&key, "worker-a", 10), &position(20, 0), Some(state(9))).await);
    ctx.unchanged(s, &lease, op).await;

    // A zombie: worker-a still believes it holds the lease at counter 11, but worker-b took it.
    lease = ctx.ok("take_lease by worker-b", s.take_lease(&key, 11, "worker-b").await);
    let op = "update_checkpoint by the previous holder after a take";
    ctx.rejected(op, s.update_checkpoint(&fence(&key, "worker-a", 11), &position(20, 0)).await);
    ctx.unchanged(s, &lease, op).await;
    let op = "update_checkpoint by the previous holder after a take, with the new counter";
    ctx.rejected(op, s.update_checkpoint(&fence(&key, "worker-a", 12), &position(20, 0)).await);
    ctx.unchanged(s, &lease, op).await;
}

/// A worker that does not hold the lease cannot checkpoint or prepare one, even with the current counter; nor can
/// anyone checkpoint an unowned lease.
pub async fn checkpoint_rejects_a_non_owner<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("checkpoint_rejects_a_non_owner");
    let s = &**store;
    let lease = busy("shardId-000000000001", "worker-a", 10);
    let free = unowned("shardId-000000000002");
    ctx.create(s, &lease).await;
    ctx.create(s, &free).await;
    let not_holder = fence(&lease.lease_key, "worker-b", 10);
    let op = "update_checkpoint by a worker that does not hold the lease";
    ctx.rejected(op, s.update_checkpoint(&not_holder, &position(20, 0)).await);
    ctx.unchanged(s, &lease, op).await;
    let op = "prepare_checkpoint by a worker that does not hold the lease";
    ctx.rejected(op, s.prepare_checkpoint(&not_holder, &position(20, 0), None).await);
    ctx.unchanged(s, &lease, op).await;
    let op = "update_checkpoint of an unowned lease";
    ctx.rejected(op, s.update_checkpoint(&fence(&free.lease_key, "worker-a", 0), &position(20, 0)).await);
    ctx.unchanged(s, &free, op).await;
}

/// A checkpoint sets the checkpoint, clears the prepared checkpoint and its state, resets the owner switches and
/// bumps the counter; `SHARD_END` is a checkpoint like any other.
pub async fn checkpoint_resets_switches_and_pending<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("checkpoint_resets_switches_and_pending");
    let s = &**store;
    let mut lease = busy("shardId-000000000001", "worker-a", 10);
    ctx.create(s, &lease).await;
    let key = lease.lease_key.clone();
    let op = "update_checkpoint by the holder";
    ctx.counter(op, 11, s.update_checkpoint(&fence(&key, "worker-a", 10), &position(12, 3)).await);
    lease.checkpoint = position(12, 3);
    lease.pending_checkpoint = None;
    lease.pending_checkpoint_state = None;
    lease.owner_switches_since_checkpoint = 0;
    lease.lease_counter = 11;
    ctx.unchanged(s, &lease, op).await;

    let op = "update_checkpoint to SHARD_END";
    let shard_end = ExtendedSequenceNumber::ShardEnd;
    ctx.counter(op, 12, s.update_checkpoint(&fence(&key, "worker-a", 11), &shard_end).await);
    lease.checkpoint = shard_end;
    lease.lease_counter = 12;
    ctx.unchanged(s, &lease, op).await;
}

/// Two-phase checkpointing: prepare records the pending checkpoint and its state without moving the checkpoint; a
/// second prepare without state clears the old state; the checkpoint then commits it and clears both.
pub async fn prepare_then_checkpoint<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("prepare_then_checkpoint");
    let s = &**store;
    let mut lease = Lease { checkpoint: position(1, 0), ..owned("shardId-000000000001", "worker-a", 1) };
    ctx.create(s, &lease).await;
    let key = lease.lease_key.clone();

    let op = "prepare_checkpoint with state";
    ctx.counter(op, 2, s.prepare_checkpoint(&fence(&key, "worker-a", 1), &position(5, 2), Some(state(3))).await);
    lease.pending_checkpoint = Some(position(5, 2));
    lease.pending_checkpoint_state = Some(state(3));
    lease.lease_counter = 2;
    ctx.unchanged(s, &lease, op).await;

    let op = "prepare_checkpoint without state over one with state";
    ctx.counter(op, 3, s.prepare_checkpoint(&fence(&key, "worker-a", 2), &position(6, 0), None).await);
    lease.pending_checkpoint = Some(position(6, 0));
    lease.pending_checkpoint_state = None;
    lease.lease_counter = 3;
    ctx.unchanged(s, &lease, op).await;

    let op = "update_checkpoint committing the prepared checkpoint";
    ctx.counter(op, 4, s.update_checkpoint(&fence(&key, "worker-a", 3), &position(6, 0)).await);
    lease.checkpoint = position(6, 0);
    lease.pending_checkpoint = None;
    lease.lease_counter = 4;
    ctx.unchanged(s, &lease, op).await;
}

/// Graceful handoff: the new owner holds the lease but cannot checkpoint; the previous owner (`checkpoint_owner`)
/// checkpoints exactly once with the current counter, which clears `checkpoint_owner`; then the new owner can.
pub async fn handoff_final_checkpoint_by_previous_owner<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("handoff_final_checkpoint_by_previous_owner");
    let s = &**store;
    let mut lease = busy("shardId-000000000001", "worker-a", 10);
    ctx.create(s, &lease).await;
    let key = lease.lease_key.clone();

    let op = "assign_for_handoff from worker-a to worker-b";
    ctx.counter(op, 11, s.assign_for_handoff(&fence(&key, "worker-a", 10), "worker-b").await);
    lease.lease_owner = Some("worker-b".to_owned());
    lease.checkpoint_owner = Some("worker-a".to_owned());
    lease.lease_counter = 11;
    ctx.unchanged(s, &lease, op).await;

    let op = "update_checkpoint by the new owner before the final checkpoint";
    ctx.rejected(op, s.update_checkpoint(&fence(&key, "worker-b", 11), &position(20, 0)).await);
    ctx.unchanged(s, &lease, op).await;
    let op = "prepare_checkpoint by the new owner before the final checkpoint";
    ctx.rejected(op, s.prepare_checkpoint(&fence(&key, "worker-b", 11), &position(20, 0), None).await);
    ctx.unchanged(s, &lease, op).await;
    let op = "update_checkpoint by the previous owner with the counter from before the handoff";
    ctx.rejected(op, s.update_checkpoint(&fence(&key, "worker-a", 10), &position(20, 0)).await);
    ctx.unchanged(s, &lease, op).await;

    let op = "the previous owner's final update_checkpoint";
    ctx.counter(op, 12, s.update_checkpoint(&fence(&key, "worker-a", 11), &position(20, 0)).await);
    lease.checkpoint = position(20, 0);
    lease.pending_checkpoint = None;
    lease.pending_checkpoint_state = None;
    lease.owner_switches_since_checkpoint = 0;
    lease.checkpoint_owner = None;
    lease.lease_counter = 12;
    ctx.unchanged(s, &lease, op).await;

    let op = "a second update_checkpoint by the previous owner";
    ctx.rejected(op, s.update_checkpoint(&fence(&key, "worker-a", 12), &position(21, 0)).await);
    ctx.unchanged(s, &lease, op).await;

    let op = "update_checkpoint by the new owner after the final checkpoint";
    ctx.counter(op, 13, s.update_checkpoint(&fence(&key, "worker-b", 12), &position(21, 0)).await);
    lease.checkpoint = position(21, 0);
    lease.lease_counter = 13;
    ctx.unchanged(s, &lease, op).await;
}

/// During a handoff the previous owner may prepare a checkpoint (same right as checkpointing); that keeps
/// `checkpoint_owner`, and its final checkpoint must use the counter the prepare returned.
pub async fn handoff_previous_owner_may_prepare<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("handoff_previous_owner_may_prepare");
    let s = &**store;
    let key = "shardId-000000000001";
    ctx.create(s, &owned(key, "worker-a", 10)).await;
    ctx.ok("assign_for_handoff", s.assign_for_handoff(&fence(key, "worker-a", 10), "worker-b").await);
    let op = "prepare_checkpoint by the previous owner during the handoff";
    ctx.counter(op, 12, s.prepare_checkpoint(&fence(key, "worker-a", 11), &position(3, 0), Some(state(1))).await);
    let prepared = ctx.lease(s, key).await;
    ctx.eq(op, "checkpoint_owner", Some("worker-a"), prepared.checkpoint_owner.as_deref());
    ctx.eq(op, "pending_checkpoint", Some(position(3, 0)), prepared.pending_checkpoint.clone());

    let op = "final update_checkpoint with the counter from before the prepare";
    ctx.rejected(op, s.update_checkpoint(&fence(key, "worker-a", 11), &position(3, 0)).await);
    ctx.unchanged(s, &prepared, op).await;
    let op = "final update_checkpoint with the counter the prepare returned";
    ctx.counter(op, 13, s.update_checkpoint(&fence(key, "worker-a", 12), &position(3, 0)).await);
    let done = ctx.lease(s, key).await;
    ctx.eq(op, "checkpoint_owner", None, done.checkpoint_owner.as_deref());
    ctx.eq(op, "pending_checkpoint", None, done.pending_checkpoint);
}

/// A handoff fenced with a stale counter or the wrong owner, or of an unowned lease, fails and changes nothing.
pub async fn handoff_rejects_a_stale_fence<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("handoff_rejects_a_stale_fence");
    let s = &**store;
    let lease = busy("shardId-000000000001", "worker-a", 10);
    let free = unowned("shardId-000000000002");
    ctx.create(s, &lease).await;
    ctx.create(s, &free).await;
    for (op, before, f) in [
        ("assign_for_handoff with a stale counter", &lease, fence(&lease.lease_key, "worker-a", 9)),
        ("assign_for_handoff naming the wrong owner", &lease, fence(&lease.lease_key, "worker-c", 10)),
        ("assign_for_handoff of an unowned lease", &free, fence(&free.lease_key, "worker-a", 0)),
    ] {
        ctx.rejected(op, s.assign_for_handoff(&f, "worker-b").await);
        ctx.unchanged(s, before, op).await;
    }
}

/// After a handoff the previous owner can no longer renew (with the old or the new counter), release or write child
/// shards: only its final checkpoint is left to it.
pub async fn previous_owner_cannot_renew_after_handoff<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("previous_owner_cannot_renew_after_handoff");
    let s = &**store;
    let key = "shardId-000000000001";
    ctx.create(s, &busy(key, "worker-a", 10)).await;
    ctx.ok("assign_for_handoff", s.assign_for_handoff(&fence(key, "worker-a", 10), "worker-b").await);
    let lease = ctx.lease(s, key).await;
    for counter in [10, 11] {
        let op = format!("renew_lease by the previous owner at counter {counter}");
        ctx.rejected(&op, s.renew_lease(&fence(key, "worker-a", counter)).await);
        ctx.unchanged(s, &lease, &op).await;
    }
    let op = "release_lease by the previous owner";
    ctx.rejected(op, s.release_lease(&fence(key, "worker-a", 11)).await);
    ctx.unchanged(s, &lease, op).await;
}

/// During a handoff nobody renews (so the previous owner's final checkpoint stays fenced correctly), and the
/// previous owner — who holds the checkpointing right — may record child shards; the new owner may not yet.
pub async fn handoff_blocks_renewal_and_keeps_child_shards_with_previous_owner<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("handoff_blocks_renewal_and_keeps_child_shards_with_previous_owner");
    let s = &**store;
    let key = "shardId-000000000001";
    ctx.create(s, &busy(key, "worker-a", 10)).await;
    ctx.ok("assign_for_handoff", s.assign_for_handoff(&fence(key, "worker-a", 10), "worker-b").await);
    let lease = ctx.lease(s, key).await;
    let op = "renew_lease by the new owner during the handoff";
    ctx.rejected(op, s.renew_lease(&fence(key, "worker-b", 11)).await);
    ctx.unchanged(s, &lease, op).await;
    let children = vec!["shardId-000000000002".to_owned()];
    let op = "update_child_shards by the new owner during the handoff";
    ctx.rejected(op, s.update_child_shards(&fence(key, "worker-b", 11), &children).await);
    ctx.unchanged(s, &lease, op).await;
    let op = "update_child_shards by the previous owner during the handoff";
    ctx.counter(op, 12, s.update_child_shards(&fence(key, "worker-a", 11), &children).await);
    let after = ctx.lease(s, key).await;
    ctx.eq(op, "child_shard_ids", children.as_slice(), after.child_shard_ids.as_slice());
    ctx.eq(op, "checkpoint_owner", Some("worker-a"), after.checkpoint_owner.as_deref());
    ctx.eq(op, "lease_owner", Some("worker-b"), after.lease_owner.as_deref());
}

/// A take during a handoff clears `checkpoint_owner`: the previous owner loses its final checkpoint.
pub async fn take_clears_checkpoint_owner<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("take_clears_checkpoint_owner");
    let s = &**store;
    let key = "shardId-000000000001";
    ctx.create(s, &busy(key, "worker-a", 10)).await;
    ctx.ok("assign_for_handoff", s.assign_for_handoff(&fence(key, "worker-a", 10), "worker-b").await);
    let handing_off = ctx.lease(s, key).await;
    let op = "take_lease by worker-c during the handoff";
    let lease = ctx.take(s, op, &handing_off, "worker-c").await;
    ctx.eq(op, "checkpoint_owner", None, lease.checkpoint_owner.as_deref());
    let op = "update_checkpoint by the previous owner after the take";
    ctx.rejected(op, s.update_checkpoint(&fence(key, "worker-a", 12), &position(20, 0)).await);
    ctx.unchanged(s, &lease, op).await;
}

/// The holder records child shards (set, counter + 1, nothing else changes); a stale fence or another worker
/// cannot.
pub async fn child_shards_update<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("child_shards_update");
    let s = &**store;
    let mut lease = busy("shardId-000000000001", "worker-a", 5);
    ctx.create(s, &lease).await;
    let key = lease.lease_key.clone();
    let children = vec!["shardId-000000000002".to_owned(), "shardId-000000000003".to_owned()];
    let op = "update_child_shards by the holder";
    ctx.counter(op, 6, s.update_child_shards(&fence(&key, "worker-a", 5), &children).await);
    lease.child_shard_ids = children;
    lease.lease_counter = 6;
    ctx.unchanged(s, &lease, op).await;

    let other = ["shardId-000000000009".to_owned()];
    for (op, f) in [
        ("update_child_shards with a stale counter", fence(&key, "worker-a", 5)),
        ("update_child_shards by a worker that does not hold the lease", fence(&key, "worker-b", 6)),
    ] {
        ctx.rejected(op, s.update_child_shards(&f, &other).await);
        ctx.unchanged(s, &lease, op).await;
    }
}
