//! # kcl-core
//!
//! The Kinesis consumer framework: a fleet of workers shares the shards of a stream through leases, reads their
//! records, takes KPL aggregates apart, hands batches to your [`RecordProcessor`] and checkpoints them, with
//! at-least-once delivery.
//!
//! The pipeline, one module per stage:
//! [`discover`] → [`lease`] → [`retrieve`] → [`deaggregate`] → batch → process → checkpoint.
//!
//! Storage for leases and checkpoints goes through the [`lease::LeaseStore`] trait only; this crate never names
//! DynamoDB (see `kcl-dynamo-lease` for that store).
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// `with_<field>(self, value) -> Self` setters for the public fields of a `#[non_exhaustive]` settings struct, so
/// other crates can still write one expression: `PollingConfig::default().with_max_records(100)`.
macro_rules! with_setters {
    ($type:ty { $($setter:ident => $field:ident: $value:ty),* $(,)? }) => {
        impl $type {
            $(
                #[doc = concat!("Sets [`", stringify!($field), "`](Self::", stringify!($field), ").")]
                #[must_use]
                pub fn $setter(mut self, value: $value) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

pub mod config;
pub mod deaggregate;
pub mod discover;
pub mod emf;
pub mod error;
pub mod lease;
mod lifecycle;
pub mod process;
pub mod retrieve;
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod types;
pub mod worker;

pub use error::KclError;
pub use process::{Batch, BatchFailure, BatchResult, Checkpointer, ProcessorFactory, RecordProcessor};
pub use types::{ExtendedSequenceNumber, HashKeyRange, InitialPosition, KinesisRecord, Record, SequenceNumber, Shard};
pub use worker::{PauseHandle, Retrieval, ShutdownHandle, Worker, WorkerBuilder, WorkerConfig};
