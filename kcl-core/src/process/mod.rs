//! Processing: the [`RecordProcessor`] trait applications implement, the [`Batch`] it receives and the
//! [`Checkpointer`] it records progress with.

mod batch;
mod checkpointer;
pub mod failure;
mod filter;
mod outcome;
mod policy;
mod processor;

pub use batch::Batch;
pub use checkpointer::{CheckpointSink, Checkpointer};
pub use failure::{FailedRecords, FailureDestination, FailureReason, JsonLinesDestination, KinesisStreamDestination};
pub use filter::{JsonFilter, RecordFilter};
pub use outcome::{BatchFailure, BatchResult, ProcessorError};
pub use policy::{Checkpointing, OnExhausted, PartialRetry, ProcessingConfig, RetryPolicy};
pub use processor::{InitializeInput, LeaseLostInput, ProcessorFactory, RecordProcessor};
