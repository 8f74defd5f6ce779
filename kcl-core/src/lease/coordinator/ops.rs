//! Fenced writes made on behalf of the pipeline: checkpoints, prepared checkpoints, child shards, releases.
//!
//! Each holds the slot's write lock for its whole duration, the same lock the renewer takes, so a checkpoint and a
//! renewal never both use (and bump) the same cached counter. A checkpoint counts as a sign of life: it moves the
//! counter, so it also pushes the self-fencing deadline like a renewal.

use std::future::Future;

use bytes::Bytes;
use tokio::time::Instant;

use super::events::{LeaseGeneration, LostReason};
use super::fence;
use super::io::{self, Written};
use super::slots::{self, Next, lock_slot};
use super::state::{Phase, Shared, Slot};
use crate::ExtendedSequenceNumber;
use crate::error::KclError;
use crate::lease::{Lease, LeaseFence, LeaseStoreError};

fn lost(key: &str) -> KclError {
    KclError::LeaseLost { lease_key: key.to_owned() }
}

/// Fails once the coordinator stopped.
pub(crate) fn ensure_running(shared: &Shared) -> Result<(), KclError> {
    if shared.state().stopped { Err(KclError::Shutdown) } else { Ok(()) }
}

/// What a write does when the lease is in an outgoing handoff (another worker stole it; this worker keeps the
/// checkpoint right until `handoff_done`).
#[derive(Clone, Copy)]
enum DuringHandoff<'v> {
    /// Refused: the write needs ownership, which is gone.
    Refuse,
    /// Written as usual: it does not clear `checkpoint_owner`.
    Write,
    /// Kept as the final checkpoint that `handoff_done` writes (writing it now would clear `checkpoint_owner` and let
    /// the new owner start while our processor may still be mid-batch).
    Defer(&'v ExtendedSequenceNumber),
    /// The handoff is finished instead (giving the lease up).
    Finish,
}

/// Which phases a write may be made in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Right {
    /// Ownership: active or draining.
    Owner,
    /// The checkpoint right: also during an outgoing handoff.
    Checkpoint,
}

/// Looks up the slot, checks the phase and the deadline, and returns the fence and deadline to write with.
fn prepare(shared: &Shared, key: &str, generation: u64, right: Right) -> Result<(LeaseFence, Instant), KclError> {
    let mut state = shared.state();
    let slot = state.slots.get(key).filter(|s| s.generation == generation).ok_or_else(|| lost(key))?;
    let allowed = match slot.phase {
        Phase::Active | Phase::Draining => true,
        Phase::Outgoing { .. } => right == Right::Checkpoint,
        _ => false,
    };
    if !allowed {
        return Err(lost(key));
    }
    let fence = slot.fence(&shared.worker_id);
    let deadline = shared.deadline(&state, slot).ok_or_else(|| lost(key))?;
    if Instant::now() >= deadline {
        fence::expire(shared, &mut state, key);
        return Err(lost(key));
    }
    Ok((fence, deadline))
}

/// Records a successful write in the slot.
fn written(shared: &Shared, key: &str, generation: u64, started: Instant, update: impl FnOnce(&mut Slot)) {
    let mut state = shared.state();
    if let Some(slot) = Shared::slot_mut(&mut state, key, generation) {
        update(slot);
        slot.written_at = slot.written_at.max(started);
    }
}

/// `applied` check: our write (fenced at `counter`) is the newest one.
fn ours_after(lease: &Lease, me: &str, counter: u64) -> bool {
    lease.checkpointing_owner() == Some(me) && lease.lease_counter == counter + 1
}

/// The lease a write is for, and the acquisition it is made on behalf of (`None`: any acquisition of this worker).
struct Target<'a> {
    key: &'a str,
    acquisition: Option<LeaseGeneration>,
}

/// The fenced write every pipeline operation makes: lock the slot, check phase and deadline, write fenced at the
/// cached counter, and on a failed condition read the lease again and retry with what the read says (a refreshed
/// counter, a handoff request) a few times before declaring the lease lost. `done` records a successful write.
/// With an `acquisition`, the write is refused unless the slot is still that acquisition.
async fn fenced_write<Fut>(
    shared: &Shared,
    target: Target<'_>,
    op: &'static str,
    during_handoff: DuringHandoff<'_>,
    attempt: impl Fn(LeaseFence) -> Fut,
    applied: impl Fn(&Lease, &LeaseFence) -> bool,
    done: impl FnOnce(u64, Written<u64>),
) -> Result<(), KclError>
where
    Fut: Future<Output = Result<u64, LeaseStoreError>>,
{
    let Target { key, acquisition } = target;
    ensure_running(shared)?;
    let lock = lock_slot(shared, key).await.ok_or_else(|| lost(key))?;
    if acquisition.is_some_and(|LeaseGeneration(generation)| generation != lock.generation) {
        // The caller's acquisition ended; this worker holds the lease again under a newer one.
        return Err(lost(key));
    }
    let right = match during_handoff {
        DuringHandoff::Write => Right::Checkpoint,
        DuringHandoff::Refuse | DuringHandoff::Defer(_) | DuringHandoff::Finish => Right::Owner,
    };
    for _ in 0..3 {
        match during_handoff {
            DuringHandoff::Defer(value) => {
                let mut state = shared.state();
                if let Some(slot) = Shared::slot_mut(&mut state, key, lock.generation)
                    && let Phase::Outgoing { deferred, .. } = &mut slot.phase
                {
                    *deferred = Some(value.clone());
                    return Ok(());
                }
            }
            DuringHandoff::Finish => {
                let outgoing =
                    shared.state().slots.get(key).is_some_and(|slot| matches!(slot.phase, Phase::Outgoing { .. }));
                if outgoing {
                    return super::handoff::finish_outgoing(shared, key, lock.generation).await;
                }
            }
            DuringHandoff::Refuse | DuringHandoff::Write => {}
        }
        let (fence, deadline) = prepare(shared, key, lock.generation, right)?;
        let result = io::write(
            shared,
            key,
            op,
            Some(deadline),
            || attempt(fence.clone()),
            |l| applied(l, &fence).then_some(l.lease_counter),
        )
        .await;
        match result {
            Ok(w) => {
                done(lock.generation, w);
                return Ok(());
            }
            // Refresh: a counter we can adopt (retry), a handoff request (the next pass defers or finishes it), or a
            // loss.
            Err(error) if error.is_condition_failed() => {
                if let Next::ConfirmIncoming(_) = slots::refresh(shared, key, lock.generation).await {
                    return Err(lost(key));
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(lost(key))
}

/// Writes a checkpoint (see `LeaseCoordinatorHandle::checkpoint`); deferred during an outgoing handoff.
pub(crate) async fn checkpoint(
    shared: &Shared,
    key: &str,
    acquisition: Option<LeaseGeneration>,
    value: &ExtendedSequenceNumber,
) -> Result<(), KclError> {
    let me = shared.worker_id.as_str();
    fenced_write(
        shared,
        Target { key, acquisition },
        "update_checkpoint",
        DuringHandoff::Defer(value),
        |fence| async move { shared.store.update_checkpoint(&fence, value).await },
        |l, fence| ours_after(l, me, fence.counter) && l.checkpoint == *value,
        |generation, w| {
            written(shared, key, generation, w.started, |slot| {
                slot.lease.lease_counter = w.value;
                slot.lease.checkpoint = value.clone();
                slot.lease.pending_checkpoint = None;
                slot.lease.pending_checkpoint_state = None;
                slot.lease.owner_switches_since_checkpoint = 0;
            })
        },
    )
    .await
}

/// Writes a prepared checkpoint (allowed during an outgoing handoff too: it does not clear `checkpoint_owner`).
pub(crate) async fn prepare_checkpoint(
    shared: &Shared,
    key: &str,
    acquisition: Option<LeaseGeneration>,
    pending: &ExtendedSequenceNumber,
    state_bytes: Option<Bytes>,
) -> Result<(), KclError> {
    let me = shared.worker_id.as_str();
    let state_bytes = &state_bytes;
    fenced_write(
        shared,
        Target { key, acquisition },
        "prepare_checkpoint",
        DuringHandoff::Write,
        |fence| async move { shared.store.prepare_checkpoint(&fence, pending, state_bytes.clone()).await },
        |l, fence| ours_after(l, me, fence.counter) && l.pending_checkpoint.as_ref() == Some(pending),
        |generation, w| {
            written(shared, key, generation, w.started, |slot| {
                slot.lease.lease_counter = w.value;
                slot.lease.pending_checkpoint = Some(pending.clone());
                slot.lease.pending_checkpoint_state = state_bytes.clone();
            })
        },
    )
    .await
}

/// Records a finished shard's children (owner only).
pub(crate) async fn update_child_shards(
    shared: &Shared,
    key: &str,
    acquisition: Option<LeaseGeneration>,
    children: &[String],
) -> Result<(), KclError> {
    let me = shared.worker_id.as_str();
    fenced_write(
        shared,
        Target { key, acquisition },
        "update_child_shards",
        DuringHandoff::Refuse,
        |fence| async move { shared.store.update_child_shards(&fence, children).await },
        |l, fence| ours_after(l, me, fence.counter) && l.child_shard_ids == children,
        |generation, w| {
            written(shared, key, generation, w.started, |slot| {
                slot.lease.lease_counter = w.value;
                slot.lease.child_shard_ids = children.to_vec();
            })
        },
    )
    .await
}

/// Gives a lease up: an outgoing handoff is finished; an owned lease is released (unowned, takeable at once).
pub(crate) async fn release(shared: &Shared, key: &str) -> Result<(), KclError> {
    fenced_write(
        shared,
        Target { key, acquisition: None },
        "release_lease",
        DuringHandoff::Finish,
        |fence| async move { shared.store.release_lease(&fence).await },
        |l, fence| l.lease_owner.is_none() && l.lease_counter == fence.counter + 1,
        |generation, _| super::handoff::drop_slot(shared, key, generation, LostReason::Released),
    )
    .await
}
