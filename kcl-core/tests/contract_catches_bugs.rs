//! The contract suite has teeth: stores with one deliberate bug each fail the case written for that bug, and a
//! harmless difference (shard id sets read back in another order) fails nothing.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{
    Lease, LeaseFence, LeasePage, LeaseStore, LeaseStoreError, MemoryLeaseStore, PageToken, WorkerHeartbeat, contract,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// Renew checks the owner but not the counter.
    RenewIgnoresCounter,
    /// Take reads, pauses, then writes whatever the counter is by then: a read-modify-write without a condition.
    RacyTake,
    /// Checkpoint checks the checkpointing owner but not the counter.
    CheckpointIgnoresCounter,
    /// Renewing an absent lease creates it (an upsert where a conditional update was meant).
    RenewUpserts,
    /// Every page but the last loses its last lease (the continuation token points past it).
    PagesDropLastLease,
    /// `prepare_checkpoint(.., None)` keeps the state of the previous prepared checkpoint.
    PrepareKeepsOldState,
    /// `renew_heartbeat(id, Some(c))` of an absent heartbeat creates it.
    HeartbeatRenewCreates,
    /// Deleting an absent lease is an error.
    DeleteAbsentFails,
    /// `list_leases_by_owner` also returns the leases the worker is only `checkpoint_owner` of.
    ByOwnerIncludesCheckpointOwner,
    /// A take that lost its race is reported as Transient instead of ConditionFailed.
    LostTakeIsTransient,
    /// Reads drop the sub-sequence number of the checkpoint.
    SubSequenceDropped,
    /// Evict removes whoever owns the lease, whichever owner it names.
    EvictIgnoresOwner,
    /// Not a bug: shard id sets come back in reverse order.
    ReversedShardIdSets,
}

/// The memory store with one bug.
struct Buggy {
    inner: MemoryLeaseStore,
    bug: Bug,
}

impl Buggy {
    fn new(bug: Bug) -> Self {
        Self { inner: MemoryLeaseStore::new(), bug }
    }

    fn read(&self, mut lease: Lease) -> Lease {
        match self.bug {
            Bug::SubSequenceDropped => {
                if let ExtendedSequenceNumber::Sequence { sub_sequence, .. } = &mut lease.checkpoint {
                    *sub_sequence = 0;
                }
            }
            Bug::ReversedShardIdSets => {
                lease.parent_shard_ids.reverse();
                lease.child_shard_ids.reverse();
            }
            _ => {}
        }
        lease
    }

    /// `fence` with the stored counter in place of the caller's.
    async fn with_stored_counter(&self, fence: &LeaseFence) -> LeaseFence {
        let stored = self.inner.get_lease(&fence.lease_key).await.ok().flatten();
        LeaseFence { counter: stored.map_or(fence.counter, |l| l.lease_counter), ..fence.clone() }
    }
}

#[async_trait]
impl LeaseStore for Buggy {
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        self.inner.create_lease_if_not_exists(lease).await
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        Ok(self.inner.get_lease(lease_key).await?.map(|lease| self.read(lease)))
    }

    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError> {
        let mut page = self.inner.list_leases(page, page_size).await?;
        page.leases = page.leases.into_iter().map(|lease| self.read(lease)).collect();
        if self.bug == Bug::PagesDropLastLease && page.next_page.is_some() {
            page.leases.pop();
        }
        Ok(page)
    }

    async fn list_leases_by_owner(&self, owner: &str) -> Result<Vec<Lease>, LeaseStoreError> {
        let mut all = self.list_all_leases().await?;
        let by_checkpoint_owner = self.bug == Bug::ByOwnerIncludesCheckpointOwner;
        all.retain(|l| {
            l.lease_owner.as_deref() == Some(owner)
                || (by_checkpoint_owner && l.checkpoint_owner.as_deref() == Some(owner))
        });
        Ok(all)
    }

    async fn renew_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        match self.bug {
            Bug::RenewIgnoresCounter => self.inner.renew_lease(&self.with_stored_counter(fence).await).await,
            Bug::RenewUpserts if self.inner.get_lease(&fence.lease_key).await?.is_none() => {
                let lease = Lease {
                    lease_owner: Some(fence.owner.clone()),
                    lease_counter: fence.counter + 1,
                    ..Lease::new_for_shard(&fence.lease_key, ExtendedSequenceNumber::TrimHorizon)
                };
                self.inner.create_lease_if_not_exists(&lease).await?;
                Ok(fence.counter + 1)
            }
            _ => self.inner.renew_lease(fence).await,
        }
    }

    async fn take_lease(&self, key: &str, expected_counter: u64, new_owner: &str) -> Result<Lease, LeaseStoreError> {
        match self.bug {
            Bug::RacyTake => {
                let seen = self.inner.get_lease(key).await?;
                if seen.map(|l| l.lease_counter) != Some(expected_counter) {
                    return Err(LeaseStoreError::condition_failed(key, "take: counter must match"));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                let now = self.inner.get_lease(key).await?.map_or(expected_counter, |l| l.lease_counter);
                self.inner.take_lease(key, now, new_owner).await
            }
            Bug::LostTakeIsTransient => self.inner.take_lease(key, expected_counter, new_owner).await.map_err(|e| {
                if e.is_condition_failed() { LeaseStoreError::transient("take_lease", "conflict") } else { e }
            }),
            _ => self.inner.take_lease(key, expected_counter, new_owner).await,
        }
    }

    async fn release_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.inner.release_lease(fence).await
    }

    async fn evict_lease(&self, key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        let owner = match self.bug {
            Bug::EvictIgnoresOwner => self.inner.get_lease(key).await?.and_then(|l| l.lease_owner),
            _ => None,
        };
        self.inner.evict_lease(key, owner.as_deref().unwrap_or(expected_owner)).await
    }

    async fn assign_for_handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        self.inner.assign_for_handoff(fence, new_owner).await
    }

    async fn update_checkpoint(
        &self,
        fence: &LeaseFence,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<u64, LeaseStoreError> {
        match self.bug {
            Bug::CheckpointIgnoresCounter => {
                self.inner.update_checkpoint(&self.with_stored_counter(fence).await, checkpoint).await
            }
            _ => self.inner.update_checkpoint(fence, checkpoint).await,
        }
    }

    async fn prepare_checkpoint(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        let state = match (self.bug, state) {
            (Bug::PrepareKeepsOldState, None) => {
                self.inner.get_lease(&fence.lease_key).await?.and_then(|l| l.pending_checkpoint_state)
            }
            (_, state) => state,
        };
        self.inner.prepare_checkpoint(fence, pending, state).await
    }

    async fn update_child_shards(&self, fence: &LeaseFence, children: &[String]) -> Result<u64, LeaseStoreError> {
        self.inner.update_child_shards(fence, children).await
    }

    async fn delete_lease(&self, key: &str) -> Result<(), LeaseStoreError> {
        if self.bug == Bug::DeleteAbsentFails && self.inner.get_lease(key).await?.is_none() {
            return Err(LeaseStoreError::condition_failed(key, "delete: must exist"));
        }
        self.inner.delete_lease(key).await
    }

    async fn renew_heartbeat(&self, worker_id: &str, expected: Option<u64>) -> Result<u64, LeaseStoreError> {
        if self.bug == Bug::HeartbeatRenewCreates
            && expected.is_some()
            && !self.inner.list_heartbeats().await?.iter().any(|h| h.worker_id == worker_id)
        {
            return self.inner.renew_heartbeat(worker_id, None).await;
        }
        self.inner.renew_heartbeat(worker_id, expected).await
    }

    async fn list_heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError> {
        self.inner.list_heartbeats().await
    }

    async fn delete_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        self.inner.delete_heartbeat(worker_id).await
    }
}

/// The names of the cases the store fails.
async fn failing_cases(bug: Bug) -> Vec<&'static str> {
    let mut failing = Vec::new();
    for case in contract::cases::<Buggy>() {
        let store = std::sync::Arc::new(Buggy::new(bug));
        if AssertUnwindSafe((case.run)(store)).catch_unwind().await.is_err() {
            failing.push(case.name);
        }
    }
    failing
}

async fn assert_caught(bug: Bug, by: &str) {
    let failing = failing_cases(bug).await;
    assert!(failing.contains(&by), "{bug:?} should fail case `{by}`; the failing cases were {failing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_a_renew_that_ignores_the_counter() {
    assert_caught(Bug::RenewIgnoresCounter, "renew_failures_change_nothing").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_a_take_that_is_not_atomic() {
    assert_caught(Bug::RacyTake, "concurrent_takes_have_one_winner").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_a_checkpoint_that_ignores_the_counter() {
    assert_caught(Bug::CheckpointIgnoresCounter, "checkpoint_rejects_a_stale_counter").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_a_renew_that_creates_an_absent_lease() {
    assert_caught(Bug::RenewUpserts, "writes_to_an_absent_lease_fail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_pages_that_skip_leases() {
    assert_caught(Bug::PagesDropLastLease, "pagination_over_many_leases").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_a_prepare_that_keeps_stale_state() {
    assert_caught(Bug::PrepareKeepsOldState, "prepare_then_checkpoint").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_a_heartbeat_renewal_that_creates() {
    assert_caught(Bug::HeartbeatRenewCreates, "heartbeats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_a_delete_of_an_absent_lease_that_fails() {
    assert_caught(Bug::DeleteAbsentFails, "delete_present_and_absent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_an_owner_listing_that_includes_checkpoint_owners() {
    assert_caught(Bug::ByOwnerIncludesCheckpointOwner, "list_all_and_by_owner").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_a_lost_race_reported_as_transient() {
    assert_caught(Bug::LostTakeIsTransient, "take_rejects_a_stale_counter").await;
    assert_caught(Bug::LostTakeIsTransient, "concurrent_takes_have_one_winner").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_a_lost_sub_sequence_number() {
    assert_caught(Bug::SubSequenceDropped, "every_field_round_trips").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catches_an_evict_that_ignores_the_owner() {
    assert_caught(Bug::EvictIgnoresOwner, "evict").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accepts_shard_id_sets_in_another_order() {
    assert_eq!(failing_cases(Bug::ReversedShardIdSets).await, Vec::<&str>::new());
}
