//! The transactional checkpoint against the real PostgreSQL that `scripts/test` starts: a zombie worker's
//! transaction (its lease taken meanwhile) is rejected and its sink rows are absent; the new owner's redelivered
//! batch commits once; a worker that got the lease back after someone else moved the checkpoint is rejected too.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use kcl_core::lease::{Lease, LeaseStore};
use kcl_core::process::{CheckpointSink, Checkpointer};
use kcl_core::types::SequenceNumber;
use kcl_core::{ExtendedSequenceNumber, KclError};
use kcl_postgres_lease::tokio_postgres::{self, Client, NoTls};
use kcl_postgres_lease::{PostgresLeaseError, PostgresLeaseStore};

mod common;

static NEXT: AtomicUsize = AtomicUsize::new(0);
const KEY: &str = "shardId-000000000001";

/// The framework's side of a checkpoint, reduced to what the coordinator does: a write fenced by this worker's
/// ownership and the lease's current counter.
struct StoreSink {
    store: Arc<PostgresLeaseStore>,
    worker: &'static str,
}

#[async_trait]
impl CheckpointSink for StoreSink {
    async fn checkpoint(&self, lease_key: &str, position: &ExtendedSequenceNumber) -> Result<(), KclError> {
        let lost = || KclError::LeaseLost { lease_key: lease_key.to_owned() };
        let lease = self.store.get_lease(lease_key).await?.ok_or_else(lost)?;
        if lease.checkpointing_owner() != Some(self.worker) {
            return Err(lost());
        }
        let fence = kcl_core::lease::LeaseFence {
            lease_key: lease_key.to_owned(),
            owner: self.worker.to_owned(),
            counter: lease.lease_counter,
        };
        self.store.update_checkpoint(&fence, position).await?;
        Ok(())
    }

    async fn prepare_checkpoint(&self, _: &str, _: &ExtendedSequenceNumber, _: Option<Bytes>) -> Result<(), KclError> {
        unreachable!("these tests do not prepare checkpoints")
    }
}

struct Setup {
    store: Arc<PostgresLeaseStore>,
    sink_table: String,
}

async fn setup() -> Setup {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let table = format!("tx_{}_{n}", std::process::id());
    let store = PostgresLeaseStore::builder(&common::postgres_url()).table(table.clone()).open().await.unwrap();
    let sink_table = format!("{table}_sink");
    let client = client().await;
    client
        .batch_execute(&format!("CREATE TABLE {sink_table} (worker TEXT NOT NULL, record TEXT NOT NULL)"))
        .await
        .unwrap();
    store.create_lease_if_not_exists(&Lease::new_for_shard(KEY, ExtendedSequenceNumber::TrimHorizon)).await.unwrap();
    Setup { store: Arc::new(store), sink_table }
}

async fn client() -> Client {
    let (client, connection) = tokio_postgres::connect(&common::postgres_url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

fn seq(n: u64) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::sequence(SequenceNumber::parse(&format!("4960{n:040}")).unwrap())
}

impl Setup {
    fn checkpointer(&self, worker: &'static str, current: ExtendedSequenceNumber) -> Checkpointer {
        Checkpointer::new(KEY, Arc::new(StoreSink { store: self.store.clone(), worker }), current)
    }

    /// Processes records `first..=last` as `worker`: its sink rows and the checkpoint past them in one transaction.
    async fn process(
        &self,
        client: &mut Client,
        worker: &'static str,
        checkpointer: &mut Checkpointer,
        records: std::ops::RangeInclusive<u64>,
        before_commit: impl AsyncFnOnce(),
    ) -> Result<(), PostgresLeaseError> {
        checkpointer.set_largest_permitted(seq(*records.end()));
        let tx = client.transaction().await.unwrap();
        for record in records {
            let insert = format!("INSERT INTO {} (worker, record) VALUES ($1, $2)", self.sink_table);
            tx.execute(&insert, &[&worker, &record.to_string()]).await.unwrap();
        }
        before_commit().await;
        self.store.commit_with_checkpoint(tx, worker, checkpointer, None).await
    }

    async fn sink_rows(&self) -> Vec<(String, String)> {
        let query = format!("SELECT worker, record FROM {} ORDER BY worker, record::int", self.sink_table);
        client().await.query(&query, &[]).await.unwrap().iter().map(|row| (row.get(0), row.get(1))).collect()
    }

    async fn lease(&self) -> Lease {
        self.store.get_lease(KEY).await.unwrap().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_workers_transaction_is_rejected_and_writes_nothing() {
    let s = setup().await;
    let taken = s.store.take_lease(KEY, 0, "worker-a").await.unwrap();
    let mut a = s.checkpointer("worker-a", taken.checkpoint.clone());
    let mut a_client = client().await;

    // worker-a writes its batch; before it commits, worker-b takes the lease (worker-a stalled past the lease).
    let store = s.store.clone();
    let error = s
        .process(&mut a_client, "worker-a", &mut a, 1..=3, async || {
            let counter = store.get_lease(KEY).await.unwrap().unwrap().lease_counter;
            store.take_lease(KEY, counter, "worker-b").await.unwrap();
        })
        .await
        .unwrap_err();
    assert!(error.is_fenced(), "a zombie's commit must fail its fence: {error:?}");
    assert_eq!(s.sink_rows().await, Vec::<(String, String)>::new(), "the zombie's sink rows were rolled back");
    let lease = s.lease().await;
    assert_eq!(
        (lease.checkpoint.clone(), lease.lease_owner.as_deref()),
        (ExtendedSequenceNumber::TrimHorizon, Some("worker-b"))
    );

    // worker-b gets the same records again (redelivery from the checkpoint) and commits them once.
    let mut b = s.checkpointer("worker-b", lease.checkpoint.clone());
    let mut b_client = client().await;
    s.process(&mut b_client, "worker-b", &mut b, 1..=3, async || {}).await.unwrap();
    let rows = s.sink_rows().await;
    assert_eq!(rows, [1, 2, 3].map(|r| ("worker-b".to_owned(), r.to_string())), "one copy of each record");
    let after = s.lease().await;
    assert_eq!(after.checkpoint, seq(3), "the checkpoint committed with the rows");
    assert_eq!(b.last_checkpoint(), &seq(3), "the framework was told");
    assert!(after.lease_counter > lease.lease_counter, "the framework's own fenced write followed");

    // The connection of the rejected transaction is usable again (it was rolled back, not left aborted).
    a_client.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_got_its_lease_back_after_others_progressed_is_rejected() {
    let s = setup().await;
    let taken = s.store.take_lease(KEY, 0, "worker-a").await.unwrap();
    let mut stale = s.checkpointer("worker-a", taken.checkpoint.clone());

    // Meanwhile worker-b took the lease, committed records 1..=5 and lost the lease back to worker-a.
    let b_lease = s.store.take_lease(KEY, taken.lease_counter, "worker-b").await.unwrap();
    let mut b = s.checkpointer("worker-b", b_lease.checkpoint.clone());
    s.process(&mut client().await, "worker-b", &mut b, 1..=5, async || {}).await.unwrap();
    let counter = s.lease().await.lease_counter;
    s.store.take_lease(KEY, counter, "worker-a").await.unwrap();

    // worker-a's old processor still believes the checkpoint is TRIM_HORIZON: its batch overlaps b's and is refused.
    let error = s.process(&mut client().await, "worker-a", &mut stale, 1..=4, async || {}).await.unwrap_err();
    assert!(error.is_fenced(), "{error:?}");
    let rows = s.sink_rows().await;
    assert_eq!(rows.len(), 5, "only worker-b's rows: {rows:?}");
    assert!(rows.iter().all(|(worker, _)| worker == "worker-b"), "{rows:?}");
    assert_eq!(s.lease().await.checkpoint, seq(5));

    // A processor of worker-a that starts from the stored checkpoint continues normally.
    let mut fresh = s.checkpointer("worker-a", seq(5));
    s.process(&mut client().await, "worker-a", &mut fresh, 6..=7, async || {}).await.unwrap();
    assert_eq!(s.sink_rows().await.len(), 7);
    assert_eq!(s.lease().await.checkpoint, seq(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_beyond_the_delivered_records_is_refused_before_anything_commits() {
    let s = setup().await;
    let taken = s.store.take_lease(KEY, 0, "worker-a").await.unwrap();
    let mut a = s.checkpointer("worker-a", taken.checkpoint);
    a.set_largest_permitted(seq(2));
    let mut a_client = client().await;
    let tx = a_client.transaction().await.unwrap();
    tx.execute(&format!("INSERT INTO {} VALUES ('worker-a', '1')", s.sink_table), &[]).await.unwrap();
    let error = s.store.commit_with_checkpoint(tx, "worker-a", &mut a, Some(seq(3))).await.unwrap_err();
    assert!(matches!(error, PostgresLeaseError::InvalidCheckpoint { .. }), "{error:?}");
    assert!(s.sink_rows().await.is_empty(), "dropping the transaction rolled it back");
}
