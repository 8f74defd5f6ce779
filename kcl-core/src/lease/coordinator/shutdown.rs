//! Graceful shutdown: ask every processor for a final checkpoint, then hand each lease DIRECTLY to the least-loaded
//! live worker with one `take_lease` on its behalf (or release it when there is none).
//!
//! Why `take_lease` on the receiver's behalf rather than `assign_for_handoff`: our processor has already stopped and
//! checkpointed when `handoff_done` arrives, so there is nothing left for a checkpoint-owner phase to protect; a take
//! is one conditional write (fenced by our counter) that leaves the lease owned by the receiver with no checkpoint
//! owner. The receiver notices at its next assignment poll (`list_leases_by_owner`), confirms with a fenced renewal
//! and starts: well under a second with the default 500 ms poll, instead of the 20–40 s a Java KCL fleet needs to let
//! the lease expire and take it (#474, #845).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::config::RenewalMode;
use super::io;
use super::state::{Phase, Shared, State};
use super::{LeaseEvent, LostReason};
use crate::error::KclError;

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
            super::slots::refresh(shared, key, generation).await;
            let outgoing =
                shared.state().slots.get(key).is_some_and(|slot| matches!(slot.phase, Phase::Outgoing { .. }));
            if outgoing {
                return super::handoff::finish_outgoing(shared, key, generation).await;
            }
            Err(KclError::LeaseLost { lease_key: key.to_owned() })
        }
        Err(error) => Err(error.into()),
    }
}

/// The least-loaded live worker other than this one, respecting `max_leases_for_worker`.
fn pick_target(shared: &Shared, state: &State) -> Option<String> {
    let config = &shared.config;
    let ld = config.lease_duration();
    let mode = config.renewal_mode();
    let now = Instant::now();
    let me = shared.worker_id.as_str();
    let mut load: HashMap<&str, usize> = HashMap::new();
    for lease in &state.listing {
        let Some(owner) = lease.lease_owner.as_deref() else { continue };
        let alive = match mode {
            RenewalMode::PerLease => !state.view.is_expired(lease, mode, now, ld),
            RenewalMode::WorkerHeartbeat => !state.view.worker_dead(owner, now, ld),
        };
        if owner != me && alive {
            *load.entry(owner).or_default() += 1;
        }
    }
    if mode == RenewalMode::WorkerHeartbeat {
        for worker in state.view.live_heartbeats(now, ld) {
            if worker != me {
                load.entry(worker).or_default();
            }
        }
    }
    load.into_iter()
        .map(|(worker, count)| (worker, count + state.handed.get(worker).copied().unwrap_or_default()))
        .filter(|(_, count)| config.max_leases_for_worker().is_none_or(|max| *count < max))
        .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)))
        .map(|(worker, _)| worker.to_owned())
}

/// Phase one of a graceful shutdown: stop taking, ask for final checkpoints, and wait (up to `handoff_timeout`) for
/// every lease to be handed over. Leases whose processors do not answer are declared lost, then released after the
/// safety margin (the time a pipeline has to act on `Lost`), so others need not wait for them to expire.
pub(crate) async fn drain(shared: &Shared) {
    {
        let mut state = shared.state();
        state.stopping = true;
        for (key, slot) in state.slots.iter_mut() {
            if matches!(slot.phase, Phase::Active) {
                slot.phase = Phase::Draining;
                shared.emit(LeaseEvent::HandoffRequested { lease_key: key.clone() });
            }
        }
    }
    tracing::debug!("draining leases for shutdown");
    {
        // A fresh view of who is alive and how loaded, for choosing receivers.
        let _cycle = shared.cycle.lock().await;
        super::taker::list_and_observe(shared).await;
    }
    let deadline = Instant::now() + shared.config.handoff_timeout();
    let tick =
        shared.config.assignment_poll_interval().unwrap_or(Duration::from_millis(100)).min(Duration::from_millis(100));
    loop {
        let pending = shared
            .state()
            .slots
            .values()
            .any(|slot| matches!(slot.phase, Phase::Draining | Phase::Outgoing { .. } | Phase::Incoming { .. }));
        if !pending || Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            () = shared.slot_removed.notified() => {}
            () = tokio::time::sleep(tick) => {}
        }
    }
    give_up_leftovers(shared).await;
}

/// Declares every remaining lease lost, waits the safety margin, then releases (or, for outgoing handoffs, clears)
/// them so survivors can take them at once.
async fn give_up_leftovers(shared: &Shared) {
    let me = shared.worker_id.clone();
    let now = Instant::now();
    let mut release = Vec::new();
    {
        let mut state = shared.state();
        let keys: Vec<String> = state.slots.keys().cloned().collect();
        for key in keys {
            let Some(slot) = state.slots.get_mut(&key) else { continue };
            match slot.phase.clone() {
                Phase::Draining | Phase::Active => {
                    release.push(slot.fence(&me));
                    shared.remove_slot(&mut state, &key, LostReason::ShutdownTimedOut);
                }
                Phase::Outgoing { to, deferred, .. } => {
                    slot.phase = Phase::Abandoned { to, clear_at: now, deferred };
                    shared.lost(&key, LostReason::HandoffTimedOut);
                }
                Phase::Incoming { .. } => {
                    shared.remove_slot(&mut state, &key, LostReason::ShutdownTimedOut);
                }
                Phase::Abandoned { .. } => {}
            }
        }
        shared.update_held_gauge(&state);
    }
    let abandoned = !shared.state().slots.is_empty();
    if release.is_empty() && !abandoned {
        return;
    }
    tracing::warn!(leases = release.len(), "processors did not finish before the shutdown timeout");
    tokio::time::sleep(shared.config.safety_margin()).await;
    for fence in release {
        let result = io::call("release_lease", shared.config.call_timeout(), shared.store.release_lease(&fence)).await;
        if let Err(error) = result {
            tracing::debug!(%error, lease_key = %fence.lease_key, "could not release; the lease will expire");
        }
    }
    super::handoff::maintain(shared).await;
}
