//! Discovery: listing a stream's shards and turning new shards into leases.
//!
//! * [`ShardLister`] lists shards with lineage, hash and sequence ranges: [`KinesisShardLister`] pages through
//!   `ListShards`; the in-memory stream implements it too (feature `test-util`).
//! * [`ShardSyncer`] decides which leases to create ([`plan_new_leases`], Java KCL's hierarchical rules, documented
//!   there), creates them, creates child leases at a shard's end without listing, and tells whether this worker is
//!   the one that syncs periodically ([`is_sync_leader`]).
//! * [`LeaseCleaner`] deletes the leases of finished shards once their children have started, and garbage leases
//!   (whose shard two complete listings in a row lack).
//! * `outage` names the missing stream, table or permission behind a failing sync, once, with the remedy.
//! * Multi-stream applications: [`StreamSource`] says which streams to consume, [`StreamCatalog`] resolves each to
//!   its [`StreamIdentifier`] (`account:stream:creationEpoch`, the lease-key prefix) and its shard lister
//!   ([`KinesisStreamCatalog`]; `MemoryStreams` with feature `test-util`).
//!
//! # How many `ListShards` calls a fleet makes
//! A full sync costs `⌈shards / page_size⌉` calls. Periodically (every `shard_sync_interval` ± 10 %, KCL
//! `shardSyncIntervalMillis` 60 s) only the **sync leader** — the owner of the lowest lease key of the stream — syncs;
//! the others only check leadership, from a lease listing they make anyway. Shard ends create the children's leases
//! from the `ChildShards` of the last `GetRecords` response, with no `ListShards` call at all. So, per stream:
//! `⌈shards / page_size⌉` calls per interval in steady state (twice that for one interval while leadership moves), plus
//! one full sync per worker at startup while the stream has no leases yet (every worker may be leader then).
//! In a multi-stream application the fleet's leader (owner of the lowest key in the table) syncs every stream, so the
//! budget is the sum over the streams; a newly listed stream is synced once by each worker that discovers it.

use async_trait::async_trait;

use crate::error::KclError;
use crate::types::Shard;

mod cleanup;
mod kinesis;
mod outage;
mod streams;
mod sync;

#[cfg(feature = "test-util")]
mod memory;
#[cfg(feature = "test-util")]
mod memory_streams;

pub use cleanup::{LeaseCleaner, finished_leases, garbage_leases};
pub use kinesis::KinesisShardLister;
#[cfg(feature = "test-util")]
pub use memory_streams::{MEMORY_ACCOUNT_ID, MemoryStreams};
pub(crate) use outage::{Missing, Outage, missing};
pub use streams::{
    DiscoveryError, KinesisStreamCatalog, StreamCatalog, StreamDiscovery, StreamIdentifier, StreamSource,
};
pub use sync::{ShardSyncConfig, ShardSyncer, SyncReport, is_sync_leader, plan_new_leases};

/// Which shards to list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ShardListFilter {
    /// Every shard still retained, open or closed (`ListShards` without a filter: from the trim horizon).
    #[default]
    All,
    /// Only the open shards (`ShardFilter` `AT_LATEST`).
    Open,
}

/// Lists the shards of one stream.
#[async_trait]
pub trait ShardLister: Send + Sync {
    /// The shards matching `filter`, every page, in the service's order.
    async fn list_shards(&self, filter: ShardListFilter) -> Result<Vec<Shard>, KclError>;
}
