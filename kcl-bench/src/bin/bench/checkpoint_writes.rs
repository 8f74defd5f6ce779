//! `checkpoint-writes`: lease-table checkpoint writes per million records, checkpointing after every batch (the
//! default) and at an interval, for producers of several rates (in memory, on Tokio's paused clock).
//!
//! Each run: one shard of the in-memory stream behaving like Kinesis for polling (Java KCL's polling defaults:
//! 10,000 records per `GetRecords`, 1.5 s idle between empty reads, 200 ms between calls), a producer putting
//! `rate` records per second in 100 ms steps, a worker whose framework checkpoints (`AfterEachBatch`), and a
//! processor that only counts. Writes are counted from `kcl_checkpoints_total{outcome="ok"}`, including the final
//! one at shutdown. Time is virtual, so hours of production take seconds and the figure does not depend on the
//! machine: it is what the batch sizes at that rate make of each setting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use kcl_core::lease::MemoryLeaseStore;
use kcl_core::process::{BatchResult, CheckpointInterval, Checkpointing, ProcessingConfig};
use kcl_core::retrieve::PollingConfig;
use kcl_core::retrieve::memory_stream::{MemoryStream, MemoryStreamConfig};
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, Worker};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use crate::report::Report;

/// Options of `bench checkpoint-writes`.
#[derive(Args, Debug, Clone)]
pub struct CheckpointWritesArgs {
    /// Records put per run.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    /// Producer rates to run, records per second on the shard (comma-separated; at least 10).
    #[arg(long, value_delimiter = ',', default_values_t = vec![10, 100, 1000])]
    rates: Vec<u64>,
    /// The interval setting compared with every batch: records (`checkpoint_every_records`).
    #[arg(long, default_value_t = 10_000)]
    every_records: u64,
    /// The interval setting compared with every batch: seconds (`checkpoint_every_ms` / 1000).
    #[arg(long, default_value_t = 60)]
    every_secs: u64,
}

/// `kcl_checkpoints_total{outcome="ok"}` across the process; every other metric is dropped.
static CHECKPOINTS_OK: AtomicU64 = AtomicU64::new(0);

struct CheckpointCounter;

struct OkCount;

impl metrics::CounterFn for OkCount {
    fn increment(&self, value: u64) {
        CHECKPOINTS_OK.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, _: u64) {}
}

impl Recorder for CheckpointCounter {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let ok = key.name() == kcl_core::telemetry::CHECKPOINTS
            && key.labels().any(|label| label.key() == "outcome" && label.value() == "ok");
        if ok { Counter::from_arc(Arc::new(OkCount)) } else { Counter::noop() }
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

struct CountOnly(Arc<AtomicU64>);

#[async_trait::async_trait]
impl RecordProcessor for CountOnly {
    async fn process_records(&mut self, batch: &Batch, _: &mut Checkpointer) -> BatchResult {
        self.0.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

pub async fn run(args: CheckpointWritesArgs) -> Result<Report, Box<dyn std::error::Error>> {
    if args.records == 0 || args.rates.iter().any(|&rate| rate < 10) {
        return Err("--records must be at least 1 and every --rates value at least 10".into());
    }
    metrics::set_global_recorder(CheckpointCounter).map_err(|e| format!("installing the counting recorder: {e}"))?;
    let mut report = Report::new("checkpoint_writes");
    report.param("records_per_run", args.records);
    report.param("interval_records", args.every_records);
    report.param("interval_secs", args.every_secs);
    report.note(
        "one shard, Java KCL polling defaults, paused clock; writes per million records, the final checkpoint at \
         shutdown included",
    );
    let interval =
        CheckpointInterval::every_batch().records(args.every_records).period(Duration::from_secs(args.every_secs));
    for &rate in &args.rates {
        for (mode, interval) in [("every_batch", CheckpointInterval::every_batch()), ("interval", interval)] {
            let records = args.records;
            // The paused clock needs a current-thread runtime of its own.
            let writes = std::thread::spawn(move || -> Result<u64, String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .start_paused(true)
                    .build()
                    .map_err(|e| format!("building the paused runtime: {e}"))?;
                runtime.block_on(one_run(rate, records, interval))
            })
            .join()
            .map_err(|_| "a run panicked")??;
            let per_million = writes as f64 * 1e6 / args.records as f64;
            eprintln!("checkpoint-writes: {rate} records/s, {mode}: {writes} writes ({per_million:.0} per million)");
            report.metric(format!("writes_per_million_{mode}_at_{rate}_per_s"), per_million, "writes");
        }
    }
    Ok(report)
}

async fn one_run(rate: u64, records: u64, interval: CheckpointInterval) -> Result<u64, String> {
    let before = CHECKPOINTS_OK.load(Ordering::Relaxed);
    let config = MemoryStreamConfig {
        polling: PollingConfig::default(),
        min_time_between_calls: Duration::from_millis(200),
        ..MemoryStreamConfig::default()
    };
    let stream = MemoryStream::with_config("checkpoint-writes", 1, config);
    let processed = Arc::new(AtomicU64::new(0));
    let counted = processed.clone();
    let worker = Worker::builder(stream.name().clone(), "checkpoint-writes")
        .worker_id("bench")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(Arc::new(MemoryLeaseStore::new()))
        .initial_position(InitialPosition::TrimHorizon)
        .processing(
            ProcessingConfig::default().checkpointing(Checkpointing::AfterEachBatch).checkpoint_interval(interval),
        )
        .processor_factory(move |_: &str| CountOnly(counted.clone()))
        .build()
        .map_err(|e| format!("building the worker: {e}"))?;
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let per_step = rate / 10;
    let mut put = 0;
    let mut step = tokio::time::interval(Duration::from_millis(100));
    while put < records {
        step.tick().await;
        let n = per_step.min(records - put);
        stream
            .put_batch((put..put + n).map(|i| (format!("key-{}", i % 64), vec![b'x'; 100])))
            .map_err(|e| format!("putting records: {e}"))?;
        put += n;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while processed.load(Ordering::Relaxed) < records {
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "{} of {records} records processed 600 s after the last put",
                processed.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.shutdown();
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(format!("the worker failed: {error}")),
        Err(error) => return Err(format!("the worker task failed: {error}")),
    }
    Ok(CHECKPOINTS_OK.load(Ordering::Relaxed) - before)
}
