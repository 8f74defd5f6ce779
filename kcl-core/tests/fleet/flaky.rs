//! A store wrapper whose calls fail transiently at random: some before reaching the store, some AFTER the write
//! was applied (the unknown outcome a timeout produces). Deterministic for a given seed.

use std::sync::Arc;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{Lease, LeaseFence, LeasePage, LeaseStore, LeaseStoreError, PageToken, WorkerHeartbeat};

pub struct FlakyStore {
    inner: Arc<dyn LeaseStore>,
    /// Per mille of calls failing before the store sees them, and of writes failing after they were applied.
    before: u64,
    after: u64,
    state: Mutex<u64>,
}

enum Fate {
    FailBefore,
    FailAfter,
    Ok,
}

impl FlakyStore {
    pub fn new(inner: Arc<dyn LeaseStore>, seed: u64, before_per_mille: u64, after_per_mille: u64) -> Self {
        Self { inner, before: before_per_mille, after: after_per_mille, state: Mutex::new(seed | 1) }
    }

    fn fate(&self) -> Fate {
        let mut x = self.state.lock().unwrap();
        // xorshift64
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let roll = *x % 1000;
        if roll < self.before {
            Fate::FailBefore
        } else if roll < self.before + self.after {
            Fate::FailAfter
        } else {
            Fate::Ok
        }
    }

    async fn read<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, LeaseStoreError>>,
    ) -> Result<T, LeaseStoreError> {
        match self.fate() {
            Fate::FailBefore => Err(LeaseStoreError::transient(op, "injected failure")),
            _ => call.await,
        }
    }

    async fn write<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, LeaseStoreError>>,
    ) -> Result<T, LeaseStoreError> {
        match self.fate() {
            Fate::FailBefore => Err(LeaseStoreError::transient(op, "injected failure")),
            Fate::FailAfter => {
                let _applied = call.await;
                Err(LeaseStoreError::transient(op, "injected timeout after the write"))
            }
            Fate::Ok => call.await,
        }
    }
}

#[async_trait]
impl LeaseStore for FlakyStore {
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        self.inner.create_lease_if_not_exists(lease).await
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        self.read("get_lease", self.inner.get_lease(lease_key)).await
    }

    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError> {
        self.read("list_leases", self.inner.list_leases(page, page_size)).await
    }

    async fn renew_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.write("renew_lease", self.inner.renew_lease(fence)).await
    }

    async fn take_lease(&self, lease_key: &str, expected: u64, new_owner: &str) -> Result<Lease, LeaseStoreError> {
        self.write("take_lease", self.inner.take_lease(lease_key, expected, new_owner)).await
    }

    async fn release_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.write("release_lease", self.inner.release_lease(fence)).await
    }

    async fn evict_lease(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        self.write("evict_lease", self.inner.evict_lease(lease_key, expected_owner)).await
    }

    async fn assign_for_handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        self.write("assign_for_handoff", self.inner.assign_for_handoff(fence, new_owner)).await
    }

    async fn update_checkpoint(&self, fence: &LeaseFence, cp: &ExtendedSequenceNumber) -> Result<u64, LeaseStoreError> {
        self.write("update_checkpoint", self.inner.update_checkpoint(fence, cp)).await
    }

    async fn prepare_checkpoint(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        self.write("prepare_checkpoint", self.inner.prepare_checkpoint(fence, pending, state)).await
    }

    async fn update_child_shards(&self, fence: &LeaseFence, children: &[String]) -> Result<u64, LeaseStoreError> {
        self.write("update_child_shards", self.inner.update_child_shards(fence, children)).await
    }

    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseStoreError> {
        self.write("delete_lease", self.inner.delete_lease(lease_key)).await
    }

    async fn renew_heartbeat(&self, worker_id: &str, expected: Option<u64>) -> Result<u64, LeaseStoreError> {
        self.write("renew_heartbeat", self.inner.renew_heartbeat(worker_id, expected)).await
    }

    async fn list_heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError> {
        self.read("list_heartbeats", self.inner.list_heartbeats()).await
    }

    async fn delete_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        self.write("delete_heartbeat", self.inner.delete_heartbeat(worker_id)).await
    }
}
