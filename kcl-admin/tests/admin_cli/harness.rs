//! Harness of the `kcl-admin` tests: running the binary against the emulators, and a fixture with a two-shard stream
//! holding two batches of records put apart in time, and a lease table with one owned and one unowned lease.

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::primitives::{Blob, DateTime, DateTimeFormat};
use aws_sdk_kinesis::types::StreamStatus;
use kcl_core::lease::{Lease, LeaseFence, LeaseStore};
use kcl_core::types::{ExtendedSequenceNumber, HashKeyRange, SequenceNumber};
use kcl_dynamo_lease::DynamoLeaseStore;
use kcl_tests::{emulators, unique_name};
use serde_json::Value;

pub const SHARD_0: &str = "shardId-000000000000";
pub const SHARD_1: &str = "shardId-000000000001";
/// Records per shard in each batch.
pub const PER_BATCH: usize = 3;
/// Owner of shard 0's lease in the fixture.
pub const WORKER_A: &str = "worker-a";

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON document on stdout, asserting the run succeeded.
    pub fn json(&self) -> Value {
        assert_eq!(self.code, 0, "kcl-admin failed:\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self.document()
    }

    /// The JSON document on stdout, whatever the exit code.
    pub fn document(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}):\n{}\nstderr: {}", self.stdout, self.stderr)
        })
    }
}

/// Runs `kcl-admin` with `args`, then the emulators' endpoints.
pub async fn admin(args: &[&str]) -> Run {
    let emulators = emulators();
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "--kinesis-endpoint",
        emulators.kinesis_endpoint(),
        "--dynamodb-endpoint",
        emulators.dynamodb_endpoint(),
    ]);
    raw_admin(&all).await
}

/// Runs `kcl-admin` with exactly `args`.
pub async fn raw_admin(args: &[&str]) -> Run {
    let output: Output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kcl-admin"))
        .args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .output()
        .await
        .expect("run kcl-admin");
    Run {
        code: output.status.code().expect("kcl-admin exited normally"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A stream with two batches of records per shard (put at least 300 ms apart) and a lease table with a lease per
/// shard at `TRIM_HORIZON`, shard 0's owned by [`WORKER_A`].
pub struct Fixture {
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub stream: String,
    pub table: String,
    pub store: Arc<DynamoLeaseStore>,
    /// Sequence numbers per shard, in put order: `PER_BATCH` of the first batch, then `PER_BATCH` of the second.
    pub records: BTreeMap<String, Vec<String>>,
    /// A time before any record was put.
    pub before_all: SystemTime,
    /// A time between the two batches.
    pub between: SystemTime,
}

pub async fn fixture(prefix: &str) -> Fixture {
    let kinesis = emulators().kinesis_client().await;
    let dynamodb = emulators().dynamodb_client().await;
    let stream = unique_name(prefix);
    let table = unique_name(&format!("{prefix}-app"));
    kinesis.create_stream().stream_name(&stream).shard_count(2).send().await.expect("CreateStream");
    wait_active(&kinesis, &stream).await;
    let before_all = SystemTime::now() - Duration::from_secs(1);
    let mut records = BTreeMap::new();
    put_batch(&kinesis, &stream, &mut records).await;
    // Far enough apart that arrival times (milliseconds) differ, so MillisBehindLatest and AT_TIMESTAMP can tell
    // the batches apart; not a timing assertion.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let between = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    put_batch(&kinesis, &stream, &mut records).await;
    let store = Arc::new(DynamoLeaseStore::builder(dynamodb.clone(), &table).build().await.expect("lease table"));
    for (shard, range) in [(SHARD_0, lower_half()), (SHARD_1, upper_half())] {
        let mut lease = Lease::new_for_shard(shard, ExtendedSequenceNumber::TrimHorizon);
        lease.hash_key_range = Some(range);
        assert!(store.create_lease_if_not_exists(&lease).await.unwrap());
    }
    store.take_lease(SHARD_0, 0, WORKER_A).await.unwrap();
    Fixture { kinesis, dynamodb, stream, table, store, records, before_all, between }
}

impl Fixture {
    /// The shard's sequence numbers.
    pub fn seqs(&self, shard: &str) -> &[String] {
        &self.records[shard]
    }

    /// The shard's `i`-th record as a checkpoint.
    pub fn at(&self, shard: &str, i: usize) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::sequence(SequenceNumber::parse(&self.seqs(shard)[i]).unwrap())
    }

    pub async fn lease(&self, key: &str) -> Lease {
        self.store.get_lease(key).await.unwrap().expect("lease exists")
    }

    /// Checkpoints as the lease's owner, or takes it as `worker` first when unowned.
    pub async fn checkpoint(&self, key: &str, worker: &str, checkpoint: &ExtendedSequenceNumber) {
        let mut lease = self.lease(key).await;
        if lease.lease_owner.is_none() {
            lease = self.store.take_lease(key, lease.lease_counter, worker).await.unwrap();
        }
        self.store.update_checkpoint(&lease.fence().unwrap(), checkpoint).await.unwrap();
    }

    /// Releases the lease (fenced as its owner).
    pub async fn release(&self, key: &str) {
        let lease = self.lease(key).await;
        self.store.release_lease(&lease.fence().unwrap()).await.unwrap();
    }

    /// Deletes the stream and the lease table.
    pub async fn cleanup(self) {
        self.kinesis.delete_stream().stream_name(&self.stream).send().await.expect("DeleteStream");
        self.dynamodb.delete_table().table_name(&self.table).send().await.expect("DeleteTable");
    }

    /// Args for a subcommand on this fixture's table, with `--json`.
    pub fn args<'a>(&'a self, head: &[&'a str]) -> Vec<&'a str> {
        let mut args = head.to_vec();
        args.extend(["--table", self.table.as_str(), "--json"]);
        args
    }
}

pub fn fence_of(lease: &Lease) -> LeaseFence {
    lease.fence().expect("owned lease")
}

/// Puts `PER_BATCH` records into each shard (explicit hash keys), one at a time, and notes their sequence numbers.
async fn put_batch(kinesis: &aws_sdk_kinesis::Client, stream: &str, records: &mut BTreeMap<String, Vec<String>>) {
    for i in 0..PER_BATCH {
        for hash_key in ["1".to_owned(), ((1u128 << 127) + 1).to_string()] {
            let output = kinesis
                .put_record()
                .stream_name(stream)
                .partition_key(format!("key-{i}"))
                .explicit_hash_key(hash_key)
                .data(Blob::new(format!("record-{i}")))
                .send()
                .await
                .expect("PutRecord");
            records.entry(output.shard_id).or_default().push(output.sequence_number);
        }
    }
}

pub async fn wait_active(kinesis: &aws_sdk_kinesis::Client, stream: &str) {
    for _ in 0..400 {
        let summary = kinesis.describe_stream_summary().stream_name(stream).send().await.expect("DescribeStream");
        if summary.stream_description_summary.is_some_and(|s| s.stream_status == StreamStatus::Active) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {stream} did not become ACTIVE");
}

pub fn lower_half() -> HashKeyRange {
    HashKeyRange::new(0, (1u128 << 127) - 1).unwrap()
}

pub fn upper_half() -> HashKeyRange {
    HashKeyRange::new(1u128 << 127, u128::MAX).unwrap()
}

pub fn rfc3339(at: SystemTime) -> String {
    DateTime::from(at).fmt(DateTimeFormat::DateTime).unwrap()
}

/// The entry of `shards` (a JSON array) whose `key` field is `value`.
pub fn find<'a>(items: &'a Value, key: &str, value: &str) -> &'a Value {
    items
        .as_array()
        .expect("an array")
        .iter()
        .find(|item| item[key] == value)
        .unwrap_or_else(|| panic!("no entry with {key} = {value} in {items:#}"))
}
