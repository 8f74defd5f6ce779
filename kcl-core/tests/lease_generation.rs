//! Checkpoints fenced by acquisition (issue 17): a worker that gives a lease up and acquires it again writes with
//! the same owner and a current counter, so the store's fence cannot tell the two acquisitions' processors apart.
//! The coordinator can: writes made on behalf of an ended acquisition (`*_in`) are refused, in both renewal modes,
//! and the stored lease is left as the current acquisition has it.

use std::sync::Arc;
use std::time::Duration;

use kcl_core::lease::coordinator::{LeaseCoordinator, LeaseCoordinatorConfig, LeaseEvent, RenewalMode};
use kcl_core::lease::{Lease, LeaseGeneration, LeaseStore, MemoryLeaseStore};
use kcl_core::{ExtendedSequenceNumber, KclError, SequenceNumber};
use tokio::sync::mpsc::UnboundedReceiver;

const KEY: &str = "shardId-000000000000";

fn position(n: u128) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::sequence(SequenceNumber::from_u128(n))
}

/// The next `Acquired` of [`KEY`], skipping other events.
async fn next_acquisition(events: &mut UnboundedReceiver<LeaseEvent>) -> (Lease, LeaseGeneration) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(LeaseEvent::Acquired { lease, generation })) if lease.lease_key == KEY => {
                return (lease, generation);
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the coordinator stopped"),
            Err(_) => panic!("{KEY} was not acquired within 60 s"),
        }
    }
}

fn assert_lost<T: std::fmt::Debug>(what: &str, result: Result<T, KclError>) {
    assert!(matches!(result, Err(KclError::LeaseLost { ref lease_key }) if lease_key == KEY), "{what}: {result:?}");
}

async fn an_ended_acquisition_cannot_write(mode: RenewalMode) {
    let store = Arc::new(MemoryLeaseStore::new());
    let lease = Lease::new_for_shard(KEY, ExtendedSequenceNumber::TrimHorizon);
    assert!(store.create_lease_if_not_exists(&lease).await.unwrap());
    let config = LeaseCoordinatorConfig::builder()
        .lease_duration(Duration::from_millis(600))
        .renewal_mode(mode)
        .build()
        .unwrap();
    let (handle, mut events) = LeaseCoordinator::start(store.clone(), "worker-1", config).unwrap();

    let (_, first) = next_acquisition(&mut events).await;
    handle.checkpoint_in(first, KEY, &position(10)).await.expect("the current acquisition checkpoints");
    // Give the lease up; nobody else wants it, so this worker takes it again: a second acquisition.
    handle.release(KEY).await.expect("release");
    let (reacquired, second) = next_acquisition(&mut events).await;
    assert!(second > first, "generations grow: {first:?} then {second:?}");
    assert_eq!(reacquired.checkpoint, position(10));

    assert_lost("checkpoint_in", handle.checkpoint_in(first, KEY, &position(20)).await);
    assert_lost("prepare_checkpoint_in", handle.prepare_checkpoint_in(first, KEY, &position(20), None).await);
    assert_lost("update_child_shards_in", handle.update_child_shards_in(first, KEY, &["shardId-1".into()]).await);
    let stored = store.get_lease(KEY).await.unwrap().unwrap();
    assert_eq!(stored.checkpoint, position(10), "the ended acquisition moved the checkpoint");
    assert_eq!(stored.pending_checkpoint, None);
    assert!(stored.child_shard_ids.is_empty());

    // The current acquisition writes; so does the unfenced form (any acquisition of this worker).
    handle.checkpoint_in(second, KEY, &position(30)).await.expect("the current acquisition checkpoints");
    handle.checkpoint(KEY, &position(31)).await.expect("checkpoint by key");
    assert_eq!(store.get_lease(KEY).await.unwrap().unwrap().checkpoint, position(31));
    handle.abort();
}

#[tokio::test(start_paused = true)]
async fn per_lease() {
    an_ended_acquisition_cannot_write(RenewalMode::PerLease).await;
}

#[tokio::test(start_paused = true)]
async fn heartbeat() {
    an_ended_acquisition_cannot_write(RenewalMode::WorkerHeartbeat).await;
}
