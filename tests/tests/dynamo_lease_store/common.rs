//! Shared helpers: a store on a fresh table, raw item access, lease builders.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use kcl_core::lease::{Lease, LeaseFence, LeaseStore, LeaseStoreError};
use kcl_core::{ExtendedSequenceNumber, SequenceNumber};
use kcl_dynamo_lease::{DynamoLeaseStore, DynamoLeaseStoreBuilder};

pub type Item = HashMap<String, AttributeValue>;

pub async fn client() -> Client {
    kcl_tests::emulators().dynamodb_client().await
}

/// A builder for a fresh table (unique name) with heartbeats on.
pub async fn builder(prefix: &str) -> (DynamoLeaseStoreBuilder, Client, String) {
    let client = client().await;
    let table = kcl_tests::unique_name(prefix);
    let builder = DynamoLeaseStore::builder(client.clone(), table.clone()).worker_heartbeats(true);
    (builder, client, table)
}

/// A store on a fresh table, with the raw client and the table name.
pub async fn store(prefix: &str) -> (DynamoLeaseStore, Client, String) {
    let (builder, client, table) = builder(prefix).await;
    let store = builder.build().await.expect("build store");
    (store, client, table)
}

pub fn seq(n: u128) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::sequence(SequenceNumber::from_u128(n))
}

pub fn lease(key: &str) -> Lease {
    Lease::new_for_shard(key, ExtendedSequenceNumber::TrimHorizon)
}

pub fn owned(key: &str, owner: &str, counter: u64) -> Lease {
    let mut lease = lease(key);
    lease.lease_owner = Some(owner.into());
    lease.lease_counter = counter;
    lease
}

pub fn fence(key: &str, owner: &str, counter: u64) -> LeaseFence {
    LeaseFence { lease_key: key.into(), owner: owner.into(), counter }
}

pub async fn create(store: &DynamoLeaseStore, lease: &Lease) {
    assert!(store.create_lease_if_not_exists(lease).await.expect("create"), "{} already existed", lease.lease_key);
}

pub async fn get(store: &DynamoLeaseStore, key: &str) -> Lease {
    store.get_lease(key).await.expect("get").unwrap_or_else(|| panic!("{key} missing"))
}

#[track_caller]
pub fn assert_condition_failed<T: std::fmt::Debug>(result: Result<T, LeaseStoreError>) {
    match result {
        Err(LeaseStoreError::ConditionFailed { .. }) => {}
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
}

pub fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: &str) -> AttributeValue {
    AttributeValue::N(value.into())
}

pub fn ss(values: &[&str]) -> AttributeValue {
    AttributeValue::Ss(values.iter().map(|v| v.to_string()).collect())
}

pub fn item(attributes: &[(&str, AttributeValue)]) -> Item {
    attributes.iter().map(|(name, value)| (name.to_string(), value.clone())).collect()
}

pub async fn put_raw(client: &Client, table: &str, item: Item) {
    client.put_item().table_name(table).set_item(Some(item)).send().await.expect("raw PutItem");
}

pub async fn get_raw(client: &Client, table: &str, key: &str) -> Item {
    client
        .get_item()
        .table_name(table)
        .key("leaseKey", s(key))
        .consistent_read(true)
        .send()
        .await
        .expect("raw GetItem")
        .item
        .unwrap_or_else(|| panic!("raw item {key} missing"))
}

/// The DynamoDB type of each attribute: `S`, `N`, `B`, `SS`.
pub fn shape(item: &Item) -> Vec<(String, &'static str)> {
    let mut shape: Vec<(String, &'static str)> = item
        .iter()
        .map(|(name, value)| {
            let kind = match value {
                AttributeValue::S(_) => "S",
                AttributeValue::N(_) => "N",
                AttributeValue::B(_) => "B",
                AttributeValue::Ss(_) => "SS",
                AttributeValue::Ns(_) => "NS",
                AttributeValue::Bool(_) => "BOOL",
                AttributeValue::M(_) => "M",
                AttributeValue::L(_) => "L",
                _ => "other",
            };
            (name.clone(), kind)
        })
        .collect();
    shape.sort();
    shape
}
