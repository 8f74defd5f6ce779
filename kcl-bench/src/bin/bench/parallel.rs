//! `parallel`: what per-key parallelism within one shard buys a slow processor.
//!
//! One shard of the in-memory stream, pre-filled with records spread over 100 partition keys; the processor sleeps
//! 5 ms per batch (an I/O-bound handler: a database write per batch). The same run with parallelism 1 and with
//! parallelism N (default 10): records/s and the ratio. Lambda's goal for its `ParallelizationFactor` is the same
//! shape: N concurrent batches per shard, each key in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use kcl_core::lease::MemoryLeaseStore;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::process::{BatchResult, Checkpointing, ProcessingConfig};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, Worker};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::report::Report;

/// Options of `bench parallel`.
#[derive(Args, Debug, Clone)]
pub struct ParallelArgs {
    /// Records per run.
    #[arg(long, default_value_t = 40_000)]
    records: u64,
    /// Distinct partition keys.
    #[arg(long, default_value_t = 100)]
    keys: u64,
    /// Records per batch (`ProcessingConfig::max_records`).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// The processor's sleep per batch, in milliseconds.
    #[arg(long, default_value_t = 5)]
    sleep_ms: u64,
    /// The parallelism compared with 1.
    #[arg(long, default_value_t = 10)]
    parallelism: usize,
}

struct Progress {
    target: u64,
    processed: AtomicU64,
    first: std::sync::OnceLock<Instant>,
    done: Notify,
}

struct SlowProcessor {
    progress: Arc<Progress>,
    sleep: Duration,
}

#[async_trait::async_trait]
impl RecordProcessor for SlowProcessor {
    async fn process_records(&mut self, batch: &Batch, _checkpointer: &mut Checkpointer) -> BatchResult {
        self.progress.first.get_or_init(Instant::now);
        tokio::time::sleep(self.sleep).await;
        let total = self.progress.processed.fetch_add(batch.len() as u64, Ordering::Relaxed) + batch.len() as u64;
        if total >= self.progress.target {
            self.progress.done.notify_one();
        }
        Ok(())
    }
}

async fn one_run(args: &ParallelArgs, parallelism: usize) -> Result<(f64, Duration), Box<dyn std::error::Error>> {
    let stream = MemoryStream::new("parallel", 1);
    stream.put_batch((0..args.records).map(|i| (format!("device-{}", i % args.keys), format!("{{\"n\":{i}}}"))))?;
    let progress = Arc::new(Progress {
        target: args.records,
        processed: AtomicU64::new(0),
        first: std::sync::OnceLock::new(),
        done: Notify::new(),
    });
    let worker = Worker::builder(stream.name().clone(), "bench-parallel")
        .worker_id("bench")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(Arc::new(MemoryLeaseStore::new()))
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(10)).build()?)
        .processing(
            ProcessingConfig::default()
                .parallelism(parallelism)
                .max_records(Some(args.batch))
                .checkpointing(Checkpointing::AfterEachBatch),
        )
        .processor_factory({
            let progress = progress.clone();
            let sleep = Duration::from_millis(args.sleep_ms);
            move |_: &str| SlowProcessor { progress: progress.clone(), sleep }
        })
        .build()?;
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let notified = progress.done.notified();
    tokio::time::timeout(Duration::from_secs(600), notified).await?;
    let end = Instant::now();
    let elapsed = progress.first.get().map_or(Duration::ZERO, |first| end - *first);
    shutdown.shutdown();
    task.await??;
    Ok((progress.processed.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(), elapsed))
}

pub async fn run(args: ParallelArgs) -> Result<Report, Box<dyn std::error::Error>> {
    let mut report = Report::new("parallel");
    report.param("records", args.records);
    report.param("partition_keys", args.keys);
    report.param("records_per_batch", args.batch as u64);
    report.param("sleep_ms_per_batch", args.sleep_ms);
    report.note("records/s from the first process_records call to the one that completes the stream; 1 shard");
    let mut rates = Vec::new();
    for parallelism in [1, args.parallelism] {
        eprintln!("parallel: parallelism {parallelism}");
        let (rate, elapsed) = one_run(&args, parallelism).await?;
        eprintln!("parallel: parallelism {parallelism}: {rate:.0} records/s in {:.2} s", elapsed.as_secs_f64());
        report.metric(format!("parallelism_{parallelism}_throughput"), rate, "records/s");
        rates.push(rate);
    }
    report.metric(format!("speedup_{}_vs_1", args.parallelism), rates[1] / rates[0], "x");
    Ok(report)
}
