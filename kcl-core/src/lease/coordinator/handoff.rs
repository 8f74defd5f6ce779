//! Graceful handoff, both directions, and reconciling this worker's slots with what the store says it owns.
//!
//! * Outgoing (another worker stole a lease from us): the processor gets `HandoffRequested`, its checkpoints are
//!   deferred, and [`finish_outgoing`] writes the final one (or, with nothing to write, a `take_lease` on the new
//!   owner's behalf) which clears `checkpoint_owner`.
//! * Incoming (we stole it): we wait until `checkpoint_owner` is cleared, noticed by a failed renewal or a poll,
//!   then confirm and start; or [`force_take`] after the handoff window.
//! * Handed to us by a stopping worker: noticed by a poll and adopted with a fenced renewal.
//! * Handed by us, when stopping ([`hand_over`]): one `take_lease` on the behalf of the worker the assignment policy picks (the least-loaded live one), or a
//!   release; a lease that reaches a stopping worker is passed on the same way ([`pass_on`]).

use std::collections::{HashMap, HashSet};

use tokio::time::Instant;

use super::assignment::{Fleet, Local};
use super::config::RenewalMode;
use super::events::{LeaseEvent, LeaseGeneration, LostReason};
use super::fleet;
use super::io;
use super::slots::{self, Next, Reading, lock_slot};
use super::state::{Phase, Shared, State};
use crate::error::KclError;
use crate::lease::{Lease, LeaseFence};

/// Writes the final checkpoint of an outgoing (or abandoned) handoff, or clears the checkpoint right, and drops the
/// slot; `Lost { HandedOff }` is emitted for an outgoing one (an abandoned one announced `Lost` already).
/// Call with the slot's lock held.
pub(crate) async fn finish_outgoing(shared: &Shared, key: &str, generation: u64) -> Result<(), KclError> {
    let me = shared.worker_id.as_str();
    for _ in 0..4 {
        let (fence, to, deferred) = {
            let mut state = shared.state();
            let Some(slot) = Shared::slot_mut(&mut state, key, generation) else { return Ok(()) };
            let (to, deferred) = match &slot.phase {
                Phase::Outgoing { to, deferred, .. } | Phase::Abandoned { to, deferred, .. } => {
                    (to.clone(), deferred.clone())
                }
                _ => return Ok(()),
            };
            (slot.fence(me), to, deferred)
        };
        let result = match &deferred {
            Some(checkpoint) => io::write(
                shared,
                key,
                "update_checkpoint",
                None,
                || shared.store.update_checkpoint(&fence, checkpoint),
                |l| cleared_by_us(l, &to, fence.counter).then_some(l.lease_counter),
            )
            .await
            .map(|_| ()),
            // Nothing to checkpoint: a take on the new owner's behalf clears checkpoint_owner without touching the
            // checkpoint or a prepared checkpoint.
            None => io::write(
                shared,
                key,
                "take_lease",
                None,
                || shared.store.take_lease(key, fence.counter, &to),
                |l| cleared_by_us(l, &to, fence.counter).then(|| l.clone()),
            )
            .await
            .map(|_| ()),
        };
        match result {
            Ok(()) => {
                drop_slot(shared, key, generation, LostReason::HandedOff);
                tracing::debug!(lease_key = %key, new_owner = %to, "handoff complete");
                return Ok(());
            }
            Err(error) if error.is_condition_failed() => match io::get_lease(shared, key).await {
                // The new owner's renewals moved the counter; we still hold the right: retry with it.
                Ok(Some(lease)) if lease.checkpoint_owner.as_deref() == Some(me) => {
                    let mut state = shared.state();
                    if let Some(slot) = Shared::slot_mut(&mut state, key, generation) {
                        slot.lease = lease;
                    }
                }
                _ => {
                    // The new owner took it by force: our final checkpoint (if any) did not land.
                    drop_slot(shared, key, generation, LostReason::HandoffTimedOut);
                    return match deferred {
                        Some(_) => Err(KclError::LeaseLost { lease_key: key.to_owned() }),
                        None => Ok(()),
                    };
                }
            },
            Err(error) => return Err(error.into()),
        }
    }
    Err(KclError::LeaseLost { lease_key: key.to_owned() })
}

/// Whether `lease` shows our clearing write fenced at `counter`.
fn cleared_by_us(lease: &Lease, to: &str, counter: u64) -> bool {
    lease.lease_owner.as_deref() == Some(to) && lease.checkpoint_owner.is_none() && lease.lease_counter == counter + 1
}

/// Removes the slot if it is still this incarnation (`Lost` only if the pipeline may be processing it).
pub(crate) fn drop_slot(shared: &Shared, key: &str, generation: u64, reason: LostReason) {
    let mut state = shared.state();
    if Shared::slot_mut(&mut state, key, generation).is_some() {
        shared.remove_slot(&mut state, key, reason);
    }
}

/// Takes an incoming lease whose previous owner did not finish the handoff in time. Call with the slot's lock held.
async fn force_take(shared: &Shared, key: &str, generation: u64) {
    if !shared.may_start_processing(&shared.state(), Instant::now()) {
        return;
    }
    let me = shared.worker_id.as_str();
    for _ in 0..2 {
        let counter = {
            let mut state = shared.state();
            match Shared::slot_mut(&mut state, key, generation) {
                Some(slot) if matches!(slot.phase, Phase::Incoming { .. }) => slot.lease.lease_counter,
                _ => return,
            }
        };
        let taken = io::write(
            shared,
            key,
            "take_lease",
            None,
            || shared.store.take_lease(key, counter, me),
            |l| (l.lease_owner.as_deref() == Some(me) && l.lease_counter == counter + 1).then(|| l.clone()),
        )
        .await;
        match taken {
            Ok(written) => {
                let mut state = shared.state();
                if let Some(slot) = Shared::slot_mut(&mut state, key, generation) {
                    tracing::debug!(lease_key = %key, "handoff timed out; took the lease by force");
                    slot.lease = written.value.clone();
                    slot.written_at = written.started;
                    slot.phase = Phase::Active;
                    shared.emit(LeaseEvent::Acquired { lease: written.value, generation: LeaseGeneration(generation) });
                    shared.update_held_gauge(&state);
                    shared.taker_wakeup.notify_one();
                }
                return;
            }
            Err(error) if error.is_condition_failed() => match slots::refresh(shared, key, generation).await {
                Next::Retry => continue,
                Next::ConfirmIncoming(lease) => return confirm_incoming(shared, key, generation, lease).await,
                Next::Done => return,
            },
            Err(error) => {
                tracing::debug!(%error, lease_key = %key, "forced take failed; retrying next cycle");
                return;
            }
        }
    }
}

/// A stopping worker received a lease (a completed incoming handoff or a lease handed to it): pass it to another
/// worker, or release it. Nobody processed it here. Call with the slot's lock held.
pub(crate) async fn pass_on(shared: &Shared, key: &str, generation: u64) {
    if let Err(error) = hand_over(shared, key, generation).await {
        tracing::debug!(%error, lease_key = %key, "could not pass the lease on; it will expire");
    }
}

/// Brings the slots in line with the leases the store says this worker owns (`owned`, from a poll by owner or a
/// full listing). Store reads here are hints; every transition that starts processing is confirmed by a fenced
/// write, and every other one is the safe direction.
pub(crate) async fn reconcile(shared: &Shared, owned: Vec<Lease>) {
    let owned: HashMap<String, Lease> = owned.into_iter().map(|lease| (lease.lease_key.clone(), lease)).collect();
    let snapshot: Vec<(String, Phase)> = {
        let state = shared.state();
        state.slots.iter().map(|(key, slot)| (key.clone(), slot.phase.clone())).collect()
    };
    for (key, phase) in &snapshot {
        let hint = owned.get(key);
        let check = match phase {
            Phase::Active | Phase::Draining => hint.is_none(),
            // A hint without checkpoint owner may be an old version (we owned it before): the confirming fenced write
            // settles it, at the cost of one failed write in that rare case.
            Phase::Incoming { .. } => hint.is_none_or(|h| h.checkpoint_owner.is_none()),
            Phase::Outgoing { .. } | Phase::Abandoned { .. } => false,
        };
        if !check {
            continue;
        }
        let Some(lock) = lock_slot(shared, key).await else { continue };
        let next = match hint {
            Some(h) => slots::apply(shared, key, lock.generation, slots::classify(&shared.worker_id, Some(h.clone()))),
            None => slots::refresh(shared, key, lock.generation).await,
        };
        if let Next::ConfirmIncoming(lease) = next {
            confirm_incoming(shared, key, lock.generation, lease).await;
        }
    }
    for (key, lease) in owned {
        if snapshot.iter().any(|(k, _)| *k == key) {
            continue;
        }
        adopt(shared, lease).await;
    }
}

/// Takes up a lease the store says we own but we hold no slot for: handed to us by a stopping worker, or ours from
/// before a restart or a self-fence.
async fn adopt(shared: &Shared, hint: Lease) {
    let key = hint.lease_key.clone();
    let now = Instant::now();
    let stopping = shared.state().stopping;
    match slots::classify(&shared.worker_id, Some(hint.clone())) {
        Reading::OursInHandoff(lease) => {
            let from = lease.checkpoint_owner.clone().unwrap_or_default();
            let mut state = shared.state();
            if !state.slots.contains_key(&key) {
                shared.insert_slot(&mut state, lease, Phase::Incoming { from, since: now }, now);
            }
        }
        Reading::Ours(lease) => {
            // Insert as incoming (not processed), then confirm with a fenced renewal like a completed handoff.
            let generation = {
                let mut state = shared.state();
                if state.slots.contains_key(&key) {
                    return;
                }
                let from = lease.lease_owner.clone().unwrap_or_default();
                shared.insert_slot(&mut state, lease.clone(), Phase::Incoming { from, since: now }, now)
            };
            let Some(lock) = lock_slot(shared, &key).await else { return };
            if lock.generation == generation {
                tracing::debug!(lease_key = %key, stopping, "adopting a lease owned by this worker");
                confirm_incoming(shared, &key, generation, lease).await;
            }
        }
        _ => {}
    }
}

/// Periodic duties: clear the checkpoint right of abandoned outgoing handoffs, and take incoming ones whose old owner
/// did not finish in time.
pub(crate) async fn maintain(shared: &Shared) {
    let now = Instant::now();
    let config = &shared.config;
    let due: Vec<String> = {
        let state = shared.state();
        state
            .slots
            .iter()
            .filter(|(key, slot)| match &slot.phase {
                Phase::Abandoned { clear_at, .. } => *clear_at <= now,
                Phase::Incoming { from, since } => match config.renewal_mode() {
                    // The old owner's own deadline is at most min(lease_duration, handoff_timeout) after its last
                    // renewal, which came before our steal.
                    RenewalMode::PerLease => now.duration_since(*since) >= config.per_lease_validity(),
                    // The old owner enforces the handoff timeout itself while alive; take only once it is dead.
                    RenewalMode::WorkerHeartbeat => {
                        state.view.worker_dead(from, now, config.lease_duration())
                            && state.view.lease_stale(key, now, config.lease_duration())
                    }
                },
                _ => false,
            })
            .map(|(key, _)| key.clone())
            .collect()
    };
    for key in due {
        let Some(lock) = lock_slot(shared, &key).await else { continue };
        let abandoned = {
            let state = shared.state();
            state.slots.get(&key).map(|slot| matches!(slot.phase, Phase::Abandoned { .. }))
        };
        match abandoned {
            Some(true) => {
                if let Err(error) = finish_outgoing(shared, &key, lock.generation).await {
                    tracing::debug!(%error, lease_key = %key, "could not clear an abandoned handoff yet");
                }
            }
            Some(false) => {
                // Heartbeat mode: the old owner must be fenced first, exactly as for an expired lease.
                let from = match shared.state().slots.get(&key).map(|slot| slot.phase.clone()) {
                    Some(Phase::Incoming { from, .. }) => from,
                    _ => continue,
                };
                let heartbeat_mode = config.renewal_mode() == RenewalMode::WorkerHeartbeat;
                if heartbeat_mode && !fleet::fence_heartbeat(shared, &from).await {
                    continue;
                }
                force_take(shared, &key, lock.generation).await;
            }
            None => {}
        }
    }
}

/// Ends the lease's outgoing handoff now if it is in one (used by `handoff_done` and `release`).
pub(crate) async fn handoff_done(shared: &Shared, key: &str) -> Result<(), KclError> {
    if shared.state().stopping {
        // `hand_over` picks the receiver from the last listing. The drain lists the table too, but a processor's
        // `handoff_done` can arrive before that listing does. Listed before the slot is locked: renewals of the slot
        // must not wait.
        fleet::ensure_listing_since_stop(shared).await;
    }
    let Some(lock) = lock_slot(shared, key).await else {
        return Err(KclError::LeaseLost { lease_key: key.to_owned() });
    };
    let phase = shared.state().slots.get(key).map(|slot| slot.phase.clone());
    match phase {
        Some(Phase::Outgoing { .. }) => finish_outgoing(shared, key, lock.generation).await,
        Some(Phase::Draining) => hand_over(shared, key, lock.generation).await,
        Some(Phase::Active) => {
            tracing::debug!(lease_key = %key, "handoff_done without a handoff in progress; nothing to do");
            Ok(())
        }
        _ => Err(KclError::LeaseLost { lease_key: key.to_owned() }),
    }
}

/// Completes an incoming handoff: a renewal fenced at the read's counter proves the lease is still at that version
/// (owned by us, checkpoint right cleared), then the slot becomes active and `Acquired` is emitted. A stopping
/// worker passes the lease on instead. Call with the slot's lock held.
pub(crate) async fn confirm_incoming(shared: &Shared, key: &str, generation: u64, lease: Lease) {
    if !shared.may_start_processing(&shared.state(), Instant::now()) {
        // Stays incoming (not processed); the next poll or renewal confirms it once the heartbeat is renewed.
        tracing::debug!(lease_key = %key, "heartbeat lapsed; starting the lease once it is renewed");
        return;
    }
    let fence = LeaseFence { lease_key: key.to_owned(), owner: shared.worker_id.clone(), counter: lease.lease_counter };
    let me = shared.worker_id.as_str();
    let written = io::write(
        shared,
        key,
        "renew_lease",
        None,
        || shared.store.renew_lease(&fence),
        |l| slots::renewed_by(l, me, fence.counter),
    )
    .await;
    match written {
        Ok(written) => {
            let stopping = {
                let mut state = shared.state();
                let stopping = state.stopping;
                if let Some(slot) = Shared::slot_mut(&mut state, key, generation) {
                    let mut lease = lease;
                    lease.lease_counter = written.value;
                    slot.lease = lease.clone();
                    slot.written_at = written.started;
                    if !stopping {
                        slot.phase = Phase::Active;
                        tracing::debug!(lease_key = %key, "incoming handoff complete");
                        shared.emit(LeaseEvent::Acquired { lease, generation: LeaseGeneration(generation) });
                        shared.update_held_gauge(&state);
                        shared.taker_wakeup.notify_one();
                    }
                }
                stopping
            };
            if stopping {
                pass_on(shared, key, generation).await;
            }
        }
        Err(error) if error.is_condition_failed() => {
            if let Next::ConfirmIncoming(_) = slots::refresh(shared, key, generation).await {
                tracing::debug!(lease_key = %key, "incoming handoff changed again; confirming next cycle");
            }
        }
        Err(error) => tracing::debug!(%error, lease_key = %key, "could not confirm incoming handoff yet"),
    }
}

/// Hands a lease this worker owns and no longer processes to another worker (or releases it). Call with the slot's
/// lock held. Emits `Lost { HandedOff | Released }` if the slot was processed.
pub(crate) async fn hand_over(shared: &Shared, key: &str, generation: u64) -> Result<(), KclError> {
    let me = shared.worker_id.as_str();
    let (fence, target) = {
        let mut state = shared.state();
        let stopping = state.stopping;
        let target = if stopping { pick_target(shared, &state) } else { None };
        let Some(slot) = Shared::slot_mut(&mut state, key, generation) else {
            return Err(KclError::LeaseLost { lease_key: key.to_owned() });
        };
        (slot.fence(me), target)
    };
    let result = match &target {
        Some(to) => io::write(
            shared,
            key,
            "take_lease",
            None,
            || shared.store.take_lease(key, fence.counter, to),
            |l| {
                (l.lease_owner.as_deref() == Some(to.as_str()) && l.lease_counter == fence.counter + 1)
                    .then(|| l.clone())
            },
        )
        .await
        .map(|_| ()),
        None => io::write(
            shared,
            key,
            "release_lease",
            None,
            || shared.store.release_lease(&fence),
            |l| (l.lease_owner.is_none() && l.lease_counter == fence.counter + 1).then_some(l.lease_counter),
        )
        .await
        .map(|_| ()),
    };
    match result {
        Ok(()) => {
            let mut state = shared.state();
            if let Some(to) = &target {
                *state.handed.entry(to.clone()).or_default() += 1;
            }
            tracing::debug!(lease_key = %key, to = ?target, "handed lease over");
            let reason = if target.is_some() { LostReason::HandedOff } else { LostReason::Released };
            if Shared::slot_mut(&mut state, key, generation).is_some() {
                shared.remove_slot(&mut state, key, reason);
            }
            Ok(())
        }
        Err(error) if error.is_condition_failed() => {
            // Someone else changed it: re-read. A thief's steal leaves us the checkpoint right, and our processor has
            // already stopped, so finish that handoff now; anything else means the lease is gone.
            slots::refresh(shared, key, generation).await;
            let outgoing =
                shared.state().slots.get(key).is_some_and(|slot| matches!(slot.phase, Phase::Outgoing { .. }));
            if outgoing {
                return finish_outgoing(shared, key, generation).await;
            }
            Err(KclError::LeaseLost { lease_key: key.to_owned() })
        }
        Err(error) => Err(error.into()),
    }
}

/// Whom to hand a lease to, by the assignment policy (the least-loaded live worker with the count-based one).
fn pick_target(shared: &Shared, state: &State) -> Option<String> {
    let mine: HashSet<String> = state.slots.keys().cloned().collect();
    let local = Local { me: &shared.worker_id, mine: &mine, my_count: mine.len(), incoming_pending: false };
    let fleet = Fleet::observe(&state.listing, local, &shared.config, &state.view, Instant::now());
    shared.assignment.receiver(&fleet, &state.handed)
}
