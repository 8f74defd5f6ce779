//! The zero-setup quickstart: a fleet of three workers consumes a 4-shard stream of IoT temperature/humidity
//! readings while the stream splits one shard and merges two, and one worker is stopped gracefully. It prints
//! per-worker progress and a verdict: records put, processed, duplicates, missing (must be 0), order violations
//! (must be 0).
//!
//! * `cargo run -p kcl-examples --bin quickstart` — in memory: no AWS account, no emulator.
//! * `… -- --kinesis-endpoint http://127.0.0.1:4567 --dynamodb-endpoint http://127.0.0.1:8000` — against local
//!   emulators (kinesis-mock, DynamoDB Local).
//! * `… -- --config kcl.toml` — worker settings from a TOML file (keys in `kcl_core::config`), over the demo's own
//!   short leases and intervals; `KCL_…` environment variables override the file.
//! * `… -- --aws` — against real AWS with the standard credential chain and region (creates a stream and a table,
//!   deletes both at the end unless `--keep`; this costs money).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::process::BatchResult;
use kcl_core::{Batch, Checkpointer, InitialPosition, KclError, RecordProcessor, ShutdownHandle};
use kcl_examples::backend::{Backend, BackendArgs, ExampleStream};
use kcl_examples::iot::Reading;
use kcl_examples::kinesis::BoxError;
use kcl_examples::ledger::Ledger;

/// The quickstart's stream: 4 fresh shards, because the script splits and merges shards by name.
const STREAM: ExampleStream =
    ExampleStream { application: "quickstart", stream_prefix: "kcl-quickstart", shards: 4, reuse_existing: false };
/// The shard the quickstart splits, and the two it merges (as Kinesis names a new 4-shard stream's shards).
const SPLIT: &str = "shardId-000000000000";
const MERGE: [&str; 2] = ["shardId-000000000002", "shardId-000000000003"];
/// The middle of shard 0's hash key range in a 4-shard stream.
const SPLIT_AT: u128 = 1 << 125;

#[derive(Parser, Debug)]
#[command(about = "Three kcl-rs workers consume an IoT stream through a split, a merge and a worker stop")]
// The shared flag names no example; say which fresh name this one makes up.
#[command(mut_arg("stream", |arg| arg.help("Stream name in Kinesis mode (default: a fresh `kcl-quickstart-…` name)")))]
struct Args {
    /// How many readings to put.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// How many devices (partition keys) publish them.
    #[arg(long, default_value_t = 50)]
    devices: usize,
    /// Give up waiting for the fleet after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Worker settings from this TOML file (keys: see `kcl_core::config`), laid over the demo's own; `KCL_…`
    /// environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the stream and the lease table live (memory, emulators or AWS).
    #[command(flatten)]
    backend: BackendArgs,
}

/// Parses each reading and notes its delivery; checkpoints after every batch.
struct IotProcessor {
    worker: Arc<str>,
    ledger: Arc<Ledger>,
}

#[async_trait::async_trait]
impl RecordProcessor for IotProcessor {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        for record in &batch.records {
            match serde_json::from_slice::<Reading>(&record.data) {
                Ok(reading) => self.ledger.delivered(&self.worker, &reading.client_id, reading.seq),
                Err(error) => eprintln!("skipping a malformed reading at {}: {error}", record.sequence_number),
            }
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

struct Member {
    id: String,
    shutdown: ShutdownHandle,
    task: tokio::task::JoinHandle<Result<(), KclError>>,
}

fn start_worker(id: &str, backend: &Backend, ledger: &Arc<Ledger>, config: Option<&Path>) -> Result<Member, BoxError> {
    // Short leases so the demo's failover and balancing happen within seconds (KCL's default is 10 s).
    let lease_config = LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build()?;
    let worker_name: Arc<str> = Arc::from(id);
    let ledger = ledger.clone();
    let builder = backend
        .worker()
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(lease_config)
        .shard_sync_interval(Duration::from_secs(2))
        .parent_poll_interval(Duration::from_millis(100));
    let worker = builder
        .config_file_and_env(config)?
        // Three workers share this process: each keeps its own id whatever the file says.
        .worker_id(id)
        .processor_factory(move |_shard: &str| IotProcessor { worker: worker_name.clone(), ledger: ledger.clone() })
        .build()?;
    let shutdown = worker.shutdown_handle();
    Ok(Member { id: id.to_owned(), shutdown, task: tokio::spawn(worker.run()) })
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn elapsed(started: Instant) -> String {
    format!("[{:>5.1}s]", started.elapsed().as_secs_f64())
}

fn progress(ledger: &Ledger, started: Instant) {
    let per_worker: Vec<String> = ledger.per_worker().iter().map(|(w, n)| format!("{w}={n}")).collect();
    println!("{} processed {:>6} distinct | {}", elapsed(started), ledger.unique_delivered(), per_worker.join(" "));
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    kcl_examples::init_logging();
    let args = Args::parse();
    if args.devices == 0 {
        return Err("--devices must be at least 1".into());
    }
    Backend::run_scenario(&args.backend, &STREAM, async |backend| run(&args, backend).await).await
}

/// Runs the scenario; `Ok(true)` when the verdict passed.
async fn run(args: &Args, backend: &Backend) -> Result<bool, BoxError> {
    let ledger = Arc::new(Ledger::new());
    let started = Instant::now();
    println!(
        "kcl-rs quickstart: 3 workers, {}, {} readings from {} devices",
        backend.describe(),
        args.records,
        args.devices
    );

    let mut fleet = Vec::new();
    for id in ["worker-1", "worker-2", "worker-3"] {
        fleet.push(start_worker(id, backend, &ledger, args.config.as_deref())?);
    }

    // Put the readings over ~8 s while the stream reshards and a worker leaves.
    let chunks = 80u64;
    let per_chunk = args.records.div_ceil(chunks).max(1);
    let mut next = 0u64;
    let mut last_progress = Instant::now();
    for chunk in 0..chunks {
        let mut batch = Vec::new();
        while next < args.records && batch.len() < per_chunk as usize {
            let device = (next % args.devices as u64) as usize;
            let reading = Reading::synthetic(device, next / args.devices as u64, now_millis());
            ledger.put(&reading.client_id, reading.seq);
            batch.push((reading.client_id.clone(), serde_json::to_vec(&reading)?));
            next += 1;
        }
        backend.put(batch).await?;
        match chunk {
            20 => {
                backend.split(SPLIT, SPLIT_AT).await?;
                println!("{} split {SPLIT}", elapsed(started));
            }
            40 => {
                backend.merge(MERGE[0], MERGE[1]).await?;
                println!("{} merged {} and {}", elapsed(started), MERGE[0], MERGE[1]);
            }
            60 => {
                let leaving = fleet.remove(2);
                println!("{} stopping {} gracefully", elapsed(started), leaving.id);
                leaving.shutdown.shutdown();
                leaving.task.await??;
                println!("{} {} stopped; its leases were handed over", elapsed(started), leaving.id);
            }
            _ => {}
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            progress(&ledger, started);
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    while ledger.unique_delivered() < args.records && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if last_progress.elapsed() >= Duration::from_secs(1) {
            progress(&ledger, started);
            last_progress = Instant::now();
        }
    }
    progress(&ledger, started);
    for member in fleet {
        member.shutdown.shutdown();
        member.task.await??;
    }

    let verdict = ledger.verdict();
    let finished = backend.store().list_all_leases().await?.iter().filter(|l| l.checkpoint.is_shard_end()).count();
    println!();
    println!("records put:        {}", verdict.put);
    println!("records processed:  {} ({} deliveries)", verdict.unique, verdict.delivered);
    println!("duplicates:         {}", verdict.duplicates);
    println!("missing:            {}", verdict.missing);
    println!("order violations:   {}", verdict.order_violations);
    println!("shards finished:    {finished} (the parents of the split and the merge reach SHARD_END)");
    if verdict.passed() {
        println!(
            "verdict: PASS — every reading processed, per-device order kept, in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("verdict: FAIL");
    }
    Ok(verdict.passed())
}
