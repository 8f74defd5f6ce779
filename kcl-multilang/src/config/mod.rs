//! The daemon's settings, read from the Java MultiLangDaemon's properties file (same format, same keys; the table
//! of honoured keys is in `keys.rs`). An unknown key is a warning naming it; a bad value is an error naming the
//! key, the file and the line.

mod keys;

use std::path::Path;
use std::time::{Duration, SystemTime};

use kcl_core::InitialPosition;

use crate::error::MultilangError;
use crate::properties;

/// `retrievalMode`: how records are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RetrievalMode {
    /// Fan-out, unless a polling key is set (Java's `DEFAULT`).
    #[default]
    Default,
    /// `GetRecords` polling.
    Polling,
    /// Enhanced fan-out (`SubscribeToShard`).
    FanOut,
}

/// Whether the worker polls or subscribes: `retrievalMode`, and under `DEFAULT` Java's rule that any polling key
/// (`maxRecords`, `idleTimeBetweenReadsInMillis`, ...) selects polling.
pub fn uses_polling(mode: RetrievalMode, polling_key_set: bool) -> bool {
    match mode {
        RetrievalMode::Polling => true,
        RetrievalMode::FanOut => false,
        RetrievalMode::Default => polling_key_set,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InitialPositionKey {
    TrimHorizon,
    Latest,
    AtTimestamp,
}

/// Values as read, before the required ones are checked.
#[derive(Default)]
pub(crate) struct Draft {
    executable: Option<Vec<String>>,
    application_name: Option<String>,
    stream_name: Option<String>,
    stream_from_arn: Option<String>,
    region: Option<String>,
    kinesis_endpoint: Option<String>,
    dynamodb_endpoint: Option<String>,
    table_name: Option<String>,
    worker_id: Option<String>,
    initial_position: Option<InitialPositionKey>,
    timestamp: Option<SystemTime>,
    max_records: Option<usize>,
    idle_time_between_reads: Option<Duration>,
    retrieval_mode: RetrievalMode,
    consumer_name: Option<String>,
    failover_time: Option<Duration>,
    shard_sync_interval: Option<Duration>,
    parent_shard_poll_interval: Option<Duration>,
    task_backoff: Option<Duration>,
    call_process_records_even_for_empty: bool,
    max_leases_for_worker: Option<usize>,
    max_leases_to_steal_at_one_time: Option<usize>,
    handoff_timeout: Option<Duration>,
    deletion_protection: bool,
    timeout: Option<Duration>,
    shutdown_grace: Option<Duration>,
    processing_language: Option<String>,
}

/// Everything the daemon needs, read from a properties file. `None` means the kcl-rs default (documented per key in
/// `kcl-multilang --help-keys` and the README).
///
/// ```
/// let text = "executableName = python3 app.py\napplicationName = app\nstreamName = orders\nmaxRecords = 500\n";
/// let (config, notices) = kcl_multilang::DaemonConfig::parse(text, "app.properties").unwrap();
/// assert_eq!(config.executable, ["python3", "app.py"]);
/// assert_eq!(config.table_name, "app"); // the lease table is named after the application
/// assert!(config.polling); // a polling key such as maxRecords selects polling, as in Java
/// assert!(notices.is_empty());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DaemonConfig {
    /// `executableName`, split at spaces: the program and its arguments.
    pub executable: Vec<String>,
    /// `applicationName`.
    pub application_name: String,
    /// `streamName`, or the name inside `streamArn`.
    pub stream_name: String,
    /// `regionName`.
    pub region: Option<String>,
    /// `kinesisEndpoint`.
    pub kinesis_endpoint: Option<String>,
    /// `dynamoDBEndpoint`.
    pub dynamodb_endpoint: Option<String>,
    /// `tableName`, defaulting to the application name.
    pub table_name: String,
    /// `workerId`.
    pub worker_id: Option<String>,
    /// `initialPositionInStream` / `initialPositionInStreamExtended` (default `LATEST`).
    pub initial_position: InitialPosition,
    /// Polling (true) or fan-out: `retrievalMode` and Java's `DEFAULT` rule.
    pub polling: bool,
    /// `maxRecords`.
    pub max_records: Option<usize>,
    /// `idleTimeBetweenReadsInMillis`.
    pub idle_time_between_reads: Option<Duration>,
    /// `consumerName`.
    pub consumer_name: Option<String>,
    /// `failoverTimeMillis`.
    pub failover_time: Option<Duration>,
    /// `shardSyncIntervalMillis`.
    pub shard_sync_interval: Option<Duration>,
    /// `parentShardPollIntervalMillis`.
    pub parent_shard_poll_interval: Option<Duration>,
    /// `taskBackoffTimeMillis`.
    pub task_backoff: Option<Duration>,
    /// `callProcessRecordsEvenForEmptyRecordList`.
    pub call_process_records_even_for_empty: bool,
    /// `maxLeasesForWorker`.
    pub max_leases_for_worker: Option<usize>,
    /// `maxLeasesToStealAtOneTime`.
    pub max_leases_to_steal_at_one_time: Option<usize>,
    /// `gracefulLeaseHandoffTimeoutMillis`.
    pub handoff_timeout: Option<Duration>,
    /// `leaseTableDeletionProtectionEnabled`.
    pub deletion_protection: bool,
    /// `timeoutInSeconds`: the longest wait for a child's next message.
    pub timeout: Option<Duration>,
    /// `shutdownGraceMillis` (default 30 s).
    pub shutdown_grace: Duration,
    /// `processingLanguage`.
    pub processing_language: Option<String>,
}

/// Something worth telling the operator about the file that does not stop the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A key neither kcl-multilang nor the Java daemon knows (a typo?).
    UnknownKey {
        /// The key.
        key: String,
        /// Its line.
        line: usize,
    },
    /// A Java daemon key that has no effect here, and why.
    WithoutEffect {
        /// The key.
        key: String,
        /// Why it does nothing.
        reason: &'static str,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownKey { key, line } => write!(
                f,
                "line {line}: unknown key `{key}` ignored (see `kcl-multilang --help-keys` for the keys read)"
            ),
            Self::WithoutEffect { key, reason } => write!(f, "key `{key}` has no effect in kcl-multilang: {reason}"),
        }
    }
}

impl DaemonConfig {
    /// Reads a properties file.
    pub fn load(path: &Path) -> Result<(Self, Vec<Notice>), MultilangError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| MultilangError::ReadProperties { path: path.to_owned(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Reads the text of a properties file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<(Self, Vec<Notice>), MultilangError> {
        let mut draft = Draft::default();
        let mut notices = Vec::new();
        let mut polling_key_set = false;
        let mut position_line = 0;
        for entry in properties::parse(text) {
            if let Some(key) = keys::find(&entry.key) {
                (key.apply)(&mut draft, &entry.value).map_err(|problem| MultilangError::BadValue {
                    origin: origin.to_owned(),
                    line: entry.line,
                    key: key.name,
                    problem,
                })?;
                polling_key_set |= key.polling;
                if key.name == "initialPositionInStream" {
                    position_line = entry.line;
                }
            } else if let Some(reason) = keys::without_effect(&entry.key) {
                notices.push(Notice::WithoutEffect { key: entry.key, reason });
            } else {
                notices.push(Notice::UnknownKey { key: entry.key, line: entry.line });
            }
        }
        let missing =
            |key: &'static str, hint: &'static str| MultilangError::MissingKey { origin: origin.to_owned(), key, hint };
        let initial_position = match (draft.initial_position, draft.timestamp) {
            (_, Some(time)) => InitialPosition::AtTimestamp(time),
            (Some(InitialPositionKey::AtTimestamp), None) => {
                return Err(MultilangError::BadValue {
                    origin: origin.to_owned(),
                    line: position_line,
                    key: "initialPositionInStream",
                    problem: "AT_TIMESTAMP needs `initialPositionInStreamExtended = <seconds since the epoch>`".into(),
                });
            }
            (Some(InitialPositionKey::TrimHorizon), None) => InitialPosition::TrimHorizon,
            (Some(InitialPositionKey::Latest) | None, None) => InitialPosition::Latest,
        };
        let application_name =
            draft.application_name.ok_or_else(|| missing("applicationName", "applicationName = my-app"))?;
        let config = Self {
            executable: draft
                .executable
                .ok_or_else(|| missing("executableName", "executableName = python3 sample_kclpy_app.py"))?,
            stream_name: draft
                .stream_from_arn
                .or(draft.stream_name)
                .ok_or_else(|| missing("streamName", "streamName = my-stream (or streamArn = arn:aws:kinesis:...)"))?,
            table_name: draft.table_name.unwrap_or_else(|| application_name.clone()),
            application_name,
            region: draft.region,
            kinesis_endpoint: draft.kinesis_endpoint,
            dynamodb_endpoint: draft.dynamodb_endpoint,
            worker_id: draft.worker_id,
            initial_position,
            polling: uses_polling(draft.retrieval_mode, polling_key_set),
            max_records: draft.max_records,
            idle_time_between_reads: draft.idle_time_between_reads,
            consumer_name: draft.consumer_name,
            failover_time: draft.failover_time,
            shard_sync_interval: draft.shard_sync_interval,
            parent_shard_poll_interval: draft.parent_shard_poll_interval,
            task_backoff: draft.task_backoff,
            call_process_records_even_for_empty: draft.call_process_records_even_for_empty,
            max_leases_for_worker: draft.max_leases_for_worker,
            max_leases_to_steal_at_one_time: draft.max_leases_to_steal_at_one_time,
            handoff_timeout: draft.handoff_timeout,
            deletion_protection: draft.deletion_protection,
            timeout: draft.timeout,
            shutdown_grace: draft.shutdown_grace.unwrap_or(Duration::from_secs(30)),
            processing_language: draft.processing_language,
        };
        Ok((config, notices))
    }
}

/// The table of keys as Markdown: name and meaning, then the keys accepted without effect.
pub fn keys_table() -> String {
    let mut out = String::from("| key | meaning |\n|---|---|\n");
    for key in keys::KEYS {
        out.push_str(&format!(
            "| `{}` | {} |\n",
            key.name,
            key.meaning.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    out.push_str("\nAccepted without effect:\n\n| key | why |\n|---|---|\n");
    for (name, why) in keys::WITHOUT_EFFECT {
        out.push_str(&format!("| `{name}` | {why} |\n"));
    }
    out
}

#[cfg(test)]
mod tests;
