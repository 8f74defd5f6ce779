//! A worker whose stream does not exist (kinesis-mock): one ERROR names the stream and the remedy instead of a WARN
//! per retry, and with `give_up_after` `Worker::run` returns that error.
//!
//! Its own test binary: it installs a global log subscriber to read what the worker logged.

use std::sync::Arc;
use std::time::Duration;

use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::{Batch, BatchResult, Checkpointer, RecordProcessor, Worker};

struct Nothing;

#[async_trait::async_trait]
impl RecordProcessor for Nothing {
    async fn process_records(&mut self, _: &Batch, _: &mut Checkpointer) -> BatchResult {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_named_once_and_run_gives_up_after_the_limit() {
    let captured = kcl_tests::logs::CapturedLogs::install_global();

    let client = kcl_tests::emulators().kinesis_client().await;
    let stream = kcl_tests::unique_name("no-such-stream");
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let worker = Worker::builder(stream.clone(), "app")
        .worker_id("unavailable-worker")
        .kinesis_client(client)
        .lease_store(store)
        .give_up_after(Duration::from_secs(3))
        .processor_factory(|_: &str| Nothing)
        .build()
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), worker.run()).await.expect("run returns");
    let error = result.expect_err("a worker whose stream is missing gives up").to_string();
    assert!(error.contains(&stream) && error.contains("does not exist"), "{error}");

    let logs = captured.text();
    let errors: Vec<&str> = logs.lines().filter(|line| line.contains("ERROR")).collect();
    // One ERROR when the outage starts (several retries follow, one a second), one when the worker gives up.
    assert_eq!(errors.len(), 2, "{logs}");
    assert!(errors[0].contains(&stream) && errors[0].contains("create it"), "names stream and remedy: {}", errors[0]);
    assert!(errors[1].contains("giving up"), "{}", errors[1]);
    assert!(!logs.contains("shard sync failed; will retry"), "no WARN per retry:\n{logs}");
}
