//! `verify-worker`: a real kcl-rs worker process whose only job is to leave evidence. It consumes a stream with
//! DynamoDB leases and appends one JSON line per processed user record to `--output`
//! (`{"worker","shard","seq","sub","pk","data_b64","epoch","t"}`), written and fsynced BEFORE the checkpoint that
//! covers it. With `--journal` it also journals its lifecycle and every lease-table write (see `journal.rs`), which
//! the chaos verifier (`kcl_tests::verify`) needs to prove that no checkpoint from a worker that had lost its lease
//! was accepted.
//!
//! SIGTERM or SIGINT = graceful shutdown (final checkpoints, leases handed to live workers), exit 0; SIGKILL is a
//! crash. Exit 1 when the worker fails, 2 on bad arguments.
//!
//! ```text
//! verify-worker --stream S --app A --worker-id W --output FILE [--journal FILE]
//!   [--kinesis-endpoint URL] [--dynamodb-endpoint URL] [--retrieval polling|fanout]
//!   [--lease-duration-ms N] [--renewal per-lease|heartbeat]
//!   [--postgres URL --postgres-table T]
//! ```
//!
//! With `--postgres`, the leases live in PostgreSQL table `T` (kcl-postgres-lease) instead of DynamoDB, and every
//! processed record is also inserted into `T_sink` (`seq`, `sub`, `worker`) in the transaction that carries its
//! checkpoint (`commit_with_checkpoint`): the chaos suite's PostgreSQL mode checks that the sink holds every put
//! record exactly once.
//!
//! The lease table is named after the application (`--app`), as in Java KCL. Shards without a checkpoint start at
//! `TRIM_HORIZON`, so every record in the stream is processed.

mod journal;
mod processor;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use clap::{Parser, ValueEnum};
use kcl_core::lease::{LeaseCoordinatorConfig, LeaseStore, RenewalMode};
use kcl_core::retrieve::PollingConfig;
use kcl_core::{InitialPosition, Retrieval, Worker};
use kcl_dynamo_lease::DynamoLeaseStore;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use journal::{Journal, JournalingStore};
use processor::{Factory, Output, Sink};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug)]
#[command(about = "A kcl-rs worker that writes every processed record to a file before checkpointing it")]
struct Args {
    /// The stream to consume.
    #[arg(long)]
    stream: String,
    /// The application name; also the lease table's name.
    #[arg(long)]
    app: String,
    /// This worker's id (a restarted process keeping its id adopts its predecessor's leases).
    #[arg(long)]
    worker_id: String,
    /// Where to append one JSON line per processed user record.
    #[arg(long)]
    output: PathBuf,
    /// Where to append the lifecycle and lease-write journal (none when absent).
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Kinesis endpoint (e.g. kinesis-mock, or a fault-injecting proxy in front of it).
    #[arg(long)]
    kinesis_endpoint: Option<String>,
    /// DynamoDB endpoint (e.g. DynamoDB Local, or a proxy in front of it).
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// How to read shards.
    #[arg(long, value_enum, default_value_t = RetrievalArg::Polling)]
    retrieval: RetrievalArg,
    /// Lease duration (Java KCL `failoverTimeMillis`).
    #[arg(long, default_value_t = 10_000)]
    lease_duration_ms: u64,
    /// How often the taker lists the lease table (Java KCL `takerIntervalMillis`); default 2 × (lease duration + 25 ms).
    /// A shorter interval finds a dead worker's leases sooner, at one table listing per interval.
    #[arg(long)]
    take_interval_ms: Option<u64>,
    /// Lease renewal mode.
    #[arg(long, value_enum, default_value_t = RenewalArg::PerLease)]
    renewal: RenewalArg,
    /// AWS region (default: from the environment; us-east-1 when an endpoint is given).
    #[arg(long)]
    region: Option<String>,
    /// Timeout of one attempt of a polling or DynamoDB call (the SDK retries after it).
    #[arg(long, default_value_t = 3_000)]
    sdk_attempt_timeout_ms: u64,
    /// PostgreSQL URL: leases in PostgreSQL, records committed to a sink table with their checkpoints.
    #[arg(long, requires = "postgres_table")]
    postgres: Option<String>,
    /// The PostgreSQL lease table (the sink is `<table>_sink`); letters, digits and `_`.
    #[arg(long, requires = "postgres")]
    postgres_table: Option<String>,
    /// Longest wait between reads of a caught-up shard (polling).
    #[arg(long, default_value_t = 500)]
    idle_ms: u64,
    /// Every Nth batch of each processor first waits `--slow-ms` (a processor slower than its lease; 0: never).
    #[arg(long, default_value_t = 0)]
    slow_every: u64,
    /// How long a slow batch waits.
    #[arg(long, default_value_t = 0)]
    slow_ms: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RetrievalArg {
    Polling,
    #[value(name = "fanout")]
    FanOut,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RenewalArg {
    PerLease,
    Heartbeat,
}

/// How long start-up keeps retrying a lease table that cannot be reached (faults may be injected at that moment).
const STARTUP_RETRY: Duration = Duration::from_secs(120);

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,aws=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("verify-worker: cannot start the runtime: {error}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async {
        match run(args).await {
            Ok(()) => 0,
            Err(error) => {
                tracing::error!(%error, "verify-worker failed");
                1
            }
        }
    });
    std::process::exit(code);
}

async fn run(args: Args) -> Result<(), BoxError> {
    let journal = Arc::new(Journal::open(args.journal.as_deref())?);
    let pid = std::process::id();
    journal.event(json!({"ev": "start", "worker": args.worker_id, "pid": pid, "wall_us": journal::wall_us()}));
    let result = run_worker(&args, journal.clone()).await;
    let error = result.as_ref().err().map(ToString::to_string);
    journal.event(json!({"ev": "exit", "worker": args.worker_id, "pid": pid, "ok": result.is_ok(), "error": error}));
    result
}

async fn run_worker(args: &Args, journal: Arc<Journal>) -> Result<(), BoxError> {
    // Signals first: a SIGTERM during start-up is a graceful stop too, never the default "killed by signal".
    let mut stop = stop_signal()?;
    let (kinesis, dynamodb) = clients(args).await;
    let heartbeat = matches!(args.renewal, RenewalArg::Heartbeat);
    let (store, sink): (Arc<dyn LeaseStore>, Option<Sink>) = match (&args.postgres, &args.postgres_table) {
        (Some(url), Some(table)) => {
            let store = tokio::select! {
                store = build_postgres_store(url, table) => Arc::new(store?),
                _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
            };
            let sink = Sink { url: url.clone(), table: format!("{table}_sink"), store: store.clone() };
            (store, Some(sink))
        }
        _ => {
            let store = tokio::select! {
                store = build_store(dynamodb, &args.app, heartbeat) => store?,
                _ = stop.wait_for(|stopped| *stopped) => return Ok(()),
            };
            (Arc::new(store), None)
        }
    };
    let mut lease_config = LeaseCoordinatorConfig::builder()
        .lease_duration(Duration::from_millis(args.lease_duration_ms))
        .renewal_mode(if heartbeat { RenewalMode::WorkerHeartbeat } else { RenewalMode::PerLease });
    if let Some(ms) = args.take_interval_ms {
        lease_config = lease_config.take_interval(Duration::from_millis(ms));
    }
    let lease_config = lease_config.build()?;
    let retrieval = match args.retrieval {
        RetrievalArg::Polling => Retrieval::Polling(
            PollingConfig::default().with_idle_time_between_reads(Duration::from_millis(args.idle_ms)),
        ),
        RetrievalArg::FanOut => Retrieval::fan_out(),
    };
    let factory = Factory {
        worker: Arc::from(args.worker_id.as_str()),
        output: Arc::new(Output::open(&args.output)?),
        journal: journal.clone(),
        next_epoch: AtomicU64::new(0),
        sink: sink.map(Arc::new),
        slow: (args.slow_every > 0).then(|| (args.slow_every, Duration::from_millis(args.slow_ms))),
    };
    let worker = Worker::builder(args.stream.as_str(), args.app.as_str())
        .worker_id(args.worker_id.as_str())
        .kinesis_client(kinesis)
        .retrieval(retrieval)
        .lease_store(Arc::new(JournalingStore::new(store, journal)))
        .lease_config(lease_config)
        .initial_position(InitialPosition::TrimHorizon)
        .processor_factory(factory)
        .build()?;
    let shutdown = worker.shutdown_handle();
    tokio::spawn(async move {
        if stop.wait_for(|stopped| *stopped).await.is_ok() {
            shutdown.shutdown();
        }
    });
    worker.run().await?;
    tracing::info!("shut down");
    Ok(())
}

/// Becomes `true` at the first SIGTERM or SIGINT.
fn stop_signal() -> std::io::Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stop signal: shutting down gracefully");
        tx.send_replace(true);
        // Keep the sender alive so that receivers see `true`, not a closed channel.
        std::future::pending::<()>().await;
    });
    Ok(rx)
}

/// SDK clients: the standard configuration chain, with dummy credentials when only local endpoints are used, and
/// an attempt timeout so that a stalled connection turns into a retry instead of a hang.
async fn clients(args: &Args) -> (aws_sdk_kinesis::Client, aws_sdk_dynamodb::Client) {
    let local = args.kinesis_endpoint.is_some() || args.dynamodb_endpoint.is_some();
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &args.region {
        loader = loader.region(Region::new(region.clone()));
    } else if local {
        loader = loader.region(Region::new("us-east-1"));
    }
    if local && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        // The emulators check only that a signature is present.
        loader = loader.credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "LOCAL",
            "LOCAL",
            None,
            None,
            "verify-worker",
        ));
    }
    let base = loader.load().await;
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_millis(args.sdk_attempt_timeout_ms))
        .build();
    let mut kinesis = aws_sdk_kinesis::config::Builder::from(&base);
    // A fan-out subscription is one long response: an attempt timeout would cut it.
    if matches!(args.retrieval, RetrievalArg::Polling) {
        kinesis = kinesis.timeout_config(timeouts.clone());
    }
    if let Some(endpoint) = &args.kinesis_endpoint {
        kinesis = kinesis.endpoint_url(endpoint);
    }
    let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&base).timeout_config(timeouts);
    if let Some(endpoint) = &args.dynamodb_endpoint {
        dynamodb = dynamodb.endpoint_url(endpoint);
    }
    (aws_sdk_kinesis::Client::from_conf(kinesis.build()), aws_sdk_dynamodb::Client::from_conf(dynamodb.build()))
}

/// Opens the PostgreSQL lease store and creates the sink table, retrying for a while.
async fn build_postgres_store(url: &str, table: &str) -> Result<kcl_postgres_lease::PostgresLeaseStore, BoxError> {
    if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || table.is_empty() {
        return Err(format!("--postgres-table {table:?}: letters, digits and `_` only").into());
    }
    let started = Instant::now();
    loop {
        let attempt = async {
            let store = kcl_postgres_lease::PostgresLeaseStore::builder(url).table(table).open().await?;
            let (client, connection) =
                kcl_postgres_lease::tokio_postgres::connect(url, kcl_postgres_lease::tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {table}_sink (seq TEXT NOT NULL, sub BIGINT NOT NULL, worker TEXT NOT NULL)"
                ))
                .await?;
            Ok::<_, BoxError>(store)
        };
        match attempt.await {
            Ok(store) => return Ok(store),
            Err(error) if started.elapsed() < STARTUP_RETRY => {
                tracing::warn!(%error, "cannot set up the PostgreSQL tables yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Builds the lease store, retrying transient failures for a while (the table may be unreachable at start-up).
async fn build_store(
    client: aws_sdk_dynamodb::Client,
    table: &str,
    heartbeat: bool,
) -> Result<DynamoLeaseStore, BoxError> {
    let started = Instant::now();
    loop {
        match DynamoLeaseStore::builder(client.clone(), table).worker_heartbeats(heartbeat).build().await {
            Ok(store) => return Ok(store),
            Err(error) if error.is_retryable() && started.elapsed() < STARTUP_RETRY => {
                tracing::warn!(%error, "cannot set up the lease table yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}
