//! Kinesis helpers against kinesis-mock: create a stream and wait for ACTIVE, put plain or KPL-aggregated records and
//! remember where they landed (as user records: sequence and sub-sequence number), split, merge, list, delete.

use std::collections::BTreeMap;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;
use kcl_core::deaggregate::{UserRecordInput, aggregate, partition_key_hash_key};
use kcl_core::discover::{KinesisShardLister, ShardListFilter, ShardLister};
use kcl_core::{ExtendedSequenceNumber, HashKeyRange, SequenceNumber, Shard};

/// One user record as the producer put it, and where Kinesis put it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Put {
    pub shard: String,
    pub position: ExtendedSequenceNumber,
    pub partition_key: String,
    pub data: Bytes,
    /// Whether it travelled inside a KPL aggregate.
    pub aggregated: bool,
}

/// What was put, per shard, in shard (sequence) order.
pub type Written = BTreeMap<String, Vec<Put>>;

/// Adds `puts` to `written`, keeping each shard sorted by position.
pub fn note(written: &mut Written, puts: impl IntoIterator<Item = Put>) {
    for put in puts {
        written.entry(put.shard.clone()).or_default().push(put);
    }
    for records in written.values_mut() {
        records.sort_by(|a, b| a.position.cmp(&b.position));
    }
}

/// Total user records in `written`.
pub fn count(written: &Written) -> usize {
    written.values().map(Vec::len).sum()
}

/// One entry of a `PutRecords` call: a plain record, or a KPL aggregate of user records.
#[derive(Clone, Debug)]
pub enum Entry {
    Plain {
        partition_key: String,
        data: Bytes,
    },
    /// User records `(partition key, data)`; the outer partition key is the first user record's.
    Aggregate(Vec<(String, Bytes)>),
}

impl Entry {
    fn to_request(&self) -> PutRecordsRequestEntry {
        let (key, data) = match self {
            Entry::Plain { partition_key, data } => (partition_key.clone(), data.clone()),
            Entry::Aggregate(users) => {
                let inputs: Vec<UserRecordInput<'_>> =
                    users.iter().map(|(key, data)| UserRecordInput::new(key, data)).collect();
                (users[0].0.clone(), aggregate(&inputs))
            }
        };
        PutRecordsRequestEntry::builder().partition_key(key).data(Blob::new(data.to_vec())).build().unwrap()
    }

    fn placed(&self, shard: &str, sequence: &SequenceNumber) -> Vec<Put> {
        match self {
            Entry::Plain { partition_key, data } => vec![Put {
                shard: shard.to_owned(),
                position: ExtendedSequenceNumber::sequence(sequence.clone()),
                partition_key: partition_key.clone(),
                data: data.clone(),
                aggregated: false,
            }],
            Entry::Aggregate(users) => users
                .iter()
                .enumerate()
                .map(|(sub, (key, data))| Put {
                    shard: shard.to_owned(),
                    position: ExtendedSequenceNumber::with_sub(sequence.clone(), sub as u64),
                    partition_key: key.clone(),
                    data: data.clone(),
                    aggregated: true,
                })
                .collect(),
        }
    }
}

/// A plain record with a random partition key and `data`.
pub fn random_plain(data: impl Into<String>) -> Entry {
    Entry::Plain { partition_key: format!("pk-{:016x}", rand::random::<u64>()), data: Bytes::from(data.into()) }
}

/// A partition key, derived from `seed`, whose hash key lies in `range` (so it routes to the shard owning `range`).
pub fn key_in(range: &HashKeyRange, seed: &str) -> String {
    (0u64..)
        .map(|i| format!("{seed}-{i}"))
        .find(|key| range.contains(partition_key_hash_key(key)))
        .expect("some key hashes into any range of a stream with a handful of shards")
}

pub use kcl_tests::kinesis::{create_stream, delete_stream, wait_active};

/// Every shard of the stream, with lineage and hash ranges.
pub async fn list_shards(client: &Client, name: &str) -> Vec<Shard> {
    KinesisShardLister::new(client.clone(), name).list_shards(ShardListFilter::All).await.expect("ListShards")
}

/// Puts the entries (500 per `PutRecords` call) and returns every user record with the shard and position Kinesis
/// gave it.
pub async fn put(client: &Client, name: &str, entries: &[Entry]) -> Vec<Put> {
    let mut placed = Vec::new();
    for chunk in entries.chunks(500) {
        let output = client
            .put_records()
            .stream_name(name)
            .set_records(Some(chunk.iter().map(Entry::to_request).collect()))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(output.failed_record_count.unwrap_or(0), 0, "kinesis-mock never throttles");
        assert_eq!(output.records.len(), chunk.len());
        for (result, entry) in output.records.iter().zip(chunk) {
            let shard = result.shard_id.as_deref().expect("ShardId");
            let sequence: SequenceNumber = result.sequence_number.as_deref().expect("SequenceNumber").parse().unwrap();
            placed.extend(entry.placed(shard, &sequence));
        }
    }
    placed
}

/// Splits `shard` in the middle of its hash range, waits for ACTIVE, and returns the children's ids.
pub async fn split_in_half(client: &Client, name: &str, shard: &str) -> Vec<String> {
    kcl_tests::kinesis::split_in_half(client, name, shard).await;
    children_of(&list_shards(client, name).await, &[shard])
}

/// Merges two adjacent shards, waits for ACTIVE, and returns the child's id.
pub async fn merge(client: &Client, name: &str, shard: &str, adjacent: &str) -> String {
    client
        .merge_shards()
        .stream_name(name)
        .shard_to_merge(shard)
        .adjacent_shard_to_merge(adjacent)
        .send()
        .await
        .expect("MergeShards");
    wait_active(client, name).await;
    let children = children_of(&list_shards(client, name).await, &[shard, adjacent]);
    assert_eq!(children.len(), 1, "one child of a merge: {children:?}");
    children[0].clone()
}

/// Shards whose parents are exactly `parents`.
pub fn children_of(shards: &[Shard], parents: &[&str]) -> Vec<String> {
    let mut wanted: Vec<&str> = parents.to_vec();
    wanted.sort_unstable();
    shards
        .iter()
        .filter(|s| {
            let mut have: Vec<&str> = s.parent_shard_ids.iter().map(String::as_str).collect();
            have.sort_unstable();
            have == wanted
        })
        .map(|s| s.shard_id.clone())
        .collect()
}
