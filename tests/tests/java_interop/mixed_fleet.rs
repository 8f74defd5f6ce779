//! A mixed fleet on 2.x-compatible leases: 2 Java KCL 2.7.2 workers and 2 kcl-rs workers on 8 shards, the producer
//! running throughout. Leases spread evenly (2 each) and stay put once converged; a `kill -9` of a Java worker has
//! its shards taken over, and the reverse; a split and a merge happen during the run; 0 lost.

use std::collections::BTreeMap;
use std::time::Duration;

use kcl_tests::chaos::now_us;
use kcl_tests::interop::{Fleet, Kind, Producer, judge, lease_owners, wait_all_delivered};
use kcl_tests::verify::{self, Event};

use crate::common::{JAVA_START, LEASE_MS, Setup};

/// Java KCL's taker interval, `2 × (failoverTimeMillis + epsilonMillis)`: not configurable in 2.x.
const JAVA_TAKE_INTERVAL_MS: u64 = 2 * (LEASE_MS + 25);

/// Owners by shard; `None` when a lease is unowned.
type Owners = BTreeMap<String, Option<String>>;

fn counts(owners: &Owners) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for owner in owners.values().flatten() {
        *counts.entry(owner.clone()).or_default() += 1;
    }
    counts
}

/// Waits until `workers` own every open lease evenly (±1) and nothing moves for `stable`; the owners then.
async fn converge(
    dynamodb: &aws_sdk_dynamodb::Client,
    app: &str,
    workers: &[&str],
    open: impl Fn(&str) -> bool,
    stable: Duration,
    timeout: Duration,
) -> Result<Owners, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut since: Option<(tokio::time::Instant, Owners)> = None;
    loop {
        // The table does not exist until the first worker created it.
        let owners: Owners = match lease_owners(dynamodb, app).await {
            Ok(owners) => owners.into_iter().filter(|(s, _)| open(s)).collect(),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let c = counts(&owners);
        let all_owned = owners.values().all(|o| o.as_deref().is_some_and(|o| workers.contains(&o)));
        let (min, max) = workers
            .iter()
            .map(|w| c.get(*w).copied().unwrap_or(0))
            .fold((usize::MAX, 0), |(a, b), n| (a.min(n), b.max(n)));
        let even = all_owned && !owners.is_empty() && max - min <= 1;
        match (&since, even) {
            (Some((t, previous)), true) if *previous == owners => {
                if t.elapsed() >= stable {
                    return Ok(owners);
                }
            }
            (_, true) => since = Some((tokio::time::Instant::now(), owners.clone())),
            (_, false) => since = None,
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("no stable even spread over {workers:?} after {timeout:?}: {c:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// For each shard in `shards`: the first processor started on it after `at_us`, as (worker, µs after `at_us`).
fn takeovers(fleet: &Fleet, shards: &[String], at_us: u64) -> BTreeMap<String, (String, u64)> {
    let journal = verify::load_journal(&fleet.journals).unwrap_or_default();
    let mut first: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for entry in journal.iter().filter(|e| e.t > at_us) {
        if let Event::Init { shard, .. } = &entry.event
            && shards.contains(shard)
        {
            let gap = entry.t - at_us;
            first
                .entry(shard.clone())
                .and_modify(|f| {
                    if gap < f.1 {
                        *f = (entry.worker.clone(), gap)
                    }
                })
                .or_insert((entry.worker.clone(), gap));
        }
    }
    first
}

/// Kills `victim` (SIGKILL) and waits until all its shards have a new processor; the takeovers.
async fn kill_and_wait(setup: &mut Setup, victim: usize, owners: &Owners) -> BTreeMap<String, (String, u64)> {
    let id = setup.fleet.id(victim).to_owned();
    let shards: Vec<String> =
        owners.iter().filter(|(_, o)| o.as_deref() == Some(id.as_str())).map(|(s, _)| s.clone()).collect();
    assert!(!shards.is_empty(), "{id} owned nothing: {owners:?}");
    let at = now_us();
    setup.fleet.kill(victim).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let taken = takeovers(&setup.fleet, &shards, at);
        if taken.len() == shards.len() {
            eprintln!(
                "kill -9 {id}: takeovers (worker, ms) {:?}",
                taken.iter().map(|(s, (w, us))| (s, w, us / 1000)).collect::<Vec<_>>()
            );
            return taken;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id}'s shards {shards:?} not all taken over within 60 s: {taken:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_fleet_java_2x_and_kcl_rs() {
    let mut setup = Setup::new("mixed", 8).await;
    let producer = Producer::start(setup.kinesis.clone(), &setup.stream, 40, 20, 0x8a);
    let j0 = setup.fleet.start(Kind::Java2, "j0", &[]).unwrap();
    let j1 = setup.fleet.start(Kind::Java2, "j1", &[]).unwrap();
    // kcl-rs lists the table every 250 ms (`take_interval`) so that it finds a dead owner's leases within the lease
    // duration + 1 s of a crash; Java KCL's taker interval is fixed at 2 x (failover + 25 ms).
    let take = ["--take-interval-ms", "250"];
    let r0 = setup.fleet.start(Kind::Rust, "r0", &take).unwrap();
    let _r1 = setup.fleet.start(Kind::Rust, "r1", &take).unwrap();
    let all = ["j0", "j1", "r0", "r1"];
    let owners = match converge(&setup.dynamodb, &setup.app, &all, |_| true, Duration::from_secs(15), JAVA_START).await
    {
        Ok(owners) => owners,
        Err(e) => setup.fail(&e),
    };
    eprintln!("converged: {:?}", counts(&owners));

    // kill -9 a Java worker: its shards move to the survivors. A safe expiry rule dates a counter change at the
    // listing that saw it (at most one take interval, 250 ms, after the dead worker's last renewal, which came before
    // the kill), and the taker lists again when that lease would expire: kcl-rs owns and processes a dead owner's
    // lease within lease duration + take interval + one listing, write and processor start: <= lease + 1 s.
    let taken = kill_and_wait(&mut setup, j0, &owners).await;
    for (shard, (worker, us)) in &taken {
        let bound = if worker.starts_with('j') { 2 * JAVA_TAKE_INTERVAL_MS + 1000 } else { LEASE_MS + 1000 };
        assert!(*us <= bound * 1000, "{shard} taken by {worker} after {} ms", us / 1000);
    }
    assert!(taken.values().any(|(w, _)| w.starts_with('r')), "no kcl-rs worker took a shard of the dead Java worker");
    let three = ["j1", "r0", "r1"];
    let owners =
        match converge(&setup.dynamodb, &setup.app, &three, |_| true, Duration::from_secs(8), Duration::from_secs(90))
            .await
        {
            Ok(owners) => owners,
            Err(e) => setup.fail(&e),
        };
    // And the reverse: kill -9 a kcl-rs worker. Java KCL lists only every 2 x (failover + 25 ms) (6.05 s here) and
    // dates a counter change at the listing that saw it, so its takeovers come up to two of its take intervals after
    // the kill. The surviving kcl-rs worker takes its fair share (Java KCL's rule: up to ⌈leases / workers⌉) within
    // lease + 1 s; a lease beyond that share may be left for Java or taken by a later cycle once the share changes
    // (for instance when a starved Java worker's renewals look late), within two lease durations.
    let taken = kill_and_wait(&mut setup, r0, &owners).await;
    for (shard, (worker, us)) in &taken {
        let bound = if worker.starts_with('j') { 2 * JAVA_TAKE_INTERVAL_MS + 1000 } else { 2 * LEASE_MS + 1000 };
        assert!(*us <= bound * 1000, "{shard} taken by {worker} after {} ms", us / 1000);
    }
    let first_rust_take = taken.values().filter(|(w, _)| w.starts_with('r')).map(|(_, us)| *us).min();
    if let Some(us) = first_rust_take {
        assert!(
            us <= (LEASE_MS + 1000) * 1000,
            "kcl-rs took its first lease of the dead worker after {} ms",
            us / 1000
        );
    }

    // A split and a merge while the producer runs.
    reshard(&setup).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let puts = producer.stop().await.unwrap();
    if let Err(e) = wait_all_delivered(&setup.fleet, &puts, Duration::from_secs(120)).await {
        setup.fail(&e);
    }
    // Let the last checkpoints land (a batch's line is written before its checkpoint).
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Java KCL 2.7.2's startGracefulShutdown() does not complete while the worker holds leases of finished shards
    // (after the reshard, its own or the ones kcl-rs released): the peer then exits 1 after its timeout, once its
    // live processors have had `shutdownRequested`. kcl-rs workers must stop cleanly.
    for (id, code) in setup.fleet.stop_all().await {
        let clean = code == Some(0) || (id.starts_with('j') && code == Some(1));
        if !clean {
            setup.fail(&format!("{id}'s graceful stop ended with {code:?}"));
        }
    }
    let _ = j1;
    let judged = judge(&setup.fleet, puts, &setup.kinesis, &setup.dynamodb, &setup.stream, &setup.app).await.unwrap();
    setup.assert_passed(&judged);
}

/// Splits the first open shard and merges the last two adjacent open ones.
async fn reshard(setup: &Setup) {
    let (kinesis, stream) = (&setup.kinesis, setup.stream.as_str());
    let shards = kcl_tests::chaos::open_shards(kinesis, stream).await.unwrap();
    let first = &shards[0];
    kinesis
        .split_shard()
        .stream_name(stream)
        .shard_to_split(&first.id)
        .new_starting_hash_key((first.start + (first.end - first.start) / 2 + 1).to_string())
        .send()
        .await
        .unwrap();
    kcl_tests::kinesis::wait_active(kinesis, stream).await;
    let shards = kcl_tests::chaos::open_shards(kinesis, stream).await.unwrap();
    let (a, b) = (&shards[shards.len() - 2], &shards[shards.len() - 1]);
    kinesis
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(&a.id)
        .adjacent_shard_to_merge(&b.id)
        .send()
        .await
        .unwrap();
    kcl_tests::kinesis::wait_active(kinesis, stream).await;
}
