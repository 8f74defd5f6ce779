//! `leases`: lease coordination — a fleet of in-process workers sharing one lease store, in each renewal mode.
//!
//! For each mode it measures, in real time:
//! * time for all workers to converge to an even split,
//! * store writes and reads per lease-hour in steady state (renewals, heartbeats, polls, listings; no checkpoints),
//! * crash failover: a worker is aborted; time until all its leases are acquired by others,
//! * graceful handoff: a worker shuts down; time until all its leases are acquired by others.
//!
//! Output is one `name: value unit` line per figure. The store is anything implementing `LeaseStore` plus a closure
//! returning its request counts (see [`Backend`]): the in-memory store by default, or `DynamoLeaseStore` on a fresh
//! table per mode (deleted afterwards) with `--dynamodb-endpoint URL` (or `KCL_TEST_DYNAMODB_ENDPOINT`), where the
//! counts are DynamoDB data-plane requests (both tables in heartbeat mode).
//!
//! ```text
//! cargo run --release -p kcl-bench --bin bench -- leases --seconds 20
//! cargo run -q -p kcl-tests --bin emulators -- run -- \
//!     cargo run --release -p kcl-bench --bin bench -- leases --seconds 60   # DynamoDB Local (env var)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::ValueEnum;
use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{
    Lease, LeaseCoordinator, LeaseCoordinatorConfig, LeaseCoordinatorHandle, LeaseEvent, LeaseStore, MemoryLeaseStore,
    RenewalMode, RequestCounts,
};
use kcl_dynamo_lease::DynamoLeaseStore;
use tokio::time::Instant;

use crate::report::Report;

/// Options of `bench leases`.
#[derive(clap::Args, Debug, Clone)]
pub struct LeasesArgs {
    /// Length of the steady-state measurement window, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Number of leases (shards).
    #[arg(long, default_value_t = 100)]
    leases: usize,
    /// Number of workers.
    #[arg(long, default_value_t = 5)]
    workers: usize,
    /// Lease duration (Java KCL `failoverTimeMillis`), in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    lease_duration_ms: u64,
    /// Run only this mode (default: both).
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Run on `DynamoLeaseStore` against this DynamoDB endpoint (DynamoDB Local) instead of the in-memory store.
    #[arg(long, env = "KCL_TEST_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    PerLease,
    Heartbeat,
}

impl Mode {
    fn renewal_mode(self) -> RenewalMode {
        match self {
            Mode::PerLease => RenewalMode::PerLease,
            Mode::Heartbeat => RenewalMode::WorkerHeartbeat,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::PerLease => "per_lease",
            Mode::Heartbeat => "heartbeat",
        }
    }
}

/// A lease store under test and its request counter. Build a fresh (empty) one per run.
struct Backend {
    name: String,
    store: Arc<dyn LeaseStore>,
    counts: Arc<dyn Fn() -> RequestCounts + Send + Sync>,
}

fn memory_backend() -> Backend {
    let memory = Arc::new(MemoryLeaseStore::new());
    let counted = memory.clone();
    Backend { name: "memory".to_owned(), store: memory, counts: Arc::new(move || counted.request_counts()) }
}

/// `DynamoLeaseStore` on a fresh table (heartbeat table too in heartbeat mode) at a local endpoint, and a closure
/// that deletes the tables.
async fn dynamo_backend(endpoint: &str, mode: Mode) -> Result<(Backend, Cleanup), Box<dyn std::error::Error>> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // DynamoDB Local checks only that a signature is present.
        let credentials = aws_credential_types::Credentials::new("LOCAL", "LOCAL", None, None, "bench_leases");
        loader = loader.credentials_provider(credentials).region(aws_config::Region::new("us-east-1"));
    }
    let base = loader.load().await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&base).endpoint_url(endpoint).build(),
    );
    let nonce: u32 = rand::random();
    let table = format!("bench-leases-{}-{}-{nonce:08x}", mode.name().replace('_', "-"), std::process::id());
    let store =
        DynamoLeaseStore::builder(client.clone(), table).worker_heartbeats(mode == Mode::Heartbeat).build().await?;
    let store = Arc::new(store);
    let tables: Vec<String> =
        [Some(store.table_name()), store.heartbeat_table_name()].into_iter().flatten().map(str::to_owned).collect();
    let counted = store.clone();
    let backend = Backend { name: "dynamodb".to_owned(), store, counts: Arc::new(move || counted.request_counts()) };
    let cleanup = Cleanup { client: Some(client), tables };
    Ok((backend, cleanup))
}

/// Tables to delete after a run.
#[derive(Default)]
struct Cleanup {
    client: Option<aws_sdk_dynamodb::Client>,
    tables: Vec<String>,
}

impl Cleanup {
    async fn run(self) {
        let Some(client) = self.client else { return };
        for table in self.tables {
            if let Err(error) = client.delete_table().table_name(&table).send().await {
                eprintln!("could not delete table {table}: {}", aws_sdk_dynamodb::error::DisplayErrorContext(error));
            }
        }
    }
}

/// Who acquired which lease when, across the fleet.
#[derive(Default)]
struct Ledger {
    acquired: Mutex<HashMap<String, (String, Instant)>>,
}

impl Ledger {
    fn acquired_by_others_since(&self, leases: &[String], worker: &str, since: Instant) -> bool {
        let acquired = self.acquired.lock().unwrap_or_else(|p| p.into_inner());
        leases.iter().all(|l| acquired.get(l).is_some_and(|(w, at)| w != worker && *at >= since))
    }
}

/// A minimal pipeline stand-in: acknowledges handoffs with a checkpoint and `handoff_done`.
fn spawn_processor(
    handle: LeaseCoordinatorHandle,
    mut events: tokio::sync::mpsc::UnboundedReceiver<LeaseEvent>,
    ledger: Arc<Ledger>,
) {
    tokio::spawn(async move {
        let me = handle.worker_id().to_owned();
        while let Some(event) = events.recv().await {
            match event {
                LeaseEvent::Acquired { lease, .. } => {
                    let mut acquired = ledger.acquired.lock().unwrap_or_else(|p| p.into_inner());
                    acquired.insert(lease.lease_key, (me.clone(), Instant::now()));
                }
                LeaseEvent::HandoffRequested { lease_key } => {
                    let position = ExtendedSequenceNumber::TrimHorizon;
                    let _ = handle.checkpoint(&lease_key, &position).await;
                    let _ = handle.handoff_done(&lease_key).await;
                }
                _ => {}
            }
        }
    });
}

struct Fleet {
    handles: BTreeMap<String, LeaseCoordinatorHandle>,
    ledger: Arc<Ledger>,
    leases: usize,
}

impl Fleet {
    fn balanced(&self) -> bool {
        let counts: Vec<usize> = self.handles.values().map(|h| h.held_leases().len()).collect();
        let total: usize = counts.iter().sum();
        let (min, max) = (counts.iter().min(), counts.iter().max());
        total == self.leases && matches!((min, max), (Some(lo), Some(hi)) if hi - lo <= 1)
    }

    async fn wait(&self, timeout: Duration, mut done: impl FnMut(&Fleet) -> bool) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if done(self) {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }
}

fn print_time(report: &mut Report, name: &str, value: Option<Duration>) {
    match value {
        Some(d) => report.metric(name, d.as_secs_f64() * 1000.0, "ms"),
        None => report.note(format!("{name}: timeout")),
    }
}

/// Runs the scenario; returns the steady-state writes per lease-hour.
async fn one_run(
    report: &mut Report,
    backend: Backend,
    mode: Mode,
    args: &LeasesArgs,
) -> Result<f64, Box<dyn std::error::Error>> {
    let prefix = format!("{}.{}", backend.name, mode.name());
    let config = LeaseCoordinatorConfig::builder()
        .lease_duration(Duration::from_millis(args.lease_duration_ms))
        .renewal_mode(mode.renewal_mode())
        .build()?;
    let lease_keys: Vec<String> = (0..args.leases).map(|i| format!("shardId-{i:012}")).collect();
    for key in &lease_keys {
        backend
            .store
            .create_lease_if_not_exists(&Lease::new_for_shard(key, ExtendedSequenceNumber::TrimHorizon))
            .await?;
    }
    let created = (backend.counts)();
    let ledger = Arc::new(Ledger::default());
    let mut fleet = Fleet { handles: BTreeMap::new(), ledger: ledger.clone(), leases: args.leases };
    let started = Instant::now();
    for w in 1..=args.workers {
        let id = format!("worker-{w}");
        let (handle, events) = LeaseCoordinator::start(backend.store.clone(), id.clone(), config.clone())?;
        spawn_processor(handle.clone(), events, ledger.clone());
        fleet.handles.insert(id, handle);
    }
    let slow = config.lease_duration() * 30 + config.take_interval() * 4;
    print_time(report, &format!("{prefix}.time_to_converge"), fleet.wait(slow, Fleet::balanced).await);
    let converged = (backend.counts)();
    report.metric(format!("{prefix}.writes_to_converge"), (converged.writes - created.writes) as f64, "writes");
    report.metric(format!("{prefix}.renewal_interval"), config.renewal_interval().as_secs_f64() * 1000.0, "ms");

    // Steady state.
    let before = (backend.counts)();
    let window = Duration::from_secs(args.seconds);
    tokio::time::sleep(window).await;
    let after = (backend.counts)();
    let lease_hours = args.leases as f64 * window.as_secs_f64() / 3600.0;
    let writes_per_lease_hour = (after.writes - before.writes) as f64 / lease_hours;
    report.metric(format!("{prefix}.writes_per_lease_hour"), writes_per_lease_hour, "writes");
    report.metric(format!("{prefix}.reads_per_lease_hour"), (after.reads - before.reads) as f64 / lease_hours, "reads");
    report.metric(format!("{prefix}.balanced_after_window"), f64::from(u8::from(fleet.balanced())), "bool");

    // Crash failover: abort the last worker; its leases must be acquired elsewhere.
    let (victim, handle) = fleet.handles.pop_last().ok_or("no workers")?;
    let orphans: Vec<String> = handle.held_leases().into_iter().map(|l| l.lease_key).collect();
    let crashed_at = Instant::now();
    handle.abort();
    let failover = fleet.wait(slow, |f| f.ledger.acquired_by_others_since(&orphans, &victim, crashed_at)).await;
    print_time(report, &format!("{prefix}.crash_failover"), failover);
    fleet.wait(slow, Fleet::balanced).await;

    // Graceful handoff: shut the next worker down; its leases must be acquired elsewhere.
    let (leaving, handle) = fleet.handles.pop_last().ok_or("no workers")?;
    let handed: Vec<String> = handle.held_leases().into_iter().map(|l| l.lease_key).collect();
    let stopped_at = Instant::now();
    handle.shutdown().await?;
    let handoff = fleet.wait(slow, |f| f.ledger.acquired_by_others_since(&handed, &leaving, stopped_at)).await;
    print_time(report, &format!("{prefix}.graceful_handoff"), handoff);
    print_time(report, &format!("{prefix}.total_run"), Some(started.elapsed()));

    for handle in fleet.handles.values() {
        handle.shutdown().await?;
    }
    Ok(writes_per_lease_hour)
}

pub async fn run(args: LeasesArgs) -> Result<Report, Box<dyn std::error::Error>> {
    let mut report = Report::new("leases");
    report.param("leases", args.leases as u64);
    report.param("workers", args.workers as u64);
    report.param("lease_duration_ms", args.lease_duration_ms);
    report.param("window_seconds", args.seconds);
    report.param("store", if args.dynamodb_endpoint.is_some() { "dynamodb-local" } else { "memory" });
    // Java KCL renews every lease every failoverTimeMillis / 3 − 25 ms.
    let kcl_interval = (args.lease_duration_ms / 3).saturating_sub(25).max(1) as f64 / 1000.0;
    report.metric("java_kcl.renewal_writes_per_lease_hour", 3600.0 / kcl_interval, "writes");
    let modes = match args.mode {
        Some(mode) => vec![mode],
        None => vec![Mode::PerLease, Mode::Heartbeat],
    };
    let mut writes = Vec::new();
    for mode in modes {
        // Another store plugs in here: any `Backend { store, counts }`, fresh (empty) for each run.
        let (backend, cleanup) = match &args.dynamodb_endpoint {
            Some(endpoint) => dynamo_backend(endpoint, mode).await?,
            None => (memory_backend(), Cleanup::default()),
        };
        let name = backend.name.clone();
        eprintln!("leases: {name}, {}", mode.name());
        let result = one_run(&mut report, backend, mode, &args).await;
        cleanup.run().await;
        writes.push((name, mode, result?));
    }
    if let [(name, Mode::PerLease, per_lease), (_, Mode::Heartbeat, heartbeat)] = writes.as_slice() {
        report.metric(
            format!("{name}.write_ratio_per_lease_over_heartbeat"),
            per_lease / heartbeat.max(f64::MIN_POSITIVE),
            "x",
        );
    }
    Ok(report)
}
