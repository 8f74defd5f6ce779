//! The lease coordinator: which shards this worker processes, kept safe and balanced across a fleet.
//!
//! [`LeaseCoordinator::start`] runs four small tasks per worker against any [`LeaseStore`]: a **renewer**, a
//! **taker** (take expired leases, steal toward an even share), an **assignment poller**, and a **fencing clock**.
//! The pipeline drives it through a [`LeaseCoordinatorHandle`] and reacts to [`LeaseEvent`]s:
//!
//! * [`LeaseEvent::Acquired`] — start processing the shard from the lease's checkpoint.
//! * [`LeaseEvent::HandoffRequested`] — stop after the current batch, checkpoint (the processor's
//!   `shutdown_requested`), then call [`LeaseCoordinatorHandle::handoff_done`].
//! * [`LeaseEvent::Lost`] — stop processing at once; checkpoints will fail with [`KclError::LeaseLost`].
//!
//! Every `Acquired` is followed by exactly one `Lost` (possibly with a `HandoffRequested` in between), unless the
//! coordinator is aborted.
//!
//! # Expiry: local monotonic time only
//! A worker never compares clocks with another. For every lease (and, in heartbeat mode, every heartbeat) it
//! remembers the value it last saw and **when it first saw that value: the end of the read that returned it**. A
//! lease is expired when that value has not changed for `lease_duration` on this worker's `tokio::time::Instant`
//! clock. Heartbeat mode: expired when the lease counter has not changed for `lease_duration` AND its owner's heartbeat
//! has not changed for `lease_duration` (or the owner has had no heartbeat at all for `lease_duration` since first
//! noticed) AND, during a handoff, the same holds for the checkpoint owner.
//!
//! # Failover time
//! Each take cycle notes the earliest future instant at which a lease of another worker would expire by this rule
//! if nothing changes (`lease_duration` after its counter, or in heartbeat mode its owners' heartbeats, were last
//! seen to change), and the take loop runs its next cycle then if that comes before the regular tick (one take
//! interval after the last cycle). A worker that crashes at `C` renewed last at `T0 ≤ C`; a survivor's next listing
//! sees that value at `T1 ≤ T0 + take_interval`, looks again at `T1 + lease_duration` and takes it: the leases are
//! owned again within `lease_duration + take_interval` of the crash (plus a listing and a write), where waiting for
//! the regular tick gave up to `lease_duration + 2 × take_interval + renewal_interval`. The extra cycle cannot spin:
//! its instant is strictly in the future, and the listing it triggers either finds the lease expired (the instant
//! is then past) or sees it change and dates it afresh, `lease_duration` later. Survivors of a crash reach the
//! same expired leases at about the same moment, so a take may lose its race; the loser lists again at once (the
//! rest of its share is still expired, and no expiry instant is left to bring it back before the regular tick).
//! That is bounded too: each lost race is a lease that just changed hands. In a healthy fleet every listing
//! sees every owner's renewal, so with the default `take_interval` (2 × `lease_duration`) a worker lists about once
//! per `lease_duration + ε` instead of once per take interval: the table below counts that. Safety is unchanged:
//! the extra cycle applies exactly the same expiry rule, only sooner after it became true.
//!
//! # Self-fencing, and why it is safe
//! A worker declares a lease lost (emits `Lost`, refuses checkpoints) at its **deadline**:
//!
//! * per-lease mode: `W + min(lease_duration, handoff_timeout) − safety_margin`, where `W` is the START of its last
//!   successful write to the lease (renewal, take, checkpoint);
//! * heartbeat mode: `H + lease_duration − safety_margin`, where `H` is the START of its last successful heartbeat
//!   renewal; during an outgoing handoff also at most `handoff_timeout` after noticing it.
//!
//! The fencing clock enforces deadlines without calling the store, so a hung store cannot delay it.
//!
//! Why no one else can start processing before the deadline + `safety_margin`:
//! * **Expiry take.** Another worker takes only after the counter (heartbeat) stayed unchanged for
//!   `lease_duration` since it SAW the value we wrote. It can only see it after our write landed, which is after
//!   our request began at `W` (`H`). So its take is no earlier than `W + lease_duration`: a full safety margin after
//!   our deadline. A renewal we could not confirm (timeout, transient error) is never counted; if it turns out to
//!   have landed, it is dated from the start of the first unconfirmed attempt, which is earlier than the write.
//!   Per-lease mode gets the rest from the store: the take is conditional on the counter our renewals move, so a
//!   renewal that lands after the taker looked makes the take fail, and one that lands after the take fails itself.
//!   Heartbeat mode has no such exclusion between a heartbeat and a lease, so the taker first **fences the
//!   heartbeat**: a conditional write bumping it from the value it saw go stale. Success proves none of our renewals
//!   landed since, and makes every later one fail its condition. A worker whose heartbeat renewal fails its
//!   condition reads its heartbeat: a fence lands no earlier than `H + lease_duration`, so a single step seen before
//!   its deadline is its own unseen write and it heartbeats on from it; otherwise it declares every lease lost at once
//!   and takes back, through writes fenced per lease, those still its own. While its heartbeat has lapsed it takes
//!   and adopts nothing (each would be lost again at once). The fencer takes all the dead worker's expired leases,
//!   since everyone else now sees its heartbeat move.
//! * **Steal (graceful handoff).** The thief's `assign_for_handoff` is fenced on the counter our last write produced,
//!   so it happens after `W`. The thief starts when we clear `checkpoint_owner` (after our processor stopped), or by
//!   force: in per-lease mode `min(lease_duration, handoff_timeout)` after its steal completed — after
//!   `W + min(…)`; in heartbeat mode only once our heartbeat is dead by the expiry rule above (while we are alive we
//!   enforce `handoff_timeout` ourselves and then clear the right). If the thief dies mid-handoff, a third worker takes
//!   only once both the thief and we count as dead (heartbeat mode) or the counter has been static for
//!   `lease_duration` since the steal (per-lease mode). In heartbeat mode every forced take fences the old owner's
//!   heartbeat first, as above.
//!
//! The `safety_margin` (default `lease_duration / 10`) is the time the pipeline has to act on `Lost`, and absorbs
//! clock-rate differences between hosts. Leases stolen from a worker that is not this coordinator (Java KCL's plain
//! `takeLease`) are noticed at the next renewal, as in Java KCL.
//!
//! # Renewal modes ([`RenewalMode`])
//! Store request counts per worker per hour with the defaults (10 s lease duration), for `n` leases per worker:
//!
//! | | writes | reads |
//! |---|---|---|
//! | `PerLease` | `n × 1088` renewals (3308 ms interval) | ≤ 360 `list_leases` + 7200 `list_leases_by_owner` |
//! | `WorkerHeartbeat` | 724 heartbeats (4975 ms interval) | ≤ 360 `list_leases` + ≤ 360 `list_heartbeats` + 7200 polls |
//!
//! (the listings are 180 per hour at the regular take interval, doubled by the expiry-timed cycles of
//! [Failover time](#failover-time) in a healthy fleet; each lists the whole table) plus a take or steal per lease
//! that moves, a `get_lease` when a write meets a surprise, and checkpoints. With 20
//! leases per worker heartbeat mode writes 30× less. Heartbeat mode renews every `lease_duration / 2 − ε` by default
//! (per-lease mode keeps KCL's third): its single write is retried with backoff until the next tick, and the fencing
//! deadline is `lease_duration − safety_margin` after the last success either way.
//!
//! # Balancing and handoff
//! The policy lives in the `assignment` module (the one place to change it): by default Java KCL 2.x's count-based
//! balance, target ⌈leases / workers⌉, expired leases first, then at most `max_leases_to_steal_at_one_time` steals
//! from the most loaded worker, KCL's rule for ± 1 stability. Every steal
//! is a graceful handoff: the thief calls `assign_for_handoff` (owner = thief, `checkpoint_owner` = old owner); the
//! old owner notices (its next renewal fails, or a poll), emits `HandoffRequested`, DEFERS the processor's checkpoints
//! and on `handoff_done` writes the last one as the final checkpoint, which clears `checkpoint_owner` (with nothing to
//! write, a `take_lease` on the new owner's behalf clears it). The thief notices the cleared right (a failed
//! renewal or a poll), confirms with a fenced renewal and emits `Acquired`. No record is processed by both.
//! A worker steals again only after its previous handoff completed, and then at once (no take-interval wait), so a
//! joining worker takes its share gradually but quickly (KCL #332).
//!
//! # Shutdown fast path
//! [`LeaseCoordinatorHandle::shutdown`] stops taking, emits `HandoffRequested` for every lease, and on each
//! `handoff_done` hands the lease DIRECTLY to the least-loaded live worker with a `take_lease` on its behalf (one
//! write, fenced by our counter; our processor has already stopped, so no checkpoint-owner phase is needed). The
//! receiver's **assignment poll** (`list_leases_by_owner(me)`, every `assignment_poll_interval`, default 500 ms)
//! sees the lease, confirms it with a fenced renewal and starts: under a second, where Java KCL waits 20–40 s (#474,
//! #845). The trade-off is the poll's read cost: 7200 queries per worker-hour at 500 ms (a key-only GSI query in
//! DynamoDB, 0.5 RRU each), halved at 1 s; polling can be disabled in per-lease mode, and handed leases are then
//! found at the next take cycle.
//!
//! # What the store's reads must give
//! Reads are treated as hints: every transition that starts processing is confirmed by a fenced write (a successful
//! conditional write at counter `c` proves the lease is at version `c`, and each version is unique), and acting on an
//! old version only ever makes this worker stop earlier or wait longer. So eventually consistent reads, such as a
//! DynamoDB GSI query for `list_leases_by_owner`, are fine.

mod assignment;
mod config;
mod events;
mod fence;
mod fleet;
mod handoff;
mod io;
mod metrics;
mod ops;
mod renewer;
mod rng;
mod shutdown;
mod slots;
mod state;
mod taker;
mod unreadable;
mod view;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument;

pub use self::config::{
    DEFAULT_ASSIGNMENT_POLL_INTERVAL, DEFAULT_EPSILON, DEFAULT_HANDOFF_TIMEOUT, DEFAULT_LEASE_DURATION,
    LeaseCoordinatorConfig, LeaseCoordinatorConfigBuilder, RenewalMode,
};
pub use self::events::{LeaseEvent, LeaseGeneration, LostReason};
pub use self::metrics::{LEASES_HELD, LEASES_LOST, LEASES_STOLEN, LEASES_TAKEN, RENEWAL_FAILURES};
use self::state::Shared;
use crate::ExtendedSequenceNumber;
use crate::error::KclError;
use crate::lease::{Lease, LeaseStore};

/// Starts lease coordinators.
#[derive(Debug)]
pub struct LeaseCoordinator;

impl LeaseCoordinator {
    /// Starts coordinating leases in `store` as `worker_id`, which must be unique in the fleet (a restarted process
    /// with the same id adopts the leases its predecessor left). Call inside a Tokio runtime.
    ///
    /// Returns the handle and the event channel. The channel is unbounded on purpose: self-fencing must never wait
    /// for the application to read events, and at most a few events per lease are ever outstanding.
    pub fn start(
        store: Arc<dyn LeaseStore>,
        worker_id: impl Into<String>,
        config: LeaseCoordinatorConfig,
    ) -> Result<(LeaseCoordinatorHandle, mpsc::UnboundedReceiver<LeaseEvent>), KclError> {
        let worker_id = worker_id.into();
        if worker_id.is_empty() {
            return Err(KclError::InvalidConfig("worker_id must not be empty".to_owned()));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            KclError::InvalidConfig("LeaseCoordinator::start must be called inside a Tokio runtime".to_owned())
        })?;
        let (events, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(store, worker_id, config, events));
        shared.state().last_table_read = Some(Instant::now());
        let span = tracing::info_span!("lease_coordinator", worker_id = %shared.worker_id);
        let mut tasks = vec![
            runtime.spawn(renewer::run(shared.clone()).instrument(span.clone())).abort_handle(),
            runtime.spawn(fence::run(shared.clone()).instrument(span.clone())).abort_handle(),
            runtime.spawn(take_loop(shared.clone()).instrument(span.clone())).abort_handle(),
        ];
        if let Some(interval) = shared.config.assignment_poll_interval() {
            tasks.push(runtime.spawn(poll_loop(shared.clone(), interval).instrument(span)).abort_handle());
        }
        let inner = Inner { shared, tasks: Mutex::new(tasks) };
        Ok((LeaseCoordinatorHandle { inner: Arc::new(inner) }, receiver))
    }
}

async fn take_loop(shared: Arc<Shared>) {
    let config = &shared.config;
    if config.renewal_mode() == RenewalMode::WorkerHeartbeat {
        // Take nothing before the first heartbeat: without it no lease would be valid for a moment.
        while shared.state().heartbeat.renewed_at.is_none() {
            tokio::time::sleep(config.renewal_interval().min(std::time::Duration::from_millis(50))).await;
        }
        // Then give workers started at the same time (a deployment) a moment to register their heartbeats, so the
        // first take already aims at an even share instead of one worker taking everything.
        tokio::time::sleep(config.renewal_interval().min(std::time::Duration::from_secs(1))).await;
    }
    loop {
        // A regular tick one take interval after this cycle, or earlier when a lease we watch would expire before
        // that: a survivor then takes a dead worker's lease `lease_duration` after first seeing its last renewal,
        // not up to a take interval later. Each expiry instant is strictly in the future and is consumed by the
        // cycle it causes (that cycle's listing either finds the lease expired, or sees it change and dates it
        // afresh), so this never spins.
        let expiry = taker::take_cycle(&shared).await;
        let regular = Instant::now() + config.take_interval();
        let wake = expiry.map_or(regular, |at| at.min(regular));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = shared.taker_wakeup.notified() => {}
        }
    }
}

async fn poll_loop(shared: Arc<Shared>, interval: std::time::Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let me = shared.worker_id.clone();
    loop {
        ticks.tick().await;
        let _cycle = shared.cycle.lock().await;
        let started = Instant::now();
        let owned = io::read(&shared, "list_leases_by_owner", shared.config.list_timeout(), || {
            shared.store.list_leases_by_owner(&me)
        })
        .await;
        match owned {
            Ok(owned) => {
                {
                    let mut state = shared.state();
                    state.last_table_read = Some(state.last_table_read.map_or(started, |t| t.max(started)));
                }
                handoff::reconcile(&shared, owned).await;
            }
            Err(error) => tracing::debug!(%error, "assignment poll failed"),
        }
        handoff::maintain(&shared).await;
    }
}

struct Inner {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Inner {
    fn stop(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        for task in tasks {
            task.abort();
        }
        let mut state = self.shared.state();
        state.stopping = true;
        state.stopped = true;
        self.shared.metrics.held.set(0.0);
        drop(state);
        self.shared.close_events();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Controls a running coordinator. Cheap to clone; when the last clone is dropped the coordinator stops like a
/// crash (no release, no events) — call [`shutdown`](Self::shutdown) for a graceful stop.
#[derive(Clone)]
pub struct LeaseCoordinatorHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LeaseCoordinatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseCoordinatorHandle")
            .field("worker_id", &self.inner.shared.worker_id)
            .finish_non_exhaustive()
    }
}

impl LeaseCoordinatorHandle {
    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Runs a take cycle now instead of at the next take interval: call it after creating leases (a shard sync
    /// that found new shards, child leases at a shard end), so they get an owner at once rather than up to a take
    /// interval later.
    pub fn wake_taker(&self) {
        self.shared().taker_wakeup.notify_one();
    }

    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.shared().worker_id
    }

    /// The configuration in use.
    pub fn config(&self) -> &LeaseCoordinatorConfig {
        &self.shared().config
    }

    /// The leases the pipeline may be processing now (acquired and not lost), as last written or read.
    pub fn held_leases(&self) -> Vec<Lease> {
        let state = self.shared().state();
        let mut held: Vec<Lease> =
            state.slots.values().filter(|slot| slot.phase.is_processed()).map(|slot| slot.lease.clone()).collect();
        held.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
        held
    }

    /// Whether the pipeline may be processing `lease_key` now.
    pub fn is_held(&self, lease_key: &str) -> bool {
        self.shared().state().slots.get(lease_key).is_some_and(|slot| slot.phase.is_processed())
    }

    /// Records that everything up to `checkpoint` was processed: a write fenced by this worker's ownership and the
    /// lease's current counter, serialised with renewals of the same lease.
    ///
    /// After [`LeaseEvent::HandoffRequested`] from another worker's steal, the value is kept and written by
    /// [`handoff_done`](Self::handoff_done) as the final checkpoint (writing it earlier would let the new owner
    /// start while this processor may still be mid-batch). Fails with [`KclError::LeaseLost`] when the lease is not
    /// held (lost, handed off, or never acquired), including when the store rejects the fence.
    ///
    /// Any acquisition of the lease by this worker may write: prefer [`checkpoint_in`](Self::checkpoint_in), which
    /// refuses a processor whose acquisition ended, unless one processor per lease runs at a time.
    pub async fn checkpoint(&self, lease_key: &str, checkpoint: &ExtendedSequenceNumber) -> Result<(), KclError> {
        ops::checkpoint(self.shared(), lease_key, None, checkpoint).await
    }

    /// [`checkpoint`](Self::checkpoint) on behalf of the processor of one acquisition (from
    /// [`LeaseEvent::Acquired`]): refused with [`KclError::LeaseLost`] once that acquisition has ended, even while
    /// this worker holds the lease again.
    pub async fn checkpoint_in(
        &self,
        acquisition: LeaseGeneration,
        lease_key: &str,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<(), KclError> {
        ops::checkpoint(self.shared(), lease_key, Some(acquisition), checkpoint).await
    }

    /// Records a prepared (two-phase) checkpoint with optional application state. Allowed during an outgoing
    /// handoff too (it does not end it). Any acquisition may write, as with [`checkpoint`](Self::checkpoint).
    pub async fn prepare_checkpoint(
        &self,
        lease_key: &str,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<(), KclError> {
        ops::prepare_checkpoint(self.shared(), lease_key, None, pending, state).await
    }

    /// [`prepare_checkpoint`](Self::prepare_checkpoint) on behalf of one acquisition, refused once it has ended.
    pub async fn prepare_checkpoint_in(
        &self,
        acquisition: LeaseGeneration,
        lease_key: &str,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<(), KclError> {
        ops::prepare_checkpoint(self.shared(), lease_key, Some(acquisition), pending, state).await
    }

    /// Records a finished shard's children (at shard end). Requires ownership, so not during an outgoing handoff.
    /// Any acquisition may write, as with [`checkpoint`](Self::checkpoint).
    pub async fn update_child_shards(&self, lease_key: &str, child_shard_ids: &[String]) -> Result<(), KclError> {
        ops::update_child_shards(self.shared(), lease_key, None, child_shard_ids).await
    }

    /// [`update_child_shards`](Self::update_child_shards) on behalf of one acquisition, refused once it has ended.
    pub async fn update_child_shards_in(
        &self,
        acquisition: LeaseGeneration,
        lease_key: &str,
        child_shard_ids: &[String],
    ) -> Result<(), KclError> {
        ops::update_child_shards(self.shared(), lease_key, Some(acquisition), child_shard_ids).await
    }

    /// The processor of `lease_key` has stopped after [`LeaseEvent::HandoffRequested`]: write the final checkpoint
    /// (the last one passed to [`checkpoint`](Self::checkpoint) since the request) and hand the lease over. Emits
    /// `Lost { HandedOff }`. A no-op for a lease with no handoff in progress.
    pub async fn handoff_done(&self, lease_key: &str) -> Result<(), KclError> {
        ops::ensure_running(self.shared())?;
        handoff::handoff_done(self.shared(), lease_key).await
    }

    /// Gives the lease up now: finishes a handoff in progress, or releases the lease (it becomes unowned and any
    /// worker may take it at once, so stop processing first). Emits `Lost`.
    pub async fn release(&self, lease_key: &str) -> Result<(), KclError> {
        ops::release(self.shared(), lease_key).await
    }

    /// Stops gracefully: no new leases; `HandoffRequested` for every held lease; each is handed directly to the
    /// least-loaded live worker as its `handoff_done` arrives. Waits up to `handoff_timeout` for the pipeline; leases
    /// still held then are declared lost and released a safety margin later. In heartbeat mode the heartbeat is
    /// deleted last. The event channel closes when this returns.
    pub async fn shutdown(&self) -> Result<(), KclError> {
        let shared = self.shared();
        {
            let state = shared.state();
            if state.stopping {
                return Err(KclError::Shutdown);
            }
        }
        shutdown::drain(shared).await;
        self.inner.stop();
        if shared.config.renewal_mode() == RenewalMode::WorkerHeartbeat {
            let me = shared.worker_id.as_str();
            let deleted = io::read(shared, "delete_heartbeat", shared.config.call_timeout(), || {
                shared.store.delete_heartbeat(me)
            })
            .await;
            if let Err(error) = deleted {
                tracing::warn!(%error, "could not delete the heartbeat; it will go stale");
            }
        }
        Ok(())
    }

    /// Stops at once like a crash: no hand-over, no release, no more events. Other workers take the leases once
    /// they expire. For tests and emergencies.
    pub fn abort(&self) {
        self.inner.stop();
    }
}
