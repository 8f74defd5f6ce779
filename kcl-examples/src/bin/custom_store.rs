//! `custom-store`: one kcl-rs worker whose leases and checkpoints live in a SQLite file instead of DynamoDB — the
//! edge-gateway setup, where several worker processes on one host share the file
//! ([`kcl_examples::sqlite_store::SqliteLeaseStore`]; its module documents the schema).
//!
//! * `cargo run -p kcl-examples --bin custom-store -- --db /tmp/leases.db` — in memory: puts 1000 IoT readings on
//!   an in-memory 4-shard stream, processes them, stops once all are processed and prints the checkpoints stored in
//!   the file. (The in-memory stream lives inside the process, so this mode is a single worker.)
//! * `… -- --db /tmp/leases.db --kinesis-endpoint http://127.0.0.1:4567 --worker-id a` — on kinesis-mock: creates
//!   the stream when missing (`--stream`, `--shards`), puts `--records` readings if asked, and runs until Ctrl-C or
//!   SIGTERM, then stops gracefully (final checkpoints, leases released). Start it again with another
//!   `--worker-id` in a second terminal and the two processes share the shards through the file.
//!
//! `--output FILE` appends one line per processed record, `<shard> <sequence number> <partition key>`, written
//! before the batch is checkpointed, so every checkpointed record is in some process's file. `--heartbeats` renews
//! one worker heartbeat instead of every lease (`RenewalMode::WorkerHeartbeat`; every process must agree).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{LeaseStore, RenewalMode};
use kcl_core::process::{BatchResult, ProcessorError};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, ShutdownHandle};
use kcl_examples::iot::Reading;
use kcl_examples::kinesis::{self, BoxError};
use kcl_examples::sqlite_store::{DEFAULT_TABLE, SqliteLeaseStore};
use tokio::io::AsyncWriteExt;

#[derive(Parser, Debug)]
#[command(about = "A kcl-rs worker with its leases in a SQLite file that worker processes on one host share")]
struct Args {
    /// Worker settings from this TOML file (keys: see `kcl_core::config`), laid over the example's own; `KCL_…`
    /// environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The SQLite lease database (created when missing); every worker process of the fleet names the same file.
    #[arg(long)]
    db: PathBuf,
    /// The lease table in the file (one per application).
    #[arg(long, default_value = DEFAULT_TABLE)]
    table: String,
    /// Kinesis endpoint (for example kinesis-mock); without it the worker reads an in-memory stream.
    #[arg(long)]
    kinesis_endpoint: Option<String>,
    /// AWS region for the Kinesis client (default us-east-1 with a local endpoint).
    #[arg(long)]
    region: Option<String>,
    /// The stream (created when missing).
    #[arg(long, default_value = "custom-store")]
    stream: String,
    /// Shards of a stream this process creates.
    #[arg(long, default_value_t = 4)]
    shards: u16,
    /// IoT readings to put at start [default: 1000 in memory, none on Kinesis].
    #[arg(long)]
    records: Option<u64>,
    /// This worker's id, unique in the fleet [default: host name and a random suffix].
    #[arg(long)]
    worker_id: Option<String>,
    /// Append `<shard> <sequence> <partition key>` for every processed record to this file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Renew one heartbeat per worker instead of every lease (every process of the fleet must agree).
    #[arg(long)]
    heartbeats: bool,
    /// How long a lease outlives its last renewal (KCL's failoverTimeMillis).
    #[arg(long, default_value_t = 10_000)]
    lease_duration_ms: u64,
    /// In memory: give up waiting for every record after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

/// The records processed so far, distinct by shard and sequence number (for the in-memory run's end).
#[derive(Default)]
struct Progress {
    seen: Mutex<HashSet<(Arc<str>, String, u64)>>,
}

impl Progress {
    fn note(&self, batch: &Batch) {
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for record in &batch.records {
            seen.insert((batch.shard_id.clone(), record.sequence_number.to_string(), record.sub_sequence_number));
        }
    }

    fn distinct(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len() as u64
    }
}

/// The `--output` file, shared by every shard's processor.
struct Output(tokio::sync::Mutex<tokio::fs::File>);

impl Output {
    async fn open(path: &PathBuf) -> Result<Self, BoxError> {
        let file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
        Ok(Self(tokio::sync::Mutex::new(file)))
    }

    /// Writes the batch's lines and waits until the file has them.
    async fn write(&self, batch: &Batch) -> std::io::Result<()> {
        let mut lines = String::new();
        for record in &batch.records {
            lines.push_str(&format!("{} {} {}\n", batch.shard_id, record.sequence_number, record.partition_key));
        }
        let mut file = self.0.lock().await;
        file.write_all(lines.as_bytes()).await?;
        file.flush().await
    }
}

/// Writes each record to the output, then checkpoints the batch.
struct RecordWriter {
    output: Option<Arc<Output>>,
    progress: Arc<Progress>,
}

#[async_trait::async_trait]
impl RecordProcessor for RecordWriter {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        if let Some(output) = &self.output {
            // An error here fails the batch: it is delivered again, never checkpointed unwritten.
            output.write(batch).await.map_err(|error| -> ProcessorError { Box::new(error) })?;
        }
        self.progress.note(batch);
        checkpointer.checkpoint().await?;
        Ok(())
    }

    async fn shutdown_requested(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        // Every delivered batch was written before process_records returned: checkpoint all of them.
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

fn readings(count: u64) -> Result<Vec<(String, Vec<u8>)>, BoxError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let devices = 20;
    (0..count)
        .map(|i| {
            let reading = Reading::synthetic((i % devices) as usize, i / devices, now);
            Ok((reading.client_id.clone(), serde_json::to_vec(&reading)?))
        })
        .collect()
}

/// Resolves on Ctrl-C or (Unix) SIGTERM.
async fn stop_signal() -> Result<(), BoxError> {
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    kcl_examples::init_logging();
    let args = Args::parse();
    let store = SqliteLeaseStore::builder(&args.db).table(&args.table).open().await?;
    let store: Arc<dyn LeaseStore> = Arc::new(store);
    let mode = if args.heartbeats { RenewalMode::WorkerHeartbeat } else { RenewalMode::PerLease };
    let lease_config = LeaseCoordinatorConfig::builder()
        .lease_duration(Duration::from_millis(args.lease_duration_ms))
        .renewal_mode(mode)
        .build()?;
    let output = match &args.output {
        Some(path) => Some(Arc::new(Output::open(path).await?)),
        None => None,
    };
    let progress = Arc::new(Progress::default());
    let factory = {
        let progress = progress.clone();
        move |_shard: &str| RecordWriter { output: output.clone(), progress: progress.clone() }
    };

    let memory = args.kinesis_endpoint.is_none();
    let records = args.records.unwrap_or(if memory { 1000 } else { 0 });
    let builder = match &args.kinesis_endpoint {
        None => {
            let stream = MemoryStream::new(args.stream.as_str(), usize::from(args.shards.max(1)));
            stream.put_batch(readings(records)?)?;
            kcl_core::Worker::builder(args.stream.as_str(), "custom-store")
                .record_source(Arc::new(stream.clone()))
                .shard_lister(Arc::new(stream))
        }
        Some(endpoint) => {
            let config = kinesis::sdk_config(args.region.clone(), true).await;
            let client = kinesis::kinesis_client(&config, Some(endpoint));
            kinesis::create_stream(&client, &args.stream, i32::from(args.shards.max(1)), true).await?;
            if records > 0 {
                kinesis::put_records(&client, &args.stream, readings(records)?).await?;
            }
            kcl_core::Worker::builder(args.stream.as_str(), "custom-store")
                .kinesis_client(client)
                .polling_config(kinesis::demo_polling_config())
        }
    };
    let mut builder = builder
        .lease_store(store.clone())
        .lease_config(lease_config)
        .initial_position(InitialPosition::TrimHorizon)
        .shard_sync_interval(Duration::from_secs(2))
        .parent_poll_interval(Duration::from_millis(100));
    builder = builder.config_file_and_env(args.config.as_deref())?;
    if let Some(id) = &args.worker_id {
        builder = builder.worker_id(id);
    }
    let builder = builder.processor_factory(factory);
    let worker = builder.build()?;
    let worker_id = worker.worker_id().to_owned();
    let shutdown = worker.shutdown_handle();
    let mut running = tokio::spawn(worker.run());
    println!("custom-store: worker {worker_id}, leases in {} (table {})", args.db.display(), args.table);

    let finished = tokio::select! {
        result = &mut running => Some(result),
        stopped = until_done(memory, records, &progress, Duration::from_secs(args.timeout_secs)) => {
            stopped?;
            None
        }
    };
    let result = match finished {
        Some(result) => result,
        None => stop(&shutdown, running).await,
    };
    result??;
    summary(&*store, &worker_id, progress.distinct()).await?;
    if memory && progress.distinct() < records {
        eprintln!(
            "custom-store: only {} of {records} records processed in {} s",
            progress.distinct(),
            args.timeout_secs
        );
        std::process::exit(1);
    }
    Ok(())
}

/// In memory: until every record put is processed (or the timeout). On Kinesis: until Ctrl-C or SIGTERM.
async fn until_done(memory: bool, records: u64, progress: &Progress, timeout: Duration) -> Result<(), BoxError> {
    if !memory {
        return stop_signal().await;
    }
    let deadline = Instant::now() + timeout;
    let done = async {
        while progress.distinct() < records && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        () = done => Ok(()),
        stopped = stop_signal() => stopped,
    }
}

async fn stop(
    shutdown: &ShutdownHandle,
    running: tokio::task::JoinHandle<Result<(), kcl_core::KclError>>,
) -> Result<Result<(), kcl_core::KclError>, tokio::task::JoinError> {
    shutdown.shutdown();
    running.await
}

/// Prints what this worker processed and every lease as the file now holds it.
async fn summary(store: &dyn LeaseStore, worker_id: &str, processed: u64) -> Result<(), BoxError> {
    println!("custom-store: worker {worker_id} stopped after processing {processed} distinct records");
    let mut leases = store.list_all_leases().await?;
    leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    for lease in leases {
        let owner = lease.lease_owner.as_deref().unwrap_or("-");
        println!("  {:<24} owner {:<16} checkpoint {}", lease.lease_key, owner, lease.checkpoint);
    }
    Ok(())
}
