//! `kcl-admin`: inspect and repair a kcl-rs (or Java KCL) lease table.
//!
//! ```text
//! kcl-admin leases           --table APP [--observe SECONDS]
//! kcl-admin lag              --table APP --stream STREAM
//! kcl-admin reset-checkpoint --table APP LEASE_KEY --to TRIM_HORIZON|LATEST|AT_TIMESTAMP:<rfc3339>|<seq>[/<sub>]
//!                            [--stream STREAM] [--force] [--dry-run]
//! kcl-admin release          --table APP LEASE_KEY
//! kcl-admin repair           --table APP --stream STREAM [--apply]
//! kcl-admin import           --table APP --from JAVA_APP [--overwrite [--force]] [--dry-run]
//! kcl-admin dashboard        --table APP --stream STREAM [--bind 127.0.0.1:9797] [--interval S] [--window MIN]
//! ```
//!
//! Every subcommand also takes `--json` (one JSON document on stdout, also for errors: `{"error": {...}}`),
//! `--region`, and `--kinesis-endpoint URL` / `--dynamodb-endpoint URL` for the emulators; without them the
//! standard AWS credential chain and region are used.
//!
//! * `leases` (see `leases.rs`): the table holds no timestamps, so a lease's age is shown through its counter.
//! * `lag` (see `lag.rs` for exactly what is measured): `MillisBehindLatest` right after each shard's checkpoint.
//! * `reset-checkpoint` and `release` (see `reset.rs`): fenced writes through the `LeaseStore` trait.
//!   `AT_TIMESTAMP:<time>` is resolved to the last record before the time (see `position.rs`).
//! * `repair` (see `repair.rs`): rewrites or deletes the items workers cannot read, fenced on their raw contents.
//! * `import` (see `import.rs`): adopts a Java KCL table's checkpoints.
//! * `dashboard` (see `dashboard/`): a live web page of the lease map, lag, workers and lease moves.
//!
//! `RUST_LOG` (e.g. `RUST_LOG=debug`, or `kcl_core=trace,aws=debug`) logs to stderr what the tool and the AWS SDK
//! do; without it nothing is logged. No level logs credentials or record payloads.
//!
//! Exit codes: 0 success; 1 a failed call or a partly failed import; 2 bad arguments; 3 refused (the lease is
//! owned, finished, or changed meanwhile); 4 no such lease, table or stream; 5 an endpoint cannot be reached.

mod cli;
mod connect;
mod dashboard;
mod error;
mod import;
mod kinesis;
mod lag;
mod leases;
mod output;
mod position;
mod repair;
mod reset;

use clap::Parser;

use cli::{Cli, Command};
use connect::Aws;
use error::AdminError;
use output::{emit, emit_error};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    init_logging();
    let json = cli.command.common().json;
    let code = match run(cli.command).await {
        Ok(code) => code,
        Err(error) => {
            emit_error(&error, json);
            error.exit_code()
        }
    };
    std::process::exit(code);
}

/// Runs one subcommand and prints its report; returns the exit code.
async fn run(command: Command) -> Result<i32, AdminError> {
    let common = command.common().clone();
    let aws = Aws::connect(&common).await;
    let table = common.table.as_str();
    match command {
        Command::Leases { observe, .. } => {
            let store = aws.open_table(table, false).await?.store;
            emit(&leases::run(&store, table, observe).await?, common.json)
        }
        Command::Lag { stream, .. } => {
            let store = aws.open_table(table, false).await?.store;
            emit(&lag::run(&store, &aws, table, &stream).await?, common.json)
        }
        Command::ResetCheckpoint { lease_key, to, stream, force, dry_run, .. } => {
            let store = aws.open_table(table, false).await?.store;
            let args =
                reset::ResetArgs { lease_key: &lease_key, target: &to, stream: stream.as_deref(), force, dry_run };
            emit(&reset::reset(&store, &aws, table, args).await?, common.json)
        }
        Command::Release { lease_key, .. } => {
            let store = aws.open_table(table, false).await?.store;
            emit(&reset::release(&store, table, &lease_key).await?, common.json)
        }
        Command::Repair { stream, apply, .. } => {
            let store = aws.open_table(table, false).await?.store;
            emit(&repair::run(&store, &aws, table, &stream, apply).await?, common.json)
        }
        Command::Import { from, overwrite, force, dry_run, .. } => {
            let args = import::ImportArgs { from: &from, table, overwrite, force, dry_run };
            emit(&import::run(&aws, args).await?, common.json)
        }
        Command::Dashboard { stream, bind, interval, window, .. } => {
            let options = dashboard::Options {
                bind,
                interval: std::time::Duration::from_secs(interval),
                window: std::time::Duration::from_secs(window * 60),
            };
            dashboard::run(aws, table, &stream, options).await
        }
    }
}

/// Logs to stderr at the `RUST_LOG` filter, when it is set (stdout stays the command's output).
fn init_logging() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() else { return };
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
}
