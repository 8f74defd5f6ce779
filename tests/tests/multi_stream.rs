//! Multi-stream applications on the emulators (kinesis-mock + DynamoDB Local): one application, one lease table, two
//! workers. Two streams are consumed completely with Java KCL multi-stream lease keys (`account:stream:epoch:shard`,
//! the identifier taken from `DescribeStreamSummary`); a third stream listed at run time is picked up; a stream taken
//! off the list stops being consumed and its leases are deleted after the grace period.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcl_core::discover::{KinesisStreamCatalog, StreamCatalog, StreamSource};
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{Lease, LeaseStore};
use kcl_core::process::recording::{RecordingProcessor, Seen};
use kcl_core::retrieve::PollingConfig;
use kcl_core::{InitialPosition, Worker};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::kinesis::{create_stream, delete_stream};
use kcl_tests::{emulators, unique_name};

async fn wait_for(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn put(client: &aws_sdk_kinesis::Client, stream: &str, range: std::ops::Range<u32>) {
    for i in range {
        let data = aws_sdk_kinesis::primitives::Blob::new(format!("{stream}/{i}"));
        client.put_record().stream_name(stream).partition_key(format!("key-{i}")).data(data).send().await.unwrap();
    }
}

fn count(seen: &Mutex<Seen>, stream: &str) -> usize {
    seen.lock().unwrap().records.iter().filter(|r| r.starts_with(&format!("{stream}/"))).count()
}

async fn leases_of(store: &DynamoLeaseStore, identifier: &str) -> Vec<Lease> {
    let leases = store.list_all_leases().await.unwrap();
    leases.into_iter().filter(|l| l.stream_identifier.as_deref() == Some(identifier)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_consume_streams_added_and_removed_at_run_time() {
    let kinesis = emulators().kinesis_client().await;
    let dynamodb = emulators().dynamodb_client().await;
    let (alpha, beta, gamma) = (unique_name("ms-alpha"), unique_name("ms-beta"), unique_name("ms-gamma"));
    create_stream(&kinesis, &alpha, 2).await;
    create_stream(&kinesis, &beta, 1).await;
    let table = unique_name("ms-leases");
    let store = Arc::new(DynamoLeaseStore::builder(dynamodb.clone(), &table).build().await.unwrap());
    let listed = Arc::new(Mutex::new(vec![alpha.clone(), beta.clone()]));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut shutdowns = Vec::new();
    let mut tasks = Vec::new();
    for id in ["worker-1", "worker-2"] {
        let (seen, listed) = (seen.clone(), listed.clone());
        let source = StreamSource::from_fn(move || {
            let names = listed.lock().unwrap().clone();
            async move { Ok(names) }
        });
        let worker = Worker::multi_stream_builder(table.as_str(), source)
            .worker_id(id)
            .kinesis_client(kinesis.clone())
            .lease_store(store.clone())
            .initial_position(InitialPosition::TrimHorizon)
            .polling_config(
                PollingConfig::default()
                    .with_idle_time_between_reads(Duration::from_millis(100))
                    .with_min_time_between_calls(Duration::from_millis(20)),
            )
            .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build().unwrap())
            .shard_sync_interval(Duration::from_millis(500))
            .stream_discovery_interval(Duration::from_millis(300))
            .removed_stream_grace(Duration::from_secs(2))
            .parent_poll_interval(Duration::from_millis(100))
            .processor_factory(move |_: &str| RecordingProcessor::new(seen.clone()))
            .build()
            .unwrap();
        shutdowns.push(worker.shutdown_handle());
        tasks.push(tokio::spawn(worker.run()));
    }

    put(&kinesis, &alpha, 0..30).await;
    put(&kinesis, &beta, 0..30).await;
    wait_for("every record of both streams", async || count(&seen, &alpha) == 30 && count(&seen, &beta) == 30).await;

    // Keys in Java KCL's multi-stream format, with the account and creation time DescribeStreamSummary reports.
    let catalog = KinesisStreamCatalog::new(kinesis.clone());
    for (name, shards) in [(&alpha, 2), (&beta, 1)] {
        let summary = kinesis.describe_stream_summary().stream_name(name).send().await.unwrap();
        let summary = summary.stream_description_summary.unwrap();
        let account = summary.stream_arn.split(':').nth(4).unwrap().to_owned();
        let epoch = summary.stream_creation_timestamp.secs();
        let identifier = format!("{account}:{name}:{epoch}");
        assert_eq!(catalog.describe_stream(name).await.unwrap().unwrap().to_string(), identifier);
        let leases = leases_of(&store, &identifier).await;
        assert_eq!(leases.len(), shards, "{leases:?}");
        for lease in &leases {
            assert_eq!(lease.lease_key, format!("{identifier}:{}", lease.shard_id));
            assert!(lease.shard_id.starts_with("shardId-"), "{lease:?}");
        }
    }
    wait_for("both workers to hold leases", async || {
        let owners: HashSet<String> =
            store.list_all_leases().await.unwrap().into_iter().filter_map(|l| l.lease_owner).collect();
        owners.len() == 2
    })
    .await;

    // A stream listed at run time is picked up.
    create_stream(&kinesis, &gamma, 1).await;
    put(&kinesis, &gamma, 0..20).await;
    listed.lock().unwrap().push(gamma.clone());
    wait_for("every record of the added stream", async || count(&seen, &gamma) == 20).await;

    // A stream taken off the list stops being consumed; its leases are deleted after the grace period.
    let beta_id = catalog.describe_stream(&beta).await.unwrap().unwrap().to_string();
    listed.lock().unwrap().retain(|name| *name != beta);
    wait_for("the removed stream's leases to be deleted", async || leases_of(&store, &beta_id).await.is_empty()).await;
    wait_for("the removed stream's processors to stop", async || {
        !seen.lock().unwrap().live.iter().any(|key| key.starts_with(&beta_id))
    })
    .await;
    put(&kinesis, &beta, 30..40).await;
    put(&kinesis, &gamma, 20..40).await;
    wait_for("later records of a listed stream", async || count(&seen, &gamma) == 40).await;
    assert_eq!(count(&seen, &beta), 30, "records put after the removal were not consumed");

    for shutdown in &shutdowns {
        shutdown.shutdown();
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();
    }
    for stream in [&alpha, &beta, &gamma] {
        delete_stream(&kinesis, stream).await;
    }
    let _ = dynamodb.delete_table().table_name(&table).send().await;
}
