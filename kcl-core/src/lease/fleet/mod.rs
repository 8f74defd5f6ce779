//! A fleet harness (feature `test-util`): lease coordinators in one process sharing one [`LeaseStore`] (in memory,
//! or a real table), with simulated record processors that write every lifecycle step to a shared [`Timeline`], so
//! tests can assert that no lease was processed by two workers at once and that graceful handoffs carry the final
//! checkpoint over.
//!
//! kcl-core's fleet tests run it on [`MemoryLeaseStore`](super::MemoryLeaseStore) (on Tokio's paused clock), the
//! kcl-tests crate on `DynamoLeaseStore` against DynamoDB Local; any store can be checked the same way.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use kcl_core::lease::fleet::{Fleet, config};
//! use kcl_core::lease::{MemoryLeaseStore, RenewalMode};
//!
//! let mut fleet = Fleet::new(Arc::new(MemoryLeaseStore::new()), 4, config(RenewalMode::PerLease, 600)).await;
//! fleet.start("w1");
//! fleet.start("w2");
//! fleet.converge(Duration::from_secs(60)).await;
//! assert_eq!(fleet.held_counts().into_values().collect::<Vec<_>>(), vec![2, 2]);
//! fleet.timeline.assert_no_overlap();
//! # }
//! ```
//!
//! Everything here panics on what a test must not see (a store error while seeding, a worker that cannot start):
//! it is test code.

mod processor;
mod timeline;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::processor::{Processing, process};
pub use self::timeline::{Entry, Kind, Timeline, next_checkpoint};
use super::Lease;
use super::coordinator::{LeaseCoordinator, LeaseCoordinatorConfig, LeaseCoordinatorHandle, LostReason, RenewalMode};
use super::store::LeaseStore;
use crate::types::ExtendedSequenceNumber;

/// One running worker of the fleet: its coordinator and simulated processors.
struct FleetWorker {
    handle: LeaseCoordinatorHandle,
    processor: JoinHandle<()>,
    processing: Arc<Processing>,
}

/// What [`Fleet::stop_and_await_handover`] saw.
#[derive(Clone, Debug)]
pub struct Handover {
    /// The leases the stopped worker held.
    pub leaving: Vec<String>,
    /// When the stop was requested.
    pub stopped_at: Instant,
    /// From the stop request until every one of them had started elsewhere.
    pub took: Duration,
    /// Those of `leaving`, in its order, that the stopped worker handed over itself during the stop (its coordinator
    /// reported `Lost { HandedOff }`: its write gave the lease to a live worker), as opposed to leaving them to be
    /// taken once expired.
    pub handed_off: Vec<String>,
    /// Every `Lost` the stopped worker's coordinator emitted during the stop, in order, with its reason.
    pub lost: Vec<(String, LostReason)>,
}

/// Lease coordinators sharing one store `S`, each with simulated processors (see the [module](self) docs).
#[non_exhaustive]
pub struct Fleet<S> {
    /// The store every worker started with [`start`](Self::start) uses.
    pub store: Arc<S>,
    /// The coordinator config of every worker.
    pub config: LeaseCoordinatorConfig,
    /// What the processors did.
    pub timeline: Arc<Timeline>,
    /// Simulated processors checkpoint their leases this often (None: only at handoffs). Default 100 ms; applies to
    /// workers started after a change.
    pub checkpoint_every: Option<Duration>,
    /// How often [`wait_for`](Self::wait_for) checks its condition. Default 10 ms.
    pub poll_every: Duration,
    /// How many leases the fleet was seeded with.
    pub leases: usize,
    workers: BTreeMap<String, FleetWorker>,
}

/// A config with a short lease duration, so a scenario takes seconds (of virtual time when paused), and a handoff
/// timeout of five lease durations.
///
/// # Panics
/// If the builder rejects `lease_duration_ms` (e.g. 0).
pub fn config(mode: RenewalMode, lease_duration_ms: u64) -> LeaseCoordinatorConfig {
    LeaseCoordinatorConfig::builder()
        .lease_duration(Duration::from_millis(lease_duration_ms))
        .renewal_mode(mode)
        .handoff_timeout(Duration::from_millis(lease_duration_ms * 5))
        .build()
        .expect("valid test config")
}

impl<S: LeaseStore + 'static> Fleet<S> {
    /// A fleet without workers on `store`, seeded with `leases` unowned leases `shard-0000`, `shard-0001`, … at
    /// `TRIM_HORIZON`.
    ///
    /// # Panics
    /// If the store fails to create a lease or one already exists.
    pub async fn new(store: Arc<S>, leases: usize, config: LeaseCoordinatorConfig) -> Self {
        for i in 0..leases {
            let lease = Lease::new_for_shard(format!("shard-{i:04}"), ExtendedSequenceNumber::TrimHorizon);
            let created = store.create_lease_if_not_exists(&lease).await;
            assert!(created.expect("seed the lease table"), "{} already existed", lease.lease_key);
        }
        Fleet {
            store,
            config,
            timeline: Arc::default(),
            workers: BTreeMap::new(),
            checkpoint_every: Some(Duration::from_millis(100)),
            poll_every: Duration::from_millis(10),
            leases,
        }
    }

    /// Starts worker `id` on the fleet's store.
    pub fn start(&mut self, id: &str) {
        let store: Arc<dyn LeaseStore> = self.store.clone();
        self.start_with_store(id, store);
    }

    /// Starts worker `id` on another store, typically a wrapper of the fleet's (partitionable, faulty).
    ///
    /// # Panics
    /// If the coordinator refuses to start.
    pub fn start_with_store(&mut self, id: &str, store: Arc<dyn LeaseStore>) {
        let (handle, events) = LeaseCoordinator::start(store, id, self.config.clone()).expect("start");
        let processing = Arc::new(Processing::default());
        let processor = tokio::spawn(process(
            handle.clone(),
            events,
            self.timeline.clone(),
            processing.clone(),
            self.checkpoint_every,
        ));
        self.workers.insert(id.to_owned(), FleetWorker { handle, processor, processing });
    }

    /// Worker `id`'s coordinator.
    ///
    /// # Panics
    /// If no worker `id` is running.
    pub fn handle(&self, id: &str) -> &LeaseCoordinatorHandle {
        &self.workers[id].handle
    }

    /// The ids of the running workers, sorted.
    pub fn worker_ids(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }

    /// Crash: the coordinator stops without releasing anything and its processors die with it. Returns the leases
    /// it was processing (each gets a `Stop { why: "killed" }`).
    ///
    /// # Panics
    /// If no worker `id` is running.
    pub fn kill(&mut self, id: &str) -> Vec<String> {
        let worker = self.workers.remove(id).expect("known worker");
        worker.handle.abort();
        worker.processor.abort();
        let running = worker.processing.abort_all();
        for lease in &running {
            self.timeline.record(id, lease, Kind::Stop { why: "killed".into() });
        }
        running
    }

    /// Graceful stop; returns once the coordinator and its processor finished.
    ///
    /// # Panics
    /// If no worker `id` is running, or its shutdown fails.
    pub async fn stop(&mut self, id: &str) {
        let worker = self.workers.remove(id).expect("known worker");
        worker.handle.shutdown().await.expect("graceful shutdown");
        worker.processor.await.expect("processor task");
        worker.processing.abort_all();
    }

    /// Stops `id` gracefully and waits (at most `timeout`) until every lease it held has started on another worker.
    ///
    /// # Panics
    /// With the fleet dumped, when `timeout` passed first.
    pub async fn stop_and_await_handover(&mut self, id: &str, timeout: Duration) -> Handover {
        let leaving: Vec<String> = self.handle(id).held_leases().into_iter().map(|l| l.lease_key).collect();
        let stopped_at = Instant::now();
        let processing = self.workers.get(id).expect("known worker").processing.clone();
        // Only this stop's losses: the worker may have handed a lease over and taken it back while converging.
        let lost_before = processing.lost().len();
        self.stop(id).await;
        let lost = processing.lost().split_off(lost_before);
        let handed_off = leaving
            .iter()
            .filter(|&lease| lost.iter().any(|(key, reason)| key == lease && *reason == LostReason::HandedOff))
            .cloned()
            .collect();
        let took = self
            .wait_for(timeout, "graceful handoff", async |f| {
                let starts = f.timeline.starts_after(stopped_at, id);
                leaving.iter().all(|lease| starts.contains_key(lease))
            })
            .await;
        Handover { leaving, stopped_at, took, handed_off, lost }
    }

    /// Held leases per live worker, from the handles (no store reads).
    pub fn held_counts(&self) -> BTreeMap<String, usize> {
        self.workers.iter().map(|(id, w)| (id.clone(), w.handle.held_leases().len())).collect()
    }

    /// Every lease held exactly once and the split even (± 1), according to the handles.
    pub fn balanced(&self) -> bool {
        let counts = self.held_counts();
        let total: usize = counts.values().sum();
        let (min, max) = (counts.values().min().copied(), counts.values().max().copied());
        let mut keys = HashSet::new();
        let unique = self.workers.values().flat_map(|w| w.handle.held_leases()).all(|l| keys.insert(l.lease_key));
        unique && total == self.leases && matches!((min, max), (Some(lo), Some(hi)) if hi - lo <= 1)
    }

    /// Like [`balanced`](Self::balanced), and the store agrees: no handoff in flight, owners as the handles say.
    pub async fn settled(&self) -> bool {
        if !self.balanced() {
            return false;
        }
        let Ok(leases) = self.store.list_all_leases().await else { return false };
        leases.iter().all(|lease| {
            lease.checkpoint_owner.is_none()
                && lease
                    .lease_owner
                    .as_deref()
                    .is_some_and(|o| self.workers.get(o).is_some_and(|w| w.handle.is_held(&lease.lease_key)))
        })
    }

    /// Polls `condition` every [`poll_every`](Self::poll_every) until it holds. Returns the time it took.
    ///
    /// # Panics
    /// With `what`, after [`dump`](Self::dump)ing the fleet, when `timeout` passed.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl AsyncFnMut(&Self) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            if condition(self).await {
                return started.elapsed();
            }
            if started.elapsed() >= timeout {
                self.dump().await;
                panic!("timed out after {timeout:?} waiting for {what}; held: {:?}", self.held_counts());
            }
            tokio::time::sleep(self.poll_every).await;
        }
    }

    /// Prints the store and every worker's view, to diagnose a test that timed out.
    pub async fn dump(&self) {
        for lease in self.store.list_all_leases().await.unwrap_or_default() {
            eprintln!(
                "store: {} owner={:?} checkpoint_owner={:?} counter={}",
                lease.lease_key, lease.lease_owner, lease.checkpoint_owner, lease.lease_counter
            );
        }
        eprintln!("heartbeats: {:?}", self.store.list_heartbeats().await.unwrap_or_default());
        for (id, worker) in &self.workers {
            let held: Vec<String> = worker.handle.held_leases().into_iter().map(|l| l.lease_key).collect();
            eprintln!("{id} holds {held:?}");
        }
    }

    /// Waits until the fleet is balanced and settled; returns the time it took.
    ///
    /// # Panics
    /// After `timeout`.
    pub async fn converge(&self, timeout: Duration) -> Duration {
        self.wait_for(timeout, "convergence", async |fleet| fleet.settled().await).await
    }

    /// (owner, owner switches) per lease, from the store.
    ///
    /// # Panics
    /// If the store cannot list its leases.
    pub async fn ownership(&self) -> BTreeMap<String, (Option<String>, u64)> {
        let leases = self.store.list_all_leases().await.expect("list the leases");
        leases.into_iter().map(|l| (l.lease_key, (l.lease_owner, l.owner_switches_since_checkpoint))).collect()
    }

    /// Asserts that a converged fleet stays put for `period`: no lease changes owner or is taken (its owner switch
    /// count never grows; checkpoints reset it), no processor starts or stops a lease, and nothing overlapped.
    ///
    /// # Panics
    /// On any of those.
    pub async fn assert_stays_put(&self, period: Duration) {
        let before = self.ownership().await;
        let events = self.timeline.len();
        tokio::time::sleep(period).await;
        let after = self.ownership().await;
        for (lease, (owner, switches)) in &before {
            let (owner_after, switches_after) = &after[lease];
            assert_eq!(owner_after, owner, "{lease} changed owner once converged");
            assert!(switches_after <= switches, "{lease} switched owner once converged");
        }
        assert_eq!(self.timeline.len(), events, "no lease may start or stop once converged");
        self.timeline.assert_no_overlap();
    }
}
