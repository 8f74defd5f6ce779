//! `kcl-admin leases`, `lag` and `import` on the lease table of a live Java KCL 2.7.2 worker: the admin tool reads
//! what Java KCL writes, and the imported table lets a kcl-rs worker continue from Java's checkpoints.

use std::process::Command;
use std::time::Duration;

use kcl_tests::chaos::kcl_admin;
use kcl_tests::interop::{Kind, Producer, leases, wait_deliveries};
use kcl_tests::{emulators, unique_name};
use serde_json::Value;

use crate::common::{JAVA_START, Setup};

fn admin(args: &[&str]) -> Value {
    let e = emulators();
    let output = Command::new(kcl_admin().unwrap_or_else(|e| panic!("{e}")))
        .args(args)
        .args(["--json", "--kinesis-endpoint", e.kinesis_endpoint(), "--dynamodb-endpoint", e.dynamodb_endpoint()])
        .output()
        .expect("kcl-admin runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "kcl-admin {args:?}: {text}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("kcl-admin {args:?} printed no JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcl_admin_on_a_live_java_table() {
    let mut setup = Setup::new("admin", 2).await;
    let producer = Producer::start(setup.kinesis.clone(), &setup.stream, 20, 30, 0xad);
    // A generous graceful bound: the stop below happens while CI runs other tests beside this one.
    let java = setup.fleet.start(Kind::Java2, "j0", &["--graceful-timeout-ms", "45000"]).unwrap();
    if let Err(e) = wait_deliveries(&setup.fleet, 40, JAVA_START).await {
        let log = setup.fleet.log_tail(java, 80);
        setup.fail(&format!("Java worker: {e}\n{log}"));
    }
    // Java checkpoints every batch; wait until both shards have one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let app = setup.app.clone();

    let listed = admin(&["leases", "--table", &app]);
    let rows = listed["leases"].as_array().expect("leases array");
    assert_eq!(rows.len(), 2, "{listed}");
    for row in rows {
        assert_eq!(row["owner"], "j0", "{row}");
        assert!(row["checkpoint"].as_str().is_some_and(|c| c.chars().all(|c| c.is_ascii_digit())), "{row}");
        assert!(row["lease_counter"].as_u64().is_some_and(|c| c > 0), "{row}");
    }

    let lag = admin(&["lag", "--table", &app, "--stream", &setup.stream]);
    let shards = lag["shards"].as_array().expect("shards array");
    assert_eq!(shards.len(), 2, "{lag}");
    assert!(shards.iter().all(|s| s["owner"] == "j0" && s["open"] == true), "{lag}");

    let before = leases(&setup.dynamodb, &app).await.unwrap();
    let copy = unique_name("admin-import");
    let imported = admin(&["import", "--table", &copy, "--from", &app]);
    assert_eq!(imported["adopted"].as_array().map(Vec::len), Some(2), "{imported}");
    let after = leases(&setup.dynamodb, &app).await.unwrap();
    let adopted = leases(&setup.dynamodb, &copy).await.unwrap();
    for lease in &adopted {
        // The live worker kept checkpointing: the copy is between what was read before and after the import.
        let at = |set: &[kcl_core::lease::Lease]| {
            set.iter().find(|l| l.shard_id == lease.shard_id).map(|l| l.checkpoint.clone()).expect("same shard")
        };
        assert!(at(&before) <= lease.checkpoint && lease.checkpoint <= at(&after), "{lease:?}");
        assert_eq!(lease.lease_owner, None, "imported leases are unowned: {lease:?}");
    }
    producer.stop().await.unwrap();
    // This test is about kcl-admin beside a live worker; the peer's graceful stop is judged by the migration tests.
    // Here it must exit on its own (not be killed after the stop timeout); its code and reason are in the log tail.
    let code = setup.fleet.term(java).await;
    assert!(code.is_some(), "Java worker did not stop within the timeout\n{}", setup.fleet.log_tail(java, 60));
}
