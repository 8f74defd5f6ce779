//! [`CountBased`]: Java KCL 2.x's `DynamoDBLeaseTaker` balance, decided by each worker for itself.
//!
//! Target = ⌈leases / workers⌉ (capped by `max_leases_for_worker`), where workers are this one plus every owner of
//! an unexpired lease (plus, in heartbeat mode, every worker with a live heartbeat, so newcomers count before they
//! own anything). Expired leases are taken first; only when none exist does a worker steal, from the most loaded
//! worker, at most `max_leases_to_steal_at_one_time`, and only if that worker is above target (or at target while we
//! need more than one), so the fleet settles within ± 1 lease and never oscillates.
//!
//! Unlike KCL, a worker steals only while no handoff of its own is in flight (the taker then runs its next cycle the
//! moment one completes), and a finished shard (checkpoint SHARD_END) is neither taken nor counted: the pipeline
//! releases it and cleanup deletes it (Java KCL keeps taking and renewing such leases until cleanup, which skews the
//! balance after every reshard).
//!
//! A stopping worker hands each lease to the least-loaded live worker (ties by name), respecting
//! `max_leases_for_worker`.

use std::collections::{HashMap, HashSet};

use super::super::config::{LeaseCoordinatorConfig, RenewalMode};
use super::super::rng::Rng;
use super::seam::{Fleet, LeaseAssignment, LeaseFacts, Plan};
use crate::lease::Lease;

/// The count-based policy and its two knobs (Java KCL names in the config's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CountBased {
    /// `maxLeasesForWorker`; `None` for unlimited.
    pub(crate) max_leases_for_worker: Option<usize>,
    /// `maxLeasesToStealAtOneTime`; 0 disables stealing.
    pub(crate) max_leases_to_steal_at_one_time: usize,
}

impl CountBased {
    pub(crate) fn new(config: &LeaseCoordinatorConfig) -> Self {
        Self {
            max_leases_for_worker: config.max_leases_for_worker(),
            max_leases_to_steal_at_one_time: config.max_leases_to_steal_at_one_time(),
        }
    }
}

impl LeaseAssignment for CountBased {
    fn plan(&self, fleet: &Fleet<'_>, rng: &mut Rng) -> Plan {
        let me = fleet.local.me;
        let leases: Vec<&LeaseFacts<'_>> = fleet.leases.iter().filter(|f| !f.lease.checkpoint.is_shard_end()).collect();
        if leases.is_empty() {
            return Plan::default();
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut expired = Vec::new();
        let mut orphans = 0;
        for facts in &leases {
            let owner = facts.lease.lease_owner.as_deref();
            if owner == Some(me) {
                // Ours in the store but no slot: the poller adopts these; count them so we do not overshoot.
                if !facts.in_slot {
                    orphans += 1;
                }
                continue;
            }
            if facts.in_slot {
                continue;
            }
            if facts.expired {
                expired.push(facts.lease);
            } else if let Some(owner) = owner {
                *counts.entry(owner).or_default() += 1;
            }
        }
        let mut workers: HashSet<&str> = counts.keys().copied().collect();
        workers.insert(me);
        workers.extend(fleet.live_heartbeats.iter().copied());
        let mut target = leases.len().div_ceil(workers.len());
        if let Some(max) = self.max_leases_for_worker {
            target = target.min(max);
        }
        let have = fleet.local.my_count + orphans;
        let need = target.saturating_sub(have);
        if need == 0 {
            return Plan::default();
        }
        if !expired.is_empty() {
            rng.shuffle(&mut expired);
            let take = match fleet.mode {
                RenewalMode::PerLease => expired.into_iter().take(need).cloned().collect(),
                RenewalMode::WorkerHeartbeat => {
                    // Taking a dead worker's leases needs a fencing write on its heartbeat, which every other worker
                    // then sees as a change (and would wait another lease_duration). So the fencer takes all of them,
                    // up to max_leases_for_worker; rebalancing later moves some on through graceful handoffs.
                    let (owned, unowned): (Vec<&Lease>, Vec<&Lease>) =
                        expired.into_iter().partition(|l| l.lease_owner.is_some());
                    let mut take: Vec<Lease> = unowned.into_iter().take(need).cloned().collect();
                    let room = self.max_leases_for_worker.map_or(usize::MAX, |max| max.saturating_sub(have));
                    take.extend(owned.into_iter().take(room.saturating_sub(take.len())).cloned());
                    take
                }
            };
            return Plan { take, steal: Vec::new() };
        }
        let max_steal = self.max_leases_to_steal_at_one_time;
        if fleet.local.incoming_pending || max_steal == 0 {
            return Plan::default();
        }
        // The most loaded other worker; ties broken by name so every worker agrees on the victim.
        let Some((victim, victim_count)) =
            counts.iter().filter(|(w, _)| **w != me).max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        else {
            return Plan::default();
        };
        // Above target: steal the excess. At target: steal one only if we need more than one (so 4/3/3 stays put but
        // 4/4/2 moves to 4/3/3).
        let over = victim_count.saturating_sub(target);
        let to_steal = if over > 0 {
            over.min(need)
        } else if *victim_count == target && need > 1 {
            1
        } else {
            0
        }
        .min(max_steal);
        if to_steal == 0 {
            return Plan::default();
        }
        let mut candidates: Vec<&Lease> = leases
            .into_iter()
            .filter(|f| {
                f.lease.lease_owner.as_deref() == Some(*victim)
                    && f.lease.checkpoint_owner.is_none()
                    && !f.in_slot
                    && !f.expired
            })
            .map(|f| f.lease)
            .collect();
        rng.shuffle(&mut candidates);
        Plan { take: Vec::new(), steal: candidates.into_iter().take(to_steal).cloned().collect() }
    }

    fn receiver(&self, fleet: &Fleet<'_>, handed: &HashMap<String, usize>) -> Option<String> {
        let me = fleet.local.me;
        let mut load: HashMap<&str, usize> = HashMap::new();
        for facts in &fleet.leases {
            let Some(owner) = facts.lease.lease_owner.as_deref() else { continue };
            if owner != me && facts.owner_alive {
                *load.entry(owner).or_default() += 1;
            }
        }
        for worker in &fleet.live_heartbeats {
            if *worker != me {
                load.entry(worker).or_default();
            }
        }
        load.into_iter()
            .map(|(worker, count)| (worker, count + handed.get(worker).copied().unwrap_or_default()))
            .filter(|(_, count)| self.max_leases_for_worker.is_none_or(|max| *count < max))
            .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)))
            .map(|(worker, _)| worker.to_owned())
    }
}

#[cfg(test)]
#[path = "count_tests.rs"]
mod tests;
