//! A fleet with a kill, on the real PostgreSQL that `scripts/test` starts and kcl-core's in-memory Kinesis stream:
//! worker-1 takes every lease and gets stuck inside its first batches (rows written, not committed), then is cut off
//! from the lease table (a kill as the others see it: no renewals). worker-2 and worker-3 take the expired leases and
//! get the same records again; meanwhile a shard is split and more records are put. When worker-1's processors wake
//! up, their transactions are refused by the fence.
//! The sink ends with each record exactly once, although the delivery log shows the redeliveries.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{FaultConfig, FaultyLeaseStore, LeaseStore};
use kcl_core::process::{BatchResult, InitializeInput, ProcessorError};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, Worker};
use kcl_postgres_lease::PostgresLeaseStore;
use kcl_postgres_lease::tokio_postgres::{self, Client, NoTls};
use tokio::sync::watch;

mod common;

const SHARDS: usize = 3;
const RECORDS: usize = 150;
/// Records put after shard 0 was split (they land in its children and the other shards).
const AFTER_SPLIT: usize = 60;

struct Shared {
    store: Arc<PostgresLeaseStore>,
    sink: String,
    /// (worker, sequence number) of every record delivered to a processor.
    delivered: Mutex<Vec<(String, String)>>,
    /// Transactions refused by the fence, per worker.
    fenced: Mutex<Vec<String>>,
}

struct Processor {
    shared: Arc<Shared>,
    worker: &'static str,
    client: Option<Client>,
    /// worker-1's processors wait inside their transaction until this turns `true`.
    thaw: watch::Receiver<bool>,
}

#[async_trait]
impl RecordProcessor for Processor {
    async fn initialize(&mut self, _: InitializeInput) -> Result<(), ProcessorError> {
        let (client, connection) =
            tokio_postgres::connect(&common::postgres_url(), NoTls).await.map_err(|e| format!("connect: {e}"))?;
        tokio::spawn(connection);
        self.client = Some(client);
        Ok(())
    }

    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        let shared = self.shared.clone();
        let Some(client) = self.client.as_mut() else { return Err("no connection".into()) };
        let sequences: Vec<String> = batch.records.iter().map(|r| r.sequence_number.to_string()).collect();
        shared.delivered.lock().unwrap().extend(sequences.iter().map(|s| (self.worker.to_owned(), s.clone())));
        let tx = client.transaction().await.map_err(|e| format!("begin: {e}"))?;
        let insert = format!("INSERT INTO {} (record, worker) VALUES ($1, $2)", shared.sink);
        for sequence in &sequences {
            tx.execute(&insert, &[sequence, &self.worker]).await.map_err(|e| format!("insert: {e}"))?;
        }
        let _ = self.thaw.wait_for(|thawed| *thawed).await;
        match shared.store.commit_with_checkpoint(tx, self.worker, checkpointer, None).await {
            Ok(()) => Ok(()),
            Err(error) if error.is_fenced() => {
                shared.fenced.lock().unwrap().push(self.worker.to_owned());
                // Nothing was written; the lease is someone else's, who gets these records again.
                Ok(())
            }
            Err(error) => Err(error.to_string().into()),
        }
    }
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_workers_batches_are_redelivered_and_counted_once() {
    let table = format!("fleet_{}", std::process::id());
    let store =
        Arc::new(PostgresLeaseStore::builder(&common::postgres_url()).table(table.clone()).open().await.unwrap());
    let sink = format!("{table}_sink");
    let (admin, connection) = tokio_postgres::connect(&common::postgres_url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    admin.batch_execute(&format!("CREATE TABLE {sink} (record TEXT NOT NULL, worker TEXT NOT NULL)")).await.unwrap();
    let shared = Arc::new(Shared {
        store: store.clone(),
        sink: sink.clone(),
        delivered: Mutex::default(),
        fenced: Mutex::default(),
    });

    let stream = MemoryStream::new("fleet-exactly-once", SHARDS);
    let mut put = BTreeSet::new();
    for i in 0..RECORDS {
        put.insert(stream.put(format!("device-{i}"), format!("reading {i}")).unwrap().sequence_number.to_string());
    }

    let (thaw, frozen) = watch::channel(false);
    let (_always, thawed) = watch::channel(true);
    let start = |worker: &'static str, lease_store: Arc<dyn LeaseStore>, thaw: watch::Receiver<bool>| {
        let shared = shared.clone();
        let worker = Worker::builder(stream.name().clone(), "fleet")
            .worker_id(worker)
            .record_source(Arc::new(stream.clone()))
            .shard_lister(Arc::new(stream.clone()))
            .lease_store(lease_store)
            .initial_position(InitialPosition::TrimHorizon)
            .lease_config(
                LeaseCoordinatorConfig::builder().lease_duration(Duration::from_millis(1500)).build().unwrap(),
            )
            .retry_backoff(Duration::from_millis(10), Duration::from_millis(100))
            .processor_factory(move |_: &str| Processor {
                shared: shared.clone(),
                worker,
                client: None,
                thaw: thaw.clone(),
            })
            .build()
            .unwrap();
        let shutdown = worker.shutdown_handle();
        (shutdown, tokio::spawn(worker.run()))
    };

    // worker-1 alone: it takes every lease and its processors stop inside their first transaction.
    let faulty = Arc::new(FaultyLeaseStore::shared(store.clone()));
    let (stop_1, run_1) = start("worker-1", faulty.clone(), frozen);
    wait_for("worker-1 to be inside a batch of every shard", async || {
        let delivered = shared.delivered.lock().unwrap().len();
        let held = store.list_leases_by_owner("worker-1").await.map(|leases| leases.len()).unwrap_or(0);
        delivered >= SHARDS && held == SHARDS
    })
    .await;
    let stuck = shared.delivered.lock().unwrap().len();

    // The kill: worker-1 can no longer reach the lease table. The others take its leases when they expire.
    faulty.switch().set(FaultConfig::fail_all());
    let (stop_2, run_2) = start("worker-2", store.clone(), thawed.clone());
    let (stop_3, run_3) = start("worker-3", store.clone(), thawed);

    // A split while the survivors take over: the parent is read to its end before its children start, and the
    // records put afterwards (in the children) reach the sink once too.
    let parent = stream.shards().into_iter().next().expect("a shard");
    let range = parent.hash_key_range;
    stream.split(&parent.shard_id, range.start + (range.end - range.start) / 2).unwrap();
    for i in RECORDS..RECORDS + AFTER_SPLIT {
        put.insert(stream.put(format!("device-{i}"), format!("reading {i}")).unwrap().sequence_number.to_string());
    }
    let total = RECORDS + AFTER_SPLIT;
    let count = format!("SELECT count(*) FROM {sink}");
    wait_for("every record in the sink", async || {
        admin.query_one(&count, &[]).await.unwrap().get::<_, i64>(0) as usize >= total
    })
    .await;

    // worker-1's processors wake up and try to commit: refused, their rows rolled back.
    thaw.send_replace(true);
    wait_for("worker-1's transactions to be refused", async || {
        shared.fenced.lock().unwrap().iter().filter(|w| *w == "worker-1").count() >= 1
    })
    .await;
    faulty.switch().heal();
    for stop in [&stop_1, &stop_2, &stop_3] {
        stop.shutdown();
    }
    for run in [run_1, run_2, run_3] {
        let _ = tokio::time::timeout(Duration::from_secs(30), run).await.expect("workers stop");
    }

    let rows = admin.query(&format!("SELECT record, worker FROM {sink}"), &[]).await.unwrap();
    let records: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    let distinct: BTreeSet<String> = records.iter().cloned().collect();
    let duplicates = records.len() - distinct.len();
    let delivered = shared.delivered.lock().unwrap().len();
    println!(
        "put {total} ({AFTER_SPLIT} after a split), delivered {delivered} (worker-1 stuck with {stuck}), sink rows {}, duplicates {duplicates}, \
         fenced transactions {:?}",
        records.len(),
        shared.fenced.lock().unwrap()
    );
    assert_eq!(duplicates, 0, "no record twice in the sink");
    assert_eq!(distinct, put, "every record put is in the sink");
    assert!(rows.iter().all(|row| row.get::<_, String>(1) != "worker-1"), "none of the zombie's rows committed");
    assert!(delivered > total, "the delivery log shows redeliveries: {delivered} deliveries of {total} records");
}
