//! A PostgreSQL [`LeaseStore`](kcl_core::lease::LeaseStore) for kcl-core: leases, checkpoints and worker
//! heartbeats in two tables of your database, on the async driver `tokio-postgres`.
//!
//! ```no_run
//! # async fn example() -> Result<(), kcl_postgres_lease::PostgresLeaseError> {
//! use kcl_postgres_lease::PostgresLeaseStore;
//!
//! let store = PostgresLeaseStore::builder("postgres://kcl@127.0.0.1:5432/app").table("orders_app").open().await?;
//! # Ok(()) }
//! ```
//!
//! # Schema
//!
//! [`PostgresLeaseStoreBuilder::open`] creates the tables on first use (`CREATE TABLE IF NOT EXISTS`, under an
//! advisory lock so that a fleet starting at once does not race on the catalog), then checks their columns. With
//! `create_schema(false)` it only checks, for databases whose schema a migration tool owns. For table `kcl_leases`:
//!
//! ```sql
//! CREATE TABLE kcl_leases (
//!     lease_key TEXT PRIMARY KEY,              -- shard id, or account:stream:epoch:shard (multi-stream)
//!     lease_owner TEXT,                        -- worker id; NULL when unowned
//!     lease_counter BIGINT NOT NULL,           -- the fencing token: +1 on every write
//!     owner_switches_since_checkpoint BIGINT NOT NULL DEFAULT 0,
//!     checkpoint TEXT NOT NULL,                -- a sequence number or a sentinel (TRIM_HORIZON, SHARD_END, ...)
//!     checkpoint_sub_sequence BIGINT NOT NULL DEFAULT 0,
//!     pending_checkpoint TEXT,                 -- a prepared (two-phase) checkpoint
//!     pending_checkpoint_sub_sequence BIGINT,
//!     pending_checkpoint_state BYTEA,          -- application state of the prepared checkpoint
//!     parent_shard_ids TEXT[] NOT NULL DEFAULT '{}',
//!     child_shard_ids TEXT[] NOT NULL DEFAULT '{}',
//!     starting_hash_key TEXT,                  -- u128 in decimal: wider than BIGINT, only ever compared
//!     ending_hash_key TEXT,
//!     checkpoint_owner TEXT,                   -- the previous owner during a graceful handoff (Java KCL 3.x)
//!     stream_identifier TEXT,                  -- multi-stream applications
//!     shard_id TEXT NOT NULL
//! );
//! CREATE INDEX kcl_leases_by_owner ON kcl_leases (lease_owner, lease_key);  -- list_leases_by_owner
//! CREATE TABLE kcl_leases_heartbeats (worker_id TEXT PRIMARY KEY, counter BIGINT NOT NULL);
//! ```
//!
//! The columns are the Java KCL lease attributes (`leaseKey`, `leaseOwner`, `leaseCounter`, …) in snake case, so an
//! operator who knows a KCL lease table reads this one. Heartbeats live in their own table so that a worker id that
//! equals a lease key can never collide with a lease (the contract's "heartbeats are not leases").
//!
//! # Fencing
//!
//! Every write is one `UPDATE … WHERE <condition> RETURNING lease_counter`: the condition names the owner and the
//! counter the caller last saw (for checkpoints: the checkpointing owner, which is the previous owner during a
//! handoff), exactly like the DynamoDB store's condition expressions. PostgreSQL re-checks a `WHERE` clause on the
//! newest row version after waiting for a concurrent writer, so at `READ COMMITTED` two racing writes cannot both
//! pass. No row returned means the condition failed: `LeaseStoreError::ConditionFailed`, nothing changed.
//!
//! # Exactly-once effects
//!
//! Because the lease table is in your database, the checkpoint can be written in the same transaction as the
//! records' effects: see [`transactional`]. A worker that lost its lease (a zombie) then cannot commit effects,
//! since the fenced checkpoint update in its transaction fails and everything rolls back.
//!
//! # Errors
//!
//! [`PostgresLeaseError`] is this crate's one error type; inside the `LeaseStore` methods it becomes the contract's
//! `LeaseStoreError`: no SQLSTATE (connection broken), class 08/40/53/57 and `55P03` are `Transient`, other SQL
//! errors `Fatal`. A broken connection is reopened by the next call.

mod connection;
mod error;
mod schema;
mod store;
pub mod transactional;

pub use error::PostgresLeaseError;
pub use store::{DEFAULT_TABLE, PostgresLeaseStore, PostgresLeaseStoreBuilder};
/// The driver, re-exported so applications use the same version for their transactions.
pub use tokio_postgres;
