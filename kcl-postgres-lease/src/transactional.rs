//! Exactly-once effects: the checkpoint written in the application's own PostgreSQL transaction, so that a batch's
//! results and the checkpoint past it commit together or not at all.
//!
//! Inside `process_records`, open a transaction on your database (the one holding the lease table), write the
//! batch's results in it, then hand it to [`PostgresLeaseStore::commit_with_checkpoint`]:
//!
//! ```no_run
//! # use kcl_core::process::Checkpointer;
//! # use kcl_postgres_lease::PostgresLeaseStore;
//! # async fn process(store: &PostgresLeaseStore, client: &mut tokio_postgres::Client, checkpointer: &mut Checkpointer)
//! # -> Result<(), kcl_postgres_lease::PostgresLeaseError> {
//! let tx = client.transaction().await.map_err(|e| kcl_postgres_lease::PostgresLeaseError::from_driver("begin", e))?;
//! tx.execute("INSERT INTO counts (device, n) VALUES ($1, 1)", &[&"sensor-1"]).await.ok();
//! // Last: the fenced checkpoint, then COMMIT (or ROLLBACK when the fence fails).
//! store.commit_with_checkpoint(tx, "worker-1", checkpointer, None).await?;
//! # Ok(()) }
//! ```
//!
//! # The fence
//!
//! The store adds one statement to the transaction, last:
//!
//! ```sql
//! UPDATE kcl_leases SET checkpoint = <new>, ... WHERE lease_key = <key>
//!   AND COALESCE(checkpoint_owner, lease_owner) = <this worker>   -- the lease is still this worker's
//!   AND (checkpoint, checkpoint_sub_sequence) = <the checkpoint this worker last wrote or found>
//! ```
//!
//! If no row matches, the transaction is rolled back and [`PostgresLeaseError::Fenced`] returned: none of the
//! batch's writes happen. That is what stops a zombie (a worker that lost its lease but still runs a batch): either
//! another worker owns the lease, or it took it, processed from the old checkpoint and moved it, so the expected
//! checkpoint no longer matches. Because the `UPDATE` locks the lease row until `COMMIT`, no take can slip in between
//! the check and the commit; a take that comes after sees the new checkpoint and starts there. So every record's
//! effects commit exactly once, however often Kinesis redelivers it.
//!
//! The fence uses the expected checkpoint rather than the lease counter because the counter moves on every renewal
//! (the framework renews concurrently with processing); the checkpoint moves only when someone commits progress,
//! which is exactly the event that must invalidate this batch. This write leaves `lease_counter` alone (so the
//! framework's cached fence stays valid), and then the framework is told through
//! [`Checkpointer::checkpoint_at`](kcl_core::process::Checkpointer::checkpoint_at) with the same position: an
//! ordinary fenced write of the value already stored, which bumps the counter and keeps the checkpointer's idea of
//! the last checkpoint (the next batch's expected value) in step. No change to kcl-core was needed.
//!
//! # Parallelism and partial failures
//!
//! The expected checkpoint is [`Checkpointer::last_checkpoint`](kcl_core::process::Checkpointer::last_checkpoint),
//! which is exact only while one processor handles the shard: use **`max_parallelism` 1** (the default) with this
//! API. With per-key lanes several processors of one shard checkpoint through their own handles; a handle's
//! `last_checkpoint` can then be older than the stored one, and its transaction is rejected (safe — nothing is
//! written twice — but it stalls). Likewise the position committed must be the batch's watermark: every record at or
//! before it must have its effects in this transaction or an earlier committed one. With partial failures inside a
//! batch, commit only up to the last record before the first failure (pass it as `up_to`), or return the error and
//! let the framework redeliver the batch.

use kcl_core::ExtendedSequenceNumber;
use kcl_core::process::Checkpointer;
use tokio_postgres::Transaction;

use crate::error::PostgresLeaseError;
use crate::schema::position;
use crate::store::PostgresLeaseStore;

impl PostgresLeaseError {
    /// Wraps an error of the driver from the application's own statements, classified like the store's.
    pub fn from_driver(operation: &'static str, error: tokio_postgres::Error) -> Self {
        Self::database(operation, error)
    }
}

impl PostgresLeaseStore {
    /// Adds the fenced checkpoint at `up_to` (default: the last record delivered, `largest_permitted`) to `tx` and
    /// commits it; on a failed fence rolls it back and returns [`PostgresLeaseError::Fenced`]. After the commit the
    /// framework is told through `checkpointer` (see the [module documentation](self)).
    ///
    /// `worker_id` is this worker's id (the lease owner it writes as). `tx` must be a transaction on the database
    /// holding this store's table. Errors: [`PostgresLeaseError::InvalidCheckpoint`] (nothing delivered, or `up_to`
    /// beyond the delivered records or before the last checkpoint; rolled back), `Fenced` (rolled back),
    /// `Database` (a failed statement, rolled back; or a failed `COMMIT`, whose outcome is unknown: the next batch's
    /// fence sorts it out, since a committed checkpoint no longer matches the expected one), and
    /// [`PostgresLeaseError::Framework`] (committed, but the framework could not record it: the lease is being lost;
    /// return the error and stop).
    pub async fn commit_with_checkpoint(
        &self,
        tx: Transaction<'_>,
        worker_id: &str,
        checkpointer: &mut Checkpointer,
        up_to: Option<ExtendedSequenceNumber>,
    ) -> Result<(), PostgresLeaseError> {
        const OP: &str = "commit_with_checkpoint";
        let lease_key = checkpointer.lease_key().to_owned();
        let invalid = |message: String| PostgresLeaseError::InvalidCheckpoint { lease_key: lease_key.clone(), message };
        let target = match (up_to, checkpointer.largest_permitted()) {
            (_, None) => return Err(invalid("no record was delivered yet".to_owned())),
            (None, Some(largest)) => largest.clone(),
            (Some(up_to), Some(largest)) if up_to <= *largest && !up_to.is_sentinel() => up_to,
            (Some(up_to), Some(largest)) => {
                return Err(invalid(format!("{up_to} is not a delivered record position (last delivered: {largest})")));
            }
        };
        let expected = checkpointer.last_checkpoint().clone();
        if target < expected {
            return Err(invalid(format!("{target} is before the current checkpoint {expected}")));
        }
        let (new, new_sub) = position(OP, &target)?;
        let (old, old_sub) = position(OP, &expected)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&lease_key, &worker_id, &new, &new_sub, &old, &old_sub];
        let matched = tx
            .query_opt(self.statements.transactional_checkpoint.as_str(), &params)
            .await
            .map_err(|error| PostgresLeaseError::database(OP, error))?;
        if matched.is_none() {
            // Dropping would roll back too; saying so keeps the connection's state obvious to the caller.
            tx.rollback().await.map_err(|error| PostgresLeaseError::database(OP, error))?;
            return Err(PostgresLeaseError::Fenced {
                lease_key,
                reason: "the lease is no longer this worker's, or its checkpoint moved since this worker last saw it",
            });
        }
        tx.commit().await.map_err(|error| PostgresLeaseError::database(OP, error))?;
        checkpointer.checkpoint_at(target).await.map_err(|source| PostgresLeaseError::Framework { lease_key, source })
    }
}
