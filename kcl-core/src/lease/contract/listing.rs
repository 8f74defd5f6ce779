//! Listing and paging, heartbeats, and the counter rule across a whole lease lifecycle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{StreamExt, stream};

use super::check::{Ctx, busy, fence, one_winner, owned, position, race, state, unowned};
use crate::lease::{Lease, LeasePage, LeaseStore, WorkerHeartbeat};

/// How many leases the pagination case creates.
const MANY: usize = 1000;

/// How many creates the pagination case keeps in flight.
const CREATE_CONCURRENCY: usize = 32;

/// With over a thousand leases, paging with small page sizes (7, 100) and `list_all_leases` return each lease
/// exactly once, in full, no page exceeds its size, and the listing terminates.
pub async fn pagination_over_many_leases<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("pagination_over_many_leases");
    let s = &**store;
    let leases: Vec<Lease> = (0..MANY)
        .map(|i| {
            let key = format!("shardId-{i:012}");
            match i % 3 {
                0 => unowned(&key),
                1 => owned(&key, &format!("worker-{}", i % 7), i as u64),
                _ => busy(&key, "worker-a", i as u64),
            }
        })
        .collect();
    // Boxed up front: a stream of closures over `&Lease` would make this case's future not provably `Send`.
    let creates: Vec<BoxFuture<'_, _>> = leases
        .iter()
        .map(|lease| -> BoxFuture<'_, _> {
            Box::pin(async move { (lease, s.create_lease_if_not_exists(lease).await) })
        })
        .collect();
    let created: Vec<_> = stream::iter(creates).buffer_unordered(CREATE_CONCURRENCY).collect().await;
    for (lease, result) in created {
        let op = format!("create_lease_if_not_exists({:?})", lease.lease_key);
        ctx.eq(&op, "created", true, ctx.ok(&op, result));
    }
    let by_key: BTreeMap<&str, &Lease> = leases.iter().map(|l| (l.lease_key.as_str(), l)).collect();

    for page_size in [7, 100] {
        let op = &format!("paging with list_leases(_, {page_size})");
        let mut seen = BTreeSet::new();
        let mut page = None;
        // A store may return short (even empty) pages, but every page must make progress through the table.
        let max_pages = 2 * MANY + 10;
        for pages in 1.. {
            if pages > max_pages {
                ctx.fail(op, format_args!("no last page after {max_pages} pages ({} leases seen)", seen.len()));
            }
            let LeasePage { leases, next_page, .. } = ctx.ok(op, s.list_leases(page, page_size).await);
            if leases.len() > page_size {
                ctx.fail(op, format_args!("page {pages} holds {} leases", leases.len()));
            }
            for lease in leases {
                match by_key.get(lease.lease_key.as_str()) {
                    Some(expected) => ctx.same_lease(op, expected, &lease),
                    None => ctx.fail(op, format_args!("returned unknown lease {:?}", lease.lease_key)),
                }
                if !seen.insert(lease.lease_key.clone()) {
                    ctx.fail(op, format_args!("returned {:?} twice", lease.lease_key));
                }
            }
            match next_page {
                Some(next) => page = Some(next),
                None => break,
            }
        }
        if seen.len() != MANY {
            let missing: Vec<&str> = by_key.keys().filter(|k| !seen.contains(**k)).take(5).copied().collect();
            ctx.fail(op, format_args!("expected all {MANY} leases, got {}; missing include {missing:?}", seen.len()));
        }
    }

    let op = "list_all_leases";
    let all = ctx.ok(op, s.list_all_leases().await);
    let keys: BTreeSet<&str> = all.iter().map(|l| l.lease_key.as_str()).collect();
    ctx.eq(op, "number of leases", MANY, all.len());
    ctx.eq(op, "number of distinct keys", MANY, keys.len());
}

fn keys(leases: &[Lease]) -> BTreeSet<String> {
    leases.iter().map(|l| l.lease_key.clone()).collect()
}

fn key_set<const N: usize>(keys: [&str; N]) -> BTreeSet<String> {
    keys.into_iter().map(str::to_owned).collect()
}

/// `list_all_leases` returns every lease in full; `list_leases_by_owner` returns exactly the leases whose
/// `lease_owner` is the owner (not those it is only `checkpoint_owner` of), and sees takes, releases and deletes
/// this store acknowledged.
pub async fn list_all_and_by_owner<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("list_all_and_by_owner");
    let s = &**store;
    ctx.eq(
        "list_all_leases of an empty store",
        "leases",
        Vec::new(),
        ctx.ok("list_all_leases", s.list_all_leases().await),
    );
    let op = "list_leases_by_owner in an empty store";
    ctx.eq(op, "leases", Vec::new(), ctx.ok(op, s.list_leases_by_owner("worker-a").await));

    let leases = [
        owned("a1", "worker-a", 1),
        busy("a2", "worker-a", 2),
        owned("a3", "worker-a", 3),
        owned("b1", "worker-b", 4),
        busy("b2", "worker-b", 5),
        Lease { checkpoint_owner: Some("worker-a".to_owned()), ..owned("h1", "worker-b", 6) },
        unowned("u1"),
    ];
    for lease in &leases {
        ctx.create(s, lease).await;
    }
    ctx.same_leases("list_all_leases", &leases, &ctx.ok("list_all_leases", s.list_all_leases().await));

    let by_owner = async |owner: &str| {
        let op = format!("list_leases_by_owner({owner:?})");
        let listed = ctx.ok(&op, s.list_leases_by_owner(owner).await);
        for lease in &listed {
            ctx.eq(&op, "lease_owner of a listed lease", Some(owner), lease.lease_owner.as_deref());
        }
        (op, keys(&listed))
    };
    let (op, found) = by_owner("worker-a").await;
    ctx.eq(&op, "keys", key_set(["a1", "a2", "a3"]), found);
    let (op, found) = by_owner("worker-b").await;
    ctx.eq(&op, "keys", key_set(["b1", "b2", "h1"]), found);
    for nobody in ["worker-c", "worker"] {
        let (op, found) = by_owner(nobody).await;
        ctx.eq(&op, "keys", BTreeSet::new(), found);
    }
    ctx.ok("take_lease of a1 by worker-b", s.take_lease("a1", 1, "worker-b").await);
    ctx.ok("release_lease of a2", s.release_lease(&fence("a2", "worker-a", 2)).await);
    ctx.ok("delete_lease of b1", s.delete_lease("b1").await);
    let (op, found) = by_owner("worker-a").await;
    ctx.eq(format!("{op} after a take, a release and a delete"), "keys", key_set(["a3"]), found);
    let (op, found) = by_owner("worker-b").await;
    ctx.eq(format!("{op} after a take, a release and a delete"), "keys", key_set(["a1", "b2", "h1"]), found);
}

/// Heartbeats: `None` creates only when absent (starting at 1), `Some(c)` renews only at counter `c` and never
/// creates, racing renewals have one winner, listing shows every heartbeat, deleting is idempotent and frees the id.
pub async fn heartbeats<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("heartbeats");
    let s = &**store;
    let listed = async || {
        let mut beats = ctx.ok("list_heartbeats", s.list_heartbeats().await);
        beats.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        beats
    };
    let beat = |worker: &str, counter| WorkerHeartbeat { worker_id: worker.to_owned(), counter };
    ctx.eq("list_heartbeats of an empty store", "heartbeats", Vec::new(), listed().await);

    let op = "renew_heartbeat(worker-a, None) of an absent heartbeat";
    ctx.counter(op, 1, s.renew_heartbeat("worker-a", None).await);
    ctx.rejected("renew_heartbeat(worker-a, None) of a present heartbeat", s.renew_heartbeat("worker-a", None).await);
    let op = "renew_heartbeat(worker-a, Some(1))";
    ctx.counter(op, 2, s.renew_heartbeat("worker-a", Some(1)).await);
    ctx.rejected("renew_heartbeat with a stale counter", s.renew_heartbeat("worker-a", Some(1)).await);
    ctx.rejected("renew_heartbeat with a counter ahead", s.renew_heartbeat("worker-a", Some(3)).await);
    for counter in [0, 1] {
        let op = format!("renew_heartbeat(worker-b, Some({counter})) of an absent heartbeat");
        ctx.rejected(&op, s.renew_heartbeat("worker-b", Some(counter)).await);
    }
    ctx.eq("list_heartbeats after rejected renewals", "heartbeats", vec![beat("worker-a", 2)], listed().await);

    let op = "renew_heartbeat(worker-b, None)";
    ctx.counter(op, 1, s.renew_heartbeat("worker-b", None).await);
    let op = "16 concurrent renew_heartbeat(worker-b, Some(1))";
    let results =
        race(&ctx, op, store, 16, |store, _| async move { store.renew_heartbeat("worker-b", Some(1)).await }).await;
    ctx.eq(op, "returned counter", 2, one_winner(&ctx, op, results).1);
    ctx.eq("list_heartbeats", "heartbeats", vec![beat("worker-a", 2), beat("worker-b", 2)], listed().await);

    ctx.ok("delete_heartbeat(worker-a)", s.delete_heartbeat("worker-a").await);
    ctx.eq("list_heartbeats after delete_heartbeat", "heartbeats", vec![beat("worker-b", 2)], listed().await);
    ctx.ok("delete_heartbeat of a deleted heartbeat", s.delete_heartbeat("worker-a").await);
    ctx.ok("delete_heartbeat of a worker never seen", s.delete_heartbeat("worker-z").await);
    let op = "renew_heartbeat(worker-a, None) after delete_heartbeat";
    ctx.counter(op, 1, s.renew_heartbeat("worker-a", None).await);
    ctx.eq("list_heartbeats", "heartbeats", vec![beat("worker-a", 1), beat("worker-b", 2)], listed().await);
}

/// Heartbeats and leases live apart: a heartbeat is never listed or read as a lease, a lease never as a heartbeat,
/// and deleting one never deletes the other.
pub async fn heartbeats_are_not_leases<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("heartbeats_are_not_leases");
    let s = &**store;
    let lease = owned("shardId-000000000001", "worker-a", 1);
    ctx.create(s, &lease).await;
    ctx.ok("renew_heartbeat(worker-a, None)", s.renew_heartbeat("worker-a", None).await);

    let op = "list_all_leases with a heartbeat present";
    ctx.eq(op, "lease keys", key_set([lease.lease_key.as_str()]), keys(&ctx.ok(op, s.list_all_leases().await)));
    let op = "list_leases(None, 10) with a heartbeat present";
    let page = ctx.ok(op, s.list_leases(None, 10).await);
    ctx.eq(op, "lease keys", key_set([lease.lease_key.as_str()]), keys(&page.leases));
    ctx.absent(s, "worker-a", "renew_heartbeat(worker-a)").await;
    let op = "list_heartbeats with a lease present";
    let workers: Vec<String> = ctx.ok(op, s.list_heartbeats().await).into_iter().map(|h| h.worker_id).collect();
    ctx.eq(op, "worker ids", vec!["worker-a".to_owned()], workers);

    ctx.ok("delete_heartbeat named like the lease", s.delete_heartbeat(&lease.lease_key).await);
    ctx.unchanged(s, &lease, "delete_heartbeat named like the lease").await;
    ctx.ok("delete_lease named like the heartbeat", s.delete_lease("worker-a").await);
    let op = "list_heartbeats after delete_lease named like the heartbeat";
    ctx.eq(op, "heartbeats", 1, ctx.ok(op, s.list_heartbeats().await).len());
}

/// Reads, creates of existing keys and rejected writes leave the counter alone.
async fn counter_stays<S: LeaseStore + ?Sized>(ctx: &Ctx, s: &S, key: &str, counter: u64, after: &str) {
    let before = ctx.lease(s, key).await;
    ctx.eq(format!("get_lease after {after}"), "lease_counter", counter, before.lease_counter);
    ctx.ok("list_all_leases", s.list_all_leases().await);
    ctx.ok("list_leases_by_owner", s.list_leases_by_owner("worker-a").await);
    ctx.ok("list_heartbeats", s.list_heartbeats().await);
    let op = "create_lease_if_not_exists on an existing key";
    ctx.eq(op, "created", false, ctx.ok(op, s.create_lease_if_not_exists(&unowned(key)).await));
    ctx.rejected("renew_lease by a zombie", s.renew_lease(&fence(key, "worker-zombie", counter)).await);
    ctx.rejected("take_lease with a stale counter", s.take_lease(key, counter.wrapping_sub(1), "worker-zombie").await);
    ctx.unchanged(s, &before, &format!("reads and rejected writes after {after}")).await;
}

/// Across a whole lifecycle — take, renew, prepare, checkpoint, child shards, handoff, final checkpoint, renew,
/// release, take, evict, take — every successful write raises the counter by exactly one and returns the stored
/// value, and nothing else moves it.
pub async fn counter_rises_by_one_per_successful_write<S: LeaseStore + ?Sized>(store: &Arc<S>) {
    let ctx = Ctx::new("counter_rises_by_one_per_successful_write");
    let s = &**store;
    let key = "shardId-000000000001";
    ctx.create(s, &unowned(key)).await;
    counter_stays(&ctx, s, key, 0, "create_lease_if_not_exists").await;

    let mut counter = 0;
    let mut step = async |op: &str, result| {
        counter += 1;
        ctx.counter(op, counter, result);
        counter_stays(&ctx, s, key, counter, op).await;
        counter
    };
    let c = step("take_lease by worker-a", s.take_lease(key, 0, "worker-a").await.map(|l| l.lease_counter)).await;
    let c = step("renew_lease", s.renew_lease(&fence(key, "worker-a", c)).await).await;
    let c = step(
        "prepare_checkpoint",
        s.prepare_checkpoint(&fence(key, "worker-a", c), &position(1, 0), Some(state(1))).await,
    )
    .await;
    let c = step("update_checkpoint", s.update_checkpoint(&fence(key, "worker-a", c), &position(1, 0)).await).await;
    let c =
        step("update_child_shards", s.update_child_shards(&fence(key, "worker-a", c), &["c".to_owned()]).await).await;
    let c = step("assign_for_handoff to worker-b", s.assign_for_handoff(&fence(key, "worker-a", c), "worker-b").await)
        .await;
    let c = step(
        "final update_checkpoint by worker-a",
        s.update_checkpoint(&fence(key, "worker-a", c), &position(2, 0)).await,
    )
    .await;
    let c = step("renew_lease by worker-b", s.renew_lease(&fence(key, "worker-b", c)).await).await;
    let c = step("release_lease by worker-b", s.release_lease(&fence(key, "worker-b", c)).await).await;
    step("take_lease by worker-c", s.take_lease(key, c, "worker-c").await.map(|l| l.lease_counter)).await;
    let c = step("evict_lease of worker-c", s.evict_lease(key, "worker-c").await).await;
    step("take_lease by worker-a", s.take_lease(key, c, "worker-a").await.map(|l| l.lease_counter)).await;
}
