//! [`MultilangError`]: what can stop the daemon or fail a child's turn, each with what to do about it.

use std::path::PathBuf;

/// Errors of kcl-multilang.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MultilangError {
    /// The properties file could not be read.
    #[error("cannot read the properties file {path}: {source}")]
    ReadProperties {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key has a value kcl-multilang cannot use.
    #[error("{origin}:{line}: bad value for `{key}`: {problem}")]
    BadValue {
        /// The properties file.
        origin: String,
        /// The line of the entry.
        line: usize,
        /// The key, as the Java daemon spells it.
        key: &'static str,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// A required key is missing.
    #[error("{origin}: the required key `{key}` is missing (e.g. `{hint}`)")]
    MissingKey {
        /// The properties file.
        origin: String,
        /// The key.
        key: &'static str,
        /// An example line.
        hint: &'static str,
    },
    /// The child program could not be started.
    #[error("cannot start the record processor `{program}` for shard {shard_id}: {source} (check `executableName`)")]
    Spawn {
        /// The program.
        program: String,
        /// The shard it was started for.
        shard_id: String,
        /// Why.
        source: std::io::Error,
    },
    /// The child broke the protocol, exited, hung or could not be written to; its turn is retried on a fresh child.
    #[error("record processor for shard {shard_id} failed during `{action}`: {problem}")]
    Child {
        /// The shard.
        shard_id: String,
        /// The message the daemon was waiting on a reply to.
        action: &'static str,
        /// What happened.
        problem: String,
    },
    /// The framework failed.
    #[error(transparent)]
    Kcl(#[from] kcl_core::KclError),
    /// The graceful shutdown did not finish within `shutdownGraceMillis`.
    #[error(
        "graceful shutdown did not finish within shutdownGraceMillis = {millis} ms; records since the last checkpoints \
         will be delivered again"
    )]
    ShutdownTimedOut {
        /// The grace, in milliseconds.
        millis: u128,
    },
    /// Signal handlers could not be installed.
    #[error("cannot listen for SIGTERM/SIGINT: {0}")]
    Signal(std::io::Error),
    /// The worker task ended abnormally.
    #[error("the worker stopped abnormally: {0}")]
    Worker(String),
    /// The lease table could not be opened.
    #[error("lease table: {0}")]
    LeaseTable(String),
}
