//! Shared test harness for kcl-rs integration tests: real emulators on loopback, SDK clients pointed at them, and
//! unique resource names so tests run in parallel.
#![deny(missing_docs)]

pub mod emulators;
pub mod kinesis;
pub mod own_kinesis;
pub mod proxy;

pub use emulators::{Emulators, emulators, unique_name};
