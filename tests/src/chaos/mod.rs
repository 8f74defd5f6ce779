//! The chaos suite's machinery: a 4-shard stream on kinesis-mock, a fleet of `verify-worker` processes reaching the
//! emulators through fault-injecting proxies, a producer, and a seeded scheduler that kills, stops, pauses and
//! restarts workers, reshards, and switches faults on and off. After the producer stops and the fleet drains, the
//! [verifier](crate::verify) judges the evidence. [`run`] does it all and returns the report and a summary.
//!
//! Settings come from the environment ([`ChaosConfig::from_env`]), so the CI-sized test and a long run outside CI
//! are the same test:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KCL_CHAOS_SEED` | time-based (printed) | seeds the scheduler, the producer and the proxies (hex) |
//! | `KCL_CHAOS_DURATION_SECS` | 120 | how long the producer runs and chaos goes on |
//! | `KCL_CHAOS_WORKERS` | 4 | worker processes |
//! | `KCL_CHAOS_LEASE_MS` | 4000 | the workers' lease duration |
//! | `KCL_CHAOS_RENEWAL` | drawn from the seed (`tests/tests/chaos.rs`: both, one after the other) | `per-lease` or `heartbeat` |
//! | `KCL_CHAOS_RATE` | min(50, 15000 / duration) | user records put per second (keeps shards small for kinesis-mock) |
//! | `KCL_CHAOS_KEEP` | unset | keep the run's files (they are kept anyway when the run fails) |
//! | `KCL_CHAOS_WORKER_LOG` | `info,aws=warn` | the workers' `RUST_LOG` |
//! | `KCL_CHAOS_SKEW` | on | `off`: no skewed clocks. On: worker `w1`'s wall clock runs 5 s ahead and `w2`'s 5 s behind (libfaketime; `KCL_FAKETIME_LIB` overrides its location); the run fails if the skew did not apply |
//! | `KCL_CHAOS_SLOW` | on | `off`: no slow processor. On: every 10th batch of worker `w0`'s processors waits 1.5 lease durations before it is written, so the lease can move meanwhile |
//! | `KCL_CHAOS_STORE` | `dynamodb` | `postgres`: leases in PostgreSQL and every record committed to a sink with its checkpoint; the sink must hold each put record exactly once (see `postgres.rs`) |

mod binary;
mod clocks;
mod fleet;
mod postgres;
mod producer;
mod reshard;
mod scheduler;
mod summary;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::LeaseStore;
use kcl_dynamo_lease::DynamoLeaseStore;
use tokio::time::Instant;

pub use binary::{kcl_admin, verify_worker};
pub use fleet::{Fleet, SkewedClocks, SlotState, TermExit, WorkerSpec};
pub use producer::produce;
pub use reshard::{OpenShard, open_shards, wait_active};
pub use scheduler::{ChaosLog, now_us};

use crate::proxy::{FaultProxy, Flavor, SplitMix64};
use crate::verify::{self, History, Put, Report};
use crate::{emulators, unique_name};

/// How long the fleet may take to process everything after the producer stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);
/// How long an injected delay holds an answer back: beyond the workers' 3 s SDK attempt timeout.
const FAULT_DELAY: Duration = Duration::from_secs(4);

/// The settings of one chaos run.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Seeds everything random.
    pub seed: u64,
    /// How long the producer runs and chaos goes on.
    pub duration: Duration,
    /// Worker processes.
    pub workers: usize,
    /// The workers' lease duration.
    pub lease_ms: u64,
    /// `per-lease` or `heartbeat`.
    pub renewal: &'static str,
    /// User records put per second.
    pub rate: u64,
    /// Keep the run's files even when it passes.
    pub keep: bool,
    /// Where the leases live.
    pub store: ChaosStore,
    /// Whether worker `w0` has a slow processor (see [`SLOW_EVERY`]).
    pub slow_processor: bool,
    /// Whether workers `w1` and `w2` run with skewed wall clocks (±5 s).
    pub skewed_clocks: bool,
}

/// With [`ChaosConfig::slow_processor`], every this many batches of a `w0` processor wait 1.5 lease durations.
pub const SLOW_EVERY: u64 = 10;

/// Where a chaos run keeps its leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChaosStore {
    /// DynamoDB Local, behind a fault-injecting proxy.
    DynamoDb,
    /// PostgreSQL (no proxy: kills, pauses and reshards only), with the transactional sink.
    Postgres,
}

impl ChaosConfig {
    /// Reads the settings (see the module documentation).
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str, default: u64| -> Result<u64, String> {
            var(name).map_or(Ok(default), |v| {
                let v = v.trim_start_matches("0x");
                let radix = if name.ends_with("SEED") { 16 } else { 10 };
                u64::from_str_radix(v, radix).map_err(|e| format!("{name}={v}: {e}"))
            })
        };
        let seed = number("KCL_CHAOS_SEED", u64::from(now_us() as u32) ^ u64::from(std::process::id()) << 32)?;
        let duration = number("KCL_CHAOS_DURATION_SECS", 120)?.max(10);
        let renewal = match var("KCL_CHAOS_RENEWAL").as_deref() {
            Some("per-lease") => "per-lease",
            Some("heartbeat") => "heartbeat",
            Some(other) => return Err(format!("KCL_CHAOS_RENEWAL={other}: use per-lease or heartbeat")),
            None if SplitMix64(seed).next().is_multiple_of(2) => "per-lease",
            None => "heartbeat",
        };
        Ok(Self {
            seed,
            duration: Duration::from_secs(duration),
            workers: number("KCL_CHAOS_WORKERS", 4)?.clamp(2, 16) as usize,
            lease_ms: number("KCL_CHAOS_LEASE_MS", 4000)?,
            renewal,
            rate: number("KCL_CHAOS_RATE", (15_000 / duration).clamp(5, 50))?.max(1),
            keep: var("KCL_CHAOS_KEEP").is_some(),
            store: match var("KCL_CHAOS_STORE").as_deref() {
                None | Some("dynamodb") => ChaosStore::DynamoDb,
                Some("postgres") => ChaosStore::Postgres,
                Some(other) => return Err(format!("KCL_CHAOS_STORE={other}: use dynamodb or postgres")),
            },
            slow_processor: match var("KCL_CHAOS_SLOW").as_deref() {
                None | Some("on") => true,
                Some("off") => false,
                Some(other) => return Err(format!("KCL_CHAOS_SLOW={other}: use on or off")),
            },
            skewed_clocks: match var("KCL_CHAOS_SKEW").as_deref() {
                None | Some("on") => true,
                Some("off") => false,
                Some(other) => return Err(format!("KCL_CHAOS_SKEW={other}: use on or off")),
            },
        })
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct ChaosOutcome {
    /// The verifier's report.
    pub report: Report,
    /// Problems outside the verifier's scope: graceful stops that did not exit 0, a drain that did not finish.
    pub problems: Vec<String>,
    /// The human-readable summary.
    pub summary: String,
    /// Where the run's files are (deleted when it passed, unless kept).
    pub dir: PathBuf,
}

impl ChaosOutcome {
    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.report.passed() && self.problems.is_empty()
    }

    /// The tests' verdict: prints the summary straight to stderr (past the test harness's capture: it belongs in
    /// every CI log), then fails unless the run passed and exercised what it claims to. `rerun` is the environment
    /// that repeats the run, for the failure message.
    ///
    /// # Panics
    /// When the run failed, or put no records, or started no more processors than there are workers.
    pub fn assert_passed(&self, config: &ChaosConfig, rerun: &str) {
        use std::io::Write as _;
        let _ = std::io::stderr().write_all(self.summary.as_bytes());
        let seed = config.seed;
        assert!(
            self.passed(),
            "chaos run failed (seed {seed:#x}; re-run with {rerun}); files kept in {}\n{}",
            self.dir.display(),
            self.summary
        );
        assert!(self.report.records_put > 0 && self.report.epochs > config.workers, "{}", self.summary);
        assert!(!config.slow_processor || self.report.slow_batches > 0, "no batch was slow\n{}", self.summary);
    }
}

/// `target/chaos-runs/<name>`, next to the test executable's profile directory.
fn run_dir(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let target = exe.ancestors().nth(3).ok_or("unexpected test executable location")?;
    let dir = target.join("chaos-runs").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Runs the whole suite once.
pub async fn run(config: ChaosConfig) -> Result<ChaosOutcome, String> {
    let started = Instant::now();
    let binary = verify_worker()?;
    let skewed_clocks = config.skewed_clocks.then(|| clocks::plan(config.workers)).transpose()?;
    let kinesis = emulators().kinesis_client().await;
    let dynamodb = emulators().dynamodb_client().await;
    let stream = unique_name("chaos");
    let dir = run_dir(&stream)?;
    eprintln!("chaos: seed {:#x}, {config:?}, files in {}", config.seed, dir.display());
    kinesis.create_stream().stream_name(&stream).shard_count(4).send().await.map_err(|e| e.to_string())?;
    reshard::wait_active(&kinesis, &stream).await?;
    let heartbeat = config.renewal == "heartbeat";
    let postgres = match config.store {
        ChaosStore::Postgres => Some(postgres::PostgresSide::open(&stream).await?),
        ChaosStore::DynamoDb => None,
    };
    let store: std::sync::Arc<dyn LeaseStore> = match &postgres {
        Some(side) => side.store.clone(),
        None => std::sync::Arc::new(
            DynamoLeaseStore::builder(dynamodb.clone(), &stream)
                .worker_heartbeats(heartbeat)
                .build()
                .await
                .map_err(|e| e.to_string())?,
        ),
    };
    let kinesis_proxy = FaultProxy::start(emulators().kinesis_endpoint(), Flavor::Kinesis, config.seed ^ 1)
        .await
        .map_err(|e| e.to_string())?;
    let dynamo_proxy = FaultProxy::start(emulators().dynamodb_endpoint(), Flavor::DynamoDb, config.seed ^ 2)
        .await
        .map_err(|e| e.to_string())?;
    let mut fleet = Fleet::new(
        WorkerSpec {
            binary,
            stream: stream.clone(),
            app: stream.clone(),
            kinesis_endpoint: kinesis_proxy.endpoint(),
            dynamodb_endpoint: dynamo_proxy.endpoint(),
            lease_duration_ms: config.lease_ms,
            renewal: config.renewal,
            dir: dir.clone(),
            postgres: postgres.as_ref().map(|side| (side.url.clone(), side.table.clone())),
            slow_batch: config.slow_processor.then(|| (SLOW_EVERY, config.lease_ms * 3 / 2)),
            skewed_clocks: skewed_clocks.clone(),
        },
        config.workers,
    );
    for slot in 0..fleet.len() {
        fleet.start(slot).await?;
    }

    let until = Instant::now() + config.duration;
    let producer = {
        let (kinesis, stream, seed, rate) = (kinesis.clone(), stream.clone(), config.seed, config.rate);
        tokio::spawn(async move { producer::produce(&kinesis, &stream, seed, rate, until).await })
    };
    let log = scheduler::Scheduler {
        fleet: &mut fleet,
        proxies: vec![kinesis_proxy.control().as_ref(), dynamo_proxy.control().as_ref()],
        kinesis: &kinesis,
        stream: &stream,
        lease: Duration::from_millis(config.lease_ms),
        delay: FAULT_DELAY,
        rng: SplitMix64(config.seed),
    }
    .run(until)
    .await?;
    let puts = producer.await.map_err(|e| e.to_string())??;
    write_put_log(&dir.join("puts.jsonl"), &puts)?;

    let mut problems = Vec::new();
    let drained = drain(store.as_ref(), &kinesis, &stream, &puts).await;
    // From the producer's stop: the wind-down above (faults off, every worker running again) is part of it.
    let drain_time = until.elapsed();
    if let Err(lagging) = &drained {
        problems.push(format!("the fleet did not finish within {DRAIN_TIMEOUT:?}: {lagging}"));
    }
    fleet.stop_all().await;
    for exit in &fleet.term_exits {
        if exit.code != Some(0) {
            problems
                .push(format!("{} did not exit 0 after SIGTERM: {:?} after {:?}", exit.worker, exit.code, exit.took));
        }
    }

    if let Some(side) = &postgres {
        match side.sink_problems(&puts).await {
            Ok((rows, sink)) => {
                eprintln!("chaos: PostgreSQL sink holds {rows} rows for {} records put", puts.len());
                problems.extend(sink.into_iter().map(|p| format!("sink: {p}")));
            }
            Err(error) => problems.push(format!("cannot read the sink: {error}")),
        }
    }
    let mut skews = Vec::new();
    if let Some(plan) = &skewed_clocks {
        let measured = clocks::measured(&fleet.journals)?;
        let ids: Vec<String> = (0..fleet.len()).map(|slot| fleet.id(slot).to_owned()).collect();
        problems.extend(clocks::problems(plan, &ids, &measured));
        for (slot, id) in ids.iter().enumerate().filter(|(slot, _)| plan.of(*slot) != 0) {
            skews.push((id.clone(), plan.of(slot), measured.get(id).cloned().unwrap_or_default()));
        }
    }
    let history = History {
        deliveries: verify::load_outputs(&fleet.outputs)?,
        journal: verify::load_journal(&fleet.journals)?,
        leases: store.list_all_leases().await.map_err(|e| e.to_string())?,
        shards: verify::fetch_shards(&kinesis, &stream).await?,
        puts,
    };
    verify::save_end_state(&dir, &history.leases, &history.shards)?;
    let report = verify::verify(&history);
    let summary = summary::render(&summary::Inputs {
        config: &config,
        report: &report,
        history: &history,
        log: &log,
        fleet: &fleet,
        proxies: [kinesis_proxy.control().stats(), dynamo_proxy.control().stats()],
        drain_time,
        wall: started.elapsed(),
        problems: &problems,
        skews: &skews,
    });
    std::fs::write(dir.join("summary.txt"), &summary).map_err(|e| e.to_string())?;

    let outcome = ChaosOutcome { report, problems, summary, dir: dir.clone() };
    let _ = kinesis.delete_stream().stream_name(&stream).send().await;
    let _ = dynamodb.delete_table().table_name(&stream).send().await;
    if let Some(side) = &postgres
        && outcome.passed()
    {
        side.cleanup().await;
    }
    if heartbeat {
        let table = format!("{stream}{}", kcl_dynamo_lease::HEARTBEAT_TABLE_SUFFIX);
        let _ = dynamodb.delete_table().table_name(table).send().await;
    }
    if outcome.passed() && !config.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(outcome)
}

fn write_put_log(path: &Path, puts: &[Put]) -> Result<(), String> {
    let mut text = String::new();
    for put in puts {
        text.push_str(&verify::write_put_line(put));
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Waits until every open shard is checkpointed at its last put record and every closed one at `SHARD_END` (or
/// its finished lease is gone). Returns the shards still lagging on timeout.
async fn drain(
    store: &dyn LeaseStore,
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    puts: &[Put],
) -> Result<(), String> {
    let mut last: std::collections::HashMap<&str, ExtendedSequenceNumber> = std::collections::HashMap::new();
    for put in puts {
        let entry = last.entry(put.shard.as_str()).or_insert_with(|| put.position());
        *entry = put.position().max(entry.clone());
    }
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let lagging = match (store.list_all_leases().await, verify::fetch_shards(kinesis, stream).await) {
            (Ok(leases), Ok(shards)) => shards
                .iter()
                .filter_map(|shard| {
                    let lease = leases.iter().find(|l| l.shard_id == shard.shard);
                    let target = if shard.closed {
                        ExtendedSequenceNumber::ShardEnd
                    } else {
                        last.get(shard.shard.as_str()).cloned().unwrap_or(ExtendedSequenceNumber::TrimHorizon)
                    };
                    let done = match lease {
                        Some(lease) => lease.checkpoint == target,
                        None => shard.closed,
                    };
                    (!done).then(|| {
                        let at = lease.map_or("no lease".to_owned(), |l| l.checkpoint.to_string());
                        format!("{} at {at} (target {target})", shard.shard)
                    })
                })
                .collect::<Vec<_>>(),
            (Err(error), _) => vec![error.to_string()],
            (_, Err(error)) => vec![error],
        };
        if lagging.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(lagging.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
