//! kcl-multilang with the real MultiLangDaemon clients — amazon-kclpy's unmodified sample (PyPI) and an aws-kcl
//! (npm) record processor — on kinesis-mock and DynamoDB Local: every record delivered and checkpointed, a split
//! during the run, a child stopped and killed mid-batch (its batch redelivered to a fresh child), graceful shutdown
//! on SIGTERM; and a child that writes garbage to stdout gets a clear error and its batch retried.
//!
//! scripts/test installs the clients (pinned) and exports where they are; run alone with
//! `scripts/test -p kcl-multilang --test real_clients`.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::*;
use kcl_tests::kinesis::{create_stream, delete_stream, wait_active};
use kcl_tests::{emulators, unique_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amazon_kclpy_sample_under_kcl_multilang() {
    scenario(kclpy(), "ml-kclpy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kcl_node_processor_under_kcl_multilang() {
    scenario(aws_kcl(), "ml-node").await;
}

async fn shard_ranges(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Vec<(String, u128, u128, bool)> {
    let shards = kinesis.list_shards().stream_name(stream).send().await.expect("ListShards").shards.unwrap_or_default();
    shards
        .into_iter()
        .map(|s| {
            let range = s.hash_key_range.expect("hash range");
            let open = s.sequence_number_range.and_then(|r| r.ending_sequence_number).is_none();
            (s.shard_id, range.starting_hash_key.parse().unwrap(), range.ending_hash_key.parse().unwrap(), open)
        })
        .collect()
}

async fn scenario(client: Client, name: &str) {
    let kinesis = emulators().kinesis_client().await;
    let stream = unique_name(name);
    let app = unique_name(&format!("{name}-app"));
    create_stream(&kinesis, &stream, 2).await;
    let marker = client.sequence_marker;
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    merge(&mut all, put(&kinesis, &stream, 40, "a", None).await);

    let mut daemon =
        Daemon::start(&properties(&app, &stream, &client.executable, "timeoutInSeconds = 60"), &client.env);
    let expected = all.clone();
    daemon.wait_for("the first 40 records", Duration::from_secs(60), |log| {
        missing(&expected, &logged_sequences(log, marker)).is_empty()
    });

    // A child stopped while its batch is sent, then killed: the batch goes to a fresh child.
    let shards = shard_ranges(&kinesis, &stream).await;
    let (victim_shard, victim_start, _, _) = shards[1].clone();
    let victim = child_pid(&daemon.log_text(), &victim_shard).expect("the victim shard's child pid in the log");
    // SAFETY: signals to a child process of the daemon we started.
    unsafe { libc::kill(victim, libc::SIGSTOP) };
    let in_flight = put(&kinesis, &stream, 5, "b", Some(&victim_start.to_string())).await;
    assert_eq!(in_flight.keys().collect::<Vec<_>>(), vec![&victim_shard]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        missing(&in_flight, &logged_sequences(&daemon.log_text(), marker)).len() == 5,
        "a stopped child cannot have logged records"
    );
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let redelivered = in_flight.clone();
    daemon.wait_for("the killed child's batch on a fresh child", Duration::from_secs(60), |log| {
        let fresh: Vec<(String, u32)> =
            logged_sequences(log, marker).into_iter().filter(|(_, pid)| *pid != victim as u32).collect();
        missing(&redelivered, &fresh).is_empty()
    });
    let log = daemon.log_text();
    assert!(
        log.contains(&format!("record processor for shard {victim_shard} failed during `processRecords`")),
        "the failure names the shard and the action:\n{}",
        tail(&log, 40)
    );
    merge(&mut all, in_flight);

    // A split during the run: the parent is finished (SHARD_END), its children take over.
    let (parent, start, end, _) = shards[0].clone();
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(&parent)
        .new_starting_hash_key((start + (end - start) / 2).to_string())
        .send()
        .await
        .expect("SplitShard");
    wait_active(&kinesis, &stream).await;
    merge(&mut all, put(&kinesis, &stream, 30, "c", None).await);
    let expected = all.clone();
    daemon.wait_for("every record, children of the split included", Duration::from_secs(90), |log| {
        missing(&expected, &logged_sequences(log, marker)).is_empty()
    });
    let children: Vec<String> =
        shard_ranges(&kinesis, &stream).await.into_iter().filter(|s| s.3 && s.0 != victim_shard).map(|s| s.0).collect();
    assert_eq!(children.len(), 2, "two child shards");
    assert!(children.iter().any(|c| all.contains_key(c)), "records reached a child shard: {:?}", all.keys());

    // Graceful shutdown: children are told shutdownRequested, checkpoint, and exit; so does the daemon.
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(45));
    let log = daemon.log_text();
    assert!(status.success(), "exit status {status}; log:\n{}", tail(&log, 60));
    assert!(log.contains(client.shutdown_marker), "children were told shutdownRequested:\n{}", tail(&log, 60));
    let pids: Vec<i32> = log
        .lines()
        .filter(|l| l.contains("started record processor"))
        .filter_map(|l| field(l, "pid=")?.parse().ok())
        .collect();
    assert!(pids.len() >= 4, "2 shards + 1 restart + 2 children at least: {pids:?}");
    for pid in pids {
        assert!(!alive(pid), "child {pid} outlived the daemon");
    }

    let checkpoints = checkpoints(&app).await;
    assert_eq!(checkpoints.get(&parent).map(String::as_str), Some("SHARD_END"), "{checkpoints:?}");
    for (shard, sequences) in &all {
        if *shard == parent {
            continue;
        }
        let last = sequences.iter().max_by_key(|s| (s.len(), s.as_str())).expect("records");
        assert_eq!(
            checkpoints.get(shard),
            Some(last),
            "shard {shard} is checkpointed at its last record: {checkpoints:?}"
        );
    }
    let duplicates = logged_sequences(&log, marker).len() - all.values().map(Vec::len).sum::<usize>();
    println!(
        "{name}: {} records delivered and checkpointed, {duplicates} redeliveries",
        all.values().map(Vec::len).sum::<usize>()
    );
    delete_stream(&kinesis, &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_writing_garbage_gets_a_clear_error_and_its_batch_is_retried() {
    let kinesis = emulators().kinesis_client().await;
    let stream = unique_name("ml-garbage");
    let app = unique_name("ml-garbage-app");
    create_stream(&kinesis, &stream, 1).await;
    put(&kinesis, &stream, 3, "g", None).await;
    let script = repo_root().join("kcl-examples/multilang/garbage_app.py");
    let python = std::env::var("KCL_TEST_KCLPY_PYTHON").unwrap_or_else(|_| "python3".into());
    let properties =
        properties(&app, &stream, &format!("{python} {}", script.display()), "timeoutInSeconds = 2\nstreamNmae = typo");
    let mut daemon = Daemon::start(&properties, &[]);
    daemon.wait_for("the garbage reported and the batch retried on a fresh child", Duration::from_secs(60), |log| {
        log.contains("is not a MultiLangDaemon message") && log.matches("started record processor").count() >= 3
    });
    let log = daemon.log_text();
    assert!(log.contains("write logs and prints to stderr"), "the error says what to do:\n{}", tail(&log, 30));
    assert!(
        log.contains("failed during `processRecords`: no progress within timeoutInSeconds = 2"),
        "the hang is reported with the setting that bounds it:\n{}",
        tail(&log, 30)
    );
    assert!(!log.contains("Processing records... this line is not JSON"), "the garbage itself is not logged");
    assert!(log.contains("unknown key `streamNmae` ignored"), "an unknown key is a warning naming it");
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    let checkpoints = checkpoints(&app).await;
    assert!(
        checkpoints.values().all(|c| c == "TRIM_HORIZON"),
        "nothing was processed, so nothing is checkpointed: {checkpoints:?}"
    );
    delete_stream(&kinesis, &stream).await;
}
