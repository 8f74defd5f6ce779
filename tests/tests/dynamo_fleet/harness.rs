//! An in-process fleet of lease coordinators sharing one `DynamoLeaseStore` table on DynamoDB Local, with simulated
//! record processors that write every lifecycle step to a shared timeline, so tests can assert that no lease was
//! processed by two workers at once and that graceful handoffs carry the final checkpoint over. Adapted from
//! kcl-core's in-memory fleet harness (`kcl-core/tests/fleet`), which stays private to that crate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use kcl_core::lease::{
    Lease, LeaseCoordinator, LeaseCoordinatorConfig, LeaseCoordinatorHandle, LeaseEvent, LeaseStore, RenewalMode,
};
use kcl_core::{ExtendedSequenceNumber, KclError, SequenceNumber};
use kcl_dynamo_lease::DynamoLeaseStore;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What happened, as the simulated processors saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Acquired`: processing starts from this checkpoint.
    Start { checkpoint: ExtendedSequenceNumber },
    /// Processing stopped (handoff requested, lost, killed, or a checkpoint rejected).
    Stop { why: String },
    /// The final checkpoint of a graceful handoff, recorded just BEFORE `handoff_done` writes it (so it precedes
    /// the new owner's start in the timeline even on a multi-threaded runtime).
    Final { checkpoint: ExtendedSequenceNumber },
    /// `handoff_done` failed after all: forget the preceding `Final`.
    FinalFailed,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub seq: u64,
    pub at: Instant,
    pub worker: String,
    pub lease: String,
    pub kind: Kind,
}

/// A totally ordered log of processing starts and stops across the fleet.
#[derive(Debug, Default)]
pub struct Timeline {
    entries: Mutex<Vec<Entry>>,
}

impl Timeline {
    pub fn record(&self, worker: &str, lease: &str, kind: Kind) {
        let mut entries = self.entries.lock().unwrap();
        let seq = entries.len() as u64;
        entries.push(Entry { seq, at: Instant::now(), worker: worker.into(), lease: lease.into(), kind });
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.entries.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    /// Asserts no lease was ever processed by two workers at once, and that a lease handed over gracefully started
    /// at its new owner from exactly the final checkpoint the old owner wrote.
    pub fn assert_no_overlap(&self) {
        let mut running: HashMap<String, String> = HashMap::new();
        let mut last_final: HashMap<String, ExtendedSequenceNumber> = HashMap::new();
        for entry in self.entries() {
            match &entry.kind {
                Kind::Start { checkpoint } => {
                    if let Some(other) = running.get(&entry.lease) {
                        for e in self.entries().iter().filter(|e| e.lease == entry.lease) {
                            eprintln!("{:?} {} {:?}", e.at, e.worker, e.kind);
                        }
                        panic!(
                            "{} started {} at {:?} while {other} was processing it",
                            entry.worker, entry.lease, entry.at
                        );
                    }
                    if let Some(final_checkpoint) = last_final.remove(&entry.lease) {
                        assert_eq!(
                            checkpoint, &final_checkpoint,
                            "{} must resume {} from the previous owner's final checkpoint",
                            entry.worker, entry.lease
                        );
                    }
                    running.insert(entry.lease.clone(), entry.worker.clone());
                }
                Kind::Stop { .. } => {
                    if running.get(&entry.lease) == Some(&entry.worker) {
                        running.remove(&entry.lease);
                    }
                }
                Kind::Final { checkpoint } => {
                    last_final.insert(entry.lease.clone(), checkpoint.clone());
                }
                Kind::FinalFailed => {
                    last_final.remove(&entry.lease);
                }
            }
        }
    }

    /// When each lease was last started by someone other than `worker`, after `since`.
    pub fn starts_after(&self, since: Instant, exclude: &str) -> HashMap<String, Instant> {
        let mut starts = HashMap::new();
        for entry in self.entries() {
            if entry.at >= since && entry.worker != exclude && matches!(entry.kind, Kind::Start { .. }) {
                starts.insert(entry.lease.clone(), entry.at);
            }
        }
        starts
    }
}

/// Globally increasing fake sequence numbers, so checkpoints are comparable across workers.
static NEXT_SEQUENCE: AtomicU64 = AtomicU64::new(1_000);

pub fn next_checkpoint() -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::sequence(SequenceNumber::from_u128(NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed).into()))
}

pub struct Worker {
    pub handle: LeaseCoordinatorHandle,
    processor: JoinHandle<()>,
    running: Arc<Mutex<HashSet<String>>>,
    tasks: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
}

pub struct Fleet {
    /// The store every unwrapped worker uses, on this fleet's own table.
    pub dynamo: Arc<DynamoLeaseStore>,
    client: Client,
    pub config: LeaseCoordinatorConfig,
    pub timeline: Arc<Timeline>,
    pub workers: BTreeMap<String, Worker>,
    /// Simulated processors checkpoint their leases this often (None: only at handoffs).
    pub checkpoint_every: Option<Duration>,
    pub leases: usize,
}

/// A config with a short lease duration, so a scenario takes seconds.
pub fn config(mode: RenewalMode, lease_duration_ms: u64) -> LeaseCoordinatorConfig {
    LeaseCoordinatorConfig::builder()
        .lease_duration(Duration::from_millis(lease_duration_ms))
        .renewal_mode(mode)
        .handoff_timeout(Duration::from_millis(lease_duration_ms * 5))
        .build()
        .expect("valid test config")
}

impl Fleet {
    /// A fleet on a fresh table (and heartbeat table in heartbeat mode) holding `leases` unowned leases.
    pub async fn new(leases: usize, config: LeaseCoordinatorConfig) -> Self {
        let client = kcl_tests::emulators().dynamodb_client().await;
        let table = kcl_tests::unique_name("fleet");
        let heartbeats = config.renewal_mode() == RenewalMode::WorkerHeartbeat;
        let dynamo = DynamoLeaseStore::builder(client.clone(), table).worker_heartbeats(heartbeats).build().await;
        let dynamo = Arc::new(dynamo.expect("create the lease table"));
        for i in 0..leases {
            let lease = Lease::new_for_shard(format!("shard-{i:04}"), ExtendedSequenceNumber::TrimHorizon);
            assert!(dynamo.create_lease_if_not_exists(&lease).await.unwrap());
        }
        Fleet {
            dynamo,
            client,
            config,
            timeline: Arc::default(),
            workers: BTreeMap::new(),
            checkpoint_every: Some(Duration::from_millis(500)),
            leases,
        }
    }

    /// Stops every worker like a crash and deletes the tables (best effort).
    pub async fn teardown(mut self) {
        let ids: Vec<String> = self.workers.keys().cloned().collect();
        for id in ids {
            self.kill(&id);
        }
        let tables = [Some(self.dynamo.table_name()), self.dynamo.heartbeat_table_name()];
        for table in tables.into_iter().flatten() {
            let _ = self.client.delete_table().table_name(table).send().await;
        }
    }

    pub fn start(&mut self, id: &str) {
        let store: Arc<dyn LeaseStore> = self.dynamo.clone();
        self.start_with_store(id, store);
    }

    pub fn start_with_store(&mut self, id: &str, store: Arc<dyn LeaseStore>) {
        let (handle, events) = LeaseCoordinator::start(store, id, self.config.clone()).expect("start");
        let running = Arc::new(Mutex::new(HashSet::new()));
        let tasks = Arc::new(Mutex::new(HashMap::new()));
        let processor = tokio::spawn(process(
            handle.clone(),
            events,
            self.timeline.clone(),
            running.clone(),
            tasks.clone(),
            self.checkpoint_every,
        ));
        self.workers.insert(id.to_owned(), Worker { handle, processor, running, tasks });
    }

    pub fn handle(&self, id: &str) -> &LeaseCoordinatorHandle {
        &self.workers[id].handle
    }

    /// Crash: the coordinator stops without releasing anything and its processors die with it.
    pub fn kill(&mut self, id: &str) -> Vec<String> {
        let worker = self.workers.remove(id).expect("known worker");
        worker.handle.abort();
        worker.processor.abort();
        for (_, task) in worker.tasks.lock().unwrap().drain() {
            task.abort();
        }
        let running: Vec<String> = worker.running.lock().unwrap().drain().collect();
        for lease in &running {
            self.timeline.record(id, lease, Kind::Stop { why: "killed".into() });
        }
        running
    }

    /// Graceful stop; returns once the coordinator and its processor finished.
    pub async fn stop(&mut self, id: &str) {
        let worker = self.workers.remove(id).expect("known worker");
        worker.handle.shutdown().await.expect("graceful shutdown");
        worker.processor.await.expect("processor task");
        for (_, task) in worker.tasks.lock().unwrap().drain() {
            task.abort();
        }
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
        let Ok(leases) = self.dynamo.list_all_leases().await else { return false };
        leases.iter().all(|lease| {
            lease.checkpoint_owner.is_none()
                && lease
                    .lease_owner
                    .as_deref()
                    .is_some_and(|o| self.workers.get(o).is_some_and(|w| w.handle.is_held(&lease.lease_key)))
        })
    }

    /// Polls `condition` every 20 ms until it holds; panics with `what` after `timeout`. Returns the time it took.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut condition: impl AsyncFnMut(&Fleet) -> bool,
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
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Prints the store and every worker's view, to diagnose a test that timed out.
    pub async fn dump(&self) {
        for lease in self.dynamo.list_all_leases().await.unwrap_or_default() {
            eprintln!(
                "store: {} owner={:?} checkpoint_owner={:?} counter={}",
                lease.lease_key, lease.lease_owner, lease.checkpoint_owner, lease.lease_counter
            );
        }
        eprintln!("heartbeats: {:?}", self.dynamo.list_heartbeats().await.unwrap_or_default());
        for (id, worker) in &self.workers {
            let held: Vec<String> = worker.handle.held_leases().into_iter().map(|l| l.lease_key).collect();
            eprintln!("{id} holds {held:?}");
        }
    }

    /// Waits until the fleet is balanced and settled.
    pub async fn converge(&self, timeout: Duration) -> Duration {
        self.wait_for(timeout, "convergence", async |fleet| fleet.settled().await).await
    }

    /// (owner, owner switches) per lease, from the store.
    pub async fn ownership(&self) -> BTreeMap<String, (Option<String>, u64)> {
        let leases = self.dynamo.list_all_leases().await.unwrap();
        leases.into_iter().map(|l| (l.lease_key, (l.lease_owner, l.owner_switches_since_checkpoint))).collect()
    }
}

/// A simulated pipeline for one worker. Like a real one, each lease is processed by its own task (here: it
/// checkpoints now and then), so a slow checkpoint of one lease never delays reacting to another lease's events.
/// The event loop records `Start` on `Acquired`, stops the lease's task and records `Stop` on `HandoffRequested`
/// or `Lost`, and answers `HandoffRequested` (final checkpoint, then `handoff_done`) from a separate task.
async fn process(
    handle: LeaseCoordinatorHandle,
    mut events: mpsc::UnboundedReceiver<LeaseEvent>,
    timeline: Arc<Timeline>,
    running: Arc<Mutex<HashSet<String>>>,
    tasks: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
    checkpoint_every: Option<Duration>,
) {
    let me = handle.worker_id().to_owned();
    while let Some(event) = events.recv().await {
        match event {
            LeaseEvent::Acquired(lease) => {
                let key = lease.lease_key.clone();
                timeline.record(&me, &key, Kind::Start { checkpoint: lease.checkpoint.clone() });
                running.lock().unwrap().insert(key.clone());
                if let Some(every) = checkpoint_every {
                    let task = tokio::spawn(process_lease(
                        handle.clone(),
                        key.clone(),
                        every,
                        timeline.clone(),
                        running.clone(),
                    ));
                    if let Some(old) = tasks.lock().unwrap().insert(key, task) {
                        old.abort();
                    }
                }
            }
            LeaseEvent::HandoffRequested { lease_key } => {
                stop(&me, &lease_key, "handoff requested", &timeline, &running, &tasks);
                let (handle, timeline) = (handle.clone(), timeline.clone());
                tokio::spawn(async move {
                    let me = handle.worker_id();
                    let final_checkpoint = next_checkpoint();
                    let checkpointed = handle.checkpoint(&lease_key, &final_checkpoint).await.is_ok();
                    if checkpointed {
                        timeline.record(me, &lease_key, Kind::Final { checkpoint: final_checkpoint });
                    }
                    if handle.handoff_done(&lease_key).await.is_err() && checkpointed {
                        timeline.record(me, &lease_key, Kind::FinalFailed);
                    }
                });
            }
            LeaseEvent::Lost { lease_key, reason } => {
                stop(&me, &lease_key, &format!("lost: {reason:?}"), &timeline, &running, &tasks);
            }
            _ => {}
        }
    }
}

fn stop(
    me: &str,
    lease: &str,
    why: &str,
    timeline: &Timeline,
    running: &Mutex<HashSet<String>>,
    tasks: &Mutex<HashMap<String, JoinHandle<()>>>,
) {
    if let Some(task) = tasks.lock().unwrap().remove(lease) {
        task.abort();
    }
    if running.lock().unwrap().remove(lease) {
        timeline.record(me, lease, Kind::Stop { why: why.to_owned() });
    }
}

/// Processing one lease: checkpoint every `every` until the coordinator refuses.
async fn process_lease(
    handle: LeaseCoordinatorHandle,
    lease: String,
    every: Duration,
    timeline: Arc<Timeline>,
    running: Arc<Mutex<HashSet<String>>>,
) {
    loop {
        tokio::time::sleep(every).await;
        match handle.checkpoint(&lease, &next_checkpoint()).await {
            Err(KclError::LeaseLost { .. }) => {
                if running.lock().unwrap().remove(&lease) {
                    timeline.record(handle.worker_id(), &lease, Kind::Stop { why: "checkpoint rejected".into() });
                }
                return;
            }
            Err(KclError::Shutdown) => return,
            _ => {}
        }
    }
}
