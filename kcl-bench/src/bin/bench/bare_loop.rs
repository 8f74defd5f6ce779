//! `e2e-bare`: the baseline of `bench e2e` — the least a Rust program does to read a stream with the AWS SDK.
//!
//! One `aws-sdk-kinesis` client from the default `SdkConfig` loader (the same endpoint, region and credentials as
//! the kcl-rs consumer), `ListShards`, then per shard a task: `GetShardIterator(TRIM_HORIZON)` and a `GetRecords`
//! loop (limit 10000, the kcl-rs default) touching every record's data, until all expected records were read. No
//! leases, no checkpoints, no de-aggregation; after an empty read a shard waits 200 ms (Kinesis allows five reads
//! per second per shard, and kcl-rs never polls faster either).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use clap::Args;
use serde_json::json;
use tokio::sync::Notify;

use crate::emulator::{self, EndpointArgs};
use crate::milestone::{Milestone, json_of};

/// Options of `bench e2e-bare` (started by `bench e2e`).
#[derive(Args, Debug, Clone)]
pub struct BareArgs {
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// The stream to read.
    #[arg(long)]
    stream: String,
    /// Stop once this many records were read.
    #[arg(long)]
    expect: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
}

struct Progress {
    expect: u64,
    read: AtomicU64,
    started: Instant,
    first_record: std::sync::OnceLock<Milestone>,
    done: Notify,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The baseline process: prints one JSON result line (see `contender.rs`).
pub async fn run(args: BareArgs, started: Instant) -> Result<(), BoxError> {
    let endpoints = args.endpoints.resolve("e2e")?;
    let client = aws_sdk_kinesis::Client::new(&emulator::sdk_config(&endpoints.kinesis).await);
    let ready = Milestone::now(started);
    let shards = client.list_shards().stream_name(&args.stream).send().await?.shards.unwrap_or_default();
    let progress = Arc::new(Progress {
        expect: args.expect,
        read: AtomicU64::new(0),
        started,
        first_record: std::sync::OnceLock::new(),
        done: Notify::new(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for shard in shards {
        let (client, stream, progress) = (client.clone(), args.stream.clone(), progress.clone());
        tasks.spawn(async move { read_shard(&client, &stream, shard.shard_id(), &progress).await });
    }
    let deadline = Duration::from_secs(args.timeout_secs);
    let finished = tokio::time::timeout(deadline, async {
        tokio::select! {
            () = progress.done.notified() => Ok(()),
            failed = async {
                while let Some(joined) = tasks.join_next().await {
                    joined??;
                }
                Err::<(), BoxError>("every shard ended before all records were read".into())
            } => failed,
        }
    })
    .await;
    tasks.abort_all();
    let read = progress.read.load(Ordering::Acquire);
    match finished {
        Err(_) => return Err(format!("timed out with {read} of {} records read", args.expect).into()),
        Ok(Err(error)) => return Err(error),
        Ok(Ok(())) => {}
    }
    let last = Milestone::now(started);
    println!(
        "{}",
        json!({
            "records": read,
            "ready": ready.json(),
            "first_record": json_of(progress.first_record.get()),
            "last_record": last.json(),
        })
    );
    Ok(())
}

async fn read_shard(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard_id: &str,
    progress: &Progress,
) -> Result<(), BoxError> {
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await?
        .shard_iterator;
    while let Some(current) = iterator {
        let output = client.get_records().shard_iterator(current).limit(10_000).send().await?;
        let records = output.records();
        if records.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            progress.first_record.get_or_init(|| Milestone::announce("first_record", progress.started));
            let bytes: usize = records.iter().map(|r| black_box(r.data().as_ref()).len()).sum();
            black_box(bytes);
            let n = records.len() as u64;
            if progress.read.fetch_add(n, Ordering::AcqRel) + n >= progress.expect {
                progress.done.notify_one();
            }
        }
        iterator = output.next_shard_iterator;
    }
    Ok(())
}
