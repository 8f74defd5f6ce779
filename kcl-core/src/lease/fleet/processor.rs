//! The fleet harness's simulated record processors: one event loop per worker answering its coordinator's
//! [`LeaseEvent`]s, and one task per held lease checkpointing now and then, each step written to the [`Timeline`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::timeline::{Kind, Timeline, next_checkpoint};
use crate::error::KclError;
use crate::lease::coordinator::{LeaseCoordinatorHandle, LeaseEvent, LeaseGeneration, LostReason};

/// The leases a worker is processing, and the task checkpointing each.
#[derive(Default)]
pub(super) struct Processing {
    running: Mutex<HashSet<String>>,
    tasks: Mutex<HashMap<String, JoinHandle<()>>>,
    /// The acquisition each lease was last started under: every checkpoint is written on its behalf.
    acquisitions: Mutex<HashMap<String, LeaseGeneration>>,
    /// Every `Lost` the coordinator emitted, in order, with its reason (also after the lease stopped running here).
    lost: Mutex<Vec<(String, LostReason)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Processing {
    /// The `Lost` events seen so far, with their reasons.
    pub(super) fn lost(&self) -> Vec<(String, LostReason)> {
        lock(&self.lost).clone()
    }

    /// Aborts every lease task and returns the leases that were running (a crash: no `Stop` recorded here).
    pub(super) fn abort_all(&self) -> Vec<String> {
        for (_, task) in lock(&self.tasks).drain() {
            task.abort();
        }
        lock(&self.running).drain().collect()
    }

    fn stop(&self, me: &str, lease: &str, why: &str, timeline: &Timeline) {
        if let Some(task) = lock(&self.tasks).remove(lease) {
            task.abort();
        }
        if lock(&self.running).remove(lease) {
            timeline.record(me, lease, Kind::Stop { why: why.to_owned() });
        }
    }
}

/// A simulated pipeline for one worker. Like a real one, each lease is processed by its own task (here: it
/// checkpoints now and then), so a slow checkpoint of one lease never delays reacting to another lease's events.
/// The event loop records `Start` on `Acquired`, stops the lease's task and records `Stop` on `HandoffRequested`
/// or `Lost`, and answers `HandoffRequested` (final checkpoint, then `handoff_done`) from a separate task.
pub(super) async fn process(
    handle: LeaseCoordinatorHandle,
    mut events: mpsc::UnboundedReceiver<LeaseEvent>,
    timeline: Arc<Timeline>,
    processing: Arc<Processing>,
    checkpoint_every: Option<Duration>,
) {
    let me = handle.worker_id().to_owned();
    while let Some(event) = events.recv().await {
        match event {
            LeaseEvent::Acquired { lease, generation } => {
                let key = lease.lease_key.clone();
                timeline.record(&me, &key, Kind::Start { checkpoint: lease.checkpoint.clone() });
                lock(&processing.running).insert(key.clone());
                lock(&processing.acquisitions).insert(key.clone(), generation);
                if let Some(every) = checkpoint_every {
                    let task = tokio::spawn(process_lease(
                        handle.clone(),
                        key.clone(),
                        generation,
                        every,
                        timeline.clone(),
                        processing.clone(),
                    ));
                    if let Some(old) = lock(&processing.tasks).insert(key, task) {
                        old.abort();
                    }
                }
            }
            LeaseEvent::HandoffRequested { lease_key } => {
                processing.stop(&me, &lease_key, "handoff requested", &timeline);
                let (handle, timeline) = (handle.clone(), timeline.clone());
                let acquisition = lock(&processing.acquisitions).get(&lease_key).copied();
                tokio::spawn(async move {
                    let me = handle.worker_id();
                    let final_checkpoint = next_checkpoint();
                    let checkpointed = match acquisition {
                        Some(acquisition) => handle.checkpoint_in(acquisition, &lease_key, &final_checkpoint).await,
                        None => handle.checkpoint(&lease_key, &final_checkpoint).await,
                    }
                    .is_ok();
                    if checkpointed {
                        timeline.record(me, &lease_key, Kind::Final { checkpoint: final_checkpoint });
                    }
                    if handle.handoff_done(&lease_key).await.is_err() && checkpointed {
                        timeline.record(me, &lease_key, Kind::FinalFailed);
                    }
                });
            }
            LeaseEvent::Lost { lease_key, reason } => {
                processing.stop(&me, &lease_key, &format!("lost: {reason:?}"), &timeline);
                lock(&processing.lost).push((lease_key, reason));
            }
        }
    }
}

/// Processing one lease: checkpoint every `every` until the coordinator refuses.
async fn process_lease(
    handle: LeaseCoordinatorHandle,
    lease: String,
    acquisition: LeaseGeneration,
    every: Duration,
    timeline: Arc<Timeline>,
    processing: Arc<Processing>,
) {
    loop {
        tokio::time::sleep(every).await;
        match handle.checkpoint_in(acquisition, &lease, &next_checkpoint()).await {
            Err(KclError::LeaseLost { .. }) => {
                if lock(&processing.running).remove(&lease) {
                    timeline.record(handle.worker_id(), &lease, Kind::Stop { why: "checkpoint rejected".into() });
                }
                return;
            }
            Err(KclError::Shutdown) => return,
            _ => {}
        }
    }
}
