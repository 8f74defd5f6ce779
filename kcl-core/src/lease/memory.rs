//! `MemoryLeaseStore`: the in-process reference implementation of [`LeaseStore`].
//!
//! Every operation takes one mutex, so each conditional write is trivially atomic. It backs the zero-setup
//! quickstart and deterministic tests, and is the executable reading of the trait contract: when a store disagrees
//! with this one, read the contract in [`super::store`] to see which is wrong.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::store::{LeasePage, LeaseStore, PageToken, UnreadableLease};
use super::{Lease, LeaseFence, WorkerHeartbeat};
use crate::error::LeaseStoreError;
use crate::types::ExtendedSequenceNumber;

/// Read and write request counts, for comparing renewal strategies without a metrics recorder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Calls that only read (get, list, list heartbeats).
    pub reads: u64,
    /// Calls that write or try to (including ones whose condition failed).
    pub writes: u64,
}

#[derive(Default)]
struct State {
    leases: BTreeMap<String, Lease>,
    /// Items planted by [`MemoryLeaseStore::insert_unreadable`]: key → reason.
    unreadable: BTreeMap<String, String>,
    heartbeats: BTreeMap<String, u64>,
}

/// An in-memory [`LeaseStore`]. Cheap to clone behind an `Arc`; shared by every worker of an in-process fleet.
#[derive(Default)]
pub struct MemoryLeaseStore {
    state: Mutex<State>,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl std::fmt::Debug for MemoryLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLeaseStore").field("requests", &self.request_counts()).finish_non_exhaustive()
    }
}

impl MemoryLeaseStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many read and write calls the store has served.
    pub fn request_counts(&self) -> RequestCounts {
        RequestCounts { reads: self.reads.load(Ordering::Relaxed), writes: self.writes.load(Ordering::Relaxed) }
    }

    /// Plants an item this store "cannot read" under `lease_key` (replacing any lease there), so that tests can
    /// exercise how the coordinator, shard sync and tools treat the unreadable items a real table may hold.
    /// It is listed on the first page of every listing, blocks `create_lease_if_not_exists`, is absent for
    /// `get_lease` and every write, and `delete_lease` removes it.
    pub fn insert_unreadable(&self, lease_key: &str, reason: &str) {
        self.write(|state| {
            state.leases.remove(lease_key);
            state.unreadable.insert(lease_key.to_owned(), reason.to_owned());
        })
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        self.reads.fetch_add(1, Ordering::Relaxed);
        // A poisoned lock only means a panic elsewhere while holding it; the maps are still consistent because
        // every mutation below is applied only after all of its checks pass.
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&state)
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut state)
    }

    /// Applies `change` to the lease at `key` when `condition` holds; bumps the counter and returns it.
    fn fenced_update(
        &self,
        key: &str,
        reason: &'static str,
        condition: impl FnOnce(&Lease) -> bool,
        change: impl FnOnce(&mut Lease),
    ) -> Result<u64, LeaseStoreError> {
        self.write(|state| match state.leases.get_mut(key) {
            Some(lease) if condition(lease) => {
                change(lease);
                lease.lease_counter += 1;
                Ok(lease.lease_counter)
            }
            _ => Err(LeaseStoreError::condition_failed(key, reason)),
        })
    }
}

fn owned_at(lease: &Lease, fence: &LeaseFence) -> bool {
    lease.lease_owner.as_deref() == Some(fence.owner.as_str()) && lease.lease_counter == fence.counter
}

fn may_checkpoint(lease: &Lease, fence: &LeaseFence) -> bool {
    lease.lease_counter == fence.counter && lease.checkpointing_owner() == Some(fence.owner.as_str())
}

#[async_trait]
impl LeaseStore for MemoryLeaseStore {
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        self.write(|state| {
            if state.leases.contains_key(&lease.lease_key) || state.unreadable.contains_key(&lease.lease_key) {
                return Ok(false);
            }
            state.leases.insert(lease.lease_key.clone(), lease.clone());
            Ok(true)
        })
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        self.read(|state| Ok(state.leases.get(lease_key).cloned()))
    }

    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError> {
        let page_size = page_size.max(1);
        self.read(|state| {
            let start = match &page {
                Some(PageToken(after)) => Bound::Excluded(after.clone()),
                None => Bound::Unbounded,
            };
            let leases: Vec<Lease> =
                state.leases.range((start, Bound::Unbounded)).take(page_size).map(|(_, l)| l.clone()).collect();
            let next_page = match leases.last() {
                Some(last)
                    if state
                        .leases
                        .range((Bound::Excluded(last.lease_key.clone()), Bound::Unbounded))
                        .next()
                        .is_some() =>
                {
                    Some(PageToken(last.lease_key.clone()))
                }
                _ => None,
            };
            let unreadable = match page {
                Some(_) => Vec::new(),
                None => state.unreadable.iter().map(|(key, reason)| UnreadableLease::new(key, reason)).collect(),
            };
            Ok(LeasePage { leases, unreadable, next_page })
        })
    }

    async fn renew_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.fenced_update(
            &fence.lease_key,
            "renew: owner and counter must match and no handoff may be in progress",
            |l| owned_at(l, fence) && l.checkpoint_owner.is_none(),
            |_| {},
        )
    }

    async fn take_lease(
        &self,
        lease_key: &str,
        expected_counter: u64,
        new_owner: &str,
    ) -> Result<Lease, LeaseStoreError> {
        self.write(|state| match state.leases.get_mut(lease_key) {
            Some(lease) if lease.lease_counter == expected_counter => {
                if lease.lease_owner.as_deref() != Some(new_owner) {
                    lease.owner_switches_since_checkpoint += 1;
                }
                lease.lease_owner = Some(new_owner.to_owned());
                lease.checkpoint_owner = None;
                lease.lease_counter += 1;
                Ok(lease.clone())
            }
            _ => Err(LeaseStoreError::condition_failed(lease_key, "take: counter must match")),
        })
    }

    async fn release_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.fenced_update(
            &fence.lease_key,
            "release: owner and counter must match",
            |l| owned_at(l, fence),
            |l| {
                l.lease_owner = None;
                l.checkpoint_owner = None;
            },
        )
    }

    async fn evict_lease(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        self.fenced_update(
            lease_key,
            "evict: owner must match",
            |l| l.lease_owner.as_deref() == Some(expected_owner),
            |l| {
                l.lease_owner = None;
                l.checkpoint_owner = None;
            },
        )
    }

    async fn assign_for_handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        self.fenced_update(
            &fence.lease_key,
            "handoff: owner and counter must match",
            |l| owned_at(l, fence),
            |l| {
                l.checkpoint_owner = l.lease_owner.take();
                l.lease_owner = Some(new_owner.to_owned());
            },
        )
    }

    async fn update_checkpoint(
        &self,
        fence: &LeaseFence,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<u64, LeaseStoreError> {
        self.fenced_update(
            &fence.lease_key,
            "checkpoint: counter must match and the caller must hold the checkpointing right",
            |l| may_checkpoint(l, fence),
            |l| {
                l.checkpoint = checkpoint.clone();
                l.pending_checkpoint = None;
                l.pending_checkpoint_state = None;
                l.owner_switches_since_checkpoint = 0;
                l.checkpoint_owner = None;
            },
        )
    }

    async fn prepare_checkpoint(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        self.fenced_update(
            &fence.lease_key,
            "prepare checkpoint: counter must match and the caller must hold the checkpointing right",
            |l| may_checkpoint(l, fence),
            |l| {
                l.pending_checkpoint = Some(pending.clone());
                l.pending_checkpoint_state = state;
            },
        )
    }

    async fn update_child_shards(
        &self,
        fence: &LeaseFence,
        child_shard_ids: &[String],
    ) -> Result<u64, LeaseStoreError> {
        self.fenced_update(
            &fence.lease_key,
            "child shards: counter must match and the caller must hold the checkpointing right",
            |l| may_checkpoint(l, fence),
            |l| l.child_shard_ids = child_shard_ids.to_vec(),
        )
    }

    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseStoreError> {
        self.write(|state| {
            state.leases.remove(lease_key);
            state.unreadable.remove(lease_key);
            Ok(())
        })
    }

    async fn renew_heartbeat(&self, worker_id: &str, expected_counter: Option<u64>) -> Result<u64, LeaseStoreError> {
        self.write(|state| {
            let current = state.heartbeats.get(worker_id).copied();
            if current != expected_counter {
                return Err(LeaseStoreError::condition_failed(worker_id, "heartbeat: counter must match"));
            }
            let next = current.map_or(1, |c| c + 1);
            state.heartbeats.insert(worker_id.to_owned(), next);
            Ok(next)
        })
    }

    async fn list_heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError> {
        self.read(|state| {
            Ok(state
                .heartbeats
                .iter()
                .map(|(worker_id, &counter)| WorkerHeartbeat { worker_id: worker_id.clone(), counter })
                .collect())
        })
    }

    async fn delete_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        self.write(|state| {
            state.heartbeats.remove(worker_id);
            Ok(())
        })
    }
}
