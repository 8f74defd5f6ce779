//! Processing: the [`RecordProcessor`] trait applications implement, the [`Batch`] it receives and the
//! [`Checkpointer`] it records progress with.

mod batch;
mod checkpointer;
mod outcome;
mod processor;

pub use batch::Batch;
pub use checkpointer::{CheckpointSink, Checkpointer};
pub use outcome::{BatchFailure, BatchResult};
pub use processor::{InitializeInput, LeaseLostInput, ProcessorError, ProcessorFactory, RecordProcessor};
