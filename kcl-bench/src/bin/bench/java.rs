//! Java KCL as a contender, beside kcl-rs, on the same emulators:
//!
//! * `e2e-java`: the `e2e` workload (a pre-filled stream, default 4 shards × 5000 records × 100 B, DynamoDB leases,
//!   checkpoint per batch, start-up included) consumed by a kcl-rs process (`bench e2e-consume`) and by the Java KCL
//!   peer (`interop/java-kcl`, `--expect N` mode: counts, checkpoints every batch, exits after N records),
//!   interleaved run by run, each on a fresh stream and table. Per contender: wall time (spawn to exit), CPU µs per
//!   record and peak RSS (`getrusage(RUSAGE_CHILDREN)` of that child only), time to the first record (reported by
//!   the child: since `main` for kcl-rs, since JVM start for Java).
//! * `failover-java`: two workers of one kind on a 4-shard stream with a producer running; one is killed (`kill -9`)
//!   or stopped (SIGTERM); the figure is, per shard it was processing, the time until the survivor delivered a
//!   record of that shard. kcl-rs (`verify-worker`) and Java KCL runs alternate.
//!
//! The Java contender is a child command like any other ([`java_command`]), so it plugs into a multi-contender
//! runner as is.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use kcl_tests::interop::{Fleet, JavaBuild, Kind, Producer, Spec, java_peer, wait_deliveries};
use serde_json::Value;

use crate::emulator::{self, EndpointArgs, Endpoints};
use crate::report::{Report, Usage};

/// Which Java KCL build.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum JavaArg {
    /// amazon-kinesis-client 2.7.2.
    Kcl2,
    /// amazon-kinesis-client 3.5.1 (3.x mode).
    Kcl3,
}

impl JavaArg {
    fn build(self) -> JavaBuild {
        match self {
            Self::Kcl2 => JavaBuild::Kcl2,
            Self::Kcl3 => JavaBuild::Kcl3,
        }
    }
}

/// Options of `bench e2e-java`.
#[derive(Args, Debug, Clone)]
pub struct E2eJavaArgs {
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
    /// Runs per contender, interleaved.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// The Java KCL build.
    #[arg(long, value_enum, default_value_t = JavaArg::Kcl2)]
    java: JavaArg,
    /// Give up on a consumer after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
}

/// The Java KCL peer consuming `stream` with lease table `table` until `expect` records were delivered.
pub fn java_command(
    build: JavaBuild,
    endpoints: &Endpoints,
    stream: &str,
    table: &str,
    expect: u64,
    timeout_secs: u64,
) -> Result<std::process::Command, String> {
    let mut command = std::process::Command::new("java");
    command
        .args(["-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", &java_peer(build)?, "dev.kclrs.interop.Peer"])
        .args(["--stream", stream, "--app", table, "--worker-id", "bench"])
        .args(["--kinesis-endpoint", &endpoints.kinesis, "--dynamodb-endpoint", &endpoints.dynamodb])
        .args(["--expect", &expect.to_string(), "--timeout-secs", &timeout_secs.to_string()]);
    if matches!(build, JavaBuild::Kcl3) {
        command.args(["--client-version", "3x"]);
    }
    Ok(command)
}

/// The kcl-rs contender: this binary's `e2e-consume`.
fn rust_command(
    endpoints: &Endpoints,
    stream: &str,
    table: &str,
    expect: u64,
    timeout_secs: u64,
) -> Result<std::process::Command, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = std::process::Command::new(exe);
    command
        .args(["e2e-consume", "--stream", stream, "--table", table])
        .args(["--expect", &expect.to_string(), "--timeout-secs", &timeout_secs.to_string()])
        .args(["--kinesis-endpoint", &endpoints.kinesis, "--dynamodb-endpoint", &endpoints.dynamodb]);
    Ok(command)
}

/// Runs a consumer child to its exit: wall, usage, its JSON result line.
fn measure(mut command: std::process::Command) -> Result<(Duration, Usage, Value), Box<dyn std::error::Error>> {
    let before = Usage::children();
    let started = Instant::now();
    // Blocking wait on purpose: nothing else runs in this process meanwhile, so it cannot disturb the child.
    let output = command.stdin(Stdio::null()).stderr(Stdio::inherit()).output()?;
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

pub async fn e2e(args: E2eJavaArgs) -> Result<Report, Box<dyn std::error::Error>> {
    let endpoints = args.endpoints.resolve("e2e-java")?;
    let kinesis = emulator::kinesis_client(&endpoints).await;
    let dynamodb = emulator::dynamodb_client(&endpoints).await;
    let expect = args.records_per_shard as u64 * u64::try_from(args.shards)?;
    let build = args.java.build();
    java_peer(build)?;
    let mut report = Report::new("e2e-java");
    report.param("shards", args.shards);
    report.param("records_per_shard", args.records_per_shard as u64);
    report.param("record_bytes", args.record_bytes as u64);
    report.param("repeat", args.repeat as u64);
    report.param("java", format!("{:?}", args.java));
    report.note(
        "contenders alternate run by run, each on a fresh pre-filled stream and lease table; wall = spawn to exit; \
         CPU and max RSS = getrusage(RUSAGE_CHILDREN) of the consumer child only; first record: since main (kcl-rs), \
         since JVM start (Java)",
    );
    for run in 0..args.repeat {
        for contender in ["kcl_rs", "java"] {
            let stream = emulator::unique_name("bench-e2e-java");
            let table = format!("{stream}-leases");
            emulator::create_stream(&kinesis, &stream, args.shards).await?;
            let starts = emulator::shard_start_keys(&kinesis, &stream).await?;
            let fills = starts.iter().enumerate().map(|(i, start)| {
                emulator::fill_shard(&kinesis, &stream, start, i, args.records_per_shard, args.record_bytes)
            });
            for filled in futures::future::join_all(fills).await {
                filled?;
            }
            eprintln!("e2e-java: run {} of {}: {contender}", run + 1, args.repeat);
            let command = if contender == "java" {
                java_command(build, &endpoints, &stream, &table, expect, args.timeout_secs)?
            } else {
                rust_command(&endpoints, &stream, &table, expect, args.timeout_secs)?
            };
            let outcome = measure(command);
            emulator::clean_up(&kinesis, &dynamodb, &stream, &table).await;
            let (wall, usage, child) = outcome?;
            let cpu = usage.cpu().as_secs_f64();
            let first = child.get("first_record").and_then(|m| m.get("ms")).and_then(Value::as_f64);
            eprintln!(
                "e2e-java: {contender}: wall {:.2} s, {:.2} µs/record, max RSS {:.1} MiB, first record {:?} ms",
                wall.as_secs_f64(),
                cpu * 1e6 / expect as f64,
                usage.max_rss as f64 / (1 << 20) as f64,
                first
            );
            report.metric(format!("{contender}_wall_time"), wall.as_secs_f64(), "s");
            report.metric(format!("{contender}_cpu_per_record"), cpu * 1e6 / expect as f64, "us");
            report.metric(format!("{contender}_max_rss"), usage.max_rss as f64 / (1 << 20) as f64, "MiB");
            if let Some(first) = first {
                report.metric(format!("{contender}_first_record_at"), first / 1e3, "s");
            }
        }
    }
    Ok(report)
}

/// Options of `bench failover-java`.
#[derive(Args, Debug, Clone)]
pub struct FailoverJavaArgs {
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// Runs per kind and stop (kill -9, SIGTERM), interleaved.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Lease duration (failoverTimeMillis) of both kinds.
    #[arg(long, default_value_t = 10_000)]
    lease_duration_ms: u64,
    /// The Java KCL build.
    #[arg(long, value_enum, default_value_t = JavaArg::Kcl2)]
    java: JavaArg,
    /// The `verify-worker` binary (default: next to this one).
    #[arg(long)]
    verify_worker: Option<PathBuf>,
}

/// For each shard `victim` delivered in its last second before `at_us`: ms until another worker delivered a record
/// of it.
fn resume_gaps(fleet: &Fleet, victim: &str, at_us: u64) -> Result<Vec<f64>, String> {
    let deliveries = kcl_tests::verify::load_outputs(&fleet.outputs)?;
    let mut shards: Vec<&str> = deliveries
        .iter()
        .filter(|d| d.worker == victim && d.t + 3_000_000 >= at_us && d.t <= at_us)
        .map(|d| d.shard.as_str())
        .collect();
    shards.sort_unstable();
    shards.dedup();
    Ok(shards
        .iter()
        .filter_map(|shard| {
            deliveries
                .iter()
                .filter(|d| d.worker != victim && d.shard == *shard && d.t > at_us)
                .map(|d| d.t)
                .min()
                .map(|t| (t - at_us) as f64 / 1e3)
        })
        .collect())
}

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

pub async fn failover(args: FailoverJavaArgs) -> Result<Report, Box<dyn std::error::Error>> {
    let endpoints = args.endpoints.resolve("failover-java")?;
    let kinesis = emulator::kinesis_client(&endpoints).await;
    let java = match args.java.build() {
        JavaBuild::Kcl2 => Kind::Java2,
        JavaBuild::Kcl3 => Kind::Java3Compatible,
    };
    let verify_worker = match &args.verify_worker {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("verify-worker"),
    };
    if !verify_worker.is_file() {
        return Err(
            format!("{} not found: build it (cargo build --release -p kcl-bench)", verify_worker.display()).into()
        );
    }
    let mut report = Report::new("failover-java");
    report.param("lease_duration_ms", args.lease_duration_ms);
    report.param("repeat", args.repeat as u64);
    report.note(
        "2 workers of one kind, 4 shards, producer at 40 records/s; after kill -9 or SIGTERM of one worker: per shard it \
         was processing, ms until the survivor delivered a record of it (median over shards and runs)",
    );
    for run in 0..args.repeat {
        for (kind, name) in [(Kind::Rust, "kcl_rs"), (java, "java")] {
            for (stop, stop_name) in [(true, "kill"), (false, "term")] {
                let dir = std::env::temp_dir().join(emulator::unique_name("failover-java"));
                std::fs::create_dir_all(&dir)?;
                let stream = emulator::unique_name("bench-failover");
                emulator::create_stream(&kinesis, &stream, 4).await?;
                let mut fleet = Fleet::new(Spec {
                    stream: stream.clone(),
                    app: format!("{stream}-app"),
                    kinesis_endpoint: endpoints.kinesis.clone(),
                    dynamodb_endpoint: endpoints.dynamodb.clone(),
                    lease_duration_ms: args.lease_duration_ms,
                    dir: dir.clone(),
                    verify_worker: Some(verify_worker.clone()),
                });
                let producer = Producer::start(kinesis.clone(), &stream, 40, 0, run as u64);
                let a = fleet.start(kind, "a", &[])?;
                wait_deliveries(&fleet, 20, Duration::from_secs(120)).await?;
                let _b = fleet.start(kind, "b", &[])?;
                // Until b processes part of the stream (it took or stole leases) and a still does.
                wait_both(&fleet, Duration::from_secs(180)).await?;
                let at = now_us();
                if stop {
                    fleet.kill(a).await;
                } else {
                    // SIGTERM; the process stops while the window is measured.
                    fleet.signal_term(a);
                }
                tokio::time::sleep(Duration::from_millis(4 * args.lease_duration_ms + 5000)).await;
                let gaps = resume_gaps(&fleet, "a", at)?;
                eprintln!("failover-java: run {}: {name} {stop_name}: gaps {gaps:?} ms", run + 1);
                for gap in gaps {
                    report.metric(format!("{name}_{stop_name}_resume"), gap, "ms");
                }
                producer.stop().await?;
                fleet.stop_all().await;
                let _ = kinesis.delete_stream().stream_name(&stream).send().await;
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    Ok(report)
}

/// Waits until both `a` and `b` delivered records in the last 2 s.
async fn wait_both(fleet: &Fleet, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let recent = now_us().saturating_sub(2_000_000);
        let deliveries = kcl_tests::verify::load_outputs(&fleet.outputs)?;
        let busy = |w: &str| deliveries.iter().any(|d| d.worker == w && d.t >= recent);
        if busy("a") && busy("b") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the second worker processed nothing within {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
