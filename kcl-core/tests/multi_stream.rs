//! Multi-stream applications on in-memory streams: two workers share one lease table for several streams, keyed in
//! the Java KCL multi-stream format; a stream added at run time is picked up; a removed (or deleted) stream stops
//! being consumed and its leases are deleted after the grace period.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcl_core::discover::{MEMORY_ACCOUNT_ID, MemoryStreams, StreamSource};
use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{Lease, LeaseStore, MemoryLeaseStore};
use kcl_core::process::recording::{RecordingProcessor, Seen};
use kcl_core::{InitialPosition, Worker};

async fn wait_for(what: &str, timeout: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn put(streams: &MemoryStreams, name: &str, range: std::ops::Range<u32>) {
    let stream = streams.get(name).unwrap();
    for i in range {
        stream.put(format!("key-{i}"), format!("{name}-{i}")).unwrap();
    }
}

fn count(seen: &Mutex<Seen>, name: &str) -> usize {
    seen.lock().unwrap().records.iter().filter(|r| r.starts_with(&format!("{name}-"))).count()
}

async fn leases_of(store: &MemoryLeaseStore, identifier: &str) -> Vec<Lease> {
    let leases = store.list_all_leases().await.unwrap();
    leases.into_iter().filter(|l| l.stream_identifier.as_deref() == Some(identifier)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_application_consumes_streams_added_and_removed_at_run_time() {
    let streams = MemoryStreams::new();
    for name in ["alpha", "beta"] {
        streams.create(name, 2);
    }
    let listed = Arc::new(Mutex::new(vec!["alpha".to_owned(), "beta".to_owned()]));
    let store = Arc::new(MemoryLeaseStore::new());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut shutdowns = Vec::new();
    let mut tasks = Vec::new();
    for id in ["w1", "w2"] {
        let (seen, listed) = (seen.clone(), listed.clone());
        let source = StreamSource::from_fn(move || {
            let names = listed.lock().unwrap().clone();
            async move { Ok(names) }
        });
        let worker = Worker::multi_stream_builder("multi", source)
            .worker_id(id)
            .record_source(Arc::new(streams.clone()))
            .stream_catalog(Arc::new(streams.clone()))
            .lease_store(store.clone())
            .initial_position(InitialPosition::TrimHorizon)
            .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_millis(600)).build().unwrap())
            .shard_sync_interval(Duration::from_millis(200))
            .stream_discovery_interval(Duration::from_millis(100))
            .removed_stream_grace(Duration::from_millis(800))
            .parent_poll_interval(Duration::from_millis(50))
            .processor_factory(move |_: &str| RecordingProcessor::new(seen.clone()))
            .build()
            .unwrap();
        shutdowns.push(worker.shutdown_handle());
        tasks.push(tokio::spawn(worker.run()));
    }

    put(&streams, "alpha", 0..100);
    put(&streams, "beta", 0..100);
    wait_for("every record of both streams", Duration::from_secs(30), async || {
        count(&seen, "alpha") == 100 && count(&seen, "beta") == 100
    })
    .await;
    // Java KCL's multi-stream keys: account:stream:creationEpoch:shardId.
    for name in ["alpha", "beta"] {
        let identifier = streams.identifier(name).unwrap().to_string();
        assert!(identifier.starts_with(&format!("{MEMORY_ACCOUNT_ID}:{name}:")), "{identifier}");
        let leases = leases_of(&store, &identifier).await;
        let keys: HashSet<String> = leases.iter().map(|l| l.lease_key.clone()).collect();
        let expected: HashSet<String> =
            ["shardId-000000000000", "shardId-000000000001"].map(|s| format!("{identifier}:{s}")).into();
        assert_eq!(keys, expected);
        assert!(leases.iter().all(|l| l.lease_owner.is_some()), "{leases:?}");
    }
    // One lease table, balanced across the fleet regardless of stream.
    wait_for("both workers to hold leases", Duration::from_secs(30), async || {
        let owners: HashSet<String> =
            store.list_all_leases().await.unwrap().into_iter().filter_map(|l| l.lease_owner).collect();
        owners.len() == 2
    })
    .await;

    // A stream listed at run time is picked up, from its trim horizon.
    streams.create("gamma", 1);
    put(&streams, "gamma", 0..50);
    listed.lock().unwrap().push("gamma".to_owned());
    wait_for("every record of the added stream", Duration::from_secs(30), async || count(&seen, "gamma") == 50).await;

    // A stream no longer listed stops being consumed; its leases go after the grace period.
    let beta = streams.identifier("beta").unwrap().to_string();
    listed.lock().unwrap().retain(|name| name != "beta");
    wait_for("the removed stream's leases to be deleted", Duration::from_secs(30), async || {
        leases_of(&store, &beta).await.is_empty()
    })
    .await;
    wait_for("the removed stream's processors to stop", Duration::from_secs(30), async || {
        !seen.lock().unwrap().live.iter().any(|key| key.starts_with(&beta))
    })
    .await;
    put(&streams, "beta", 100..150);
    put(&streams, "gamma", 50..100);
    put(&streams, "alpha", 100..150);
    wait_for("later records of the listed streams", Duration::from_secs(30), async || {
        count(&seen, "gamma") == 100 && count(&seen, "alpha") == 150
    })
    .await;
    assert_eq!(count(&seen, "beta"), 100, "records put after the removal were not consumed");

    // A listed stream that is deleted is handled like a removed one.
    let alpha = streams.identifier("alpha").unwrap().to_string();
    streams.delete("alpha");
    wait_for("the deleted stream's leases to be deleted", Duration::from_secs(30), async || {
        leases_of(&store, &alpha).await.is_empty()
    })
    .await;
    let gamma = streams.identifier("gamma").unwrap().to_string();
    assert_eq!(leases_of(&store, &gamma).await.len(), 1, "the listed stream keeps its lease");

    for shutdown in &shutdowns {
        shutdown.shutdown();
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_listed_again_within_the_grace_resumes_from_its_checkpoints() {
    let streams = MemoryStreams::new();
    streams.create("delta", 2);
    let listed = Arc::new(Mutex::new(vec!["delta".to_owned()]));
    let store = Arc::new(MemoryLeaseStore::new());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let source = StreamSource::from_fn({
        let listed = listed.clone();
        move || {
            let names = listed.lock().unwrap().clone();
            async move { Ok(names) }
        }
    });
    let worker = Worker::multi_stream_builder("resume", source)
        .worker_id("w1")
        .record_source(Arc::new(streams.clone()))
        .stream_catalog(Arc::new(streams.clone()))
        .lease_store(store.clone())
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_millis(600)).build().unwrap())
        .shard_sync_interval(Duration::from_millis(200))
        .stream_discovery_interval(Duration::from_millis(100))
        .removed_stream_grace(Duration::from_secs(3600))
        .processor_factory({
            let seen = seen.clone();
            move |_: &str| RecordingProcessor::new(seen.clone())
        })
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    put(&streams, "delta", 0..50);
    wait_for("the first records", Duration::from_secs(30), async || count(&seen, "delta") == 50).await;

    listed.lock().unwrap().clear();
    wait_for("the processors to stop", Duration::from_secs(30), async || seen.lock().unwrap().live.is_empty()).await;
    // Within the grace the leases stay, held (so no other worker starts on them) with their checkpoints.
    let delta = streams.identifier("delta").unwrap().to_string();
    let leases = leases_of(&store, &delta).await;
    assert_eq!(leases.len(), 2);
    assert!(leases.iter().all(|l| l.lease_owner.as_deref() == Some("w1")), "{leases:?}");
    put(&streams, "delta", 50..100);

    listed.lock().unwrap().push("delta".to_owned());
    wait_for("every record after the stream is listed again", Duration::from_secs(30), async || {
        count(&seen, "delta") == 100
    })
    .await;
    assert_eq!(seen.lock().unwrap().deliveries, 100, "each record once: processing resumed at the checkpoints");
    shutdown.shutdown();
    task.await.unwrap().unwrap();
}

#[test]
fn the_builder_checks_multi_stream_settings() {
    let streams = MemoryStreams::new();
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let factory = |_: &str| RecordingProcessor::new(Arc::default());
    let base = || {
        Worker::multi_stream_builder("app", StreamSource::fixed(["a"]))
            .record_source(Arc::new(streams.clone()))
            .lease_store(store.clone())
            .processor_factory(factory)
    };
    assert!(base().stream_catalog(Arc::new(streams.clone())).build().is_ok());
    let message = |result: Result<Worker<_>, kcl_core::KclError>| match result {
        Err(kcl_core::KclError::InvalidConfig(message)) => message,
        Err(other) => panic!("expected InvalidConfig, got {other}"),
        Ok(_) => panic!("expected an error"),
    };
    assert!(message(base().build()).contains("stream_catalog"));
    assert!(
        message(
            base()
                .stream_catalog(Arc::new(streams.clone()))
                .stream_discovery_interval(Duration::from_secs(60))
                .removed_stream_grace(Duration::from_secs(10))
                .build()
        )
        .contains("removed_stream_grace")
    );
    let single = Worker::builder("s", "app")
        .record_source(Arc::new(streams.clone()))
        .stream_catalog(Arc::new(streams.clone()))
        .lease_store(store.clone())
        .processor_factory(factory);
    assert!(message(single.build()).contains("multi_stream_builder"));
}
