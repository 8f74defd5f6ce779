//! [`PauseGate`]: the consumer's view of the worker's pause switch (Lambda's `Enabled = false`). While paused a
//! consumer starts no read and delivers nothing; a call in progress finishes, leases stay held and renewed, and
//! checkpoints stay where they are.

use tokio::sync::watch;

/// Whether consumption is paused, and a way to wait for that to change.
#[derive(Clone, Debug)]
pub(crate) struct PauseGate(watch::Receiver<bool>);

impl PauseGate {
    /// A gate following `switch`.
    pub(crate) fn new(switch: watch::Receiver<bool>) -> Self {
        Self(switch)
    }

    pub(crate) fn is_paused(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when the switch flips (never, once the worker is gone: a stop comes then).
    pub(crate) async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
}
