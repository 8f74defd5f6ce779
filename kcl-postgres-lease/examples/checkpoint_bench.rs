//! Records per second with the checkpoint in the application's transaction (`commit_with_checkpoint`) versus the
//! plain at-least-once way (commit the results, then a separate fenced `update_checkpoint`), on one lease, batches
//! of `--batch` records each written as one row. Rounds alternate between the two (interleaved, so machine load
//! hits both alike); the medians are printed.
//!
//! ```text
//! KCL_TEST_POSTGRES_URL=postgres://kcl@127.0.0.1:PORT/postgres cargo run --release -p kcl-postgres-lease \
//!     --example checkpoint_bench -- [batches] [batch size] [rounds]
//! ```
//! (`cargo run -p kcl-tests --bin emulators -- serve` starts a PostgreSQL and prints the URL.)

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use kcl_core::lease::{Lease, LeaseFence, LeaseStore};
use kcl_core::process::{CheckpointSink, Checkpointer};
use kcl_core::{ExtendedSequenceNumber, KclError, SequenceNumber};
use kcl_postgres_lease::PostgresLeaseStore;
use kcl_postgres_lease::tokio_postgres::{self, NoTls};

const KEY: &str = "shardId-000000000000";
const WORKER: &str = "bench-worker";

/// The framework's fenced write, as the coordinator makes it (read the counter, write fenced by it).
struct Sink(Arc<PostgresLeaseStore>);

#[async_trait]
impl CheckpointSink for Sink {
    async fn checkpoint(&self, key: &str, position: &ExtendedSequenceNumber) -> Result<(), KclError> {
        let lease = self.0.get_lease(key).await?.ok_or(KclError::LeaseLost { lease_key: key.to_owned() })?;
        let fence = LeaseFence { lease_key: key.to_owned(), owner: WORKER.to_owned(), counter: lease.lease_counter };
        self.0.update_checkpoint(&fence, position).await?;
        Ok(())
    }

    async fn prepare_checkpoint(&self, _: &str, _: &ExtendedSequenceNumber, _: Option<Bytes>) -> Result<(), KclError> {
        Ok(())
    }
}

fn seq(n: u64) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::sequence(SequenceNumber::parse(&format!("4960{n:040}")).expect("a valid sequence number"))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("KCL_TEST_POSTGRES_URL")
        .map_err(|_| "set KCL_TEST_POSTGRES_URL (cargo run -p kcl-tests --bin emulators -- serve starts one)")?;
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let batches = args.next().transpose()?.unwrap_or(200);
    let batch = args.next().transpose()?.unwrap_or(100);
    let rounds = args.next().transpose()?.unwrap_or(3);

    let table = format!("bench_{}", std::process::id());
    let store = Arc::new(PostgresLeaseStore::builder(&url).table(table.clone()).open().await?);
    let (mut client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(connection);
    let sink = format!("{table}_sink");
    client.batch_execute(&format!("CREATE TABLE {sink} (record BIGINT NOT NULL, payload TEXT NOT NULL)")).await?;
    let insert = client.prepare(&format!("INSERT INTO {sink} (record, payload) VALUES ($1, $2)")).await?;
    store.create_lease_if_not_exists(&Lease::new_for_shard(KEY, ExtendedSequenceNumber::TrimHorizon)).await?;
    store.take_lease(KEY, 0, WORKER).await?;

    let (mut plain, mut transactional) = (Vec::new(), Vec::new());
    let mut next = 0u64;
    for round in 0..rounds {
        for mode in ["plain", "transactional"] {
            let current = store.get_lease(KEY).await?.ok_or("the lease vanished")?.checkpoint;
            let mut checkpointer = Checkpointer::new(KEY, Arc::new(Sink(store.clone())), current);
            let started = Instant::now();
            for _ in 0..batches {
                let tx = client.transaction().await?;
                for _ in 0..batch {
                    next += 1;
                    tx.execute(&insert, &[&(next as i64), &"reading 21.5 C"]).await?;
                }
                checkpointer.set_largest_permitted(seq(next));
                if mode == "plain" {
                    tx.commit().await?;
                    checkpointer.checkpoint().await?;
                } else {
                    store.commit_with_checkpoint(tx, WORKER, &mut checkpointer, None).await?;
                }
            }
            let rate = (batches * batch) as f64 / started.elapsed().as_secs_f64();
            println!("round {round} {mode:>13}: {rate:>9.0} records/s");
            if mode == "plain" { plain.push(rate) } else { transactional.push(rate) }
        }
    }
    let (p, t) = (median(plain), median(transactional));
    println!(
        "median of {rounds} rounds, {batches} batches x {batch} records: plain {p:.0} records/s, transactional {t:.0} \
         records/s ({:.2}x)",
        t / p
    );
    client.batch_execute(&format!("DROP TABLE {sink}; DROP TABLE {table}; DROP TABLE {table}_heartbeats")).await?;
    Ok(())
}
