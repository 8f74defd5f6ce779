//! Request accounting: the `kcl_lease_store_requests_total` metric and the per-store counters behind
//! [`DynamoLeaseStore::request_counts`](crate::DynamoLeaseStore::request_counts).

use std::sync::atomic::{AtomicU64, Ordering};

use kcl_core::lease::RequestCounts;

/// Name of the counter incremented once per DynamoDB request the store sends.
///
/// Labels: `operation` (the store method, e.g. `renew_lease`, or `build` / `owner_index` for table management),
/// `kind` (`read`, `write` or `control` for table-management calls) and `outcome` (`success`, `condition_failed`,
/// `transient`, `fatal`).
pub const REQUESTS_METRIC: &str = "kcl_lease_store_requests_total";

/// What a DynamoDB request costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// GetItem, Scan, Query, BatchGetItem: read capacity.
    Read,
    /// PutItem, UpdateItem, DeleteItem: write capacity, whether or not the condition held (a failed conditional
    /// write is billed too).
    Write,
    /// DescribeTable, CreateTable, UpdateTable: table management, not billed per request.
    Control,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Control => "control",
        }
    }
}

/// Per-store request counters; cheap enough to stay on even without a metrics recorder.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
}

impl Counters {
    pub(crate) fn record(&self, operation: &'static str, kind: Kind, outcome: &'static str) {
        match kind {
            Kind::Read => self.reads.fetch_add(1, Ordering::Relaxed),
            Kind::Write => self.writes.fetch_add(1, Ordering::Relaxed),
            Kind::Control => 0,
        };
        record_metric(operation, kind, outcome);
    }

    pub(crate) fn snapshot(&self) -> RequestCounts {
        RequestCounts { reads: self.reads.load(Ordering::Relaxed), writes: self.writes.load(Ordering::Relaxed) }
    }
}

/// Records one request in the metric only (for table-management calls made before a store exists).
pub(crate) fn record_metric(operation: &'static str, kind: Kind, outcome: &'static str) {
    metrics::counter!(REQUESTS_METRIC, "operation" => operation, "kind" => kind.label(), "outcome" => outcome)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_calls_are_not_reads_or_writes() {
        let counters = Counters::default();
        counters.record("get_lease", Kind::Read, "success");
        counters.record("renew_lease", Kind::Write, "condition_failed");
        counters.record("renew_lease", Kind::Write, "success");
        counters.record("owner_index", Kind::Control, "success");
        assert_eq!(counters.snapshot(), RequestCounts { reads: 1, writes: 2 });
    }
}
