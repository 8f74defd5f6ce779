//! What the coordinator tells the pipeline ([`LeaseEvent`]) and why a lease was lost ([`LostReason`]): the
//! lowest file of the coordinator, used by all the others.

use crate::lease::Lease;

/// What the coordinator tells the pipeline.
// A few events per lease movement: moving a 300-byte lease is cheaper than boxing it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseEvent {
    /// This worker now owns the lease and may process its shard, starting after `lease.checkpoint`.
    Acquired(Lease),
    /// Another worker is taking the lease over gracefully (or this worker is shutting down): finish the current
    /// batch, checkpoint, stop, then call [`LeaseCoordinatorHandle::handoff_done`](super::LeaseCoordinatorHandle::handoff_done).
    HandoffRequested {
        /// The lease.
        lease_key: String,
    },
    /// This worker must stop processing the lease now.
    Lost {
        /// The lease.
        lease_key: String,
        /// Why.
        reason: LostReason,
    },
}

/// Why a lease was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LostReason {
    /// Self-fenced: no successful renewal for `lease_duration − safety_margin`.
    Expired,
    /// Another worker owns it now (or it was released by someone else, evicted or deleted).
    Taken,
    /// Handed over gracefully (a handoff completed, or a shutdown hand-over).
    HandedOff,
    /// Given up through [`LeaseCoordinatorHandle::release`](super::LeaseCoordinatorHandle::release).
    Released,
    /// A graceful handoff did not finish in time.
    HandoffTimedOut,
    /// The processor did not finish before the shutdown timeout (`handoff_timeout`).
    ShutdownTimedOut,
}

impl LostReason {
    /// Whether the loss was not asked for by this worker's pipeline (counted in `kcl_leases_lost_total`).
    pub fn is_involuntary(self) -> bool {
        matches!(self, Self::Expired | Self::Taken | Self::HandoffTimedOut | Self::ShutdownTimedOut)
    }
}
