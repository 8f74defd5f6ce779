//! Consumer-pipeline benchmarks. Each scenario prints `name: value unit` lines (settings as `#` comments), or one
//! JSON object with `--json`; progress goes to stderr.
//!
//! ```text
//! cargo run --release -p kcl-bench --bin bench -- overhead [--json]   # in memory, no emulators
//! cargo run -q -p kcl-tests --bin emulators -- run -- \
//!     cargo run --release -p kcl-bench --bin bench -- latency [--json]
//! cargo run -q -p kcl-tests --bin emulators -- run -- \
//!     cargo run --release -p kcl-bench --bin bench -- e2e [--json]
//! ```
//!
//! * `overhead` — framework overhead: one worker consumes a pre-filled in-memory stream (8 shards, and 1), plain
//!   records and KPL aggregates; records/s from the first delivery to the last.
//! * `latency` — put → process latency p50/p99/max on kinesis-mock with polling (per `idle_time_between_reads`) and
//!   with enhanced fan-out; by default against a private kinesis-mock over TLS + HTTP/2 (`--transport plain` uses
//!   the given endpoint).
//! * `parallel` — one shard, 100 partition keys, a processor sleeping 5 ms per batch: throughput with parallelism
//!   10 vs 1 (`cargo run --release -p kcl-bench --bin bench -- parallel`).
//! * `leases` — lease coordination on the memory store or DynamoDB Local (`KCL_TEST_DYNAMODB_ENDPOINT`): requests per
//!   lease-hour in both renewal modes, convergence, crash failover and graceful handoff times.
//! * `scale` — one worker holding 1,000 leases on the in-memory stream and store: RSS and CPU idle and under load.
//! * `decode` — CPU per record of kcl-rs's own `GetRecords` decoders (JSON; CBOR with byte-string and base64-text
//!   `Data`), in process.
//! * `e2e` — a pre-filled 4-shard kinesis-mock stream consumed by child processes, interleaved over rounds: a bare
//!   aws-sdk-kinesis `GetRecords` loop (the baseline) and a kcl-rs worker with DynamoDB leases (plus any
//!   `--contender`): wall time, CPU per record, peak RSS, time to first record, ratios to the baseline.
//!
//! `BENCHMARKS.md` at the repository root has the figures measured on the project's machines and the goals.

// The scenarios live in `bench/` next to this file (a crate root looks for modules beside itself).
#[path = "bench/bare_loop.rs"]
mod bare_loop;
#[path = "bench/checkpoint_writes.rs"]
mod checkpoint_writes;
#[path = "bench/contender.rs"]
mod contender;
#[path = "bench/decode.rs"]
mod decode;
#[path = "bench/e2e.rs"]
mod e2e;
#[path = "bench/emulator.rs"]
mod emulator;
#[path = "bench/java.rs"]
mod java;
#[path = "bench/latency.rs"]
mod latency;
#[path = "bench/leases.rs"]
mod leases;
#[path = "bench/milestone.rs"]
mod milestone;
#[path = "bench/overhead.rs"]
mod overhead;
#[path = "bench/parallel.rs"]
mod parallel;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/scale.rs"]
mod scale;

use std::time::Instant;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(about = "kcl-rs consumer-pipeline benchmarks")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Print one JSON object instead of `name: value unit` lines.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Framework overhead on the in-memory stream (no emulators needed).
    Overhead(overhead::OverheadArgs),
    /// Put → process latency with polling and with fan-out on kinesis-mock (needs the emulators).
    Latency(latency::LatencyArgs),
    /// End-to-end consumption of a pre-filled stream by a separate process (needs the emulators).
    E2e(e2e::E2eArgs),
    /// Crash failover and graceful handoff times, kcl-rs and Java KCL on the same workload (needs the emulators).
    FailoverJava(java::FailoverJavaArgs),
    /// CPU per record of kcl-rs's own GetRecords decoders, JSON and CBOR (in process, no emulators).
    Decode(decode::DecodeArgs),
    /// Per-key parallelism within one shard for a slow processor (in memory, no emulators).
    Parallel(parallel::ParallelArgs),
    /// Lease coordination: store requests per lease-hour in both renewal modes, convergence, failover, handoff.
    Leases(leases::LeasesArgs),
    /// One worker holding 1,000 leases: RSS and CPU while idle and under load (in memory, no emulators).
    Scale(scale::ScaleArgs),
    /// Checkpoint writes per million records, after every batch and at an interval (in memory, paused clock).
    CheckpointWrites(checkpoint_writes::CheckpointWritesArgs),
    /// The kcl-rs consumer process of `e2e` (started by it).
    #[command(hide = true)]
    E2eConsume(e2e::ConsumeArgs),
    /// The bare SDK read loop of `e2e`, its baseline (started by it).
    #[command(hide = true)]
    E2eBare(bare_loop::BareArgs),
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let cli = Cli::parse();
    let report = match cli.scenario {
        Scenario::Overhead(args) => overhead::run(args).await,
        Scenario::Latency(args) => latency::run(args).await,
        Scenario::E2e(args) => e2e::run(args).await,
        Scenario::FailoverJava(args) => java::failover(args).await,
        Scenario::Parallel(args) => parallel::run(args).await,
        Scenario::Decode(args) => decode::run(args).await,
        Scenario::Leases(args) => leases::run(args).await,
        Scenario::Scale(args) => scale::run(args).await,
        Scenario::CheckpointWrites(args) => checkpoint_writes::run(args).await,
        Scenario::E2eConsume(args) => match e2e::consume(args, started).await {
            Ok(()) => return,
            Err(error) => {
                eprintln!("bench e2e-consume: {error}");
                std::process::exit(1);
            }
        },
        Scenario::E2eBare(args) => match bare_loop::run(args, started).await {
            Ok(()) => return,
            Err(error) => {
                eprintln!("bench e2e-bare: {error}");
                std::process::exit(1);
            }
        },
    };
    match report {
        Ok(report) => report.print(cli.json),
        Err(error) => {
            eprintln!("bench: {error}");
            std::process::exit(1);
        }
    }
}
