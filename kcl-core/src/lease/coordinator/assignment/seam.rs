//! The seam between the coordinator and a balancing policy: what an assignment decision sees ([`Fleet`]), what it
//! answers ([`Plan`], or a receiver for a lease handed over at shutdown), and the [`LeaseAssignment`] trait every
//! policy implements.
//!
//! The facts in a [`Fleet`] (which lease may be taken, whose owner lives) come from the fleet view's expiry rule,
//! which is a safety rule and stays out of the policies: a policy only chooses among leases that are safe to move.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;

use tokio::time::Instant;

use super::super::config::{LeaseCoordinatorConfig, RenewalMode};
use super::super::rng::Rng;
use super::super::view::FleetView;
use crate::lease::Lease;

/// What one take cycle will do.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Expired or unowned leases to take.
    pub(crate) take: Vec<Lease>,
    /// Leases to steal through a graceful handoff.
    pub(crate) steal: Vec<Lease>,
}

/// A balancing policy: a pure decision over a [`Fleet`] snapshot.
pub(crate) trait LeaseAssignment: Debug + Send + Sync {
    /// What this worker takes and steals in this cycle. `rng` spreads workers that decide at the same moment over
    /// different leases.
    fn plan(&self, fleet: &Fleet<'_>, rng: &mut Rng) -> Plan;

    /// Whom this (stopping) worker hands a lease to; `None` to release it. `handed` counts the leases already handed
    /// to each worker during this shutdown, which the listing does not show yet.
    fn receiver(&self, fleet: &Fleet<'_>, handed: &HashMap<String, usize>) -> Option<String>;
}

/// One lease of the listing as the decision sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaseFacts<'a> {
    pub(crate) lease: &'a Lease,
    /// This worker holds a slot for it (owns it, is acquiring it, or still hands it over).
    pub(crate) in_slot: bool,
    /// May be taken without the owner's consent: unowned, or expired by the fleet view's rule.
    pub(crate) expired: bool,
    /// Its owner counts as alive: per-lease mode, the lease is not expired; heartbeat mode, the owner's heartbeat
    /// is not dead. `false` for an unowned lease.
    pub(crate) owner_alive: bool,
}

/// This worker's side of a decision.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Local<'a> {
    pub(crate) me: &'a str,
    /// Keys of every lease this worker has a slot for.
    pub(crate) mine: &'a HashSet<String>,
    /// Leases this worker owns or is acquiring (active, draining, incoming).
    pub(crate) my_count: usize,
    /// Whether a steal of ours is still waiting for its old owner.
    pub(crate) incoming_pending: bool,
}

/// Everything an assignment decision may look at: the listing with the view's verdicts, the live workers, and this
/// worker's own state. Built by [`Fleet::observe`]; tests build it the same way from a hand-made view.
#[derive(Debug)]
pub(crate) struct Fleet<'a> {
    pub(crate) local: Local<'a>,
    pub(crate) mode: RenewalMode,
    /// Every listed lease, finished ones (checkpoint SHARD_END) included: a policy decides whether they count.
    pub(crate) leases: Vec<LeaseFacts<'a>>,
    /// Heartbeat mode: workers whose heartbeat changed within `lease_duration` (so a newcomer counts before it owns
    /// anything). Empty in per-lease mode, where a worker is invisible until it owns a lease.
    pub(crate) live_heartbeats: Vec<&'a str>,
}

impl<'a> Fleet<'a> {
    /// Judges every lease of `listing` with the view's rule at `now`.
    pub(crate) fn observe(
        listing: &'a [Lease],
        local: Local<'a>,
        config: &LeaseCoordinatorConfig,
        view: &'a FleetView,
        now: Instant,
    ) -> Self {
        let (mode, ld) = (config.renewal_mode(), config.lease_duration());
        let leases = listing
            .iter()
            .map(|lease| {
                let expired = view.is_expired(lease, mode, now, ld);
                let owner_alive = lease.lease_owner.as_deref().is_some_and(|owner| match mode {
                    RenewalMode::PerLease => !expired,
                    RenewalMode::WorkerHeartbeat => !view.worker_dead(owner, now, ld),
                });
                LeaseFacts { lease, in_slot: local.mine.contains(&lease.lease_key), expired, owner_alive }
            })
            .collect();
        let live_heartbeats = match mode {
            RenewalMode::PerLease => Vec::new(),
            RenewalMode::WorkerHeartbeat => view.live_heartbeats(now, ld).collect(),
        };
        Fleet { local, mode, leases, live_heartbeats }
    }
}
