//! `FaultyLeaseStore`: wraps any [`LeaseStore`] and makes its calls fail on demand (feature `test-util`).
//!
//! For fleet tests (a partitioned worker whose store calls all fail while the others carry on: zombie fencing) and
//! chaos tests (random transient failures, slow calls, and lost responses). Faults are controlled through a
//! [`FaultSwitch`], a cheap cloneable handle the test keeps while the wrapped store is handed to a worker.
//!
//! Every injected failure is a [`LeaseStoreError::Transient`], the one error the contract lets a store return for
//! a call whose outcome is unknown. The nastiest, a *lost response*, applies the write and then reports it as
//! failed: a caller that assumes "failed means not written" is wrong, and these tests show it.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::store::{LeasePage, LeaseStore, PageToken};
use super::{Lease, LeaseFence, WorkerHeartbeat};
use crate::error::LeaseStoreError;
use crate::types::ExtendedSequenceNumber;

/// Which calls a [`FaultConfig`] affects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTarget {
    /// No call fails (latency still applies).
    Nothing,
    /// Only calls that write or try to (create, renew, take, release, evict, handoff, checkpoints, child shards,
    /// delete, heartbeat writes).
    Writes,
    /// Every call, reads (get, list, list heartbeats) included.
    AllCalls,
}

/// What a [`FaultSwitch`] currently does to calls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultConfig {
    /// Which calls may fail.
    pub target: FaultTarget,
    /// Chance that an affected call fails, from 0.0 to 1.0 (1.0: every one; values outside are clamped, NaN is 0).
    /// Below 1.0 the draws come from the switch's seeded generator.
    pub probability: f64,
    /// Share of the failing *writes*, from 0.0 to 1.0, that reach the store and are applied before the error is
    /// returned (a lost response). The rest fail without reaching the store. Failing reads never reach it.
    pub lost_responses: f64,
    /// Added to every call through the switch, failing or not, before the call is forwarded.
    pub latency: Duration,
}

impl FaultConfig {
    /// No faults, no latency.
    pub const OFF: FaultConfig =
        FaultConfig { target: FaultTarget::Nothing, probability: 0.0, lost_responses: 0.0, latency: Duration::ZERO };

    /// Every call fails without reaching the store: a worker cut off from its lease table.
    pub fn fail_all() -> Self {
        Self { target: FaultTarget::AllCalls, probability: 1.0, ..Self::OFF }
    }

    /// Every write fails without reaching the store; reads work.
    pub fn fail_writes() -> Self {
        Self { target: FaultTarget::Writes, probability: 1.0, ..Self::OFF }
    }

    /// Every write is applied, then reported as a transient failure; reads work.
    pub fn lose_write_responses() -> Self {
        Self { target: FaultTarget::Writes, probability: 1.0, lost_responses: 1.0, ..Self::OFF }
    }

    /// Calls of `target` fail with `probability`, drawn from the switch's seeded generator.
    pub fn fail_randomly(target: FaultTarget, probability: f64) -> Self {
        Self { target, probability, ..Self::OFF }
    }

    /// This configuration with `share` of its failing writes applied before failing (see
    /// [`lost_responses`](Self::lost_responses)).
    pub fn with_lost_responses(self, share: f64) -> Self {
        Self { lost_responses: share, ..self }
    }

    /// This configuration with `latency` added to every call.
    pub fn with_latency(self, latency: Duration) -> Self {
        Self { latency, ..self }
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self::OFF
    }
}

/// How many calls went through a [`FaultSwitch`] and what it did to them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Every call made through the switch.
    pub calls: u64,
    /// Calls failed without reaching the store.
    pub failed: u64,
    /// Writes applied and then reported as failed.
    pub lost_responses: u64,
}

/// The shared control of one or more [`FaultyLeaseStore`]s. Clones control the same faults.
#[derive(Clone)]
pub struct FaultSwitch {
    shared: Arc<Shared>,
}

struct Shared {
    config: Mutex<FaultConfig>,
    rng: Mutex<StdRng>,
    calls: AtomicU64,
    failed: AtomicU64,
    lost_responses: AtomicU64,
    /// Calls forwarded to the wrapped store that have not returned (or been dropped) yet.
    in_flight: AtomicU64,
}

/// What happens to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Pass,
    Fail,
    LoseResponse,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CallKind {
    Read,
    Write,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain data that stay valid even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `value` as a probability; NaN counts as 0.
fn clamp_probability(value: f64) -> f64 {
    if value.is_nan() { 0.0 } else { value.clamp(0.0, 1.0) }
}

impl FaultSwitch {
    /// A switch with faults off; `seed` makes the random faults reproducible.
    pub fn new(seed: u64) -> Self {
        Self {
            shared: Arc::new(Shared {
                config: Mutex::new(FaultConfig::OFF),
                rng: Mutex::new(StdRng::seed_from_u64(seed)),
                calls: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                lost_responses: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
            }),
        }
    }

    /// Applies `config` to every call from now on (calls already past their fault decision are not affected).
    pub fn set(&self, config: FaultConfig) {
        *lock(&self.shared.config) = config;
    }

    /// Turns every fault and the latency off.
    pub fn heal(&self) {
        self.set(FaultConfig::OFF);
    }

    /// The current configuration.
    pub fn config(&self) -> FaultConfig {
        *lock(&self.shared.config)
    }

    /// Counts of calls and injected faults so far.
    pub fn stats(&self) -> FaultStats {
        FaultStats {
            calls: self.shared.calls.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            lost_responses: self.shared.lost_responses.load(Ordering::Relaxed),
        }
    }

    /// Calls forwarded to the wrapped store that have not returned yet (dropped ones count as returned). After
    /// [`set`](Self::set)`(`[`FaultConfig::fail_all`]`())`, once this is 0 nothing of this wrapper reaches the store
    /// any more: a test can read what a partitioned worker last wrote without guessing how long its calls take.
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// Decides one call's fate and latency.
    fn decide(&self, kind: CallKind) -> (Fate, Duration) {
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        let config = self.config();
        let affected = match config.target {
            FaultTarget::Nothing => false,
            FaultTarget::Writes => kind == CallKind::Write,
            FaultTarget::AllCalls => true,
        };
        let fate = if !affected || !self.draw(config.probability) {
            Fate::Pass
        } else if kind == CallKind::Write && self.draw(config.lost_responses) {
            self.shared.lost_responses.fetch_add(1, Ordering::Relaxed);
            Fate::LoseResponse
        } else {
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
            Fate::Fail
        };
        (fate, config.latency)
    }

    /// `true` with `probability`; certain outcomes do not use up random numbers.
    fn draw(&self, probability: f64) -> bool {
        match clamp_probability(probability) {
            p if p <= 0.0 => false,
            p if p >= 1.0 => true,
            p => lock(&self.shared.rng).random_bool(p),
        }
    }
}

impl fmt::Debug for FaultSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultSwitch").field("config", &self.config()).field("stats", &self.stats()).finish()
    }
}

/// A [`LeaseStore`] that forwards to another and injects the faults its [`FaultSwitch`] is set to.
///
/// With faults off it is a transparent wrapper (it passes the contract suite). Wrap a shared store with
/// [`shared`](Self::shared) to partition one worker while the others keep using the store directly:
///
/// ```
/// use std::sync::Arc;
/// use kcl_core::lease::{FaultConfig, FaultyLeaseStore, Lease, LeaseStore, MemoryLeaseStore};
/// use kcl_core::ExtendedSequenceNumber;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let table = Arc::new(MemoryLeaseStore::new());
/// let partitioned = FaultyLeaseStore::shared(Arc::clone(&table));
/// let switch = partitioned.switch().clone();
///
/// switch.set(FaultConfig::fail_all());
/// let lease = Lease::new_for_shard("shardId-000000000000", ExtendedSequenceNumber::TrimHorizon);
/// assert!(partitioned.create_lease_if_not_exists(&lease).await.unwrap_err().is_retryable());
/// assert!(table.create_lease_if_not_exists(&lease).await.unwrap()); // the others still reach the table
///
/// switch.heal();
/// assert!(partitioned.get_lease("shardId-000000000000").await.unwrap().is_some());
/// # }
/// ```
pub struct FaultyLeaseStore<S: ?Sized> {
    switch: FaultSwitch,
    inner: Arc<S>,
}

impl<S: LeaseStore> FaultyLeaseStore<S> {
    /// Wraps `inner`, with faults off and a switch seeded with 0.
    pub fn new(inner: S) -> Self {
        Self::shared(Arc::new(inner))
    }
}

impl<S: LeaseStore + ?Sized> FaultyLeaseStore<S> {
    /// Wraps a store that others may also use directly, with faults off and a switch seeded with 0.
    pub fn shared(inner: Arc<S>) -> Self {
        Self::with_switch(inner, FaultSwitch::new(0))
    }

    /// Wraps a store under an existing switch (several wrappers can share one switch).
    pub fn with_switch(inner: Arc<S>, switch: FaultSwitch) -> Self {
        Self { switch, inner }
    }

    /// The switch controlling this wrapper's faults.
    pub fn switch(&self) -> &FaultSwitch {
        &self.switch
    }

    /// The wrapped store, reached without faults.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// Runs one forwarded call under the switch's decision.
    async fn call<T>(
        &self,
        operation: &'static str,
        kind: CallKind,
        forward: impl Future<Output = Result<T, LeaseStoreError>>,
    ) -> Result<T, LeaseStoreError> {
        let (fate, latency) = self.switch.decide(kind);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match fate {
            Fate::Pass => {
                let _in_flight = InFlight::enter(&self.switch.shared.in_flight);
                forward.await
            }
            Fate::Fail => {
                Err(LeaseStoreError::transient(operation, "injected fault: the call did not reach the store"))
            }
            Fate::LoseResponse => {
                // Whatever the store answered, the caller never hears it.
                let _applied = {
                    let _in_flight = InFlight::enter(&self.switch.shared.in_flight);
                    forward.await
                };
                Err(LeaseStoreError::transient(
                    operation,
                    "injected fault: the write reached the store, its response was lost",
                ))
            }
        }
    }
}

/// Counts one forwarded call while it lives (a dropped, cancelled call leaves the count too).
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S: ?Sized> fmt::Debug for FaultyLeaseStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyLeaseStore").field("switch", &self.switch).finish_non_exhaustive()
    }
}

#[async_trait]
impl<S: LeaseStore + ?Sized> LeaseStore for FaultyLeaseStore<S> {
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        self.call("create_lease_if_not_exists", CallKind::Write, self.inner.create_lease_if_not_exists(lease)).await
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseStoreError> {
        self.call("get_lease", CallKind::Read, self.inner.get_lease(lease_key)).await
    }

    async fn list_leases(&self, page: Option<PageToken>, page_size: usize) -> Result<LeasePage, LeaseStoreError> {
        self.call("list_leases", CallKind::Read, self.inner.list_leases(page, page_size)).await
    }

    async fn list_all_leases(&self) -> Result<Vec<Lease>, LeaseStoreError> {
        self.call("list_all_leases", CallKind::Read, self.inner.list_all_leases()).await
    }

    async fn list_leases_by_owner(&self, owner: &str) -> Result<Vec<Lease>, LeaseStoreError> {
        self.call("list_leases_by_owner", CallKind::Read, self.inner.list_leases_by_owner(owner)).await
    }

    async fn renew_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.call("renew_lease", CallKind::Write, self.inner.renew_lease(fence)).await
    }

    async fn take_lease(
        &self,
        lease_key: &str,
        expected_counter: u64,
        new_owner: &str,
    ) -> Result<Lease, LeaseStoreError> {
        self.call("take_lease", CallKind::Write, self.inner.take_lease(lease_key, expected_counter, new_owner)).await
    }

    async fn release_lease(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        self.call("release_lease", CallKind::Write, self.inner.release_lease(fence)).await
    }

    async fn evict_lease(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        self.call("evict_lease", CallKind::Write, self.inner.evict_lease(lease_key, expected_owner)).await
    }

    async fn assign_for_handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        self.call("assign_for_handoff", CallKind::Write, self.inner.assign_for_handoff(fence, new_owner)).await
    }

    async fn update_checkpoint(
        &self,
        fence: &LeaseFence,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<u64, LeaseStoreError> {
        self.call("update_checkpoint", CallKind::Write, self.inner.update_checkpoint(fence, checkpoint)).await
    }

    async fn prepare_checkpoint(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        self.call("prepare_checkpoint", CallKind::Write, self.inner.prepare_checkpoint(fence, pending, state)).await
    }

    async fn update_child_shards(
        &self,
        fence: &LeaseFence,
        child_shard_ids: &[String],
    ) -> Result<u64, LeaseStoreError> {
        self.call("update_child_shards", CallKind::Write, self.inner.update_child_shards(fence, child_shard_ids)).await
    }

    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseStoreError> {
        self.call("delete_lease", CallKind::Write, self.inner.delete_lease(lease_key)).await
    }

    async fn renew_heartbeat(&self, worker_id: &str, expected_counter: Option<u64>) -> Result<u64, LeaseStoreError> {
        self.call("renew_heartbeat", CallKind::Write, self.inner.renew_heartbeat(worker_id, expected_counter)).await
    }

    async fn list_heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError> {
        self.call("list_heartbeats", CallKind::Read, self.inner.list_heartbeats()).await
    }

    async fn delete_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        self.call("delete_heartbeat", CallKind::Write, self.inner.delete_heartbeat(worker_id)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::lease::MemoryLeaseStore;

    const KEY: &str = "shardId-000000000000";

    fn lease() -> Lease {
        Lease::new_for_shard(KEY, ExtendedSequenceNumber::TrimHorizon)
    }

    fn fence(owner: &str, counter: u64) -> LeaseFence {
        LeaseFence { lease_key: KEY.to_owned(), owner: owner.to_owned(), counter }
    }

    /// A faulty view of a shared memory store, with the store itself.
    fn partitionable() -> (Arc<MemoryLeaseStore>, FaultyLeaseStore<MemoryLeaseStore>) {
        let table = Arc::new(MemoryLeaseStore::new());
        let view = FaultyLeaseStore::shared(Arc::clone(&table));
        (table, view)
    }

    #[tokio::test]
    async fn fail_all_keeps_every_call_away_from_the_store() {
        let (table, view) = partitionable();
        table.create_lease_if_not_exists(&lease()).await.unwrap();
        view.switch().set(FaultConfig::fail_all());
        let error = view.renew_lease(&fence("w", 0)).await.unwrap_err();
        assert!(error.is_retryable(), "{error:?}");
        assert!(view.get_lease(KEY).await.unwrap_err().is_retryable());
        assert!(view.list_heartbeats().await.unwrap_err().is_retryable());
        assert!(view.take_lease(KEY, 0, "w").await.unwrap_err().is_retryable());
        assert_eq!(table.get_lease(KEY).await.unwrap(), Some(lease()), "nothing reached the store");
        assert_eq!(view.switch().stats(), FaultStats { calls: 4, failed: 4, lost_responses: 0 });

        view.switch().heal();
        assert_eq!(view.take_lease(KEY, 0, "w").await.unwrap().lease_counter, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_counts_forwarded_calls_until_they_return_or_are_dropped() {
        // The outer wrapper forwards to a slow inner one: its call stays in flight for the inner latency.
        let slow = Arc::new(FaultyLeaseStore::new(MemoryLeaseStore::new()));
        slow.switch().set(FaultConfig::OFF.with_latency(Duration::from_secs(1)));
        let outer = Arc::new(FaultyLeaseStore::shared(slow));
        let switch = outer.switch().clone();
        let call = tokio::spawn({
            let outer = outer.clone();
            async move { outer.get_lease(KEY).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(switch.in_flight(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(call.await.unwrap().unwrap(), None);
        assert_eq!(switch.in_flight(), 0);
        // Failed calls never reach the store, and a cancelled call leaves the count.
        switch.set(FaultConfig::fail_all());
        assert!(outer.get_lease(KEY).await.is_err());
        assert_eq!(switch.in_flight(), 0);
        switch.heal();
        let cancelled = tokio::spawn(async move { outer.get_lease(KEY).await });
        tokio::task::yield_now().await;
        assert_eq!(switch.in_flight(), 1);
        cancelled.abort();
        let _ = cancelled.await;
        assert_eq!(switch.in_flight(), 0);
    }

    #[tokio::test]
    async fn fail_writes_lets_reads_through() {
        let (table, view) = partitionable();
        view.switch().set(FaultConfig::fail_writes());
        assert!(view.create_lease_if_not_exists(&lease()).await.unwrap_err().is_retryable());
        assert!(view.renew_heartbeat("w", None).await.unwrap_err().is_retryable());
        assert_eq!(table.get_lease(KEY).await.unwrap(), None);
        assert!(table.list_heartbeats().await.unwrap().is_empty());
        table.create_lease_if_not_exists(&lease()).await.unwrap();
        assert_eq!(view.get_lease(KEY).await.unwrap(), Some(lease()));
        assert_eq!(view.list_all_leases().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_lost_response_applies_the_write_and_reports_a_transient_error() {
        let (table, view) = partitionable();
        view.switch().set(FaultConfig::lose_write_responses());
        assert!(view.create_lease_if_not_exists(&lease()).await.unwrap_err().is_retryable());
        assert_eq!(table.get_lease(KEY).await.unwrap(), Some(lease()), "the create was applied");
        let error = view.take_lease(KEY, 0, "w").await.unwrap_err();
        assert!(error.is_retryable(), "{error:?}");
        assert_eq!(table.get_lease(KEY).await.unwrap().unwrap().lease_counter, 1, "the take was applied");
        // The caller retries with the counter it saw: it lost to itself, and only a re-read tells it so.
        assert!(table.take_lease(KEY, 0, "w").await.unwrap_err().is_condition_failed());
        assert_eq!(view.get_lease(KEY).await.unwrap().unwrap().lease_owner.as_deref(), Some("w"), "reads pass");
        assert_eq!(view.switch().stats(), FaultStats { calls: 3, failed: 0, lost_responses: 2 });
    }

    #[tokio::test]
    async fn random_faults_are_reproducible_from_the_seed() {
        async fn pattern(seed: u64) -> Vec<bool> {
            let store = FaultyLeaseStore::with_switch(Arc::new(MemoryLeaseStore::new()), FaultSwitch::new(seed));
            store.switch().set(FaultConfig::fail_randomly(FaultTarget::AllCalls, 0.5));
            let mut failed = Vec::new();
            for _ in 0..200 {
                failed.push(store.get_lease(KEY).await.is_err());
            }
            failed
        }
        let first = pattern(7).await;
        assert_eq!(first, pattern(7).await);
        assert_ne!(first, pattern(8).await);
        let failures = first.iter().filter(|&&f| f).count();
        assert!((60..=140).contains(&failures), "{failures} of 200 calls failed at probability 0.5");
    }

    #[tokio::test]
    async fn lost_responses_can_be_a_share_of_random_write_failures() {
        let (table, view) = partitionable();
        table.create_lease_if_not_exists(&lease()).await.unwrap();
        view.switch().set(FaultConfig::fail_randomly(FaultTarget::Writes, 1.0).with_lost_responses(0.5));
        for _ in 0..100 {
            assert!(view.update_child_shards(&fence("w", 0), &[]).await.is_err());
        }
        let stats = view.switch().stats();
        assert_eq!(stats.failed + stats.lost_responses, 100);
        assert!((25..=75).contains(&stats.lost_responses), "{stats:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_every_call() {
        let (_table, view) = partitionable();
        view.switch().set(FaultConfig::OFF.with_latency(Duration::from_millis(250)));
        let start = tokio::time::Instant::now();
        view.create_lease_if_not_exists(&lease()).await.unwrap();
        view.get_lease(KEY).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(500), "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn one_switch_controls_several_wrappers() {
        let table = Arc::new(MemoryLeaseStore::new());
        let switch = FaultSwitch::new(1);
        let a = FaultyLeaseStore::with_switch(Arc::clone(&table), switch.clone());
        let b = FaultyLeaseStore::with_switch(Arc::clone(&table), switch.clone());
        switch.set(FaultConfig::fail_all());
        assert!(a.list_all_leases().await.is_err());
        assert!(b.list_leases_by_owner("w").await.is_err());
        assert_eq!(switch.stats().failed, 2);
    }

    /// The use it was made for: a partitioned worker cannot checkpoint once another took its lease, even after the
    /// partition heals.
    #[tokio::test]
    async fn a_partitioned_worker_is_fenced_off_after_the_partition_heals() {
        let (table, zombie) = partitionable();
        table.create_lease_if_not_exists(&lease()).await.unwrap();
        let held = zombie.take_lease(KEY, 0, "worker-a").await.unwrap();
        zombie.switch().set(FaultConfig::fail_all());
        let zombie_fence = held.fence().unwrap();
        assert!(zombie.renew_lease(&zombie_fence).await.unwrap_err().is_retryable());
        table.take_lease(KEY, held.lease_counter, "worker-b").await.unwrap();

        zombie.switch().heal();
        let checkpoint = ExtendedSequenceNumber::ShardEnd;
        assert!(zombie.update_checkpoint(&zombie_fence, &checkpoint).await.unwrap_err().is_condition_failed());
        assert_eq!(table.get_lease(KEY).await.unwrap().unwrap().checkpoint, ExtendedSequenceNumber::TrimHorizon);
    }

    #[test]
    fn probabilities_are_clamped() {
        assert_eq!(clamp_probability(f64::NAN), 0.0);
        assert_eq!(clamp_probability(-1.0), 0.0);
        assert_eq!(clamp_probability(2.0), 1.0);
        assert_eq!(clamp_probability(0.25), 0.25);
    }
}
