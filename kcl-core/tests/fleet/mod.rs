//! Store wrappers for the in-memory fleet tests: a flaky store and a partitionable one. The fleet itself is
//! `kcl_core::lease::fleet`, shared with the DynamoDB fleet tests in kcl-tests.

pub mod flaky;
pub mod partition;
