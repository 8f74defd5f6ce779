//! Workers reading with enhanced fan-out (`Retrieval::FanOut`) on kinesis-mock, the acceptance tests of issue 6:
//! two workers share a 4-shard stream while records are put continuously; subscriptions are killed by cutting their
//! connections (plain HTTP/1.1 event streams on the shared kinesis-mock, TLS + HTTP/2 on a private one) and resumed
//! without loss. The processor-level suite runs with fan-out in `pipeline.rs` (`fanout::…`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kcl_core::lease::MemoryLeaseStore;
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::process::BatchResult;
use kcl_core::retrieve::fanout::FanOutConfig;
use kcl_core::{
    Batch, Checkpointer, InitialPosition, KclError, RecordProcessor, Retrieval, SequenceNumber, ShutdownHandle, Worker,
};
use kcl_tests::kinesis::{create_stream, delete_stream};
use kcl_tests::own_kinesis::OwnKinesis;
use kcl_tests::proxy::CuttingProxy;
use kcl_tests::{emulators, unique_name};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long any condition may take: generous, the machine is shared.
const PATIENCE: Duration = Duration::from_secs(90);

/// shard → sequence numbers, as `PutRecords` reported them.
type Written = BTreeMap<String, Vec<SequenceNumber>>;

/// What each processor instance saw: (shard, worker, instance number) → sequence numbers in delivery order.
type Seen = Arc<Mutex<BTreeMap<(String, String, usize), Vec<SequenceNumber>>>>;

/// `RUST_LOG=kcl_core=debug` shows the readers' subscribe decisions when a test fails.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

struct Collect {
    key: (String, String, usize),
    seen: Seen,
}

#[async_trait::async_trait]
impl RecordProcessor for Collect {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        {
            let mut seen = self.seen.lock().unwrap();
            let list = seen.entry(self.key.clone()).or_default();
            list.extend(batch.records.iter().map(|r| r.sequence_number.clone()));
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

struct Running {
    shutdown: ShutdownHandle,
    task: JoinHandle<Result<(), KclError>>,
}

/// A fan-out worker through the stream consumer named after the application (as on AWS, every worker shares it),
/// with 2 s leases, `TRIM_HORIZON`, and the test's short fan-out retries.
fn start_worker(
    client: &Client,
    stream: &str,
    app: &str,
    id: &str,
    store: &Arc<MemoryLeaseStore>,
    seen: &Seen,
) -> Running {
    let config = FanOutConfig::default()
        // kinesis-mock frees the subscription of a reader that went away within a second or two (lease handoff,
        // cut connection) and answers ResourceInUseException until then: short retries keep up with it.
        .with_retry_base(Duration::from_millis(100))
        .with_retry_cap(Duration::from_secs(1))
        .with_health_timeout(Duration::from_secs(20));
    let instances = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (seen, worker_id) = (seen.clone(), id.to_owned());
    let worker = Worker::builder(stream, app)
        .worker_id(id)
        .kinesis_client(client.clone())
        .retrieval(Retrieval::FanOut { consumer_name: None, config })
        .lease_store(store.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build().unwrap())
        .shard_sync_interval(Duration::from_secs(1))
        .processor_factory(move |shard: &str| Collect {
            key: (shard.to_owned(), worker_id.clone(), instances.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
            seen: seen.clone(),
        })
        .build()
        .unwrap();
    Running { shutdown: worker.shutdown_handle(), task: tokio::spawn(worker.run()) }
}

async fn stop(workers: Vec<Running>) {
    for worker in &workers {
        worker.shutdown.shutdown();
    }
    for worker in workers {
        tokio::time::timeout(Duration::from_secs(30), worker.task).await.expect("worker stops").unwrap().unwrap();
    }
}

/// Puts 10 records (one `PutRecords`) every 50 ms until `stop` is set; returns what was put.
fn producer(client: &Client, stream: &str, mut stop: watch::Receiver<bool>) -> JoinHandle<Written> {
    let (client, stream) = (client.clone(), stream.to_owned());
    tokio::spawn(async move {
        let mut written = Written::new();
        let mut n = 0;
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
            n += 10;
            let output =
                client.put_records().stream_name(&stream).set_records(Some(entries)).send().await.expect("PutRecords");
            for entry in output.records {
                written
                    .entry(entry.shard_id.unwrap())
                    .or_default()
                    .push(entry.sequence_number.unwrap().parse().unwrap());
            }
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        written
    })
}

/// Waits until `done` holds, checking every 100 ms; panics with `what` after [`PATIENCE`].
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {PATIENCE:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn processed(seen: &Seen) -> BTreeSet<SequenceNumber> {
    seen.lock().unwrap().values().flatten().cloned().collect()
}

/// Every put record was processed; each processor instance saw only its shard's records, strictly in order; with
/// `exactly_once`, no record was processed twice.
fn judge(seen: &Seen, written: &Written, exactly_once: bool) {
    let seen = seen.lock().unwrap();
    let mut all = Vec::new();
    for ((shard, worker, instance), sequences) in seen.iter() {
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "shard {shard} on {worker} (#{instance}) out of order");
        let own: BTreeSet<&SequenceNumber> = written.get(shard).map(|v| v.iter().collect()).unwrap_or_default();
        assert!(sequences.iter().all(|s| own.contains(s)), "shard {shard} got another shard's records");
        all.extend(sequences.iter().cloned());
    }
    let delivered: BTreeSet<SequenceNumber> = all.iter().cloned().collect();
    let missing = written.values().flatten().filter(|s| !delivered.contains(*s)).count();
    assert_eq!(missing, 0, "records never processed");
    if exactly_once {
        assert_eq!(all.len(), delivered.len(), "records processed more than once");
    }
}

/// Two workers, fan-out, 4 shards, records put continuously from before the workers start until both have
/// processed records: every record is processed, in per-shard order by every processor instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fan_out_workers_process_every_record_in_shard_order() {
    init_tracing();
    let client = emulators().kinesis_client().await;
    let name = unique_name("fanout-worker");
    create_stream(&client, &name, 4).await;
    let app = unique_name("app");
    let store = Arc::new(MemoryLeaseStore::new());
    let seen: Seen = Arc::default();
    let (stop_producer, stopped) = watch::channel(false);
    let producer = producer(&client, &name, stopped);
    let workers: Vec<Running> =
        ["w1", "w2"].iter().map(|id| start_worker(&client, &name, &app, id, &store, &seen)).collect();

    // Both workers take part (the leases balance while records flow), then the producer stops.
    wait_for("both workers to process records", || {
        let seen = seen.lock().unwrap();
        ["w1", "w2"].iter().all(|id| seen.iter().any(|((_, worker, _), s)| worker == id && !s.is_empty()))
    })
    .await;
    stop_producer.send_replace(true);
    let written = producer.await.expect("producer");
    assert_eq!(written.len(), 4, "every shard got records");
    let expected: BTreeSet<SequenceNumber> = written.values().flatten().cloned().collect();
    wait_for("every record to be processed", || processed(&seen).is_superset(&expected)).await;
    stop(workers).await;
    // A lease moving between workers may hand a few records to both (at-least-once), never out of order.
    judge(&seen, &written, false);
    delete_stream(&client, &name).await;
}

/// Cuts every connection of a fan-out worker three times while records flow, each time once records are flowing
/// again: the open subscriptions die mid-stream, kinesis-mock frees them a second or two later (answering
/// ResourceInUseException until then), and the readers resubscribe after the last record they queued. Every record
/// is processed exactly once, in shard order. `direct` puts records; `proxied` (through `proxy`) is the worker's.
async fn killed_subscriptions_resume_without_loss(direct: Client, proxied: Client, proxy: &CuttingProxy) {
    let name = unique_name("fanout-cut");
    create_stream(&direct, &name, 2).await;
    let store = Arc::new(MemoryLeaseStore::new());
    let seen: Seen = Arc::default();
    let worker = start_worker(&proxied, &name, &unique_name("app"), "w1", &store, &seen);
    let (stop_producer, stopped) = watch::channel(false);
    let producer = producer(&direct, &name, stopped);

    let count = || seen.lock().unwrap().values().map(Vec::len).sum::<usize>();
    for cut in 0..3 {
        let before = count();
        wait_for(&format!("records to flow before cut {cut}"), || count() >= before + 20).await;
        // Records can flow while a subscription has just ended and its successor is not connected yet: cutting
        // nothing then is a no-op, so cut again until a connection was open (bounded).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while proxy.cut_all() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "cut {cut}: the worker opened no connection in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let before = count();
    wait_for("records to flow after the last cut", || count() >= before + 20).await;
    stop_producer.send_replace(true);
    let written = producer.await.expect("producer");
    let expected: BTreeSet<SequenceNumber> = written.values().flatten().cloned().collect();
    wait_for("every record to be processed", || processed(&seen).is_superset(&expected)).await;
    stop(vec![worker]).await;
    judge(&seen, &written, true);
    delete_stream(&direct, &name).await;
}

/// Over plain HTTP kinesis-mock streams events on HTTP/1.1: one connection per subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_is_resumed_without_loss_over_http1() {
    init_tracing();
    let direct = emulators().kinesis_client().await;
    let port: u16 = emulators().kinesis_endpoint().rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let proxy = CuttingProxy::start(port).await.expect("proxy");
    let sdk = kcl_tests::Emulators::sdk_config(&format!("http://127.0.0.1:{}", proxy.port())).await;
    killed_subscriptions_resume_without_loss(direct, Client::new(&sdk), &proxy).await;
}

/// Over TLS with HTTP/2, as on AWS: the subscriptions share one multiplexed connection, and a cut kills them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_is_resumed_without_loss_over_tls_and_http2() {
    init_tracing();
    let kinesis = OwnKinesis::start_tls().await.expect("private kinesis-mock");
    let direct = kinesis.tls_client().await.expect("TLS client");
    let proxy = CuttingProxy::start(kinesis.tls_port).await.expect("proxy");
    let proxied = kinesis.tls_client_at(proxy.port()).await.expect("TLS client through the proxy");
    killed_subscriptions_resume_without_loss(direct, proxied, &proxy).await;
    kinesis.stop().await;
}
