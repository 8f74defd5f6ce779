//! The zero-setup quickstart: a fleet of three workers consumes a 4-shard stream of IoT temperature/humidity
//! readings while the stream splits one shard and merges two, and one worker is stopped gracefully. It prints
//! per-worker progress and a verdict: records put, processed, duplicates, missing (must be 0), order violations
//! (must be 0). No AWS account and no emulator needed: stream and lease table are in memory.
//!
//! `cargo run -p kcl-examples --bin quickstart [-- --records 20000 --devices 50]`

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::process::ProcessorError;
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, ShutdownHandle, Worker};
use kcl_examples::iot::Reading;
use kcl_examples::ledger::Ledger;

#[derive(Parser, Debug)]
#[command(about = "Three kcl-rs workers consume an in-memory IoT stream through a split, a merge and a worker stop")]
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
}

/// Parses each reading and notes its delivery; checkpoints after every batch.
struct IotProcessor {
    worker: Arc<str>,
    ledger: Arc<Ledger>,
}

#[async_trait::async_trait]
impl RecordProcessor for IotProcessor {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
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
    task: tokio::task::JoinHandle<Result<(), kcl_core::KclError>>,
}

fn start_worker(
    id: &str,
    stream: &MemoryStream,
    store: &Arc<dyn LeaseStore>,
    ledger: &Arc<Ledger>,
) -> Result<Member, Box<dyn std::error::Error>> {
    let lease_config = LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build()?;
    let worker_name: Arc<str> = Arc::from(id);
    let ledger = ledger.clone();
    let worker = Worker::builder(stream.name().clone(), "quickstart")
        .worker_id(id)
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(store.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(lease_config)
        .shard_sync_interval(Duration::from_secs(2))
        .parent_poll_interval(Duration::from_millis(100))
        .processor_factory(move |_shard: &str| IotProcessor { worker: worker_name.clone(), ledger: ledger.clone() })
        .build()?;
    let shutdown = worker.shutdown_handle();
    Ok(Member { id: id.to_owned(), shutdown, task: tokio::spawn(worker.run()) })
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn progress(ledger: &Ledger, started: Instant) {
    let per_worker: Vec<String> = ledger.per_worker().iter().map(|(w, n)| format!("{w}={n}")).collect();
    println!(
        "[{:>5.1}s] processed {:>6} distinct | {}",
        started.elapsed().as_secs_f64(),
        ledger.unique_delivered(),
        per_worker.join(" ")
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.devices == 0 {
        return Err("--devices must be at least 1".into());
    }
    let stream = MemoryStream::new("iot-telemetry", 4);
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let ledger = Arc::new(Ledger::new());
    let started = Instant::now();
    println!(
        "kcl-rs quickstart: 3 workers, in-memory stream `iot-telemetry` (4 shards), {} readings from {} devices",
        args.records, args.devices
    );

    let mut fleet = Vec::new();
    for id in ["worker-1", "worker-2", "worker-3"] {
        fleet.push(start_worker(id, &stream, &store, &ledger)?);
    }

    // Put the readings over ~8 s while the stream reshards and a worker leaves.
    let chunks = 80u64;
    let per_chunk = args.records.div_ceil(chunks).max(1);
    let mut next = 0u64;
    let mut last_progress = Instant::now();
    for chunk in 0..chunks {
        for _ in 0..per_chunk {
            if next >= args.records {
                break;
            }
            let device = (next % args.devices as u64) as usize;
            let reading = Reading::synthetic(device, next / args.devices as u64, now_millis());
            stream.put(reading.client_id.as_str(), serde_json::to_vec(&reading)?)?;
            ledger.put(&reading.client_id, reading.seq);
            next += 1;
        }
        match chunk {
            20 => {
                let [a, b] = stream.split("shardId-000000000000", 1u128 << 125)?;
                println!("[{:>5.1}s] split shardId-000000000000 into {a} and {b}", started.elapsed().as_secs_f64());
            }
            40 => {
                let merged = stream.merge("shardId-000000000002", "shardId-000000000003")?;
                println!(
                    "[{:>5.1}s] merged shardId-000000000002 and shardId-000000000003 into {merged}",
                    started.elapsed().as_secs_f64()
                );
            }
            60 => {
                let leaving = fleet.remove(2);
                println!("[{:>5.1}s] stopping {} gracefully", started.elapsed().as_secs_f64(), leaving.id);
                leaving.shutdown.shutdown();
                leaving.task.await??;
                println!(
                    "[{:>5.1}s] {} stopped; its leases were handed over",
                    started.elapsed().as_secs_f64(),
                    leaving.id
                );
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
    let finished = store.list_all_leases().await?.iter().filter(|l| l.checkpoint.is_shard_end()).count();
    println!();
    println!("records put:        {}", verdict.put);
    println!("records processed:  {} ({} deliveries)", verdict.unique, verdict.delivered);
    println!("duplicates:         {}", verdict.duplicates);
    println!("missing:            {}", verdict.missing);
    println!("order violations:   {}", verdict.order_violations);
    println!("shards finished:    {finished} (parents of the split and merge, at SHARD_END)");
    if verdict.passed() {
        println!(
            "verdict: PASS — every reading processed, per-device order kept, in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    } else {
        println!("verdict: FAIL");
        std::process::exit(1);
    }
}
