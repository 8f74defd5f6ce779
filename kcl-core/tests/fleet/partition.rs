//! A store wrapper that can cut one worker off from the store (every call fails as transient), and remembers the
//! last counter that worker's writes produced per lease, to replay its stale fence later. It can also slow the
//! worker's full listings down, freeze what they return, and tells when the last one returned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{Lease, LeaseFence, LeasePage, LeaseStore, LeaseStoreError, PageToken, WorkerHeartbeat};
use tokio::time::Instant;

pub struct PartitionableStore {
    inner: Arc<dyn LeaseStore>,
    worker: String,
    cut: AtomicBool,
    last_counter: Mutex<HashMap<String, u64>>,
    listing_delay: Mutex<Duration>,
    last_listing: Mutex<Option<Instant>>,
    /// While frozen: the page every full listing returns (taken at the first listing after freezing).
    frozen: Mutex<Option<Option<LeasePage>>>,
}

impl PartitionableStore {
    pub fn new(inner: Arc<dyn LeaseStore>, worker: &str) -> Self {
        Self {
            inner,
            worker: worker.to_owned(),
            cut: AtomicBool::new(false),
            last_counter: Mutex::default(),
            listing_delay: Mutex::default(),
            last_listing: Mutex::default(),
            frozen: Mutex::default(),
        }
    }

    /// While `frozen`, every full listing returns what the first one after freezing returned: the worker keeps
    /// listing but sees the table as it was (stale counters, stale owners).
    pub fn freeze_listings(&self, frozen: bool) {
        *self.frozen.lock().unwrap() = frozen.then_some(None);
    }

    /// Delays every page of a full listing (not the by-owner reads of the assignment poll) by `delay`.
    pub fn slow_listings(&self, delay: Duration) {
        *self.listing_delay.lock().unwrap() = delay;
    }

    /// When the last page of a listing returned.
    pub fn last_listing(&self) -> Option<Instant> {
        *self.last_listing.lock().unwrap()
    }

    pub fn partition(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    /// The fence of this worker's last successful write to `lease_key`.
    pub fn last_fence(&self, lease_key: &str) -> Option<LeaseFence> {
        let counter = *self.last_counter.lock().unwrap().get(lease_key)?;
        Some(LeaseFence { lease_key: lease_key.to_owned(), owner: self.worker.clone(), counter })
    }

    fn check(&self, operation: &'static str) -> Result<(), LeaseStoreError> {
        if self.cut.load(Ordering::SeqCst) {
            Err(LeaseStoreError::transient(operation, "network partition (test)"))
        } else {
            Ok(())
        }
    }

    fn remember(&self, key: &str, result: &Result<u64, LeaseStoreError>) {
        if let Ok(counter) = result {
            self.last_counter.lock().unwrap().insert(key.to_owned(), *counter);
        }
    }
}

#[async_trait]
impl LeaseStore for PartitionableStore {
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        self.check("create_lease_if_not_exists")?;
        self.inner.create_lease_if_not_exists(lease).await
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        self.check("get_lease")?;
        self.inner.get_lease(lease_key).await
    }

    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError> {
        self.check("list_leases")?;
        let delay = *self.listing_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let frozen = self.frozen.lock().unwrap().clone();
        let page = match frozen {
            Some(Some(snapshot)) => Ok(snapshot),
            Some(None) => {
                let page = self.inner.list_leases(page, page_size).await?;
                assert!(page.next_page.is_none(), "freeze_listings supports one-page tables");
                if let Some(slot) = self.frozen.lock().unwrap().as_mut() {
                    *slot = Some(page.clone());
                }
                Ok(page)
            }
            None => self.inner.list_leases(page, page_size).await,
        };
        *self.last_listing.lock().unwrap() = Some(Instant::now());
        page
    }

    async fn list_leases_by_owner(&self, owner: &str) -> Result<Vec<Lease>, LeaseStoreError> {
        self.check("list_leases_by_owner")?;
        self.inner.list_leases_by_owner(owner).await
    }

    async fn renew_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.check("renew_lease")?;
        let result = self.inner.renew_lease(fence).await;
        self.remember(&fence.lease_key, &result);
        result
    }

    async fn take_lease(&self, lease_key: &str, expected: u64, new_owner: &str) -> Result<Lease, LeaseStoreError> {
        self.check("take_lease")?;
        let result = self.inner.take_lease(lease_key, expected, new_owner).await;
        if let Ok(lease) = &result
            && new_owner == self.worker
        {
            self.remember(lease_key, &Ok(lease.lease_counter));
        }
        result
    }

    async fn release_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.check("release_lease")?;
        self.inner.release_lease(fence).await
    }

    async fn evict_lease(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        self.check("evict_lease")?;
        self.inner.evict_lease(lease_key, expected_owner).await
    }

    async fn assign_for_handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        self.check("assign_for_handoff")?;
        self.inner.assign_for_handoff(fence, new_owner).await
    }

    async fn update_checkpoint(&self, fence: &LeaseFence, cp: &ExtendedSequenceNumber) -> Result<u64, LeaseStoreError> {
        self.check("update_checkpoint")?;
        let result = self.inner.update_checkpoint(fence, cp).await;
        self.remember(&fence.lease_key, &result);
        result
    }

    async fn prepare_checkpoint(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        self.check("prepare_checkpoint")?;
        let result = self.inner.prepare_checkpoint(fence, pending, state).await;
        self.remember(&fence.lease_key, &result);
        result
    }

    async fn update_child_shards(&self, fence: &LeaseFence, children: &[String]) -> Result<u64, LeaseStoreError> {
        self.check("update_child_shards")?;
        let result = self.inner.update_child_shards(fence, children).await;
        self.remember(&fence.lease_key, &result);
        result
    }

    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseStoreError> {
        self.check("delete_lease")?;
        self.inner.delete_lease(lease_key).await
    }

    async fn renew_heartbeat(&self, worker_id: &str, expected: Option<u64>) -> Result<u64, LeaseStoreError> {
        self.check("renew_heartbeat")?;
        self.inner.renew_heartbeat(worker_id, expected).await
    }

    async fn list_heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError> {
        self.check("list_heartbeats")?;
        self.inner.list_heartbeats().await
    }

    async fn delete_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        self.check("delete_heartbeat")?;
        self.inner.delete_heartbeat(worker_id).await
    }
}
