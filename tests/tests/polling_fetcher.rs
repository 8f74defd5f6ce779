//! The polling fetcher and the shard syncer against kinesis-mock: real `GetShardIterator`, `GetRecords` (with
//! `ChildShards` at a split parent's end) and paged `ListShards`.

use std::sync::Arc;
use std::time::Duration;

use kcl_core::discover::{KinesisShardLister, ShardListFilter, ShardLister, ShardSyncConfig, ShardSyncer};
use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::retrieve::{
    KinesisPollingApi, PollingConfig, PollingFetcher, PrefetchConfig, ReadBatch, RecordSource, ShardReader, ShardSpec,
};
use kcl_core::{ExtendedSequenceNumber, InitialPosition, KinesisRecord, SequenceNumber};
use kcl_tests::kinesis::{Written, create_stream, pairs, put_numbered as put, read_records};
use kcl_tests::{emulators, unique_name};

fn fetcher(client: aws_sdk_kinesis::Client) -> PollingFetcher<KinesisPollingApi> {
    let config = PollingConfig::default()
        // Small batches make several calls per shard; a short idle keeps caught-up reads quick.
        .with_max_records(100)
        .with_idle_time_between_reads(Duration::from_millis(300))
        .with_prefetch(Some(PrefetchConfig::new(2, 1 << 20, 300)));
    PollingFetcher::new(KinesisPollingApi::new(client), config).unwrap()
}

/// Reads until `n` records or the shard end, with a deadline.
async fn read(reader: &mut dyn ShardReader, n: usize) -> (Vec<KinesisRecord>, Option<ReadBatch>) {
    read_records(reader, n, Duration::from_secs(60)).await
}

#[tokio::test]
async fn reads_in_order_restarts_after_a_checkpoint_and_follows_a_split() {
    let client = emulators().kinesis_client().await;
    let name = unique_name("polling");
    create_stream(&client, &name, 2).await;
    let mut written = Written::new();
    put(&client, &name, "a", 500, &mut written).await;
    assert_eq!(written.len(), 2, "both shards got records");
    let fetcher = fetcher(client.clone());
    let stream: Arc<str> = Arc::from(name.as_str());

    // Every record, in order, from TRIM_HORIZON.
    for (shard, expected) in &written {
        let spec = ShardSpec::new(stream.clone(), shard.as_str());
        let mut reader =
            fetcher.open(&spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
        let (records, end) = read(reader.as_mut(), expected.len()).await;
        assert!(end.is_none());
        assert_eq!(&pairs(&records), expected, "shard {shard}");
    }

    // A restart after a checkpoint returns exactly the records after it; inside an aggregate, that record again.
    let (shard0, expected0) = written.iter().next().map(|(s, e)| (s.clone(), e.clone())).unwrap();
    let spec0 = ShardSpec::new(stream.clone(), shard0.as_str());
    let checkpoint: SequenceNumber = expected0[99].0.parse().unwrap();
    let mut reader = fetcher
        .open(&spec0, &ExtendedSequenceNumber::sequence(checkpoint.clone()), &InitialPosition::Latest)
        .await
        .unwrap();
    let (records, _) = read(reader.as_mut(), expected0.len() - 100).await;
    assert_eq!(pairs(&records), expected0[100..]);
    let mut reader =
        fetcher.open(&spec0, &ExtendedSequenceNumber::with_sub(checkpoint, 2), &InitialPosition::Latest).await.unwrap();
    let (records, _) = read(reader.as_mut(), expected0.len() - 99).await;
    assert_eq!(pairs(&records), expected0[99..]);

    // Split shard 0: its reader reaches SHARD_END with both children; records put afterwards are in the children.
    // Paging through ListShards one shard per page must find the parent, and after the split both children.
    let lister = KinesisShardLister::new(client.clone(), stream.clone()).with_page_size(1);
    let shards = lister.list_shards(ShardListFilter::All).await.unwrap();
    let range = shards.iter().find(|s| s.shard_id == shard0).unwrap().hash_key_range;
    kcl_tests::kinesis::split_in_half(&client, &name, &shard0).await;
    let mut after = Written::new();
    put(&client, &name, "b", 300, &mut after).await;

    let mut reader =
        fetcher.open(&spec0, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
    let (records, end) = read(reader.as_mut(), usize::MAX).await;
    assert_eq!(pairs(&records), expected0, "the closed parent holds exactly what was written before the split");
    let children = end.unwrap().child_shards.expect("ChildShards at SHARD_END");
    assert_eq!(children.len(), 2);
    for child in &children {
        assert_eq!(child.parent_shard_ids, vec![shard0.clone()]);
    }
    assert_eq!(children.iter().map(|c| c.hash_key_range.start).min(), Some(range.start));
    assert_eq!(children.iter().map(|c| c.hash_key_range.end).max(), Some(range.end));

    let mut from_children = 0;
    for child in &children {
        let expected = after.get(&child.shard_id).cloned().unwrap_or_default();
        let spec = ShardSpec::new(stream.clone(), child.shard_id.as_str()).with_hash_key_range(child.hash_key_range);
        let mut reader =
            fetcher.open(&spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
        let (records, end) = read(reader.as_mut(), expected.len()).await;
        assert!(end.is_none(), "children are open");
        assert_eq!(pairs(&records), expected, "child {}", child.shard_id);
        from_children += records.len();
    }
    let to_old_range: usize =
        after.iter().filter(|(s, _)| **s != shard0 && !written.contains_key(*s)).map(|(_, v)| v.len()).sum();
    assert_eq!(from_children, to_old_range);
    assert!(from_children > 0, "some new records hashed into the split range");
}

#[tokio::test]
async fn shard_syncer_pages_through_list_shards_and_links_children_to_parents() {
    let client = emulators().kinesis_client().await;
    let name = unique_name("sync");
    create_stream(&client, &name, 3).await;
    let lister = KinesisShardLister::new(client.clone(), name.as_str()).with_page_size(2);
    let shards = lister.list_shards(ShardListFilter::All).await.unwrap();
    assert_eq!(shards.len(), 3, "three pages of at most two shards were joined");
    let parent = shards[0].clone();
    kcl_tests::kinesis::split_in_half(&client, &name, &parent.shard_id).await;
    let all = lister.list_shards(ShardListFilter::All).await.unwrap();
    assert_eq!(all.len(), 5);
    let open = lister.list_shards(ShardListFilter::Open).await.unwrap();
    assert_eq!(open.len(), 4, "the AT_LATEST filter leaves out the closed parent");
    let children: Vec<_> = all.iter().filter(|s| s.parent_shard_ids == vec![parent.shard_id.clone()]).collect();
    assert_eq!(children.len(), 2);

    // TRIM_HORIZON: the parent and everything else from the start; children linked to the parent.
    let store = Arc::new(MemoryLeaseStore::new());
    let config = ShardSyncConfig { initial_position: InitialPosition::TrimHorizon, ..ShardSyncConfig::default() };
    let syncer = ShardSyncer::new(Arc::new(lister.clone()), store.clone(), config);
    let report = syncer.sync().await.unwrap();
    assert_eq!(report.shards_listed, 5);
    assert_eq!(report.created.len(), 5);
    assert_eq!(report.created[0], parent.shard_id, "parents are created first");
    for child in &children {
        let lease = store.get_lease(&child.shard_id).await.unwrap().unwrap();
        assert_eq!(lease.parent_shard_ids, vec![parent.shard_id.clone()]);
        assert_eq!(lease.checkpoint, ExtendedSequenceNumber::TrimHorizon);
        assert_eq!(lease.hash_key_range, Some(child.hash_key_range));
    }

    // LATEST on an empty table: open shards only.
    let store = Arc::new(MemoryLeaseStore::new());
    let syncer = ShardSyncer::new(Arc::new(lister), store.clone(), ShardSyncConfig::default());
    let report = syncer.sync().await.unwrap();
    assert_eq!(report.created.len(), 4);
    assert!(store.get_lease(&parent.shard_id).await.unwrap().is_none());
    let leases = store.list_all_leases().await.unwrap();
    assert!(leases.iter().all(|l| l.checkpoint == ExtendedSequenceNumber::Latest));
}

#[tokio::test]
async fn missing_streams_and_shards_are_clear_non_retryable_errors() {
    let client = emulators().kinesis_client().await;
    let fetcher = fetcher(client.clone());
    let spec = ShardSpec::new(unique_name("missing"), "shardId-000000000000");
    let mut reader = fetcher.open(&spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
    let error = reader.next_batch().await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    let lister = KinesisShardLister::new(client, unique_name("missing"));
    let error = lister.list_shards(ShardListFilter::All).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
}
