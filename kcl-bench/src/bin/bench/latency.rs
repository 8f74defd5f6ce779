//! `latency`: put → process latency with polling and with enhanced fan-out, on kinesis-mock with DynamoDB Local
//! leases.
//!
//! A producer puts `rate` records per second for `seconds` seconds into a fresh 2-shard stream, each carrying the
//! wall-clock time taken just before its `PutRecord` call; the processor notes the wall-clock time a batch reaches
//! `process_records`. Latency = receive time − put time, for the first delivery of each record. Production starts
//! once the worker has initialised a processor for every shard, plus a short settling pause, so the readers are
//! polling (or subscribed to) a caught-up shard, as in steady state.
//!
//! With polling, latency is dominated by `idle_time_between_reads`: a reader that finds a shard caught up waits
//! (adaptively, up to that idle time) before the next `GetRecords`, and a record that arrives meanwhile waits with
//! it. Each idle time given is measured separately (default: Java KCL's 1500 ms, then 200 ms). With fan-out the
//! service pushes records; kinesis-mock 0.6.2 pushes on a fixed one-second tick (AWS: ~70 ms propagation), which
//! bounds what the emulator can show.
//!
//! Transport (`--transport`): `tls` (default) starts a private kinesis-mock with a generated certificate and reaches
//! it over TLS with HTTP/2, as AWS serves `SubscribeToShard` (`kcl_tests::own_kinesis`), for every run, polling
//! included, so both retrievals are measured against the same emulator; `plain` uses the given Kinesis endpoint over
//! HTTP (kinesis-mock then streams fan-out events on HTTP/1.1).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::primitives::Blob;
use clap::{Args, ValueEnum};
use kcl_core::process::{BatchResult, InitializeInput, ProcessorError};
use kcl_core::retrieve::PollingConfig;
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, Retrieval, Worker};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::own_kinesis::OwnKinesis;
use tokio::sync::Notify;

use crate::emulator::{self, EndpointArgs};
use crate::report::{Report, quantile};

/// Options of `bench latency`.
#[derive(Args, Debug, Clone)]
pub struct LatencyArgs {
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// Retrievals to measure (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Kind::Polling, Kind::Fanout])]
    retrievals: Vec<Kind>,
    /// Polling idle times to measure, in milliseconds (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1500, 200])]
    idle_ms: Vec<u64>,
    /// How the benchmark reaches Kinesis: a private kinesis-mock over TLS + HTTP/2, or the given endpoint over HTTP.
    #[arg(long, value_enum, default_value_t = Transport::Tls)]
    transport: Transport,
    /// Records put per second.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// How long the producer runs, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Shards of the stream.
    #[arg(long, default_value_t = 2)]
    shards: i32,
    /// Runs per idle time; the printed value is the median.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
}

/// A retrieval to measure.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `GetRecords` polling, once per `--idle-ms` value.
    Polling,
    /// Enhanced fan-out (`SubscribeToShard`), default `FanOutConfig`.
    Fanout,
}

/// How Kinesis is reached.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// A private kinesis-mock with a generated certificate, over TLS with HTTP/2 (as AWS serves fan-out).
    Tls,
    /// The given kinesis-mock endpoint (`KCL_TEST_KINESIS_ENDPOINT`) over plain HTTP.
    Plain,
}

const RECORD_BYTES: usize = 100;
const SHARD_COUNT_TIMEOUT: Duration = Duration::from_secs(90);

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Payload: `id` (10 digits), a space, the put time in µs since the epoch (20 digits), padding.
fn encode(id: u64, put_micros: u64) -> Vec<u8> {
    let mut data = format!("{id:010} {put_micros:020} ").into_bytes();
    data.resize(RECORD_BYTES, b'.');
    data
}

fn decode(data: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(data.get(..31)?).ok()?;
    Some((text[..10].parse().ok()?, text[11..31].parse().ok()?))
}

#[derive(Default)]
struct Shared {
    initialized: AtomicUsize,
    changed: Notify,
    /// Record id → latency in ms, first delivery only.
    latencies: Mutex<HashMap<u64, f64>>,
    malformed: AtomicUsize,
}

struct LatencyProcessor {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl RecordProcessor for LatencyProcessor {
    async fn initialize(&mut self, _input: InitializeInput) -> Result<(), ProcessorError> {
        self.shared.initialized.fetch_add(1, Ordering::AcqRel);
        self.shared.changed.notify_waiters();
        Ok(())
    }

    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        let received = now_micros();
        {
            let mut latencies = self.shared.latencies.lock().map_err(|_| "poisoned")?;
            for record in &batch.records {
                match decode(&record.data) {
                    Some((id, put)) => {
                        latencies.entry(id).or_insert(received.saturating_sub(put) as f64 / 1e3);
                    }
                    None => {
                        self.shared.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        self.shared.changed.notify_waiters();
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// Waits until `done` holds, re-checking whenever the processors report progress (and at least every 100 ms).
async fn wait_until(shared: &Shared, timeout: Duration, done: impl Fn(&Shared) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(shared) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), shared.changed.notified()).await;
    }
    true
}

pub async fn run(args: LatencyArgs) -> Result<Report, Box<dyn std::error::Error>> {
    let endpoints = args.endpoints.resolve("latency")?;
    let (kinesis, own) = match args.transport {
        Transport::Tls => {
            eprintln!("latency: starting a private kinesis-mock on TLS with a generated certificate");
            let own = OwnKinesis::start_tls().await?;
            (own.tls_client().await?, Some(own))
        }
        Transport::Plain => (emulator::kinesis_client(&endpoints).await, None),
    };
    let dynamodb = emulator::dynamodb_client(&endpoints).await;
    let mut report = Report::new("latency");
    report.param("rate_records_per_s", args.rate);
    report.param("producer_seconds", args.seconds);
    report.param("shards", args.shards);
    report.param("repeat", args.repeat as u64);
    report.param(
        "kinesis",
        match &own {
            Some(own) => format!("private kinesis-mock, {} (TLS, HTTP/2 via ALPN)", own.tls_endpoint()),
            None => format!("{} (plain HTTP; fan-out events on HTTP/1.1)", endpoints.kinesis),
        },
    );
    report.note(
        "latency = wall time when process_records receives the batch - wall time just before the PutRecord call; \
         polling with PollingConfig::default() except idle_time_between_reads (min_time_between_calls 200 ms); \
         fan-out with FanOutConfig::default() (kinesis-mock pushes events once a second)",
    );
    let mut variants: Vec<(String, Retrieval)> = Vec::new();
    for kind in &args.retrievals {
        match kind {
            Kind::Polling => variants.extend(args.idle_ms.iter().map(|&idle_ms| {
                let polling = PollingConfig::default().with_idle_time_between_reads(Duration::from_millis(idle_ms));
                (format!("latency_polling_idle_{idle_ms}ms"), Retrieval::Polling(polling))
            })),
            Kind::Fanout => variants.push(("latency_fanout".to_owned(), Retrieval::fan_out())),
        }
    }
    let result = async {
        for run in 0..args.repeat {
            for (name, retrieval) in &variants {
                eprintln!("latency: run {} of {}, {name}", run + 1, args.repeat);
                let stream = emulator::unique_name("bench-latency");
                let table = format!("{stream}-leases");
                let outcome = one_run(&args, &kinesis, &dynamodb, &stream, &table, retrieval.clone()).await;
                emulator::clean_up(&kinesis, &dynamodb, &stream, &table).await;
                let mut latencies = outcome?;
                latencies.sort_by(f64::total_cmp);
                let (p50, p99, max) = (
                    quantile(&latencies, 0.5),
                    quantile(&latencies, 0.99),
                    latencies.last().copied().unwrap_or(f64::NAN),
                );
                eprintln!(
                    "latency: {name}: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms ({} records)",
                    latencies.len()
                );
                report.metric(format!("{name}_p50"), p50, "ms");
                report.metric(format!("{name}_p99"), p99, "ms");
                report.metric(format!("{name}_max"), max, "ms");
                report.metric(format!("{name}_records"), latencies.len() as f64, "records");
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    if let Some(own) = own {
        own.stop().await;
    }
    result?;
    Ok(report)
}

async fn one_run(
    args: &LatencyArgs,
    kinesis: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    stream: &str,
    table: &str,
    retrieval: Retrieval,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    emulator::create_stream(kinesis, stream, args.shards).await?;
    let store = DynamoLeaseStore::builder(dynamodb.clone(), table).build().await?;
    let shared = Arc::new(Shared::default());
    let for_factory = shared.clone();
    let worker = Worker::builder(stream, "bench-latency")
        .kinesis_client(kinesis.clone())
        .lease_store(Arc::new(store))
        .initial_position(InitialPosition::TrimHorizon)
        .retrieval(retrieval)
        .processor_factory(move |_shard: &str| LatencyProcessor { shared: for_factory.clone() })
        .build()?;
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());

    let shards = usize::try_from(args.shards).unwrap_or(0);
    let result = async {
        if !wait_until(&shared, SHARD_COUNT_TIMEOUT, |s| s.initialized.load(Ordering::Acquire) >= shards).await {
            return Err(
                format!("the worker did not start on all {shards} shards within {SHARD_COUNT_TIMEOUT:?}").into()
            );
        }
        // Let the readers reach their caught-up polling rhythm before the first record.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let total = u64::from(args.rate) * args.seconds;
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / args.rate.max(1));
        for id in 0..total {
            ticks.tick().await;
            let put = now_micros();
            kinesis
                .put_record()
                .stream_name(stream)
                .partition_key(format!("device-{}", rand::random::<u32>()))
                .data(Blob::new(encode(id, put)))
                .send()
                .await?;
        }
        let received = |s: &Shared| s.latencies.lock().map_or(0, |l| l.len()) as u64 >= total;
        if !wait_until(&shared, Duration::from_secs(30), received).await {
            let got = shared.latencies.lock().map_or(0, |l| l.len());
            return Err(format!("only {got} of {total} records arrived within 30 s of the last put").into());
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    shutdown.shutdown();
    task.await??;
    result?;
    let malformed = shared.malformed.load(Ordering::Acquire);
    if malformed > 0 {
        return Err(format!("{malformed} records had a malformed payload").into());
    }
    let latencies = shared.latencies.lock().map_err(|_| "poisoned")?.values().copied().collect();
    Ok(latencies)
}
