//! The quickstart's consumer with a Prometheus exporter: two workers consume a stream of IoT readings that a
//! producer keeps putting, and the framework's metrics (records processed, leases held, GetRecords calls, millis
//! behind latest, …) are served in the Prometheus text format at `http://127.0.0.1:<port>/metrics`.
//!
//! * `cargo run -p kcl-examples --bin prometheus` — in memory, metrics on 127.0.0.1:9898; Ctrl-C stops it.
//! * `… -- --metrics-port 0` — an ephemeral port, printed on start (`metrics: http://127.0.0.1:PORT/metrics`).
//! * `… -- --config kcl.toml` — worker settings from a TOML file (keys in `kcl_core::config`); `KCL_…` variables too.
//! * `… -- --kinesis-endpoint URL --dynamodb-endpoint URL` or `… -- --aws` — emulators or AWS, as the quickstart.
//!
//! The exporter only renders; this file serves `/metrics` itself with tokio (a few lines of HTTP/1.1), which keeps
//! hyper out of the build and lets the example bind port 0 and say which port it got. Loopback only: metrics name
//! streams and shards, which is nobody else's business.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kcl_core::process::BatchResult;
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, ShutdownHandle};
use kcl_examples::backend::{Backend, BackendArgs, ExampleStream};
use kcl_examples::iot::Reading;
use kcl_examples::kinesis::BoxError;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The quickstart's stream and application name (this is the quickstart's consumer, with an exporter).
const STREAM: ExampleStream =
    ExampleStream { application: "quickstart", stream_prefix: "kcl-prometheus", shards: 4, reuse_existing: false };

#[derive(Parser, Debug)]
#[command(about = "kcl-rs workers consuming an IoT stream, with their metrics served to Prometheus")]
// The shared flag names no example; say which fresh name this one makes up.
#[command(mut_arg("stream", |arg| arg.help("Stream name in Kinesis mode (default: a fresh `kcl-prometheus-…` name)")))]
struct Args {
    /// Port of the metrics endpoint on 127.0.0.1 (0: any free port, printed on start).
    #[arg(long, default_value_t = 9898)]
    metrics_port: u16,
    /// Readings put per second.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Devices (partition keys) publishing them.
    #[arg(long, default_value_t = 50)]
    devices: usize,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Worker settings from this TOML file (keys: see `kcl_core::config`), laid over the example's own; `KCL_…`
    /// environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the stream and the lease table live (memory, emulators or AWS).
    #[command(flatten)]
    backend: BackendArgs,
}

/// Parses each reading and checkpoints after every batch; the framework counts what it processed.
struct ReadingProcessor;

#[async_trait::async_trait]
impl RecordProcessor for ReadingProcessor {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        for record in &batch.records {
            if let Ok(reading) = serde_json::from_slice::<Reading>(&record.data) {
                // An application metric next to the framework's: the exporter serves both.
                metrics::histogram!("iot_temperature_celsius").record(reading.temp);
            }
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// Serves the rendered metrics at `GET /metrics`, one request per connection.
async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else { continue };
        let handle = handle.clone();
        tokio::spawn(async move {
            // A scraper that talks nonsense or hangs up only loses its own answer.
            let _ = answer(stream, &handle).await;
        });
    }
}

async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    // Read the request head (bounded: nobody needs more than 8 KiB to ask for /metrics).
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buf[..read]);
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, content_type, body) = if request_line.starts_with(b"GET /metrics ") {
        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", handle.render())
    } else {
        ("404 Not Found", "text/plain; charset=utf-8", "try GET /metrics\n".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    kcl_examples::init_logging();
    let args = Args::parse();
    if args.devices == 0 {
        return Err("--devices must be at least 1".into());
    }
    // Install the recorder before any worker exists: metrics recorded earlier would go nowhere.
    let handle = PrometheusBuilder::new().install_recorder()?;
    let upkeep = handle.clone();
    // The exporter's histograms need draining now and then (its HTTP listener would do this itself).
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.metrics_port))).await?;
    let address = listener.local_addr()?;
    tokio::spawn(serve(listener, handle));

    let backend = Backend::connect(&args.backend, &STREAM).await?;
    // Tests and scripts read this line to find the endpoint.
    println!("metrics: http://{address}/metrics");
    println!("consuming {} with 2 workers; Ctrl-C stops", backend.describe());
    let outcome = run(&args, &backend).await;
    backend.cleanup().await;
    outcome
}

async fn run(args: &Args, backend: &Backend) -> Result<(), BoxError> {
    let mut fleet: Vec<(ShutdownHandle, tokio::task::JoinHandle<Result<(), kcl_core::KclError>>)> = Vec::new();
    for id in ["worker-1", "worker-2"] {
        let builder = backend.worker().initial_position(InitialPosition::TrimHorizon);
        // Two workers share this process: each keeps its own id whatever the file says.
        let worker = builder
            .config_file_and_env(args.config.as_deref())?
            .worker_id(id)
            .processor_factory(|_shard: &str| ReadingProcessor)
            .build()?;
        fleet.push((worker.shutdown_handle(), tokio::spawn(worker.run())));
    }
    let stop_at = args.duration_secs.map(|secs| tokio::time::Instant::now() + Duration::from_secs(secs));
    let per_tick = (args.rate / 10).max(1);
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut next = 0u64;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = ticks.tick() => {}
        }
        if stop_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
            break;
        }
        let mut batch = Vec::new();
        for _ in 0..per_tick {
            let device = (next % args.devices as u64) as usize;
            let reading = Reading::synthetic(device, next / args.devices as u64, now_millis());
            batch.push((reading.client_id.clone(), serde_json::to_vec(&reading)?));
            next += 1;
        }
        backend.put(batch).await?;
    }
    println!("stopping after {next} readings");
    for (shutdown, task) in fleet {
        shutdown.shutdown();
        task.await??;
    }
    Ok(())
}
