//! Java KCL beside kcl-rs on the same emulators:
//!
//! * [`java_contender`]: the Java KCL peer (`interop/java-kcl`, `--expect N` mode: counts, checkpoints every batch,
//!   exits after N records) as a contender of `bench e2e` (`--contenders bare,kcl-rs,java-kcl2`), so the bare SDK
//!   loop, kcl-rs and Java KCL consume the same pre-filled stream interleaved, round by round.
//! * `failover-java`: two workers of one kind on a 4-shard stream with a producer running; one is killed (`kill -9`)
//!   or stopped (SIGTERM); the figure is, per shard it was processing, the time until the survivor delivered a
//!   record of that shard. kcl-rs (`verify-worker`) and Java KCL runs alternate.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use kcl_tests::interop::{Fleet, JavaBuild, Kind, Producer, Spec, java_peer, wait_deliveries};

use crate::contender::Contender;
use crate::emulator::{self, EndpointArgs};
use crate::report::Report;

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

/// The Java KCL peer as an `e2e` contender (`java-kcl2` / `java-kcl3`): consumes `{stream}` with lease table `{table}`
/// until `{expect}` records were delivered, checkpointing every batch; it prints `{"milestone":"first_record"}` at its
/// first record and `{"records":N,...}` when done.
pub fn java_contender(name: &str, build: JavaBuild, timeout_secs: u64) -> Result<Contender, String> {
    let classpath = java_peer(build)?;
    let mut words: Vec<String> = ["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", classpath.as_str()]
        .into_iter()
        .chain(["dev.kclrs.interop.Peer", "--stream", "{stream}", "--app", "{table}", "--worker-id", "bench"])
        .chain(["--kinesis-endpoint", "{kinesis_endpoint}", "--dynamodb-endpoint", "{dynamodb_endpoint}"])
        .chain(["--expect", "{expect}", "--timeout-secs"])
        .map(str::to_owned)
        .collect();
    words.push(timeout_secs.to_string());
    if matches!(build, JavaBuild::Kcl3) {
        words.extend(["--client-version".to_owned(), "3x".to_owned()]);
    }
    Ok(Contender { name: name.to_owned(), words })
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

/// Now on the evidence clock, which the workers' output lines use.
fn now_us() -> u64 {
    kcl_tests::verify::evidence_now_us()
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
