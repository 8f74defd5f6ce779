//! The taker: every take interval (and as soon as a watched lease would expire, if earlier: see the coordinator's
//! "Failover time"), list the lease table, take expired leases, and steal (through a graceful handoff) toward an
//! even share.
//!
//! What to take and steal is the assignment policy's choice (`assignment`, Java KCL 2.x's count-based balance by
//! default); this file decides when to look and makes the takes and steals safely. The moment a handoff of ours
//! completes the taker runs its next cycle instead of waiting a full take interval: a joining worker pulls its share
//! one graceful handoff at a time, without the lag spike of a lease dropped mid-batch (KCL #332) and without waiting
//! minutes.
//!
//! Start-up: in heartbeat mode the first cycle waits for this worker's first heartbeat plus
//! `min(renewal_interval, 1 s)`, so workers started together see each other and take even shares at once. In
//! per-lease mode a worker is invisible until it owns a lease (as in KCL), so the first one may take everything and
//! the others steal their shares as above.

use std::collections::HashSet;

use tokio::time::Instant;

use super::assignment::{Fleet, Local};
use super::config::{LeaseCoordinatorConfig, RenewalMode};
use super::state::{Phase, Shared};
use super::view::FleetView;
use super::{fleet, io};
use crate::lease::{Lease, LeaseFence};

/// The earliest instant after `now` at which a lease of another worker in `listing` expires by the local-clock rule
/// if nothing changes, so the take loop can look again right then instead of at its next regular tick.
pub(crate) fn next_expiry(
    listing: &[Lease],
    me: &str,
    mine: &HashSet<String>,
    config: &LeaseCoordinatorConfig,
    view: &FleetView,
    now: Instant,
) -> Option<Instant> {
    let (mode, ld) = (config.renewal_mode(), config.lease_duration());
    listing
        .iter()
        .filter(|l| !l.checkpoint.is_shard_end() && l.lease_owner.as_deref() != Some(me))
        .filter(|l| !mine.contains(&l.lease_key))
        .filter_map(|l| view.expires_at(l, mode, ld))
        .filter(|at| *at > now)
        .min()
}

/// One take cycle. Returns the next instant a watched lease expires (see [`next_expiry`]), if any; `None` when the
/// listing failed or the coordinator is stopping.
pub(crate) async fn take_cycle(shared: &Shared) -> Option<Instant> {
    let _cycle = shared.cycle.lock().await;
    {
        let state = shared.state();
        // Heartbeat mode: nothing before the first heartbeat, nor while it has lapsed (see `may_start_processing`).
        if state.stopping || !shared.may_start_processing(&state, Instant::now()) {
            return None;
        }
    }
    let leases = fleet::list_and_observe(shared).await?;
    let me = shared.worker_id.as_str();
    adopt_orphaned_handoffs(shared, &leases);
    if shared.config.assignment_poll_interval().is_none() {
        let owned = leases.iter().filter(|l| l.lease_owner.as_deref() == Some(me)).cloned().collect();
        super::handoff::reconcile(shared, owned).await;
    }
    let (plan, expiry) = {
        let state = shared.state();
        let mine: HashSet<String> = state.slots.keys().cloned().collect();
        let my_count = state.slots.values().filter(|s| s.phase.is_owned()).count();
        let incoming_pending = state.slots.values().any(|s| matches!(s.phase, Phase::Incoming { .. }));
        let now = Instant::now();
        let local = Local { me, mine: &mine, my_count, incoming_pending };
        let fleet = Fleet::observe(&leases, local, &shared.config, &state.view, now);
        let plan = shared.assignment.plan(&fleet, &mut shared.rng());
        (plan, next_expiry(&leases, me, &mine, &shared.config, &state.view, now))
    };
    let fenced = fence_dead_workers(shared, &plan.take).await;
    let mut lost_race = false;
    for lease in plan.take {
        let workers = lease.lease_owner.iter().chain(lease.checkpoint_owner.iter());
        if workers.clone().all(|w| fenced.contains(w.as_str())) {
            lost_race |= !take(shared, lease).await;
        }
    }
    for lease in plan.steal {
        steal(shared, lease).await;
    }
    super::handoff::maintain(shared).await;
    if lost_race {
        // Another worker took a lease we planned to take (survivors of a crash all go for the same expired leases
        // at about the same moment). The rest of our share is still expired, and no future expiry instant would
        // bring us back before the regular tick: look again now. Bounded: each lost race is a lease that just
        // changed hands, which the next listing no longer counts as expired.
        return Some(Instant::now());
    }
    expiry
}

/// Finds leases another worker stole from us (checkpoint right ours) for which we hold no slot — we had dropped
/// the lease (self-fenced) just before the steal, so nobody here will ever finish that handoff and the thief would
/// wait for it. We are not processing them, so we clear the right, a safety margin from now (no earlier than a
/// margin after the `Lost` we emitted), through the abandoned-handoff path.
fn adopt_orphaned_handoffs(shared: &Shared, leases: &[Lease]) {
    let me = shared.worker_id.as_str();
    let mut state = shared.state();
    let clear_at = Instant::now() + shared.config.safety_margin();
    for lease in leases {
        let Some(owner) = lease.lease_owner.as_deref() else { continue };
        if lease.checkpoint_owner.as_deref() == Some(me) && owner != me && !state.slots.contains_key(&lease.lease_key) {
            tracing::debug!(lease_key = %lease.lease_key, new_owner = %owner, "clearing an orphaned handoff");
            let phase = Phase::Abandoned { to: owner.to_owned(), clear_at, deferred: None };
            shared.insert_slot(&mut state, lease.clone(), phase, Instant::now());
        }
    }
}

/// Heartbeat mode: fences the heartbeat of every worker (owner or checkpoint owner) whose expired leases we are
/// about to take; returns those fenced. Per-lease mode needs no fence: the take itself is conditional on the counter
/// the owner's renewals move.
async fn fence_dead_workers(shared: &Shared, leases: &[Lease]) -> HashSet<String> {
    let mut fenced = HashSet::new();
    if shared.config.renewal_mode() != RenewalMode::WorkerHeartbeat {
        return leases.iter().flat_map(|l| l.lease_owner.iter().chain(l.checkpoint_owner.iter())).cloned().collect();
    }
    let workers: HashSet<&String> =
        leases.iter().flat_map(|l| l.lease_owner.iter().chain(l.checkpoint_owner.iter())).collect();
    for worker in workers {
        // A lease whose checkpoint owner is this worker without a slot here (say, after a restart) is not being
        // processed here: no fence needed, and fencing ourselves would drop every lease we hold.
        if *worker == shared.worker_id || fleet::fence_heartbeat(shared, worker).await {
            fenced.insert(worker.clone());
        }
    }
    fenced
}

/// Takes an expired lease. Returns `false` when the take's condition failed: someone else wrote the lease first.
async fn take(shared: &Shared, lease: Lease) -> bool {
    let me = shared.worker_id.as_str();
    let key = lease.lease_key.as_str();
    let expected = lease.lease_counter;
    let taken = io::write(
        shared,
        key,
        "take_lease",
        None,
        || shared.store.take_lease(key, expected, me),
        |l| (l.lease_owner.as_deref() == Some(me) && l.lease_counter == expected + 1).then(|| l.clone()),
    )
    .await;
    match taken {
        Ok(written) => {
            tracing::debug!(lease_key = %key, previous_owner = ?lease.lease_owner, "took expired lease");
            shared.metrics.taken.increment(1);
            let mut state = shared.state();
            if !state.stopping && !state.slots.contains_key(key) {
                shared.insert_slot(&mut state, written.value, Phase::Active, written.started);
            }
            true
        }
        Err(error) if error.is_condition_failed() => {
            tracing::debug!(lease_key = %key, "lost the race to take a lease");
            false
        }
        Err(error) => {
            tracing::warn!(%error, lease_key = %key, "could not take lease");
            true
        }
    }
}

async fn steal(shared: &Shared, lease: Lease) {
    let me = shared.worker_id.as_str();
    let key = lease.lease_key.clone();
    let Some(victim) = lease.lease_owner.clone() else { return };
    let mut counter = lease.lease_counter;
    // The victim renews often; if it renewed since our listing, read again and retry once.
    for attempt in 0..2 {
        let fence = LeaseFence { lease_key: key.clone(), owner: victim.clone(), counter };
        let assigned = io::write(
            shared,
            &key,
            "assign_for_handoff",
            None,
            || shared.store.assign_for_handoff(&fence, me),
            |l| {
                (l.lease_owner.as_deref() == Some(me)
                    && l.checkpoint_owner.as_deref() == Some(victim.as_str())
                    && l.lease_counter == counter + 1)
                    .then_some(l.lease_counter)
            },
        )
        .await;
        match assigned {
            Ok(written) => {
                tracing::debug!(lease_key = %key, %victim, "stealing lease through a graceful handoff");
                shared.metrics.stolen.increment(1);
                let mut stolen = lease.clone();
                stolen.lease_owner = Some(me.to_owned());
                stolen.checkpoint_owner = Some(victim.clone());
                stolen.lease_counter = written.value;
                let mut state = shared.state();
                if !state.stopping && !state.slots.contains_key(&key) {
                    let phase = Phase::Incoming { from: victim.clone(), since: Instant::now() };
                    shared.insert_slot(&mut state, stolen, phase, written.started);
                }
                return;
            }
            Err(error) if error.is_condition_failed() && attempt == 0 => match io::get_lease(shared, &key).await {
                Ok(Some(fresh))
                    if fresh.lease_owner.as_deref() == Some(victim.as_str()) && fresh.checkpoint_owner.is_none() =>
                {
                    counter = fresh.lease_counter;
                }
                _ => return,
            },
            Err(error) => {
                tracing::debug!(%error, lease_key = %key, "could not steal lease");
                return;
            }
        }
    }
}

#[cfg(test)]
#[path = "taker_tests.rs"]
mod tests;
