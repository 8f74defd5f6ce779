//! `kcl-admin dashboard` in a real browser (headless Chromium) against kinesis-mock and DynamoDB Local: a fleet of
//! three kcl-rs workers consumes a stream while records are put; the stream is resharded (a split) and a worker is
//! killed; the page must show the owners, the parent and its children, lag figures with their sparkline, the lease
//! moves of the failover, and per-worker throughput. A second test points the dashboard at a table and a stream
//! that do not exist: the page shows both errors instead of a blank screen.
//!
//! The screenshot of the fleet test is kept at `target/dashboard-test/dashboard.png`.

#[path = "dashboard/browser.rs"]
mod browser;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kcl_core::lease::LeaseStore;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::process::{BatchResult, Checkpointing, ProcessingConfig};
use kcl_core::retrieve::PollingConfig;
use kcl_core::{Batch, Checkpointer, InitialPosition, KclError, RecordProcessor, ShutdownHandle, Worker};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::{emulators, unique_name};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use browser::{attr, elements, section};

/// How long any fleet condition may take: the machine is shared.
const PATIENCE: Duration = Duration::from_secs(120);
const SHARD_0: &str = "shardId-000000000000";

/// Checkpoints after every batch.
struct Checkpointing1;

#[async_trait::async_trait]
impl RecordProcessor for Checkpointing1 {
    async fn process_records(&mut self, _batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// A worker on its own runtime, so that a kill stops every task it spawned (its lease renewer too) at once, like a
/// crash: nothing is released.
struct Running {
    runtime: tokio::runtime::Runtime,
    shutdown: ShutdownHandle,
    task: JoinHandle<Result<(), KclError>>,
}

impl Running {
    fn kill(self) {
        self.runtime.shutdown_background();
    }

    async fn stop(self) {
        self.shutdown.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
        self.runtime.shutdown_background();
    }
}

async fn start_worker(table: &str, stream: &str, id: &str) -> Running {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (table, stream, id) = (table.to_owned(), stream.to_owned(), id.to_owned());
    let (handle_tx, handle_rx) = tokio::sync::oneshot::channel();
    let task = runtime.spawn(async move {
        // Clients of this runtime: their connections die with it.
        let kinesis = emulators().kinesis_client().await;
        let dynamodb = emulators().dynamodb_client().await;
        let store = Arc::new(DynamoLeaseStore::builder(dynamodb, &table).build().await.expect("lease table"));
        let worker = Worker::builder(stream.as_str(), table.as_str())
            .worker_id(id.as_str())
            .kinesis_client(kinesis)
            .lease_store(store)
            .initial_position(InitialPosition::TrimHorizon)
            .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build().unwrap())
            .shard_sync_interval(Duration::from_secs(1))
            .polling_config(PollingConfig::default().with_idle_time_between_reads(Duration::from_millis(200)))
            .processing(ProcessingConfig::default().checkpointing(Checkpointing::AfterEachBatch))
            .processor_factory(|_: &str| Checkpointing1)
            .build()
            .unwrap();
        let _ = handle_tx.send(worker.shutdown_handle());
        worker.run().await
    });
    let shutdown = handle_rx.await.expect("the worker started");
    Running { runtime, shutdown, task }
}

/// Puts 10 records every 100 ms until `stop` is set; returns how many it put.
fn producer(kinesis: &aws_sdk_kinesis::Client, stream: &str, mut stop: watch::Receiver<bool>) -> JoinHandle<u64> {
    let (kinesis, stream) = (kinesis.clone(), stream.to_owned());
    tokio::spawn(async move {
        let mut n = 0u64;
        while !*stop.borrow() {
            let entries = (n..n + 10)
                .map(|i| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(format!("key-{i}"))
                        .data(Blob::new(format!("record-{i}")))
                        .build()
                        .unwrap()
                })
                .collect();
            kinesis.put_records().stream_name(&stream).set_records(Some(entries)).send().await.expect("PutRecords");
            n += 10;
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        n
    })
}

/// `kcl-admin dashboard` on a free port; returns the process and the page's URL.
async fn dashboard(table: &str, stream: &str) -> (Child, String) {
    let emulators = emulators();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kcl-admin"))
        .args(["dashboard", "--table", table, "--stream", stream, "--bind", "127.0.0.1:0", "--interval", "1"])
        .args([
            "--kinesis-endpoint",
            emulators.kinesis_endpoint(),
            "--dynamodb-endpoint",
            emulators.dynamodb_endpoint(),
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start kcl-admin dashboard");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the dashboard printed its URL")
        .expect("read the dashboard's stdout")
        .expect("a URL line");
    let url = line.rsplit(" at ").next().expect("`… at URL`").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    (child, url)
}

/// GETs `/state.json` with a plain TCP request (the state the page is rendered from), to wait for scans.
async fn state(url: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect to the dashboard");
    stream.write_all(b"GET /state.json HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("/state.json is not JSON ({e}): {response}"))
}

/// Waits until `condition` holds for the store's leases.
async fn wait_leases(store: &DynamoLeaseStore, what: &str, condition: impl Fn(&[kcl_core::lease::Lease]) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let leases = store.list_all_leases().await.unwrap_or_default();
        if condition(&leases) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}: {leases:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the dashboard has made `scans` more scans than now.
async fn wait_scans(url: &str, scans: u64) {
    let target = state(url).await["scans"].as_u64().unwrap_or(0) + scans;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while state(url).await["scans"].as_u64().unwrap_or(0) < target {
        assert!(tokio::time::Instant::now() < deadline, "the dashboard stopped scanning");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_shows_owners_lag_children_and_the_moves_of_a_failover() {
    let kinesis = emulators().kinesis_client().await;
    let dynamodb = emulators().dynamodb_client().await;
    let stream = unique_name("dash");
    let table = unique_name("dash-app");
    kcl_tests::kinesis::create_stream(&kinesis, &stream, 2).await;
    let store = Arc::new(DynamoLeaseStore::builder(dynamodb.clone(), &table).build().await.expect("lease table"));
    let (stop_tx, stop_rx) = watch::channel(false);
    let produced = producer(&kinesis, &stream, stop_rx);
    let (mut admin, url) = dashboard(&table, &stream).await;

    let mut workers: BTreeMap<&str, Running> = BTreeMap::new();
    for id in ["w1", "w2", "w3"] {
        workers.insert(id, start_worker(&table, &stream, id).await);
    }
    wait_leases(&store, "both shards owned", |leases| {
        leases.len() == 2 && leases.iter().all(|l| l.lease_owner.is_some())
    })
    .await;

    // Reshard: split shard 0; its lease ends, its two children get leases and owners.
    let split_at = (1u128 << 126).to_string();
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(SHARD_0)
        .new_starting_hash_key(split_at)
        .send()
        .await
        .expect("SplitShard");
    kcl_tests::kinesis::wait_active(&kinesis, &stream).await;
    wait_leases(&store, "the parent finished and its children owned", |leases| {
        let parent_done = leases.iter().any(|l| l.shard_id == SHARD_0 && l.checkpoint.is_shard_end());
        let children: Vec<_> = leases.iter().filter(|l| l.parent_shard_ids.iter().any(|p| p == SHARD_0)).collect();
        parent_done && children.len() == 2 && children.iter().all(|l| l.lease_owner.is_some())
    })
    .await;

    // Kill the owner of an open lease (a crash: nothing is released); another worker takes its leases.
    let leases = store.list_all_leases().await.unwrap();
    let victim_lease = leases.iter().find(|l| !l.checkpoint.is_shard_end() && l.lease_owner.is_some()).unwrap();
    let victim = victim_lease.lease_owner.clone().unwrap();
    let orphans: Vec<String> = leases
        .iter()
        .filter(|l| !l.checkpoint.is_shard_end() && l.lease_owner.as_deref() == Some(victim.as_str()))
        .map(|l| l.lease_key.clone())
        .collect();
    workers.remove(victim.as_str()).unwrap().kill();
    wait_leases(&store, "the killed worker's leases taken over", |leases| {
        orphans.iter().all(|key| {
            leases.iter().any(|l| &l.lease_key == key && l.lease_owner.as_ref().is_some_and(|o| *o != victim))
        })
    })
    .await;

    // Stop putting; once the survivors caught up, every open shard's lag is 0.
    stop_tx.send(true).unwrap();
    let put = produced.await.unwrap();
    assert!(put > 0);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        wait_scans(&url, 1).await;
        let view = state(&url).await;
        let shards = view["shards"].as_array().cloned().unwrap_or_default();
        let open_caught_up = shards
            .iter()
            .filter(|s| s["open"] == true)
            .all(|s| s["status"] == "caught_up" && s["millis_behind_latest"] == 0);
        if open_caught_up && shards.len() == 4 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the fleet did not catch up: {view:#}");
    }
    // An item no store can read (a non-numeric leaseCounter), as an operator's hand edit would leave it: the page
    // lists it with the attribute to blame.
    dynamodb
        .put_item()
        .table_name(&table)
        .item("leaseKey", AttributeValue::S("hand-edited-item".to_owned()))
        .item("leaseCounter", AttributeValue::S("not-a-number".to_owned()))
        .send()
        .await
        .expect("PutItem of an unreadable item");
    wait_scans(&url, 2).await;
    let view = state(&url).await;

    // What the browser shows (after the refresh script ran at least once).
    let dom = browser::dom(&url, 2500).await;
    let screenshot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-test/dashboard.png");
    browser::screenshot(&url, &screenshot, 1400, 900).await;
    println!("screenshot: {}", screenshot.display());

    let body = elements(&dom, "<body").into_iter().next().expect("a body");
    let refreshes: u64 = attr(body, "data-refreshes").and_then(|r| r.parse().ok()).unwrap_or(0);
    assert!(refreshes >= 1, "the refresh script replaced the live part at least once: {body}");
    assert!(section(&dom, "<section id=\"problems\"", "</section>").find("class=\"problem\"").is_none(), "{dom}");

    // The lease map: one row per shard with the owner from the table, the parent finished, the children under it.
    let rows = elements(&dom, "<tr data-shard=");
    assert_eq!(rows.len(), 4, "two original shards and two children: {dom}");
    let leases = store.list_all_leases().await.unwrap();
    for row in &rows {
        let shard = attr(row, "data-shard").unwrap();
        let lease = leases.iter().find(|l| l.shard_id == shard).expect("a lease per shard");
        if lease.checkpoint.is_shard_end() {
            assert_eq!(attr(row, "data-status"), Some("finished"), "{row}");
        } else {
            assert_eq!(attr(row, "data-owner"), lease.lease_owner.as_deref(), "{row}");
            assert_ne!(attr(row, "data-owner"), Some(victim.as_str()), "{row}");
            assert_eq!(attr(row, "data-status"), Some("caught_up"), "{row}");
        }
    }
    let lease_map = section(&dom, "<section id=\"leases\"", "</section>");
    let parent = leases.iter().find(|l| l.shard_id == SHARD_0).expect("the parent's lease");
    assert_eq!(parent.child_shard_ids.len(), 2, "{parent:?}");
    let children = parent.child_shard_ids.join(", ");
    assert!(lease_map.contains(&format!("– → {children}")), "the parent names its children: {lease_map}");
    assert!(lease_map.contains(&format!("{SHARD_0} → –")), "a child names its parent: {lease_map}");

    // Lag figures: 0 now on every open shard, a number on each, and a sparkline of the window's samples.
    let lags = elements(lease_map, "<td class=\"num lag\"");
    let measured: Vec<u64> = lags.iter().filter_map(|td| attr(td, "data-millis")?.parse().ok()).collect();
    assert_eq!(measured.len(), 3, "three open shards measured: {lease_map}");
    assert!(measured.iter().all(|m| *m == 0), "{measured:?}");
    let sparklines = elements(lease_map, "<svg class=\"spark\"");
    assert!(!sparklines.is_empty(), "{lease_map}");
    let samples: u64 = sparklines.iter().filter_map(|s| attr(s, "data-samples")?.parse().ok()).max().unwrap_or(0);
    assert!(samples >= 3, "sparklines hold several scans: {sparklines:?}");
    let peak: u64 = sparklines.iter().filter_map(|s| attr(s, "data-max")?.parse().ok()).max().unwrap_or(0);
    assert!(peak > 1, "records were behind at some scan while records were put: {sparklines:?}");

    // The moves: each orphan moved from the victim to a survivor; both also in /state.json.
    let moves = elements(&dom, "<tr class=\"move\"");
    for orphan in &orphans {
        let moved = moves.iter().any(|m| {
            attr(m, "data-lease") == Some(orphan.as_str())
                && attr(m, "data-from") == Some(victim.as_str())
                && attr(m, "data-to").is_some_and(|to| !to.is_empty() && to != victim)
        });
        assert!(moved, "the page shows {orphan} moving away from {victim}: {moves:?}");
    }

    // Workers: the survivors own every open lease between them, and the counts on the page add up to the table's.
    let worker_rows = elements(&dom, "<tr data-worker=");
    let open_leases = leases.iter().filter(|l| !l.checkpoint.is_shard_end()).count();
    let mut owned = 0;
    for row in &worker_rows {
        let id = attr(row, "data-worker").unwrap();
        let count: usize = attr(row, "data-leases").and_then(|c| c.parse().ok()).unwrap();
        let in_table = leases.iter().filter(|l| l.lease_owner.as_deref() == Some(id)).count();
        assert_eq!(count, in_table, "{id}: {row}");
        owned += count;
    }
    assert!(owned >= open_leases, "{worker_rows:?}");
    let counted: u64 = view["workers"].as_array().unwrap().iter().filter_map(|w| w["records_in_window"].as_u64()).sum();
    assert!(counted > 0 && counted <= put, "records counted from checkpoint moves: {counted} of {put} put");
    let unreadable = section(&dom, "<section id=\"unreadable\"", "</section>");
    assert!(unreadable.contains("data-available=\"true\""), "{unreadable}");
    assert!(unreadable.contains("hand-edited-item") && unreadable.contains("leaseCounter"), "{unreadable}");
    assert!(!unreadable.contains("not-a-number"), "the page names the attribute, never its value: {unreadable}");

    for (_, worker) in workers {
        worker.stop().await;
    }
    admin.kill().await.expect("stop the dashboard");
    kcl_tests::kinesis::delete_stream(&kinesis, &stream).await;
    let _ = dynamodb.delete_table().table_name(&table).send().await;
}

#[tokio::test]
async fn a_missing_table_and_stream_are_shown_on_the_page() {
    let table = unique_name("dash-missing");
    let stream = unique_name("dash-missing");
    let (mut admin, url) = dashboard(&table, &stream).await;
    wait_scans(&url, 1).await;
    let dom = browser::dom(&url, 500).await;
    let problems = elements(&dom, "<div class=\"problem\"");
    let sources: Vec<&str> = problems.iter().filter_map(|p| attr(p, "data-source")).collect();
    assert_eq!(sources, ["lease table", "Kinesis"], "{dom}");
    let text = section(&dom, "<section id=\"problems\"", "</section>");
    assert!(text.contains(&format!("DynamoDB table `{table}` does not exist")), "{text}");
    assert!(text.contains(&format!("Kinesis stream `{stream}` does not exist")), "{text}");
    assert!(dom.contains("<h1>kcl-admin dashboard</h1>"), "the page itself is there: {dom}");
    admin.kill().await.expect("stop the dashboard");
}
