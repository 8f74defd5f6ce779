//! `e2e`: end-to-end consumption of a pre-filled stream on the emulators, in a process of its own.
//!
//! The parent (`bench e2e`) creates a stream on kinesis-mock and fills it (default 4 shards × 5000 records of
//! 100 B), then runs the consumer as a child process, `bench e2e-consume`, and waits for it. The consumer builds its
//! SDK clients and its DynamoDB lease store (creating the lease table), runs one worker from `TRIM_HORIZON` with
//! the default polling settings, checkpoints every batch, and shuts down gracefully once every record was delivered.
//!
//! What is counted: wall time from spawning the child to its exit (start-up and shutdown included); CPU (user +
//! sys) and peak RSS of the child alone, from `getrusage(RUSAGE_CHILDREN)` around the wait — the pre-fill runs in
//! the parent and is not in them. The child also reports its own times from `main` to the first and the last
//! delivery.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Args;
use kcl_core::process::{BatchResult, InitializeInput, ProcessorError};
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, Worker};
use kcl_dynamo_lease::DynamoLeaseStore;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::emulator::{self, EndpointArgs};
use crate::report::{Report, Usage};

/// Options of `bench e2e`.
#[derive(Args, Debug, Clone)]
pub struct E2eArgs {
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// Shards of the stream.
    #[arg(long, default_value_t = 4)]
    shards: i32,
    /// Records put into each shard before the consumer starts.
    #[arg(long, default_value_t = 5000)]
    records_per_shard: usize,
    /// Bytes per record.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// Runs (each on a fresh stream and lease table); the printed value is the median.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Give up on the consumer after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
    /// Run the consumer under this command, split at spaces (for profiling, e.g.
    /// `valgrind --tool=callgrind --callgrind-out-file=/tmp/e2e.callgrind`); its figures then include the tool.
    #[arg(long)]
    consumer_wrapper: Option<String>,
}

/// Options of `bench e2e-consume` (started by `bench e2e`).
#[derive(Args, Debug, Clone)]
pub struct ConsumeArgs {
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// The stream to consume.
    #[arg(long)]
    stream: String,
    /// The lease table (created if missing).
    #[arg(long)]
    table: String,
    /// Stop once this many records were delivered.
    #[arg(long)]
    expect: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
}

pub async fn run(args: E2eArgs) -> Result<Report, Box<dyn std::error::Error>> {
    let endpoints = args.endpoints.resolve("e2e")?;
    let kinesis = emulator::kinesis_client(&endpoints).await;
    let dynamodb = emulator::dynamodb_client(&endpoints).await;
    let expect = args.records_per_shard as u64 * u64::try_from(args.shards)?;
    let mut report = Report::new("e2e");
    report.param("shards", args.shards);
    report.param("records_per_shard", args.records_per_shard as u64);
    report.param("record_bytes", args.record_bytes as u64);
    report.param("repeat", args.repeat as u64);
    report.note(
        "consumer = child process `bench e2e-consume` (SDK clients, lease table creation, one worker with default \
         polling and lease settings, checkpoint per batch, graceful shutdown); wall = spawn to exit; CPU and max RSS \
         = getrusage(RUSAGE_CHILDREN) of that child only (pre-fill excluded)",
    );
    for run in 0..args.repeat {
        let stream = emulator::unique_name("bench-e2e");
        let table = format!("{stream}-leases");
        eprintln!("e2e: run {} of {}: filling {stream}", run + 1, args.repeat);
        let outcome = one_run(&args, &endpoints, &kinesis, &stream, &table, expect).await;
        emulator::clean_up(&kinesis, &dynamodb, &stream, &table).await;
        let (wall, usage, child) = outcome?;
        let cpu = usage.cpu().as_secs_f64();
        eprintln!(
            "e2e: wall {:.2} s, CPU {cpu:.3} s (user {:.3}, sys {:.3}), {:.2} µs/record, max RSS {:.1} MiB",
            wall.as_secs_f64(),
            usage.user.as_secs_f64(),
            usage.system.as_secs_f64(),
            cpu * 1e6 / expect as f64,
            usage.max_rss as f64 / (1 << 20) as f64
        );
        report.metric("e2e_wall_time", wall.as_secs_f64(), "s");
        report.metric("e2e_consumer_cpu", cpu, "s");
        report.metric("e2e_consumer_cpu_user", usage.user.as_secs_f64(), "s");
        report.metric("e2e_consumer_cpu_sys", usage.system.as_secs_f64(), "s");
        report.metric("e2e_cpu_per_record", cpu * 1e6 / expect as f64, "us");
        report.metric("e2e_consumer_max_rss", usage.max_rss as f64 / (1 << 20) as f64, "MiB");
        let field = |milestone: &str, key: &str| child.get(milestone).and_then(|m| m.get(key)).and_then(Value::as_f64);
        for (milestone, name) in [
            ("ready", "e2e_phase_ready"),
            ("first_shard", "e2e_phase_first_shard"),
            ("first_record", "e2e_phase_first_record"),
            ("last_record", "e2e_phase_last_record"),
        ] {
            if let (Some(ms), Some(cpu)) = (field(milestone, "ms"), field(milestone, "cpu_ms")) {
                report.metric(format!("{name}_at"), ms / 1e3, "s");
                report.metric(format!("{name}_cpu"), cpu / 1e3, "s");
            }
        }
        // Reading and processing alone: from the first shard's processor start to the last record.
        if let (Some(t0), Some(t1), Some(c0), Some(c1)) = (
            field("first_shard", "ms"),
            field("last_record", "ms"),
            field("first_shard", "cpu_ms"),
            field("last_record", "cpu_ms"),
        ) {
            report.metric("e2e_consume_phase_time", (t1 - t0) / 1e3, "s");
            report.metric("e2e_consume_phase_cpu_per_record", (c1 - c0) * 1e3 / expect as f64, "us");
        }
        if let Some(rss) = field("ready", "max_rss_mib") {
            report.metric("e2e_max_rss_before_reading", rss, "MiB");
        }
    }
    Ok(report)
}

async fn one_run(
    args: &E2eArgs,
    endpoints: &emulator::Endpoints,
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    table: &str,
    expect: u64,
) -> Result<(Duration, Usage, Value), Box<dyn std::error::Error>> {
    emulator::create_stream(kinesis, stream, args.shards).await?;
    let starts = emulator::shard_start_keys(kinesis, stream).await?;
    let fills = starts
        .iter()
        .enumerate()
        .map(|(i, start)| emulator::fill_shard(kinesis, stream, start, i, args.records_per_shard, args.record_bytes));
    for filled in futures::future::join_all(fills).await {
        filled?;
    }
    eprintln!("e2e: filled; starting the consumer");
    let exe = std::env::current_exe()?;
    let before = Usage::children();
    let started = Instant::now();
    let wrapper: Vec<&str> = args.consumer_wrapper.as_deref().unwrap_or_default().split_whitespace().collect();
    let mut command = match wrapper.split_first() {
        Some((program, wrapper_args)) => {
            let mut command = std::process::Command::new(program);
            command.args(wrapper_args).arg(exe);
            command
        }
        None => std::process::Command::new(exe),
    };
    // Blocking wait on purpose: nothing else runs in this process meanwhile, so it cannot disturb the child.
    let output = command
        .args(["e2e-consume", "--stream", stream, "--table", table])
        .args(["--expect", &expect.to_string(), "--timeout-secs", &args.timeout_secs.to_string()])
        .args(["--kinesis-endpoint", &endpoints.kinesis, "--dynamodb-endpoint", &endpoints.dynamodb])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    let wall = started.elapsed();
    let usage = Usage::children().since(&before);
    if !output.status.success() {
        return Err(format!("the consumer process failed: {}", output.status).into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let child: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| format!("the consumer printed no result: {stdout:?}"))?;
    Ok((wall, usage, child))
}

/// A moment in the consumer's life: when (since `main`) and the process's CPU and peak RSS so far.
#[derive(Clone, Copy)]
struct Milestone {
    at: Duration,
    usage: Usage,
}

impl Milestone {
    fn now(started: Instant) -> Self {
        Self { at: started.elapsed(), usage: Usage::this_process() }
    }

    fn json(&self) -> Value {
        json!({
            "ms": self.at.as_secs_f64() * 1e3,
            "cpu_ms": self.usage.cpu().as_secs_f64() * 1e3,
            "max_rss_mib": self.usage.max_rss as f64 / (1 << 20) as f64,
        })
    }
}

struct Counter {
    expect: u64,
    delivered: AtomicU64,
    started: Instant,
    /// The first processor initialised: the worker holds a lease and starts reading.
    first_shard: OnceLock<Milestone>,
    first_record: OnceLock<Milestone>,
    last_record: OnceLock<Milestone>,
    done: Notify,
}

struct CountingProcessor {
    counter: Arc<Counter>,
}

#[async_trait::async_trait]
impl RecordProcessor for CountingProcessor {
    async fn initialize(&mut self, _input: InitializeInput) -> Result<(), ProcessorError> {
        let c = &self.counter;
        c.first_shard.get_or_init(|| Milestone::now(c.started));
        Ok(())
    }

    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        let c = &self.counter;
        c.first_record.get_or_init(|| Milestone::now(c.started));
        checkpointer.checkpoint().await?;
        let n = batch.records.len() as u64;
        if c.delivered.fetch_add(n, Ordering::AcqRel) + n >= c.expect
            && c.last_record.set(Milestone::now(c.started)).is_ok()
        {
            c.done.notify_one();
        }
        Ok(())
    }
}

/// The consumer process: prints one JSON line with its counts and times (ms since `main`).
pub async fn consume(args: ConsumeArgs, started: Instant) -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = args.endpoints.resolve("e2e")?;
    let kinesis = emulator::kinesis_client(&endpoints).await;
    let dynamodb = emulator::dynamodb_client(&endpoints).await;
    let store = DynamoLeaseStore::builder(dynamodb, args.table.as_str()).build().await?;
    let ready = Milestone::now(started);
    let counter = Arc::new(Counter {
        expect: args.expect,
        delivered: AtomicU64::new(0),
        started,
        first_shard: OnceLock::new(),
        first_record: OnceLock::new(),
        last_record: OnceLock::new(),
        done: Notify::new(),
    });
    let for_factory = counter.clone();
    let worker = Worker::builder(args.stream.as_str(), "bench-e2e")
        .kinesis_client(kinesis)
        .lease_store(Arc::new(store))
        .initial_position(InitialPosition::TrimHorizon)
        .processor_factory(move |_shard: &str| CountingProcessor { counter: for_factory.clone() })
        .build()?;
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let finished = tokio::time::timeout(Duration::from_secs(args.timeout_secs), counter.done.notified()).await;
    shutdown.shutdown();
    task.await??;
    let delivered = counter.delivered.load(Ordering::Acquire);
    if finished.is_err() {
        return Err(format!("timed out with {delivered} of {} records delivered", args.expect).into());
    }
    let milestone = |m: Option<&Milestone>| m.map_or(Value::Null, Milestone::json);
    let result = json!({
        "records": delivered,
        "ready": ready.json(),
        "first_shard": milestone(counter.first_shard.get()),
        "first_record": milestone(counter.first_record.get()),
        "last_record": milestone(counter.last_record.get()),
        "exit": Milestone::now(started).json(),
    });
    println!("{result}");
    Ok(())
}
