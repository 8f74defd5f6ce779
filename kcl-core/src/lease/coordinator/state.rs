//! The coordinator's shared state: one slot per lease this worker is involved with, the heartbeat, the fleet view,
//! and the single place where slots change phase and events are emitted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::assignment::{self, LeaseAssignment};
use super::config::{LeaseCoordinatorConfig, RenewalMode};
use super::events::{LeaseEvent, LeaseGeneration, LostReason};
use super::metrics::CoordinatorMetrics;
use super::rng::Rng;
use super::view::FleetView;
use crate::ExtendedSequenceNumber;
use crate::lease::{Lease, LeaseFence, LeaseStore};

/// Where a lease stands for this worker.
#[derive(Clone, Debug)]
pub(crate) enum Phase {
    /// Owned and processed.
    Active,
    /// Owned and processed, but this worker is stopping: it asked the processor for a final checkpoint and hands the
    /// lease to another worker on `handoff_done`.
    Draining,
    /// Stolen through `assign_for_handoff`: owned in the store, but the previous owner still holds the checkpoint
    /// right. Not processed until it clears it (or the handoff times out).
    Incoming {
        /// The previous owner.
        from: String,
        /// When our `assign_for_handoff` completed (per-lease mode forcibly takes `min(lease_duration,
        /// handoff_timeout)` later).
        since: Instant,
    },
    /// Another worker stole it; this worker may still write the final checkpoint. Checkpoints are deferred until
    /// `handoff_done` so that the new owner never starts before this worker's processor stopped.
    Outgoing {
        /// The new owner.
        to: String,
        /// When this worker noticed (it gives up `handoff_timeout` later at the latest).
        noticed: Instant,
        /// The newest checkpoint the processor reported since the handoff was requested.
        deferred: Option<ExtendedSequenceNumber>,
    },
    /// An outgoing handoff that timed out: `Lost` was emitted; after the safety margin this worker clears the
    /// checkpoint right (writing the deferred checkpoint, if any) so the new owner can start.
    Abandoned {
        /// The new owner.
        to: String,
        /// When the clearing write may happen.
        clear_at: Instant,
        /// The deferred checkpoint to write.
        deferred: Option<ExtendedSequenceNumber>,
    },
}

impl Phase {
    /// Whether the pipeline may be processing this lease.
    pub(crate) fn is_processed(&self) -> bool {
        matches!(self, Phase::Active | Phase::Draining | Phase::Outgoing { .. })
    }

    /// Whether this worker owns it in the store (and so renews it in per-lease mode).
    pub(crate) fn is_owned(&self) -> bool {
        matches!(self, Phase::Active | Phase::Draining | Phase::Incoming { .. })
    }
}

/// One lease this worker is involved with.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The lease as this worker last wrote or read it; `lease.lease_counter` is the cached fencing counter.
    pub(crate) lease: Lease,
    pub(crate) phase: Phase,
    /// The START of this worker's last successful write to the lease (take, renew, checkpoint, handoff).
    pub(crate) written_at: Instant,
    /// Serialises this worker's writes to the lease (renewals, checkpoints, handoff steps), so none of them uses a
    /// counter another one is about to change.
    pub(crate) io: Arc<tokio::sync::Mutex<()>>,
    /// Distinguishes this slot from a later one for the same key (a lease lost and acquired again).
    pub(crate) generation: u64,
}

impl Slot {
    pub(crate) fn fence(&self, worker_id: &str) -> LeaseFence {
        LeaseFence {
            lease_key: self.lease.lease_key.clone(),
            owner: worker_id.to_owned(),
            counter: self.lease.lease_counter,
        }
    }
}

/// The worker heartbeat (heartbeat mode).
#[derive(Debug, Default)]
pub(crate) struct HeartbeatState {
    pub(crate) counter: Option<u64>,
    /// The START of the last successful heartbeat renewal.
    pub(crate) renewed_at: Option<Instant>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) slots: HashMap<String, Slot>,
    pub(crate) heartbeat: HeartbeatState,
    pub(crate) view: FleetView,
    /// The last full listing of the lease table (to choose whom to hand leases to at shutdown).
    pub(crate) listing: Vec<Lease>,
    /// When `listing` (and the view with it) was taken: the start and the end of its read.
    pub(crate) listed: Option<(Instant, Instant)>,
    /// When the graceful shutdown began.
    pub(crate) stopping_since: Option<Instant>,
    /// Leases handed to each worker during this worker's shutdown, so they are spread out.
    pub(crate) handed: HashMap<String, usize>,
    /// The start of the last successful read of the lease table (heartbeat mode renews only while reads work).
    pub(crate) last_table_read: Option<Instant>,
    pub(crate) stopping: bool,
    pub(crate) stopped: bool,
    next_generation: u64,
}

/// Everything the coordinator's tasks and handles share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) worker_id: String,
    pub(crate) config: LeaseCoordinatorConfig,
    /// The balancing policy: what to take and steal, whom to hand leases to.
    pub(crate) assignment: Box<dyn LeaseAssignment>,
    state: Mutex<State>,
    /// `None` once the coordinator stopped, which closes the application's event channel.
    events: Mutex<Option<mpsc::UnboundedSender<LeaseEvent>>>,
    pub(crate) metrics: CoordinatorMetrics,
    /// Wakes the fencing clock when a deadline may have moved earlier (a new slot).
    pub(crate) clock_wakeup: Notify,
    /// Wakes the taker early (an incoming handoff completed, so the next steal may start).
    pub(crate) taker_wakeup: Notify,
    /// Signals every slot removal (shutdown waits on it).
    pub(crate) slot_removed: Notify,
    /// Serialises the cycles that create slots (take, poll, shutdown hand-over).
    pub(crate) cycle: tokio::sync::Mutex<()>,
    /// Serialises the listings a stopping worker's hand-overs make when the last one is too old to judge by, so
    /// many leases handed over at once cost one listing, not one each.
    pub(crate) relist: tokio::sync::Mutex<()>,
    pub(crate) rng: Mutex<Rng>,
    /// The unreadable items of the last listing (reported once per change).
    pub(crate) unreadable: super::unreadable::UnreadableReport,
}

impl Shared {
    pub(crate) fn new(
        store: Arc<dyn LeaseStore>,
        worker_id: String,
        config: LeaseCoordinatorConfig,
        events: mpsc::UnboundedSender<LeaseEvent>,
    ) -> Self {
        let metrics = CoordinatorMetrics::new(&worker_id);
        let rng = Mutex::new(Rng::seeded_for(&worker_id));
        let assignment = assignment::for_config(&config);
        Self {
            store,
            worker_id,
            assignment,
            config,
            state: Mutex::new(State::default()),
            events: Mutex::new(Some(events)),
            metrics,
            clock_wakeup: Notify::new(),
            taker_wakeup: Notify::new(),
            slot_removed: Notify::new(),
            cycle: tokio::sync::Mutex::new(()),
            relist: tokio::sync::Mutex::new(()),
            rng,
            unreadable: Default::default(),
        }
    }

    /// Locks the state. Never held across an `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere; every transition below leaves the maps consistent before it can
        // panic, so continuing is safe.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn rng(&self) -> MutexGuard<'_, Rng> {
        self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Heartbeat mode: when every lease stops being valid unless the heartbeat is renewed (`None` before the first
    /// renewal).
    pub(crate) fn heartbeat_deadline(&self, state: &State) -> Option<Instant> {
        let renewed_at = state.heartbeat.renewed_at?;
        let config = &self.config;
        Some((renewed_at + config.lease_duration()).checked_sub(config.safety_margin()).unwrap_or(renewed_at))
    }

    /// Whether a lease may start being processed now. Heartbeat mode: only while the heartbeat keeps it valid for
    /// at least a safety margin. A worker whose heartbeat lapsed (renewals failing under faults) would otherwise
    /// re-adopt its leases only for the fencing clock to drop them at once: `Acquired` then `Lost`, records delivered
    /// again from the checkpoint, in a loop until a renewal succeeds.
    pub(crate) fn may_start_processing(&self, state: &State, now: Instant) -> bool {
        match self.config.renewal_mode() {
            RenewalMode::PerLease => true,
            RenewalMode::WorkerHeartbeat => {
                self.heartbeat_deadline(state).is_some_and(|deadline| deadline > now + self.config.safety_margin())
            }
        }
    }

    /// When this worker must stop processing the lease in `slot`, or `None` when it is not processed. See the
    /// module documentation of `coordinator` for why each bound is safe.
    pub(crate) fn deadline(&self, state: &State, slot: &Slot) -> Option<Instant> {
        let config = &self.config;
        let mode_deadline = match config.renewal_mode() {
            // Others wait lease_duration from when they SAW our last counter change, which is after our write began;
            // a new owner that stole it waits min(lease_duration, handoff_timeout) from its steal, which is after too.
            RenewalMode::PerLease => slot.written_at + config.per_lease_validity(),
            // Others wait lease_duration from when they saw our heartbeat change, which is after its write began.
            // Before the first heartbeat there is no validity at all.
            RenewalMode::WorkerHeartbeat => match state.heartbeat.renewed_at {
                Some(renewed_at) => renewed_at + config.lease_duration(),
                None => slot.written_at,
            },
        };
        let mode_deadline = mode_deadline.checked_sub(config.safety_margin()).unwrap_or(slot.written_at);
        match &slot.phase {
            Phase::Active | Phase::Draining => Some(mode_deadline),
            // Not processed yet (no `Acquired`), so there is nothing to fence. A deadline here would also drop the
            // slot a safety margin before `handoff::maintain` forces the take of a lease stolen from an owner that
            // has stopped, and the assignment poll would re-adopt it with a fresh start: that shard stalled forever.
            Phase::Incoming { .. } => None,
            Phase::Outgoing { noticed, .. } => Some(mode_deadline.min(*noticed + config.handoff_timeout())),
            Phase::Abandoned { .. } => None,
        }
    }

    pub(crate) fn emit(&self, event: LeaseEvent) {
        let events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(events) = events.as_ref() {
            // The receiver may be gone (the application stopped listening); the state stays authoritative.
            let _ = events.send(event);
        }
    }

    /// Closes the event channel (after the last event of a stopped coordinator).
    pub(crate) fn close_events(&self) {
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    }

    pub(crate) fn update_held_gauge(&self, state: &State) {
        let held = state.slots.values().filter(|slot| slot.phase.is_processed()).count();
        self.metrics.held.set(held as f64);
    }

    /// Inserts a new slot. Emits `Acquired` when the phase is processed. Returns its generation.
    pub(crate) fn insert_slot(&self, state: &mut State, lease: Lease, phase: Phase, written_at: Instant) -> u64 {
        state.next_generation += 1;
        let generation = state.next_generation;
        let key = lease.lease_key.clone();
        let acquired = phase.is_processed().then(|| lease.clone());
        tracing::debug!(lease_key = %key, phase = ?phase, counter = lease.lease_counter, "lease slot added");
        state.slots.insert(key, Slot { lease, phase, written_at, io: Arc::default(), generation });
        if let Some(lease) = acquired {
            self.emit(LeaseEvent::Acquired { lease, generation: LeaseGeneration(generation) });
        }
        self.update_held_gauge(state);
        self.clock_wakeup.notify_one();
        generation
    }

    /// Removes a slot; emits `Lost` when the pipeline may have been processing it.
    pub(crate) fn remove_slot(&self, state: &mut State, key: &str, reason: LostReason) -> Option<Slot> {
        let slot = state.slots.remove(key)?;
        if slot.phase.is_processed() {
            self.lost(key, reason);
        } else {
            tracing::debug!(lease_key = %key, ?reason, phase = ?slot.phase, "lease slot dropped");
        }
        self.update_held_gauge(state);
        self.slot_removed.notify_waiters();
        Some(slot)
    }

    /// Emits `Lost` (and counts involuntary losses).
    pub(crate) fn lost(&self, key: &str, reason: LostReason) {
        if reason.is_involuntary() {
            self.metrics.lost.increment(1);
        }
        tracing::debug!(lease_key = %key, ?reason, "lease lost");
        self.emit(LeaseEvent::Lost { lease_key: key.to_owned(), reason });
    }

    /// The slot for `key` if it is still the incarnation `generation`.
    pub(crate) fn slot_mut<'a>(state: &'a mut State, key: &str, generation: u64) -> Option<&'a mut Slot> {
        state.slots.get_mut(key).filter(|slot| slot.generation == generation)
    }
}
