//! The `LeaseStore` methods of [`SqliteLeaseStore`]: each one a read, or one conditional statement in a write
//! transaction (see [`Pool::write`](super::pool::Pool::write)), whose empty result means the condition failed.

use async_trait::async_trait;
use bytes::Bytes;
use kcl_core::lease::{
    Lease, LeaseFence, LeasePage, LeaseStore, LeaseStoreError, PageToken, UnreadableLease, WorkerHeartbeat,
};
use kcl_core::types::ExtendedSequenceNumber;
use rusqlite::{Connection, OptionalExtension, Params, Rows, params};

use super::SqliteLeaseStore;
use super::failure::Failure;
use super::schema::{Statements, Unreadable, id_list, insert, position, read_lease};

/// Rows read: the leases, the rows that do not parse (listed apart, for the coordinator and tools to report), the
/// key of the last row taken, parsed or not (so paging moves past unreadable rows too), and whether more followed.
struct Collected {
    leases: Vec<Lease>,
    unreadable: Vec<UnreadableLease>,
    last_key: Option<String>,
    more: bool,
}

/// Reads up to `max` rows.
fn collect_leases(mut rows: Rows<'_>, max: usize) -> Result<Collected, Failure> {
    let mut out = Collected { leases: Vec::new(), unreadable: Vec::new(), last_key: None, more: false };
    for _ in 0..max {
        let Some(row) = rows.next()? else { return Ok(out) };
        match read_lease(row)? {
            Ok(lease) => {
                out.last_key = Some(lease.lease_key.clone());
                out.leases.push(lease);
            }
            Err(unreadable) => {
                out.last_key = unreadable.lease_key.clone().or(out.last_key);
                out.unreadable.push(to_report(unreadable));
            }
        }
    }
    out.more = rows.next()?.is_some();
    Ok(out)
}

fn to_report(unreadable: Unreadable) -> UnreadableLease {
    UnreadableLease::new(unreadable.lease_key.unwrap_or_else(|| "<unreadable key>".to_owned()), unreadable.problem)
}

/// A counter the fence names, as SQLite holds it; `None` when it is past `i64::MAX` and so cannot match any row.
fn fence_counter(counter: u64) -> Option<i64> {
    i64::try_from(counter).ok()
}

/// Runs a conditional `UPDATE … RETURNING <counter>`; no row means the condition did not hold.
fn counted_update(
    tx: &Connection,
    sql: &str,
    params: impl Params,
    key: &str,
    reason: &'static str,
) -> Result<u64, Failure> {
    let counter: Option<i64> = tx.prepare_cached(sql)?.query_row(params, |row| row.get(0)).optional()?;
    match counter {
        Some(counter) => u64::try_from(counter).map_err(|_| {
            Failure::Store(LeaseStoreError::fatal("write", format!("lease {key} has a negative counter")))
        }),
        None => Err(Failure::Store(LeaseStoreError::condition_failed(key, reason))),
    }
}

/// The fence of a write, as SQLite compares it.
struct Fence {
    key: String,
    owner: String,
    counter: i64,
}

impl SqliteLeaseStore {
    /// A write conditioned on `fence`; `write` runs the statement (its `?1`..`?3` are the fence's key, owner and
    /// counter) and returns the new counter.
    async fn fenced<W>(
        &self,
        operation: &'static str,
        fence: &LeaseFence,
        reason: &'static str,
        write: W,
    ) -> Result<u64, LeaseStoreError>
    where
        W: FnOnce(&Connection, &Statements, &Fence) -> Result<u64, Failure> + Send + 'static,
    {
        // A counter past SQLite's range matches no row: the condition fails without asking.
        let Some(counter) = fence_counter(fence.counter) else {
            return Err(LeaseStoreError::condition_failed(&fence.lease_key, reason));
        };
        let fence = Fence { key: fence.lease_key.clone(), owner: fence.owner.clone(), counter };
        self.pool.write(operation, move |tx, statements| write(tx, statements, &fence)).await
    }
}

#[async_trait]
impl LeaseStore for SqliteLeaseStore {
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        let lease = lease.clone();
        self.pool
            .write("create_lease_if_not_exists", move |tx, s| {
                Ok(insert(&mut *tx.prepare_cached(&s.insert)?, &lease)? == 1)
            })
            .await
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        let key = lease_key.to_owned();
        self.pool
            .read("get_lease", move |conn, s| {
                let mut statement = conn.prepare_cached(&s.get)?;
                Ok(collect_leases(statement.query(params![key])?, 1)?.leases.pop())
            })
            .await
    }

    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError> {
        let page_size = page_size.max(1);
        // One row more than the page, to learn whether another page follows without a second query.
        let limit = i64::try_from(page_size).unwrap_or(i64::MAX - 1) + 1;
        self.pool
            .read("list_leases", move |conn, s| {
                let Collected { leases, unreadable, last_key, more } = match &page {
                    Some(PageToken(after)) => {
                        let mut statement = conn.prepare_cached(&s.list_after)?;
                        collect_leases(statement.query(params![after, limit])?, page_size)?
                    }
                    None => {
                        let mut statement = conn.prepare_cached(&s.list_first)?;
                        collect_leases(statement.query(params![limit])?, page_size)?
                    }
                };
                let next_page = if more { last_key.map(PageToken) } else { None };
                Ok(LeasePage { leases, unreadable, next_page })
            })
            .await
    }

    async fn list_leases_by_owner(&self, owner: &str) -> Result<Vec<Lease>, LeaseStoreError> {
        let owner = owner.to_owned();
        self.pool
            .read("list_leases_by_owner", move |conn, s| {
                let mut statement = conn.prepare_cached(&s.list_by_owner)?;
                Ok(collect_leases(statement.query(params![owner])?, usize::MAX)?.leases)
            })
            .await
    }

    async fn renew_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        let reason = "renew: owner and counter must match and no handoff may be in progress";
        self.fenced("renew_lease", fence, reason, move |tx, s, f| {
            counted_update(tx, &s.renew, params![f.key, f.owner, f.counter], &f.key, reason)
        })
        .await
    }

    async fn take_lease(
        &self,
        lease_key: &str,
        expected_counter: u64,
        new_owner: &str,
    ) -> Result<Lease, LeaseStoreError> {
        let reason = "take: counter must match";
        let Some(counter) = fence_counter(expected_counter) else {
            return Err(LeaseStoreError::condition_failed(lease_key, reason));
        };
        let (key, owner) = (lease_key.to_owned(), new_owner.to_owned());
        self.pool
            .write("take_lease", move |tx, s| {
                let mut statement = tx.prepare_cached(&s.take)?;
                let Collected { mut leases, last_key, .. } =
                    collect_leases(statement.query(params![key, counter, owner])?, 1)?;
                match (leases.pop(), last_key) {
                    (Some(lease), _) => Ok(lease),
                    // The row matched but cannot be read back: fail, which rolls the take back. Every read skips
                    // that row, so no coordinator meant to take it.
                    (None, Some(_)) => {
                        Err(LeaseStoreError::condition_failed(key, "take: the lease is unreadable").into())
                    }
                    (None, None) => Err(LeaseStoreError::condition_failed(key, reason).into()),
                }
            })
            .await
    }

    async fn release_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        let reason = "release: owner and counter must match";
        self.fenced("release_lease", fence, reason, move |tx, s, f| {
            counted_update(tx, &s.release, params![f.key, f.owner, f.counter], &f.key, reason)
        })
        .await
    }

    async fn evict_lease(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        let (key, owner) = (lease_key.to_owned(), expected_owner.to_owned());
        self.pool
            .write("evict_lease", move |tx, s| {
                counted_update(tx, &s.evict, params![key, owner], &key, "evict: owner must match")
            })
            .await
    }

    async fn assign_for_handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        let reason = "handoff: owner and counter must match";
        let new_owner = new_owner.to_owned();
        self.fenced("assign_for_handoff", fence, reason, move |tx, s, f| {
            counted_update(tx, &s.handoff, params![f.key, f.owner, f.counter, new_owner], &f.key, reason)
        })
        .await
    }

    async fn update_checkpoint(
        &self,
        fence: &LeaseFence,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<u64, LeaseStoreError> {
        let reason = "checkpoint: counter must match and the caller must hold the checkpointing right";
        let (checkpoint, sub) = position("update_checkpoint", checkpoint)?;
        self.fenced("update_checkpoint", fence, reason, move |tx, s, f| {
            counted_update(tx, &s.checkpoint, params![f.key, f.owner, f.counter, checkpoint, sub], &f.key, reason)
        })
        .await
    }

    async fn prepare_checkpoint(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        let reason = "prepare checkpoint: counter must match and the caller must hold the checkpointing right";
        let (pending, sub) = position("prepare_checkpoint", pending)?;
        self.fenced("prepare_checkpoint", fence, reason, move |tx, s, f| {
            let values = params![f.key, f.owner, f.counter, pending, sub, state.as_deref()];
            counted_update(tx, &s.prepare, values, &f.key, reason)
        })
        .await
    }

    async fn update_child_shards(
        &self,
        fence: &LeaseFence,
        child_shard_ids: &[String],
    ) -> Result<u64, LeaseStoreError> {
        let reason = "child shards: counter must match and the caller must hold the checkpointing right";
        let ids = id_list(child_shard_ids);
        self.fenced("update_child_shards", fence, reason, move |tx, s, f| {
            counted_update(tx, &s.child_shards, params![f.key, f.owner, f.counter, ids], &f.key, reason)
        })
        .await
    }

    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseStoreError> {
        let key = lease_key.to_owned();
        self.pool
            .write("delete_lease", move |tx, s| {
                tx.prepare_cached(&s.delete)?.execute(params![key])?;
                Ok(())
            })
            .await
    }

    async fn renew_heartbeat(&self, worker_id: &str, expected_counter: Option<u64>) -> Result<u64, LeaseStoreError> {
        let reason = "heartbeat: counter must match";
        let worker = worker_id.to_owned();
        let expected = match expected_counter.map(fence_counter) {
            None => None,
            Some(Some(counter)) => Some(counter),
            Some(None) => return Err(LeaseStoreError::condition_failed(worker, reason)),
        };
        self.pool
            .write("renew_heartbeat", move |tx, s| match expected {
                // Created only when absent: the insert does nothing when a heartbeat exists.
                None => match tx.prepare_cached(&s.heartbeat_create)?.execute(params![worker])? {
                    1 => Ok(1),
                    _ => Err(LeaseStoreError::condition_failed(worker, reason).into()),
                },
                Some(counter) => counted_update(tx, &s.heartbeat_renew, params![worker, counter], &worker, reason),
            })
            .await
    }

    async fn list_heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError> {
        self.pool
            .read("list_heartbeats", |conn, s| {
                let mut statement = conn.prepare_cached(&s.heartbeat_list)?;
                let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
                let mut beats = Vec::new();
                for row in rows {
                    let (worker_id, counter) = row?;
                    match u64::try_from(counter) {
                        Ok(counter) => beats.push(WorkerHeartbeat { worker_id, counter }),
                        Err(_) => tracing::warn!(worker_id, "skipping a heartbeat with a negative counter"),
                    }
                }
                Ok(beats)
            })
            .await
    }

    async fn delete_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        let worker = worker_id.to_owned();
        self.pool
            .write("delete_heartbeat", move |tx, s| {
                tx.prepare_cached(&s.heartbeat_delete)?.execute(params![worker])?;
                Ok(())
            })
            .await
    }
}
