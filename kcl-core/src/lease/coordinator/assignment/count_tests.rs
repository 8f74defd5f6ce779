//! Table tests of the count-based policy: the take/steal plan and the shutdown receiver.

use std::time::Duration;

use std::collections::HashSet;

use tokio::time::Instant;

use super::super::super::view::FleetView;
use super::super::seam::Local;
use super::*;
use crate::ExtendedSequenceNumber;
use crate::lease::WorkerHeartbeat;

const LD: Duration = Duration::from_millis(1000);

fn config(mode: RenewalMode) -> LeaseCoordinatorConfig {
    LeaseCoordinatorConfig::builder().lease_duration(LD).renewal_mode(mode).build().unwrap()
}

/// `spec` lists owners, one per lease: "" for unowned.
fn leases(spec: &[&str]) -> Vec<Lease> {
    spec.iter()
        .enumerate()
        .map(|(i, owner)| {
            let mut lease = Lease::new_for_shard(format!("shard-{i:03}"), ExtendedSequenceNumber::TrimHorizon);
            lease.lease_owner = (!owner.is_empty()).then(|| owner.to_string());
            lease.lease_counter = 1;
            lease
        })
        .collect()
}

fn owners(n: usize, owner: &'static str) -> Vec<&'static str> {
    vec![owner; n]
}

struct Case {
    leases: Vec<Lease>,
    mine: HashSet<String>,
    incoming_pending: bool,
    config: LeaseCoordinatorConfig,
    view: FleetView,
    now: Instant,
}

impl Case {
    fn new(spec: &[&str], mode: RenewalMode) -> Self {
        let leases = leases(spec);
        let mine = leases.iter().filter(|l| l.lease_owner.as_deref() == Some("me")).map(|l| l.lease_key.clone());
        let now = Instant::now();
        let mut view = FleetView::default();
        view.observe_leases(&leases, now);
        Case { mine: mine.collect(), leases, incoming_pending: false, config: config(mode), view, now }
    }

    fn fleet(&self) -> Fleet<'_> {
        let local =
            Local { me: "me", mine: &self.mine, my_count: self.mine.len(), incoming_pending: self.incoming_pending };
        Fleet::observe(&self.leases, local, &self.config, &self.view, self.now)
    }

    fn plan(&self) -> Plan {
        CountBased::new(&self.config).plan(&self.fleet(), &mut Rng::seeded_for("test"))
    }

    fn receiver(&self, handed: &HashMap<String, usize>) -> Option<String> {
        CountBased::new(&self.config).receiver(&self.fleet(), handed)
    }
}

#[test]
fn nothing_to_do_without_leases() {
    assert_eq!(Case::new(&[], RenewalMode::PerLease).plan(), Plan::default());
}

#[test]
fn a_lone_worker_takes_every_unowned_lease() {
    let plan = Case::new(&owners(12, ""), RenewalMode::PerLease).plan();
    assert_eq!(plan.take.len(), 12);
    assert!(plan.steal.is_empty());
}

#[test]
fn expired_leases_are_taken_before_any_steal() {
    let mut spec = owners(6, "a");
    spec.extend(owners(2, "dead"));
    let mut case = Case::new(&spec, RenewalMode::PerLease);
    // Everything was seen at `now`; "a" renews later, "dead" does not.
    let later = case.now + LD * 2;
    let a_leases: Vec<Lease> =
        case.leases.iter().map(|l| if l.lease_owner.as_deref() == Some("a") { bump(l) } else { l.clone() }).collect();
    case.view.observe_leases(&a_leases, later - LD / 2);
    case.leases = a_leases;
    case.now = later;
    let plan = case.plan();
    // 8 leases, workers {a, me} (dead's leases are expired): target 4, need 4, but only 2 expired exist.
    assert_eq!(plan.take.len(), 2);
    assert!(plan.take.iter().all(|l| l.lease_owner.as_deref() == Some("dead")));
    assert!(plan.steal.is_empty(), "no steal while expired leases exist");
}

fn bump(lease: &Lease) -> Lease {
    let mut lease = lease.clone();
    lease.lease_counter += 1;
    lease
}

#[test]
fn a_newcomer_steals_one_at_a_time_from_the_most_loaded() {
    let mut spec = owners(12, "a");
    spec.extend(owners(1, "b"));
    let plan = Case::new(&spec, RenewalMode::PerLease).plan();
    assert!(plan.take.is_empty());
    assert_eq!(plan.steal.len(), 1, "maxLeasesToStealAtOneTime defaults to 1");
    assert_eq!(plan.steal[0].lease_owner.as_deref(), Some("a"));
}

#[test]
fn joining_a_balanced_fleet_steals_from_a_worker_at_target_plus_one() {
    let mut spec = owners(4, "a");
    spec.extend(owners(4, "b"));
    spec.extend(owners(4, "c"));
    // 12 leases, 4 workers: target 3; everyone else has 4.
    assert_eq!(Case::new(&spec, RenewalMode::PerLease).plan().steal.len(), 1);
}

#[test]
fn within_one_of_target_is_stable() {
    // 10 leases on 3 workers: target 4. 4/3/3 must not move.
    let mut spec = owners(4, "a");
    spec.extend(owners(3, "b"));
    spec.extend(owners(3, "me"));
    assert_eq!(Case::new(&spec, RenewalMode::PerLease).plan(), Plan::default());
    // 4/4/2: the worker with 2 needs 2 and steals one from a worker at target.
    let mut spec = owners(4, "a");
    spec.extend(owners(4, "b"));
    spec.extend(owners(2, "me"));
    assert_eq!(Case::new(&spec, RenewalMode::PerLease).plan().steal.len(), 1);
    // 4/4/4 with me at 4: nothing.
    let mut spec = owners(4, "a");
    spec.extend(owners(4, "b"));
    spec.extend(owners(4, "me"));
    assert_eq!(Case::new(&spec, RenewalMode::PerLease).plan(), Plan::default());
}

#[test]
fn no_steal_while_a_handoff_is_in_flight() {
    let mut case = Case::new(&owners(12, "a"), RenewalMode::PerLease);
    case.incoming_pending = true;
    assert_eq!(case.plan(), Plan::default());
}

#[test]
fn leases_in_a_handoff_are_never_stolen() {
    let mut case = Case::new(&owners(4, "a"), RenewalMode::PerLease);
    for lease in &mut case.leases {
        lease.checkpoint_owner = Some("x".to_owned());
    }
    assert_eq!(case.plan(), Plan::default());
}

#[test]
fn max_leases_for_worker_caps_the_target() {
    let mut case = Case::new(&owners(12, ""), RenewalMode::PerLease);
    case.config = LeaseCoordinatorConfig::builder().lease_duration(LD).max_leases_for_worker(5).build().unwrap();
    assert_eq!(case.plan().take.len(), 5);
}

#[test]
fn heartbeat_mode_counts_workers_before_they_own_anything() {
    let mut case = Case::new(&owners(12, ""), RenewalMode::WorkerHeartbeat);
    let heartbeats: Vec<WorkerHeartbeat> =
        ["me", "b", "c"].iter().map(|w| WorkerHeartbeat { worker_id: w.to_string(), counter: 1 }).collect();
    case.view.observe_heartbeats(&heartbeats, &case.leases, case.now);
    assert_eq!(case.plan().take.len(), 4, "12 leases over 3 live heartbeats");
}

#[test]
fn heartbeat_mode_takes_every_expired_lease_of_a_dead_worker() {
    let mut spec = owners(4, "a");
    spec.extend(owners(4, "dead"));
    let mut case = Case::new(&spec, RenewalMode::WorkerHeartbeat);
    let hb = |a: u64, dead: u64| {
        vec![
            WorkerHeartbeat { worker_id: "a".into(), counter: a },
            WorkerHeartbeat { worker_id: "dead".into(), counter: dead },
        ]
    };
    case.view.observe_heartbeats(&hb(1, 1), &case.leases, case.now);
    case.now += LD * 2;
    case.view.observe_heartbeats(&hb(2, 1), &case.leases, case.now - LD / 2);
    // 8 leases over {a, me}: target 4, and "dead"'s 4 leases are expired; all go to whoever fences it.
    let plan = case.plan();
    assert_eq!(plan.take.len(), 4);
    assert!(plan.take.iter().all(|l| l.lease_owner.as_deref() == Some("dead")));
    // With a cap, only up to max_leases_for_worker.
    case.config = LeaseCoordinatorConfig::builder()
        .lease_duration(LD)
        .renewal_mode(RenewalMode::WorkerHeartbeat)
        .max_leases_for_worker(3)
        .build()
        .unwrap();
    assert_eq!(case.plan().take.len(), 3);
}

#[test]
fn finished_leases_are_neither_taken_nor_counted() {
    // 4 live leases held by "a" and 8 finished ones (SHARD_END), some unowned, some still owned by "a".
    let mut spec = owners(4, "a");
    spec.extend(owners(4, ""));
    spec.extend(owners(4, "a"));
    let mut case = Case::new(&spec, RenewalMode::PerLease);
    for lease in case.leases.iter_mut().skip(4) {
        lease.checkpoint = ExtendedSequenceNumber::ShardEnd;
    }
    let plan = case.plan();
    assert!(plan.take.is_empty(), "finished leases must not be taken: {:?}", plan.take);
    // Balance counts only the 4 live leases: target 2 for {a, me}, so one steal of a live lease.
    assert_eq!(plan.steal.len(), 1);
    assert!(!plan.steal[0].checkpoint.is_shard_end());
}

/// Owners of the listing, already handed during this shutdown, max_leases_for_worker, expected receiver.
type ReceiverCase = (&'static [&'static str], &'static [(&'static str, usize)], Option<usize>, Option<&'static str>);

#[test]
fn a_stopping_worker_hands_to_the_least_loaded_live_worker() {
    let cases: &[ReceiverCase] = &[
        (&["a", "a", "a", "b", "me", "me"], &[], None, Some("b")),
        (&["a", "a", "a", "b", "me", "me"], &[("b", 3)], None, Some("a")),
        (&["b", "b", "a", "a", "me"], &[], None, Some("a")),
        (&["b", "b", "a", "a", "me"], &[], Some(2), None),
        (&["b", "b", "a", "me"], &[], Some(2), Some("a")),
        (&["me", "me", ""], &[], None, None),
    ];
    for (spec, handed, max, expected) in cases {
        let mut case = Case::new(spec, RenewalMode::PerLease);
        if let Some(max) = max {
            case.config =
                LeaseCoordinatorConfig::builder().lease_duration(LD).max_leases_for_worker(*max).build().unwrap();
        }
        let handed: HashMap<String, usize> = handed.iter().map(|(w, n)| (w.to_string(), *n)).collect();
        assert_eq!(case.receiver(&handed).as_deref(), *expected, "{spec:?} handed {handed:?} max {max:?}");
    }
}

#[test]
fn receivers_are_live_workers_only() {
    // Per-lease mode: the owner of expired leases is not a receiver.
    let mut spec = owners(3, "a");
    spec.extend(owners(1, "dead"));
    let mut case = Case::new(&spec, RenewalMode::PerLease);
    let renewed: Vec<Lease> =
        case.leases.iter().map(|l| if l.lease_owner.as_deref() == Some("a") { bump(l) } else { l.clone() }).collect();
    case.view.observe_leases(&renewed, case.now + LD);
    case.leases = renewed;
    case.now += LD * 3 / 2;
    assert_eq!(case.receiver(&HashMap::new()).as_deref(), Some("a"));
    // Heartbeat mode: a live heartbeat without leases is the least loaded.
    let mut case = Case::new(&owners(3, "a"), RenewalMode::WorkerHeartbeat);
    let heartbeats: Vec<WorkerHeartbeat> =
        ["a", "b"].iter().map(|w| WorkerHeartbeat { worker_id: w.to_string(), counter: 1 }).collect();
    case.view.observe_heartbeats(&heartbeats, &case.leases, case.now);
    assert_eq!(case.receiver(&HashMap::new()).as_deref(), Some("b"));
}
