//! The poison pill on the emulators (kinesis-mock + DynamoDB Local): one record always fails.
//! - reported as a partial failure, with 3 attempts: it lands in the JSON-lines failure destination with its
//!   metadata, and the shard keeps flowing to its last record;
//! - failing its whole batch, with bisect on: only that record (not its batch neighbours) lands there;
//! - with `OnExhausted::Block`: the shard stops at it and the checkpoint sits just before it.

#[allow(dead_code)]
#[path = "pipeline/streams.rs"]
mod streams;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use kcl_core::lease::LeaseStore;
use kcl_core::process::{
    BatchFailure, BatchResult, Checkpointing, JsonLinesDestination, OnExhausted, ProcessingConfig, RetryPolicy,
};
use kcl_core::retrieve::PollingConfig;
use kcl_core::{Batch, Checkpointer, ExtendedSequenceNumber, InitialPosition, RecordProcessor, Worker};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::{emulators, unique_name};
use streams::{Entry, Put};

const RECORDS: usize = 30;
const POISON: usize = 12;

#[derive(Default)]
struct Seen {
    processed: BTreeSet<String>,
    poison_attempts: usize,
    calls: usize,
}

/// Fails every call that holds the poison record: naming it (partial) or failing the whole batch.
struct PoisonProcessor {
    seen: Arc<Mutex<Seen>>,
    partial: bool,
}

#[async_trait::async_trait]
impl RecordProcessor for PoisonProcessor {
    async fn process_records(&mut self, batch: &Batch, _checkpointer: &mut Checkpointer) -> BatchResult {
        let mut seen = self.seen.lock().unwrap();
        seen.calls += 1;
        let poison: Vec<_> = batch.records.iter().filter(|r| r.data.as_ref() == b"poison").collect();
        if poison.is_empty() {
            seen.processed.extend(batch.records.iter().map(|r| String::from_utf8_lossy(&r.data).into_owned()));
            return Ok(());
        }
        seen.poison_attempts += 1;
        if !self.partial {
            return Err("the batch holds a record this processor cannot handle".into());
        }
        let good = batch.records.iter().filter(|r| r.data.as_ref() != b"poison");
        seen.processed.extend(good.map(|r| String::from_utf8_lossy(&r.data).into_owned()));
        Err(BatchFailure::failed_records(poison, "cannot parse the payload"))
    }
}

/// `kcl_shard_blocks_total` per stream: the event that a blocked shard's lane gave up and halted (it delivers nothing
/// more). Recorders are process-global; every test here has its own stream.
#[derive(Default)]
struct ShardBlocks(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

impl ShardBlocks {
    fn installed() -> &'static ShardBlocks {
        static BLOCKS: OnceLock<&'static ShardBlocks> = OnceLock::new();
        BLOCKS.get_or_init(|| {
            let blocks: &'static ShardBlocks = Box::leak(Box::default());
            metrics::set_global_recorder(Recorder(blocks)).expect("the only recorder of this binary");
            blocks
        })
    }

    fn counter(&self, stream: &str) -> Arc<AtomicU64> {
        self.0.lock().unwrap().entry(stream.to_owned()).or_default().clone()
    }
}

struct Recorder(&'static ShardBlocks);

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let stream = key.labels().find(|l| l.key() == "stream").map(|l| l.value().to_owned());
        match stream {
            Some(stream) if key.name() == kcl_core::telemetry::SHARD_BLOCKS => {
                metrics::Counter::from_arc(self.0.counter(&stream))
            }
            _ => metrics::Counter::noop(),
        }
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// What must have happened before the worker is stopped and the outcome read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// The stored checkpoint reached the last record (the shard flowed past the poison).
    CheckpointAtLastRecord,
    /// The shard's lane gave up on the poison and halted.
    ShardBlocked,
}

struct Scenario {
    partial: bool,
    bisect: bool,
    on_exhausted: OnExhausted,
}

struct Outcome {
    puts: Vec<Put>,
    seen: Arc<Mutex<Seen>>,
    checkpoint: ExtendedSequenceNumber,
    dead_letters: Vec<serde_json::Value>,
}

fn data(i: usize) -> String {
    if i == POISON { "poison".to_owned() } else { format!("r{i}") }
}

async fn run(scenario: Scenario, dir: &Path, until: impl Fn(&Seen) -> bool, settled: Settled) -> Outcome {
    let blocks = ShardBlocks::installed();
    let kinesis = emulators().kinesis_client().await;
    let dynamodb = emulators().dynamodb_client().await;
    let stream = unique_name("poison");
    let table = unique_name("poison-leases");
    streams::create_stream(&kinesis, &stream, 1).await;
    let entries: Vec<Entry> = (0..RECORDS)
        .map(|i| Entry::Plain { partition_key: format!("device-{}", i % 4), data: data(i).into() })
        .collect();
    let puts = streams::put(&kinesis, &stream, &entries).await;
    let store = Arc::new(DynamoLeaseStore::builder(dynamodb.clone(), &table).build().await.unwrap());
    let file = dir.join("failed.jsonl");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let worker = Worker::builder(stream.as_str(), table.as_str())
        .worker_id("worker-1")
        .kinesis_client(kinesis.clone())
        .lease_store(store.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .polling_config(
            PollingConfig::default()
                .with_max_records(10)
                .with_idle_time_between_reads(Duration::from_millis(100))
                .with_min_time_between_calls(Duration::from_millis(20)),
        )
        .processing(ProcessingConfig::default().checkpointing(Checkpointing::AfterEachBatch))
        .retry_policy(
            RetryPolicy::default()
                .max_attempts(Some(3))
                .backoff(Duration::from_millis(20), Duration::from_millis(100))
                .bisect_on_error(scenario.bisect)
                .on_exhausted(scenario.on_exhausted),
        )
        .failure_destination(Arc::new(JsonLinesDestination::new(&file)))
        .processor_factory({
            let seen = seen.clone();
            move |_: &str| PoisonProcessor { seen: seen.clone(), partial: scenario.partial }
        })
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !until(&seen.lock().unwrap()) {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match settled {
        Settled::CheckpointAtLastRecord => {
            let last = &puts.last().expect("records were put").position;
            while store.get_lease(&puts[0].shard).await.ok().flatten().is_none_or(|lease| lease.checkpoint != *last) {
                assert!(tokio::time::Instant::now() < deadline, "timed out waiting for the checkpoint at {last}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Settled::ShardBlocked => {
            // Once the lane gave up it delivers nothing more: whatever was processed by then is all there will be.
            let blocked = blocks.counter(&stream);
            while blocked.load(Ordering::Relaxed) == 0 {
                assert!(tokio::time::Instant::now() < deadline, "timed out waiting for the shard to block");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
    let lease = store.get_lease(&puts[0].shard).await.unwrap().unwrap();
    let dead_letters = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    streams::delete_stream(&kinesis, &stream).await;
    let _ = dynamodb.delete_table().table_name(&table).send().await;
    Outcome { puts, seen, checkpoint: lease.checkpoint, dead_letters }
}

fn all_but_poison() -> BTreeSet<String> {
    (0..RECORDS).filter(|&i| i != POISON).map(data).collect()
}

fn assert_only_the_poison_dead_lettered(outcome: &Outcome) {
    let poison = &outcome.puts[POISON];
    assert_eq!(outcome.dead_letters.len(), 1, "exactly the poison record: {:?}", outcome.dead_letters);
    let line = &outcome.dead_letters[0];
    assert_eq!(line["seq"], poison.position.sequence_number().unwrap().as_str());
    assert_eq!(line["sub"], 0);
    assert_eq!(line["shard"], poison.shard.as_str());
    assert_eq!(line["pk"], poison.partition_key.as_str());
    assert_eq!(line["data_b64"], base64::engine::general_purpose::STANDARD.encode("poison"));
    assert_eq!(line["attempts"], 3);
    assert_eq!(line["reason"], "attempts_exhausted");
    assert!(line["error"].as_str().unwrap().contains("cannot"), "the processor's error: {line}");
    assert!(line["first_failure_ms"].as_u64().unwrap() > 0);
    // The shard kept flowing: every other record processed, the checkpoint at the last record.
    assert_eq!(outcome.seen.lock().unwrap().processed, all_but_poison());
    assert_eq!(outcome.checkpoint, outcome.puts.last().unwrap().position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_reported_as_failed_goes_to_the_file_after_three_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { partial: true, bisect: false, on_exhausted: OnExhausted::SendToDestination };
    let outcome =
        run(scenario, dir.path(), |seen| seen.processed.len() == RECORDS - 1, Settled::CheckpointAtLastRecord).await;
    assert_eq!(outcome.seen.lock().unwrap().poison_attempts, 3);
    assert_only_the_poison_dead_lettered(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisecting_a_failing_batch_dead_letters_only_the_poison() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { partial: false, bisect: true, on_exhausted: OnExhausted::SendToDestination };
    let outcome =
        run(scenario, dir.path(), |seen| seen.processed.len() == RECORDS - 1, Settled::CheckpointAtLastRecord).await;
    // Halving 10 records down to the poison alone takes several calls; only its own 3 failures count as attempts.
    assert!(outcome.seen.lock().unwrap().poison_attempts > 3);
    assert_only_the_poison_dead_lettered(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_bisect_the_whole_failing_batch_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { partial: false, bisect: false, on_exhausted: OnExhausted::SendToDestination };
    let until = |seen: &Seen| seen.poison_attempts >= 3 && seen.processed.contains("r29");
    let outcome = run(scenario, dir.path(), until, Settled::CheckpointAtLastRecord).await;
    let dead: BTreeSet<String> = outcome
        .dead_letters
        .iter()
        .map(|line| {
            let bytes = base64::engine::general_purpose::STANDARD.decode(line["data_b64"].as_str().unwrap()).unwrap();
            String::from_utf8(bytes).unwrap()
        })
        .collect();
    assert!(dead.contains("poison") && dead.len() > 1, "the poison's batch neighbours went with it: {dead:?}");
    let processed = outcome.seen.lock().unwrap().processed.clone();
    assert!(processed.is_disjoint(&dead), "nothing is both processed and dead-lettered");
    assert_eq!(processed.len() + dead.len(), RECORDS, "every record processed or dead-lettered");
    assert_eq!(outcome.checkpoint, outcome.puts.last().unwrap().position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_stops_the_shard_just_before_the_poison() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario { partial: true, bisect: false, on_exhausted: OnExhausted::Block };
    let outcome = run(scenario, dir.path(), |seen| seen.poison_attempts >= 3, Settled::ShardBlocked).await;
    let seen = outcome.seen.lock().unwrap();
    assert_eq!(seen.poison_attempts, 3, "no attempt after the retries ran out");
    assert!(outcome.dead_letters.is_empty());
    assert_eq!(outcome.checkpoint, outcome.puts[POISON - 1].position, "the checkpoint sits just before the poison");
    // Nothing after the poison's batch was delivered (its own batch neighbours after it were, in the failed calls).
    for i in 20..RECORDS {
        assert!(!seen.processed.contains(&data(i)), "record {i} after the blocked one was processed");
    }
}
