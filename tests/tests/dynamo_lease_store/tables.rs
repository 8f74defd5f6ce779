//! `build`: creating, reusing and refusing tables.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode as SdkBillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use kcl_core::lease::LeaseStore;
use kcl_dynamo_lease::{BillingMode, DynamoLeaseError, DynamoLeaseStore};

use crate::common::*;

async fn create_table(client: &Client, table: &str, keys: &[(&str, KeyType, ScalarAttributeType)]) {
    let mut request = client.create_table().table_name(table).billing_mode(SdkBillingMode::PayPerRequest);
    for (name, key_type, attr_type) in keys {
        request = request
            .key_schema(KeySchemaElement::builder().attribute_name(*name).key_type(key_type.clone()).build().unwrap())
            .attribute_definitions(
                AttributeDefinition::builder().attribute_name(*name).attribute_type(attr_type.clone()).build().unwrap(),
            );
    }
    request.send().await.expect("CreateTable");
}

#[track_caller]
fn assert_incompatible(result: Result<DynamoLeaseStore, DynamoLeaseError>, table: &str) {
    match result {
        Err(err @ DynamoLeaseError::IncompatibleTable { .. }) => {
            let message = err.to_string();
            assert!(message.contains(table) && message.contains("`leaseKey` (S)"), "{message}");
            assert!(!err.is_retryable());
        }
        other => panic!("expected IncompatibleTable, got {other:?}"),
    }
}

#[tokio::test]
async fn tables_with_another_key_schema_are_refused_and_left_alone() {
    let client = client().await;
    let wrong_name = kcl_tests::unique_name("ddb-wrong-name");
    create_table(&client, &wrong_name, &[("id", KeyType::Hash, ScalarAttributeType::S)]).await;
    let wrong_type = kcl_tests::unique_name("ddb-wrong-type");
    create_table(&client, &wrong_type, &[("leaseKey", KeyType::Hash, ScalarAttributeType::N)]).await;
    let with_range = kcl_tests::unique_name("ddb-with-range");
    create_table(
        &client,
        &with_range,
        &[("leaseKey", KeyType::Hash, ScalarAttributeType::S), ("leaseOwner", KeyType::Range, ScalarAttributeType::S)],
    )
    .await;
    for table in [&wrong_name, &wrong_type, &with_range] {
        assert_incompatible(DynamoLeaseStore::builder(client.clone(), table.as_str()).build().await, table);
        let described = client.describe_table().table_name(table).send().await.unwrap().table.unwrap();
        assert!(described.global_secondary_indexes().is_empty(), "a refused table is not modified");
    }
    match DynamoLeaseStore::builder(client.clone(), &wrong_name).build().await {
        Err(err) => assert!(err.to_string().contains("[id HASH (S)]"), "the message shows what was found: {err}"),
        Ok(_) => panic!("built on a wrong table"),
    }
}

#[tokio::test]
async fn a_heartbeat_table_with_another_key_schema_is_refused() {
    let client = client().await;
    let table = kcl_tests::unique_name("ddb-bad-heartbeats");
    let heartbeats = format!("{table}-WorkerHeartbeats");
    create_table(&client, &heartbeats, &[("leaseKey", KeyType::Hash, ScalarAttributeType::S)]).await;
    match DynamoLeaseStore::builder(client.clone(), &table).worker_heartbeats(true).build().await {
        Err(DynamoLeaseError::IncompatibleTable { table: refused, reason }) => {
            assert_eq!(refused, heartbeats);
            assert!(reason.contains("`workerId` (S)"), "{reason}");
        }
        other => panic!("expected IncompatibleTable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_existing_table_is_reused() {
    let (store, client, table) = store("ddb-reuse").await;
    create(&store, &owned("s", "a", 3)).await;
    drop(store);
    let again = DynamoLeaseStore::builder(client.clone(), &table).worker_heartbeats(true).build().await.unwrap();
    assert_eq!(get(&again, "s").await.lease_counter, 3);
    assert!(again.owner_index_active());
    // A table managed elsewhere: no creation needed, none attempted.
    let managed = DynamoLeaseStore::builder(client, &table).create_table_if_missing(false).build().await.unwrap();
    assert_eq!(managed.list_all_leases().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_existing_table_without_the_index_gets_it() {
    let client = client().await;
    let table = kcl_tests::unique_name("ddb-add-index");
    create_table(&client, &table, &[("leaseKey", KeyType::Hash, ScalarAttributeType::S)]).await;
    put_raw(
        &client,
        &table,
        item(&[
            ("leaseKey", s("shardId-0")),
            ("leaseOwner", s("a")),
            ("leaseCounter", n("1")),
            ("checkpoint", s("LATEST")),
        ]),
    )
    .await;
    let store = DynamoLeaseStore::builder(client.clone(), &table)
        .owner_index_recheck_interval(std::time::Duration::ZERO)
        .build()
        .await
        .unwrap();
    let described = client.describe_table().table_name(&table).send().await.unwrap().table.unwrap();
    assert_eq!(described.global_secondary_indexes()[0].index_name(), Some("LeaseOwnerToLeaseKeyIndex"));
    // Whether or not the backfill is done yet, the answer is the same.
    let owned: Vec<_> = store.list_leases_by_owner("a").await.unwrap().into_iter().map(|l| l.lease_key).collect();
    assert_eq!(owned, ["shardId-0"]);
    // Once the backfill is done, the store notices (it rechecks on by-owner calls) and uses the index.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !store.owner_index_active() {
        assert!(std::time::Instant::now() < deadline, "the store never started using the new index");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(store.list_leases_by_owner("a").await.unwrap().len(), 1);
    }
    assert_eq!(store.list_leases_by_owner("a").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_missing_table_is_an_error_when_creation_is_off() {
    let client = client().await;
    let table = kcl_tests::unique_name("ddb-missing");
    match DynamoLeaseStore::builder(client.clone(), &table).create_table_if_missing(false).build().await {
        Err(err @ DynamoLeaseError::TableNotFound { .. }) => assert!(err.to_string().contains(&table), "{err}"),
        other => panic!("expected TableNotFound, got {other:?}"),
    }
    assert!(client.describe_table().table_name(&table).send().await.is_err(), "nothing was created");
}

#[tokio::test]
async fn provisioned_billing_applies_to_table_and_index() {
    let (builder, client, table) = builder("ddb-provisioned").await;
    let billing = BillingMode::Provisioned { read_capacity_units: 3, write_capacity_units: 4 };
    builder.billing_mode(billing).build().await.unwrap();
    let described = client.describe_table().table_name(&table).send().await.unwrap().table.unwrap();
    let throughput = described.provisioned_throughput().unwrap();
    assert_eq!((throughput.read_capacity_units(), throughput.write_capacity_units()), (Some(3), Some(4)));
    let index = described.global_secondary_indexes()[0].provisioned_throughput().unwrap();
    assert_eq!((index.read_capacity_units(), index.write_capacity_units()), (Some(3), Some(4)));
    let keys: Vec<_> = described.key_schema().iter().map(|k| k.attribute_name()).collect();
    assert_eq!(keys, ["leaseKey"]);
}

#[tokio::test]
async fn bad_options_are_refused_before_any_call() {
    let client = client().await;
    for builder in [
        DynamoLeaseStore::builder(client.clone(), "x"),
        DynamoLeaseStore::builder(client.clone(), "has space"),
        DynamoLeaseStore::builder(client.clone(), "good-name")
            .worker_heartbeats(true)
            .heartbeat_table_name("good-name"),
        DynamoLeaseStore::builder(client.clone(), "good-name")
            .billing_mode(BillingMode::Provisioned { read_capacity_units: 0, write_capacity_units: 1 }),
    ] {
        match builder.build().await {
            Err(DynamoLeaseError::InvalidConfig(_)) => {}
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }
}
