//! `e2e`: end-to-end consumption of a pre-filled stream on the emulators, by consumer processes compared side by side.
//!
//! The parent (`bench e2e`) creates a stream on kinesis-mock and fills it once (default 4 shards × 5000 records of
//! 100 B). Then, for each round, it runs every contender (see `contender.rs`) as a child process on that stream from
//! `TRIM_HORIZON`, one after the other, rotating the order per round so that none always runs first:
//!
//! * `bare` — `bench e2e-bare` (`bare_loop.rs`): the aws-sdk-kinesis `GetRecords` loop, no leases, no checkpoints;
//!   the floor, and the base of the printed ratios;
//! * `kcl-rs` — `bench e2e-consume` (below): SDK clients, a DynamoDB lease store (creating a fresh lease table), one
//!   worker from `TRIM_HORIZON` with the default polling settings, a checkpoint every batch, graceful shutdown once
//!   every record was delivered;
//! * any other consumer given as `--contender 'NAME=COMMAND'`.
//!
//! What is counted per child: wall time from spawn to exit, CPU (user + sys) and peak RSS from `wait4` of that child,
//! the time from spawn to its first record (it announces it on stdout), and the child's own milestones.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::Args;
use kcl_core::process::{BatchResult, InitializeInput, ProcessorError};
use kcl_core::retrieve::{GetRecordsPath, WireFormat};
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, Worker};
use kcl_dynamo_lease::DynamoLeaseStore;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::contender::{ChildRun, Contender, RunInput};
use crate::emulator::{self, EndpointArgs};
use crate::milestone::{Milestone, json_of};
use crate::report::Report;
use kcl_tests::interop::JavaBuild;

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
    /// Rounds; each runs every contender once (with a fresh lease table). Printed values are medians.
    #[arg(long, alias = "repeat", default_value_t = 3)]
    rounds: usize,
    /// Built-in contenders, in order; the first is the base of the ratios. `bare`: the SDK `GetRecords` loop;
    /// `kcl-rs`: a kcl-rs worker (default settings); `kcl-rs-json` / `kcl-rs-cbor` / `kcl-rs-sdk`: the same with
    /// `GetRecords` decoded by kcl-rs in JSON / in CBOR / by the AWS SDK; `java-kcl2` / `java-kcl3`: the Java KCL
    /// peer (`interop/java-kcl`, built by `scripts/test`) with amazon-kinesis-client 2.7.2 / 3.5.1.
    #[arg(long, value_delimiter = ',', default_values_t = vec!["bare".to_owned(), "kcl-rs".to_owned()])]
    contenders: Vec<String>,
    /// One more contender, `NAME=COMMAND` (split at spaces; `{stream}`, `{table}`, `{expect}`, `{region}`,
    /// `{kinesis_endpoint}`, `{dynamodb_endpoint}` are replaced). It prints `{"milestone":"first_record"}` on stdout
    /// at its first record and `{"records":N}` at the end, and exits 0. Repeatable.
    #[arg(long)]
    contender: Vec<String>,
    /// Give up on a consumer after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
    /// Run the kcl-rs consumer under this command, split at spaces (for profiling, e.g.
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
    /// How polling sends and decodes `GetRecords`: kcl-rs's default, its own decoder in JSON or CBOR, or the SDK's.
    #[arg(long, value_enum, default_value_t = GetRecords::Default)]
    get_records: GetRecords,
}

/// `--get-records` of `bench e2e-consume`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetRecords {
    Default,
    Json,
    Cbor,
    Sdk,
}

impl GetRecords {
    fn path(self) -> GetRecordsPath {
        match self {
            Self::Default => GetRecordsPath::default(),
            Self::Json => GetRecordsPath::Lean(WireFormat::Json),
            Self::Cbor => GetRecordsPath::Lean(WireFormat::Cbor),
            Self::Sdk => GetRecordsPath::Sdk,
        }
    }
}

pub async fn run(args: E2eArgs) -> Result<Report, Box<dyn std::error::Error>> {
    let endpoints = args.endpoints.resolve("e2e")?;
    let contenders = contenders(&args)?;
    let kinesis = emulator::kinesis_client(&endpoints).await;
    let dynamodb = emulator::dynamodb_client(&endpoints).await;
    let expect = args.records_per_shard as u64 * u64::try_from(args.shards)?;
    let mut report = Report::new("e2e");
    report.param("shards", args.shards);
    report.param("records_per_shard", args.records_per_shard as u64);
    report.param("record_bytes", args.record_bytes as u64);
    report.param("rounds", args.rounds as u64);
    report.param("contenders", contenders.iter().map(|c| c.name.clone()).collect::<Vec<_>>());
    report.note(
        "each round runs every contender once as a child process on the same pre-filled stream, from TRIM_HORIZON \
         (the order rotates per round); kcl-rs = `bench e2e-consume` (SDK clients, lease table creation, one worker \
         with default polling and lease settings, checkpoint per batch, graceful shutdown); bare = `bench e2e-bare` \
         (aws-sdk-kinesis GetRecords loop, no leases or checkpoints)",
    );
    report.note(
        "wall = spawn to exit; cpu and max_rss from wait4 of that child; first_record = spawn to the child's \
         announcement of its first record; read_phase = from the child's first lease (kcl-rs) or client build (bare) \
         to its last record; <a>_vs_<base>_* = median of the per-round ratios against the first contender",
    );
    let stream = emulator::unique_name("bench-e2e");
    eprintln!("e2e: filling {stream} ({} shards × {} records)", args.shards, args.records_per_shard);
    let filled = fill(&args, &kinesis, &stream).await;
    let outcome = match filled {
        Ok(()) => rounds(&args, &endpoints, &dynamodb, &contenders, &stream, expect, &mut report).await,
        Err(error) => Err(error),
    };
    if let Err(error) = kinesis.delete_stream().stream_name(&stream).enforce_consumer_deletion(true).send().await {
        eprintln!("warning: could not delete stream {stream}: {}", aws_sdk_kinesis::error::DisplayErrorContext(error));
    }
    outcome.map(|()| report)
}

/// The built-in contenders named by `--contenders`, then the `--contender NAME=COMMAND` ones.
fn contenders(args: &E2eArgs) -> Result<Vec<Contender>, String> {
    let common = ["--kinesis-endpoint", "{kinesis_endpoint}", "--dynamodb-endpoint", "{dynamodb_endpoint}"];
    let mut all = Vec::new();
    for name in &args.contenders {
        let contender = match name.as_str() {
            "bare" => {
                let words = [&["e2e-bare", "--stream", "{stream}", "--expect", "{expect}"][..], &common[..]].concat();
                Contender::this_binary(name, &words, None)?
            }
            "kcl-rs" | "kcl-rs-json" | "kcl-rs-cbor" | "kcl-rs-sdk" => {
                let path = name.strip_prefix("kcl-rs-").unwrap_or("default");
                let words = [
                    &["e2e-consume", "--stream", "{stream}", "--table", "{table}", "--expect", "{expect}"][..],
                    &["--get-records", path][..],
                    &common[..],
                ]
                .concat();
                Contender::this_binary(name, &words, args.consumer_wrapper.as_deref())?
            }
            "java-kcl2" => crate::java::java_contender(name, JavaBuild::Kcl2, args.timeout_secs)?,
            "java-kcl3" => crate::java::java_contender(name, JavaBuild::Kcl3, args.timeout_secs)?,
            other => {
                return Err(format!(
                    "unknown built-in contender {other:?} (known: bare, kcl-rs, kcl-rs-json, kcl-rs-cbor, kcl-rs-sdk, \
                     java-kcl2, java-kcl3)"
                ));
            }
        };
        all.push(contender);
    }
    for spec in &args.contender {
        all.push(Contender::parse(spec)?);
    }
    if all.is_empty() {
        return Err("no contenders".into());
    }
    Ok(all)
}

async fn fill(
    args: &E2eArgs,
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    emulator::create_stream(kinesis, stream, args.shards).await?;
    let starts = emulator::shard_start_keys(kinesis, stream).await?;
    let fills = starts
        .iter()
        .enumerate()
        .map(|(i, start)| emulator::fill_shard(kinesis, stream, start, i, args.records_per_shard, args.record_bytes));
    for filled in futures::future::join_all(fills).await {
        filled?;
    }
    Ok(())
}

async fn rounds(
    args: &E2eArgs,
    endpoints: &emulator::Endpoints,
    dynamodb: &aws_sdk_dynamodb::Client,
    contenders: &[Contender],
    stream: &str,
    expect: u64,
    report: &mut Report,
) -> Result<(), Box<dyn std::error::Error>> {
    let timeout = Duration::from_secs(args.timeout_secs);
    for round in 0..args.rounds {
        let mut cpu_of = vec![f64::NAN; contenders.len()];
        let mut rss_of = vec![f64::NAN; contenders.len()];
        let mut wall_of = vec![f64::NAN; contenders.len()];
        for step in 0..contenders.len() {
            let index = (round + step) % contenders.len();
            let contender = &contenders[index];
            let table = emulator::unique_name("bench-e2e-leases");
            eprintln!("e2e: round {} of {}: {}", round + 1, args.rounds, contender.name);
            let input = RunInput { endpoints, stream, table: &table, expect, timeout };
            let outcome = contender.run(&input);
            // Only lease-keeping contenders create the table; a missing one is fine.
            let _ = dynamodb.delete_table().table_name(&table).send().await;
            let run = outcome?;
            let records = run.result.get("records").and_then(Value::as_u64).unwrap_or(0);
            if records < expect {
                return Err(format!("{}: {records} of {expect} records consumed", contender.name).into());
            }
            let cpu = run.usage.cpu().as_secs_f64();
            let rss = run.usage.max_rss as f64 / MIB;
            eprintln!(
                "e2e: {}: wall {:.2} s, CPU {cpu:.3} s ({:.2} µs/record), max RSS {rss:.1} MiB, first record {:.3} s",
                contender.name,
                run.wall.as_secs_f64(),
                cpu * 1e6 / expect as f64,
                run.milestones.get("first_record").map_or(f64::NAN, Duration::as_secs_f64),
            );
            record_run(report, &contender.name, &run, expect);
            (cpu_of[index], rss_of[index], wall_of[index]) = (cpu, rss, run.wall.as_secs_f64());
        }
        let base = &contenders[0].name;
        for (index, contender) in contenders.iter().enumerate().skip(1) {
            let name = &contender.name;
            report.metric(format!("e2e_{name}_vs_{base}_cpu"), cpu_of[index] / cpu_of[0], "x");
            report.metric(format!("e2e_{name}_vs_{base}_max_rss"), rss_of[index] / rss_of[0], "x");
            report.metric(format!("e2e_{name}_vs_{base}_wall"), wall_of[index] / wall_of[0], "x");
        }
    }
    Ok(())
}

const MIB: f64 = (1u64 << 20) as f64;

fn record_run(report: &mut Report, name: &str, run: &ChildRun, expect: u64) {
    let cpu = run.usage.cpu().as_secs_f64();
    report.metric(format!("e2e_{name}_cpu_per_record"), cpu * 1e6 / expect as f64, "us");
    report.metric(format!("e2e_{name}_cpu"), cpu, "s");
    report.metric(format!("e2e_{name}_cpu_user"), run.usage.user.as_secs_f64(), "s");
    report.metric(format!("e2e_{name}_cpu_sys"), run.usage.system.as_secs_f64(), "s");
    report.metric(format!("e2e_{name}_max_rss"), run.usage.max_rss as f64 / MIB, "MiB");
    report.metric(format!("e2e_{name}_wall"), run.wall.as_secs_f64(), "s");
    if let Some(first) = run.milestones.get("first_record") {
        report.metric(format!("e2e_{name}_first_record"), first.as_secs_f64(), "s");
    }
    let field = |milestone: &str, key: &str| run.result.get(milestone).and_then(|m| m.get(key)).and_then(Value::as_f64);
    for milestone in ["ready", "first_shard", "first_record", "last_record"] {
        if let (Some(ms), Some(cpu)) = (field(milestone, "ms"), field(milestone, "cpu_ms")) {
            report.metric(format!("e2e_{name}_at_{milestone}"), ms / 1e3, "s");
            report.metric(format!("e2e_{name}_cpu_at_{milestone}"), cpu / 1e3, "s");
        }
    }
    if let Some(rss) = field("ready", "max_rss_mib") {
        report.metric(format!("e2e_{name}_max_rss_before_reading"), rss, "MiB");
    }
    // Reading and processing alone: from the first lease (or, without leases, the built client) to the last record.
    let start = if field("first_shard", "ms").is_some() { "first_shard" } else { "ready" };
    if let (Some(c0), Some(c1), Some(t0), Some(t1)) =
        (field(start, "cpu_ms"), field("last_record", "cpu_ms"), field(start, "ms"), field("last_record", "ms"))
    {
        report.metric(format!("e2e_{name}_read_phase_cpu_per_record"), (c1 - c0) * 1e3 / expect as f64, "us");
        report.metric(format!("e2e_{name}_read_phase_time"), (t1 - t0) / 1e3, "s");
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
        c.first_record.get_or_init(|| Milestone::announce("first_record", c.started));
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
        .get_records_path(args.get_records.path())
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
    let result = json!({
        "records": delivered,
        "ready": ready.json(),
        "first_shard": json_of(counter.first_shard.get()),
        "first_record": json_of(counter.first_record.get()),
        "last_record": json_of(counter.last_record.get()),
        "exit": Milestone::now(started).json(),
    });
    println!("{result}");
    Ok(())
}
