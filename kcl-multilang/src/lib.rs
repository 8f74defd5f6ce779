//! # kcl-multilang
//!
//! The Java KCL MultiLangDaemon without a JVM. Record processors written for the MultiLangDaemon — amazon-kclpy
//! (Python), aws-kcl (Node.js), and any program that speaks its JSON-lines protocol — run unchanged under this one
//! native binary, with the same properties file:
//!
//! ```text
//! kcl-multilang --properties app.properties
//! ```
//!
//! kcl-rs holds the leases (in a DynamoDB table compatible with Java KCL's), reads the shards, takes KPL aggregates
//! apart, and runs the `executableName` program once per shard, talking to it over stdin/stdout exactly as the Java
//! daemon does. Unlike the Java daemon, a child that exits, hangs past `timeoutInSeconds` or breaks the protocol does
//! not take the daemon down and its batch is never skipped: the batch is retried on a fresh child.
//!
//! Layers, each importing only from those before it: [`properties`] (the file format) → [`config`] (keys and
//! settings) → `protocol` (messages) → `child` (a child process and one protocol turn) → `processor` (kcl-core's
//! `RecordProcessor` over a child) → `daemon` (clients, worker, signals).
#![deny(missing_docs)]

mod child;
pub mod config;
mod daemon;
pub mod error;
mod processor;
pub mod properties;
mod protocol;
pub mod telemetry;

pub use config::DaemonConfig;
pub use daemon::run;
pub use error::MultilangError;
