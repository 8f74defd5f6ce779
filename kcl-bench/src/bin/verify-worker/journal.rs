//! The journal: one JSON line per lifecycle step of this process (start, exit, each processor's init, checkpoints
//! and end) and per lease-table write, before it is sent (`call`) and when it returns (`ret`). The chaos verifier
//! (`kcl_tests::verify`) rebuilds each lease's history from the journals of all workers, so it can tell a checkpoint
//! accepted from a worker that no longer held the lease.
//!
//! Every line is one `write(2)` on an unbuffered `O_APPEND` file: a SIGKILL loses no line that was written, and a
//! `call` without its `ret` means "sent, outcome unknown". Lines are not fsynced (a process crash, not a machine
//! crash, is what the chaos suite injects).
//!
//! Common fields: `t` (microseconds of `CLOCK_MONOTONIC`, `kcl_tests::verify::evidence_now_us`: every process of a
//! test runs on one machine, one clock that a skewed wall clock does not move),
//! `ev` (the event). Positions are written as `SEQUENCE/SUB` or a sentinel name (`TRIM_HORIZON`, `SHARD_END`).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{Lease, LeaseFence, LeasePage, LeaseStore, LeaseStoreError, PageToken, WorkerHeartbeat};
use serde_json::{Value, json};

/// Now on the evidence clock (µs of `CLOCK_MONOTONIC`).
pub fn now_us() -> u64 {
    kcl_tests::verify::evidence_now_us()
}

/// The wall clock in µs since the Unix epoch (journaled once at start, so a skewed clock can be measured).
pub fn wall_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Appends journal lines; a journal without a file discards them.
pub struct Journal {
    file: Option<Mutex<File>>,
    next_call: AtomicU64,
}

impl Journal {
    /// A journal appending to `path` (created if missing), or a discarding one.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(path) => Some(Mutex::new(File::options().create(true).append(true).open(path)?)),
            None => None,
        };
        Ok(Self { file, next_call: AtomicU64::new(0) })
    }

    /// Writes `event` (a JSON object) with the time added as `t`.
    pub fn event(&self, mut event: Value) {
        let Some(file) = &self.file else { return };
        if let Some(object) = event.as_object_mut() {
            object.insert("t".to_owned(), json!(now_us()));
        }
        let mut line = event.to_string();
        line.push('\n');
        // A poisoned lock only means another line failed half-way; keep journaling.
        let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = file.write_all(line.as_bytes()) {
            tracing::error!(%error, "cannot write the journal");
        }
    }

    /// Journals a lease-table write about to be sent; returns its call id for [`ret`](Self::ret).
    fn call(&self, mut event: Value) -> u64 {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        if let Some(object) = event.as_object_mut() {
            object.insert("ev".to_owned(), json!("call"));
            object.insert("id".to_owned(), json!(id));
        }
        self.event(event);
        id
    }

    /// Journals how call `id` ended; `counter` is the lease counter a successful write left.
    fn ret<T>(&self, id: u64, result: &Result<T, LeaseStoreError>, counter: impl FnOnce(&T) -> Option<u64>) {
        let event = match result {
            Ok(value) => json!({"ev": "ret", "id": id, "result": "ok", "counter": counter(value)}),
            Err(error) => json!({"ev": "ret", "id": id, "result": error_class(error)}),
        };
        self.event(event);
    }
}

fn error_class(error: &LeaseStoreError) -> &'static str {
    match error {
        LeaseStoreError::ConditionFailed { .. } => "condition",
        LeaseStoreError::Transient { .. } => "transient",
        LeaseStoreError::Fatal { .. } => "fatal",
    }
}

/// Text form of a position: `SEQUENCE/SUB` or the sentinel's name.
pub fn position(position: &ExtendedSequenceNumber) -> String {
    match position.sequence_number() {
        Some(sequence) => format!("{sequence}/{}", position.sub_sequence()),
        None => position.checkpoint_str().to_owned(),
    }
}

fn fence(op: &str, fence: &LeaseFence) -> Value {
    json!({"op": op, "lease": fence.lease_key, "owner": fence.owner, "counter": fence.counter})
}

/// A [`LeaseStore`] that journals every lease write (not heartbeats, not reads) of the store it wraps.
pub struct JournalingStore {
    inner: std::sync::Arc<dyn LeaseStore>,
    journal: std::sync::Arc<Journal>,
}

impl JournalingStore {
    /// Wraps `inner`.
    pub fn new(inner: std::sync::Arc<dyn LeaseStore>, journal: std::sync::Arc<Journal>) -> Self {
        Self { inner, journal }
    }
}

#[async_trait]
impl LeaseStore for JournalingStore {
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        let id = self.journal.call(json!({
            "op": "create", "lease": lease.lease_key, "counter": lease.lease_counter,
            "to": lease.lease_owner, "checkpoint": position(&lease.checkpoint),
        }));
        let result = self.inner.create_lease_if_not_exists(lease).await;
        // A lease that existed already was not written: journal it like a failed condition.
        let result = result.and_then(|created| {
            if created { Ok(()) } else { Err(LeaseStoreError::condition_failed(&lease.lease_key, "exists")) }
        });
        self.journal.ret(id, &result, |()| Some(lease.lease_counter));
        result.map(|()| true).or_else(|error| if error.is_condition_failed() { Ok(false) } else { Err(error) })
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        self.inner.get_lease(lease_key).await
    }

    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError> {
        self.inner.list_leases(page, page_size).await
    }

    async fn list_all_leases(&self) -> Result<Vec<Lease>, LeaseStoreError> {
        self.inner.list_all_leases().await
    }

    async fn list_leases_by_owner(&self, owner: &str) -> Result<Vec<Lease>, LeaseStoreError> {
        self.inner.list_leases_by_owner(owner).await
    }

    async fn renew_lease(&self, f: &LeaseFence) -> Result<u64, LeaseStoreError> {
        let id = self.journal.call(fence("renew", f));
        let result = self.inner.renew_lease(f).await;
        self.journal.ret(id, &result, |c| Some(*c));
        result
    }

    async fn take_lease(&self, lease_key: &str, expected: u64, new_owner: &str) -> Result<Lease, LeaseStoreError> {
        let id = self.journal.call(json!({"op": "take", "lease": lease_key, "counter": expected, "to": new_owner}));
        let result = self.inner.take_lease(lease_key, expected, new_owner).await;
        self.journal.ret(id, &result, |lease| Some(lease.lease_counter));
        result
    }

    async fn release_lease(&self, f: &LeaseFence) -> Result<u64, LeaseStoreError> {
        let id = self.journal.call(fence("release", f));
        let result = self.inner.release_lease(f).await;
        self.journal.ret(id, &result, |c| Some(*c));
        result
    }

    async fn evict_lease(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        let id = self.journal.call(json!({"op": "evict", "lease": lease_key, "owner": expected_owner}));
        let result = self.inner.evict_lease(lease_key, expected_owner).await;
        self.journal.ret(id, &result, |c| Some(*c));
        result
    }

    async fn assign_for_handoff(&self, f: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        let mut event = fence("handoff", f);
        event["to"] = json!(new_owner);
        let id = self.journal.call(event);
        let result = self.inner.assign_for_handoff(f, new_owner).await;
        self.journal.ret(id, &result, |c| Some(*c));
        result
    }

    async fn update_checkpoint(&self, f: &LeaseFence, cp: &ExtendedSequenceNumber) -> Result<u64, LeaseStoreError> {
        let mut event = fence("checkpoint", f);
        event["checkpoint"] = json!(position(cp));
        let id = self.journal.call(event);
        let result = self.inner.update_checkpoint(f, cp).await;
        self.journal.ret(id, &result, |c| Some(*c));
        result
    }

    async fn prepare_checkpoint(
        &self,
        f: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        let mut event = fence("prepare", f);
        event["checkpoint"] = json!(position(pending));
        let id = self.journal.call(event);
        let result = self.inner.prepare_checkpoint(f, pending, state).await;
        self.journal.ret(id, &result, |c| Some(*c));
        result
    }

    async fn update_child_shards(&self, f: &LeaseFence, children: &[String]) -> Result<u64, LeaseStoreError> {
        let id = self.journal.call(fence("children", f));
        let result = self.inner.update_child_shards(f, children).await;
        self.journal.ret(id, &result, |c| Some(*c));
        result
    }

    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseStoreError> {
        let id = self.journal.call(json!({"op": "delete", "lease": lease_key}));
        let result = self.inner.delete_lease(lease_key).await;
        self.journal.ret(id, &result, |()| None);
        result
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
