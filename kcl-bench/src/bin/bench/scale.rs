//! `scale`: one worker holding 1,000 leases (the in-memory stream's 1,000 shards, the in-memory lease store): memory
//! and CPU while idle, then under load.
//!
//! The stream behaves like Kinesis towards readers (at most one `GetRecords` per shard every 200 ms; a caught-up
//! shard is polled every 1.5 s, KCL's default), so the idle figure is what 1,000 quiet shards cost: lease renewals,
//! the polls and 1,000 idle shard consumers. Under load, records are put across all shards at a fixed rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::process::BatchResult;
use kcl_core::retrieve::PollingConfig;
use kcl_core::retrieve::memory_stream::{MemoryStream, MemoryStreamConfig};
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, Worker};
use tokio::time::Instant;

use crate::report::{Report, Usage};

/// Options of `bench scale`.
#[derive(Args, Debug, Clone)]
pub struct ScaleArgs {
    /// Shards = leases held by the one worker.
    #[arg(long, default_value_t = 1000)]
    leases: usize,
    /// Seconds of each measurement window (idle, then load).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Records put per second during the load window (spread over all shards).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
}

struct Counter(Arc<AtomicU64>);

#[async_trait::async_trait]
impl RecordProcessor for Counter {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// Resident set size now, from /proc (bytes); 0 where unavailable.
fn current_rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1).and_then(|pages| pages.parse::<u64>().ok()))
        // SAFETY: sysconf only reads a configuration value.
        .map_or(0, |pages| pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64)
}

const MIB: f64 = 1024.0 * 1024.0;

pub async fn run(args: ScaleArgs) -> Result<Report, Box<dyn std::error::Error>> {
    let mut report = Report::new("scale");
    report.param("leases", args.leases as u64);
    report.param("window_seconds", args.seconds);
    report.param("load_records_per_second", args.rate);
    report.note("cpu_percent = process CPU (user+sys, all threads) / wall time of the window; 100 = one core");
    let config = MemoryStreamConfig {
        polling: PollingConfig::default()
            .with_min_time_between_calls(Duration::from_millis(200))
            .with_idle_time_between_reads(Duration::from_millis(1500)),
        ..MemoryStreamConfig::default()
    };
    let stream = MemoryStream::with_config("scale", args.leases, config);
    let store = Arc::new(MemoryLeaseStore::new());
    let processed = Arc::new(AtomicU64::new(0));
    let worker = Worker::builder(stream.name().clone(), "bench-scale")
        .worker_id("bench")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(store.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(10)).build()?)
        .processor_factory({
            let processed = processed.clone();
            move |_: &str| Counter(processed.clone())
        })
        .build()?;
    let shutdown = worker.shutdown_handle();
    let started = Instant::now();
    let task = tokio::spawn(worker.run());

    // Wait until the worker owns every lease.
    loop {
        let owned = store.list_all_leases().await?.iter().filter(|l| l.lease_owner.is_some()).count();
        if owned == args.leases {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!("only {owned} of {} leases taken after 300 s", args.leases).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.metric("time_to_hold_all_leases", started.elapsed().as_secs_f64(), "s");
    eprintln!("scale: holding {} leases after {:.1} s; idle window", args.leases, started.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(3)).await; // consumers settle into their idle polling

    let window = Duration::from_secs(args.seconds);
    let before = Usage::this_process();
    let at = Instant::now();
    tokio::time::sleep(window).await;
    let idle = Usage::this_process().since(&before);
    let idle_wall = at.elapsed().as_secs_f64();
    report.metric("idle_rss", current_rss() as f64 / MIB, "MiB");
    report.metric("idle_cpu_percent", idle.cpu().as_secs_f64() * 100.0 / idle_wall, "%");

    eprintln!("scale: load window, {} records/s", args.rate);
    let before = Usage::this_process();
    let processed_before = processed.load(Ordering::Relaxed);
    let at = Instant::now();
    let mut put = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while at.elapsed() < window {
        tick.tick().await;
        let due = (at.elapsed().as_secs_f64() * args.rate as f64) as u64;
        let batch = due.saturating_sub(put);
        stream.put_batch((put..put + batch).map(|i| (format!("device-{i}"), vec![b'x'; 100])))?;
        put += batch;
    }
    let load = Usage::this_process().since(&before);
    let load_wall = at.elapsed().as_secs_f64();
    let consumed = processed.load(Ordering::Relaxed) - processed_before;
    report.metric("load_records_put", put as f64, "records");
    report.metric("load_records_processed", consumed as f64, "records");
    report.metric("load_rss", current_rss() as f64 / MIB, "MiB");
    report.metric("load_cpu_percent", load.cpu().as_secs_f64() * 100.0 / load_wall, "%");
    if consumed > 0 {
        report.metric("load_cpu_us_per_record", load.cpu().as_secs_f64() * 1e6 / consumed as f64, "us");
    }
    report.metric("max_rss", Usage::this_process().max_rss as f64 / MIB, "MiB");
    shutdown.shutdown();
    task.await??;
    Ok(report)
}
