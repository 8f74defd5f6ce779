//! A Java KCL 3.x fleet (3.5.1, `CLIENT_VERSION_CONFIG_3X`: leader-based, load-aware lease assignment). kcl-rs
//! speaks the 2.x lease protocol, so a kcl-rs worker must refuse to join: it exits with an error naming the Java
//! setting to change, takes no lease and writes no checkpoint, while the Java fleet goes on undisturbed.
//!
//! Found on the way: KCL 3.5.1 keeps its coordinator state (`Migration3.0`, the leader lock) and worker metrics in
//! the lease table itself (`entityType` CLIENT_VERSION_MIGRATION, WORKER_METRIC_STATS); the separate
//! `<app>-CoordinatorState` and `<app>-WorkerMetricStats` tables are KCL 3.0–3.4's layout (still read by 3.5 when
//! they exist). Both layouts are checked.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType};
use kcl_dynamo_lease::{COORDINATOR_STATE_TABLE_SUFFIX, DynamoLeaseError, DynamoLeaseStore, LEASE_OWNER_INDEX_NAME};
use kcl_tests::interop::{Kind, Producer, judge, lease_owners, wait_all_delivered, wait_deliveries};
use kcl_tests::verify::Event;
use kcl_tests::{emulators, unique_name};

use crate::common::{JAVA_START, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcl_rs_refuses_to_join_a_java_3x_fleet() {
    let mut setup = Setup::new("fleet3x", 4).await;
    let producer = Producer::start(setup.kinesis.clone(), &setup.stream, 20, 20, 0x3f);
    // Java KCL 3.x workers started together race to create the lease table's owner index; on DynamoDB Local the
    // loser's lease coordinator fails to initialise ("Index is being created") and the fleet's leader then assigns
    // no lease at all (CI saw 0 deliveries in 120 s). The second worker starts once the index is active, as an
    // operator rolling out a fleet would see it.
    let j0 = setup.fleet.start(Kind::Java3, "j0", &[]).unwrap();
    if let Err(e) = wait_for_owner_index(&setup.dynamodb, &setup.app, JAVA_START).await {
        let log = setup.fleet.log_tail(j0, 80);
        setup.fail(&format!("Java 3.x worker j0: {e}\n{log}"));
    }
    let java = vec![j0, setup.fleet.start(Kind::Java3, "j1", &[]).unwrap()];
    if let Err(e) = wait_deliveries(&setup.fleet, 40, JAVA_START).await {
        let log = setup.fleet.log_tail(java[0], 80);
        setup.fail(&format!("Java 3.x fleet: {e}\n{log}"));
    }

    // The store refuses the table, naming the setting.
    match DynamoLeaseStore::builder(setup.dynamodb.clone(), &setup.app).build().await {
        Err(DynamoLeaseError::Kcl3Fleet { client_version, found_in, .. }) => {
            assert_eq!(client_version, "CLIENT_VERSION_3X");
            assert_eq!(found_in, setup.app, "KCL 3.5.1 keeps its migration state in the lease table");
        }
        other => setup.fail(&format!("expected Kcl3Fleet, got {other:?}")),
    }
    // A kcl-rs worker joining exits with that error, having taken nothing.
    let rust = setup.fleet.start(Kind::Rust, "r0", &[]).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(code) = setup.fleet.exited(rust) {
            break code;
        }
        if tokio::time::Instant::now() > deadline {
            setup.fail("the kcl-rs worker did not exit within 60 s next to a Java 3.x fleet");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log = setup.fleet.log_tail(rust, 80);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X"), "the error names the Java setting:\n{log}");

    tokio::time::sleep(Duration::from_secs(3)).await;
    let puts = producer.stop().await.unwrap();
    if let Err(e) = wait_all_delivered(&setup.fleet, &puts, Duration::from_secs(90)).await {
        setup.fail(&format!("Java 3.x fleet after the kcl-rs attempt: {e}"));
    }
    for n in java {
        assert_eq!(setup.fleet.term(n).await, Some(0), "Java worker's graceful stop\n{}", setup.fleet.log_tail(n, 80));
    }
    let owners = lease_owners(&setup.dynamodb, &setup.app).await.unwrap();
    assert!(owners.values().all(|o| o.as_deref() != Some("r0")), "kcl-rs owns a lease of a 3.x fleet: {owners:?}");
    let judged = judge(&setup.fleet, puts, &setup.kinesis, &setup.dynamodb, &setup.stream, &setup.app).await.unwrap();
    let history = &judged.history;
    assert!(history.deliveries.iter().all(|d| d.worker != "r0"), "kcl-rs delivered records of a 3.x fleet");
    let r0_acted =
        history.journal.iter().any(|e| e.worker == "r0" && !matches!(e.event, Event::Start | Event::Exit { .. }));
    assert!(!r0_acted, "kcl-rs started a processor or wrote to the lease table of a 3.x fleet");
    setup.assert_passed(&judged);
}

/// Waits until the lease table `table` has KCL 3.x's `LeaseOwnerToLeaseKeyIndex`, active.
async fn wait_for_owner_index(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let active = match dynamodb.describe_table().table_name(table).send().await {
            Ok(described) => described.table().is_some_and(|t| {
                t.global_secondary_indexes().iter().any(|index| {
                    index.index_name() == Some(LEASE_OWNER_INDEX_NAME)
                        && index.index_status() == Some(&aws_sdk_dynamodb::types::IndexStatus::Active)
                })
            }),
            Err(_) => false,
        };
        if active {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("no active LeaseOwnerToLeaseKeyIndex on `{table}` after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn coordinator_state_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str, cv: &str) {
    dynamodb
        .create_table()
        .table_name(table)
        .key_schema(KeySchemaElement::builder().attribute_name("key").key_type(KeyType::Hash).build().unwrap())
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("key")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    dynamodb
        .put_item()
        .table_name(table)
        .item("key", AttributeValue::S("Migration3.0".into()))
        .item("cv", AttributeValue::S(cv.into()))
        .send()
        .await
        .unwrap();
}

/// KCL 3.0–3.4 keep the migration state in `<app>-CoordinatorState`: a 3.x state there is refused, a
/// 2.x-compatible one accepted.
#[tokio::test]
async fn legacy_coordinator_state_table_is_checked() {
    let dynamodb = emulators().dynamodb_client().await;
    for (cv, refused) in [("CLIENT_VERSION_3X_WITH_ROLLBACK", true), ("CLIENT_VERSION_UPGRADE_FROM_2X", false)] {
        let app = unique_name("legacy3x");
        coordinator_state_table(&dynamodb, &format!("{app}{COORDINATOR_STATE_TABLE_SUFFIX}"), cv).await;
        let result = DynamoLeaseStore::builder(dynamodb.clone(), &app).build().await;
        match (result, refused) {
            (Err(DynamoLeaseError::Kcl3Fleet { found_in, .. }), true) => {
                assert_eq!(found_in, format!("{app}{COORDINATOR_STATE_TABLE_SUFFIX}"));
            }
            (Ok(_), false) => {}
            (other, _) => panic!("{cv}: unexpected {other:?}"),
        }
    }
}
