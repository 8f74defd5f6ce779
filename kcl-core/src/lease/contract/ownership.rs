//! Who holds a lease: renew, take, release, evict, and races between workers.

use std::sync::Arc;

use super::check::{Ctx, busy, fence, one_winner, owned, race, unowned};
use crate::lease::{Lease, LeaseStore};

/// The holder renews: the counter goes up by one, the returned counter is the stored one, nothing else changes.
pub async fn renew_succeeds_for_the_holder<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("renew_succeeds_for_the_holder");
    let s = &**store;
    let mut lease = busy("shardId-000000000001", "worker-a", 10);
    ctx.create(s, &lease).await;
    for expected in [11, 12] {
        let op = format!("renew_lease at counter {}", expected - 1);
        ctx.counter(&op, expected, s.renew_lease(&fence(&lease.lease_key, "worker-a", expected - 1)).await);
        lease.lease_counter = expected;
        ctx.unchanged(s, &lease, &op).await;
    }
}

/// Renewing with the wrong owner, a stale or a future counter, or an unowned lease fails and changes nothing.
pub async fn renew_failures_change_nothing<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("renew_failures_change_nothing");
    let s = &**store;
    let lease = busy("shardId-000000000001", "worker-a", 10);
    ctx.create(s, &lease).await;
    let key = lease.lease_key.as_str();
    for (op, f) in [
        ("renew_lease by another owner", fence(key, "worker-b", 10)),
        ("renew_lease with a stale counter", fence(key, "worker-a", 9)),
        ("renew_lease with a counter ahead of the store", fence(key, "worker-a", 11)),
    ] {
        ctx.rejected(op, s.renew_lease(&f).await);
        ctx.unchanged(s, &lease, op).await;
    }
    let free = unowned("shardId-000000000002");
    ctx.create(s, &free).await;
    let op = "renew_lease of an unowned lease";
    ctx.rejected(op, s.renew_lease(&fence(&free.lease_key, "worker-a", 0)).await);
    ctx.unchanged(s, &free, op).await;
}

/// Taking an unowned lease: owner set, counter + 1, the returned lease is the stored one, checkpoints untouched.
pub async fn take_unowned_lease<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("take_unowned_lease");
    let s = &**store;
    let lease = Lease { lease_owner: None, ..busy("shardId-000000000001", "nobody", 4) };
    ctx.create(s, &lease).await;
    let op = "take_lease of an unowned lease";
    let taken = ctx.take(s, op, &lease, "worker-a").await;
    // The owner changed from none to worker-a: that is an owner switch.
    ctx.eq(op, "owner_switches_since_checkpoint", 3, taken.owner_switches_since_checkpoint);
}

/// Taking an (expired) lease another worker holds, with the counter last seen: the new owner holds it, the owner
/// switch is counted, the returned lease is the stored one.
pub async fn take_expired_lease_of_another_owner<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("take_expired_lease_of_another_owner");
    let s = &**store;
    let lease = busy("shardId-000000000001", "worker-b", 7);
    ctx.create(s, &lease).await;
    ctx.take(s, "take_lease of another worker's lease", &lease, "worker-a").await;
}

/// A take with a counter other than the stored one fails and changes nothing; in particular a take based on a
/// reading from before the holder's latest renewal.
pub async fn take_rejects_a_stale_counter<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("take_rejects_a_stale_counter");
    let s = &**store;
    let mut lease = busy("shardId-000000000001", "worker-b", 7);
    ctx.create(s, &lease).await;
    let key = lease.lease_key.clone();
    for (op, counter) in [("take_lease with an older counter", 6), ("take_lease with a counter ahead of the store", 8)]
    {
        ctx.rejected(op, s.take_lease(&key, counter, "worker-a").await);
        ctx.unchanged(s, &lease, op).await;
    }
    lease.lease_counter = ctx.ok("renew_lease by the holder", s.renew_lease(&fence(&key, "worker-b", 7)).await);
    let op = "take_lease with the counter seen before the holder renewed";
    ctx.rejected(op, s.take_lease(&key, 7, "worker-a").await);
    ctx.unchanged(s, &lease, op).await;
}

/// `owner_switches_since_checkpoint` goes up by one when a take changes the owner (including taking an unowned
/// lease) and stays put when the owner re-takes its own lease or a release removes the owner.
pub async fn owner_switches_count_only_owner_changes<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("owner_switches_count_only_owner_changes");
    let s = &**store;
    let key = "shardId-000000000001";
    ctx.create(s, &owned(key, "worker-a", 0)).await;
    let mut counter = 0;
    for (new_owner, switches) in [("worker-a", 0), ("worker-b", 1), ("worker-b", 1), ("worker-a", 2)] {
        let op = format!("take_lease by {new_owner} at counter {counter}");
        let taken = ctx.ok(&op, s.take_lease(key, counter, new_owner).await);
        counter += 1;
        ctx.eq(&op, "owner_switches_since_checkpoint", switches, taken.owner_switches_since_checkpoint);
        ctx.eq(&op, "lease_counter", counter, taken.lease_counter);
    }
    let op = "release_lease";
    counter = ctx.ok(op, s.release_lease(&fence(key, "worker-a", counter)).await);
    ctx.eq(op, "owner_switches_since_checkpoint", 2, ctx.lease(s, key).await.owner_switches_since_checkpoint);
    let op = "take_lease of the released lease by its previous owner";
    let taken = ctx.ok(op, s.take_lease(key, counter, "worker-a").await);
    ctx.eq(op, "owner_switches_since_checkpoint", 3, taken.owner_switches_since_checkpoint);
}

/// Sixteen tasks take the same lease with the same counter at once, eight times over: each time exactly one wins,
/// the others get `ConditionFailed`, and the store holds the winner's take.
pub async fn concurrent_takes_have_one_winner<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("concurrent_takes_have_one_winner");
    let key = "shardId-000000000001";
    ctx.create(&**store, &unowned(key)).await;
    for round in 0..8u64 {
        let op = &format!("16 concurrent take_lease calls at counter {round}");
        let results = race(&ctx, op, store, 16, |store, task| async move {
            store.take_lease(key, round, &format!("worker-{task}")).await
        })
        .await;
        let (winner, taken) = one_winner(&ctx, op, results);
        ctx.eq(op, "the winner's lease_owner", Some(format!("worker-{winner}")), taken.lease_owner.clone());
        ctx.eq(op, "the winner's lease_counter", round + 1, taken.lease_counter);
        ctx.unchanged(&**store, &taken, op).await;
    }
}

/// Release removes the owner and `checkpoint_owner`, bumps the counter and keeps the checkpoints; then another
/// worker takes the lease at the released counter.
pub async fn release_then_take<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("release_then_take");
    let s = &**store;
    let mut lease =
        Lease { checkpoint_owner: Some("worker-z".to_owned()), ..busy("shardId-000000000001", "worker-a", 3) };
    ctx.create(s, &lease).await;
    let op = "release_lease by the holder";
    ctx.counter(op, 4, s.release_lease(&fence(&lease.lease_key, "worker-a", 3)).await);
    lease.lease_owner = None;
    lease.checkpoint_owner = None;
    lease.lease_counter = 4;
    ctx.unchanged(s, &lease, op).await;

    ctx.take(s, "take_lease of the released lease", &lease, "worker-b").await;
}

/// Release by another owner, with a stale counter, or of an unowned lease fails and changes nothing.
pub async fn release_failures_change_nothing<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("release_failures_change_nothing");
    let s = &**store;
    let lease = busy("shardId-000000000001", "worker-a", 3);
    let free = unowned("shardId-000000000002");
    ctx.create(s, &lease).await;
    ctx.create(s, &free).await;
    for (op, before, f) in [
        ("release_lease by another owner", &lease, fence(&lease.lease_key, "worker-b", 3)),
        ("release_lease with a stale counter", &lease, fence(&lease.lease_key, "worker-a", 2)),
        ("release_lease of an unowned lease", &free, fence(&free.lease_key, "worker-a", 0)),
    ] {
        ctx.rejected(op, s.release_lease(&f).await);
        ctx.unchanged(s, before, op).await;
    }
}

/// Evict needs the right owner but no counter; it removes the owner and `checkpoint_owner`, bumps the counter,
/// keeps the checkpoints, and cannot evict an unowned lease.
pub async fn evict<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("evict");
    let s = &**store;
    let mut lease =
        Lease { checkpoint_owner: Some("worker-z".to_owned()), ..busy("shardId-000000000001", "worker-a", 3) };
    ctx.create(s, &lease).await;
    let key = lease.lease_key.clone();
    let op = "evict_lease naming another owner";
    ctx.rejected(op, s.evict_lease(&key, "worker-b").await);
    ctx.unchanged(s, &lease, op).await;

    let op = "evict_lease naming the owner";
    ctx.counter(op, 4, s.evict_lease(&key, "worker-a").await);
    lease.lease_owner = None;
    lease.checkpoint_owner = None;
    lease.lease_counter = 4;
    ctx.unchanged(s, &lease, op).await;

    let op = "evict_lease of an unowned lease";
    ctx.rejected(op, s.evict_lease(&key, "worker-a").await);
    ctx.unchanged(s, &lease, op).await;
}
