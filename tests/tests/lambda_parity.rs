//! Lambda-parity semantics end to end on kinesis-mock + DynamoDB Local:
//! - `FilterCriteria` from Lambda's JSON: exactly the matching records are processed (JSON data patterns, metadata
//!   patterns, non-JSON payloads), and the checkpoint passes the dropped ones;
//! - tumbling windows across a lease move and a split: the first worker's open window is replayed by the next owner,
//!   published windows are never counted again, no window mixes shards, the parent's window ends early at the split;
//! - pause and resume: nothing is delivered while paused, the lease stays held and renewed in DynamoDB.

#[allow(dead_code)]
#[path = "pipeline/streams.rs"]
mod streams;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcl_core::lease::LeaseStore;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::process::{
    Batch, BatchResult, Checkpointing, FilterCriteria, ProcessingConfig, ProcessorError, TumblingWindows, Window,
    WindowEnd, WindowProcessor,
};
use kcl_core::retrieve::PollingConfig;
use kcl_core::{Checkpointer, InitialPosition, ProcessorFactory, RecordProcessor, Worker, WorkerBuilder};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::{emulators, unique_name};
use streams::Entry;

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Setup {
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    stream: String,
    table: String,
    store: Arc<DynamoLeaseStore>,
}

impl Setup {
    async fn new(prefix: &str) -> Self {
        let kinesis = emulators().kinesis_client().await;
        let dynamodb = emulators().dynamodb_client().await;
        let stream = unique_name(prefix);
        let table = unique_name(&format!("{prefix}-leases"));
        streams::create_stream(&kinesis, &stream, 1).await;
        let store = Arc::new(DynamoLeaseStore::builder(dynamodb.clone(), &table).build().await.expect("lease table"));
        Self { kinesis, dynamodb, stream, table, store }
    }

    fn worker<F: ProcessorFactory>(&self, id: &str) -> WorkerBuilder<F> {
        Worker::builder(self.stream.as_str(), self.table.as_str())
            .worker_id(id)
            .kinesis_client(self.kinesis.clone())
            .lease_store(self.store.clone())
            .initial_position(InitialPosition::TrimHorizon)
            .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build().unwrap())
            .parent_poll_interval(Duration::from_millis(100))
            .polling_config(
                PollingConfig::default()
                    .with_idle_time_between_reads(Duration::from_millis(100))
                    .with_min_time_between_calls(Duration::from_millis(20)),
            )
    }

    async fn put(&self, entries: Vec<(String, String)>) -> Vec<streams::Put> {
        let entries: Vec<Entry> = entries
            .into_iter()
            .map(|(partition_key, data)| Entry::Plain { partition_key, data: data.into() })
            .collect();
        streams::put(&self.kinesis, &self.stream, &entries).await
    }

    async fn cleanup(&self) {
        streams::delete_stream(&self.kinesis, &self.stream).await;
        let _ = self.dynamodb.delete_table().table_name(&self.table).send().await;
    }
}

/// Records every payload it is given.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

#[async_trait::async_trait]
impl RecordProcessor for Recorder {
    async fn process_records(&mut self, batch: &Batch, _: &mut Checkpointer) -> BatchResult {
        self.0.lock().unwrap().extend(batch.records.iter().map(|r| String::from_utf8_lossy(&r.data).into_owned()));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_criteria_from_lambda_json_pick_exactly_the_matching_records() {
    let setup = Setup::new("filters").await;
    let criteria = FilterCriteria::from_json(
        r#"{"Filters":[
            {"Pattern":"{\"data\":{\"type\":[\"buy\"],\"qty\":[{\"numeric\":[\">=\",100]}]}}"},
            {"Pattern":"{\"partitionKey\":[{\"prefix\":\"audit-\"}]}"}]}"#,
    )
    .expect("a valid FilterCriteria");
    let records = [
        ("k1", r#"{"type":"buy","qty":150}"#, true),
        ("k2", r#"{"type":"buy","qty":50}"#, false),
        ("k3", r#"{"type":"sell","qty":500}"#, false),
        ("audit-1", r#"{"type":"sell","qty":1}"#, true),
        ("audit-2", "plain text, not JSON", true),
        ("k4", "plain text, not JSON", false),
        ("k5", r#"{"type":"BUY","qty":100}"#, false),
        ("k6", r#"{"type":"buy","qty":100}"#, true),
    ];
    let puts = setup.put(records.iter().map(|(k, d, _)| (k.to_string(), d.to_string())).collect()).await;
    let seen = Recorder::default();
    let worker = setup
        .worker("worker-1")
        .filter(criteria)
        .processing(ProcessingConfig::default().checkpointing(Checkpointing::AfterEachBatch))
        .processor_factory({
            let seen = seen.clone();
            move |_: &str| seen.clone()
        })
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let expected: Vec<String> = records.iter().filter(|r| r.2).map(|r| r.1.to_owned()).collect();
    wait_for("the matching records", 60, || seen.0.lock().unwrap().len() >= expected.len()).await;
    // The last record matches, so once it is checkpointed every filtered record before it counts as processed.
    let last = puts.last().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lease = setup.store.get_lease(&last.shard).await.unwrap().unwrap();
        if lease.checkpoint == last.position {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "checkpoint stuck at {}", lease.checkpoint);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
    assert_eq!(*seen.0.lock().unwrap(), expected, "exactly the matching records, in order");
    setup.cleanup().await;
}

/// One ended window: which worker ended it, the window, the shard of each record and their payloads.
#[derive(Clone, Debug)]
struct Ended {
    worker: &'static str,
    window: Window,
    shards: BTreeSet<String>,
    payloads: Vec<String>,
    end: WindowEnd,
}

#[derive(Clone, Default)]
struct Published(Arc<Mutex<Vec<Ended>>>);

/// Collects the payloads of a window (and the shards of the batches they came in).
struct Collector {
    worker: &'static str,
    published: Published,
}

#[async_trait::async_trait]
impl WindowProcessor for Collector {
    type State = (BTreeSet<String>, Vec<String>);
    async fn process(&mut self, _: &Window, state: &mut Self::State, batch: &Batch) -> Result<(), ProcessorError> {
        state.0.insert(batch.shard_id.to_string());
        state.1.extend(batch.records.iter().map(|r| String::from_utf8_lossy(&r.data).into_owned()));
        Ok(())
    }
    async fn window_ended(
        &mut self,
        window: &Window,
        state: &Self::State,
        end: WindowEnd,
    ) -> Result<(), ProcessorError> {
        let ended = Ended {
            worker: self.worker,
            window: window.clone(),
            shards: state.0.clone(),
            payloads: state.1.clone(),
            end,
        };
        self.published.0.lock().unwrap().push(ended);
        Ok(())
    }
}

fn windowed(setup: &Setup, id: &'static str, published: &Published) -> Worker<impl ProcessorFactory> {
    let published = published.clone();
    setup
        .worker(id)
        .processor_factory(
            TumblingWindows::factory(WINDOW, move |_: &str| Collector { worker: id, published: published.clone() })
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// Sleeps until 100 ms into the next window of `WINDOW`, so records put now all land in one fresh window.
async fn align_to_window() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let len = WINDOW.as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(len - now % len + 100)).await;
}

const WINDOW: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_windows_survive_a_lease_move_and_never_mix_shards_across_a_split() {
    let setup = Setup::new("windows").await;
    let published = Published::default();
    let payloads = |published: &Published| -> Vec<String> {
        published.0.lock().unwrap().iter().flat_map(|e| e.payloads.clone()).collect()
    };
    let batch = |prefix: &str, n: usize| -> Vec<(String, String)> {
        (0..n).map(|i| (format!("k{i}"), format!("{prefix}-{i}"))).collect()
    };

    // Worker A publishes a window, then stops (its lease moves) while the next window is open. (A crash leaves the
    // same checkpoint: windows write it only when they end.)
    let a = windowed(&setup, "worker-a", &published);
    let shutdown_a = a.shutdown_handle();
    let task_a = tokio::spawn(a.run());
    align_to_window().await;
    setup.put(batch("a", 5)).await;
    wait_for("worker A to publish a window", 60, || payloads(&published).len() == 5).await;
    align_to_window().await;
    setup.put(batch("open", 5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown_a.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task_a).await.unwrap().unwrap().unwrap();
    let by_a: BTreeSet<String> = payloads(&published).into_iter().collect();
    assert_eq!(by_a, batch("a", 5).into_iter().map(|(_, d)| d).collect(), "A published only the closed window");

    // Worker B takes the lease and starts from A's last window-end checkpoint: it replays the open window.
    let b = windowed(&setup, "worker-b", &published);
    let shutdown_b = b.shutdown_handle();
    let task_b = tokio::spawn(b.run());
    wait_for("worker B to publish the replayed window", 90, || payloads(&published).len() == 10).await;
    // Records in a fresh window, then a split at once: the parent's window ends early (at its shard end), and the
    // children's records go to windows of their own.
    let parent = streams::list_shards(&setup.kinesis, &setup.stream).await[0].shard_id.clone();
    align_to_window().await;
    setup.put(batch("late", 5)).await;
    let children = streams::split_in_half(&setup.kinesis, &setup.stream, &parent).await;
    setup.put(batch("child", 20)).await;
    let all: BTreeSet<String> = [batch("a", 5), batch("open", 5), batch("late", 5), batch("child", 20)]
        .concat()
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    wait_for("every record in a published window", 90, || {
        payloads(&published).into_iter().collect::<BTreeSet<_>>() == all
    })
    .await;
    shutdown_b.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task_b).await.unwrap().unwrap().unwrap();

    let ended = published.0.lock().unwrap().clone();
    for window in &ended {
        assert_eq!(window.shards.len(), 1, "a window holds one shard's records: {window:?}");
        assert_eq!(window.shards.iter().next().map(String::as_str), Some(&*window.window.shard_id));
    }
    let mut everything = payloads(&published);
    everything.sort();
    assert_eq!(everything.len(), all.len(), "no record in two published windows (A's checkpoint held): {everything:?}");
    let by_b: Vec<&Ended> = ended.iter().filter(|e| e.worker == "worker-b").collect();
    assert!(by_b.iter().any(|e| e.payloads.iter().any(|p| p.starts_with("open-"))), "B replayed A's open window");
    let late = ended.iter().find(|e| e.payloads.iter().any(|p| p.starts_with("late-"))).expect("the late window");
    assert_eq!(*late.window.shard_id, *parent);
    assert_eq!(late.end, WindowEnd::ShardEnded, "the parent's window ended early at the split");
    assert!(ended.iter().any(|e| children.iter().any(|c| **c == *e.window.shard_id)), "children have windows");
    let lease = setup.store.get_lease(&parent).await.unwrap().unwrap();
    assert!(lease.checkpoint.is_shard_end(), "the parent finished: {}", lease.checkpoint);
    setup.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_keeps_its_lease_in_dynamodb_and_resumes() {
    let setup = Setup::new("paused").await;
    let seen = Recorder::default();
    let worker = setup
        .worker("worker-1")
        .processing(ProcessingConfig::default().checkpointing(Checkpointing::AfterEachBatch))
        .processor_factory({
            let seen = seen.clone();
            move |_: &str| seen.clone()
        })
        .build()
        .unwrap();
    let (pause, shutdown) = (worker.pause_handle(), worker.shutdown_handle());
    let task = tokio::spawn(worker.run());
    let first = setup.put((0..3).map(|i| (format!("k{i}"), format!("before-{i}"))).collect()).await;
    wait_for("the first records", 60, || seen.0.lock().unwrap().len() == 3).await;
    pause.pause();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shard = first[0].shard.clone();
    let before = setup.store.get_lease(&shard).await.unwrap().unwrap();
    setup.put((0..3).map(|i| (format!("k{i}"), format!("during-{i}"))).collect()).await;
    // Twice the lease duration.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(seen.0.lock().unwrap().len(), 3, "nothing delivered while paused");
    let during = setup.store.get_lease(&shard).await.unwrap().unwrap();
    assert_eq!(during.lease_owner.as_deref(), Some("worker-1"));
    assert!(during.lease_counter > before.lease_counter, "renewed while paused");
    assert_eq!(during.checkpoint, before.checkpoint);
    pause.resume();
    wait_for("the records put while paused", 60, || seen.0.lock().unwrap().len() == 6).await;
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
    setup.cleanup().await;
}
