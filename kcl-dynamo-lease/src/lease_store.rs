//! The [`LeaseStore`] impl of [`DynamoLeaseStore`]: each method is one of the per-concern operations (`store`,
//! `writes`, `owner_index`, `heartbeat`), so this is the top file of the crate.

use async_trait::async_trait;
use bytes::Bytes;
use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{Lease, LeaseFence, LeasePage, LeaseStore, LeaseStoreError, PageToken, WorkerHeartbeat};

use crate::schema;
use crate::store::DynamoLeaseStore;

#[async_trait]
impl LeaseStore for DynamoLeaseStore {
    /// PutItem of the whole item (the only whole-item write) with `attribute_not_exists(leaseKey)`.
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        self.create(lease).await
    }

    /// Consistent GetItem. An item this store cannot read is logged and reported as absent.
    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        Ok(self.get_item("get_lease", lease_key).await?.and_then(|item| schema::lease_or_skip(&self.table, &item)))
    }

    /// One consistent Scan request with `Limit = page_size`. Unreadable items and other KCL entities are skipped, so
    /// a page can be shorter than the limit (even empty) and still have a next page; the last page may be empty.
    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError> {
        self.scan_page(page, page_size).await
    }

    /// With an active `LeaseOwnerToLeaseKeyIndex`: a Query of the index for the keys, then consistent BatchGetItem
    /// of the items, re-checked against `owner`. The index itself is eventually consistent, so a lease acquired
    /// a moment ago can be missing from the result (never one the owner no longer holds). Without the index: a
    /// consistent scan of the table.
    async fn list_leases_by_owner(&self, owner: &str) -> Result<Vec<Lease>, LeaseStoreError> {
        if let Some(leases) = self.list_by_owner_index(owner).await? {
            return Ok(leases);
        }
        let mut all = self.list_all_leases().await?;
        all.retain(|lease| lease.lease_owner.as_deref() == Some(owner));
        Ok(all)
    }

    async fn renew_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.renew(fence).await
    }

    /// An UpdateItem conditioned on the counter (and on the item existing). To count an owner switch exactly when
    /// the owner changes, the first attempt also requires the stored owner to differ from `new_owner` (the usual
    /// case); if that was the only reason it failed, a second attempt takes it without counting a switch.
    async fn take_lease(
        &self,
        lease_key: &str,
        expected_counter: u64,
        new_owner: &str,
    ) -> Result<Lease, LeaseStoreError> {
        self.take(lease_key, expected_counter, new_owner).await
    }

    async fn release_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.release(fence).await
    }

    async fn evict_lease(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        self.evict(lease_key, expected_owner).await
    }

    async fn assign_for_handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        self.handoff(fence, new_owner).await
    }

    async fn update_checkpoint(
        &self,
        fence: &LeaseFence,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<u64, LeaseStoreError> {
        self.checkpoint(fence, checkpoint).await
    }

    async fn prepare_checkpoint(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        self.prepare(fence, pending, state).await
    }

    async fn update_child_shards(
        &self,
        fence: &LeaseFence,
        child_shard_ids: &[String],
    ) -> Result<u64, LeaseStoreError> {
        self.child_shards(fence, child_shard_ids).await
    }

    /// Unconditional DeleteItem (deleting an absent item succeeds in DynamoDB too).
    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseStoreError> {
        self.delete(lease_key).await
    }

    async fn renew_heartbeat(&self, worker_id: &str, expected_counter: Option<u64>) -> Result<u64, LeaseStoreError> {
        self.heartbeat(worker_id, expected_counter).await
    }

    async fn list_heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError> {
        self.heartbeats().await
    }

    async fn delete_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        self.remove_heartbeat(worker_id).await
    }
}
