//! The fencing clock: declares a lease lost the moment its deadline passes, whatever the store is doing.
//!
//! It never calls the store, so a hung or partitioned store cannot delay self-fencing: renewals and checkpoints hold
//! a slot's write lock across store calls, but the clock only takes the short state lock.

use std::sync::Arc;

use tokio::time::Instant;

use super::events::LostReason;
use super::state::{Phase, Shared, State};

/// The clock loop; runs until the coordinator stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut state = shared.state();
            let now = Instant::now();
            let due: Vec<String> = state
                .slots
                .iter()
                .filter(|(_, slot)| shared.deadline(&state, slot).is_some_and(|d| d <= now))
                .map(|(key, _)| key.clone())
                .collect();
            for key in due {
                expire(&shared, &mut state, &key);
            }
            state.slots.values().filter_map(|slot| shared.deadline(&state, slot)).min()
        };
        // Deadlines only move later on success; a new slot or phase change wakes us to recompute.
        let wake = next.unwrap_or_else(|| Instant::now() + shared.config.lease_duration());
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = shared.clock_wakeup.notified() => {}
        }
    }
}

/// Applies a passed deadline to the slot `key`.
pub(crate) fn expire(shared: &Shared, state: &mut State, key: &str) {
    let Some(slot) = state.slots.get_mut(key) else { return };
    match slot.phase.clone() {
        Phase::Active | Phase::Draining => {
            tracing::debug!(lease_key = %key, "self-fencing");
            shared.remove_slot(state, key, LostReason::Expired);
        }
        Phase::Incoming { .. } => {
            shared.remove_slot(state, key, LostReason::Expired);
        }
        Phase::Outgoing { to, deferred, .. } => {
            // Lost now; the checkpoint right is cleared a safety margin later, once the pipeline has had the time the
            // self-fencing contract gives it to stop.
            tracing::debug!(lease_key = %key, new_owner = %to, "handoff not finished in time; giving the lease up");
            slot.phase = Phase::Abandoned { to, clear_at: Instant::now() + shared.config.safety_margin(), deferred };
            shared.lost(key, LostReason::HandoffTimedOut);
            shared.update_held_gauge(state);
        }
        Phase::Abandoned { .. } => {}
    }
}
