//! The consumer's view of its lease: fenced checkpoints and child-shard updates through the lease coordinator, each
//! on behalf of the acquisition the consumer runs under.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::KclError;
use std::sync::Arc;

use crate::lease::LeaseGeneration;
use crate::lease::coordinator::LeaseCoordinatorHandle;
use crate::lifecycle::ShardLeaseControl;
use crate::process::CheckpointSink;
use crate::types::ExtendedSequenceNumber;

/// Routes a consumer's writes through the coordinator, which serialises them with renewals and fences them with the
/// current owner and counter, and (once bound to an acquisition) refuses them when that acquisition has ended.
pub(crate) struct CoordinatorControl {
    coordinator: LeaseCoordinatorHandle,
    acquisition: Option<LeaseGeneration>,
}

impl CoordinatorControl {
    /// The worker's control, not bound to an acquisition: each consumer gets a bound one
    /// ([`for_acquisition`](ShardLeaseControl::for_acquisition)).
    pub(crate) fn new(coordinator: LeaseCoordinatorHandle) -> Self {
        Self { coordinator, acquisition: None }
    }
}

#[async_trait]
impl CheckpointSink for CoordinatorControl {
    async fn checkpoint(&self, lease_key: &str, position: &ExtendedSequenceNumber) -> Result<(), KclError> {
        let written = match self.acquisition {
            Some(acquisition) => self.coordinator.checkpoint_in(acquisition, lease_key, position).await,
            None => self.coordinator.checkpoint(lease_key, position).await,
        };
        let outcome = if written.is_ok() { "ok" } else { "failed" };
        let worker = self.coordinator.worker_id().to_owned();
        metrics::counter!(crate::telemetry::CHECKPOINTS, "worker" => worker, "outcome" => outcome).increment(1);
        written
    }

    async fn prepare_checkpoint(
        &self,
        lease_key: &str,
        position: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<(), KclError> {
        match self.acquisition {
            Some(acquisition) => self.coordinator.prepare_checkpoint_in(acquisition, lease_key, position, state).await,
            None => self.coordinator.prepare_checkpoint(lease_key, position, state).await,
        }
    }
}

#[async_trait]
impl ShardLeaseControl for CoordinatorControl {
    async fn update_child_shards(&self, lease_key: &str, child_shard_ids: &[String]) -> Result<(), KclError> {
        match self.acquisition {
            Some(acquisition) => self.coordinator.update_child_shards_in(acquisition, lease_key, child_shard_ids).await,
            None => self.coordinator.update_child_shards(lease_key, child_shard_ids).await,
        }
    }

    fn leases_created(&self) {
        self.coordinator.wake_taker();
    }

    fn for_acquisition(&self, acquisition: LeaseGeneration) -> Arc<dyn ShardLeaseControl> {
        Arc::new(Self { coordinator: self.coordinator.clone(), acquisition: Some(acquisition) })
    }
}
