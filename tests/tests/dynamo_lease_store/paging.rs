//! `list_leases` pages through a large table exactly once per lease.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use futures::StreamExt;
use kcl_core::lease::{LeaseStore, LeaseStoreError, PageToken};

use crate::common::*;

const LEASES: usize = 1234;

/// Writes `items` with BatchWriteItem, 25 per request, 8 requests at a time.
async fn batch_write(client: &Client, table: &str, items: Vec<Item>) {
    let batches: Vec<Vec<Item>> = items.chunks(25).map(<[Item]>::to_vec).collect();
    futures::stream::iter(batches)
        .map(|batch| async move {
            let mut requests: Vec<WriteRequest> = batch
                .into_iter()
                .map(|item| {
                    let put = PutRequest::builder().set_item(Some(item)).build().unwrap();
                    WriteRequest::builder().put_request(put).build()
                })
                .collect();
            while !requests.is_empty() {
                let output = client
                    .batch_write_item()
                    .set_request_items(Some(HashMap::from([(table.to_string(), requests)])))
                    .send()
                    .await
                    .expect("BatchWriteItem");
                requests = output.unprocessed_items.and_then(|mut u| u.remove(table)).unwrap_or_default();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

fn kcl_item(i: usize) -> Item {
    item(&[
        ("leaseKey", s(&format!("shardId-{i:012}"))),
        ("leaseCounter", n(&(i % 7).to_string())),
        ("ownerSwitchesSinceCheckpoint", n("0")),
        ("checkpoint", s("TRIM_HORIZON")),
        ("checkpointSubSequenceNumber", n("0")),
    ])
}

#[tokio::test]
async fn pages_return_every_lease_exactly_once() {
    let (store, client, table) = store("ddb-paging").await;
    batch_write(&client, &table, (0..LEASES).map(kcl_item).collect()).await;

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut page = None;
    loop {
        let result = store.list_leases(page, 97).await.unwrap();
        assert!(result.leases.len() <= 97, "a page never exceeds its size");
        seen.extend(result.leases.into_iter().map(|l| l.lease_key));
        pages += 1;
        match result.next_page {
            Some(token) => {
                assert!(!token.0.contains("shardId"), "the token is opaque");
                page = Some(token);
            }
            None => break,
        }
    }
    assert!(pages >= LEASES / 97, "paged in {pages} pages");
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), LEASES, "no lease twice");
    assert_eq!(unique.len(), LEASES);
    assert_eq!(unique, (0..LEASES).map(|i| format!("shardId-{i:012}")).collect());

    let all = store.list_all_leases().await.unwrap();
    assert_eq!(all.len(), LEASES);
    assert_eq!(all.iter().map(|l| l.lease_key.clone()).collect::<BTreeSet<_>>(), unique);
}

#[tokio::test]
async fn small_pages_and_foreign_tokens() {
    let (store, _, _) = store("ddb-paging-small").await;
    for i in 0..3 {
        create(&store, &lease(&format!("k{i}"))).await;
    }
    let mut keys = Vec::new();
    let mut page = None;
    loop {
        let result = store.list_leases(page, 1).await.unwrap();
        keys.extend(result.leases.into_iter().map(|l| l.lease_key));
        match result.next_page {
            Some(next) => page = Some(next),
            None => break,
        }
    }
    keys.sort();
    assert_eq!(keys, ["k0", "k1", "k2"]);
    // A token from another store type is a caller bug, not a lost race.
    match store.list_leases(Some(PageToken("k1".into())), 10).await {
        Err(LeaseStoreError::Fatal { .. }) => {}
        other => panic!("expected Fatal, got {other:?}"),
    }
}
