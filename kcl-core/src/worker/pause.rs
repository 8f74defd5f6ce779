//! [`PauseHandle`]: pause and resume a running worker's consumption (Lambda's `Enabled`).

use tokio::sync::watch;

/// Pauses and resumes a running [`Worker`](super::Worker)'s consumption, like setting a Lambda event source
/// mapping's `Enabled` to `false` and back. While paused, no shard consumer reads or delivers records (a
/// `process_records` call in progress finishes, and its checkpoint is written as usual); the worker keeps renewing
/// its leases, so no other worker takes them, and every checkpoint stays. Resuming continues each shard after its
/// last delivered record. A paused worker still shuts down gracefully. Cheap to clone.
///
/// ```no_run
/// # async fn example<F: kcl_core::ProcessorFactory>(worker: kcl_core::Worker<F>) {
/// let pause = worker.pause_handle();
/// let task = tokio::spawn(worker.run());
/// pause.pause(); // e.g. while a downstream database is under maintenance
/// pause.resume();
/// # let _ = task;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PauseHandle(pub(super) watch::Sender<bool>);

impl PauseHandle {
    /// Stops reading and delivering records on every shard of the worker.
    pub fn pause(&self) {
        if !self.0.send_replace(true) {
            tracing::info!("consumption paused");
        }
    }

    /// Resumes reading and delivering.
    pub fn resume(&self) {
        if self.0.send_replace(false) {
            tracing::info!("consumption resumed");
        }
    }

    /// Whether consumption is paused.
    pub fn is_paused(&self) -> bool {
        *self.0.borrow()
    }
}
