//! The coordinator's metrics (through the `metrics` facade; free when no recorder is installed). Names, units and
//! labels are in the [catalogue](crate::telemetry).

use metrics::{Counter, Gauge};

pub use crate::telemetry::{
    LEASES_HELD, LEASES_LOST, LEASES_STOLEN, LEASES_TAKEN, RENEWAL_FAILURES, UNREADABLE_LEASES,
};

/// Handles registered once per worker, labelled `worker`.
pub(crate) struct CoordinatorMetrics {
    pub(crate) taken: Counter,
    pub(crate) stolen: Counter,
    pub(crate) lost: Counter,
    pub(crate) held: Gauge,
    pub(crate) renewal_failures: Counter,
    pub(crate) unreadable: Gauge,
}

impl CoordinatorMetrics {
    pub(crate) fn new(worker_id: &str) -> Self {
        let worker = worker_id.to_owned();
        Self {
            taken: metrics::counter!(LEASES_TAKEN, "worker" => worker.clone()),
            stolen: metrics::counter!(LEASES_STOLEN, "worker" => worker.clone()),
            lost: metrics::counter!(LEASES_LOST, "worker" => worker.clone()),
            held: metrics::gauge!(LEASES_HELD, "worker" => worker.clone()),
            renewal_failures: metrics::counter!(RENEWAL_FAILURES, "worker" => worker.clone()),
            unreadable: metrics::gauge!(UNREADABLE_LEASES, "worker" => worker),
        }
    }
}
