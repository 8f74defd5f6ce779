//! The SQLite lease store against the public `LeaseStore` contract suite (one test per case, each on its own
//! database file in its own temporary directory), plus what the suite cannot see: two store objects on one file
//! (as two processes would share it), many openers racing on a new file, lock contention classified as retryable, unreadable rows skipped, and a
//! foreign table refused.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{Lease, LeaseFence, LeasePage, LeaseStore, LeaseStoreError, PageToken, WorkerHeartbeat};
use kcl_examples::sqlite_store::SqliteLeaseStore;
use tempfile::TempDir;

/// A store on a fresh file that deletes its directory when the case drops it.
struct TempStore {
    store: SqliteLeaseStore,
    _dir: TempDir,
}

async fn fresh_store() -> TempStore {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteLeaseStore::builder(dir.path().join("leases.db")).open().await.unwrap();
    TempStore { store, _dir: dir }
}

mod sqlite_lease_store_contract {
    kcl_core::lease_store_contract_tests!(super::fresh_store);
}

// Plain delegation: the contract suite takes ownership of the store, and the directory must live as long.
#[async_trait]
impl LeaseStore for TempStore {
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        self.store.create_lease_if_not_exists(lease).await
    }
    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        self.store.get_lease(lease_key).await
    }
    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError> {
        self.store.list_leases(page, page_size).await
    }
    async fn list_leases_by_owner(&self, owner: &str) -> Result<Vec<Lease>, LeaseStoreError> {
        self.store.list_leases_by_owner(owner).await
    }
    async fn renew_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.store.renew_lease(fence).await
    }
    async fn take_lease(&self, key: &str, counter: u64, owner: &str) -> Result<Lease, LeaseStoreError> {
        self.store.take_lease(key, counter, owner).await
    }
    async fn release_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.store.release_lease(fence).await
    }
    async fn evict_lease(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        self.store.evict_lease(lease_key, expected_owner).await
    }
    async fn assign_for_handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        self.store.assign_for_handoff(fence, new_owner).await
    }
    async fn update_checkpoint(&self, fence: &LeaseFence, at: &ExtendedSequenceNumber) -> Result<u64, LeaseStoreError> {
        self.store.update_checkpoint(fence, at).await
    }
    async fn prepare_checkpoint(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        self.store.prepare_checkpoint(fence, pending, state).await
    }
    async fn update_child_shards(&self, fence: &LeaseFence, children: &[String]) -> Result<u64, LeaseStoreError> {
        self.store.update_child_shards(fence, children).await
    }
    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseStoreError> {
        self.store.delete_lease(lease_key).await
    }
    async fn renew_heartbeat(&self, worker_id: &str, expected: Option<u64>) -> Result<u64, LeaseStoreError> {
        self.store.renew_heartbeat(worker_id, expected).await
    }
    async fn list_heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError> {
        self.store.list_heartbeats().await
    }
    async fn delete_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        self.store.delete_heartbeat(worker_id).await
    }
}

fn lease(key: &str) -> Lease {
    Lease::new_for_shard(key, ExtendedSequenceNumber::TrimHorizon)
}

/// Two store objects on one file, as two worker processes: each sees the other's writes at once, and when both
/// race to take the same leases, every lease has exactly one winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_share_leases_and_race_fairly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = Arc::new(SqliteLeaseStore::builder(&path).open().await.unwrap());
    let b = Arc::new(SqliteLeaseStore::builder(&path).open().await.unwrap());
    let keys: Vec<String> = (0..20).map(|i| format!("shardId-{i:012}")).collect();
    for key in &keys {
        assert!(a.create_lease_if_not_exists(&lease(key)).await.unwrap());
        assert!(!b.create_lease_if_not_exists(&lease(key)).await.unwrap(), "b must see a's lease {key}");
    }
    let race = |store: Arc<SqliteLeaseStore>, owner: &'static str| {
        let keys = keys.clone();
        tokio::spawn(async move {
            let mut won = Vec::new();
            for key in keys {
                match store.take_lease(&key, 0, owner).await {
                    Ok(taken) => won.push((key, taken.lease_counter)),
                    Err(error) => assert!(error.is_condition_failed(), "{owner} lost {key} with {error:?}"),
                }
            }
            won
        })
    };
    let (won_a, won_b) = (race(a.clone(), "worker-a"), race(b.clone(), "worker-b"));
    let (won_a, won_b) = (won_a.await.unwrap(), won_b.await.unwrap());
    assert_eq!(won_a.len() + won_b.len(), keys.len(), "every lease is taken exactly once");
    for (store, won, owner) in [(&b, &won_a, "worker-a"), (&a, &won_b, "worker-b")] {
        for (key, counter) in won {
            let stored = store.get_lease(key).await.unwrap().unwrap();
            assert_eq!((stored.lease_owner.as_deref(), stored.lease_counter), (Some(owner), *counter));
        }
    }
}

/// Processes starting together on a new file race to switch it to WAL and create the tables; SQLite answers some of
/// them `SQLITE_BUSY` without waiting (its busy handler is skipped where waiting could deadlock). Every opener
/// must still succeed, and they all see one table (CI hit "database is locked" from `open` with three openers).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_stores_opening_a_new_file_at_once_all_succeed() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { SqliteLeaseStore::builder(&path).open().await })
            })
            .collect();
        let mut stores = Vec::new();
        for opener in openers {
            match opener.await.unwrap() {
                Ok(store) => stores.push(store),
                Err(error) => panic!("round {round}: an opener failed: {error:?}"),
            }
        }
        assert!(stores[0].create_lease_if_not_exists(&lease("shardId-1")).await.unwrap());
        for store in &stores[1..] {
            assert!(!store.create_lease_if_not_exists(&lease("shardId-1")).await.unwrap(), "one shared table");
        }
    }
}

/// A write that cannot get the database lock within the busy timeout (another process holds a write transaction)
/// fails as retryable and changes nothing; reads go on meanwhile (WAL), and the write succeeds once the lock is
/// released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_a_retryable_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let store = SqliteLeaseStore::builder(&path).busy_timeout(Duration::from_millis(100)).open().await.unwrap();
    store.create_lease_if_not_exists(&lease("shardId-1")).await.unwrap();
    let taken = store.take_lease("shardId-1", 0, "worker-a").await.unwrap();
    let fence = taken.fence().unwrap();

    // Another process's connection holding the write lock.
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let holding = other.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
    let error = store.renew_lease(&fence).await.unwrap_err();
    assert!(error.is_retryable(), "a busy database must be Transient, got {error:?}");
    let error = store.renew_heartbeat("worker-a", None).await.unwrap_err();
    assert!(error.is_retryable(), "a busy database must be Transient, got {error:?}");
    let read = store.get_lease("shardId-1").await.unwrap().unwrap();
    assert_eq!(read.lease_counter, fence.counter, "reads proceed while another connection writes");
    holding.rollback().unwrap();

    assert_eq!(store.renew_lease(&fence).await.unwrap(), fence.counter + 1);
}

/// Rows another program wrote that are not leases this store can read are skipped by reads, listed apart (key and
/// reason) by listings (and paging moves past them); the readable ones are still returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_rows_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.db");
    let store = SqliteLeaseStore::builder(&path).open().await.unwrap();
    for key in ["a", "c", "e"] {
        store.create_lease_if_not_exists(&lease(key)).await.unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    let insert = "INSERT INTO kcl_leases (lease_key, lease_counter, owner_switches_since_checkpoint, checkpoint, \
                  checkpoint_sub_sequence, parent_shard_ids, child_shard_ids, shard_id) VALUES (?1, 0, 0, ?2, 0, ?3, \
                  '[]', ?1)";
    raw.execute(insert, rusqlite::params!["b", "NOT_A_SEQUENCE", "[]"]).unwrap();
    raw.execute(insert, rusqlite::params!["d", "TRIM_HORIZON", "{broken"]).unwrap();

    assert_eq!(store.get_lease("b").await.unwrap(), None);
    assert_eq!(store.get_lease("d").await.unwrap(), None);
    let keys = |leases: Vec<Lease>| leases.into_iter().map(|l| l.lease_key).collect::<Vec<_>>();
    assert_eq!(keys(store.list_all_leases().await.unwrap()), ["a", "c", "e"]);
    let mut paged = Vec::new();
    let mut reported = Vec::new();
    let mut page = None;
    loop {
        let LeasePage { leases, unreadable, next_page, .. } = store.list_leases(page, 1).await.unwrap();
        paged.extend(keys(leases));
        reported.extend(unreadable.into_iter().map(|u| u.lease_key));
        match next_page {
            Some(next) => page = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, ["a", "c", "e"], "one-row pages step over unreadable rows");
    assert_eq!(reported, ["b", "d"], "and list them apart, by key");
    let error = store.take_lease("b", 0, "worker-a").await.unwrap_err();
    assert!(error.is_condition_failed(), "an unreadable lease cannot be taken: {error:?}");
}

/// A table of the same name with other columns is refused at open as a fatal error; a bad table name too.
#[tokio::test]
async fn a_foreign_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign.db");
    rusqlite::Connection::open(&path).unwrap().execute_batch("CREATE TABLE kcl_leases (id INTEGER)").unwrap();
    let error = SqliteLeaseStore::builder(&path).open().await.unwrap_err();
    assert!(matches!(error, LeaseStoreError::Fatal { .. }), "{error:?}");
    assert!(error.to_string().contains("other columns"), "{error}");

    let other_table = SqliteLeaseStore::builder(&path).table("orders_app").open().await.unwrap();
    assert_eq!(other_table.list_all_leases().await.unwrap(), Vec::new());
    let error = SqliteLeaseStore::builder(&path).table("x\"; DROP TABLE kcl_leases; --").open().await.unwrap_err();
    assert!(matches!(error, LeaseStoreError::Fatal { .. }), "{error:?}");
}
