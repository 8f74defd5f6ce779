//! Everything for tests and zero-setup demos in one place (feature `test-util`): the in-memory stand-ins for
//! Kinesis and the lease table, fault injection, and test harnesses. Each lives in the stage whose trait it
//! implements (the in-memory stream beside the readers in [`retrieve`](crate::retrieve), the memory store beside
//! [`LeaseStore`](crate::lease::LeaseStore), …); this module only gathers them.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use kcl_core::testing::{MemoryLeaseStore, MemoryStream, RecordingProcessor, Seen};
//!
//! let stream = MemoryStream::new("orders", 2);
//! stream.put("customer-1", "hello")?;
//! let seen = Arc::new(Mutex::new(Seen::default()));
//! let worker = kcl_core::Worker::builder(stream.name().clone(), "app")
//!     .record_source(Arc::new(stream.clone()))
//!     .shard_lister(Arc::new(stream))
//!     .lease_store(Arc::new(MemoryLeaseStore::new()))
//!     .processor_factory(move |_shard: &str| RecordingProcessor::new(seen.clone()))
//!     .build()?;
//! # let _ = worker;
//! # Ok::<(), kcl_core::KclError>(())
//! ```
//!
//! Stream-side faults (throttling, expired iterators, …) are configured through
//! [`memory_stream::FaultConfig`](crate::retrieve::memory_stream::FaultConfig); lease-store faults through
//! [`FaultConfig`] here.

pub use crate::discover::{MEMORY_ACCOUNT_ID, MemoryStreams};
pub use crate::lease::contract;
pub use crate::lease::fleet;
pub use crate::lease::{FaultConfig, FaultStats, FaultSwitch, FaultTarget, FaultyLeaseStore, MemoryLeaseStore};
pub use crate::process::recording::{RecordingProcessor, Seen};
pub use crate::retrieve::memory_stream::{Fault, MemoryStream, MemoryStreamConfig};
