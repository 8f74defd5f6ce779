//! The `import` scenario: a lease table written item by item in Java KCL's schema (as `DynamoDBLeaseSerializer`
//! writes it, including attributes kcl-rs does not model), adopted into a new kcl-rs table, then imported again
//! with and without `--overwrite` / `--force`, and once more after the source's parents changed (the lease is replaced).

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use kcl_core::lease::LeaseStore;
use kcl_core::types::{ExtendedSequenceNumber, SequenceNumber};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::{emulators, unique_name};

use crate::harness::{admin, find, lower_half, upper_half};

const OLD_CHECKPOINT: &str = "49590338271490256608559692538361571095921575989136588898";
const NEW_CHECKPOINT: &str = "49590338271490256608559692540925702759324208523137515618";
const PENDING: &str = "49590338271490256608559692538361571095921575989136500001";

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn ss(values: &[&str]) -> AttributeValue {
    AttributeValue::Ss(values.iter().map(|v| (*v).to_owned()).collect())
}

async fn put(dynamodb: &aws_sdk_dynamodb::Client, table: &str, item: Vec<(&str, AttributeValue)>) {
    let item: HashMap<String, AttributeValue> = item.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    dynamodb.put_item().table_name(table).set_item(Some(item)).send().await.expect("PutItem");
}

/// A Java KCL 3.x lease table: an owned lease mid-shard inside an aggregate, a finished parent with its children,
/// and a child with a pending checkpoint and its state.
async fn java_table(dynamodb: &aws_sdk_dynamodb::Client) -> String {
    let table = unique_name("java-app");
    dynamodb
        .create_table()
        .table_name(&table)
        .key_schema(KeySchemaElement::builder().attribute_name("leaseKey").key_type(KeyType::Hash).build().unwrap())
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("leaseKey")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
    let (lower, upper) = (lower_half(), upper_half());
    put(
        dynamodb,
        &table,
        vec![
            ("leaseKey", s("shardId-000000000000")),
            ("leaseOwner", s("java-worker-1")),
            ("leaseCounter", n(57)),
            ("ownerSwitchesSinceCheckpoint", n(2)),
            ("checkpoint", s(OLD_CHECKPOINT)),
            ("checkpointSubSequenceNumber", n(3)),
            ("startingHashKey", s(&lower.start.to_string())),
            ("endingHashKey", s(&lower.end.to_string())),
            ("throughputKBps", n(12.5)),
        ],
    )
    .await;
    put(
        dynamodb,
        &table,
        vec![
            ("leaseKey", s("shardId-000000000001")),
            ("leaseCounter", n(9)),
            ("ownerSwitchesSinceCheckpoint", n(0)),
            ("checkpoint", s("SHARD_END")),
            ("checkpointSubSequenceNumber", n(0)),
            ("childShardIds", ss(&["shardId-000000000002", "shardId-000000000003"])),
            ("startingHashKey", s(&upper.start.to_string())),
            ("endingHashKey", s(&upper.end.to_string())),
        ],
    )
    .await;
    put(
        dynamodb,
        &table,
        vec![
            ("leaseKey", s("shardId-000000000002")),
            ("leaseOwner", s("java-worker-2")),
            ("leaseCounter", n(4)),
            ("ownerSwitchesSinceCheckpoint", n(1)),
            ("checkpoint", s("TRIM_HORIZON")),
            ("checkpointSubSequenceNumber", n(0)),
            ("pendingCheckpoint", s(PENDING)),
            ("pendingCheckpointSubSequenceNumber", n(0)),
            ("pendingCheckpointState", AttributeValue::B(Blob::new(b"java-state".to_vec()))),
            ("parentShardId", ss(&["shardId-000000000001"])),
        ],
    )
    .await;
    table
}

/// Changes shard 0's item in the Java table as its application would.
async fn update_java_item(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    expression: &str,
    values: &[(&str, AttributeValue)],
) {
    let values: HashMap<String, AttributeValue> = values.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    dynamodb
        .update_item()
        .table_name(table)
        .key("leaseKey", s("shardId-000000000000"))
        .update_expression(expression)
        .set_expression_attribute_values(Some(values))
        .send()
        .await
        .unwrap();
}

fn seq(text: &str, sub: u64) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::with_sub(SequenceNumber::parse(text).unwrap(), sub)
}

fn actions(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report["adopted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["lease_key"].as_str().unwrap().to_owned(), a["action"].as_str().unwrap().to_owned()))
        .collect();
    for skipped in report["skipped"].as_array().unwrap() {
        out.push((skipped["lease_key"].as_str().unwrap().to_owned(), "skipped".to_owned()));
    }
    out.sort();
    out
}

pub async fn import_scenario() {
    let dynamodb = emulators().dynamodb_client().await;
    let java = java_table(&dynamodb).await;
    let target = unique_name("rust-app");
    let import = async |extra: &[&str]| {
        let mut args = vec!["import", "--from", java.as_str(), "--table", target.as_str(), "--json"];
        args.extend_from_slice(extra);
        admin(&args).await
    };

    // A dry run creates nothing, not even the table.
    let dry = import(&["--dry-run"]).await.json();
    assert_eq!((dry["created_table"].as_bool(), dry["adopted"].as_array().unwrap().len()), (Some(true), 3));
    assert!(dynamodb.describe_table().table_name(&target).send().await.is_err(), "dry run created the table");

    let first = import(&[]).await.json();
    assert_eq!(first["created_table"], true);
    assert_eq!(first["failed"].as_array().unwrap().len(), 0);
    assert!(actions(&first).iter().all(|(_, action)| action == "created"), "{first:#}");
    assert_eq!(find(&first["adopted"], "lease_key", "shardId-000000000000")["checkpoint_sub_sequence"], 3);

    let store = DynamoLeaseStore::builder(dynamodb.clone(), &target).build().await.unwrap();
    let lease = async |key: &str| store.get_lease(key).await.unwrap().expect("adopted lease");
    let shard0 = lease("shardId-000000000000").await;
    assert_eq!(shard0.checkpoint, seq(OLD_CHECKPOINT, 3));
    assert_eq!((shard0.lease_owner.as_deref(), shard0.lease_counter), (None, 0), "adopted unowned at counter 0");
    assert_eq!(shard0.hash_key_range, Some(lower_half()));
    let shard1 = lease("shardId-000000000001").await;
    assert_eq!(shard1.checkpoint, ExtendedSequenceNumber::ShardEnd);
    assert_eq!(shard1.child_shard_ids, ["shardId-000000000002", "shardId-000000000003"]);
    let shard2 = lease("shardId-000000000002").await;
    assert_eq!(shard2.parent_shard_ids, ["shardId-000000000001"]);
    assert_eq!(shard2.pending_checkpoint, Some(seq(PENDING, 0)));
    assert_eq!(shard2.pending_checkpoint_state.as_deref(), Some(b"java-state".as_slice()));

    // The Java application moves on; a rust worker owns shard 2 in the target.
    update_java_item(
        &dynamodb,
        &java,
        "SET checkpoint = :cp, checkpointSubSequenceNumber = :sub",
        &[(":cp", s(NEW_CHECKPOINT)), (":sub", n(0))],
    )
    .await;
    store.take_lease("shardId-000000000002", shard2.lease_counter, "rust-worker").await.unwrap();

    let again = import(&[]).await.json();
    assert!(actions(&again).iter().all(|(_, action)| action == "skipped"), "{again:#}");
    assert_eq!(lease("shardId-000000000000").await, shard0, "existing leases are left alone without --overwrite");

    let overwrite = import(&["--overwrite"]).await.json();
    assert_eq!(
        actions(&overwrite),
        [
            ("shardId-000000000000".to_owned(), "overwritten".to_owned()),
            ("shardId-000000000001".to_owned(), "overwritten".to_owned()),
            ("shardId-000000000002".to_owned(), "skipped".to_owned()),
        ]
    );
    let reason = find(&overwrite["skipped"], "lease_key", "shardId-000000000002")["reason"].as_str().unwrap();
    assert!(reason.contains("owned by worker `rust-worker`"), "{reason}");
    let overwritten = lease("shardId-000000000000").await;
    assert_eq!(overwritten.checkpoint, seq(NEW_CHECKPOINT, 0));
    assert_eq!(overwritten.lease_owner, None);

    let forced = import(&["--overwrite", "--force"]).await.json();
    assert_eq!(find(&forced["adopted"], "lease_key", "shardId-000000000002")["action"], "overwritten");
    let shard2 = lease("shardId-000000000002").await;
    assert_eq!(shard2.lease_owner, None);
    assert_eq!(
        (shard2.checkpoint, shard2.pending_checkpoint),
        (ExtendedSequenceNumber::TrimHorizon, Some(seq(PENDING, 0)))
    );

    // The source now says shard 0 has a parent (as after a stream was deleted and created again): parents never
    // change on a lease, so --overwrite replaces the target lease whole, fenced on its counter.
    update_java_item(&dynamodb, &java, "SET parentShardId = :p", &[(":p", ss(&["shardId-000000000009"]))]).await;
    let dry = import(&["--overwrite", "--dry-run"]).await.json();
    assert_eq!(find(&dry["adopted"], "lease_key", "shardId-000000000000")["action"], "replaced");
    assert_eq!(lease("shardId-000000000000").await.parent_shard_ids, Vec::<String>::new(), "dry run wrote");
    let replaced = import(&["--overwrite"]).await.json();
    assert_eq!(find(&replaced["adopted"], "lease_key", "shardId-000000000000")["action"], "replaced", "{replaced:#}");
    assert_eq!(replaced["failed"].as_array().unwrap().len(), 0, "{replaced:#}");
    let shard0 = lease("shardId-000000000000").await;
    assert_eq!(shard0.parent_shard_ids, ["shardId-000000000009"]);
    assert_eq!(shard0.hash_key_range, Some(lower_half()));
    assert_eq!(shard0.checkpoint, seq(NEW_CHECKPOINT, 0));
    assert_eq!((shard0.lease_owner.as_deref(), shard0.lease_counter), (None, 0), "replaced unowned at counter 0");
    for table in [&java, &target] {
        dynamodb.delete_table().table_name(table).send().await.expect("DeleteTable");
    }
}
