//! Processing: the [`RecordProcessor`] trait applications implement, the [`Batch`] it receives and the
//! [`Checkpointer`] it records progress with.

mod batch;
mod checkpointer;
pub mod failure;
mod filter;
mod interval;
mod outcome;
mod pattern;
mod policy;
mod processor;
#[cfg(feature = "test-util")]
pub mod recording;
pub mod window;

pub use batch::Batch;
pub use checkpointer::{CheckpointSink, Checkpointer};
pub use failure::{FailedRecords, FailureDestination, FailureReason, JsonLinesDestination, KinesisStreamDestination};
pub use filter::{JsonFilter, RecordFilter};
pub use interval::CheckpointInterval;
pub use outcome::{BatchFailure, BatchResult, ProcessorError};
pub use pattern::FilterCriteria;
pub use policy::{Checkpointing, OnExhausted, PartialRetry, ProcessingConfig, RetryPolicy};
pub use processor::{InitializeInput, LeaseLostInput, ProcessorFactory, RecordProcessor};
pub use window::{TumblingWindows, Window, WindowEnd, WindowProcessor};
