//! The coordinator's metrics (through the `metrics` facade; free when no recorder is installed).

use metrics::{Counter, Gauge};

/// Leases taken because they were expired or unowned.
pub const LEASES_TAKEN: &str = "kcl_leases_taken_total";
/// Leases stolen (through a graceful handoff) to balance the fleet.
pub const LEASES_STOLEN: &str = "kcl_leases_stolen_total";
/// Leases lost involuntarily: self-fenced, taken by another worker, or handoff timed out.
pub const LEASES_LOST: &str = "kcl_leases_lost_total";
/// Leases this worker currently processes.
pub const LEASES_HELD: &str = "kcl_leases_held";
/// Failed renewal attempts (per-lease renewals or heartbeats).
pub const RENEWAL_FAILURES: &str = "kcl_lease_renewal_failures_total";

/// Handles registered once per worker, labelled `worker`.
pub(crate) struct CoordinatorMetrics {
    pub(crate) taken: Counter,
    pub(crate) stolen: Counter,
    pub(crate) lost: Counter,
    pub(crate) held: Gauge,
    pub(crate) renewal_failures: Counter,
}

impl CoordinatorMetrics {
    pub(crate) fn new(worker_id: &str) -> Self {
        let worker = worker_id.to_owned();
        Self {
            taken: metrics::counter!(LEASES_TAKEN, "worker" => worker.clone()),
            stolen: metrics::counter!(LEASES_STOLEN, "worker" => worker.clone()),
            lost: metrics::counter!(LEASES_LOST, "worker" => worker.clone()),
            held: metrics::gauge!(LEASES_HELD, "worker" => worker.clone()),
            renewal_failures: metrics::counter!(RENEWAL_FAILURES, "worker" => worker),
        }
    }
}
