//! Shared test harness for kcl-rs integration tests: real emulators on loopback, SDK clients pointed at them, and
//! unique resource names so tests run in parallel; the fault-injecting proxy ([`proxy`]) and
//! the chaos verifier ([`verify`]).
#![deny(missing_docs)]

pub mod chaos;
pub mod emulators;
pub mod interop;
pub mod kinesis;
pub mod logs;
pub mod moto;
pub mod own_kinesis;
pub mod postgres;
pub mod proxy;
pub mod verify;

pub use emulators::{Emulators, emulators, unique_name};
