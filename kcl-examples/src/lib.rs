//! Shared pieces of the kcl-rs examples: the IoT reading format, Kinesis plumbing, a delivery ledger that checks what a fleet
//! processed (every record, duplicates, per-key order), and a SQLite lease store for fleets on one host.
#![deny(missing_docs)]

pub mod iot;
pub mod kinesis;
pub mod ledger;
pub mod sqlite_store;
