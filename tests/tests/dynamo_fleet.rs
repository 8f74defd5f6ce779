//! Fleet tests of the lease coordinator on DynamoDB Local, in both renewal modes: convergence and stability, crash
//! failover within the bound, the graceful shutdown fast path, and zombie fencing enforced by DynamoDB's
//! conditional writes. Each test has its own table; the lease duration is short (2 s) so the binary stays quick, and
//! every timing bound carries slack for DynamoDB Local's latency on a loaded machine. Measured times are printed
//! (`-- --nocapture`).

#[path = "dynamo_fleet/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::{DynamoFleet as Fleet, Handover, Kind, config, next_checkpoint};
use kcl_core::KclError;
use kcl_core::lease::{FaultConfig, FaultyLeaseStore, LeaseFence, LeaseStore, RenewalMode};
use tokio::time::Instant;

const LEASE_DURATION_MS: u64 = 2000;
const LEASES: usize = 12;
/// Slack on top of every timing bound: DynamoDB Local answers in milliseconds when idle, but tests share two cores
/// with each other and the emulators.
const SLACK: Duration = Duration::from_millis(1500);
const CONVERGE: Duration = Duration::from_secs(40);

async fn three_workers(mode: RenewalMode, w3_store: Option<Arc<dyn LeaseStore>>) -> Fleet {
    let mut fleet = Fleet::new(LEASES, config(mode, LEASE_DURATION_MS)).await;
    fleet.start("w1");
    fleet.start("w2");
    match w3_store {
        Some(store) => fleet.start_with_store("w3", store),
        None => fleet.start("w3"),
    }
    let took = fleet.converge(CONVERGE).await;
    println!("{mode:?}: 3 workers converged on {LEASES} leases in {took:?}");
    assert_eq!(fleet.held_counts().values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
    fleet
}

/// The acceptance bound: `lease_duration` + one take interval after the crash, plus slack.
fn failover_bound(fleet: &Fleet) -> Duration {
    fleet.config.lease_duration() + fleet.config.take_interval() + SLACK
}

async fn converge_and_stay_put(mode: RenewalMode) {
    let fleet = three_workers(mode, None).await;
    fleet.assert_stays_put(fleet.config.renewal_interval() * 10).await;
    fleet.teardown().await;
}

async fn crash_failover(mode: RenewalMode) {
    let mut fleet = three_workers(mode, None).await;
    let crashed_at = Instant::now();
    let orphans = fleet.kill("w3");
    assert_eq!(orphans.len(), 4);
    let bound = failover_bound(&fleet);
    let took = fleet
        .wait_for(bound * 2, "failover", async |f| {
            let starts = f.timeline.starts_after(crashed_at, "w3");
            orphans.iter().all(|lease| starts.contains_key(lease))
        })
        .await;
    println!("{mode:?}: crash failover took {took:?} (bound {bound:?})");
    assert!(took <= bound, "failover took {took:?}, bound {bound:?}");
    fleet.converge(CONVERGE).await;
    fleet.timeline.assert_no_overlap();
    fleet.teardown().await;
}

async fn graceful_stop(mode: RenewalMode) {
    let mut fleet = three_workers(mode, None).await;
    let Handover { leaving, stopped_at, took, handed_off, lost } =
        fleet.stop_and_await_handover("w3", Duration::from_secs(10)).await;
    println!("{mode:?}: graceful stop handed 4 leases over in {took:?}");
    // What this test holds is the mechanism: w3 handed every lease to a live worker itself (one direct write each),
    // none was left to expire and be taken. How fast that is is a benchmark figure (`bench leases`), not a timed
    // assertion on a shared machine (a wall-clock bound here failed CI at 2.03 s against 2 s).
    assert_eq!(handed_off, leaving, "w3 must hand over every lease it held; its losses: {lost:?}");
    let finals = fleet.timeline.entries().into_iter().filter(|e| {
        // Only the shutdown's finals: w3 may also have handed a lease over while the fleet was converging.
        e.worker == "w3" && e.at >= stopped_at && leaving.contains(&e.lease) && matches!(e.kind, Kind::Final { .. })
    });
    assert_eq!(finals.count(), leaving.len(), "w3 wrote a final checkpoint for each lease it left");
    fleet.timeline.assert_no_overlap();
    fleet.converge(CONVERGE).await;
    fleet.teardown().await;
}

async fn zombie_is_fenced(mode: RenewalMode) {
    let mut fleet = Fleet::new(LEASES, config(mode, LEASE_DURATION_MS)).await;
    let faulty = Arc::new(FaultyLeaseStore::shared(fleet.store.clone()));
    let switch = faulty.switch().clone();
    fleet.start("w1");
    fleet.start("w2");
    fleet.start_with_store("w3", faulty);
    let took = fleet.converge(CONVERGE).await;
    println!("{mode:?}: converged in {took:?}");
    let zombie_leases: Vec<String> = fleet.handle("w3").held_leases().into_iter().map(|l| l.lease_key).collect();
    assert_eq!(zombie_leases.len(), 4);
    let partitioned_at = Instant::now();
    switch.set(FaultConfig::fail_all());
    // What the zombie last wrote: read once every request it had in flight has returned (it cannot send new ones).
    let deadline = Instant::now() + Duration::from_secs(30);
    while switch.in_flight() > 0 {
        assert!(Instant::now() < deadline, "the zombie's store calls did not return within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut stale_fences = Vec::new();
    for lease in &zombie_leases {
        let stored = fleet.store.get_lease(lease).await.unwrap().unwrap();
        assert_eq!(stored.lease_owner.as_deref(), Some("w3"), "nobody may take {lease} this early");
        stale_fences.push(LeaseFence { lease_key: lease.clone(), owner: "w3".into(), counter: stored.lease_counter });
    }
    let bound = failover_bound(&fleet);
    let took = fleet
        .wait_for(bound * 2, "others to take the zombie's leases", async |f| {
            let starts = f.timeline.starts_after(partitioned_at, "w3");
            zombie_leases.iter().all(|lease| starts.contains_key(lease))
        })
        .await;
    println!("{mode:?}: the zombie's leases were owned again {took:?} after the partition");
    // The zombie stopped each lease (self-fenced) before anyone else started it.
    let entries = fleet.timeline.entries();
    for lease in &zombie_leases {
        let after = |e: &&harness::Entry| e.lease == *lease && e.at >= partitioned_at;
        let stop = entries
            .iter()
            .filter(after)
            .find(|e| e.worker == "w3" && matches!(e.kind, Kind::Stop { .. }))
            .unwrap_or_else(|| panic!("zombie never stopped {lease}"));
        let start = entries.iter().filter(after).find(|e| e.worker != "w3" && matches!(e.kind, Kind::Start { .. }));
        let start = start.unwrap_or_else(|| panic!("nobody started {lease}"));
        assert!(stop.seq < start.seq, "{lease}: zombie stopped after {} started", start.worker);
        println!("{mode:?}: {lease}: zombie stopped {:?} before {} started", start.at - stop.at, start.worker);
        let self_fenced = |why: &str| why.contains("Expired") || why.contains("checkpoint rejected");
        assert!(matches!(&stop.kind, Kind::Stop { why } if self_fenced(why)), "{stop:?}");
    }
    // The partition heals: the coordinator refuses the zombie's checkpoints, and DynamoDB rejects its stale fence.
    switch.heal();
    let checkpoint = next_checkpoint();
    for fence in &stale_fences {
        match fleet.handle("w3").checkpoint(&fence.lease_key, &checkpoint).await {
            Err(KclError::LeaseLost { lease_key }) => assert_eq!(lease_key, fence.lease_key),
            other => panic!("zombie checkpoint of {} must fail with LeaseLost, got {other:?}", fence.lease_key),
        }
        let refused = fleet.store.update_checkpoint(fence, &checkpoint).await;
        assert!(refused.is_err_and(|e| e.is_condition_failed()), "DynamoDB must reject the zombie's stale fence");
    }
    fleet.timeline.assert_no_overlap();
    fleet.teardown().await;
}

macro_rules! in_both_modes {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn per_lease() {
                super::$scenario(RenewalMode::PerLease).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn heartbeat() {
                super::$scenario(RenewalMode::WorkerHeartbeat).await;
            }
        }
    )*};
}

in_both_modes!(converge_and_stay_put, crash_failover, graceful_stop, zombie_is_fenced);
