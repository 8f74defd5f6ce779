//! Regression (found by the chaos suite): a merge child must not start before a parent that has no lease yet.
//!
//! Shard 1 is split into 2 and 3 while its processor is stuck; then 0 and 2 are merged into 4. When shard 0 ends,
//! its consumer creates the lease of 4 (parents 0 and 2) from `ChildShards`, but 2 has no lease yet: it gets one
//! only when shard 1 ends. Treating the missing parent lease as "finished" started 4 at once, so a key's records put
//! into 4 were processed before its earlier records in 2. The child must wait while the parent shard is still in
//! the stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kcl_core::discover::{ShardListFilter, ShardLister};
use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::process::{BatchResult, InitializeInput, ProcessorError};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Batch, Checkpointer, InitialPosition, KclError, RecordProcessor, SequenceNumber, Shard, Worker};
use tokio::sync::watch;

fn id(n: u32) -> String {
    format!("shardId-{n:012}")
}

/// The stream as the worker lists it, counting the listings.
struct CountingLister {
    stream: MemoryStream,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl ShardLister for CountingLister {
    async fn list_shards(&self, filter: ShardListFilter) -> Result<Vec<Shard>, KclError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.stream.list_shards(filter).await
    }
}

#[derive(Default)]
struct Seen {
    /// (shard, partition key, sequence number) in processing order.
    processed: Vec<(String, String, SequenceNumber)>,
    /// Shards whose processor was initialized, in order.
    initialized: Vec<String>,
}

struct Processor {
    shard: String,
    seen: Arc<Mutex<Seen>>,
    /// Shard 1's processor holds its batches until this is `true`.
    release: watch::Receiver<bool>,
    stuck: watch::Sender<bool>,
}

#[async_trait]
impl RecordProcessor for Processor {
    async fn initialize(&mut self, _input: InitializeInput) -> Result<(), ProcessorError> {
        self.seen.lock().unwrap().initialized.push(self.shard.clone());
        Ok(())
    }

    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        if self.shard == id(1) && !batch.records.is_empty() {
            self.stuck.send_replace(true);
            let _ = self.release.wait_for(|released| *released).await;
        }
        {
            let mut seen = self.seen.lock().unwrap();
            for record in &batch.records {
                let entry = (self.shard.clone(), record.partition_key.to_string(), record.sequence_number.clone());
                seen.processed.push(entry);
            }
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

async fn wait_for(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_child_waits_for_a_parent_whose_lease_does_not_exist_yet() {
    let stream = MemoryStream::new("merge-order", 2);
    let store = Arc::new(MemoryLeaseStore::new());
    let listings = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (release, released) = watch::channel(false);
    let (stuck_tx, mut stuck) = watch::channel(false);
    // Each key's puts in order, with the shard each landed in.
    let mut puts: HashMap<String, Vec<SequenceNumber>> = HashMap::new();
    let mut put_round = |round: usize| {
        for k in 0..40 {
            let key = format!("key-{k}");
            let put = stream.put(key.clone(), format!("{key} round {round}")).unwrap();
            puts.entry(key).or_default().push(put.sequence_number);
        }
    };
    put_round(0);
    let worker = Worker::builder(stream.name().clone(), "app")
        .worker_id("worker-1")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(CountingLister { stream: stream.clone(), calls: listings.clone() }))
        .lease_store(store.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .shard_sync_interval(Duration::from_secs(3600))
        .parent_poll_interval(Duration::from_millis(20))
        .processor_factory({
            let seen = seen.clone();
            move |shard: &str| Processor {
                shard: shard.to_owned(),
                seen: seen.clone(),
                release: released.clone(),
                stuck: stuck_tx.clone(),
            }
        })
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    tokio::time::timeout(Duration::from_secs(30), stuck.wait_for(|s| *s)).await.expect("shard 1 stuck").unwrap();

    let range = stream.shards().into_iter().find(|s| s.shard_id == id(1)).expect("shard 1").hash_key_range;
    let [lower, _upper] = stream.split(&id(1), range.start + (range.end - range.start) / 2).unwrap();
    assert_eq!(lower, id(2));
    put_round(1);
    assert_eq!(stream.merge(&id(0), &id(2)).unwrap(), id(4));
    put_round(2);

    // Shard 0 ends and creates the lease of 4, whose parent 2 has no lease while shard 1 is stuck.
    wait_for("shard 0 to finish and create the lease of 4", async || {
        let zero = store.get_lease(&id(0)).await.unwrap().is_some_and(|l| l.checkpoint.is_shard_end());
        zero && store.get_lease(&id(4)).await.unwrap().is_some()
    })
    .await;
    assert!(store.get_lease(&id(2)).await.unwrap().is_none(), "shard 2 has no lease yet");
    // Until 4 started (the bug) or its consumer looked the parent up in the stream twice (waiting for it).
    let before = listings.load(Ordering::SeqCst);
    wait_for("shard 4 to start or to wait for its parent", async || {
        seen.lock().unwrap().initialized.contains(&id(4)) || listings.load(Ordering::SeqCst) >= before + 2
    })
    .await;
    release.send_replace(true);

    let total: usize = puts.values().map(Vec::len).sum();
    wait_for("every record", async || seen.lock().unwrap().processed.len() >= total).await;
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();

    let seen = seen.lock().unwrap();
    let position = |shard: &str| seen.initialized.iter().position(|s| s == shard);
    assert!(position(&id(4)) > position(&id(2)), "shard 4 started before its parent 2: {:?}", seen.initialized);
    // Per key, first processing follows put order.
    let mut first: HashMap<&str, Vec<&SequenceNumber>> = HashMap::new();
    for (_, key, sequence) in &seen.processed {
        let order = first.entry(key.as_str()).or_default();
        if !order.contains(&sequence) {
            order.push(sequence);
        }
    }
    for (key, put) in &puts {
        let got: Vec<&SequenceNumber> = first[key.as_str()].clone();
        assert_eq!(got, put.iter().collect::<Vec<_>>(), "{key}'s records out of put order");
    }
}
