//! `overhead`: the framework's own cost per record, on the in-memory stream.
//!
//! One worker with a `MemoryLeaseStore` consumes a pre-filled `MemoryStream` from `TRIM_HORIZON`. The processor
//! only counts records and checkpoints once per batch, so what is measured is the pipeline: polling the stream
//! through the real `PollingFetcher` and prefetch queue, de-aggregation, batching, dispatch to the processor and the
//! checkpoint through the lease coordinator. The clock runs from the first `process_records` call to the one that
//! brings the count to the total; pre-fill, lease taking and shutdown are outside it.
//!
//! The stream is tuned for throughput (it is a test double; real Kinesis allows 5 reads per second per shard):
//! no rate floor, no idle wait, 10000 records per read, a deep prefetch queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use kcl_core::deaggregate::{UserRecordInput, aggregate};
use kcl_core::lease::MemoryLeaseStore;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::process::BatchResult;
use kcl_core::retrieve::memory_stream::{MemoryStream, MemoryStreamConfig, partition_key_hash};
use kcl_core::retrieve::{MAX_RECORDS_PER_CALL, PollingConfig, PrefetchConfig};
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, Worker};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::report::{Report, Usage};

/// Options of `bench overhead`.
#[derive(Args, Debug, Clone)]
pub struct OverheadArgs {
    /// Records (user records, when aggregated) per run.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Shard counts to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![8, 1])]
    shards: Vec<usize>,
    /// Payload bytes per (user) record.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// User records per KPL aggregate.
    #[arg(long, default_value_t = 100)]
    per_aggregate: usize,
    /// Which record kinds to run.
    #[arg(long, value_enum, default_value_t = Kinds::Both)]
    kinds: Kinds,
    /// Runs per configuration; the printed value is the median.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Kinds {
    Plain,
    Aggregated,
    Both,
}

/// Distinct aggregates built per shard (cycled through when filling).
const AGGREGATES_PER_SHARD: usize = 8;

pub async fn run(args: OverheadArgs) -> Result<Report, Box<dyn std::error::Error>> {
    let mut report = Report::new("overhead");
    report.param("records_per_run", args.records);
    report.param("record_bytes", args.record_bytes as u64);
    report.param("user_records_per_aggregate", args.per_aggregate as u64);
    report.param("repeat", args.repeat as u64);
    report.param("tokio_worker_threads", tokio::runtime::Handle::current().metrics().num_workers() as u64);
    report.note(
        "records/s = records delivered / time from the first process_records call to the last; \
         per_cpu_second = records / process CPU (user+sys, all threads) over the same window",
    );
    report.note(
        "aggregated, >1 shard: user records hash into their shard, so the KCL shard-range check hashes every \
         distinct partition key (100 per aggregate); 1 shard covers the whole key space: no check",
    );
    let kinds: &[bool] = match args.kinds {
        Kinds::Plain => &[false],
        Kinds::Aggregated => &[true],
        Kinds::Both => &[false, true],
    };
    for run in 0..args.repeat {
        for &aggregated in kinds {
            for &shards in &args.shards {
                let kind = if aggregated { "aggregated" } else { "plain" };
                eprintln!("overhead: run {} of {}: {kind}, {shards} shard(s), filling", run + 1, args.repeat);
                let outcome = one_run(&args, shards, aggregated).await?;
                let name = format!("overhead_{kind}_{shards}_shards");
                let unit = if aggregated { "user_records/s" } else { "records/s" };
                let rate = outcome.records as f64 / outcome.elapsed.as_secs_f64();
                let cpu = outcome.cpu.as_secs_f64();
                eprintln!(
                    "overhead: {name}: {rate:.0} {unit} ({} in {:.3} s, {cpu:.3} s CPU, first deliveries spread over \
                     {:.1} ms)",
                    outcome.records,
                    outcome.elapsed.as_secs_f64(),
                    outcome.first_delivery_spread.as_secs_f64() * 1e3
                );
                report.metric(format!("{name}_throughput"), rate, unit);
                if cpu > 0.0 {
                    report.metric(format!("{name}_per_cpu_second"), outcome.records as f64 / cpu, unit);
                    report.metric(format!("{name}_cpu_ns_per_record"), cpu * 1e9 / outcome.records as f64, "ns");
                }
                report.metric(
                    format!("{name}_first_delivery_spread"),
                    outcome.first_delivery_spread.as_secs_f64() * 1e3,
                    "ms",
                );
            }
        }
    }
    Ok(report)
}

struct Outcome {
    records: u64,
    elapsed: Duration,
    cpu: Duration,
    /// Between the first delivery on the first shard and the first on the last shard to start.
    first_delivery_spread: Duration,
}

/// What the processors share: the count, the clock, and who is done.
struct Progress {
    target: u64,
    delivered: AtomicU64,
    first: OnceLock<(Instant, Usage)>,
    /// The first delivery of each processor.
    shard_starts: Mutex<Vec<Instant>>,
    last: OnceLock<(Instant, Usage)>,
    done: Notify,
}

/// Counts records; checkpoints once per batch.
struct CountingProcessor {
    progress: Arc<Progress>,
    started: bool,
}

#[async_trait::async_trait]
impl RecordProcessor for CountingProcessor {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        if !self.started {
            self.started = true;
            let now = Instant::now();
            self.progress.first.get_or_init(|| (now, Usage::this_process()));
            self.progress.shard_starts.lock().map_err(|_| "poisoned")?.push(now);
        }
        checkpointer.checkpoint().await?;
        let n = batch.records.len() as u64;
        let total = self.progress.delivered.fetch_add(n, Ordering::AcqRel) + n;
        if total >= self.progress.target && self.progress.last.set((Instant::now(), Usage::this_process())).is_ok() {
            self.progress.done.notify_one();
        }
        Ok(())
    }
}

fn stream_config() -> MemoryStreamConfig {
    let polling = PollingConfig::default()
        .with_max_records(MAX_RECORDS_PER_CALL)
        .with_idle_time_between_reads(Duration::ZERO)
        .with_min_time_between_calls(Duration::ZERO)
        .with_retry_base(Duration::from_millis(1))
        .with_retry_cap(Duration::from_millis(50))
        .with_prefetch(Some(PrefetchConfig::new(4, 64 << 20, 4 * MAX_RECORDS_PER_CALL)))
        .with_worker_prefetch_bytes(1 << 30);
    MemoryStreamConfig { polling, ..MemoryStreamConfig::default() }
}

/// The lowest hash key of each of `shards` even shards (as `MemoryStream::new` splits the key space).
fn shard_starts(shards: usize) -> Vec<u128> {
    let step = u128::MAX / shards as u128;
    (0..shards as u128).map(|i| step * i).collect()
}

fn shard_of(hash: u128, shards: usize) -> usize {
    let step = u128::MAX / shards as u128;
    usize::try_from(hash / step).unwrap_or(usize::MAX).min(shards - 1)
}

fn payload(n: u64, len: usize) -> Vec<u8> {
    let mut data = vec![b'x'; len];
    let tag = n.to_le_bytes();
    let k = tag.len().min(len);
    data[..k].copy_from_slice(&tag[..k]);
    data
}

/// Fills `stream` with `records` plain records round-robin over its shards: each with its own payload allocation
/// and partition key, as records decoded from a `GetRecords` response have.
fn fill_plain(
    stream: &MemoryStream,
    shards: usize,
    records: u64,
    bytes: usize,
) -> Result<u64, Box<dyn std::error::Error>> {
    let starts = shard_starts(shards);
    for n in 0..records {
        let hash = starts[(n % shards as u64) as usize];
        stream.put_with_hash(hash, format!("pk-{n}"), payload(n, bytes))?;
    }
    Ok(records)
}

/// Fills `stream` with KPL aggregates of `per_aggregate` user records each (distinct partition keys that hash into
/// the aggregate's shard, as the KPL packs them), `AGGREGATES_PER_SHARD` distinct blobs per shard cycled through.
/// Returns the number of user records.
fn fill_aggregated(
    stream: &MemoryStream,
    shards: usize,
    user_records: u64,
    bytes: usize,
    per_aggregate: usize,
) -> Result<u64, Box<dyn std::error::Error>> {
    let per_aggregate = per_aggregate.max(1);
    let needed = per_aggregate * AGGREGATES_PER_SHARD;
    let mut keys: Vec<Vec<String>> = vec![Vec::new(); shards];
    let mut n = 0u64;
    while keys.iter().any(|k| k.len() < needed) {
        let key = format!("user-{n}");
        n += 1;
        let shard = shard_of(partition_key_hash(&key), shards);
        if keys[shard].len() < needed {
            keys[shard].push(key);
        }
    }
    let blobs: Vec<Vec<(String, Bytes)>> = keys
        .iter()
        .map(|shard_keys| {
            shard_keys
                .chunks(per_aggregate)
                .enumerate()
                .map(|(a, chunk)| {
                    let payloads: Vec<Vec<u8>> =
                        (0..chunk.len()).map(|i| payload((a * per_aggregate + i) as u64, bytes)).collect();
                    let inputs: Vec<UserRecordInput<'_>> =
                        chunk.iter().zip(&payloads).map(|(key, data)| UserRecordInput::new(key, data)).collect();
                    (chunk[0].clone(), aggregate(&inputs))
                })
                .collect()
        })
        .collect();
    let starts = shard_starts(shards);
    let aggregates = user_records.div_ceil(per_aggregate as u64);
    for a in 0..aggregates {
        let shard = (a % shards as u64) as usize;
        let (key, blob) = &blobs[shard][((a / shards as u64) as usize) % AGGREGATES_PER_SHARD];
        // Each stored record gets its own copy, as each record of a GetRecords response has its own buffer.
        stream.put_with_hash(starts[shard], key.as_str(), Bytes::copy_from_slice(blob))?;
    }
    Ok(aggregates * per_aggregate as u64)
}

async fn one_run(args: &OverheadArgs, shards: usize, aggregated: bool) -> Result<Outcome, Box<dyn std::error::Error>> {
    let shards = shards.max(1);
    let stream = MemoryStream::with_config("bench-overhead", shards, stream_config());
    let target = if aggregated {
        fill_aggregated(&stream, shards, args.records, args.record_bytes, args.per_aggregate)?
    } else {
        fill_plain(&stream, shards, args.records, args.record_bytes)?
    };
    let progress = Arc::new(Progress {
        target,
        delivered: AtomicU64::new(0),
        first: OnceLock::new(),
        shard_starts: Mutex::new(Vec::new()),
        last: OnceLock::new(),
        done: Notify::new(),
    });
    let for_factory = progress.clone();
    let worker = Worker::builder(stream.name().clone(), "bench-overhead")
        .worker_id("bench-worker")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(Arc::new(MemoryLeaseStore::new()))
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build()?)
        .processor_factory(move |_shard: &str| CountingProcessor { progress: for_factory.clone(), started: false })
        .build()?;
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let finished = tokio::time::timeout(Duration::from_secs(args.timeout_secs), progress.done.notified()).await;
    shutdown.shutdown();
    task.await??;
    if finished.is_err() {
        return Err(format!(
            "timed out after {} s with {} of {target} records delivered",
            args.timeout_secs,
            progress.delivered.load(Ordering::Acquire)
        )
        .into());
    }
    let (Some((first, cpu_first)), Some((last, cpu_last))) = (progress.first.get(), progress.last.get()) else {
        return Err("no delivery was timed".into());
    };
    let starts = progress.shard_starts.lock().map_err(|_| "poisoned")?.clone();
    let spread = match (starts.iter().min(), starts.iter().max()) {
        (Some(a), Some(b)) => b.duration_since(*a),
        _ => Duration::ZERO,
    };
    Ok(Outcome {
        records: progress.delivered.load(Ordering::Acquire),
        elapsed: last.duration_since(*first),
        cpu: cpu_last.since(cpu_first).cpu(),
        first_delivery_spread: spread,
    })
}
