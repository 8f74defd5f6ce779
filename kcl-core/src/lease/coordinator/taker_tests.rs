//! Unit tests of the take cycle's timing (the balancing plan is tested with its policy, in `assignment`).

use std::time::Duration;

use super::*;
use crate::ExtendedSequenceNumber;

const LD: Duration = Duration::from_millis(1000);

#[test]
fn next_expiry_is_the_earliest_future_expiry_of_another_workers_lease() {
    let config = LeaseCoordinatorConfig::builder().lease_duration(LD).build().unwrap();
    let lease = |key: &str, owner: Option<&str>| {
        let mut lease = Lease::new_for_shard(key, ExtendedSequenceNumber::TrimHorizon);
        (lease.lease_owner, lease.lease_counter) = (owner.map(str::to_owned), 1);
        lease
    };
    let mut leases = vec![
        lease("shard-000", Some("me")),
        lease("shard-001", Some("a")),
        lease("shard-002", Some("b")),
        lease("shard-003", None),
    ];
    let mine: HashSet<String> = HashSet::from(["shard-000".to_owned()]);
    let t0 = Instant::now();
    let mut view = FleetView::default();
    view.observe_leases(&leases, t0);
    // Lease b (shard-002) is seen renewed later: a's lease expires first. Ours and the unowned one never count.
    leases[2].lease_counter = 2;
    view.observe_leases(&leases, t0 + LD / 2);
    let at = |now| next_expiry(&leases, "me", &mine, &config, &view, now);
    assert_eq!(at(t0), Some(t0 + LD));
    // Once a's instant has come, the next one is b's; after that nothing is pending (no busy loop).
    assert_eq!(at(t0 + LD), Some(t0 + LD + LD / 2));
    assert_eq!(at(t0 + LD * 2), None);
}
