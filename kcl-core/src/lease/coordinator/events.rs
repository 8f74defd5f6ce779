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
    Acquired {
        /// The lease as acquired.
        lease: Lease,
        /// This acquisition: pass it to the `*_in` writes of
        /// [`LeaseCoordinatorHandle`](super::LeaseCoordinatorHandle) so that they are refused once it has ended.
        generation: LeaseGeneration,
    },
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

/// One acquisition of a lease by this worker: from its [`LeaseEvent::Acquired`] to the `Lost` that ends it.
///
/// A worker can lose a lease and acquire it again while the processor of the first acquisition is still finishing
/// (it self-fenced, nobody else took the lease, this worker adopted it back). The store's fence (owner and counter)
/// cannot tell the two processors apart: both write as this worker. Writes made with
/// [`LeaseCoordinatorHandle::checkpoint_in`](super::LeaseCoordinatorHandle::checkpoint_in) and its siblings name
/// their acquisition and are refused with `LeaseLost` once it has ended, so only the current one moves the
/// checkpoint. Generations of one coordinator only grow; they mean nothing across workers or restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseGeneration(pub(crate) u64);

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
