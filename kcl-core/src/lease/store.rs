//! The `LeaseStore` trait: the only way the framework reads or writes leases, checkpoints and worker heartbeats.
//!
//! # Contract every implementation honours
//!
//! * **Atomic conditional writes.** Every mutating method states its condition. It is checked and applied atomically
//!   with respect to every other call on the same lease key, from any process. When the condition does not hold,
//!   nothing changes and the method returns [`LeaseStoreError::ConditionFailed`]. Losing such a race is normal
//!   operation for a fleet, not a fault.
//! * **The counter is a fencing token.** `lease_counter` goes up by exactly one on every successful renew, take,
//!   release, evict, checkpoint, prepared checkpoint, child-shard update and handoff, and never otherwise. A
//!   [`LeaseFence`] names the owner and counter the caller last saw; a fenced write succeeds only while both still
//!   hold, so a worker that lost its lease can never move its checkpoint.
//! * **Errors are classified.** [`LeaseStoreError::Transient`] means "the outcome is unknown or the call was
//!   throttled; retrying may succeed" (a write may or may not have happened: callers re-read before assuming either).
//!   [`LeaseStoreError::Fatal`] means retrying will not help (bad configuration, wrong table schema, no permission).
//! * **Listing is consistent enough to coordinate.** `list_leases` pages through every lease exactly once when nothing
//!   changes during the listing; leases created or deleted meanwhile may or may not appear. Items the store cannot
//!   understand are never returned half-parsed and never turned into an error: they are listed apart, as
//!   [`UnreadableLease`]s (key and reason), so that the coordinator and `kcl-admin` can report them.
//! * **Nothing is cached across calls** in a way that could return a value older than a write this same store object
//!   acknowledged. One exception: `list_leases_by_owner` may be answered from an eventually consistent index
//!   (DynamoDB's `LeaseOwnerToLeaseKeyIndex`), so a lease acquired a moment ago may be missing from it; it never
//!   returns a lease that a consistent read shows owned by someone else. Callers use it to discover assignments and
//!   tolerate one poll of delay.
//! * **Heartbeats are not leases.** They never appear in lease reads or listings, lease writes never touch them and
//!   heartbeat writes never touch leases, even when a worker id equals a lease key.
//!
//! The public contract suite (`kcl_core::lease::contract`, feature `test-util`) checks all of this against any store.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Lease, LeaseFence, WorkerHeartbeat};
use crate::error::LeaseStoreError;
use crate::types::ExtendedSequenceNumber;

/// One page of a lease listing.
#[derive(Clone, Debug, Default)]
pub struct LeasePage {
    /// The leases on this page, in the store's order.
    pub leases: Vec<Lease>,
    /// The items on this page that look like leases but that the store cannot read (a wrong attribute type, an
    /// unparsable checkpoint, …). They are not in `leases`.
    pub unreadable: Vec<UnreadableLease>,
    /// Pass to the next `list_leases` call to continue; `None` when this was the last page.
    pub next_page: Option<PageToken>,
}

/// A lease table item that the store cannot read. It is never consumed (its checkpoint is unknown, so any start
/// position could skip records) and never overwritten by a worker; `kcl-admin repair` rewrites or deletes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct UnreadableLease {
    /// The item's lease key, or a description of it when the key itself is unreadable.
    pub lease_key: String,
    /// What is wrong, naming the attribute (never its value, which may be anything).
    pub reason: String,
}

impl UnreadableLease {
    /// An unreadable item: its key and why it cannot be read.
    pub fn new(lease_key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { lease_key: lease_key.into(), reason: reason.into() }
    }
}

/// A whole lease listing: the readable leases and, apart, the items that could not be read.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct LeaseListing {
    /// Every readable lease.
    pub leases: Vec<Lease>,
    /// Every item that could not be read.
    pub unreadable: Vec<UnreadableLease>,
}

/// An opaque continuation token for [`LeaseStore::list_leases`].
#[derive(Clone, PartialEq, Eq)]
pub struct PageToken(pub String);

impl fmt::Debug for PageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PageToken(..)")
    }
}

/// Storage for leases, checkpoints and worker heartbeats. See the [module documentation](self) for the contract.
///
/// Implementations: [`MemoryLeaseStore`](super::MemoryLeaseStore) in this crate, `DynamoLeaseStore` in
/// `kcl-dynamo-lease`, or your own (run `kcl_core::lease::contract::run_all` against it).
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Creates `lease` unless a lease with its key exists. Returns `true` when created, `false` when one existed
    /// (whatever its content). The stored counter is `lease.lease_counter`.
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError>;

    /// Reads one lease; `Ok(None)` when absent.
    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError>;

    /// One page of at most `page_size` leases (a store may return fewer), starting after `page`.
    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError>;

    /// Every lease and every unreadable item, following pages.
    async fn list_everything(&self) -> Result<LeaseListing, LeaseStoreError> {
        let mut all = LeaseListing::default();
        let mut page = None;
        loop {
            let LeasePage { leases, unreadable, next_page } = self.list_leases(page, 1000).await?;
            all.leases.extend(leases);
            all.unreadable.extend(unreadable);
            match next_page {
                Some(next) => page = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Every readable lease, following pages. Unreadable items are left out: callers that must report them (the
    /// coordinator, `kcl-admin`) use [`list_everything`](Self::list_everything).
    async fn list_all_leases(&self) -> Result<Vec<Lease>, LeaseStoreError> {
        Ok(self.list_everything().await?.leases)
    }

    /// The leases whose `lease_owner` is `owner`. The default lists everything and filters; stores with an index on
    /// the owner (Java KCL 3.x's `LeaseOwnerToLeaseKeyIndex`) override it.
    async fn list_leases_by_owner(&self, owner: &str) -> Result<Vec<Lease>, LeaseStoreError> {
        let mut all = self.list_all_leases().await?;
        all.retain(|lease| lease.lease_owner.as_deref() == Some(owner));
        Ok(all)
    }

    /// Renews a lease the caller holds. Condition: owner and counter equal `fence`, and no handoff is in progress
    /// (`checkpoint_owner` absent — as Java KCL 3.x: while the previous owner writes its final checkpoint nobody
    /// renews, so that checkpoint's fence stays valid). Effect: counter + 1. Returns the new counter.
    async fn renew_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError>;

    /// Takes a lease (expired, unowned or stolen). Condition: the counter equals `expected_counter`.
    /// Effect: owner = `new_owner`, counter + 1, `owner_switches_since_checkpoint` + 1 when the owner changes
    /// (taking an unowned lease counts, unlike in Java KCL; a worker re-taking its own lease does not),
    /// `checkpoint_owner` cleared. Returns the lease as stored after the write.
    async fn take_lease(
        &self,
        lease_key: &str,
        expected_counter: u64,
        new_owner: &str,
    ) -> Result<Lease, LeaseStoreError>;

    /// Gives up a lease the caller holds. Condition: owner and counter equal `fence`. Effect: owner removed,
    /// `checkpoint_owner` removed, counter + 1. Returns the new counter.
    async fn release_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError>;

    /// Removes the owner of a lease regardless of its counter (operator action). Condition: owner equals
    /// `expected_owner`. Effect: owner removed, `checkpoint_owner` removed, counter + 1. Returns the new counter.
    async fn evict_lease(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError>;

    /// Graceful handoff, as Java KCL 3.x does it: moves ownership to `new_owner` while the current owner keeps the
    /// right to write the final checkpoint. Condition: owner and counter equal `fence` (the fence names the *current*
    /// owner; the caller may be another worker that read it). Effect: owner = `new_owner`,
    /// `checkpoint_owner` = the previous owner, counter + 1. Returns the new counter.
    async fn assign_for_handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError>;

    /// Writes a checkpoint. Condition: counter equals `fence.counter` and the checkpointing right belongs to
    /// `fence.owner` — `checkpoint_owner` when set, else `lease_owner`. Effect: checkpoint set, pending checkpoint
    /// and its state cleared, `owner_switches_since_checkpoint` = 0, counter + 1. When `checkpoint_owner` was set
    /// (the last checkpoint of a handoff), it is cleared. Returns the new counter.
    async fn update_checkpoint(
        &self,
        fence: &LeaseFence,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<u64, LeaseStoreError>;

    /// Records a prepared (two-phase) checkpoint with optional application state. Same condition as
    /// [`update_checkpoint`](Self::update_checkpoint). Effect: pending checkpoint and state set (`state: None`
    /// removes the state of an earlier prepared checkpoint), counter + 1.
    async fn prepare_checkpoint(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError>;

    /// Records a finished shard's children (written at shard end). Same condition as
    /// [`update_checkpoint`](Self::update_checkpoint), so a previous owner that reaches the shard end during a
    /// handoff can still record them. Effect: `child_shard_ids` set, counter + 1.
    async fn update_child_shards(&self, fence: &LeaseFence, child_shard_ids: &[String])
    -> Result<u64, LeaseStoreError>;

    /// Deletes a lease (cleanup of finished shards, operator action). Deleting an absent lease succeeds.
    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseStoreError>;

    /// Writes or renews a worker heartbeat (worker-heartbeat renewal mode). `expected_counter: None` creates it only
    /// if absent; `Some(c)` renews only while the stored counter is `c`. Effect: counter + 1 (a new heartbeat starts
    /// at 1). Returns the new counter.
    async fn renew_heartbeat(&self, worker_id: &str, expected_counter: Option<u64>) -> Result<u64, LeaseStoreError>;

    /// Every worker heartbeat.
    async fn list_heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError>;

    /// Removes a worker's heartbeat (graceful shutdown). Removing an absent heartbeat succeeds.
    async fn delete_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError>;
}
