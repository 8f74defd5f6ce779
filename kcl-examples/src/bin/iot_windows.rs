//! Per-device temperature averages over tumbling windows (Lambda's `TumblingWindowInSeconds`): each shard's records
//! are cut into fixed windows by arrival time; a `WindowProcessor` folds readings into per-device sums and, when a
//! window ends, writes one line per device (`{"shard","window_start","device","readings","avg_temp"}`) to a
//! JSON-lines file and fsyncs it. The checkpoint passes a window's records only after that line is durable, so a
//! crash or a lease move replays the open window on the next owner (at-least-once per window).
//!
//! Records are picked with a Lambda filter pattern (`FilterCriteria`): readings that carry a temperature (EMQX
//! style `temp`, or MODE `eventData.temperature` of sensor events); the rest count as processed.
//!
//! * `cargo run -p kcl-examples --bin iot_windows` — in memory with generated traffic; prints a JSON summary and
//!   exits non-zero unless every temperature reading was counted in exactly one window.
//! * `… -- --kinesis-endpoint http://127.0.0.1:4567 --dynamodb-endpoint http://127.0.0.1:8000` — emulators.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kcl_core::InitialPosition;
use kcl_core::process::{Batch, FilterCriteria, ProcessorError, TumblingWindows, Window, WindowEnd, WindowProcessor};
use kcl_examples::backend::{Backend, BackendArgs, ExampleStream};
use kcl_examples::iot::{self, TrafficConfig};
use kcl_examples::kinesis::BoxError;

#[derive(Parser, Debug)]
#[command(about = "Per-device temperature averages over tumbling windows, checkpointed window by window")]
#[command(mut_arg("stream", |arg| arg.help("Stream name in Kinesis mode (default: a fresh `kcl-iot-windows-…` name)")))]
struct Args {
    /// Seed of the generated device traffic.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Devices publishing.
    #[arg(long, default_value_t = 10)]
    devices: usize,
    /// Readings per device.
    #[arg(long, default_value_t = 40)]
    readings: usize,
    /// Window length in seconds (Lambda allows up to 900).
    #[arg(long, default_value_t = 2)]
    window_secs: u64,
    /// Shards of the stream.
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Window results (JSON lines; replaced at start).
    #[arg(long, default_value = "iot-windows.jsonl")]
    output: PathBuf,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Worker settings from this TOML file (keys: see `kcl_core::config`), laid over the example's own; `KCL_…`
    /// environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArgs,
}

/// Lambda's filter: readings with a temperature, in either format the IoT stream carries.
const FILTER: &str = r#"{"Filters":[
    {"Pattern":"{\"data\":{\"client_id\":[{\"exists\":true}],\"temp\":[{\"numeric\":[\">=\",-60,\"<=\",100]}]}}"},
    {"Pattern":"{\"data\":{\"eventType\":[\"sensorReading\",\"climate\"],\"eventData\":{\"temperature\":[{\"numeric\":[\">=\",-60,\"<=\",100]}]}}}"}
]}"#;

/// Temperature sum and count per device within one window.
type Sums = BTreeMap<String, (f64, u64)>;

/// The window results file, shared by the shards' processors.
struct Output {
    file: Mutex<File>,
    /// Readings counted in published windows, per device.
    counted: Mutex<BTreeMap<String, u64>>,
}

struct Averages {
    output: Arc<Output>,
}

#[async_trait::async_trait]
impl WindowProcessor for Averages {
    type State = Sums;

    async fn process(&mut self, _: &Window, sums: &mut Sums, batch: &Batch) -> Result<(), ProcessorError> {
        for record in &batch.records {
            // The filter let only parseable readings with a temperature through; anything else is skipped.
            if let Ok(Some(iot::parse::Measurement { device, temp: Some(temp), .. })) = iot::parse(&record.data) {
                let entry = sums.entry(device).or_insert((0.0, 0));
                entry.0 += temp;
                entry.1 += 1;
            }
        }
        Ok(())
    }

    async fn window_ended(&mut self, window: &Window, sums: &Sums, end: WindowEnd) -> Result<(), ProcessorError> {
        let start = window.start.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut lines = String::new();
        for (device, (sum, count)) in sums {
            let line = serde_json::json!({
                "shard": &*window.shard_id,
                "window_start": iot::parse::format_rfc3339(start),
                "device": device,
                "readings": count,
                "avg_temp": (sum / *count as f64 * 100.0).round() / 100.0,
                "ended_early": end == WindowEnd::ShardEnded,
            });
            lines.push_str(&line.to_string());
            lines.push('\n');
        }
        let mut file = self.output.file.lock().map_err(|_| "output lock poisoned")?;
        file.write_all(lines.as_bytes())?;
        // Durable before the checkpoint moves past the window's records.
        file.sync_data()?;
        let mut counted = self.output.counted.lock().map_err(|_| "count lock poisoned")?;
        for (device, (_, count)) in sums {
            *counted.entry(device.clone()).or_default() += count;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    kcl_examples::init_logging();
    let args = Args::parse();
    let example = ExampleStream {
        application: "iot-windows",
        stream_prefix: "kcl-iot-windows",
        shards: args.shards,
        reuse_existing: true,
    };
    Backend::run_scenario(&args.backend, &example, async |backend| run(&args, backend).await).await
}

async fn run(args: &Args, backend: &Backend) -> Result<bool, BoxError> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let traffic = iot::traffic::generate(&TrafficConfig {
        seed: args.seed,
        devices: args.devices,
        readings_per_device: args.readings,
        start_ms: now_ms,
        ..TrafficConfig::default()
    });
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for reading in traffic.readings.iter().filter(|r| r.temp.is_some()) {
        *expected.entry(reading.device.clone()).or_default() += 1;
    }
    let output = Arc::new(Output { file: Mutex::new(File::create(&args.output)?), counted: Mutex::default() });
    let window = Duration::from_secs(args.window_secs);
    let processors = output.clone();
    let builder = backend
        .worker()
        .worker_id("iot-windows-1")
        .initial_position(InitialPosition::TrimHorizon)
        .filter(FilterCriteria::from_json(FILTER)?);
    let worker = builder
        .config_file_and_env(args.config.as_deref())?
        .processor_factory(TumblingWindows::factory(window, move |_: &str| Averages { output: processors.clone() })?)
        .build()?;
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    eprintln!(
        "iot-windows: {}, {} records, {}-second windows",
        backend.describe(),
        traffic.records.len(),
        args.window_secs
    );

    let started = Instant::now();
    // Spread the puts over a few windows, so windows end while records still arrive.
    for chunk in traffic.records.chunks(traffic.records.len().div_ceil(4).max(1)) {
        backend.put(chunk.to_vec()).await?;
        tokio::time::sleep(window / 2).await;
    }
    let deadline = started + Duration::from_secs(args.timeout_secs);
    let complete = loop {
        let counted = output.counted.lock().map_err(|_| "count lock poisoned")?.clone();
        if counted == expected {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    shutdown.shutdown();
    task.await??;
    let counted = output.counted.lock().map_err(|_| "count lock poisoned")?.clone();
    let summary = serde_json::json!({
        "complete": complete,
        "readings_with_temperature": expected.values().sum::<u64>(),
        "counted_in_windows": counted.values().sum::<u64>(),
        "devices": counted.len(),
        "output": args.output,
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{summary}");
    if !complete {
        eprintln!("iot-windows: timed out before every reading was counted in a published window");
    }
    Ok(complete)
}
