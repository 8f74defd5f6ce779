//! What this worker has seen of the fleet: when each lease counter and each heartbeat was last seen to change,
//! on this worker's monotonic clock. Expiry is judged only from these local observations; wall clocks of
//! different hosts are never compared.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::config::RenewalMode;
use crate::lease::{Lease, WorkerHeartbeat};

#[derive(Clone, Copy, Debug)]
struct Seen {
    counter: u64,
    /// When the current value was first seen: the END of the read that returned it. The write happened no later
    /// than that, so waiting `lease_duration` from here never cuts a renewal short.
    changed_at: Instant,
}

/// Local observations of lease counters and worker heartbeats.
#[derive(Debug, Default)]
pub(crate) struct FleetView {
    leases: HashMap<String, Seen>,
    heartbeats: HashMap<String, Seen>,
    /// Workers named by a lease (as owner or checkpoint owner) that had no heartbeat, since when.
    missing_heartbeat: HashMap<String, Instant>,
    heartbeats_known: bool,
}

impl FleetView {
    /// Records a full listing of the lease table that completed at `at`. Leases no longer listed are forgotten.
    pub(crate) fn observe_leases(&mut self, leases: &[Lease], at: Instant) {
        let mut next = HashMap::with_capacity(leases.len());
        for lease in leases {
            let seen = match self.leases.get(&lease.lease_key) {
                Some(seen) if seen.counter == lease.lease_counter => *seen,
                _ => Seen { counter: lease.lease_counter, changed_at: at },
            };
            next.insert(lease.lease_key.clone(), seen);
        }
        self.leases = next;
    }

    /// Records a listing of every heartbeat that completed at `at`; `leases` is the lease listing of the same cycle
    /// (to start the "no heartbeat since" clock for workers that own leases but have no heartbeat).
    pub(crate) fn observe_heartbeats(&mut self, heartbeats: &[WorkerHeartbeat], leases: &[Lease], at: Instant) {
        let mut next = HashMap::with_capacity(heartbeats.len());
        for heartbeat in heartbeats {
            let seen = match self.heartbeats.get(&heartbeat.worker_id) {
                Some(seen) if seen.counter == heartbeat.counter => *seen,
                _ => Seen { counter: heartbeat.counter, changed_at: at },
            };
            next.insert(heartbeat.worker_id.clone(), seen);
        }
        self.heartbeats = next;
        self.heartbeats_known = true;
        let named: HashSet<&str> = leases
            .iter()
            .flat_map(|lease| lease.lease_owner.as_deref().into_iter().chain(lease.checkpoint_owner.as_deref()))
            .collect();
        self.missing_heartbeat.retain(|worker, _| named.contains(worker.as_str()));
        for worker in named {
            if self.heartbeats.contains_key(worker) {
                self.missing_heartbeat.remove(worker);
            } else {
                self.missing_heartbeat.entry(worker.to_owned()).or_insert(at);
            }
        }
    }

    /// Whether the lease's counter has not been seen to change for `lease_duration`. A lease never observed is not
    /// stale: its clock starts when it is first seen.
    pub(crate) fn lease_stale(&self, lease_key: &str, now: Instant, lease_duration: Duration) -> bool {
        self.leases.get(lease_key).is_some_and(|seen| now.duration_since(seen.changed_at) >= lease_duration)
    }

    /// Heartbeat mode: whether `worker` counts as dead — its heartbeat unchanged for `lease_duration`, or absent for
    /// `lease_duration` since this worker first noticed the absence. Unknown until heartbeats were listed once.
    pub(crate) fn worker_dead(&self, worker: &str, now: Instant, lease_duration: Duration) -> bool {
        if !self.heartbeats_known {
            return false;
        }
        match self.heartbeats.get(worker) {
            Some(seen) => now.duration_since(seen.changed_at) >= lease_duration,
            None => {
                self.missing_heartbeat.get(worker).is_some_and(|since| now.duration_since(*since) >= lease_duration)
            }
        }
    }

    /// Heartbeat mode: the heartbeat counter last seen for `worker` (`Some(None)`: it had none); `None` before
    /// heartbeats were listed once.
    pub(crate) fn heartbeat_of(&self, worker: &str) -> Option<Option<u64>> {
        self.heartbeats_known.then(|| self.heartbeats.get(worker).map(|seen| seen.counter))
    }

    /// Records our own fencing write on a dead worker's heartbeat: the new value is ours, not a sign of life, so
    /// the worker stays dead in this view.
    pub(crate) fn record_fence(&mut self, worker: &str, counter: u64) {
        let since =
            self.heartbeats.get(worker).map(|seen| seen.changed_at).or(self.missing_heartbeat.get(worker).copied());
        if let Some(changed_at) = since {
            self.heartbeats.insert(worker.to_owned(), Seen { counter, changed_at });
            self.missing_heartbeat.remove(worker);
        }
    }

    /// Heartbeat mode: workers whose heartbeat changed within `lease_duration`.
    pub(crate) fn live_heartbeats(&self, now: Instant, lease_duration: Duration) -> impl Iterator<Item = &str> {
        self.heartbeats
            .iter()
            .filter(move |(_, seen)| now.duration_since(seen.changed_at) < lease_duration)
            .map(|(worker, _)| worker.as_str())
    }

    /// Heartbeat mode: when `worker` will count as dead by [`worker_dead`](Self::worker_dead) if its heartbeat
    /// does not change; `None` while that cannot be told (heartbeats never listed, worker never noticed).
    fn dead_at(&self, worker: &str, lease_duration: Duration) -> Option<Instant> {
        if !self.heartbeats_known {
            return None;
        }
        match self.heartbeats.get(worker) {
            Some(seen) => Some(seen.changed_at + lease_duration),
            None => self.missing_heartbeat.get(worker).map(|since| *since + lease_duration),
        }
    }

    /// When [`is_expired`](Self::is_expired) will turn true for `lease` if nothing this worker observes changes:
    /// the instant the taker should look again. `None` for an unowned lease (takeable now) and for one whose expiry
    /// cannot be told yet (never observed). May be in the past (already expired).
    pub(crate) fn expires_at(&self, lease: &Lease, mode: RenewalMode, lease_duration: Duration) -> Option<Instant> {
        let owner = lease.lease_owner.as_deref()?;
        let stale_at = self.leases.get(&lease.lease_key)?.changed_at + lease_duration;
        match mode {
            RenewalMode::PerLease => Some(stale_at),
            RenewalMode::WorkerHeartbeat => {
                let mut at = stale_at.max(self.dead_at(owner, lease_duration)?);
                if let Some(checkpoint_owner) = lease.checkpoint_owner.as_deref() {
                    at = at.max(self.dead_at(checkpoint_owner, lease_duration)?);
                }
                Some(at)
            }
        }
    }

    /// Whether `lease` may be taken without the owner's consent.
    ///
    /// * Unowned: always.
    /// * Per-lease mode: its counter unchanged for `lease_duration`.
    /// * Heartbeat mode: its counter unchanged for `lease_duration` AND its owner dead AND (during a handoff) its
    ///   checkpoint owner dead. Requiring the counter too keeps a healthy per-lease worker safe from a misconfigured
    ///   heartbeat worker; requiring the checkpoint owner to be dead keeps an old owner's final checkpoint window
    ///   intact when the new owner dies mid-handoff.
    pub(crate) fn is_expired(&self, lease: &Lease, mode: RenewalMode, now: Instant, lease_duration: Duration) -> bool {
        let Some(owner) = lease.lease_owner.as_deref() else {
            return true;
        };
        let stale = self.lease_stale(&lease.lease_key, now, lease_duration);
        match mode {
            RenewalMode::PerLease => stale,
            RenewalMode::WorkerHeartbeat => {
                stale
                    && self.worker_dead(owner, now, lease_duration)
                    && lease.checkpoint_owner.as_deref().is_none_or(|cp| self.worker_dead(cp, now, lease_duration))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExtendedSequenceNumber;

    const LD: Duration = Duration::from_millis(1000);

    fn lease(key: &str, owner: Option<&str>, counter: u64) -> Lease {
        let mut lease = Lease::new_for_shard(key, ExtendedSequenceNumber::TrimHorizon);
        lease.lease_owner = owner.map(str::to_owned);
        lease.lease_counter = counter;
        lease
    }

    fn hb(worker: &str, counter: u64) -> WorkerHeartbeat {
        WorkerHeartbeat { worker_id: worker.to_owned(), counter }
    }

    #[test]
    fn per_lease_expiry_counts_from_the_last_seen_change() {
        let t0 = Instant::now();
        let mut view = FleetView::default();
        view.observe_leases(&[lease("a", Some("w1"), 1), lease("b", None, 0)], t0);
        assert!(!view.is_expired(&lease("a", Some("w1"), 1), RenewalMode::PerLease, t0 + LD / 2, LD));
        assert!(view.is_expired(&lease("b", None, 0), RenewalMode::PerLease, t0, LD), "unowned is takeable");
        // The counter moves at t0 + 900 ms: the clock restarts.
        view.observe_leases(&[lease("a", Some("w1"), 2)], t0 + Duration::from_millis(900));
        assert!(!view.is_expired(&lease("a", Some("w1"), 2), RenewalMode::PerLease, t0 + LD, LD));
        assert!(view.is_expired(&lease("a", Some("w1"), 2), RenewalMode::PerLease, t0 + LD * 2, LD));
    }

    #[test]
    fn first_sighting_is_never_expired() {
        let t0 = Instant::now();
        let view = FleetView::default();
        assert!(!view.is_expired(&lease("a", Some("w1"), 7), RenewalMode::PerLease, t0 + LD * 10, LD));
    }

    #[test]
    fn heartbeat_expiry_needs_a_dead_owner_and_a_static_counter() {
        let t0 = Instant::now();
        let leases = [lease("a", Some("w1"), 3)];
        let mut view = FleetView::default();
        view.observe_leases(&leases, t0);
        view.observe_heartbeats(&[hb("w1", 1)], &leases, t0);
        let mode = RenewalMode::WorkerHeartbeat;
        // Counter static, heartbeat moving: alive.
        view.observe_heartbeats(&[hb("w1", 2)], &leases, t0 + LD / 2);
        assert!(!view.is_expired(&leases[0], mode, t0 + LD + LD / 4, LD));
        // Heartbeat static for a lease duration too: expired.
        assert!(view.is_expired(&leases[0], mode, t0 + LD * 2, LD));
    }

    #[test]
    fn a_missing_heartbeat_counts_from_first_noticed() {
        let t0 = Instant::now();
        let leases = [lease("a", Some("gone"), 3)];
        let mut view = FleetView::default();
        view.observe_leases(&leases, t0);
        view.observe_heartbeats(&[], &leases, t0 + LD / 2);
        let mode = RenewalMode::WorkerHeartbeat;
        assert!(!view.is_expired(&leases[0], mode, t0 + LD, LD));
        assert!(view.is_expired(&leases[0], mode, t0 + LD + LD / 2, LD));
    }

    #[test]
    fn a_live_checkpoint_owner_protects_a_handoff() {
        let t0 = Instant::now();
        let mut in_handoff = lease("a", Some("dead-new-owner"), 3);
        in_handoff.checkpoint_owner = Some("old-owner".to_owned());
        let leases = [in_handoff.clone()];
        let mut view = FleetView::default();
        view.observe_leases(&leases, t0);
        view.observe_heartbeats(&[hb("dead-new-owner", 1), hb("old-owner", 1)], &leases, t0);
        view.observe_heartbeats(&[hb("dead-new-owner", 1), hb("old-owner", 5)], &leases, t0 + LD * 2);
        let mode = RenewalMode::WorkerHeartbeat;
        assert!(!view.is_expired(&in_handoff, mode, t0 + LD * 2, LD));
        assert!(view.is_expired(&in_handoff, mode, t0 + LD * 3, LD));
    }

    #[test]
    fn expires_at_is_when_is_expired_turns_true() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut in_handoff = lease("b", Some("w1"), 4);
        in_handoff.checkpoint_owner = Some("w2".to_owned());
        let leases = [lease("a", Some("w1"), 3), in_handoff.clone(), lease("c", None, 0)];
        let mut view = FleetView::default();
        view.observe_leases(&leases, t0);
        assert_eq!(view.expires_at(&leases[0], RenewalMode::PerLease, LD), Some(t0 + LD));
        assert_eq!(view.expires_at(&leases[2], RenewalMode::PerLease, LD), None, "unowned: takeable now");
        assert_eq!(view.expires_at(&lease("new", Some("w1"), 1), RenewalMode::PerLease, LD), None);
        let mode = RenewalMode::WorkerHeartbeat;
        assert_eq!(view.expires_at(&leases[0], mode, LD), None, "heartbeats not listed yet");
        view.observe_heartbeats(&[hb("w1", 1), hb("w2", 1)], &leases, t0);
        view.observe_heartbeats(&[hb("w1", 2), hb("w2", 1)], &leases, t0 + ms(300));
        view.observe_heartbeats(&[hb("w1", 2), hb("w2", 2)], &leases, t0 + ms(700));
        for (lease, at) in [(&leases[0], t0 + ms(300) + LD), (&in_handoff, t0 + ms(700) + LD)] {
            let expires = view.expires_at(lease, mode, LD).unwrap();
            assert_eq!(expires, at);
            assert!(!view.is_expired(lease, mode, expires - ms(1), LD));
            assert!(view.is_expired(lease, mode, expires, LD));
        }
    }

    #[test]
    fn heartbeats_unknown_means_nobody_is_dead() {
        let view = FleetView::default();
        assert!(!view.worker_dead("w1", Instant::now() + LD * 100, LD));
    }
}
