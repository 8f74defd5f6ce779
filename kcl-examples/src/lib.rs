//! Shared pieces of the kcl-rs examples: where their stream and lease table live (memory, emulators or AWS, and the
//! command-line flags that choose), IoT telemetry (formats, rolling windows and alerts, a traffic generator),
//! Kinesis plumbing, a delivery ledger that checks what a fleet processed (every record, duplicates, per-key order),
//! and a SQLite lease store for fleets on one host.
#![deny(missing_docs)]

pub mod backend;
pub mod iot;
pub mod kinesis;
pub mod ledger;
pub mod sqlite_store;

/// Sends the example's logs to stderr (stdout carries its own output), filtered by `RUST_LOG` (default `warn`;
/// `RUST_LOG=info,kcl_core=debug` shows more).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
}
