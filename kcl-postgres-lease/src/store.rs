//! [`PostgresLeaseStore`], its builder, and its `LeaseStore` methods: each one a read, or one conditional statement
//! (`UPDATE … WHERE <condition> RETURNING …`, atomic on its own), whose empty result means the condition failed.

use async_trait::async_trait;
use bytes::Bytes;
use kcl_core::lease::{
    Lease, LeaseFence, LeasePage, LeaseStore, LeaseStoreError, PageToken, UnreadableLease, WorkerHeartbeat,
};
use kcl_core::types::ExtendedSequenceNumber;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, Row};

use crate::connection::Connection;
use crate::error::PostgresLeaseError;
use crate::schema::{InsertValues, Statements, position, read_lease, valid_table_name};

/// The lease table's name unless [`PostgresLeaseStoreBuilder::table`] says otherwise.
pub const DEFAULT_TABLE: &str = "kcl_leases";

type Param<'a> = &'a (dyn ToSql + Sync);

/// A [`LeaseStore`] in a PostgreSQL table; see the [crate documentation](crate) for the schema. Share one store per
/// process (it is cheap to call concurrently: statements are pipelined on its connection).
pub struct PostgresLeaseStore {
    pub(crate) connection: Connection,
    pub(crate) table: String,
    pub(crate) statements: Statements,
}

impl std::fmt::Debug for PostgresLeaseStore {
    // No connection details: the configuration may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLeaseStore").field("table", &self.table).finish_non_exhaustive()
    }
}

/// Builds a [`PostgresLeaseStore`]. Defaults: table [`DEFAULT_TABLE`] (Java KCL names its DynamoDB table after the
/// application; here one table per application too, named by you), schema created when missing.
#[derive(Clone)]
#[must_use]
pub struct PostgresLeaseStoreBuilder {
    config: Result<Config, String>,
    table: String,
    create_schema: bool,
}

impl PostgresLeaseStore {
    /// A builder for a store reached with a libpq-style connection string or URL
    /// (`postgres://user:password@host:port/database`, or `host=… user=… dbname=…`). No TLS: for TLS, build the
    /// `tokio_postgres::Config` yourself and use [`builder_with_config`](Self::builder_with_config) over a local
    /// proxy, or open an issue.
    pub fn builder(url: &str) -> PostgresLeaseStoreBuilder {
        // The parse error never quotes the URL (which may hold a password).
        let config = url.parse::<Config>().map_err(|error| format!("the PostgreSQL URL does not parse: {error}"));
        PostgresLeaseStoreBuilder { config, table: DEFAULT_TABLE.to_owned(), create_schema: true }
    }

    /// A builder for a store reached with an already built `tokio_postgres::Config`.
    pub fn builder_with_config(config: Config) -> PostgresLeaseStoreBuilder {
        PostgresLeaseStoreBuilder { config: Ok(config), table: DEFAULT_TABLE.to_owned(), create_schema: true }
    }

    /// The lease table's name (the heartbeat table is `<table>_heartbeats`).
    pub fn table(&self) -> &str {
        &self.table
    }
}

impl PostgresLeaseStoreBuilder {
    /// The lease table (default [`DEFAULT_TABLE`]): 1 to 48 ASCII letters, digits or `_`, not starting with a digit.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Whether [`open`](Self::open) creates the tables when they are missing (default `true`). With `false` the
    /// tables must exist (created by a migration tool from the statements in the crate docs) and the store only
    /// checks their columns.
    pub fn create_schema(mut self, create: bool) -> Self {
        self.create_schema = create;
        self
    }

    /// Connects, creates the tables if asked and missing, and checks they have this store's columns.
    pub async fn open(self) -> Result<PostgresLeaseStore, PostgresLeaseError> {
        const OP: &str = "open";
        let config = self.config.map_err(|message| PostgresLeaseError::Unusable { operation: OP, message })?;
        if !valid_table_name(&self.table) {
            return Err(PostgresLeaseError::Unusable {
                operation: OP,
                message: format!(
                    "table name {:?} is not 1 to 48 ASCII letters, digits or _ starting with a letter or _",
                    self.table
                ),
            });
        }
        let statements = Statements::new(&self.table);
        let connection = Connection::open(config).await?;
        let client = connection.client(OP).await?;
        if self.create_schema {
            // One transaction: the advisory lock in it is held until the tables exist.
            let batch = format!("BEGIN; {} COMMIT;", statements.create_schema);
            client.batch_execute(&batch).await.map_err(|error| PostgresLeaseError::database(OP, error))?;
        }
        for check in &statements.check_schema {
            client.query(check.as_str(), &[]).await.map_err(|error| match error.code() {
                Some(code) if code.code().starts_with("42") => PostgresLeaseError::Unusable {
                    operation: OP,
                    message: format!(
                        "table {} or {}_heartbeats is missing or has other columns than this store's ({error}); \
                         pick another table name or create them as the crate docs show",
                        self.table, self.table
                    ),
                },
                _ => PostgresLeaseError::database(OP, error),
            })?;
        }
        Ok(PostgresLeaseStore { connection, table: self.table, statements })
    }
}

impl PostgresLeaseStore {
    async fn query(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, LeaseStoreError> {
        let client = self.connection.client(operation).await?;
        Ok(client.query(sql, params).await.map_err(|error| PostgresLeaseError::database(operation, error))?)
    }

    async fn execute(&self, operation: &'static str, sql: &str, params: &[Param<'_>]) -> Result<u64, LeaseStoreError> {
        let client = self.connection.client(operation).await?;
        Ok(client.execute(sql, params).await.map_err(|error| PostgresLeaseError::database(operation, error))?)
    }

    /// Runs a conditional `UPDATE … RETURNING <counter>`; no row means the condition did not hold.
    async fn counted(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[Param<'_>],
        key: &str,
        reason: &'static str,
    ) -> Result<u64, LeaseStoreError> {
        let rows = self.query(operation, sql, params).await?;
        let Some(row) = rows.first() else { return Err(LeaseStoreError::condition_failed(key, reason)) };
        let counter: i64 = row.try_get(0).map_err(|error| PostgresLeaseError::database(operation, error))?;
        u64::try_from(counter)
            .map_err(|_| LeaseStoreError::fatal(operation, format!("lease {key} has a negative counter")))
    }

    /// A write conditioned on `fence`: `sql`'s `$1`..`$3` are the fence's key, owner and counter, `extra` follow.
    async fn fenced(
        &self,
        operation: &'static str,
        sql: &str,
        fence: &LeaseFence,
        extra: &[Param<'_>],
        reason: &'static str,
    ) -> Result<u64, LeaseStoreError> {
        // A counter past BIGINT matches no row: the condition fails without asking.
        let Ok(counter) = i64::try_from(fence.counter) else {
            return Err(LeaseStoreError::condition_failed(&fence.lease_key, reason));
        };
        let mut params: Vec<Param<'_>> = vec![&fence.lease_key, &fence.owner, &counter];
        params.extend_from_slice(extra);
        self.counted(operation, sql, &params, &fence.lease_key, reason).await
    }

    /// Splits listed rows into leases and the rows that do not parse; the listing reports the latter (the
    /// coordinator logs them once per change and sets `kcl_unreadable_leases`), so no warning per row and scan here.
    fn listed(rows: &[Row]) -> (Vec<Lease>, Vec<UnreadableLease>) {
        let mut leases = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in rows {
            match read_lease(row) {
                Ok(lease) => leases.push(lease),
                Err(bad) if bad.lease_key.is_empty() => {
                    unreadable.push(UnreadableLease::new("(a row whose lease_key cannot be read)", bad.problem))
                }
                Err(bad) => unreadable.push(UnreadableLease::new(bad.lease_key, bad.problem)),
            }
        }
        (leases, unreadable)
    }

    /// Turns rows into leases, skipping (with a warning) the ones that do not parse.
    fn leases(&self, rows: &[Row]) -> Vec<Lease> {
        rows.iter()
            .filter_map(|row| match read_lease(row) {
                Ok(lease) => Some(lease),
                Err(unreadable) => {
                    tracing::warn!(
                        table = self.table.as_str(),
                        lease_key = unreadable.lease_key.as_str(),
                        problem = unreadable.problem.as_str(),
                        "skipping a lease row this store cannot read"
                    );
                    None
                }
            })
            .collect()
    }
}

#[async_trait]
impl LeaseStore for PostgresLeaseStore {
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        let values = InsertValues::new(lease)?;
        Ok(self.execute("create_lease_if_not_exists", &self.statements.insert, &values.params(lease)).await? == 1)
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        let rows = self.query("get_lease", &self.statements.get, &[&lease_key]).await?;
        Ok(self.leases(&rows).pop())
    }

    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError> {
        let page_size = page_size.max(1);
        // One row more than the page, to learn whether another page follows without a second query.
        let limit = i64::try_from(page_size).unwrap_or(i64::MAX - 1) + 1;
        let mut rows = match &page {
            Some(PageToken(after)) => self.query("list_leases", &self.statements.list_after, &[after, &limit]).await?,
            None => self.query("list_leases", &self.statements.list_first, &[&limit]).await?,
        };
        let more = rows.len() > page_size;
        rows.truncate(page_size);
        // The last row's key, read or not, so that paging moves past unreadable rows too.
        let last_key = rows.last().and_then(|row| row.try_get::<_, String>(0).ok());
        let (leases, unreadable) = Self::listed(&rows);
        let next_page = if more { last_key.map(PageToken) } else { None };
        Ok(LeasePage { leases, unreadable, next_page })
    }

    async fn list_leases_by_owner(&self, owner: &str) -> Result<Vec<Lease>, LeaseStoreError> {
        let rows = self.query("list_leases_by_owner", &self.statements.list_by_owner, &[&owner]).await?;
        Ok(self.leases(&rows))
    }

    async fn renew_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        let reason = "renew: owner and counter must match and no handoff may be in progress";
        self.fenced("renew_lease", &self.statements.renew, fence, &[], reason).await
    }

    async fn take_lease(
        &self,
        lease_key: &str,
        expected_counter: u64,
        new_owner: &str,
    ) -> Result<Lease, LeaseStoreError> {
        let reason = "take: counter must match";
        let Ok(counter) = i64::try_from(expected_counter) else {
            return Err(LeaseStoreError::condition_failed(lease_key, reason));
        };
        let rows = self.query("take_lease", &self.statements.take, &[&lease_key, &counter, &new_owner]).await?;
        match (rows.is_empty(), self.leases(&rows).pop()) {
            (_, Some(lease)) => Ok(lease),
            (true, None) => Err(LeaseStoreError::condition_failed(lease_key, reason)),
            // Taken but unreadable: every read skips that row, so no coordinator meant to take it; say so.
            (false, None) => Err(LeaseStoreError::fatal(
                "take_lease",
                format!("lease {lease_key} was taken but cannot be read back (see the warning logged)"),
            )),
        }
    }

    async fn release_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        let reason = "release: owner and counter must match";
        self.fenced("release_lease", &self.statements.release, fence, &[], reason).await
    }

    async fn evict_lease(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        let params: [Param<'_>; 2] = [&lease_key, &expected_owner];
        self.counted("evict_lease", &self.statements.evict, &params, lease_key, "evict: owner must match").await
    }

    async fn assign_for_handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        let reason = "handoff: owner and counter must match";
        self.fenced("assign_for_handoff", &self.statements.handoff, fence, &[&new_owner], reason).await
    }

    async fn update_checkpoint(
        &self,
        fence: &LeaseFence,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<u64, LeaseStoreError> {
        let reason = "checkpoint: counter must match and the caller must hold the checkpointing right";
        let (checkpoint, sub) = position("update_checkpoint", checkpoint)?;
        self.fenced("update_checkpoint", &self.statements.checkpoint, fence, &[&checkpoint, &sub], reason).await
    }

    async fn prepare_checkpoint(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        let reason = "prepare checkpoint: counter must match and the caller must hold the checkpointing right";
        let (pending, sub) = position("prepare_checkpoint", pending)?;
        let state = state.as_deref();
        self.fenced("prepare_checkpoint", &self.statements.prepare, fence, &[&pending, &sub, &state], reason).await
    }

    async fn update_child_shards(
        &self,
        fence: &LeaseFence,
        child_shard_ids: &[String],
    ) -> Result<u64, LeaseStoreError> {
        let reason = "child shards: counter must match and the caller must hold the checkpointing right";
        self.fenced("update_child_shards", &self.statements.child_shards, fence, &[&child_shard_ids], reason).await
    }

    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseStoreError> {
        self.execute("delete_lease", &self.statements.delete, &[&lease_key]).await.map(drop)
    }

    async fn renew_heartbeat(&self, worker_id: &str, expected_counter: Option<u64>) -> Result<u64, LeaseStoreError> {
        const OP: &str = "renew_heartbeat";
        let reason = "heartbeat: counter must match";
        match expected_counter.map(i64::try_from) {
            // Created only when absent: the insert does nothing when a heartbeat exists.
            None => match self.execute(OP, &self.statements.heartbeat_create, &[&worker_id]).await? {
                1 => Ok(1),
                _ => Err(LeaseStoreError::condition_failed(worker_id, reason)),
            },
            Some(Ok(counter)) => {
                let params: [Param<'_>; 2] = [&worker_id, &counter];
                self.counted(OP, &self.statements.heartbeat_renew, &params, worker_id, reason).await
            }
            Some(Err(_)) => Err(LeaseStoreError::condition_failed(worker_id, reason)),
        }
    }

    async fn list_heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError> {
        let rows = self.query("list_heartbeats", &self.statements.heartbeat_list, &[]).await?;
        let mut beats = Vec::with_capacity(rows.len());
        for row in rows {
            let (Ok(worker_id), Ok(counter)) = (row.try_get::<_, String>(0), row.try_get::<_, i64>(1)) else {
                tracing::warn!(table = self.table.as_str(), "skipping a heartbeat row this store cannot read");
                continue;
            };
            match u64::try_from(counter) {
                Ok(counter) => beats.push(WorkerHeartbeat { worker_id, counter }),
                Err(_) => tracing::warn!(worker_id, "skipping a heartbeat with a negative counter"),
            }
        }
        Ok(beats)
    }

    async fn delete_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        self.execute("delete_heartbeat", &self.statements.heartbeat_delete, &[&worker_id]).await.map(drop)
    }
}
