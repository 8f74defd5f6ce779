//! # kcl-dynamo-lease
//!
//! [`DynamoLeaseStore`]: a [`kcl_core::lease::LeaseStore`] in a DynamoDB table that Java KCL workers can share.
//!
//! ```no_run
//! # async fn example(client: aws_sdk_dynamodb::Client) -> Result<(), kcl_dynamo_lease::DynamoLeaseError> {
//! use kcl_dynamo_lease::DynamoLeaseStore;
//! let store = DynamoLeaseStore::builder(client, "my-application").build().await?;
//! # Ok(()) }
//! ```
//!
//! ## Table
//! Hash key `leaseKey` (S), nothing else, as Java KCL creates it; `build` refuses a table with another key schema
//! ([`DynamoLeaseError::IncompatibleTable`]). Java KCL 3.x's `LeaseOwnerToLeaseKeyIndex` (hash `leaseOwner`, range
//! `leaseKey`, keys only) is created or reused, and serves `list_leases_by_owner`.
//!
//! | option | default | Java KCL |
//! |---|---|---|
//! | [`billing_mode`](DynamoLeaseStoreBuilder::billing_mode) | pay per request | `billingMode = PAY_PER_REQUEST` |
//! | [`create_table_if_missing`](DynamoLeaseStoreBuilder::create_table_if_missing) | `true` | always creates |
//! | [`table_active_timeout`](DynamoLeaseStoreBuilder::table_active_timeout) | 600 s | `waitUntilLeaseTableExists(10, 600)` |
//! | [`create_owner_index`](DynamoLeaseStoreBuilder::create_owner_index) | `true` | 3.x creates it |
//! | [`owner_index_recheck_interval`](DynamoLeaseStoreBuilder::owner_index_recheck_interval) | 60 s | blocks start-up until active |
//! | [`worker_heartbeats`](DynamoLeaseStoreBuilder::worker_heartbeats) | `false` | no equivalent |
//! | [`heartbeat_table_name`](DynamoLeaseStoreBuilder::heartbeat_table_name) | `<table>-WorkerHeartbeats` | no equivalent |
//! | [`deletion_protection`](DynamoLeaseStoreBuilder::deletion_protection) | `false` | `leaseTableDeletionProtectionEnabled = false` |
//! | [`refuse_kcl3_fleet`](DynamoLeaseStoreBuilder::refuse_kcl3_fleet) | `true` | no equivalent |
//!
//! ## Items
//! Java KCL 3.5.1's attributes and types: `leaseKey` S, `leaseOwner` S (absent when unowned), `leaseCounter` N,
//! `ownerSwitchesSinceCheckpoint` N, `checkpoint` S (a sequence number or `TRIM_HORIZON` / `LATEST` /
//! `AT_TIMESTAMP` / `SHARD_END`), `checkpointSubSequenceNumber` N, `pendingCheckpoint` S,
//! `pendingCheckpointSubSequenceNumber` N, `pendingCheckpointState` B, `parentShardId` SS, `childShardIds` SS,
//! `startingHashKey` / `endingHashKey` S (decimal), `checkpointOwner` S, `entityType` S (`LEASE`), and in
//! multi-stream applications `streamName` S and `shardId` S.
//!
//! * Creation writes the whole item (PutItem); every other write is an UpdateItem of just the attributes it changes,
//!   so attributes this store does not model (`throughputKBps`, anything newer) survive.
//! * Items it cannot read (no `leaseKey` or `leaseCounter`, wrong types, an unparsable checkpoint) are skipped with a
//!   warning naming the key and the problem, never the item's contents. Items of other KCL 3.5 entity types
//!   (`entityType` other than `LEASE`) are ignored.
//! * String sets have no order: `parent_shard_ids` and `child_shard_ids` come back sorted.
//! * `AT_TIMESTAMP` is stored as the bare sentinel, as in KCL; the timestamp itself is not kept.
//!
//! ## Java KCL 3.x fleets
//! A table whose Java KCL 3.x fleet runs leader-based assignment (`Migration3.0` item with `cv` =
//! `CLIENT_VERSION_3X` or `CLIENT_VERSION_3X_WITH_ROLLBACK`, in the lease table as KCL 3.5 keeps it or in
//! `<table>-CoordinatorState` as 3.0–3.4 do) is refused by `build` ([`DynamoLeaseError::Kcl3Fleet`], naming the Java
//! setting `CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X`), and a lease listing that meets such an item fails, so a
//! running worker takes no lease from a fleet that switched. 2.x-compatible 3.x fleets are shared as 2.x ones.
//!
//! ## Conditions and errors
//! Every write carries the contract's condition as a ConditionExpression and returns the counter DynamoDB reports
//! after the write. `ConditionalCheckFailedException` becomes [`LeaseStoreError::ConditionFailed`]; throttling
//! (`ProvisionedThroughputExceededException`, `ThrottlingException`, `RequestLimitExceeded`), 5xx, timeouts and
//! connection failures become [`LeaseStoreError::Transient`]; validation errors, access denied, a missing table and
//! an unreadable write result become [`LeaseStoreError::Fatal`]. Reads are strongly consistent (Java KCL defaults to
//! eventually consistent reads; the contract needs read-your-writes).
//!
//! ## Differences from Java KCL's writes, by contract
//! * The counter goes up on every write, including the handoff (Java's handoff leaves it alone).
//! * `take_lease` counts an owner switch whenever the owner changes, including from no owner (Java counts only
//!   switches from another worker).
//! * Renewal is conditioned on owner and counter (Java's on the counter and no `checkpointOwner`).
//! * The handoff is conditioned on owner and counter (Java's also requires no handoff in progress: no
//!   `checkpointOwner`), so a second handoff during one moves the checkpoint right to the interim owner.
//!
//! ## Metrics
//! Every DynamoDB request increments [`REQUESTS_METRIC`] (`kcl_lease_store_requests_total`, labels `operation`,
//! `kind`, `outcome`); [`DynamoLeaseStore::request_counts`] gives the read and write totals without a recorder.
//!
//! [`LeaseStoreError::ConditionFailed`]: kcl_core::lease::LeaseStoreError::ConditionFailed
//! [`LeaseStoreError::Transient`]: kcl_core::lease::LeaseStoreError::Transient
//! [`LeaseStoreError::Fatal`]: kcl_core::lease::LeaseStoreError::Fatal
#![deny(missing_docs)]

mod builder;
mod error;
mod expr;
mod fleet_version;
mod heartbeat;
mod lease_store;
mod metrics;
mod owner_index;
mod repair;
mod retried;
mod schema;
mod store;
mod table;
mod writes;

pub use builder::{DynamoLeaseStoreBuilder, HEARTBEAT_TABLE_SUFFIX};
pub use error::DynamoLeaseError;
pub use fleet_version::COORDINATOR_STATE_TABLE_SUFFIX;
pub use kcl_core::lease::RequestCounts;
pub use metrics::REQUESTS_METRIC;
pub use repair::{Repair, UnreadableItem, plan_repair};
pub use store::DynamoLeaseStore;
pub use table::{BillingMode, LEASE_OWNER_INDEX_NAME};
