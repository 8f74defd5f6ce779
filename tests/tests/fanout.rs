//! Enhanced fan-out readers against kinesis-mock: `RegisterStreamConsumer`/`DescribeStreamConsumer` and
//! `SubscribeToShard` (over plain HTTP kinesis-mock streams the events on HTTP/1.1; over TLS it speaks HTTP/2),
//! through the same `RecordSource` trait as polling. Workers built with `Retrieval::FanOut` are in
//! `fanout_workers.rs`.

use std::sync::Arc;
use std::time::Duration;

use kcl_core::discover::{KinesisShardLister, ShardListFilter, ShardLister};
use kcl_core::retrieve::fanout::{FanOutConfig, FanOutSource};
use kcl_core::retrieve::{ReadBatch, RecordSource, ShardReader, ShardSpec};
use kcl_core::{ExtendedSequenceNumber, InitialPosition, KinesisRecord, SequenceNumber};
use kcl_tests::kinesis::{Written, create_stream, pairs, put_numbered as put, read_records};
use kcl_tests::{emulators, unique_name};

/// `RUST_LOG=kcl_core=debug` shows the readers' subscribe decisions when a test fails.
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config() -> FanOutConfig {
    FanOutConfig::default()
        // Short waits keep the tests quick: the emulator registers consumers in 10s of ms (runner setting).
        .with_retry_base(Duration::from_millis(100))
        .with_retry_cap(Duration::from_secs(1))
        .with_health_timeout(Duration::from_secs(20))
}

/// Reads until `n` records or the shard end, with a deadline.
async fn read(reader: &mut dyn ShardReader, n: usize) -> (Vec<KinesisRecord>, Option<ReadBatch>) {
    read_records(reader, n, Duration::from_secs(90)).await
}

#[tokio::test]
async fn reads_in_order_restarts_after_a_checkpoint_and_follows_a_split() {
    init_tracing();
    let client = emulators().kinesis_client().await;
    let name = unique_name("fanout");
    create_stream(&client, &name, 2).await;
    let mut written = Written::new();
    put(&client, &name, "a", 400, &mut written).await;
    assert_eq!(written.len(), 2, "both shards got records");
    // kinesis-mock keeps a consumer's subscription to a shard registered until its next once-a-second event fails to
    // reach the client that hung up, and answers a new subscription with ResourceInUseException meanwhile (measured:
    // 1-3 s; the reader backs off and retries). Each re-read of a shard below goes through a consumer of its own so
    // the test does not wait for that.
    let fresh = || FanOutSource::new(client.clone(), unique_name("app"), config()).unwrap();
    let source = fresh();
    let stream: Arc<str> = Arc::from(name.as_str());

    // Every record, in order, from TRIM_HORIZON.
    for (shard, expected) in &written {
        let spec = ShardSpec::new(stream.clone(), shard.as_str());
        let mut reader =
            source.open(&spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
        let (records, end) = read(reader.as_mut(), expected.len()).await;
        assert!(end.is_none());
        assert_eq!(&pairs(&records), expected, "shard {shard}");
    }

    // A restart after a whole-record checkpoint returns exactly the records after it; with a sub-sequence number
    // (inside an aggregate) that record again.
    let (shard0, expected0) = written.iter().next().map(|(s, e)| (s.clone(), e.clone())).unwrap();
    let spec0 = ShardSpec::new(stream.clone(), shard0.as_str());
    let checkpoint: SequenceNumber = expected0[99].0.parse().unwrap();
    let restart = fresh();
    let mut reader = restart
        .open(&spec0, &ExtendedSequenceNumber::sequence(checkpoint.clone()), &InitialPosition::Latest)
        .await
        .unwrap();
    let (records, _) = read(reader.as_mut(), expected0.len() - 100).await;
    assert_eq!(pairs(&records), expected0[100..]);
    let mut reader =
        fresh().open(&spec0, &ExtendedSequenceNumber::with_sub(checkpoint, 2), &InitialPosition::Latest).await.unwrap();
    let (records, _) = read(reader.as_mut(), expected0.len() - 99).await;
    assert_eq!(pairs(&records), expected0[99..]);
    drop(reader);

    // A reader left open sees records put later (the subscription stays open and delivers them).
    let (shard1, expected1) = written.iter().nth(1).map(|(s, e)| (s.clone(), e.clone())).unwrap();
    let spec1 = ShardSpec::new(stream.clone(), shard1.as_str());
    let last1: SequenceNumber = expected1[expected1.len() - 1].0.parse().unwrap();
    let mut tail =
        restart.open(&spec1, &ExtendedSequenceNumber::sequence(last1), &InitialPosition::Latest).await.unwrap();

    // Split shard 0: its reader reaches SHARD_END with both children.
    let lister = KinesisShardLister::new(client.clone(), stream.clone());
    let shards = lister.list_shards(ShardListFilter::All).await.unwrap();
    let range = shards.iter().find(|s| s.shard_id == shard0).unwrap().hash_key_range;
    kcl_tests::kinesis::split_in_half(&client, &name, &shard0).await;
    let mut after = Written::new();
    put(&client, &name, "b", 200, &mut after).await;

    // kinesis-mock 0.6.2 never ends a closed shard's subscription: its events always carry a continuation sequence
    // number and never ChildShards (GetRecords does report them). So here the parent is read to its last record and
    // no further; the shard-end path (final event without continuation → `shard_end` with `child_shards`) is covered
    // in-process by kcl-core's fan-out reader tests and the SDK event conversion test.
    let mut reader =
        fresh().open(&spec0, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
    let (records, end) = read(reader.as_mut(), expected0.len()).await;
    assert_eq!(pairs(&records), expected0, "the closed parent holds exactly what was written before the split");
    if let Some(end) = end {
        // A kinesis-mock that reports the end must report it as polling does.
        let children = end.child_shards.clone().expect("ChildShards at SHARD_END");
        assert_eq!(children.len(), 2);
        for child in &children {
            assert_eq!(child.parent_shard_ids, vec![shard0.clone()]);
        }
        assert_eq!(children.iter().map(|c| c.hash_key_range.start).min(), Some(range.start));
        assert_eq!(children.iter().map(|c| c.hash_key_range.end).max(), Some(range.end));
    }
    drop(reader);

    // Records put after the split reach the children through fan-out too.
    let children: Vec<_> = lister
        .list_shards(ShardListFilter::All)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.parent_shard_ids == vec![shard0.clone()])
        .collect();
    assert_eq!(children.len(), 2);
    for child in &children {
        let expected = after.get(&child.shard_id).cloned().unwrap_or_default();
        let spec = ShardSpec::new(stream.clone(), child.shard_id.as_str());
        let mut reader =
            source.open(&spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
        let (records, _) = read(reader.as_mut(), expected.len()).await;
        assert_eq!(pairs(&records), expected, "child {}", child.shard_id);
    }

    let new1 = after.get(&shard1).cloned().unwrap_or_default();
    assert!(!new1.is_empty(), "some new records went to the unsplit shard");
    let (records, _) = read(tail.as_mut(), new1.len()).await;
    assert_eq!(pairs(&records), new1, "the open subscription delivered later puts in order");

    client.delete_stream().stream_name(&name).enforce_consumer_deletion(true).send().await.expect("DeleteStream");
}

#[tokio::test]
async fn consumer_registration_is_idempotent_and_safe_when_concurrent() {
    init_tracing();
    let client = emulators().kinesis_client().await;
    let name = unique_name("fanout-reg");
    create_stream(&client, &name, 1).await;
    let consumer = unique_name("app");
    // Two sources (think: two workers starting together) register the same consumer at the same moment.
    let a = FanOutSource::new(client.clone(), consumer.clone(), config()).unwrap();
    let b = FanOutSource::new(client.clone(), consumer.clone(), config()).unwrap();
    let (arn_a, arn_b) = tokio::join!(a.consumer_arn(&name), b.consumer_arn(&name));
    let (arn_a, arn_b) = (arn_a.expect("first registrar"), arn_b.expect("second registrar"));
    assert_eq!(arn_a, arn_b);
    // A later source reuses the existing consumer; so does a repeated call (cached).
    let c = FanOutSource::new(client.clone(), consumer.clone(), config()).unwrap();
    assert_eq!(c.consumer_arn(&name).await.unwrap(), arn_a);
    assert_eq!(a.consumer_arn(&name).await.unwrap(), arn_a);
    let summary = client.describe_stream_summary().stream_name(&name).send().await.unwrap();
    let stream_arn = summary.stream_description_summary.unwrap().stream_arn;
    let consumers = client.list_stream_consumers().stream_arn(&stream_arn).send().await.unwrap();
    let named: Vec<_> =
        consumers.consumers.unwrap_or_default().into_iter().filter(|c| c.consumer_name == consumer).collect();
    assert_eq!(named.len(), 1, "registered once");
    assert_eq!(named[0].consumer_arn, arn_a.as_ref());
    // The ARN form of the stream name works too.
    let d = FanOutSource::new(client.clone(), consumer.clone(), config()).unwrap();
    assert_eq!(d.consumer_arn(&stream_arn).await.unwrap(), arn_a);

    // Deregistered behind the source's back: the reader fails (not found), the source forgets the stale ARN, and
    // the next open registers the consumer again.
    client.deregister_stream_consumer().consumer_arn(arn_a.as_ref()).send().await.expect("DeregisterStreamConsumer");
    for _ in 0..100 {
        let described = client.describe_stream_consumer().consumer_arn(arn_a.as_ref()).send().await;
        if described.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spec = ShardSpec::new(name.as_str(), "shardId-000000000000");
    let mut reader = a.open(&spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(30), reader.next_batch()).await.unwrap().unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    // (The new ARN may equal the old one: kinesis-mock suffixes it with the registration time in whole seconds.)
    a.consumer_arn(&name).await.expect("registered anew");
    let mut reader = a.open(&spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(30), reader.next_batch()).await.unwrap();
    assert!(batch.is_ok(), "the new consumer reads: {batch:?}");

    client.delete_stream().stream_name(&name).enforce_consumer_deletion(true).send().await.expect("DeleteStream");
}

#[tokio::test]
async fn missing_streams_are_clear_non_retryable_errors() {
    init_tracing();
    let client = emulators().kinesis_client().await;
    let source = FanOutSource::new(client, unique_name("app"), config()).unwrap();
    let spec = ShardSpec::new(unique_name("missing"), "shardId-000000000000");
    let error = source.reader(&spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
}

/// Real Kinesis serves SubscribeToShard over HTTP/2 on TLS only: this runs the fan-out reader through the SDK's
/// rustls client (ALPN offers h2; kinesis-mock's TLS port picks it) against a private kinesis-mock whose
/// certificate the harness generated, trusted through a custom trust store. The shared kinesis-mock serves the
/// certificate chosen when the runner started it, which has no subject-alternative name, so rustls rejects it.
#[tokio::test]
async fn subscribes_over_tls_and_http2_with_a_generated_certificate() {
    init_tracing();
    let kinesis = kcl_tests::own_kinesis::OwnKinesis::start_tls().await.expect("private kinesis-mock");
    let client = kinesis.tls_client().await.expect("kinesis-mock answers over TLS");

    let name = unique_name("fanout-tls");
    create_stream(&client, &name, 1).await;
    let mut written = Written::new();
    put(&client, &name, "t", 300, &mut written).await;
    let (shard, expected) = written.into_iter().next().unwrap();
    let source = FanOutSource::new(client.clone(), unique_name("app"), config()).unwrap();
    let spec = ShardSpec::new(name.as_str(), shard.as_str());
    let mut reader = source.open(&spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest).await.unwrap();
    let (records, _) = read(reader.as_mut(), expected.len()).await;
    assert_eq!(pairs(&records), expected);
    // Records put while the subscription is open arrive on it.
    let mut later = Written::new();
    put(&client, &name, "u", 50, &mut later).await;
    let (records, _) = read(reader.as_mut(), 50).await;
    assert_eq!(pairs(&records), later.remove(&shard).unwrap());
    drop(reader);
    kinesis.stop().await;
}
