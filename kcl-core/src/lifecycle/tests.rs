//! The shard consumer end to end on the in-memory stream: what processors receive, batch after batch (the batch
//! vector is reused between batches, so these pin down that nothing leaks from one batch into the next).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use super::consumer::recycle;
use crate::deaggregate::{UserRecordInput, aggregate, deaggregate_into};
use crate::lease::MemoryLeaseStore;
use crate::lease::coordinator::LeaseCoordinatorConfig;
use crate::process::BatchResult;
use crate::retrieve::PollingConfig;
use crate::retrieve::memory_stream::{MemoryStream, MemoryStreamConfig};
use crate::{Batch, Checkpointer, ExtendedSequenceNumber, InitialPosition, Record, RecordProcessor, Worker};

/// What a processor saw: each record's position and payload, in delivery order.
#[derive(Default)]
struct Seen {
    records: Mutex<Vec<(ExtendedSequenceNumber, Bytes)>>,
    changed: Notify,
}

impl Seen {
    fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }
}

/// Notes every record; checkpoints each batch, or only once, at `checkpoint_at`, when that is set.
struct Collector {
    seen: Arc<Seen>,
    checkpoint_at: Option<ExtendedSequenceNumber>,
}

#[async_trait::async_trait]
impl RecordProcessor for Collector {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        self.seen
            .records
            .lock()
            .unwrap()
            .extend(batch.records.iter().map(|r| (r.extended_sequence_number(), r.data.clone())));
        match &self.checkpoint_at {
            None => checkpointer.checkpoint().await?,
            Some(at) => {
                if batch.records.iter().any(|r| r.extended_sequence_number() == *at) {
                    checkpointer.checkpoint_at(at.clone()).await?;
                }
            }
        }
        self.seen.changed.notify_waiters();
        Ok(())
    }
}

/// A one-shard stream read 7 raw records at a time, holding plain records and KPL aggregates of varied sizes, so
/// batches grow and shrink.
fn mixed_stream() -> MemoryStream {
    let polling = PollingConfig { max_records: 7, ..MemoryStreamConfig::default().polling };
    let stream = MemoryStream::with_config("consumer-batches", 1, MemoryStreamConfig { polling, ..Default::default() });
    for i in 0..60u32 {
        if i % 5 == 2 {
            let keys: Vec<String> = (0..(i % 13 + 1)).map(|k| format!("user-{i}-{k}")).collect();
            let payloads: Vec<Vec<u8>> = (0..keys.len()).map(|k| format!("agg-{i}-{k}").into_bytes()).collect();
            let inputs: Vec<UserRecordInput<'_>> =
                keys.iter().zip(&payloads).map(|(key, data)| UserRecordInput::new(key, data)).collect();
            stream.put(format!("outer-{i}"), aggregate(&inputs)).unwrap();
        } else {
            stream.put(format!("key-{i}"), format!("plain-{i}")).unwrap();
        }
    }
    stream
}

/// Every user record of the stream's shard, in order.
fn expected(stream: &MemoryStream) -> Vec<(ExtendedSequenceNumber, Bytes)> {
    let mut records: Vec<Record> = Vec::new();
    for raw in stream.records("shardId-000000000000") {
        deaggregate_into(raw, &mut records);
    }
    records.into_iter().map(|r| (r.extended_sequence_number(), r.data)).collect()
}

/// Runs one worker over `stream` until `seen` holds `count` records, then shuts it down gracefully.
async fn consume(
    stream: &MemoryStream,
    store: &Arc<MemoryLeaseStore>,
    worker_id: &str,
    seen: &Arc<Seen>,
    checkpoint_at: Option<ExtendedSequenceNumber>,
    count: usize,
) {
    let for_factory = seen.clone();
    let worker = Worker::builder(stream.name().clone(), "consumer-tests")
        .worker_id(worker_id)
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(store.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build().unwrap())
        .processor_factory(move |_shard: &str| Collector {
            seen: for_factory.clone(),
            checkpoint_at: checkpoint_at.clone(),
        })
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while seen.len() < count {
            let _ = tokio::time::timeout(Duration::from_millis(50), seen.changed.notified()).await;
        }
    })
    .await;
    shutdown.shutdown();
    task.await.unwrap().unwrap();
    assert!(waited.is_ok(), "only {} of {count} records were delivered", seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_record_is_delivered_once_in_order_across_batches_of_every_size() {
    let stream = mixed_stream();
    let want = expected(&stream);
    assert!(want.len() > 100, "the stream holds aggregates");
    let seen = Arc::new(Seen::default());
    consume(&stream, &Arc::new(MemoryLeaseStore::new()), "worker-a", &seen, None, want.len()).await;
    assert_eq!(*seen.records.lock().unwrap(), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_resumes_inside_an_aggregate_after_the_checkpoint() {
    let stream = mixed_stream();
    let want = expected(&stream);
    // A user record in the middle of an aggregate (sub-sequence number > 0, and more user records after it).
    let index = want
        .iter()
        .enumerate()
        .position(|(i, (position, _))| {
            matches!(position, ExtendedSequenceNumber::Sequence { sub_sequence: 3, .. })
                && want.get(i + 1).is_some_and(|(next, _)| next.sequence_number() == position.sequence_number())
                && i > 20
        })
        .expect("an aggregate with more than 4 user records");
    let store = Arc::new(MemoryLeaseStore::new());
    let first = Arc::new(Seen::default());
    consume(&stream, &store, "worker-a", &first, Some(want[index].0.clone()), want.len()).await;
    let second = Arc::new(Seen::default());
    consume(&stream, &store, "worker-b", &second, None, want.len() - index - 1).await;
    assert_eq!(*second.records.lock().unwrap(), want[index + 1..]);
}

#[test]
fn recycled_batch_vectors_keep_room_for_a_similar_batch_only() {
    let record = Record::new("x", "k", crate::SequenceNumber::from_u128(1));
    let big = vec![record.clone(); 10_000];
    let kept = recycle(big, 10_000);
    assert!(kept.is_empty());
    assert!(kept.capacity() >= 10_000, "a batch like the last one fits without growing");
    // After a small batch, a vector grown for a big one gives most of its memory back.
    let mut small = kept;
    small.extend(std::iter::repeat_n(record, 10));
    let kept = recycle(small, 10);
    assert!(kept.is_empty());
    assert!(kept.capacity() < 10_000 && kept.capacity() >= 10);
}
