//! [`TumblingWindows`]: the [`RecordProcessor`] that cuts a shard's batches into windows, keeps each window's state,
//! ends windows and checkpoints only after a window's result was accepted.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{Window, WindowEnd, WindowProcessor, validate, window_of};
use crate::KclError;
use crate::process::{
    Batch, BatchFailure, BatchResult, Checkpointer, InitializeInput, ProcessorError, ProcessorFactory, RecordProcessor,
};
use crate::types::ExtendedSequenceNumber;

/// A window with the state folded so far and its last applied record.
struct OpenWindow<S> {
    window: Window,
    state: S,
    last: Option<ExtendedSequenceNumber>,
}

/// A window whose end is being published: `window_ended` (unless it already succeeded), then the checkpoint.
struct Closing<S> {
    open: OpenWindow<S>,
    end: WindowEnd,
    published: bool,
}

/// Runs a [`WindowProcessor`] over tumbling windows of a fixed length (Lambda's `TumblingWindowInSeconds`); see
/// the [module documentation](super) for the rules. One per shard, made by the worker through
/// [`TumblingWindows::factory`].
pub struct TumblingWindows<W: WindowProcessor> {
    inner: W,
    length: Duration,
    shard_id: Arc<str>,
    open: Option<OpenWindow<W::State>>,
    closing: Option<Closing<W::State>>,
    /// The last record folded into a window's state: redelivered records up to it (after a failed call that had
    /// already applied part of its batch) are not applied twice.
    applied: Option<ExtendedSequenceNumber>,
}

impl<W: WindowProcessor> std::fmt::Debug for TumblingWindows<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TumblingWindows")
            .field("length", &self.length)
            .field("shard_id", &self.shard_id)
            .field("open", &self.open.as_ref().map(|open| &open.window))
            .finish_non_exhaustive()
    }
}

impl<W: WindowProcessor> TumblingWindows<W> {
    /// Windows of `length` (at most 15 minutes) around `inner`.
    pub fn new(length: Duration, inner: W) -> Result<Self, KclError> {
        validate(length)?;
        Ok(Self { inner, length, shard_id: Arc::from(""), open: None, closing: None, applied: None })
    }

    /// A processor factory making windowed processors from `factory` (called once per shard).
    pub fn factory<F>(length: Duration, factory: F) -> Result<TumblingWindowFactory<F>, KclError>
    where
        F: Fn(&str) -> W + Send + Sync + 'static,
    {
        validate(length)?;
        Ok(TumblingWindowFactory { length, factory })
    }

    /// The wrapped processor.
    pub fn inner(&self) -> &W {
        &self.inner
    }

    /// The wrapped processor, mutably.
    pub fn inner_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Publishes the closing window, if any: `window_ended`, then the checkpoint at its last record.
    async fn finish_closing(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        let Some(closing) = self.closing.as_mut() else { return Ok(()) };
        if !closing.published {
            self.inner.window_ended(&closing.open.window, &closing.open.state, closing.end).await?;
            closing.published = true;
        }
        if let Some(last) = closing.open.last.clone() {
            checkpointer.checkpoint_at(last).await?;
        }
        self.closing = None;
        Ok(())
    }

    /// Ends the open window (if it holds records) and publishes it.
    async fn end_open(&mut self, end: WindowEnd, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        if let Some(open) = self.open.take()
            && open.last.is_some()
        {
            self.closing = Some(Closing { open, end, published: false });
        }
        self.finish_closing(checkpointer).await
    }

    /// The batch's records not yet applied, cut into runs of one window each.
    fn runs(&self, batch: &Batch) -> Vec<(Window, Range<usize>)> {
        let now = SystemTime::now();
        let mut runs: Vec<(Window, Range<usize>)> = Vec::new();
        let mut floor = self.open.as_ref().map(|open| open.window.clone());
        for (offset, record) in batch.records.iter().enumerate() {
            if self.applied.as_ref().is_some_and(|applied| record.extended_sequence_number() <= *applied) {
                continue;
            }
            let mut window =
                window_of(&self.shard_id, record.approximate_arrival_timestamp.unwrap_or(now), self.length);
            // Never reopen a window: a record stamped earlier than the current window joins it.
            if let Some(current) = &floor
                && window.start < current.start
            {
                window = current.clone();
            }
            match runs.last_mut() {
                Some((last, range)) if *last == window && range.end == offset => range.end = offset + 1,
                _ => runs.push((window.clone(), offset..offset + 1)),
            }
            floor = Some(window);
        }
        runs
    }
}

#[async_trait]
impl<W: WindowProcessor> RecordProcessor for TumblingWindows<W> {
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        self.shard_id = Arc::from(input.shard_id.as_str());
        self.inner.initialize(input).await
    }

    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        self.finish_closing(checkpointer).await?;
        let runs = self.runs(batch);
        let whole = runs.len() == 1 && runs[0].1 == (0..batch.records.len());
        for (window, range) in runs {
            if self.open.as_ref().is_none_or(|open| window.start > open.window.start) {
                self.end_open(WindowEnd::Closed, checkpointer).await?;
                self.open = Some(OpenWindow { window, state: W::State::default(), last: None });
            }
            let Some(open) = self.open.as_mut() else { continue };
            let part;
            let records = if whole {
                batch
            } else {
                part = Batch {
                    records: batch.records[range.clone()].to_vec(),
                    millis_behind_latest: batch.millis_behind_latest,
                    shard_id: batch.shard_id.clone(),
                };
                &part
            };
            let before = open.state.clone();
            if let Err(error) = self.inner.process(&open.window, &mut open.state, records).await {
                open.state = before;
                return Err(BatchFailure::batch(error));
            }
            let last = records.last_position();
            open.last.clone_from(&last);
            self.applied = last;
        }
        // Caught up (an empty read) and past the window's end: nothing more can arrive for it.
        if batch.records.is_empty() && self.open.as_ref().is_some_and(|open| SystemTime::now() >= open.window.end) {
            self.end_open(WindowEnd::Closed, checkpointer).await?;
        }
        Ok(())
    }

    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        self.finish_closing(checkpointer).await?;
        self.end_open(WindowEnd::ShardEnded, checkpointer).await
    }

    fn tumbling_window(&self) -> Option<Duration> {
        Some(self.length)
    }
}

/// Makes a [`TumblingWindows`] per shard; see [`TumblingWindows::factory`].
pub struct TumblingWindowFactory<F> {
    length: Duration,
    factory: F,
}

impl<F, W> ProcessorFactory for TumblingWindowFactory<F>
where
    F: Fn(&str) -> W + Send + Sync + 'static,
    W: WindowProcessor,
{
    type Processor = TumblingWindows<W>;

    fn create(&self, shard_id: &str) -> TumblingWindows<W> {
        TumblingWindows {
            inner: (self.factory)(shard_id),
            length: self.length,
            shard_id: Arc::from(shard_id),
            open: None,
            closing: None,
            applied: None,
        }
    }
}
