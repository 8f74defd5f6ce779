//! `MemoryStream` (feature `test-util`): a Kinesis-like stream in memory, for deterministic tests and benchmarks.
//!
//! * Shards with even hash ranges at creation, Kinesis-style ids (`shardId-000000000004`), routing by the unsigned
//!   128-bit big-endian MD5 of the partition key (or an explicit hash key), increasing decimal sequence numbers.
//! * [`split`](MemoryStream::split) and [`merge`](MemoryStream::merge) close parents and create children with the
//!   parent ids and hash ranges Kinesis would give them; everything is retained.
//! * It implements [`PollingApi`](crate::retrieve::PollingApi) (iterators that expire after `iterator_ttl` of
//!   Tokio time, 10 MiB / `limit` per read, child shards at the end of a closed shard) and therefore
//!   [`RecordSource`](crate::retrieve::RecordSource) through the very same
//!   [`PollingFetcher`](crate::retrieve::PollingFetcher) code as Kinesis, and
//!   [`ShardLister`](crate::discover::ShardLister).
//! * It implements [`SubscribeApi`](crate::retrieve::fanout::SubscribeApi) too, so a
//!   [`FanOutSource`](crate::retrieve::fanout::FanOutSource) reads it like enhanced fan-out: events, renewals, and
//!   the final event of a closed shard with its children.
//! * Fault injection ([`FaultConfig`], [`MemoryStream::script_faults`]) makes every recovery path reachable.
//!
//! Speed: a put locks one shard; a read locks one shard once per batch and clones records (reference counts only).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use md5::{Digest, Md5};

use super::prefetch::ByteBudget;
use super::{ChildShard, PollingConfig};
use crate::error::KclError;
use crate::types::{HashKeyRange, KinesisRecord, SequenceNumber, SequenceNumberRange, Shard};

mod api;
mod fanout;
mod faults;

pub use api::MemoryIterator;
pub use fanout::MemorySubscription;
pub use faults::{Fault, FaultConfig, FaultCounts};

/// Settings of a [`MemoryStream`].
#[derive(Clone, Debug)]
pub struct MemoryStreamConfig {
    /// How readers opened through the stream's own `RecordSource` poll it. The default keeps Java KCL's batch and
    /// prefetch sizes but polls without a rate floor and idles at most 10 ms, with 1–50 ms retry backoff.
    pub polling: PollingConfig,
    /// The rate floor the stream enforces as a [`PollingApi`](crate::retrieve::PollingApi) (default zero; set 200 ms to
    /// behave like Kinesis).
    pub min_time_between_calls: Duration,
    /// Shard iterators expire this long (Tokio time) after they were issued (default 300 s, as Kinesis).
    pub iterator_ttl: Duration,
}

impl Default for MemoryStreamConfig {
    fn default() -> Self {
        Self {
            polling: PollingConfig {
                min_time_between_calls: Duration::ZERO,
                idle_time_between_reads: Duration::from_millis(10),
                retry_base: Duration::from_millis(1),
                retry_cap: Duration::from_millis(50),
                ..PollingConfig::default()
            },
            min_time_between_calls: Duration::ZERO,
            iterator_ttl: Duration::from_secs(300),
        }
    }
}

/// Where a put landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutResult {
    /// The shard that took the record.
    pub shard_id: Arc<str>,
    /// The record's sequence number.
    pub sequence_number: SequenceNumber,
}

/// An in-memory Kinesis stream. Cloning gives another handle to the same stream.
#[derive(Clone)]
pub struct MemoryStream {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    config: MemoryStreamConfig,
    topology: RwLock<Topology>,
    /// The next sequence number; taken while holding the target shard's lock, so numbers increase within a shard.
    next_sequence: AtomicU64,
    faults: Mutex<faults::Faults>,
    fault_counts: faults::FaultCounters,
    get_records_calls: AtomicU64,
    get_shard_iterator_calls: AtomicU64,
    call_log: Mutex<Option<Vec<CallRecord>>>,
    budget: ByteBudget,
}

/// One logged call (see [`MemoryStream::record_calls`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRecord {
    /// The shard called.
    pub shard_id: Arc<str>,
    /// `GetRecords` (true) or `GetShardIterator` (false).
    pub get_records: bool,
    /// When, in Tokio time.
    pub at: tokio::time::Instant,
}

struct Topology {
    shards: Vec<Arc<MemShard>>,
    by_id: HashMap<Arc<str>, usize>,
    /// Open shards as (start, end, index), sorted by start: routing is a binary search.
    open: Vec<(u128, u128, usize)>,
    next_shard_number: u64,
}

struct MemShard {
    id: Arc<str>,
    parents: Vec<String>,
    range: HashKeyRange,
    start_sequence: u64,
    data: Mutex<ShardData>,
}

#[derive(Default)]
struct ShardData {
    records: Vec<KinesisRecord>,
    sequences: Vec<u64>,
    end_sequence: Option<u64>,
    children: Vec<ChildShard>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in this module panics while holding a lock in a way that leaves data half-written.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn invalid(operation: &'static str, message: String) -> KclError {
    KclError::Kinesis { operation, message, retryable: false }
}

/// The unsigned 128-bit big-endian MD5 of a partition key: the hash key Kinesis routes by.
pub fn partition_key_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

impl MemoryStream {
    /// A stream with `shard_count` shards (at least 1) splitting the hash key space evenly, default settings.
    pub fn new(name: impl Into<Arc<str>>, shard_count: usize) -> Self {
        Self::with_config(name, shard_count, MemoryStreamConfig::default())
    }

    /// A stream with explicit settings.
    pub fn with_config(name: impl Into<Arc<str>>, shard_count: usize, config: MemoryStreamConfig) -> Self {
        let count = shard_count.max(1) as u128;
        let step = u128::MAX / count;
        let mut topology =
            Topology { shards: Vec::new(), by_id: HashMap::new(), open: Vec::new(), next_shard_number: 0 };
        for i in 0..count {
            let start = step * i;
            let end = if i + 1 == count { u128::MAX } else { step * (i + 1) - 1 };
            topology.add_shard(Vec::new(), HashKeyRange { start, end }, 1);
        }
        topology.rebuild_open();
        let budget = ByteBudget::new(config.polling.worker_prefetch_bytes);
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                config,
                topology: RwLock::new(topology),
                next_sequence: AtomicU64::new(1),
                faults: Mutex::new(faults::Faults::default()),
                fault_counts: faults::FaultCounters::default(),
                get_records_calls: AtomicU64::new(0),
                get_shard_iterator_calls: AtomicU64::new(0),
                call_log: Mutex::new(None),
                budget,
            }),
        }
    }

    /// The stream name.
    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// The settings.
    pub fn config(&self) -> &MemoryStreamConfig {
        &self.inner.config
    }

    fn topology(&self) -> std::sync::RwLockReadGuard<'_, Topology> {
        self.inner.topology.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn topology_mut(&self) -> std::sync::RwLockWriteGuard<'_, Topology> {
        self.inner.topology.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a record, routed by the MD5 of its partition key.
    pub fn put(&self, partition_key: impl Into<Arc<str>>, data: impl Into<Bytes>) -> Result<PutResult, KclError> {
        let partition_key = partition_key.into();
        self.put_with_hash(partition_key_hash(&partition_key), partition_key, data)
    }

    /// Puts a record routed by an explicit hash key (Kinesis `ExplicitHashKey`).
    pub fn put_with_hash(
        &self,
        hash_key: u128,
        partition_key: impl Into<Arc<str>>,
        data: impl Into<Bytes>,
    ) -> Result<PutResult, KclError> {
        let topology = self.topology();
        let shard = topology.route(hash_key).ok_or_else(|| invalid("PutRecord", "no open shard".into()))?;
        let sequence_number = self.append(shard, partition_key.into(), data.into());
        Ok(PutResult { shard_id: Arc::clone(&shard.id), sequence_number })
    }

    /// Puts many records under one topology lock; returns how many were written.
    pub fn put_batch<K, D>(&self, records: impl IntoIterator<Item = (K, D)>) -> Result<usize, KclError>
    where
        K: Into<Arc<str>>,
        D: Into<Bytes>,
    {
        let topology = self.topology();
        let mut written = 0;
        for (key, data) in records {
            let key = key.into();
            let shard = topology
                .route(partition_key_hash(&key))
                .ok_or_else(|| invalid("PutRecords", "no open shard".into()))?;
            self.append(shard, key, data.into());
            written += 1;
        }
        Ok(written)
    }

    fn append(&self, shard: &MemShard, partition_key: Arc<str>, data: Bytes) -> SequenceNumber {
        // A `Bytes` built from a `Vec` allocates its shared header on its first clone. Pay that once here, outside
        // the shard lock, so a read only bumps reference counts (profiled: otherwise most of the cost of reading a
        // freshly put record is that allocation, which is the test double's, not the pipeline's).
        drop(data.clone());
        let mut shard_data = lock(&shard.data);
        let sequence = self.inner.next_sequence.fetch_add(1, Ordering::Relaxed);
        let sequence_number = SequenceNumber::from_u128(u128::from(sequence));
        shard_data.records.push(KinesisRecord {
            data,
            partition_key,
            sequence_number: sequence_number.clone(),
            approximate_arrival_timestamp: Some(SystemTime::now()),
        });
        shard_data.sequences.push(sequence);
        sequence_number
    }

    /// Splits an open shard at `new_starting_hash_key` (the first key of the upper child), as `SplitShard` does.
    /// Returns the two children's ids, lower range first.
    pub fn split(&self, shard_id: &str, new_starting_hash_key: u128) -> Result<[String; 2], KclError> {
        let mut topology = self.topology_mut();
        let parent = topology.open_shard(shard_id, "SplitShard")?;
        let range = parent.range;
        if new_starting_hash_key <= range.start || new_starting_hash_key > range.end {
            return Err(invalid(
                "SplitShard",
                format!("new starting hash key {new_starting_hash_key} is not inside {shard_id}'s range"),
            ));
        }
        let lower = HashKeyRange { start: range.start, end: new_starting_hash_key - 1 };
        let upper = HashKeyRange { start: new_starting_hash_key, end: range.end };
        let children = self.reshard(&mut topology, &[parent], &[lower, upper]);
        Ok([children[0].clone(), children[1].clone()])
    }

    /// Merges two open shards with adjacent hash ranges, as `MergeShards` does (`shard` is the child's
    /// `ParentShardId`, `adjacent` its `AdjacentParentShardId`). Returns the child's id.
    pub fn merge(&self, shard: &str, adjacent: &str) -> Result<String, KclError> {
        let mut topology = self.topology_mut();
        let a = topology.open_shard(shard, "MergeShards")?;
        let b = topology.open_shard(adjacent, "MergeShards")?;
        let (low, high) = if a.range.start < b.range.start { (&a, &b) } else { (&b, &a) };
        if low.range.end.checked_add(1) != Some(high.range.start) {
            return Err(invalid("MergeShards", format!("{shard} and {adjacent} are not adjacent")));
        }
        let merged = HashKeyRange { start: low.range.start, end: high.range.end };
        let children = self.reshard(&mut topology, &[a, b], &[merged]);
        Ok(children[0].clone())
    }

    /// Closes `parents` and opens one child per range, each child naming every parent.
    fn reshard(&self, topology: &mut Topology, parents: &[Arc<MemShard>], ranges: &[HashKeyRange]) -> Vec<String> {
        let parent_ids: Vec<String> = parents.iter().map(|p| p.id.to_string()).collect();
        let mut parent_data: Vec<_> = parents.iter().map(|p| lock(&p.data)).collect();
        // The parent's ending sequence number is one taken while holding its lock: no later put can land in it, and
        // the children start above it.
        let end = self.inner.next_sequence.fetch_add(1, Ordering::Relaxed);
        let start = end + 1;
        let mut children = Vec::new();
        for range in ranges {
            let id = topology.add_shard(parent_ids.clone(), *range, start);
            children.push(ChildShard {
                shard_id: id.to_string(),
                parent_shard_ids: parent_ids.clone(),
                hash_key_range: *range,
            });
        }
        for data in &mut parent_data {
            data.end_sequence = Some(end);
            data.children = children.clone();
        }
        drop(parent_data);
        topology.rebuild_open();
        children.into_iter().map(|c| c.shard_id).collect()
    }

    /// Every shard, in creation order, with lineage, hash range and sequence range (what `ListShards` returns).
    pub fn shards(&self) -> Vec<Shard> {
        let topology = self.topology();
        topology
            .shards
            .iter()
            .map(|shard| {
                let data = lock(&shard.data);
                Shard {
                    shard_id: shard.id.to_string(),
                    parent_shard_ids: shard.parents.clone(),
                    hash_key_range: shard.range,
                    sequence_number_range: SequenceNumberRange {
                        start: SequenceNumber::from_u128(u128::from(shard.start_sequence)),
                        end: data.end_sequence.map(|e| SequenceNumber::from_u128(u128::from(e))),
                    },
                }
            })
            .collect()
    }

    /// The ids of the open shards, in hash key order.
    pub fn open_shard_ids(&self) -> Vec<String> {
        let topology = self.topology();
        topology.open.iter().map(|&(_, _, i)| topology.shards[i].id.to_string()).collect()
    }

    /// Every record a shard holds (for test assertions).
    pub fn records(&self, shard_id: &str) -> Vec<KinesisRecord> {
        let topology = self.topology();
        match topology.by_id.get(shard_id) {
            Some(&i) => lock(&topology.shards[i].data).records.clone(),
            None => Vec::new(),
        }
    }

    /// Sets the per-call fault probabilities (replacing earlier ones; scripts are kept).
    pub fn set_faults(&self, config: FaultConfig) {
        lock(&self.inner.faults).configure(config);
    }

    /// Queues faults for the next `GetRecords` calls of one shard, in order, before any random draw.
    pub fn script_faults(&self, shard_id: &str, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.inner.faults).script(shard_id, faults);
    }

    /// Removes every fault probability and script.
    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// How many faults were injected so far.
    pub fn fault_counts(&self) -> FaultCounts {
        self.inner.fault_counts.snapshot()
    }

    /// `(GetRecords, GetShardIterator)` calls served so far, faults included.
    pub fn call_counts(&self) -> (u64, u64) {
        (
            self.inner.get_records_calls.load(Ordering::Relaxed),
            self.inner.get_shard_iterator_calls.load(Ordering::Relaxed),
        )
    }

    /// Starts (or stops, clearing it) a log of every call with its Tokio time, for asserting call rates.
    pub fn record_calls(&self, enabled: bool) {
        *lock(&self.inner.call_log) = enabled.then(Vec::new);
    }

    /// The calls logged since [`record_calls`](Self::record_calls)`(true)`.
    pub fn call_log(&self) -> Vec<CallRecord> {
        lock(&self.inner.call_log).clone().unwrap_or_default()
    }
}

impl std::fmt::Debug for MemoryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStream").field("name", &self.inner.name).finish_non_exhaustive()
    }
}

impl Topology {
    fn add_shard(&mut self, parents: Vec<String>, range: HashKeyRange, start_sequence: u64) -> Arc<str> {
        let id: Arc<str> = Arc::from(format!("shardId-{:012}", self.next_shard_number));
        self.next_shard_number += 1;
        let shard = MemShard { id: Arc::clone(&id), parents, range, start_sequence, data: Mutex::default() };
        self.by_id.insert(Arc::clone(&id), self.shards.len());
        self.shards.push(Arc::new(shard));
        Arc::clone(&id)
    }

    fn rebuild_open(&mut self) {
        self.open = self
            .shards
            .iter()
            .enumerate()
            .filter(|(_, s)| lock(&s.data).end_sequence.is_none())
            .map(|(i, s)| (s.range.start, s.range.end, i))
            .collect();
        self.open.sort_unstable();
    }

    fn route(&self, hash_key: u128) -> Option<&MemShard> {
        let after = self.open.partition_point(|&(start, _, _)| start <= hash_key);
        let &(_, end, index) = self.open.get(after.checked_sub(1)?)?;
        (hash_key <= end).then(|| self.shards[index].as_ref())
    }

    fn shard(&self, shard_id: &str) -> Option<&Arc<MemShard>> {
        self.by_id.get(shard_id).map(|&i| &self.shards[i])
    }

    fn open_shard(&self, shard_id: &str, operation: &'static str) -> Result<Arc<MemShard>, KclError> {
        let shard = self.shard(shard_id).ok_or_else(|| invalid(operation, format!("no shard {shard_id}")))?;
        if lock(&shard.data).end_sequence.is_some() {
            return Err(invalid(operation, format!("shard {shard_id} is closed")));
        }
        Ok(Arc::clone(shard))
    }
}
