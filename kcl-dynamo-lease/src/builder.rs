//! [`DynamoLeaseStoreBuilder`]: options, their Java KCL equivalents, and table set-up.

use std::time::Duration;

use aws_sdk_dynamodb::Client;

use crate::error::DynamoLeaseError;
use crate::fleet_version;
use crate::schema::{LEASE_KEY, WORKER_ID};
use crate::store::DynamoLeaseStore;
use crate::table::{self, BillingMode, IndexState, TableSpec};

/// Suffix of the default worker heartbeat table name: `<lease table>-WorkerHeartbeats`.
pub const HEARTBEAT_TABLE_SUFFIX: &str = "-WorkerHeartbeats";

/// Builds a [`DynamoLeaseStore`]; see each option for its default and its Java KCL equivalent.
///
/// ```no_run
/// # async fn example(client: aws_sdk_dynamodb::Client) -> Result<(), kcl_dynamo_lease::DynamoLeaseError> {
/// use std::time::Duration;
///
/// use kcl_dynamo_lease::{BillingMode, DynamoLeaseStore};
///
/// // The lease table of application "orders", shared with Java KCL workers: created if missing (billed per
/// // request), with deletion protection, waiting at most 2 minutes for it to become ACTIVE.
/// let store = DynamoLeaseStore::builder(client, "orders")
///     .billing_mode(BillingMode::PayPerRequest)
///     .deletion_protection(true)
///     .table_active_timeout(Duration::from_secs(120))
///     .build()
///     .await?;
/// assert_eq!(store.table_name(), "orders");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DynamoLeaseStoreBuilder {
    client: Client,
    table_name: String,
    billing_mode: BillingMode,
    create_table_if_missing: bool,
    table_active_timeout: Duration,
    create_owner_index: bool,
    owner_index_recheck_interval: Duration,
    worker_heartbeats: bool,
    heartbeat_table_name: Option<String>,
    deletion_protection: bool,
    refuse_kcl3_fleet: bool,
}

impl DynamoLeaseStoreBuilder {
    pub(crate) fn new(client: Client, table_name: String) -> Self {
        Self {
            client,
            table_name,
            billing_mode: BillingMode::default(),
            create_table_if_missing: true,
            table_active_timeout: Duration::from_secs(600),
            create_owner_index: true,
            owner_index_recheck_interval: Duration::from_secs(60),
            worker_heartbeats: false,
            heartbeat_table_name: None,
            deletion_protection: false,
            refuse_kcl3_fleet: true,
        }
    }

    /// Billing of tables this store creates. Default [`BillingMode::PayPerRequest`], as Java KCL's
    /// `LeaseManagementConfig.billingMode`.
    pub fn billing_mode(mut self, billing_mode: BillingMode) -> Self {
        self.billing_mode = billing_mode;
        self
    }

    /// Create the lease table (and the heartbeat table, when enabled) if missing. Default `true`: Java KCL always
    /// calls `createLeaseTableIfNotExists` on start-up. With `false`, a missing table fails the build with
    /// [`DynamoLeaseError::TableNotFound`] (for deployments whose tables are managed elsewhere).
    pub fn create_table_if_missing(mut self, create: bool) -> Self {
        self.create_table_if_missing = create;
        self
    }

    /// How long `build` waits for a table to become ACTIVE, polling DescribeTable with backoff (250 ms doubling to
    /// 5 s). Default 600 s, Java KCL's `waitUntilLeaseTableExists(10, 600)` timeout (it polls every 10 s).
    pub fn table_active_timeout(mut self, timeout: Duration) -> Self {
        self.table_active_timeout = timeout;
        self
    }

    /// Create the `LeaseOwnerToLeaseKeyIndex` global secondary index (hash `leaseOwner`, range `leaseKey`, keys
    /// only) when missing. Default `true`, as Java KCL 3.x, which adds it on start-up. A new table gets it at
    /// creation; an existing one through UpdateTable, without waiting for the backfill. An index already present is
    /// used whatever this says. Without an active index, `list_leases_by_owner` scans the table.
    pub fn create_owner_index(mut self, create: bool) -> Self {
        self.create_owner_index = create;
        self
    }

    /// While the owner index is being created, how often `list_leases_by_owner` checks (DescribeTable) whether it is
    /// ready; it scans meanwhile. Default 60 s. Java KCL instead blocks start-up until the index is active (polling
    /// every 10 s for up to an hour).
    pub fn owner_index_recheck_interval(mut self, interval: Duration) -> Self {
        self.owner_index_recheck_interval = interval;
        self
    }

    /// Enable worker heartbeats (`renew_heartbeat`, `list_heartbeats`, `delete_heartbeat`), stored in their own
    /// table (see [`heartbeat_table_name`](Self::heartbeat_table_name)), which `build` creates or checks. Default
    /// `false`: Java KCL has no such table, and a store for per-lease renewal needs only the lease table; the
    /// heartbeat methods then fail with a fatal error naming this option.
    ///
    /// Heartbeats never go into the lease table: Java KCL workers sharing it would see them as leases and take them.
    pub fn worker_heartbeats(mut self, enabled: bool) -> Self {
        self.worker_heartbeats = enabled;
        self
    }

    /// The heartbeat table (hash key `workerId` (S), attribute `heartbeatCounter` (N)). Default
    /// `<lease table>-WorkerHeartbeats`. Only used when [`worker_heartbeats`](Self::worker_heartbeats) is on.
    pub fn heartbeat_table_name(mut self, name: impl Into<String>) -> Self {
        self.heartbeat_table_name = Some(name.into());
        self
    }

    /// Enable deletion protection on tables this store creates. Default `false`, as Java KCL's
    /// `leaseTableDeletionProtectionEnabled`.
    pub fn deletion_protection(mut self, enabled: bool) -> Self {
        self.deletion_protection = enabled;
        self
    }

    /// Refuse the table of a Java KCL 3.x fleet that runs 3.x (leader-based) lease assignment: `build` fails with
    /// [`DynamoLeaseError::Kcl3Fleet`], and a lease listing that meets the fleet's 3.x migration state fails, so a
    /// worker takes nothing. Default `true`. Turn it off only for read-only or repair tools (`kcl-admin`): a worker
    /// taking leases in such a table would fight the 3.x leader. Java KCL has no equivalent (3.x workers in
    /// `CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X` mode are what kcl-rs can share a table with).
    pub fn refuse_kcl3_fleet(mut self, refuse: bool) -> Self {
        self.refuse_kcl3_fleet = refuse;
        self
    }

    fn heartbeat_table(&self) -> String {
        self.heartbeat_table_name.clone().unwrap_or_else(|| format!("{}{HEARTBEAT_TABLE_SUFFIX}", self.table_name))
    }

    fn validate(&self) -> Result<(), DynamoLeaseError> {
        let table_name_ok = |name: &str| {
            (3..=255).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if !table_name_ok(&self.table_name) {
            return Err(DynamoLeaseError::InvalidConfig(format!(
                "lease table name `{}` is not a valid DynamoDB table name (3-255 characters: letters, digits, _ - .)",
                self.table_name
            )));
        }
        if self.worker_heartbeats {
            let heartbeat = self.heartbeat_table();
            if !table_name_ok(&heartbeat) {
                return Err(DynamoLeaseError::InvalidConfig(format!(
                    "heartbeat table name `{heartbeat}` is not a valid DynamoDB table name"
                )));
            }
            if heartbeat == self.table_name {
                return Err(DynamoLeaseError::InvalidConfig(
                    "the heartbeat table must not be the lease table: Java KCL workers would take heartbeats as leases"
                        .into(),
                ));
            }
        }
        if let BillingMode::Provisioned { read_capacity_units, write_capacity_units } = self.billing_mode
            && (read_capacity_units < 1 || write_capacity_units < 1)
        {
            return Err(DynamoLeaseError::InvalidConfig(
                "provisioned read and write capacity must each be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn spec<'a>(&self, name: &'a str, hash_key: &'static str, role: &'static str, index: bool) -> TableSpec<'a> {
        TableSpec {
            name,
            hash_key,
            role,
            billing: self.billing_mode,
            create_if_missing: self.create_table_if_missing,
            with_owner_index: index,
            deletion_protection: self.deletion_protection,
            active_timeout: self.table_active_timeout,
        }
    }

    /// Checks the options, creates the tables when missing (and allowed), waits until they are usable, checks their
    /// key schemas, and sets up the owner index.
    ///
    /// # Errors
    /// [`DynamoLeaseError::Kcl3Fleet`] when a Java KCL 3.x fleet runs 3.x lease assignment on the table,
    /// [`DynamoLeaseError::InvalidConfig`] for bad options, [`DynamoLeaseError::TableNotFound`] when a table is
    /// missing and creation is off, [`DynamoLeaseError::IncompatibleTable`] for a table with another key schema (it
    /// is never modified), [`DynamoLeaseError::TableNotActive`] after the wait, [`DynamoLeaseError::DynamoDb`] when
    /// a call fails.
    pub async fn build(self) -> Result<DynamoLeaseStore, DynamoLeaseError> {
        self.validate()?;
        let lease_spec = self.spec(&self.table_name, LEASE_KEY, "KCL lease table", self.create_owner_index);
        let description = table::ensure_table(&self.client, &lease_spec).await?;
        if self.refuse_kcl3_fleet {
            fleet_version::check(&self.client, &self.table_name).await?;
        }
        let owner_index = match table::owner_index_state(&description) {
            IndexState::Absent if self.create_owner_index && !has_owner_index(&description) => {
                table::add_owner_index(&self.client, &description, &self.table_name).await
            }
            state => state,
        };
        let heartbeat_table = if self.worker_heartbeats {
            let name = self.heartbeat_table();
            table::ensure_table(&self.client, &self.spec(&name, WORKER_ID, "worker heartbeat table", false)).await?;
            Some(name)
        } else {
            None
        };
        Ok(DynamoLeaseStore::new(
            self.client,
            self.table_name,
            heartbeat_table,
            owner_index,
            self.owner_index_recheck_interval,
        )
        .with_refuse_kcl3_fleet(self.refuse_kcl3_fleet))
    }
}

/// Whether an index with the owner index's name exists at all (whatever its shape: one with another key schema is
/// left alone rather than replaced).
fn has_owner_index(table: &aws_sdk_dynamodb::types::TableDescription) -> bool {
    table.global_secondary_indexes().iter().any(|i| i.index_name() == Some(table::LEASE_OWNER_INDEX_NAME))
}

impl DynamoLeaseStore {
    /// Starts building a store on `table_name` with `client` (its region, credentials, retry and timeout settings
    /// are used as they are; a timeout surfaces as a transient error).
    pub fn builder(client: Client, table_name: impl Into<String>) -> DynamoLeaseStoreBuilder {
        DynamoLeaseStoreBuilder::new(client, table_name.into())
    }
}
