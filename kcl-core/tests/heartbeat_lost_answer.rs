//! Regression (issue 17): in heartbeat mode, a heartbeat renewal whose answer was lost (a timeout, a dropped
//! connection) still lands; the retry with the old counter then fails its condition. The worker took that for a
//! fence by another worker and self-fenced every lease, re-adopted them at the next poll and processed them again
//! from their checkpoints: under faults, a loop of lost leases and redelivered records. A changed counter seen
//! before the heartbeat deadline can only be the worker's own write (a fencer waits a full lease duration after it
//! saw the last renewal), so the worker keeps its leases and heartbeats on from it.

use std::sync::Arc;
use std::time::Duration;

use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::coordinator::{LeaseCoordinator, LeaseCoordinatorConfig, LeaseEvent, RenewalMode};
use kcl_core::lease::{FaultConfig, FaultyLeaseStore, Lease, LeaseStore, MemoryLeaseStore};
use tokio::time::{Instant, sleep, timeout_at};

const KEYS: [&str; 2] = ["shardId-000000000000", "shardId-000000000001"];

async fn heartbeat_of(table: &MemoryLeaseStore, worker: &str) -> Option<u64> {
    table.list_heartbeats().await.unwrap().into_iter().find(|hb| hb.worker_id == worker).map(|hb| hb.counter)
}

/// Sleeps in small steps until the worker's stored heartbeat differs from `from`; returns the new value.
async fn heartbeat_moves(table: &MemoryLeaseStore, worker: &str, from: Option<u64>) -> Option<u64> {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let now = heartbeat_of(table, worker).await;
        if now != from {
            return now;
        }
        assert!(Instant::now() < give_up, "the heartbeat of {worker} stayed at {from:?}");
        sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_heartbeat_answer_keeps_the_leases() {
    let table = Arc::new(MemoryLeaseStore::new());
    for key in KEYS {
        assert!(
            table
                .create_lease_if_not_exists(&Lease::new_for_shard(key, ExtendedSequenceNumber::TrimHorizon))
                .await
                .unwrap()
        );
    }
    let store = FaultyLeaseStore::shared(table.clone());
    let switch = store.switch().clone();
    let config = LeaseCoordinatorConfig::builder()
        .lease_duration(Duration::from_secs(2))
        .renewal_mode(RenewalMode::WorkerHeartbeat)
        .build()
        .unwrap();
    let (handle, mut events) = LeaseCoordinator::start(Arc::new(store), "w1", config).unwrap();

    let mut held = std::collections::HashSet::new();
    let give_up = Instant::now() + Duration::from_secs(30);
    while held.len() < KEYS.len() {
        match timeout_at(give_up, events.recv()).await {
            Ok(Some(LeaseEvent::Acquired { lease, .. })) => {
                held.insert(lease.lease_key);
            }
            Ok(Some(LeaseEvent::Lost { lease_key, .. })) => {
                held.remove(&lease_key);
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the coordinator stopped"),
            Err(_) => panic!("w1 did not acquire both leases: {held:?}"),
        }
    }

    // Right after a renewal landed, lose the answer of the next one (it is applied), then heal: the retries of
    // that renewal meet the counter our lost write produced.
    let renewed = heartbeat_moves(&table, "w1", heartbeat_of(&table, "w1").await).await;
    switch.set(FaultConfig::lose_write_responses());
    let unseen = heartbeat_moves(&table, "w1", renewed).await;
    switch.heal();
    assert_eq!(switch.stats().lost_responses, 1, "exactly the one heartbeat write lost its answer");

    // Four lease durations: the worker must keep both leases all along, and heartbeat on.
    let watch_until = Instant::now() + Duration::from_secs(8);
    if let Ok(event) = timeout_at(watch_until, events.recv()).await {
        // Any event at all within the window is a failure: the worker holds both leases and nothing may change.
        match event {
            Some(LeaseEvent::Lost { lease_key, reason }) => {
                panic!("{lease_key} was lost ({reason:?}) after a heartbeat answer was lost; it was never fenced")
            }
            Some(other) => panic!("unexpected event {other:?}"),
            None => panic!("the coordinator stopped"),
        }
    }
    let now = heartbeat_of(&table, "w1").await;
    assert!(now > unseen, "the heartbeat did not go on from {unseen:?} (now {now:?})");
    assert_eq!(handle.held_leases().len(), KEYS.len());
    for lease in table.list_all_leases().await.unwrap() {
        assert_eq!(lease.lease_owner.as_deref(), Some("w1"), "{lease:?}");
    }
    handle.abort();
}
