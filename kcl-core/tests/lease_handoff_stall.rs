//! Regression: a lease stolen (graceful handoff) from an owner that has already stopped must still be taken by force
//! once the handoff times out. The thief's incoming slot used to be self-fenced a safety margin before the forced
//! take came due, then re-adopted by the assignment poll, forever: the shard stalled.

use std::sync::Arc;
use std::time::Duration;

use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::coordinator::{LeaseCoordinator, LeaseCoordinatorConfig, LeaseEvent, RenewalMode};
use kcl_core::lease::{Lease, LeaseStore, MemoryLeaseStore};

async fn stolen_from_a_stopped_owner_is_taken(mode: RenewalMode) {
    let store = Arc::new(MemoryLeaseStore::new());
    // Two leases owned by a worker that is gone (it will never renew, checkpoint or finish a handoff).
    for key in ["shardId-000000000000", "shardId-000000000001"] {
        let mut lease = Lease::new_for_shard(key, ExtendedSequenceNumber::TrimHorizon);
        lease.lease_owner = Some("ghost".to_owned());
        lease.lease_counter = 1;
        assert!(store.create_lease_if_not_exists(&lease).await.unwrap());
    }
    let config = LeaseCoordinatorConfig::builder()
        .lease_duration(Duration::from_millis(600))
        .renewal_mode(mode)
        .build()
        .unwrap();
    let (handle, mut events) = LeaseCoordinator::start(store.clone(), "survivor", config).unwrap();
    let mut acquired = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acquired.len() < 2 {
        let event = tokio::time::timeout_at(deadline, events.recv()).await;
        match event {
            Ok(Some(LeaseEvent::Acquired { lease, .. })) => {
                acquired.insert(lease.lease_key);
            }
            Ok(Some(LeaseEvent::Lost { lease_key, .. })) => {
                acquired.remove(&lease_key);
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the coordinator stopped"),
            Err(_) => panic!("the survivor did not acquire both leases of the stopped worker: {acquired:?}"),
        }
    }
    for lease in store.list_all_leases().await.unwrap() {
        assert_eq!(lease.lease_owner.as_deref(), Some("survivor"), "{lease:?}");
        assert_eq!(lease.checkpoint_owner, None, "{lease:?}");
    }
    handle.abort();
}

#[tokio::test(start_paused = true)]
async fn per_lease_mode() {
    stolen_from_a_stopped_owner_is_taken(RenewalMode::PerLease).await;
}

#[tokio::test(start_paused = true)]
async fn heartbeat_mode() {
    stolen_from_a_stopped_owner_is_taken(RenewalMode::WorkerHeartbeat).await;
}
