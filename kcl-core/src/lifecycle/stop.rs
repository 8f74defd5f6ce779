//! Stopping a shard consumer: why the worker stops it ([`StopReason`]) and the signal every part of the consumer
//! waits on ([`StopSignal`]). The lowest file of `lifecycle/`: the consumer, its lanes, the dispatcher and the retry
//! helper all select on it.

use tokio::sync::watch;

/// Why the worker stops a consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The worker is shutting down: checkpoint and stop (`shutdown_requested`).
    Shutdown,
    /// The lease is being handed to another worker: checkpoint and stop (`shutdown_requested`).
    Handoff,
    /// The lease was lost: stop without checkpointing (`lease_lost`).
    LeaseLost,
}

/// The receiving side of a stop request.
#[derive(Clone, Debug)]
pub(crate) struct StopSignal(watch::Receiver<Option<StopReason>>);

impl StopSignal {
    /// A signal and the sender that fires it.
    pub(crate) fn new() -> (watch::Sender<Option<StopReason>>, Self) {
        let (tx, rx) = watch::channel(None);
        (tx, Self(rx))
    }

    /// The stop requested so far, if any.
    pub(crate) fn current(&self) -> Option<StopReason> {
        *self.0.borrow()
    }

    /// Resolves once a stop is requested (at once if it already was). If the sender is dropped the worker is gone,
    /// which is treated as a lost lease: nothing may be checkpointed any more.
    pub(crate) async fn requested(&mut self) -> StopReason {
        match self.0.wait_for(Option::is_some).await {
            Ok(reason) => reason.unwrap_or(StopReason::LeaseLost),
            Err(_) => StopReason::LeaseLost,
        }
    }
}
