//! Cleanup of finished shards' leases (Java KCL `cleanupLeasesUponShardCompletion`, on by default) and of garbage
//! leases, whose shard the stream does not have (Java KCL's garbage-lease cleanup); the rules are on
//! [`finished_leases`], [`garbage_leases`] and [`LeaseCleaner`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::KclError;
use crate::lease::{Lease, LeaseStore};
use crate::types::{ExtendedSequenceNumber, Shard};

/// The keys of the finished leases among `leases` (one stream's), using `shards` to find children too.
///
/// A lease is **finished** when its checkpoint is `SHARD_END` and every child — from the lease's `child_shard_ids`
/// and from the shard listing — has a lease whose processing started (its checkpoint is a sequence number or
/// `SHARD_END`, not a starting sentinel). A lease whose children are unknown is never finished.
pub fn finished_leases(leases: &[Lease], shards: &[Shard]) -> Vec<String> {
    let by_shard: HashMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    let mut children_of: HashMap<&str, HashSet<&str>> = HashMap::new();
    for shard in shards {
        for parent in &shard.parent_shard_ids {
            children_of.entry(parent.as_str()).or_default().insert(shard.shard_id.as_str());
        }
    }
    let started = |lease: &Lease| {
        matches!(lease.checkpoint, ExtendedSequenceNumber::Sequence { .. } | ExtendedSequenceNumber::ShardEnd)
    };
    leases
        .iter()
        .filter(|lease| lease.checkpoint.is_shard_end())
        .filter(|lease| {
            let mut children = children_of.get(lease.shard_id.as_str()).cloned().unwrap_or_default();
            children.extend(lease.child_shard_ids.iter().map(String::as_str));
            !children.is_empty() && children.iter().all(|child| by_shard.get(child).is_some_and(|c| started(c)))
        })
        .map(|lease| lease.lease_key.clone())
        .collect()
}

/// The keys of the garbage leases among `leases` (one stream's): those whose shard is not in `shards`, which must
/// be a complete listing of the stream (every shard, open or closed, as `ShardListFilter::All` returns). An empty
/// listing proves nothing (a stream being re-created, a failed call turned into no shards), so it yields none.
///
/// Without this a worker takes such a lease, fails `GetShardIterator` (no such shard) and releases it, forever.
pub fn garbage_leases(leases: &[Lease], shards: &[Shard]) -> Vec<String> {
    if shards.is_empty() {
        return Vec::new();
    }
    let known: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    leases.iter().filter(|l| !known.contains(l.shard_id.as_str())).map(|l| l.lease_key.clone()).collect()
}

/// Deletes [finished](finished_leases) leases once they have been seen finished for a grace period (default 5
/// minutes, like Java KCL's `completedLeaseCleanupIntervalMillis`), measured on this worker's monotonic clock (no
/// wall clocks compared). Keeps the "first seen finished" times between runs: run it on the sync leader, after a
/// sync, with the same listing.
///
/// Given a complete shard listing it also deletes [garbage](garbage_leases) leases, once two consecutive runs'
/// listings lacked their shard: a child lease can be created from a parent's last `GetRecords` (its `ChildShards`)
/// just after a listing was made, and the second listing is made after that lease was seen.
pub struct LeaseCleaner {
    store: Arc<dyn LeaseStore>,
    stream_identifier: Option<String>,
    grace: Duration,
    first_seen: HashMap<String, Instant>,
    garbage_seen: HashSet<String>,
}

impl std::fmt::Debug for LeaseCleaner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseCleaner").field("grace", &self.grace).field("pending", &self.first_seen.len()).finish()
    }
}

impl LeaseCleaner {
    /// A cleaner for the leases of one stream (`stream_identifier` as in
    /// [`ShardSyncConfig`](super::ShardSyncConfig)) with a 5-minute grace period.
    pub fn new(store: Arc<dyn LeaseStore>, stream_identifier: Option<String>) -> Self {
        Self {
            store,
            stream_identifier,
            grace: Duration::from_secs(300),
            first_seen: HashMap::new(),
            garbage_seen: HashSet::new(),
        }
    }

    /// The same cleaner with another grace period.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Lists the stream's leases, notes newly finished ones, and deletes those finished for at least the grace
    /// period. `shards`: a complete listing of the stream, or empty when none was made (then no garbage is
    /// looked for). Returns the deleted keys.
    pub async fn run(&mut self, shards: &[Shard]) -> Result<Vec<String>, KclError> {
        let leases = self.store.list_all_leases().await?;
        self.run_among(&leases, shards).await
    }

    /// [`run`](Self::run) given a listing of the whole lease table (a multi-stream worker lists it once for all its
    /// streams); only this cleaner's stream's leases count.
    pub async fn run_among(&mut self, all_leases: &[Lease], shards: &[Shard]) -> Result<Vec<String>, KclError> {
        let stream = self.stream_identifier.as_deref();
        let leases: Vec<Lease> =
            all_leases.iter().filter(|l| l.stream_identifier.as_deref() == stream).cloned().collect();
        let finished: HashSet<String> = finished_leases(&leases, shards).into_iter().collect();
        let now = Instant::now();
        self.first_seen.retain(|key, _| finished.contains(key));
        for key in &finished {
            self.first_seen.entry(key.clone()).or_insert(now);
        }
        let due: Vec<String> = self
            .first_seen
            .iter()
            .filter(|(_, seen)| now.duration_since(**seen) >= self.grace)
            .map(|(key, _)| key.clone())
            .collect();
        let garbage: HashSet<String> = garbage_leases(&leases, shards).into_iter().collect();
        let confirmed: Vec<String> = garbage.intersection(&self.garbage_seen).cloned().collect();
        self.garbage_seen = garbage;
        let mut deleted = Vec::new();
        for key in confirmed {
            self.store.delete_lease(&key).await?;
            tracing::warn!(lease = %key, "deleted a garbage lease: two shard listings in a row lack its shard");
            self.garbage_seen.remove(&key);
            self.first_seen.remove(&key);
            deleted.push(key);
        }
        for key in due {
            self.store.delete_lease(&key).await?;
            tracing::info!(lease = %key, "deleted the lease of a finished shard whose children have started");
            self.first_seen.remove(&key);
            deleted.push(key);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::MemoryLeaseStore;
    use crate::types::{HashKeyRange, SequenceNumber, SequenceNumberRange};

    fn shard(id: &str) -> Shard {
        Shard {
            shard_id: id.into(),
            parent_shard_ids: Vec::new(),
            hash_key_range: HashKeyRange::new(0, 1).unwrap(),
            sequence_number_range: SequenceNumberRange { start: SequenceNumber::from_u128(1), end: None },
        }
    }

    fn lease(id: &str) -> Lease {
        Lease::new_for_shard(id, ExtendedSequenceNumber::TrimHorizon)
    }

    #[test]
    fn garbage_is_a_lease_whose_shard_a_complete_listing_lacks() {
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            // (leases, listed shards, garbage)
            (&["s1", "s2"], &["s1", "s2"], &[]),
            (&["s1", "s9"], &["s1", "s2"], &["s9"]),
            (&["s9"], &[], &[]), // an empty listing proves nothing
            (&[], &["s1"], &[]),
        ];
        for (leases, shards, expected) in cases {
            let leases: Vec<Lease> = leases.iter().map(|id| lease(id)).collect();
            let shards: Vec<Shard> = shards.iter().map(|id| shard(id)).collect();
            assert_eq!(garbage_leases(&leases, &shards), *expected, "{leases:?} / {shards:?}");
        }
    }

    #[tokio::test]
    async fn a_garbage_lease_is_deleted_when_two_runs_in_a_row_confirm_it() {
        let store = Arc::new(MemoryLeaseStore::new());
        for id in ["s1", "s9"] {
            store.create_lease_if_not_exists(&lease(id)).await.unwrap();
        }
        let mut cleaner = LeaseCleaner::new(store.clone(), None);
        let listing = [shard("s1")];
        assert!(cleaner.run(&listing).await.unwrap().is_empty(), "one listing is not enough");
        assert!(cleaner.run(&[]).await.unwrap().is_empty(), "no listing: nothing deleted");
        assert!(cleaner.run(&listing).await.unwrap().is_empty(), "a run without a listing breaks the streak");
        assert_eq!(cleaner.run(&listing).await.unwrap(), ["s9"]);
        let keys: Vec<String> = store.list_all_leases().await.unwrap().into_iter().map(|l| l.lease_key).collect();
        assert_eq!(keys, ["s1"]);
    }
}
