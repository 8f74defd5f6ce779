//! [`SqliteLeaseStore`]: a complete [`LeaseStore`](kcl_core::lease::LeaseStore) in a SQLite file, for fleets that
//! run on one host and have no DynamoDB — an edge gateway with several worker processes, a lab machine, CI.
//!
//! It is also the worked example of writing your own store: every rule of the trait contract
//! (`kcl_core::lease::store`) maps onto one SQL statement below, and the public contract suite checks it
//! (`kcl-examples/tests/sqlite_contract.rs`).
//!
//! ```no_run
//! # async fn example() -> Result<(), kcl_core::lease::LeaseStoreError> {
//! use kcl_examples::sqlite_store::SqliteLeaseStore;
//! let store = SqliteLeaseStore::builder("/var/lib/my-app/leases.db").open().await?;
//! // kcl_core::Worker::builder(..).lease_store(std::sync::Arc::new(store))
//! # Ok(()) }
//! ```
//!
//! # Schema
//!
//! Created on first open (`CREATE … IF NOT EXISTS`, inside one transaction, so processes opening a new file at the
//! same moment agree); an existing table with other columns makes [`open`](SqliteLeaseStoreBuilder::open) fail.
//! Both tables are `STRICT` (SQLite refuses values of the wrong type) and `WITHOUT ROWID`. `<t>` is the table name
//! (default `kcl_leases`); use one name per application to keep several in one file.
//!
//! ```sql
//! CREATE TABLE <t> (
//!     lease_key TEXT PRIMARY KEY NOT NULL,       -- shard id, or stream:shard in multi-stream applications
//!     lease_owner TEXT,                          -- worker id; NULL when unowned
//!     lease_counter INTEGER NOT NULL,            -- the fencing token: +1 on every successful write
//!     owner_switches_since_checkpoint INTEGER NOT NULL,
//!     checkpoint TEXT NOT NULL,                  -- sequence number, or TRIM_HORIZON / LATEST / AT_TIMESTAMP / SHARD_END
//!     checkpoint_sub_sequence INTEGER NOT NULL,  -- user record index inside a KPL aggregate
//!     pending_checkpoint TEXT,                   -- prepared (two-phase) checkpoint
//!     pending_checkpoint_sub_sequence INTEGER,
//!     pending_checkpoint_state BLOB,             -- application state of the prepared checkpoint
//!     parent_shard_ids TEXT NOT NULL,            -- JSON array of shard ids
//!     child_shard_ids TEXT NOT NULL,             -- JSON array, written at shard end
//!     starting_hash_key TEXT,                    -- decimal u128 (too wide for INTEGER); both or neither
//!     ending_hash_key TEXT,
//!     checkpoint_owner TEXT,                     -- previous owner during a graceful handoff
//!     stream_identifier TEXT,                    -- account:stream:creationEpoch (multi-stream)
//!     shard_id TEXT NOT NULL
//! ) STRICT, WITHOUT ROWID;
//! CREATE INDEX <t>_by_owner ON <t> (lease_owner, lease_key);          -- list_leases_by_owner
//! CREATE TABLE <t>_heartbeats (                                      -- RenewalMode::WorkerHeartbeat
//!     worker_id TEXT PRIMARY KEY NOT NULL,
//!     counter INTEGER NOT NULL                                       -- +1 on every renewal, starts at 1
//! ) STRICT, WITHOUT ROWID;
//! ```
//!
//! Counters are SQLite INTEGERs (`i64`): a `u64` beyond `i64::MAX` is refused as `Fatal`. Rows that do not parse
//! (an unknown checkpoint text, a broken JSON list) are skipped with a warning naming the key, never returned half
//! read, as the contract requires; `get_lease` answers `None` for them.
//!
//! # Sharing the file between processes
//!
//! * **Every write is one conditional statement in a `BEGIN IMMEDIATE` transaction**: `UPDATE … WHERE lease_key = ?
//!   AND lease_owner = ? AND lease_counter = ? … RETURNING lease_counter` (creation: `INSERT … ON CONFLICT DO
//!   NOTHING`). SQLite lets one connection of any process write at a time, so the check and the change are atomic
//!   against every other process. No row returned means the condition did not hold: `ConditionFailed`, nothing changed.
//! * **WAL mode**: readers (listings, `get_lease`) read a snapshot without blocking the writer or being blocked.
//! * **Busy timeout** (default 2 s): a writer waits for another connection's transaction instead of failing at
//!   once. Waiting longer than that is reported as [`LeaseStoreError::Transient`], the class the coordinator
//!   retries; so are I/O errors and a full disk. Corruption, a read-only file and a wrong schema are `Fatal`.
//! * **Never blocks the runtime**: rusqlite is synchronous, so each call runs on `tokio::task::spawn_blocking` on one
//!   of at most [`max_connections`](SqliteLeaseStoreBuilder::max_connections) pooled connections.
//! * **Durability**: `synchronous = NORMAL` by default: a commit survives any process crash; a power cut may roll
//!   back the last commits, which replays some records (the workers on this host die with it, so no lease is ever
//!   held twice). [`durable_commits`](SqliteLeaseStoreBuilder::durable_commits) syncs every commit instead.
//! * Put the file on a local file system: SQLite's locking is not reliable over NFS or SMB, and WAL needs shared
//!   memory between the processes (`open` fails when WAL cannot be enabled).
//!
//! [`LeaseStoreError::Transient`]: kcl_core::lease::LeaseStoreError::Transient

mod failure;
mod pool;
mod schema;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kcl_core::lease::LeaseStoreError;

use pool::{ConnectionSettings, Pool};
use schema::Statements;

/// The default table name.
pub const DEFAULT_TABLE: &str = "kcl_leases";

/// A [`LeaseStore`](kcl_core::lease::LeaseStore) in a SQLite database file that several processes on one host can
/// share. See the [module documentation](self) for the schema and the concurrency rules. Open one with
/// [`SqliteLeaseStore::builder`]; each store object keeps a small pool of connections.
#[derive(Clone)]
pub struct SqliteLeaseStore {
    pool: Arc<Pool>,
    table: Arc<str>,
}

impl std::fmt::Debug for SqliteLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLeaseStore").field("path", &self.path()).field("table", &self.table).finish()
    }
}

impl SqliteLeaseStore {
    /// A builder for the store in the database file at `path` (created when missing).
    pub fn builder(path: impl Into<PathBuf>) -> SqliteLeaseStoreBuilder {
        SqliteLeaseStoreBuilder {
            path: path.into(),
            table: DEFAULT_TABLE.to_owned(),
            busy_timeout: Duration::from_secs(2),
            max_connections: 4,
            durable_commits: false,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.pool.path()
    }

    /// The lease table's name (the heartbeat table is `<table>_heartbeats`).
    pub fn table(&self) -> &str {
        &self.table
    }
}

/// Settings of a [`SqliteLeaseStore`]; [`open`](Self::open) creates the file and tables when missing.
///
/// | option | default |
/// |---|---|
/// | [`table`](Self::table) | [`DEFAULT_TABLE`] (`kcl_leases`) |
/// | [`busy_timeout`](Self::busy_timeout) | 2 s |
/// | [`max_connections`](Self::max_connections) | 4 |
/// | [`durable_commits`](Self::durable_commits) | `false` (`synchronous = NORMAL`) |
#[derive(Clone, Debug)]
pub struct SqliteLeaseStoreBuilder {
    path: PathBuf,
    table: String,
    busy_timeout: Duration,
    max_connections: usize,
    durable_commits: bool,
}

impl SqliteLeaseStoreBuilder {
    /// The lease table's name: ASCII letters, digits and `_`, not starting with a digit, at most 64 characters.
    /// One name per application lets several share a file.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// How long a write waits for another connection's (or process's) write transaction before it fails as
    /// `Transient`. Keep it below the lease renewal interval: a renewal that waits longer is useless anyway.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How many calls of this store run at once, each on its own connection and blocking thread (at least 1).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// `true`: `synchronous = FULL`, every commit is on disk before it is acknowledged (survives a power cut, costs
    /// an fsync per write). `false` (default): `NORMAL`, see the module documentation.
    pub fn durable_commits(mut self, durable: bool) -> Self {
        self.durable_commits = durable;
        self
    }

    /// Opens (creating when missing) the database file and the tables. Fails with
    /// [`LeaseStoreError::Fatal`] for a bad table name, a file that cannot be opened or put in WAL mode, or tables
    /// with another schema; with `Transient` when another process held the database locked past the busy timeout.
    pub async fn open(self) -> Result<SqliteLeaseStore, LeaseStoreError> {
        let valid_start = self.table.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !valid_start || self.table.len() > 64 || !self.table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(LeaseStoreError::fatal(
                "open",
                format!("table name {:?} must be ASCII letters, digits and `_`, not starting with a digit", self.table),
            ));
        }
        let settings = ConnectionSettings {
            path: self.path,
            busy_timeout: self.busy_timeout,
            durable_commits: self.durable_commits,
        };
        let statements = Statements::new(&self.table);
        let max_connections = self.max_connections;
        let opened = tokio::task::spawn_blocking(move || Pool::open(settings, statements, max_connections)).await;
        match opened {
            Ok(Ok(pool)) => Ok(SqliteLeaseStore { pool: Arc::new(pool), table: self.table.into() }),
            Ok(Err(failure)) => Err(failure.into_store_error("open")),
            Err(_) => Err(LeaseStoreError::fatal("open", "opening the database panicked or was cancelled")),
        }
    }
}
