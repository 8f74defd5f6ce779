//! Exactly-once effects with the PostgreSQL lease store: the IoT stream aggregated into a PostgreSQL table of
//! readings per device and minute, the counts committed in the same transaction as the checkpoint
//! (`kcl_postgres_lease::transactional`). A redelivered batch finds its effect committed with the checkpoint past it
//! and is never counted twice; a worker that lost its lease has its transaction refused.
//!
//! * `cargo run -p kcl-examples --bin iot-postgres -- --postgres postgres://USER@127.0.0.1:5432/DB` — two workers
//!   read an in-memory stream of generated readings; the example checks the table against the generated traffic.
//! * `… -- --crash` — worker-1 is cut off from the lease table after its first commit, as a killed worker looks to
//!   the others; worker-2 takes its leases when they expire and continues from the committed checkpoints.
//! * `… -- --prefix NAME` — the tables `NAME_minutes`, `NAME_rejected`, `NAME_leases` (default `iot`; replaced at
//!   start). `--config FILE`, `--kinesis-endpoint URL`, `--aws`: as the other examples (the lease table is always
//!   the PostgreSQL one).
//!
//! Output: one summary line on stdout, `exactly-once: …` when every device-minute count equals the traffic's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{FaultConfig, FaultyLeaseStore, LeaseStore};
use kcl_core::process::{BatchResult, InitializeInput, ProcessorError};
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, ShutdownHandle};
use kcl_examples::backend::{Backend, BackendArgs, ExampleStream};
use kcl_examples::iot::{self, traffic::TrafficConfig};
use kcl_examples::kinesis::BoxError;
use kcl_postgres_lease::PostgresLeaseStore;
use kcl_postgres_lease::tokio_postgres::{self, Client, NoTls};

#[derive(Parser, Debug)]
#[command(about = "IoT readings counted per device and minute in PostgreSQL, exactly once")]
#[command(mut_arg("stream", |arg| arg.help("Stream name in Kinesis mode (default: a fresh `kcl-iot-postgres-…` name)")))]
struct Args {
    /// PostgreSQL connection URL (the database holding the lease table and the results).
    #[arg(long, env = "KCL_POSTGRES_URL")]
    postgres: String,
    /// Prefix of the three tables (letters, digits and `_`).
    #[arg(long, default_value = "iot")]
    prefix: String,
    /// Cut worker-1 off from the lease table after its first commit (a crash, as the fleet sees it).
    #[arg(long)]
    crash: bool,
    /// Seed of the generated device traffic.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Devices publishing.
    #[arg(long, default_value_t = 12)]
    devices: usize,
    /// Readings per device.
    #[arg(long, default_value_t = 60)]
    readings: usize,
    /// Device time between two readings of a device, so the readings span several minutes.
    #[arg(long, default_value_t = 10_000)]
    interval_ms: u64,
    /// Device time of the first reading (default: now).
    #[arg(long)]
    start_ms: Option<u64>,
    /// Give up waiting for the counts after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Worker settings from this TOML file (keys: see `kcl_core::config`), laid over the example's own; `KCL_…`
    /// environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArgs,
}

/// A running worker: how to stop it, and its task.
type Member = (ShutdownHandle, tokio::task::JoinHandle<Result<(), kcl_core::KclError>>);

/// What the processors share: the store (for the fenced checkpoint), table names and tallies for the summary.
struct Shared {
    url: String,
    store: Arc<PostgresLeaseStore>,
    minutes: String,
    rejected: String,
    delivered: AtomicU64,
    commits: AtomicU64,
    fenced: AtomicU64,
    /// Commits by worker-1 (the one `--crash` cuts off).
    first_worker_commits: AtomicU64,
}

struct MinuteCounter {
    shared: Arc<Shared>,
    worker: &'static str,
    client: Option<Client>,
}

#[async_trait::async_trait]
impl RecordProcessor for MinuteCounter {
    async fn initialize(&mut self, _: InitializeInput) -> Result<(), ProcessorError> {
        // One connection per shard processor: its transactions never wait for another shard's.
        let (client, connection) = tokio_postgres::connect(&self.shared.url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "PostgreSQL connection ended");
            }
        });
        self.client = Some(client);
        Ok(())
    }

    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        let shared = self.shared.clone();
        let Some(client) = self.client.as_mut() else { return Err("no PostgreSQL connection".into()) };
        shared.delivered.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        // (device, minute) -> (readings, sum of temperatures); malformed records go to the rejected table.
        let mut minutes: BTreeMap<(String, i64), (i64, f64)> = BTreeMap::new();
        let mut rejected = Vec::new();
        for record in &batch.records {
            match iot::parse::parse(&record.data) {
                Ok(Some(iot::parse::Measurement { device, timestamp_ms, temp: Some(temp), .. })) => {
                    let minute = i64::try_from(timestamp_ms / 60_000).unwrap_or(i64::MAX);
                    let entry = minutes.entry((device, minute)).or_default();
                    entry.0 += 1;
                    entry.1 += temp;
                }
                Ok(_) => {}
                Err(error) => rejected.push((record.sequence_number.to_string(), error.to_string())),
            }
        }
        let tx = client.transaction().await?;
        let upsert = format!(
            "INSERT INTO {} (device, minute, readings, temp_sum) VALUES ($1, $2, $3, $4) ON CONFLICT (device, minute) \
             DO UPDATE SET readings = {0}.readings + EXCLUDED.readings, temp_sum = {0}.temp_sum + EXCLUDED.temp_sum",
            shared.minutes
        );
        for ((device, minute), (readings, temp_sum)) in &minutes {
            tx.execute(&upsert, &[device, minute, readings, temp_sum]).await?;
        }
        let reject = format!("INSERT INTO {} (sequence, reason) VALUES ($1, $2)", shared.rejected);
        for (sequence, reason) in &rejected {
            tx.execute(&reject, &[sequence, reason]).await?;
        }
        match shared.store.commit_with_checkpoint(tx, self.worker, checkpointer, None).await {
            Ok(()) => {
                shared.commits.fetch_add(1, Ordering::Relaxed);
                if self.worker == "worker-1" {
                    shared.first_worker_commits.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            // Rolled back: the lease is another worker's, which gets these records again from the checkpoint.
            Err(error) if error.is_fenced() => {
                shared.fenced.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// A table name made from the user's prefix: it is spliced into SQL, so only identifier characters.
fn table(prefix: &str, suffix: &str) -> Result<String, BoxError> {
    let valid = prefix.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && prefix.len() <= 40;
    if !valid {
        return Err(format!("--prefix {prefix:?}: use 1 to 40 lower-case letters, digits and `_`").into());
    }
    Ok(format!("{prefix}_{suffix}"))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    kcl_examples::init_logging();
    let args = Args::parse();
    let example = ExampleStream {
        application: "iot-postgres",
        stream_prefix: "kcl-iot-postgres",
        shards: 4,
        reuse_existing: false,
    };
    Backend::run_scenario(&args.backend, &example, async |backend| run(&args, backend).await).await
}

async fn run(args: &Args, backend: &Backend) -> Result<bool, BoxError> {
    let (minutes, rejected, leases) =
        (table(&args.prefix, "minutes")?, table(&args.prefix, "rejected")?, table(&args.prefix, "leases")?);
    let (admin, connection) = tokio_postgres::connect(&args.postgres, NoTls)
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL at --postgres: {e}"))?;
    tokio::spawn(connection);
    admin
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {minutes}, {rejected}, {leases}, {leases}_heartbeats;
             CREATE TABLE {minutes} (device TEXT NOT NULL, minute BIGINT NOT NULL, readings BIGINT NOT NULL,
                 temp_sum DOUBLE PRECISION NOT NULL, PRIMARY KEY (device, minute));
             CREATE TABLE {rejected} (sequence TEXT PRIMARY KEY, reason TEXT NOT NULL);"
        ))
        .await?;
    let store = Arc::new(PostgresLeaseStore::builder(&args.postgres).table(leases.clone()).open().await?);

    let start_ms = args
        .start_ms
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64));
    let traffic = iot::traffic::generate(&TrafficConfig {
        seed: args.seed,
        devices: args.devices,
        readings_per_device: args.readings,
        start_ms,
        interval_ms: args.interval_ms,
    });
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for reading in traffic.readings.iter().filter(|r| r.temp.is_some()) {
        let minute = i64::try_from(reading.timestamp_ms / 60_000)?;
        *expected.entry((reading.device.clone(), minute)).or_default() += 1;
    }
    let total: i64 = expected.values().sum();

    let shared = Arc::new(Shared {
        url: args.postgres.clone(),
        store: store.clone(),
        minutes: minutes.clone(),
        rejected: rejected.clone(),
        delivered: AtomicU64::new(0),
        commits: AtomicU64::new(0),
        fenced: AtomicU64::new(0),
        first_worker_commits: AtomicU64::new(0),
    });
    let faulty = Arc::new(FaultyLeaseStore::shared(store.clone()));
    let start = |worker: &'static str, lease_store: Arc<dyn LeaseStore>| -> Result<Member, BoxError> {
        // Short leases, so that a crashed worker's shards move on within seconds (KCL's default is 10 s).
        let builder = backend
            .worker()
            .lease_store(lease_store)
            .initial_position(InitialPosition::TrimHorizon)
            .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(3)).build()?)
            .parent_poll_interval(Duration::from_millis(100));
        let shared = shared.clone();
        let built = builder
            .config_file_and_env(args.config.as_deref())?
            .worker_id(worker)
            .processor_factory(move |_: &str| MinuteCounter { shared: shared.clone(), worker, client: None })
            .build()?;
        Ok((built.shutdown_handle(), tokio::spawn(built.run())))
    };
    eprintln!(
        "iot-postgres: {} (leases in PostgreSQL instead: {leases}), {} records, results in {minutes}",
        backend.describe(),
        traffic.records.len()
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut chunks = traffic.records.chunks(traffic.records.len().div_ceil(6).max(1));
    let mut fleet = vec![start("worker-1", faulty.clone())?];
    if args.crash {
        // worker-1 alone takes every lease and commits; then it is cut off, with batches in flight, and worker-2
        // starts: it takes the leases when they expire and reads on from worker-1's committed checkpoints.
        if let Some(first) = chunks.next() {
            backend.put(first.to_vec()).await?;
        }
        while shared.first_worker_commits.load(Ordering::Relaxed) == 0 {
            if Instant::now() >= deadline {
                return Err("worker-1 committed nothing before the timeout".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        faulty.switch().set(FaultConfig::fail_all());
        eprintln!("iot-postgres: worker-1 cut off from the lease table");
    }
    fleet.push(start("worker-2", store.clone())?);
    for chunk in chunks {
        backend.put(chunk.to_vec()).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let sum_query = format!("SELECT COALESCE(SUM(readings), 0)::BIGINT FROM {minutes}");
    loop {
        let counted: i64 = admin.query_one(&sum_query, &[]).await?.get(0);
        if counted >= total || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    faulty.switch().heal();
    for (shutdown, _) in &fleet {
        shutdown.shutdown();
    }
    for (_, task) in fleet {
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => eprintln!("iot-postgres: a worker ended with: {error}"),
            Ok(Err(error)) => eprintln!("iot-postgres: a worker task failed: {error}"),
            Err(_) => eprintln!("iot-postgres: a worker did not stop within 30 s"),
        }
    }

    let rows = admin.query(&format!("SELECT device, minute, readings FROM {minutes}"), &[]).await?;
    let stored: BTreeMap<(String, i64), i64> = rows.iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect();
    let rejects: i64 = admin.query_one(&format!("SELECT count(*) FROM {rejected}"), &[]).await?.get(0);
    let wrong = expected.iter().filter(|(key, n)| stored.get(*key) != Some(*n)).count()
        + stored.keys().filter(|key| !expected.contains_key(*key)).count();
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let malformed = traffic.malformed.len() as i64;
    let figures = format!(
        "{total} readings in {} device-minutes; records delivered {delivered} (stream {}), transactions committed {}, \
         refused by the fence {}, rejected records {rejects} of {malformed} malformed{}",
        expected.len(),
        traffic.records.len(),
        shared.commits.load(Ordering::Relaxed),
        shared.fenced.load(Ordering::Relaxed),
        if args.crash { "; worker-1 was cut off" } else { "" },
    );
    if wrong == 0 && rejects == malformed {
        println!("exactly-once: {figures}");
        Ok(true)
    } else {
        println!("MISMATCH: {wrong} device-minutes differ from the traffic; {figures}");
        Ok(false)
    }
}
