//! The lease table of issue 17 — items with a non-numeric `leaseCounter`, a missing `checkpoint`, a non-numeric
//! checkpoint, a numeric `leaseOwner` — next to a readable lease: a coordinator on DynamoDB Local takes only the
//! readable one, never the others, and logs one ERROR naming them and the remedy however many times it lists.

use std::sync::Arc;
use std::time::Duration;

use kcl_core::lease::LeaseStore;
use kcl_core::lease::coordinator::{LeaseCoordinator, LeaseCoordinatorConfig, LeaseEvent};

use crate::common::{builder, create, item, lease, n, put_raw, s};

#[tokio::test]
async fn a_coordinator_takes_only_readable_leases_and_reports_the_rest_once() {
    // Current-thread runtime: the coordinator's tasks run on this thread, under this subscriber.
    let (captured, _guard) = kcl_tests::logs::CapturedLogs::install();

    // No owner index: DynamoDB refuses a numeric `leaseOwner` in an indexed table.
    let (builder, client, table) = builder("ddb-unreadable").await;
    let store = Arc::new(builder.worker_heartbeats(false).create_owner_index(false).build().await.unwrap());
    let bad = [
        ("shardId-000000000000", item(&[("leaseCounter", s("7")), ("checkpoint", s("TRIM_HORIZON"))])),
        ("shardId-000000000001", item(&[("leaseCounter", n("3"))])),
        ("shardId-000000000002", item(&[("leaseCounter", n("3")), ("checkpoint", s("not-a-number"))])),
        (
            "shardId-000000000003",
            item(&[("leaseCounter", n("3")), ("checkpoint", s("LATEST")), ("leaseOwner", n("9"))]),
        ),
    ];
    for (key, mut raw) in bad.clone() {
        raw.insert("leaseKey".into(), s(key));
        put_raw(&client, &table, raw).await;
    }
    create(&store, &lease("shardId-000000000004")).await;

    let config = LeaseCoordinatorConfig::builder()
        .lease_duration(Duration::from_millis(500))
        .take_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let (handle, mut events) = LeaseCoordinator::start(store.clone(), "worker-1", config).unwrap();
    let mut acquired = Vec::new();
    // Many take cycles (one per 100 ms): the bad items are listed every time.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(event)) = tokio::time::timeout_at(until, events.recv()).await {
        if let LeaseEvent::Acquired { lease, .. } = event {
            acquired.push(lease.lease_key);
        }
    }
    handle.abort();
    assert_eq!(acquired, ["shardId-000000000004"], "only the readable lease is taken");
    for (key, _) in &bad {
        let raw = crate::common::get_raw(&client, &table, key).await;
        assert_eq!(
            raw,
            {
                let mut expected = bad.iter().find(|(k, _)| k == key).unwrap().1.clone();
                expected.insert("leaseKey".into(), s(key));
                expected
            },
            "{key}: a worker never writes an item it cannot read"
        );
    }
    assert_eq!(store.list_everything().await.unwrap().unreadable.len(), 4);

    let logs = captured.text();
    let errors: Vec<&str> = logs.lines().filter(|line| line.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one ERROR for the one change, not one per scan:\n{logs}");
    for (key, _) in &bad {
        assert!(errors[0].contains(key), "the ERROR names {key}: {}", errors[0]);
    }
    assert!(errors[0].contains("kcl-admin repair"), "the ERROR names the remedy: {}", errors[0]);
    assert!(!logs.contains("WARN"), "no per-scan warnings:\n{logs}");
}
