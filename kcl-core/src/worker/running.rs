//! The worker's table of running shard consumers: starting one on its own task, and the rule for asking it to stop.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::lease::{Lease, LeaseGeneration};
use crate::lifecycle::{ConsumerExit, ShardConsumer, StopReason, StopSignal};
use crate::process::ProcessorFactory;

/// A running shard consumer, as the worker tracks it.
pub(super) struct Running {
    pub(super) stop: watch::Sender<Option<StopReason>>,
    /// The lease's stream identifier (multi-stream applications).
    pub(super) stream: Option<String>,
    /// The acquisition the consumer runs under: its writes are refused once that ends.
    pub(super) acquisition: LeaseGeneration,
}

pub(super) fn set_once(current: &mut Option<StopReason>, reason: StopReason) -> bool {
    // A loss overrides a pending graceful stop (checkpoints would fail anyway); otherwise the first request wins.
    match current {
        None => {
            *current = Some(reason);
            true
        }
        Some(StopReason::LeaseLost) => false,
        Some(_) if reason == StopReason::LeaseLost => {
            *current = Some(reason);
            true
        }
        Some(_) => false,
    }
}

pub(super) fn start_consumer<F: ProcessorFactory>(
    tasks: &mut JoinSet<(String, ConsumerExit)>,
    running: &mut HashMap<String, Running>,
    consumer: &Arc<ShardConsumer>,
    factory: &Arc<F>,
    lease: Lease,
    acquisition: LeaseGeneration,
) {
    let (stop_tx, stop) = StopSignal::new();
    let lease_key = lease.lease_key.clone();
    let stream = lease.stream_identifier.clone();
    let consumer = consumer.clone();
    let factory = factory.clone();
    metrics::gauge!(crate::telemetry::SHARD_CONSUMERS).increment(1.0);
    tasks.spawn(
        async move {
            let key = lease.lease_key.clone();
            let exit = consumer.run(lease, acquisition, &*factory, stop).await;
            metrics::gauge!(crate::telemetry::SHARD_CONSUMERS).decrement(1.0);
            (key, exit)
        }
        .in_current_span(),
    );
    running.insert(lease_key, Running { stop: stop_tx, stream, acquisition });
}
