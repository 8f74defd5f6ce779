//! Slot-level operations shared by the renewer, the poller, the taker and the handle: locking a slot for a write,
//! classifying a fresh read of its lease, and applying what the read says.

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use super::events::{LeaseEvent, LostReason};
use super::io;
use super::state::{Phase, Shared, State};
use crate::lease::Lease;

/// A slot locked for writing: no other write of this worker to the lease runs until it is dropped.
pub(crate) struct SlotLock {
    _guard: OwnedMutexGuard<()>,
    pub(crate) generation: u64,
}

/// Locks the slot for `key` for writing; `None` when there is no slot (or it was replaced while waiting).
pub(crate) async fn lock_slot(shared: &Shared, key: &str) -> Option<SlotLock> {
    let (io, generation) = {
        let state = shared.state();
        let slot = state.slots.get(key)?;
        (slot.io.clone(), slot.generation)
    };
    let guard = io.lock_owned().await;
    let state = shared.state();
    (state.slots.get(key)?.generation == generation).then_some(SlotLock { _guard: guard, generation })
}

/// What a fresh read of a lease says, from this worker's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Owned by this worker, nobody else holds the checkpoint right.
    Ours(Lease),
    /// Owned by this worker, the previous owner still holds the checkpoint right (incoming handoff).
    OursInHandoff(Lease),
    /// Owned by `to`; this worker holds the checkpoint right (another worker stole it: outgoing handoff).
    HandoffRequested {
        /// The lease as read.
        lease: Lease,
        /// The new owner.
        to: String,
    },
    /// Anything else: taken by another worker, released, evicted or deleted.
    Gone,
}

/// Classifies a fresh read of a lease.
pub(crate) fn classify(me: &str, lease: Option<Lease>) -> Reading {
    let Some(lease) = lease else { return Reading::Gone };
    let owner = lease.lease_owner.as_deref();
    let checkpoint_owner = lease.checkpoint_owner.as_deref();
    match (owner, checkpoint_owner) {
        (Some(o), None) if o == me => Reading::Ours(lease),
        (Some(o), Some(c)) if o == me && c != me => Reading::OursInHandoff(lease),
        (Some(o), Some(c)) if o != me && c == me => {
            let to = o.to_owned();
            Reading::HandoffRequested { lease, to }
        }
        _ => Reading::Gone,
    }
}

/// What the caller should do after [`apply`].
// Returned once per surprising write, never stored: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing more (the slot was updated, moved to another phase, or removed).
    Done,
    /// The slot still holds the lease with a refreshed counter: retry the write.
    Retry,
    /// An incoming handoff is complete: confirm with a fenced write, then start processing.
    ConfirmIncoming(Lease),
}

/// Applies a fresh read to the slot `key` (incarnation `generation`). Call with the slot's lock held.
pub(crate) fn apply(shared: &Shared, key: &str, generation: u64, reading: Reading) -> Next {
    let now = Instant::now();
    let mut guard = shared.state();
    let state: &mut State = &mut guard;
    let Some(slot) = Shared::slot_mut(state, key, generation) else { return Next::Done };
    match (&slot.phase, reading) {
        (Phase::Active | Phase::Draining, Reading::Ours(lease)) => {
            slot.lease = lease;
            Next::Retry
        }
        (Phase::Active | Phase::Draining, Reading::HandoffRequested { lease, to }) => {
            let announce = matches!(slot.phase, Phase::Active);
            tracing::debug!(lease_key = %key, new_owner = %to, "handoff requested by another worker");
            slot.lease = lease;
            slot.phase = Phase::Outgoing { to, noticed: now, deferred: None };
            if announce {
                shared.emit(LeaseEvent::HandoffRequested { lease_key: key.to_owned() });
            }
            shared.clock_wakeup.notify_one();
            Next::Done
        }
        (Phase::Incoming { .. }, Reading::Ours(lease)) => Next::ConfirmIncoming(lease),
        (Phase::Incoming { .. }, Reading::OursInHandoff(lease)) => {
            slot.lease = lease;
            Next::Retry
        }
        (Phase::Incoming { .. }, Reading::HandoffRequested { lease, to }) => {
            // Stolen from us before we started: we hold the checkpoint right but never processed; give it up now.
            slot.lease = lease;
            slot.phase = Phase::Abandoned { to, clear_at: now, deferred: None };
            Next::Done
        }
        (Phase::Outgoing { .. } | Phase::Abandoned { .. }, Reading::HandoffRequested { lease, .. }) => {
            slot.lease = lease;
            Next::Retry
        }
        (Phase::Outgoing { .. }, _) => {
            // The checkpoint right was cleared without us: the new owner took it by force.
            shared.remove_slot(state, key, LostReason::HandoffTimedOut);
            Next::Done
        }
        (_, _) => {
            shared.remove_slot(state, key, LostReason::Taken);
            Next::Done
        }
    }
}

/// Reads the lease and applies the reading. Call with the slot's lock held.
pub(crate) async fn refresh(shared: &Shared, key: &str, generation: u64) -> Next {
    match io::get_lease(shared, key).await {
        Ok(lease) => apply(shared, key, generation, classify(&shared.worker_id, lease)),
        Err(error) => {
            tracing::debug!(%error, lease_key = %key, "could not read lease; keeping it until its deadline");
            Next::Done
        }
    }
}

/// `applied` check for a renewal fenced at `counter`: our write is the newest one.
pub(crate) fn renewed_by(lease: &Lease, me: &str, counter: u64) -> Option<u64> {
    (lease.lease_owner.as_deref() == Some(me) && lease.checkpoint_owner.is_none() && lease.lease_counter == counter + 1)
        .then_some(lease.lease_counter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExtendedSequenceNumber;

    fn lease(owner: Option<&str>, checkpoint_owner: Option<&str>) -> Lease {
        let mut lease = Lease::new_for_shard("shard-0", ExtendedSequenceNumber::TrimHorizon);
        lease.lease_owner = owner.map(str::to_owned);
        lease.checkpoint_owner = checkpoint_owner.map(str::to_owned);
        lease
    }

    #[test]
    fn classification_covers_every_ownership_shape() {
        assert_eq!(classify("me", None), Reading::Gone);
        assert_eq!(classify("me", Some(lease(None, None))), Reading::Gone);
        assert_eq!(classify("me", Some(lease(Some("me"), None))), Reading::Ours(lease(Some("me"), None)));
        assert_eq!(
            classify("me", Some(lease(Some("me"), Some("old")))),
            Reading::OursInHandoff(lease(Some("me"), Some("old")))
        );
        assert_eq!(
            classify("me", Some(lease(Some("thief"), Some("me")))),
            Reading::HandoffRequested { lease: lease(Some("thief"), Some("me")), to: "thief".to_owned() }
        );
        assert_eq!(classify("me", Some(lease(Some("other"), None))), Reading::Gone);
        assert_eq!(classify("me", Some(lease(Some("other"), Some("third")))), Reading::Gone);
    }
}
