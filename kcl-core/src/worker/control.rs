//! The consumer's view of its lease: fenced checkpoints and child-shard updates through the lease coordinator.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::KclError;
use crate::lease::coordinator::LeaseCoordinatorHandle;
use crate::lifecycle::ShardLeaseControl;
use crate::process::CheckpointSink;
use crate::types::ExtendedSequenceNumber;

/// Routes a consumer's writes through the coordinator, which serialises them with renewals and fences them with the
/// current owner and counter.
pub(crate) struct CoordinatorControl(pub(crate) LeaseCoordinatorHandle);

#[async_trait]
impl CheckpointSink for CoordinatorControl {
    async fn checkpoint(&self, lease_key: &str, position: &ExtendedSequenceNumber) -> Result<(), KclError> {
        let written = self.0.checkpoint(lease_key, position).await;
        let outcome = if written.is_ok() { "ok" } else { "failed" };
        metrics::counter!(crate::telemetry::CHECKPOINTS, "worker" => self.0.worker_id().to_owned(), "outcome" => outcome)
            .increment(1);
        written
    }

    async fn prepare_checkpoint(
        &self,
        lease_key: &str,
        position: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<(), KclError> {
        self.0.prepare_checkpoint(lease_key, position, state).await
    }
}

#[async_trait]
impl ShardLeaseControl for CoordinatorControl {
    async fn update_child_shards(&self, lease_key: &str, child_shard_ids: &[String]) -> Result<(), KclError> {
        self.0.update_child_shards(lease_key, child_shard_ids).await
    }

    fn leases_created(&self) {
        self.0.wake_taker();
    }
}
