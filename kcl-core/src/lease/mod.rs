//! Leases: which worker owns which shard, and how far it has checkpointed.
//!
//! * [`Lease`] — one row of the lease table (schema compatible with Java KCL).
//! * [`LeaseStore`] — the storage trait, with its contract; [`MemoryLeaseStore`] is the in-process reference store.
//! * [`coordinator`] — the lease coordinator: renew, take, balance, hand off, self-fence.
//! * `contract` (feature `test-util`) — the public contract suite for any store.
//! * `FaultyLeaseStore` (feature `test-util`) — wraps any store and injects transient failures, latency and lost
//!   responses, for fleet and chaos tests.
//! * `fleet` (feature `test-util`) — a fleet of coordinators with simulated processors on any store, and the
//!   timeline checks (no lease processed twice at once) fleet tests assert.

use std::fmt;

use bytes::Bytes;

use crate::types::{ExtendedSequenceNumber, HashKeyRange};

pub mod coordinator;
mod memory;
pub mod store;

#[cfg(feature = "test-util")]
pub mod contract;
#[cfg(feature = "test-util")]
mod faulty;
#[cfg(feature = "test-util")]
pub mod fleet;

pub use crate::error::LeaseStoreError;
pub use coordinator::{
    LeaseCoordinator, LeaseCoordinatorConfig, LeaseCoordinatorConfigBuilder, LeaseCoordinatorHandle, LeaseEvent,
    LeaseGeneration, LostReason, RenewalMode,
};
#[cfg(feature = "test-util")]
pub use faulty::{FaultConfig, FaultStats, FaultSwitch, FaultTarget, FaultyLeaseStore};
pub use memory::{MemoryLeaseStore, RequestCounts};
pub use store::{LeaseListing, LeasePage, LeaseStore, PageToken, UnreadableLease};

/// One lease: a shard of a stream, its owner, its fencing counter and its checkpoint.
///
/// Field names follow the Java KCL lease table attributes (`leaseKey`, `leaseOwner`, `leaseCounter`, …).
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    /// `leaseKey`: the shard id, or `account:stream:creationEpoch:shardId` in multi-stream applications.
    pub lease_key: String,
    /// `leaseOwner`: the worker id holding the lease; `None` when unowned.
    pub lease_owner: Option<String>,
    /// `leaseCounter`: the fencing token (see the [`LeaseStore`] contract).
    pub lease_counter: u64,
    /// `ownerSwitchesSinceCheckpoint`.
    pub owner_switches_since_checkpoint: u64,
    /// `checkpoint` + `checkpointSubSequenceNumber`.
    pub checkpoint: ExtendedSequenceNumber,
    /// `pendingCheckpoint` + `pendingCheckpointSubSequenceNumber`: a prepared, not yet committed checkpoint.
    pub pending_checkpoint: Option<ExtendedSequenceNumber>,
    /// `pendingCheckpointState`: application state stored with the prepared checkpoint.
    pub pending_checkpoint_state: Option<Bytes>,
    /// `parentShardId` (a string set in DynamoDB): zero, one or two parents. A set: stores need not keep the order.
    pub parent_shard_ids: Vec<String>,
    /// `childShardIds` (a string set): written when the shard ends. Stores need not keep the order.
    pub child_shard_ids: Vec<String>,
    /// `startingHashKey` / `endingHashKey`.
    pub hash_key_range: Option<HashKeyRange>,
    /// `checkpointOwner` (Java KCL 3.x graceful handoff): the previous owner allowed to write the final checkpoint.
    pub checkpoint_owner: Option<String>,
    /// `streamName` in multi-stream applications: the stream identifier `account:stream:creationEpoch`.
    pub stream_identifier: Option<String>,
    /// `shardId` in multi-stream applications; equals `lease_key` in single-stream ones.
    pub shard_id: String,
}

impl Lease {
    /// A fresh, unowned lease for a shard of a single-stream application.
    pub fn new_for_shard(shard_id: impl Into<String>, checkpoint: ExtendedSequenceNumber) -> Self {
        let shard_id = shard_id.into();
        Self {
            lease_key: shard_id.clone(),
            lease_owner: None,
            lease_counter: 0,
            owner_switches_since_checkpoint: 0,
            checkpoint,
            pending_checkpoint: None,
            pending_checkpoint_state: None,
            parent_shard_ids: Vec::new(),
            child_shard_ids: Vec::new(),
            hash_key_range: None,
            checkpoint_owner: None,
            stream_identifier: None,
            shard_id,
        }
    }

    /// A fresh, unowned lease for a shard of one stream of a multi-stream application; the key is
    /// `stream_identifier:shard_id`, as Java KCL writes it.
    pub fn new_for_stream_shard(
        stream_identifier: impl Into<String>,
        shard_id: impl Into<String>,
        checkpoint: ExtendedSequenceNumber,
    ) -> Self {
        let stream_identifier = stream_identifier.into();
        let mut lease = Self::new_for_shard(shard_id, checkpoint);
        lease.lease_key = format!("{stream_identifier}:{}", lease.shard_id);
        lease.stream_identifier = Some(stream_identifier);
        lease
    }

    /// The fence for a write made as the lease's current owner; `None` when unowned.
    pub fn fence(&self) -> Option<LeaseFence> {
        Some(LeaseFence {
            lease_key: self.lease_key.clone(),
            owner: self.lease_owner.clone()?,
            counter: self.lease_counter,
        })
    }

    /// Who may write checkpoints now: `checkpoint_owner` during a handoff, otherwise the owner.
    pub fn checkpointing_owner(&self) -> Option<&str> {
        self.checkpoint_owner.as_deref().or(self.lease_owner.as_deref())
    }
}

// Hand-written so that application state (which may hold user data) never reaches a log line.
impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("lease_key", &self.lease_key)
            .field("lease_owner", &self.lease_owner)
            .field("lease_counter", &self.lease_counter)
            .field("owner_switches_since_checkpoint", &self.owner_switches_since_checkpoint)
            .field("checkpoint", &self.checkpoint)
            .field("pending_checkpoint", &self.pending_checkpoint)
            .field("pending_checkpoint_state_len", &self.pending_checkpoint_state.as_ref().map(Bytes::len))
            .field("parent_shard_ids", &self.parent_shard_ids)
            .field("child_shard_ids", &self.child_shard_ids)
            .field("hash_key_range", &self.hash_key_range)
            .field("checkpoint_owner", &self.checkpoint_owner)
            .field("stream_identifier", &self.stream_identifier)
            .field("shard_id", &self.shard_id)
            .finish()
    }
}

/// What a fenced write asserts: "this lease is still owned by `owner` at counter `counter`".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseFence {
    /// The lease key.
    pub lease_key: String,
    /// The owner the caller believes holds the lease (for checkpoints: the worker allowed to checkpoint).
    pub owner: String,
    /// The counter the caller last saw.
    pub counter: u64,
}

/// A worker's liveness record in worker-heartbeat renewal mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerHeartbeat {
    /// The worker id.
    pub worker_id: String,
    /// Goes up by one on every renewal; others judge liveness by how long ago they saw it change.
    pub counter: u64,
}
