//! The worker on the in-memory stream: finished shards' leases are released (not kept by anyone) and deleted after
//! the grace period, while every record is processed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::process::BatchResult;
use kcl_core::retrieve::fanout::FanOutConfig;
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Batch, Checkpointer, InitialPosition, RecordProcessor, Retrieval, Worker};

struct Collect(Arc<Mutex<HashSet<Vec<u8>>>>);

#[async_trait::async_trait]
impl RecordProcessor for Collect {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        {
            let mut seen = self.0.lock().unwrap();
            for record in &batch.records {
                seen.insert(record.data.to_vec());
            }
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

async fn wait_for(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_leases_are_released_then_deleted() {
    let stream = MemoryStream::new("cleanup", 2);
    let store = Arc::new(MemoryLeaseStore::new());
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let mut shutdowns = Vec::new();
    let mut tasks = Vec::new();
    for id in ["w1", "w2"] {
        let seen = seen.clone();
        let worker = Worker::builder(stream.name().clone(), "cleanup")
            .worker_id(id)
            .record_source(Arc::new(stream.clone()))
            .shard_lister(Arc::new(stream.clone()))
            .lease_store(store.clone())
            .initial_position(InitialPosition::TrimHorizon)
            .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_millis(600)).build().unwrap())
            .shard_sync_interval(Duration::from_millis(300))
            .finished_lease_grace(Duration::from_millis(300))
            .parent_poll_interval(Duration::from_millis(50))
            .processor_factory(move |_: &str| Collect(seen.clone()))
            .build()
            .unwrap();
        shutdowns.push(worker.shutdown_handle());
        tasks.push(tokio::spawn(worker.run()));
    }
    for i in 0..200 {
        stream.put(format!("key-{i}"), format!("before-{i}")).unwrap();
    }
    let [left, right] = stream.split("shardId-000000000000", 1u128 << 126).unwrap();
    for i in 0..200 {
        stream.put(format!("key-{i}"), format!("after-{i}")).unwrap();
    }
    wait_for("every record", Duration::from_secs(30), async || seen.lock().unwrap().len() == 400).await;
    // The parent's lease finishes, its children start, and after the grace period the sync leader deletes it.
    wait_for("the parent lease to be deleted", Duration::from_secs(30), async || {
        store.get_lease("shardId-000000000000").await.unwrap().is_none()
    })
    .await;
    let leases = store.list_all_leases().await.unwrap();
    let keys: HashSet<&str> = leases.iter().map(|l| l.lease_key.as_str()).collect();
    assert!(keys.contains(left.as_str()) && keys.contains(right.as_str()), "children keep their leases: {keys:?}");
    assert!(leases.iter().all(|l| !l.checkpoint.is_shard_end() || l.lease_owner.is_none()), "{leases:?}");
    for shutdown in &shutdowns {
        shutdown.shutdown();
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

#[test]
fn the_builder_explains_bad_configuration() {
    let stream = MemoryStream::new("config", 1);
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let factory = |_: &str| Collect(Arc::default());
    let base = || {
        Worker::builder(stream.name().clone(), "app")
            .record_source(Arc::new(stream.clone()))
            .shard_lister(Arc::new(stream.clone()))
            .lease_store(store.clone())
            .processor_factory(factory)
    };
    assert!(base().build().is_ok());
    let message = |result: Result<Worker<_>, kcl_core::KclError>| match result {
        Err(kcl_core::KclError::InvalidConfig(message)) => message,
        Err(other) => panic!("expected InvalidConfig, got {other}"),
        Ok(_) => panic!("expected an error"),
    };
    assert!(message(Worker::builder("", "app").processor_factory(factory).build()).contains("stream"));
    assert!(message(base().worker_id("").build()).contains("worker_id"));
    assert!(message(base().retry_backoff(Duration::from_secs(2), Duration::from_secs(1)).build()).contains("retry"));
    assert!(
        message(
            Worker::builder("s", "app")
                .record_source(Arc::new(stream.clone()))
                .shard_lister(Arc::new(stream.clone()))
                .processor_factory(factory)
                .build()
        )
        .contains("lease store")
    );
    assert!(
        message(Worker::builder("s", "app").lease_store(store.clone()).processor_factory(factory).build())
            .contains("kinesis_client")
    );
    assert!(
        message(
            Worker::builder("s", "app")
                .record_source(Arc::new(stream.clone()))
                .lease_store(store.clone())
                .processor_factory(factory)
                .build()
        )
        .contains("shard_lister")
    );

    // Enhanced fan-out through a Kinesis client: built without a call (the consumer is registered on first use).
    let client = aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .build(),
    );
    let fan_out = |retrieval: Retrieval| {
        Worker::builder("s", "app")
            .kinesis_client(client.clone())
            .retrieval(retrieval)
            .lease_store(store.clone())
            .processor_factory(factory)
            .build()
    };
    assert!(fan_out(Retrieval::fan_out()).is_ok());
    let unnamed = Retrieval::FanOut { consumer_name: Some(String::new()), config: FanOutConfig::default() };
    assert!(message(fan_out(unnamed)).contains("consumer name"));
    let config = FanOutConfig::default().with_max_buffered_events(0);
    assert!(message(fan_out(Retrieval::FanOut { consumer_name: None, config })).contains("max_buffered_events"));
}
