//! Migration both ways: one fleet consumes part of a stream of KPL aggregates and stops gracefully (SIGTERM); the
//! other kind of fleet, same application name, continues from its checkpoints while the producer keeps writing.
//! 0 lost; duplicates only after the last checkpoint (the verifier refuses a redelivery at or below the checkpoint
//! the redelivering processor started from, or one covered by an accepted checkpoint of its predecessor).

use std::time::Duration;

use kcl_core::ExtendedSequenceNumber;
use kcl_tests::interop::{Kind, Producer, judge, leases, wait_all_delivered, wait_deliveries};

use crate::common::{JAVA_START, Setup, init_checkpoints};

/// User records a second.
const RATE: u64 = 40;

/// Runs `first` (worker `a`) until it delivered `records`, stops it, runs `second` (worker `b`) to the end.
/// Returns the setup, the put log and the lease checkpoints `first` left.
async fn migrate(
    prefix: &str,
    first: (Kind, &[&str]),
    second: (Kind, &[&str]),
    aggregate_percent: u64,
) -> (Setup, kcl_tests::interop::Judged, Vec<(String, ExtendedSequenceNumber)>) {
    let mut setup = Setup::new(prefix, 2).await;
    let producer = Producer::start(setup.kinesis.clone(), &setup.stream, RATE, aggregate_percent, 0x13);
    let a = setup.fleet.start(first.0, "a", first.1).unwrap();
    if let Err(e) = wait_deliveries(&setup.fleet, 120, JAVA_START).await {
        let log = setup.fleet.log_tail(a, 80);
        setup.fail(&format!("first fleet ({:?}): {e}\nits log:\n{log}", first.0));
    }
    let code = setup.fleet.term(a).await;
    if code != Some(0) {
        let log = setup.fleet.log_tail(a, 80);
        setup.fail(&format!("first fleet ({:?}) exited with {code:?}\n{log}", first.0));
    }
    let handed_over: Vec<(String, ExtendedSequenceNumber)> =
        leases(&setup.dynamodb, &setup.app).await.unwrap().into_iter().map(|l| (l.shard_id, l.checkpoint)).collect();
    let b = setup.fleet.start(second.0, "b", second.1).unwrap();
    // The producer keeps writing while the second fleet takes over.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let puts = producer.stop().await.unwrap();
    if let Err(e) = wait_all_delivered(&setup.fleet, &puts, JAVA_START).await {
        let log = setup.fleet.log_tail(b, 80);
        setup.fail(&format!("second fleet ({:?}): {e}\nits log:\n{log}", second.0));
    }
    let code = setup.fleet.term(b).await;
    assert_eq!(code, Some(0), "second fleet's exit\n{}", setup.fleet.log_tail(b, 80));
    let judged = judge(&setup.fleet, puts, &setup.kinesis, &setup.dynamodb, &setup.stream, &setup.app).await.unwrap();
    (setup, judged, handed_over)
}

/// Whether `checkpoint` is inside an aggregate: a later user record of the same aggregate was put.
fn inside_aggregate(judged: &kcl_tests::interop::Judged, shard: &str, checkpoint: &ExtendedSequenceNumber) -> bool {
    judged
        .history
        .puts
        .iter()
        .any(|p| p.shard == shard && Some(&p.seq) == checkpoint.sequence_number() && p.sub > checkpoint.sub_sequence())
}

/// Java KCL 3.5.1 (2.x-compatible mode) → kcl-rs. Every entry is a KPL aggregate of 4, and the Java processor keeps
/// its checkpoint 2 user records behind what it processed (`--hold-back 2`), so it stops with checkpoints inside
/// aggregates: kcl-rs must resume at the next sub-record, redelivering exactly the 2 held back per shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_java_to_rust() {
    let (setup, judged, handed_over) =
        migrate("j2r", (Kind::Java3Compatible, &["--hold-back", "2"]), (Kind::Rust, &[]), 100).await;
    // Java's checkpoints are inside aggregates, and kcl-rs started exactly there.
    let inits = init_checkpoints(&judged.history.journal, "b");
    for (shard, checkpoint) in &handed_over {
        assert!(checkpoint.sub_sequence() > 0, "{shard}: Java left {checkpoint}, not a sub-sequence checkpoint");
        assert!(inside_aggregate(&judged, shard, checkpoint), "{shard}: {checkpoint} is the end of its aggregate");
        assert_eq!(inits.get(shard).and_then(|v| v.first()), Some(checkpoint), "{shard}: where kcl-rs started");
    }
    assert_eq!(handed_over.len(), 2, "one lease per shard: {handed_over:?}");
    // The held-back records were redelivered, and each redelivery is explained by the verifier.
    assert!(judged.report.duplicates >= 2 && judged.report.duplicates <= 2 * 2, "{}", judged.report);
    setup.assert_passed(&judged);
}

/// kcl-rs → Java KCL 2.7.2. kcl-rs checkpoints at the end of each batch, so after aggregates at a sub-sequence
/// number (the aggregate's last); Java must resume after it without redelivering the aggregate's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_rust_to_java() {
    let (setup, judged, handed_over) = migrate("r2j", (Kind::Rust, &[]), (Kind::Java2, &[]), 100).await;
    let inits = init_checkpoints(&judged.history.journal, "b");
    assert_eq!(handed_over.len(), 2, "one lease per shard: {handed_over:?}");
    for (shard, checkpoint) in &handed_over {
        assert!(checkpoint.sub_sequence() > 0, "{shard}: kcl-rs left {checkpoint}, not a sub-sequence checkpoint");
        assert_eq!(inits.get(shard).and_then(|v| v.first()), Some(checkpoint), "{shard}: where Java started");
    }
    // kcl-rs's graceful stop checkpointed everything it processed: Java redelivers nothing.
    assert_eq!(judged.report.duplicates, 0, "{}", judged.report);
    setup.assert_passed(&judged);
}
