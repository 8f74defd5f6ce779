//! kcl-rs's own `GetRecords` codec (JSON and CBOR, `LeanPollingApi`) against kinesis-mock, judged against the AWS
//! SDK path (`KinesisPollingApi`) on the same stream: the same records (binary payloads, keys, sequence numbers,
//! arrival times), the same `ChildShards` at a split parent's end, the same error classification.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kcl_core::retrieve::{
    ApiErrorKind, IteratorPosition, KinesisPollingApi, LeanPollingApi, PollingApi, PollingConfig, PollingFetcher,
    ReadBatch, RecordSource, ShardSpec, WireFormat,
};
use kcl_core::{ExtendedSequenceNumber, InitialPosition, KinesisRecord};
use kcl_tests::kinesis::{read_records, wait_active};
use kcl_tests::{emulators, unique_name};

/// Payload `i`: every byte value appears, lengths vary from 0 to 1000 bytes.
fn payload(i: usize) -> Vec<u8> {
    (0..(i * 37) % 1001).map(|j| ((i + j * 7) % 256) as u8).collect()
}

/// Puts `count` records; returns how many went to each shard.
async fn put(client: &aws_sdk_kinesis::Client, name: &str, count: usize) -> BTreeMap<String, usize> {
    let mut per_shard = BTreeMap::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(250) {
        let entries = chunk
            .iter()
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("key-{}-é", i % 7))
                    .data(Blob::new(payload(*i)))
                    .build()
                    .expect("entry")
            })
            .collect();
        let output =
            client.put_records().stream_name(name).set_records(Some(entries)).send().await.expect("PutRecords");
        assert_eq!(output.failed_record_count.unwrap_or(0), 0);
        for entry in output.records() {
            *per_shard.entry(entry.shard_id().expect("shard id").to_owned()).or_default() += 1;
        }
    }
    per_shard
}

fn config() -> PollingConfig {
    PollingConfig::default().with_max_records(150).with_idle_time_between_reads(Duration::from_millis(200))
}

/// Every record of a shard from `TRIM_HORIZON` until `n` were read or the shard ended (its final batch returned).
async fn read_all(source: &dyn RecordSource, spec: &ShardSpec, n: usize) -> (Vec<KinesisRecord>, Option<ReadBatch>) {
    let mut reader =
        source.open(spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::TrimHorizon).await.expect("open");
    read_records(reader.as_mut(), n, Duration::from_secs(60)).await
}

fn sources(client: &aws_sdk_kinesis::Client) -> Vec<(&'static str, Box<dyn RecordSource>)> {
    vec![
        ("sdk", Box::new(PollingFetcher::new(KinesisPollingApi::new(client.clone()), config()).expect("fetcher"))),
        (
            "json",
            Box::new(PollingFetcher::new(LeanPollingApi::new(client.clone(), WireFormat::Json), config()).expect("f")),
        ),
        (
            "cbor",
            Box::new(PollingFetcher::new(LeanPollingApi::new(client.clone(), WireFormat::Cbor), config()).expect("f")),
        ),
    ]
}

#[tokio::test]
async fn json_and_cbor_decode_exactly_what_the_sdk_decodes_including_shard_end() {
    let client = emulators().kinesis_client().await;
    let name = unique_name("wire");
    client.create_stream().stream_name(&name).shard_count(2).send().await.expect("CreateStream");
    wait_active(&client, &name).await;
    let per_shard = put(&client, &name, 600).await;
    let stream: Arc<str> = Arc::from(name.as_str());
    let listed = client.list_shards().stream_name(&name).send().await.expect("ListShards");
    let shards: Vec<String> = listed.shards().iter().map(|s| s.shard_id().to_owned()).collect();
    assert_eq!(shards.len(), 2);

    // Split the first shard so that its readers end with ChildShards.
    let first = &shards[0];
    kcl_tests::kinesis::split_in_half(&client, &name, first).await;

    let mut total = 0;
    for shard in &shards {
        let spec = ShardSpec::new(stream.clone(), shard.as_str());
        let mut results = Vec::new();
        for (path, source) in sources(&client) {
            // The split parent is read to its end; the open shard up to what was put into it.
            let expect = if shard == first { usize::MAX } else { per_shard[shard] };
            let (records, end) = read_all(source.as_ref(), &spec, expect).await;
            results.push((path, records, end.map(|b| b.child_shards)));
        }
        let (_, reference, reference_end) = &results[0];
        assert!(!reference.is_empty(), "shard {shard} has records");
        assert!(reference.iter().all(|r| r.approximate_arrival_timestamp.is_some()));
        for (path, records, end) in &results[1..] {
            assert_eq!(records.len(), reference.len(), "{path}: record count of {shard}");
            for (got, want) in records.iter().zip(reference) {
                assert_eq!(got.data, want.data, "{path}: data of {}", want.sequence_number);
                assert_eq!(got.partition_key, want.partition_key, "{path}");
                assert_eq!(got.sequence_number, want.sequence_number, "{path}");
                let (a, b) = (got.approximate_arrival_timestamp.unwrap(), want.approximate_arrival_timestamp.unwrap());
                let skew = a.duration_since(b).or_else(|_| b.duration_since(a)).unwrap_or_default();
                assert!(skew <= Duration::from_millis(1), "{path}: arrival time differs by {skew:?}");
            }
            assert_eq!(end, reference_end, "{path}: shard end of {shard}");
        }
        total += reference.len();
        if shard == first {
            let children = reference_end.clone().flatten().expect("the split parent ends with ChildShards");
            assert_eq!(children.len(), 2);
        }
    }
    assert_eq!(total, 600);
}

#[tokio::test]
async fn errors_classify_the_same_on_every_path() {
    let client = emulators().kinesis_client().await;
    let name = unique_name("wire-errors");
    client.create_stream().stream_name(&name).shard_count(1).send().await.expect("CreateStream");
    wait_active(&client, &name).await;
    let listed = client.list_shards().stream_name(&name).send().await.expect("ListShards");
    let spec = ShardSpec::new(name.as_str(), listed.shards()[0].shard_id());
    let sdk = KinesisPollingApi::new(client.clone());
    let bogus: Arc<str> = Arc::from("not-an-iterator");
    let want = sdk.get_records(&bogus, 10).await.expect_err("a bogus iterator fails").kind;
    assert_ne!(want, ApiErrorKind::Dispatch, "the emulator answered with a service error");
    for format in [WireFormat::Json, WireFormat::Cbor] {
        let lean = LeanPollingApi::new(client.clone(), format);
        // The lean path learns its endpoint from the first GetShardIterator.
        let iterator = lean.get_shard_iterator(&spec, &IteratorPosition::TrimHorizon).await.expect("iterator");
        assert!(iterator.is_some());
        let got = lean.get_records(&bogus, 10).await.expect_err("a bogus iterator fails");
        assert_eq!(got.kind, want, "{format:?}: {got}");
        let deleted = unique_name("missing");
        let missing = ShardSpec::new(deleted.as_str(), "shardId-000000000000");
        let sdk_missing = sdk.get_shard_iterator(&missing, &IteratorPosition::TrimHorizon).await.expect_err("missing");
        let lean_missing =
            lean.get_shard_iterator(&missing, &IteratorPosition::TrimHorizon).await.expect_err("missing");
        assert_eq!(lean_missing.kind, sdk_missing.kind);
    }
}
