//! The in-memory stream: routing, resharding lineage, and readers from every kind of start position.

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{read_to_end, read_until, seqs};
use kcl_core::retrieve::memory_stream::{MemoryStream, partition_key_hash};
use kcl_core::retrieve::{ChildShard, PollingFetcher, RecordSource, ShardSpec};
use kcl_core::{ExtendedSequenceNumber, HashKeyRange, InitialPosition};

const S0: &str = "shardId-000000000000";
const S1: &str = "shardId-000000000001";

fn spec(stream: &MemoryStream, shard: &str) -> ShardSpec {
    ShardSpec::new(stream.name().clone(), shard)
}

#[test]
fn routes_by_big_endian_md5_of_the_partition_key() {
    assert_eq!(partition_key_hash("a"), 0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661);
    let stream = MemoryStream::new("routing", 4);
    let shards = stream.shards();
    assert_eq!(shards.len(), 4);
    assert_eq!(shards[0].hash_key_range.start, 0);
    assert_eq!(shards[3].hash_key_range.end, u128::MAX);
    for pair in shards.windows(2) {
        assert_eq!(pair[0].hash_key_range.end + 1, pair[1].hash_key_range.start, "ranges tile the key space");
    }
    for i in 0..200 {
        let key = format!("key-{i}");
        let put = stream.put(key.as_str(), "x").unwrap();
        let owner = shards.iter().find(|s| s.hash_key_range.contains(partition_key_hash(&key))).unwrap();
        assert_eq!(*put.shard_id, *owner.shard_id);
    }
    let explicit = stream.put_with_hash(u128::MAX, "any", "x").unwrap();
    assert_eq!(&*explicit.shard_id, "shardId-000000000003");
}

#[test]
fn sequence_numbers_increase_within_each_shard() {
    let stream = MemoryStream::new("seq", 3);
    stream.put_batch((0..300).map(|i| (format!("k{i}"), Bytes::from(vec![b'x'; 10])))).unwrap();
    for shard in stream.shards() {
        let records = stream.records(&shard.shard_id);
        assert!(!records.is_empty());
        assert!(records.windows(2).all(|w| w[0].sequence_number < w[1].sequence_number));
        assert!(records[0].sequence_number >= shard.sequence_number_range.start);
    }
}

#[test]
fn split_and_merge_give_kinesis_lineage_and_ranges() {
    let stream = MemoryStream::new("reshard", 2);
    let half = stream.shards()[1].hash_key_range.start;
    let [low, high] = stream.split(S0, half / 2).unwrap();
    assert_eq!((low.as_str(), high.as_str()), ("shardId-000000000002", "shardId-000000000003"));
    let merged = stream.merge(&high, S1).unwrap();
    assert_eq!(merged, "shardId-000000000004");

    let shards = stream.shards();
    let by_id = |id: &str| shards.iter().find(|s| s.shard_id == id).unwrap().clone();
    assert_eq!(by_id(&low).parent_shard_ids, vec![S0.to_owned()]);
    assert_eq!(by_id(&low).hash_key_range, HashKeyRange { start: 0, end: half / 2 - 1 });
    assert_eq!(by_id(&high).hash_key_range, HashKeyRange { start: half / 2, end: half - 1 });
    assert_eq!(by_id(&merged).parent_shard_ids, vec![high.clone(), S1.to_owned()]);
    assert_eq!(by_id(&merged).hash_key_range, HashKeyRange { start: half / 2, end: u128::MAX });
    for closed in [S0, S1, high.as_str()] {
        let shard = by_id(closed);
        assert!(!shard.is_open(), "{closed} is closed");
        let end = shard.sequence_number_range.end.unwrap();
        for child in shards.iter().filter(|s| s.parent_shard_ids.iter().any(|p| p == closed)) {
            assert!(child.sequence_number_range.start > end, "children start after the parent's end");
        }
    }
    assert_eq!(stream.open_shard_ids(), vec![low.clone(), merged.clone()]);

    assert!(stream.split(S0, 5).is_err(), "a closed shard cannot be split");
    assert!(stream.split(&low, 0).is_err(), "the new key must be inside the range, above its start");
    assert!(stream.merge(&low, &low).is_err());
    let other = MemoryStream::new("gap", 3);
    assert!(other.merge(S0, "shardId-000000000002").is_err(), "shards 0 and 2 are not adjacent");
}

#[tokio::test(start_paused = true)]
async fn parents_reach_shard_end_with_their_children_then_children_continue() {
    let stream = MemoryStream::new("ends", 2);
    for i in 0..50 {
        stream.put(format!("before-{i}"), "x").unwrap();
    }
    let half = stream.shards()[1].hash_key_range.start;
    let [low, high] = stream.split(S0, half / 2).unwrap();
    let merged = stream.merge(&high, S1).unwrap();
    for i in 0..50 {
        stream.put(format!("after-{i}"), "y").unwrap();
    }

    let mut reader =
        stream.open(&spec(&stream, S0), &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
    let (records, last) = read_to_end(reader.as_mut()).await;
    assert_eq!(seqs(&records), seqs(&stream.records(S0)));
    let children = last.child_shards.clone().unwrap();
    assert_eq!(
        children,
        vec![
            ChildShard {
                shard_id: low.clone(),
                parent_shard_ids: vec![S0.into()],
                hash_key_range: HashKeyRange { start: 0, end: half / 2 - 1 }
            },
            ChildShard {
                shard_id: high.clone(),
                parent_shard_ids: vec![S0.into()],
                hash_key_range: HashKeyRange { start: half / 2, end: half - 1 }
            },
        ]
    );
    // The end is sticky.
    let again = reader.next_batch().await.unwrap();
    assert!(again.shard_end && again.records.is_empty());

    let mut reader = stream
        .open(&spec(&stream, &high), &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest)
        .await
        .unwrap();
    let (_, last) = read_to_end(reader.as_mut()).await;
    let children = last.child_shards.unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].shard_id, merged);
    assert_eq!(children[0].parent_shard_ids, vec![high.clone(), S1.to_owned()]);

    let mut total = 0;
    for child in [&low, &merged] {
        let expected = stream.records(child);
        let mut reader = stream
            .open(&spec(&stream, child), &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest)
            .await
            .unwrap();
        let (records, end) = read_until(reader.as_mut(), expected.len()).await;
        assert!(end.is_none(), "open shards do not end");
        assert_eq!(seqs(&records), seqs(&expected));
        total += records.len();
    }
    assert!(total > 0, "records put after the reshard went to the children");
}

#[tokio::test(start_paused = true)]
async fn readers_start_at_the_checkpoint() {
    let stream = MemoryStream::new("starts", 1);
    let puts: Vec<_> = (0..100).map(|i| stream.put(format!("k{i}"), format!("v{i}")).unwrap()).collect();
    // One KPL aggregate (magic prefix) among plain records.
    let aggregate = stream.put("agg", Bytes::from_static(&[0xF3, 0x89, 0x9A, 0xC2, 1, 2, 3])).unwrap();
    stream.put("tail", "t").unwrap();
    let all = stream.records(S0);
    let spec = spec(&stream, S0);
    let open = |start: ExtendedSequenceNumber, initial: InitialPosition| {
        let stream = stream.clone();
        let spec = spec.clone();
        async move { stream.open(&spec, &start, &initial).await.unwrap() }
    };

    let mut reader = open(ExtendedSequenceNumber::TrimHorizon, InitialPosition::Latest).await;
    assert_eq!(seqs(&read_until(reader.as_mut(), all.len()).await.0), seqs(&all));

    // A whole-record checkpoint: everything after it.
    let mut reader =
        open(ExtendedSequenceNumber::sequence(puts[49].sequence_number.clone()), InitialPosition::Latest).await;
    assert_eq!(seqs(&read_until(reader.as_mut(), all.len() - 50).await.0), seqs(&all[50..]));

    // Inside an aggregate (sub-sequence > 0): the aggregate again, then the rest.
    let mut reader =
        open(ExtendedSequenceNumber::with_sub(puts[49].sequence_number.clone(), 3), InitialPosition::Latest).await;
    assert_eq!(seqs(&read_until(reader.as_mut(), all.len() - 49).await.0), seqs(&all[49..]));

    // At sub-record 0 of a KPL aggregate: the aggregate is read again so its later user records are not lost.
    let mut reader =
        open(ExtendedSequenceNumber::sequence(aggregate.sequence_number.clone()), InitialPosition::Latest).await;
    let (records, _) = read_until(reader.as_mut(), 2).await;
    assert_eq!(records[0].sequence_number, aggregate.sequence_number);
    assert_eq!(records.len(), 2);

    // AT_TIMESTAMP: the lease's own time, or the initial position's when the lease has only the sentinel.
    let mut reader =
        open(ExtendedSequenceNumber::AtTimestamp(Some(SystemTime::UNIX_EPOCH)), InitialPosition::Latest).await;
    assert_eq!(read_until(reader.as_mut(), all.len()).await.0.len(), all.len());
    let future = SystemTime::now() + Duration::from_secs(3600);
    let mut reader = open(ExtendedSequenceNumber::AtTimestamp(None), InitialPosition::AtTimestamp(future)).await;
    assert!(reader.next_batch().await.unwrap().records.is_empty());
    assert!(stream.open(&spec, &ExtendedSequenceNumber::AtTimestamp(None), &InitialPosition::Latest).await.is_err());

    // LATEST: only records written after the first read.
    let mut reader = open(ExtendedSequenceNumber::Latest, InitialPosition::Latest).await;
    assert!(reader.next_batch().await.unwrap().records.is_empty());
    let fresh = stream.put("new", "n").unwrap();
    let (records, _) = read_until(reader.as_mut(), 1).await;
    assert_eq!(seqs(&records), vec![fresh.sequence_number.to_string()]);

    // SHARD_END: nothing to read, and no service call.
    let calls = stream.call_counts();
    let mut reader = open(ExtendedSequenceNumber::ShardEnd, InitialPosition::Latest).await;
    let batch = reader.next_batch().await.unwrap();
    assert!(batch.shard_end && batch.records.is_empty() && batch.child_shards.is_none());
    assert_eq!(stream.call_counts(), calls);
}

#[tokio::test(start_paused = true)]
async fn an_iterator_left_unused_for_five_minutes_expires_and_the_reader_resumes_after_its_last_record() {
    let stream = MemoryStream::new("ttl", 1);
    for i in 0..30 {
        stream.put(format!("k{i}"), "v").unwrap();
    }
    let config = stream.config().polling.clone().with_max_records(10).with_prefetch(None);
    let fetcher = PollingFetcher::new(stream.clone(), config).unwrap();
    let mut reader =
        fetcher.reader(&spec(&stream, S0), &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).unwrap();
    let first = read_until(&mut reader, 10).await.0;
    tokio::time::sleep(Duration::from_secs(301)).await;
    let rest = read_until(&mut reader, 20).await.0;
    let all: Vec<_> = first.into_iter().chain(rest).collect();
    assert_eq!(seqs(&all), seqs(&stream.records(S0)));
    assert_eq!(stream.call_counts().1, 2, "one iterator at the start, one after the expiry");
}
