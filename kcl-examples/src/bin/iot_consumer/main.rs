//! The IoT consumer example: devices publish over MQTT, a broker forwards the messages into Kinesis (EMQX-style
//! readings keyed by MQTT client id, MODE-style events), and this consumer keeps a rolling min/avg/max per device,
//! writes threshold alerts to a JSON-lines file and sends malformed payloads to a failure file instead of blocking
//! the shard. It shows the batch-semantics API: partial failures (`BatchFailure::failed_records`), a `RetryPolicy`
//! with a failure destination, a record filter, and per-key parallelism with framework checkpoints.
//!
//! The domain logic (parsing, windows, alert rules, the traffic generator) is in `kcl_examples::iot`.
//!
//! * `cargo run -p kcl-examples --bin iot-consumer` — in memory, with generated traffic; prints a JSON summary.
//! * `… -- --kinesis-endpoint http://127.0.0.1:4567 --dynamodb-endpoint http://127.0.0.1:8000` — emulators.
//! * `… -- --config kcl.toml` — worker settings from a TOML file (keys in `kcl_core::config`, e.g. `parallelism`,
//!   `max_attempts`), over this example's own; `KCL_…` environment variables override the file.
//! * `… -- --aws` — real AWS (creates a stream and a lease table, deletes both unless `--keep`; costs money).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kcl_core::process::{
    BatchFailure, BatchResult, Checkpointing, FailedRecords, FailureDestination, JsonLinesDestination, OnExhausted,
    PartialRetry, ProcessingConfig, ProcessorError, RecordFilter, RetryPolicy,
};
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor};
use kcl_examples::backend::{Backend, BackendArgs, ExampleStream};
use kcl_examples::iot::{self, AlertRules, Monitor, TrafficConfig};
use kcl_examples::kinesis::BoxError;

#[derive(Parser, Debug)]
#[command(about = "Consume IoT telemetry: rolling per-device stats, threshold alerts, malformed payloads set aside")]
// The shared flag names no example; say which fresh name this one makes up.
#[command(mut_arg("stream", |arg| arg.help("Stream name in Kinesis mode (default: a fresh `kcl-iot-…` name)")))]
struct Args {
    /// Seed of the generated device traffic.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Devices publishing (half EMQX-style, half MODE-style).
    #[arg(long, default_value_t = 20)]
    devices: usize,
    /// Readings per device.
    #[arg(long, default_value_t = 120)]
    readings: usize,
    /// Device timestamp of the first generated reading, epoch millis [default: now].
    #[arg(long)]
    start_ms: Option<u64>,
    /// Rolling window per device, in seconds of device time.
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    /// Alert when a temperature is above this (°C).
    #[arg(long, default_value_t = 35.0)]
    temp_high: f64,
    /// Alert when a temperature is below this (°C).
    #[arg(long, default_value_t = 0.0)]
    temp_low: f64,
    /// Alert when humidity is above this (%).
    #[arg(long, default_value_t = 85.0)]
    hum_high: f64,
    /// Alerts file (JSON lines; replaced at start).
    #[arg(long, default_value = "iot-alerts.jsonl")]
    alerts: PathBuf,
    /// Failure destination for malformed payloads (JSON lines; replaced at start).
    #[arg(long, default_value = "iot-failures.jsonl")]
    failures: PathBuf,
    /// Processing calls per `process_records` before a malformed record goes to the failure file.
    #[arg(long, default_value_t = 2)]
    max_attempts: u32,
    /// Concurrent processors per shard (devices are independent, so keys are spread over them).
    #[arg(long, default_value_t = 4)]
    parallelism: usize,
    /// Shards of the stream.
    #[arg(long, default_value_t = 4)]
    shards: usize,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Where the stream and the lease table live (memory, emulators or AWS).
    /// Worker settings from this TOML file (keys: see `kcl_core::config`), laid over this example's own; `KCL_…`
    /// environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArgs,
}

/// State every processor of the worker shares. Devices are independent, but a lane's keys move when leases move,
/// so the windows live here rather than in a processor; the lock is taken once per batch.
struct Shared {
    monitor: Mutex<Monitor>,
    alerts: Mutex<BufWriter<File>>,
    alerts_written: AtomicU64,
}

/// Parses a batch, feeds the monitor, and reports the malformed records as a partial failure.
struct IotProcessor {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl RecordProcessor for IotProcessor {
    async fn process_records(&mut self, batch: &Batch, _checkpointer: &mut Checkpointer) -> BatchResult {
        let mut measurements = Vec::with_capacity(batch.records.len());
        let mut malformed = Vec::new();
        let mut first_error = None;
        for record in &batch.records {
            match iot::parse(&record.data) {
                Ok(Some(measurement)) => measurements.push(measurement),
                // A MODE event without measurements that the filter let through (none with the filter below).
                Ok(None) => {}
                Err(error) => {
                    first_error.get_or_insert(error);
                    malformed.push(record);
                }
            }
        }
        {
            let mut monitor = self.shared.monitor.lock().map_err(|_| "monitor lock poisoned")?;
            // Alerts reach the file before the batch counts as processed (the framework checkpoints after `Ok`);
            // if writing fails the batch fails, the monitor is left as it was, and the retry raises them again.
            monitor.observe(&measurements, |alerts| -> std::io::Result<()> {
                if alerts.is_empty() {
                    return Ok(());
                }
                let mut file = self.shared.alerts.lock().map_err(|_| std::io::Error::other("alerts lock poisoned"))?;
                for alert in alerts {
                    serde_json::to_writer(&mut *file, alert)?;
                    file.write_all(b"\n")?;
                }
                file.flush()?;
                self.shared.alerts_written.fetch_add(alerts.len() as u64, Ordering::Relaxed);
                Ok(())
            })?;
        }
        match first_error {
            None => Ok(()),
            // Only the malformed records failed: they are retried (FailedOnly) and then go to the failure file;
            // the error text names the problem, never the payload.
            Some(error) => Err(BatchFailure::failed_records(
                malformed.iter().copied(),
                format!("{} malformed payload(s), first: {error}", malformed.len()),
            )),
        }
    }
}

/// The JSON-lines failure file, counting what it durably accepted (so the run knows when it is complete).
struct CountingDestination {
    inner: JsonLinesDestination,
    records: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl FailureDestination for CountingDestination {
    async fn send(&self, failed: &FailedRecords) -> Result<(), ProcessorError> {
        self.inner.send(failed).await?;
        self.records.fetch_add(failed.records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn remove_if_present(path: &PathBuf) -> Result<(), BoxError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot replace {}: {error}", path.display()).into())
        }
        _ => Ok(()),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    kcl_examples::init_logging();
    let args = Args::parse();
    if args.devices == 0 || args.shards == 0 {
        return Err("--devices and --shards must be at least 1".into());
    }
    // An existing stream is used as it is: a producer (an MQTT bridge) may have created it already.
    let stream = ExampleStream {
        application: "iot-consumer",
        stream_prefix: "kcl-iot",
        shards: args.shards,
        reuse_existing: true,
    };
    Backend::run_scenario(&args.backend, &stream, async |backend| run(&args, backend).await).await
}

/// Runs the consumer over generated traffic; `Ok(true)` when every record was accounted for in time.
async fn run(args: &Args, backend: &Backend) -> Result<bool, BoxError> {
    let traffic = iot::traffic::generate(&TrafficConfig {
        seed: args.seed,
        devices: args.devices,
        readings_per_device: args.readings,
        start_ms: args.start_ms.unwrap_or_else(now_millis),
        ..TrafficConfig::default()
    });
    remove_if_present(&args.alerts)?;
    remove_if_present(&args.failures)?;
    let rules = AlertRules { temp_high: args.temp_high, temp_low: args.temp_low, hum_high: args.hum_high };
    let shared = Arc::new(Shared {
        monitor: Mutex::new(Monitor::new(Duration::from_secs(args.window_secs), rules)),
        alerts: Mutex::new(BufWriter::new(File::create(&args.alerts)?)),
        alerts_written: AtomicU64::new(0),
    });
    let failed = Arc::new(AtomicU64::new(0));
    eprintln!(
        "iot-consumer: {}, {} records from {} devices ({} malformed, {} to filter out)",
        backend.describe(),
        traffic.records.len(),
        args.devices,
        traffic.malformed.len(),
        traffic.ignored
    );

    let processors = shared.clone();
    let builder = backend
        .worker()
        .worker_id("iot-consumer-1")
        .initial_position(InitialPosition::TrimHorizon)
        // Events that carry no measurement (doors, locks) never reach the processor; they count as processed.
        .filter(RecordFilter::new(|record| iot::wanted(&record.data)))
        .retry_policy(
            RetryPolicy::default()
                .max_attempts(Some(args.max_attempts))
                .backoff(Duration::from_millis(50), Duration::from_millis(500))
                // Retry only the malformed records (and later ones of the same device, to keep its order).
                .partial_retry(PartialRetry::FailedOnly)
                .on_exhausted(OnExhausted::SendToDestination),
        )
        .failure_destination(Arc::new(CountingDestination {
            inner: JsonLinesDestination::new(&args.failures),
            records: failed.clone(),
        }))
        .processing(
            ProcessingConfig::default().parallelism(args.parallelism).checkpointing(Checkpointing::AfterEachBatch),
        );
    let worker = builder
        .config_file_and_env(args.config.as_deref())?
        .processor_factory(move |_shard: &str| IotProcessor { shared: processors.clone() })
        .build()?;
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());

    let started = Instant::now();
    for chunk in traffic.records.chunks(500) {
        backend.put(chunk.to_vec()).await?;
    }
    let readings = |shared: &Shared| shared.monitor.lock().map(|m| m.readings()).unwrap_or(0);
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let mut last_progress = Instant::now();
    let complete = loop {
        let (done, sent) = (readings(&shared), failed.load(Ordering::Relaxed));
        if done >= traffic.readings.len() as u64 && sent >= traffic.malformed.len() as u64 {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!("[{:>5.1}s] readings {done}, failed records {sent}", started.elapsed().as_secs_f64());
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    shutdown.shutdown();
    task.await??;

    let monitor = shared.monitor.lock().map_err(|_| "monitor lock poisoned")?;
    let devices = monitor.summary();
    let summary = serde_json::json!({
        "complete": complete,
        "records_put": traffic.records.len(),
        "readings": monitor.readings(),
        "replays_skipped": devices.iter().map(|d| d.replays_skipped).sum::<u64>(),
        "failed_records": failed.load(Ordering::Relaxed),
        "alerts": shared.alerts_written.load(Ordering::Relaxed),
        "alerts_file": args.alerts,
        "failures_file": args.failures,
        "seconds": started.elapsed().as_secs_f64(),
        "devices": devices,
    });
    println!("{summary}");
    if !complete {
        eprintln!("iot-consumer: timed out before every record was processed or set aside");
    }
    Ok(complete)
}
