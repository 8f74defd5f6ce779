//! `kcl-admin` against the emulators: every subcommand's `--json` output, and what it wrote, read back through the
//! lease store. Leases are written directly with `DynamoLeaseStore` (an owned and an unowned one, checkpoints where
//! the test needs them), so each test controls exactly what the table holds.

#[path = "admin_cli/harness.rs"]
mod harness;
#[path = "admin_cli/java_table.rs"]
mod java_table;
#[path = "admin_cli/repair.rs"]
mod repair;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use harness::{PER_BATCH, SHARD_0, SHARD_1, WORKER_A, admin, fence_of, find, fixture, raw_admin, rfc3339, wait_active};
use kcl_core::lease::{Lease, LeaseStore};
use kcl_core::types::{ExtendedSequenceNumber, SequenceNumber};
use kcl_tests::{emulators, unique_name};

#[tokio::test(flavor = "multi_thread")]
async fn leases_lists_owners_checkpoints_pending_checkpoints_and_counters() {
    let f = fixture("admin-leases").await;
    f.checkpoint(SHARD_0, WORKER_A, &f.at(SHARD_0, 1)).await;
    let owned = f.lease(SHARD_0).await;
    f.store
        .prepare_checkpoint(&fence_of(&owned), &f.at(SHARD_0, 2), Some(b"app-state".as_slice().into()))
        .await
        .unwrap();
    let multi =
        Lease::new_for_stream_shard("123456789012:other-stream:1700000000", SHARD_0, ExtendedSequenceNumber::Latest);
    f.store.create_lease_if_not_exists(&multi).await.unwrap();

    let report = admin(&f.args(&["leases"])).await.json();
    assert_eq!(report["table"], f.table.as_str());
    assert_eq!(
        (report["total"].as_u64(), report["owned"].as_u64(), report["finished"].as_u64()),
        (Some(3), Some(1), Some(0))
    );
    let shard0 = find(&report["leases"], "lease_key", SHARD_0);
    let stored = f.lease(SHARD_0).await;
    assert_eq!(shard0["owner"], WORKER_A);
    assert_eq!(shard0["checkpoint"], f.seqs(SHARD_0)[1].as_str());
    assert_eq!(shard0["checkpoint_sub_sequence"], 0);
    assert_eq!(shard0["pending_checkpoint"], f.seqs(SHARD_0)[2].as_str());
    assert_eq!(shard0["has_pending_checkpoint_state"], true);
    assert_eq!(shard0["lease_counter"].as_u64(), Some(stored.lease_counter));
    assert_eq!(shard0["starting_hash_key"], "0");
    assert_eq!(shard0["stream"], serde_json::Value::Null);
    assert_eq!(shard0["counter_moved"], serde_json::Value::Null, "no --observe, no verdict");
    let shard1 = find(&report["leases"], "lease_key", SHARD_1);
    assert_eq!(shard1["owner"], serde_json::Value::Null);
    assert_eq!(shard1["checkpoint"], "TRIM_HORIZON");
    assert_eq!(shard1["ending_hash_key"], u128::MAX.to_string());
    let multi_row = find(&report["leases"], "lease_key", &multi.lease_key);
    assert_eq!(multi_row["stream"], "123456789012:other-stream:1700000000");
    assert_eq!(multi_row["shard_id"], SHARD_0);
    assert!(report["age_note"].as_str().unwrap().contains("no timestamps"));

    // --observe: a live owner's counter moves, an unowned lease's does not.
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let (store, stop, mut fence) = (f.store.clone(), stop.clone(), fence_of(&f.lease(SHARD_0).await));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                fence.counter = store.renew_lease(&fence).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let observed = admin(&f.args(&["leases", "--observe", "2"])).await.json();
    stop.store(true, Ordering::Relaxed);
    renewer.await.unwrap();
    assert_eq!(observed["observed_seconds"], 2);
    assert_eq!(find(&observed["leases"], "lease_key", SHARD_0)["counter_moved"], true);
    assert_eq!(find(&observed["leases"], "lease_key", SHARD_1)["counter_moved"], false);

    // The human table names the same things.
    let human = admin(&["leases", "--table", &f.table]).await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(human.stdout.starts_with("LEASE KEY"), "{}", human.stdout);
    assert!(human.stdout.contains(WORKER_A) && human.stdout.contains("3 leases"), "{}", human.stdout);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lag_is_non_zero_before_consumption_and_zero_after() {
    let f = fixture("admin-lag").await;
    let last = 2 * PER_BATCH - 1;

    let before = admin(&f.args(&["lag", "--stream", &f.stream])).await.json();
    assert_eq!(before["shards_behind"], 2, "{before:#}");
    for shard in [SHARD_0, SHARD_1] {
        let row = find(&before["shards"], "shard_id", shard);
        assert_eq!(row["status"], "behind");
        assert_eq!(row["next_sequence_number"], f.seqs(shard)[0].as_str(), "the first record is unprocessed");
        assert!(row["millis_behind_latest"].as_u64().unwrap() > 0, "the second batch arrived later: {row:#}");
        assert!(row["next_record_age_millis"].as_u64().is_some());
        assert_eq!(row["open"], true);
    }
    assert_eq!(find(&before["shards"], "shard_id", SHARD_0)["owner"], WORKER_A);

    // Part-way: the first unprocessed record is the one after the checkpoint.
    f.checkpoint(SHARD_1, "worker-b", &f.at(SHARD_1, 0)).await;
    let partway = admin(&f.args(&["lag", "--stream", &f.stream])).await.json();
    let row = find(&partway["shards"], "shard_id", SHARD_1);
    assert_eq!(row["next_sequence_number"], f.seqs(SHARD_1)[1].as_str());
    assert!(row["millis_behind_latest"].as_u64().unwrap() > 0);

    // Consumed: every shard checkpointed at its last record.
    f.checkpoint(SHARD_0, WORKER_A, &f.at(SHARD_0, last)).await;
    f.checkpoint(SHARD_1, "worker-b", &f.at(SHARD_1, last)).await;
    let after = admin(&f.args(&["lag", "--stream", &f.stream])).await.json();
    assert_eq!(after["shards_behind"], 0, "{after:#}");
    assert_eq!(after["max_millis_behind_latest"], 0);
    for shard in [SHARD_0, SHARD_1] {
        let row = find(&after["shards"], "shard_id", shard);
        assert_eq!(row["status"], "caught_up");
        assert_eq!(row["millis_behind_latest"], 0);
        assert_eq!(row["next_sequence_number"], serde_json::Value::Null);
    }

    // A split closes shard 1; once its lease is at SHARD_END it shows as finished, and its children have no lease.
    let split_at = ((1u128 << 127) + (1u128 << 126)).to_string();
    f.kinesis
        .split_shard()
        .stream_name(&f.stream)
        .shard_to_split(SHARD_1)
        .new_starting_hash_key(split_at)
        .send()
        .await
        .unwrap();
    wait_active(&f.kinesis, &f.stream).await;
    f.checkpoint(SHARD_1, "worker-b", &ExtendedSequenceNumber::ShardEnd).await;
    let split = admin(&f.args(&["lag", "--stream", &f.stream])).await.json();
    let parent = find(&split["shards"], "shard_id", SHARD_1);
    assert_eq!((parent["status"].as_str(), parent["open"].as_bool()), (Some("finished"), Some(false)));
    assert!(parent["ending_sequence_number"].is_string(), "{parent:#}");
    let children: Vec<_> =
        split["shards"].as_array().unwrap().iter().filter(|s| s["parent_shard_ids"][0] == SHARD_1).collect();
    assert_eq!(children.len(), 2, "{split:#}");
    assert!(children.iter().all(|c| c["status"] == "no_lease" && c["open"] == true));
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_checkpoint_refuses_an_owned_lease_unless_forced_and_resolves_every_target() {
    let f = fixture("admin-reset").await;
    let last = 2 * PER_BATCH - 1;
    f.checkpoint(SHARD_0, WORKER_A, &f.at(SHARD_0, last)).await;
    f.checkpoint(SHARD_1, "worker-b", &f.at(SHARD_1, last)).await;
    f.release(SHARD_1).await;
    let owned = f.lease(SHARD_0).await;

    let refused = admin(&f.args(&["reset-checkpoint", SHARD_0, "--to", "TRIM_HORIZON"])).await;
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("owned by worker `worker-a`") && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert_eq!(refused.document()["error"]["kind"], "refused");
    assert_eq!(f.lease(SHARD_0).await, owned, "a refused reset writes nothing");

    let dry =
        admin(&f.args(&["reset-checkpoint", SHARD_0, "--to", "TRIM_HORIZON", "--force", "--dry-run"])).await.json();
    assert_eq!(dry["checkpoint"], "TRIM_HORIZON");
    assert_eq!(f.lease(SHARD_0).await, owned, "a dry run writes nothing");

    let forced = admin(&f.args(&["reset-checkpoint", SHARD_0, "--to", "TRIM_HORIZON", "--force"])).await.json();
    assert_eq!(forced["previous_owner"], WORKER_A);
    assert_eq!(forced["previous_checkpoint"], f.seqs(SHARD_0)[last].as_str());
    let reset = f.lease(SHARD_0).await;
    assert_eq!(reset.checkpoint, ExtendedSequenceNumber::TrimHorizon);
    assert_eq!(reset.lease_owner, None, "handed back unowned");
    assert_eq!(reset.lease_counter, owned.lease_counter + 3, "take, checkpoint, release");
    assert_eq!(forced["lease_counter"].as_u64(), Some(reset.lease_counter));
    let stale = f.store.update_checkpoint(&fence_of(&owned), &f.at(SHARD_0, 0)).await;
    assert!(stale.unwrap_err().is_condition_failed(), "the old owner's fence no longer holds");

    // The unowned lease, to each kind of target, read back each time.
    let reset_to = async |to: &str, stream: bool| {
        let mut args = vec!["reset-checkpoint", SHARD_1, "--to", to];
        if stream {
            args.extend(["--stream", f.stream.as_str()]);
        }
        let report = admin(&f.args(&args)).await.json();
        let lease = f.lease(SHARD_1).await;
        assert_eq!(report["checkpoint"], lease.checkpoint.checkpoint_str(), "{report:#}");
        lease.checkpoint
    };
    let seq1 = SequenceNumber::parse(&f.seqs(SHARD_1)[1]).unwrap();
    assert_eq!(reset_to(&f.seqs(SHARD_1)[1], true).await, ExtendedSequenceNumber::sequence(seq1.clone()));
    assert_eq!(reset_to(&format!("{seq1}/2"), false).await, ExtendedSequenceNumber::with_sub(seq1, 2));
    assert_eq!(reset_to("LATEST", false).await, ExtendedSequenceNumber::Latest);
    // AT_TIMESTAMP becomes the last record before the time: the first batch's last record.
    let between = format!("AT_TIMESTAMP:{}", rfc3339(f.between));
    assert_eq!(reset_to(&between, true).await, f.at(SHARD_1, PER_BATCH - 1));
    let before_all = format!("AT_TIMESTAMP:{}", rfc3339(f.before_all));
    assert_eq!(reset_to(&before_all, true).await, ExtendedSequenceNumber::TrimHorizon);
    let now = format!("AT_TIMESTAMP:{}", rfc3339(std::time::SystemTime::now()));
    assert_eq!(reset_to(&now, true).await, f.at(SHARD_1, last));

    // Mistakes are refused with a reason.
    let no_stream = admin(&f.args(&["reset-checkpoint", SHARD_1, "--to", &between])).await;
    assert_eq!(no_stream.code, 2);
    assert!(no_stream.stderr.contains("--stream"), "{}", no_stream.stderr);
    let foreign =
        admin(&f.args(&["reset-checkpoint", SHARD_1, "--to", &f.seqs(SHARD_0)[0], "--stream", &f.stream])).await;
    assert_eq!(foreign.code, 2);
    assert!(foreign.stderr.contains("is not a record of shard"), "{}", foreign.stderr);
    f.checkpoint(SHARD_0, "worker-c", &ExtendedSequenceNumber::ShardEnd).await;
    f.release(SHARD_0).await;
    let finished = admin(&f.args(&["reset-checkpoint", SHARD_0, "--to", "TRIM_HORIZON"])).await;
    assert_eq!(finished.code, 3);
    assert!(finished.stderr.contains("finished (SHARD_END)"), "{}", finished.stderr);
    assert_eq!(f.lease(SHARD_0).await.checkpoint, ExtendedSequenceNumber::ShardEnd);
    let unknown = admin(&f.args(&["reset-checkpoint", "shardId-000000000042", "--to", "LATEST"])).await;
    assert_eq!(unknown.code, 4);
    assert!(unknown.stderr.contains("no lease `shardId-000000000042`"), "{}", unknown.stderr);
    assert_eq!(unknown.document()["error"]["kind"], "lease_not_found");
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn release_clears_the_owner_and_fences_out_the_old_one() {
    let f = fixture("admin-release").await;
    let owned = f.lease(SHARD_0).await;

    let report = admin(&f.args(&["release", SHARD_0])).await.json();
    assert_eq!((report["released"].as_bool(), report["previous_owner"].as_str()), (Some(true), Some(WORKER_A)));
    let released = f.lease(SHARD_0).await;
    assert_eq!(released.lease_owner, None);
    assert_eq!(released.lease_counter, owned.lease_counter + 1);
    assert_eq!(report["lease_counter"].as_u64(), Some(released.lease_counter));
    assert!(f.store.renew_lease(&fence_of(&owned)).await.unwrap_err().is_condition_failed());

    let again = admin(&f.args(&["release", SHARD_0])).await.json();
    assert_eq!(again["released"], false, "already unowned: nothing to do");
    assert_eq!(f.lease(SHARD_0).await, released);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_adopts_a_java_kcl_table_and_respects_existing_leases() {
    java_table::import_scenario().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_and_missing_resources_fail_clearly() {
    let bad_target = raw_admin(&["reset-checkpoint", "shardId-0", "--to", "YESTERDAY", "--table", "app"]).await;
    assert_eq!(bad_target.code, 2, "{}", bad_target.stderr);
    assert!(bad_target.stderr.contains("--to") && bad_target.stderr.contains("TRIM_HORIZON"), "{}", bad_target.stderr);

    let no_table_arg = raw_admin(&["leases"]).await;
    assert_eq!(no_table_arg.code, 2);
    assert!(no_table_arg.stderr.contains("--table"), "{}", no_table_arg.stderr);

    let missing = unique_name("no-such-app");
    let no_table = admin(&["leases", "--table", &missing]).await;
    assert_eq!(no_table.code, 4, "{}", no_table.stderr);
    assert!(no_table.stderr.contains(&format!("`{missing}` does not exist")), "{}", no_table.stderr);

    let f = fixture("admin-errors").await;
    let no_stream = admin(&f.args(&["lag", "--stream", "no-such-stream"])).await;
    assert_eq!(no_stream.code, 4, "{}", no_stream.stderr);
    assert!(no_stream.stderr.contains("stream `no-such-stream` does not exist"), "{}", no_stream.stderr);

    // Nothing listens on port 1 of the loopback interface.
    let unreachable = raw_admin(&[
        "leases",
        "--table",
        &f.table,
        "--json",
        "--dynamodb-endpoint",
        "http://127.0.0.1:1",
        "--kinesis-endpoint",
        emulators().kinesis_endpoint(),
    ])
    .await;
    assert_eq!(unreachable.code, 5, "{}", unreachable.stderr);
    assert!(unreachable.stderr.contains("cannot reach DynamoDB at http://127.0.0.1:1"), "{}", unreachable.stderr);
    assert_eq!(unreachable.document()["error"]["kind"], "unreachable");
    f.cleanup().await;
}
