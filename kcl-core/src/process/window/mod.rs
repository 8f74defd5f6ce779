//! Tumbling windows (Lambda's `TumblingWindowInSeconds`): [`TumblingWindows`] adapts a [`WindowProcessor`] into a
//! [`RecordProcessor`](crate::RecordProcessor) that keeps per-shard state across the batches of a window and hands it
//! over when the window ends.
//!
//! The rules:
//! - windows are aligned to the Unix epoch (`[k·len, (k+1)·len)`) and a record belongs to the window of its
//!   `approximate_arrival_timestamp`, as in Lambda; a record arriving with an earlier timestamp than the open window
//!   (clock skew between Kinesis hosts) joins the open window, windows are never reopened;
//! - a window ends when a record of a later window arrives, or when the shard is caught up (an empty read) and the
//!   window's end has passed — the framework delivers empty batches to windowed processors for that — or at the
//!   shard's end (a split or merge), so **a window never mixes shards**;
//! - the **checkpoint moves only when [`WindowProcessor::window_ended`] returned `Ok`**, to the window's last
//!   record. A crash, a lease move or a shutdown before that replays the open window from its start on the next
//!   owner, with fresh state: results are at-least-once, and state never needs storing;
//! - a failed [`process`](WindowProcessor::process) call leaves the state as it was before the call (Lambda keeps
//!   the state of the last successful invocation), and the batch is retried by the consumer's
//!   [`RetryPolicy`](super::RetryPolicy); a failed `window_ended` is retried before anything else.
//!
//! The framework refuses windowed processors with automatic checkpointing or parallelism above 1 (the checkpoint
//! must follow the windows).

mod adapter;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

pub use adapter::{TumblingWindowFactory, TumblingWindows};

use super::{Batch, InitializeInput, ProcessorError};
use crate::KclError;

/// Lambda's upper bound for `TumblingWindowInSeconds`: 15 minutes.
pub const MAX_TUMBLING_WINDOW: Duration = Duration::from_secs(15 * 60);

/// One window of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// The shard whose records the window holds.
    pub shard_id: Arc<str>,
    /// Inclusive start.
    pub start: SystemTime,
    /// Exclusive end.
    pub end: SystemTime,
}

/// Why a window ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowEnd {
    /// Its time passed (Lambda's final invocation for the window, `isFinalInvokeForWindow`).
    Closed,
    /// The shard ended before the window's time passed (Lambda's `isWindowTerminatedEarly` after a reshard).
    ShardEnded,
}

/// Processes records window by window, carrying state between the batches of a window. Wrap it in
/// [`TumblingWindows`] (or make a factory with [`TumblingWindows::factory`]).
///
/// ```
/// use kcl_core::process::{Batch, ProcessorError, TumblingWindows, Window, WindowEnd, WindowProcessor};
/// # use std::time::Duration;
///
/// /// Counts records per window.
/// struct Counter;
///
/// #[async_trait::async_trait]
/// impl WindowProcessor for Counter {
///     type State = u64;
///     async fn process(&mut self, _: &Window, count: &mut u64, batch: &Batch) -> Result<(), ProcessorError> {
///         *count += batch.len() as u64;
///         Ok(())
///     }
///     async fn window_ended(&mut self, window: &Window, count: &u64, _: WindowEnd) -> Result<(), ProcessorError> {
///         println!("{}: {count} records in {:?}", window.shard_id, window.start);
///         Ok(()) // the checkpoint moves past the window's records only now
///     }
/// }
/// let factory = TumblingWindows::factory(Duration::from_secs(60), |_shard: &str| Counter)?;
/// # let _ = factory;
/// # Ok::<(), kcl_core::KclError>(())
/// ```
#[async_trait]
pub trait WindowProcessor: Send + 'static {
    /// State carried between the batches of a window; a new window starts from `Default`.
    type State: Clone + Default + Send + Sync + 'static;

    /// Called once before the first batch.
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        let _ = input;
        Ok(())
    }

    /// Folds `batch` (records of `window` only, in shard order) into `state`. On an error the state is restored to
    /// what it was before the call and the batch is retried.
    async fn process(&mut self, window: &Window, state: &mut Self::State, batch: &Batch) -> Result<(), ProcessorError>;

    /// The window ended with `state`: publish the result. `Ok` lets the checkpoint pass the window's records; an
    /// error retries this call (with the same state) before anything else is processed.
    async fn window_ended(
        &mut self,
        window: &Window,
        state: &Self::State,
        end: WindowEnd,
    ) -> Result<(), ProcessorError>;
}

/// The window holding `at` for windows of `length` (aligned to the epoch).
pub(crate) fn window_of(shard_id: &Arc<str>, at: SystemTime, length: Duration) -> Window {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let length_ms = length.as_millis().max(1);
    let start_ms = since - since % length_ms;
    let start = UNIX_EPOCH + Duration::from_millis(start_ms as u64);
    Window { shard_id: shard_id.clone(), start, end: start + length }
}

/// Checks a window length: above zero and at most [`MAX_TUMBLING_WINDOW`], in whole milliseconds.
pub(crate) fn validate(length: Duration) -> Result<(), KclError> {
    if length.is_zero() || length > MAX_TUMBLING_WINDOW {
        return Err(KclError::InvalidConfig(format!(
            "the tumbling window must be above 0 and at most 15 minutes (Lambda's TumblingWindowInSeconds), got \
             {length:?}"
        )));
    }
    Ok(())
}
