//! Shared test harness for kcl-rs integration tests: real emulators on loopback, SDK clients pointed at them, and
//! unique resource names so tests run in parallel; the fault-injecting proxy ([`proxy`]).
#![deny(missing_docs)]

pub mod emulators;
pub mod own_kinesis;
pub mod proxy;

pub use emulators::{Emulators, emulators, unique_name};
