//! `verify-worker` on its own, against the emulators directly, with polling and with enhanced fan-out: it processes
//! every record of a 2-shard stream (plain records and KPL aggregates) into its output file, journals what the
//! verifier needs, and exits 0 on SIGTERM; the chaos verifier then finds a clean history with no duplicate and the
//! final checkpoints at each shard's last record.

use std::process::Stdio;
use std::time::Duration;

use kcl_core::lease::LeaseStore;
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::chaos::{produce, verify_worker, wait_active};
use kcl_tests::verify::{self, Event, History};
use kcl_tests::{emulators, unique_name};
use tokio::time::Instant;

async fn consume_with(retrieval: &str) {
    let binary = verify_worker().unwrap();
    let kinesis = emulators().kinesis_client().await;
    let dynamodb = emulators().dynamodb_client().await;
    let stream = unique_name("verify-worker");
    kinesis.create_stream().stream_name(&stream).shard_count(2).send().await.unwrap();
    wait_active(&kinesis, &stream).await.unwrap();
    let puts = produce(&kinesis, &stream, 7, 100, Instant::now() + Duration::from_secs(2)).await.unwrap();
    assert!(puts.len() >= 150 && puts.iter().any(|p| p.sub > 0), "plain records and aggregates were put");

    let dir = tempfile::tempdir().unwrap();
    let (output, journal) = (dir.path().join("out.jsonl"), dir.path().join("journal.jsonl"));
    let mut child = tokio::process::Command::new(&binary)
        .args(["--stream", &stream, "--app", &stream, "--worker-id", "solo", "--retrieval", retrieval])
        .arg("--output")
        .arg(&output)
        .arg("--journal")
        .arg(&journal)
        .args(["--kinesis-endpoint", emulators().kinesis_endpoint()])
        .args(["--dynamodb-endpoint", emulators().dynamodb_endpoint()])
        .args(["--lease-duration-ms", "3000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let lines = std::fs::read_to_string(&output).map(|t| t.lines().count()).unwrap_or(0);
        if lines >= puts.len() {
            break;
        }
        assert!(Instant::now() < deadline, "{retrieval}: only {lines} of {} records processed", puts.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SAFETY: kill(2) on our child, not yet reaped.
    unsafe {
        libc::kill(child.id().unwrap() as libc::pid_t, libc::SIGTERM);
    }
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0), "{retrieval}: SIGTERM is a graceful stop");

    let store = DynamoLeaseStore::builder(dynamodb.clone(), &stream).build().await.unwrap();
    let history = History {
        deliveries: verify::load_outputs(&[&output]).unwrap(),
        journal: verify::load_journal(&[&journal]).unwrap(),
        leases: store.list_all_leases().await.unwrap(),
        shards: verify::fetch_shards(&kinesis, &stream).await.unwrap(),
        puts,
    };
    let report = verify::verify(&history);
    assert!(report.passed(), "{retrieval}:\n{report}");
    assert_eq!((report.duplicates, report.epochs, report.crashed_processes), (0, 2, 0), "{retrieval}:\n{report}");
    assert!(history.deliveries.iter().all(|d| d.worker == "solo" && d.epoch.starts_with("solo#")));
    assert!(matches!(history.journal.last().map(|e| &e.event), Some(Event::Exit { ok: true })));
    kinesis.delete_stream().stream_name(&stream).enforce_consumer_deletion(true).send().await.unwrap();
    dynamodb.delete_table().table_name(&stream).send().await.unwrap();
}

#[tokio::test]
async fn polling_worker_processes_everything_and_stops_gracefully() {
    consume_with("polling").await;
}

#[tokio::test]
async fn fan_out_worker_processes_everything_and_stops_gracefully() {
    consume_with("fanout").await;
}
