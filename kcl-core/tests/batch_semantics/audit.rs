//! The history the property test checks: which records finished (processed or accepted by the failure
//! destination), every delivery, and a lease-store decorator that checks each checkpoint write against it at the
//! moment it is made.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{Lease, LeaseFence, LeasePage, LeaseStore, LeaseStoreError, PageToken, WorkerHeartbeat};

/// A record's identity in the history: shard and sequence number (no aggregation in these tests).
pub type Position = (String, ExtendedSequenceNumber);

#[derive(Default)]
pub struct History {
    /// Every record put, per shard, in order, with its partition key.
    pub put: HashMap<String, Vec<(ExtendedSequenceNumber, String)>>,
    /// Records a filter drops (never delivered, count as processed).
    pub filtered: BTreeSet<Position>,
    /// Records whose processing succeeded at least once.
    pub processed: BTreeSet<Position>,
    /// Records the failure destination accepted.
    pub dead_lettered: BTreeSet<Position>,
    /// Every successful processing, in order: (shard, position, partition key).
    pub successes: Vec<(String, ExtendedSequenceNumber, String)>,
    /// Every delivery (one process_records call): shard and its records' (position, key).
    pub deliveries: Vec<(String, Vec<(ExtendedSequenceNumber, String)>)>,
    /// Checkpoint writes that passed a record that had not finished: (shard, checkpoint, unfinished record).
    pub violations: Vec<(String, String, String)>,
    /// Records processed or dead-lettered by the current worker (the run after a restart must redo its share).
    pub current: BTreeSet<Position>,
    pub checkpoint_writes: usize,
}

impl History {
    pub fn finished(&self, position: &Position) -> bool {
        self.processed.contains(position) || self.dead_lettered.contains(position) || self.filtered.contains(position)
    }

    pub fn all_finished(&self) -> bool {
        self.put.iter().all(|(shard, records)| records.iter().all(|(p, _)| self.finished(&(shard.clone(), p.clone()))))
    }

    /// Whether the current worker finished every unfiltered record after `checkpoints` (per shard).
    pub fn finished_after(&self, checkpoints: &HashMap<String, ExtendedSequenceNumber>) -> bool {
        self.put.iter().all(|(shard, records)| {
            records.iter().all(|(p, _)| {
                let position = (shard.clone(), p.clone());
                checkpoints.get(shard).is_some_and(|cp| p <= cp)
                    || self.filtered.contains(&position)
                    || self.current.contains(&position)
            })
        })
    }

    pub fn finished_count(&self) -> usize {
        self.put
            .iter()
            .map(|(shard, records)| records.iter().filter(|(p, _)| self.finished(&(shard.clone(), p.clone()))).count())
            .sum()
    }
}

/// Delegates to a store and checks every checkpoint against the history before writing it.
pub struct AuditStore {
    pub inner: Arc<dyn LeaseStore>,
    pub history: Arc<Mutex<History>>,
}

impl AuditStore {
    fn audit(&self, shard: &str, checkpoint: &ExtendedSequenceNumber) {
        let mut history = self.history.lock().unwrap();
        history.checkpoint_writes += 1;
        let unfinished = history.put.get(shard).and_then(|records| {
            records
                .iter()
                .find(|(p, _)| p <= checkpoint && !history.finished(&(shard.to_owned(), p.clone())))
                .map(|(p, _)| p.to_string())
        });
        if let Some(record) = unfinished {
            history.violations.push((shard.to_owned(), checkpoint.to_string(), record));
        }
    }
}

#[async_trait]
impl LeaseStore for AuditStore {
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        self.inner.create_lease_if_not_exists(lease).await
    }
    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        self.inner.get_lease(lease_key).await
    }
    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError> {
        self.inner.list_leases(page, page_size).await
    }
    async fn renew_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.inner.renew_lease(fence).await
    }
    async fn take_lease(&self, key: &str, counter: u64, owner: &str) -> Result<Lease, LeaseStoreError> {
        self.inner.take_lease(key, counter, owner).await
    }
    async fn release_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.inner.release_lease(fence).await
    }
    async fn evict_lease(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        self.inner.evict_lease(lease_key, expected_owner).await
    }
    async fn assign_for_handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        self.inner.assign_for_handoff(fence, new_owner).await
    }
    async fn update_checkpoint(
        &self,
        fence: &LeaseFence,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<u64, LeaseStoreError> {
        if checkpoint.sequence_number().is_some() {
            self.audit(&fence.lease_key, checkpoint);
        }
        self.inner.update_checkpoint(fence, checkpoint).await
    }
    async fn prepare_checkpoint(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        self.inner.prepare_checkpoint(fence, pending, state).await
    }
    async fn update_child_shards(&self, fence: &LeaseFence, ids: &[String]) -> Result<u64, LeaseStoreError> {
        self.inner.update_child_shards(fence, ids).await
    }
    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseStoreError> {
        self.inner.delete_lease(lease_key).await
    }
    async fn renew_heartbeat(&self, worker_id: &str, expected: Option<u64>) -> Result<u64, LeaseStoreError> {
        self.inner.renew_heartbeat(worker_id, expected).await
    }
    async fn list_heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError> {
        self.inner.list_heartbeats().await
    }
    async fn delete_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        self.inner.delete_heartbeat(worker_id).await
    }
}
