//! Unreadable lease items against DynamoDB Local and kinesis-mock: `leases` lists each with its reason, `repair`
//! plans without writing, `repair --apply` rewrites (shard in the stream) or deletes (shard not in the stream), and a
//! repair is fenced on the item's contents as read. Also: a `reset-checkpoint` interrupted half way (the lease left
//! owned by `kcl-admin-<pid>`) is resumed by running it again, without `--force`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use kcl_core::HashKeyRange;
use kcl_core::lease::LeaseStore;
use kcl_core::types::ExtendedSequenceNumber;
use kcl_dynamo_lease::plan_repair;

use crate::harness::{SHARD_0, SHARD_1, admin, find, fixture};

const GONE: &str = "shardId-000000000099";
const BAD_CHECKPOINT: &str = "shardId-000000000100";

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.into())
}

fn n(text: &str) -> AttributeValue {
    AttributeValue::N(text.into())
}

async fn put(client: &aws_sdk_dynamodb::Client, table: &str, attributes: &[(&str, AttributeValue)]) {
    let item: HashMap<String, AttributeValue> =
        attributes.iter().map(|(name, value)| (name.to_string(), value.clone())).collect();
    client.put_item().table_name(table).set_item(Some(item)).send().await.expect("PutItem");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_items_are_listed_planned_and_repaired_without_skipping_records() {
    let f = fixture("admin-repair").await;
    let t = f.table.as_str();
    // Shard 0: no checkpoint. Shard 1: a counter that is not a number. A shard the stream does not have, with no
    // counter and parents that are not a set. A fourth (also no such shard) with a checkpoint that is no sequence
    // number.
    put(&f.dynamodb, t, &[("leaseKey", s(SHARD_0)), ("leaseCounter", n("4")), ("leaseOwner", s("worker-a"))]).await;
    put(&f.dynamodb, t, &[("leaseKey", s(SHARD_1)), ("leaseCounter", s("x")), ("checkpoint", s("TRIM_HORIZON"))]).await;
    // (Not a numeric `leaseOwner`: the owner index of this table refuses one; `tests/tests/dynamo_lease_store`
    // lists such an item in a table without the index.)
    put(&f.dynamodb, t, &[("leaseKey", s(GONE)), ("checkpoint", s("LATEST")), ("parentShardId", s("shardId-1"))]).await;
    put(&f.dynamodb, t, &[("leaseKey", s(BAD_CHECKPOINT)), ("leaseCounter", n("1")), ("checkpoint", s("nope"))]).await;

    // `leases` lists every one of them, with the attribute at fault.
    let report = admin(&f.args(&["leases"])).await.json();
    assert_eq!(report["total"].as_u64(), Some(0), "{report:#}");
    let unreadable = &report["unreadable"];
    assert_eq!(unreadable.as_array().map(Vec::len), Some(4), "{report:#}");
    for (key, attribute) in
        [(SHARD_0, "checkpoint"), (SHARD_1, "leaseCounter"), (GONE, "leaseCounter"), (BAD_CHECKPOINT, "checkpoint")]
    {
        let row = find(unreadable, "lease_key", key);
        assert!(row["reason"].as_str().unwrap().contains(attribute), "{key}: {row}");
    }
    let human = admin(&["leases", "--table", t]).await;
    assert!(human.stdout.contains("kcl-admin repair"), "the listing names the remedy:\n{}", human.stdout);

    // A dry run plans and writes nothing.
    let plan = admin(&f.args(&["repair", "--stream", &f.stream])).await.json();
    assert_eq!(plan["applied"], false);
    for (key, action) in [(SHARD_0, "rewrite"), (SHARD_1, "rewrite"), (GONE, "delete"), (BAD_CHECKPOINT, "delete")] {
        assert_eq!(find(&plan["items"], "lease_key", key)["action"], action, "{plan:#}");
    }
    assert_eq!(f.store.list_everything().await.unwrap().unreadable.len(), 4, "a dry run writes nothing");

    // Applied: the shards the stream has become readable leases that replay rather than skip; the others are gone.
    let applied = admin(&f.args(&["repair", "--stream", &f.stream, "--apply"])).await.json();
    for key in [SHARD_0, SHARD_1, GONE, BAD_CHECKPOINT] {
        assert_eq!(find(&applied["items"], "lease_key", key)["outcome"], "done", "{applied:#}");
    }
    let listing = f.store.list_everything().await.unwrap();
    assert!(listing.unreadable.is_empty(), "{:?}", listing.unreadable);
    let mut keys: Vec<_> = listing.leases.iter().map(|l| l.lease_key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, [SHARD_0, SHARD_1]);
    let shard0 = f.lease(SHARD_0).await;
    assert_eq!(shard0.checkpoint, ExtendedSequenceNumber::TrimHorizon, "an unknown checkpoint replays from the start");
    assert_eq!((shard0.lease_owner.as_deref(), shard0.lease_counter), (None, 5));
    assert_eq!(shard0.hash_key_range, Some(listed_range(&f, SHARD_0).await), "the range comes from ListShards");
    let shard1 = f.lease(SHARD_1).await;
    assert_eq!(shard1.checkpoint, ExtendedSequenceNumber::TrimHorizon, "a readable checkpoint is kept");
    assert_eq!(shard1.lease_counter, 0, "an unreadable counter restarts at 0, below every fence held");
    assert_eq!(shard1.hash_key_range, Some(listed_range(&f, SHARD_1).await));
    // A worker can now take it.
    f.store.take_lease(SHARD_1, 0, "worker-b").await.expect("the repaired lease is usable");
    let again = admin(&f.args(&["repair", "--stream", &f.stream])).await.json();
    assert_eq!(again["items"].as_array().map(Vec::len), Some(0), "{again:#}");

    // Fenced on the raw contents: an item changed after it was read is left alone.
    put(&f.dynamodb, t, &[("leaseKey", s(GONE)), ("leaseCounter", s("1"))]).await;
    let stale = f.store.unreadable_items().await.unwrap().pop().expect("one unreadable item");
    put(&f.dynamodb, t, &[("leaseKey", s(GONE)), ("leaseCounter", s("2"))]).await;
    let error = f.store.apply_repair(&stale, &plan_repair(&stale, None)).await.unwrap_err();
    assert!(error.is_condition_failed(), "{error:?}");
    assert_eq!(f.store.list_everything().await.unwrap().unreadable.len(), 1, "nothing was deleted");
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_reset_is_resumed_by_running_it_again() {
    let f = fixture("admin-resume").await;
    // As a reset killed between its take and its checkpoint leaves it.
    let lease = f.lease(SHARD_1).await;
    f.store.take_lease(SHARD_1, lease.lease_counter, "kcl-admin-999999").await.unwrap();
    let report = admin(&f.args(&["reset-checkpoint", SHARD_1, "--to", "LATEST"])).await.json();
    assert_eq!(report["previous_owner"], "kcl-admin-999999");
    let after = f.lease(SHARD_1).await;
    assert_eq!((after.lease_owner, after.checkpoint), (None, ExtendedSequenceNumber::Latest));
    // A worker's lease still needs --force.
    let refused = admin(&f.args(&["reset-checkpoint", SHARD_0, "--to", "LATEST"])).await;
    assert_eq!(refused.code, 3, "{}", refused.stdout);
    f.cleanup().await;
}

/// The shard's hash key range as `ListShards` reports it (emulators split the key space their own way, so not
/// necessarily the exact halves the fixture wrote).
async fn listed_range(f: &crate::harness::Fixture, shard: &str) -> HashKeyRange {
    let listed = f.kinesis.list_shards().stream_name(&f.stream).send().await.expect("ListShards");
    let found = listed.shards().iter().find(|s| s.shard_id() == shard).expect("the shard is listed");
    let range = found.hash_key_range().expect("a hash key range");
    let (start, end) = (range.starting_hash_key().parse().unwrap(), range.ending_hash_key().parse().unwrap());
    HashKeyRange::new(start, end).unwrap()
}
