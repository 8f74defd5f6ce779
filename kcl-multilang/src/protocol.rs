//! The MultiLangDaemon protocol as the Java daemon (`software.amazon.kinesis.multilang`) speaks it: one JSON object
//! per line on the child's stdin and stdout, each with an `action`.
//!
//! Daemon → child: `initialize`, `processRecords`, `leaseLost`, `shardEnded`, `shutdownRequested`, and `checkpoint`
//! replies (`error` names the Java exception, or is `null`). Child → daemon: `status` (`responseFor` = the action it
//! finished) and `checkpoint` requests. Field names, `null`s and the `"action": "record"` inside each record are as
//! Java's Jackson writes them: amazon-kclpy dispatches on every object's `action` and reads every field.

use base64::Engine;
use kcl_core::{Batch, ExtendedSequenceNumber, KclError, Record};
use serde::Serialize;
use serde_json::Value;

/// A message to the child, serialised as one line.
#[derive(Serialize)]
#[serde(tag = "action")]
pub(crate) enum Outgoing<'a> {
    #[serde(rename = "initialize", rename_all = "camelCase")]
    Initialize { shard_id: &'a str, sequence_number: Option<&'a str>, sub_sequence_number: Option<u64> },
    #[serde(rename = "processRecords", rename_all = "camelCase")]
    ProcessRecords { records: Vec<JsonRecord<'a>>, millis_behind_latest: Option<u64> },
    #[serde(rename = "leaseLost")]
    LeaseLost {},
    #[serde(rename = "shardEnded")]
    ShardEnded {},
    #[serde(rename = "shutdownRequested")]
    ShutdownRequested {},
    #[serde(rename = "checkpoint", rename_all = "camelCase")]
    Checkpoint { sequence_number: Option<String>, sub_sequence_number: Option<u64>, error: Option<&'static str> },
}

impl Outgoing<'_> {
    /// The `action` field, which the child's `status` reply must name.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            Self::Initialize { .. } => "initialize",
            Self::ProcessRecords { .. } => "processRecords",
            Self::LeaseLost {} => "leaseLost",
            Self::ShardEnded {} => "shardEnded",
            Self::ShutdownRequested {} => "shutdownRequested",
            Self::Checkpoint { .. } => "checkpoint",
        }
    }

    /// The message as one line, newline included.
    pub(crate) fn to_line(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail (string keys, no maps with non-string keys).
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// `initialize` for a shard resuming at `checkpoint` (a sentinel like `TRIM_HORIZON` is sent as the sequence number,
/// as Java does).
pub(crate) fn initialize<'a>(shard_id: &'a str, checkpoint: &'a ExtendedSequenceNumber) -> Outgoing<'a> {
    Outgoing::Initialize {
        shard_id,
        sequence_number: Some(checkpoint.checkpoint_str()),
        sub_sequence_number: Some(checkpoint.sub_sequence()),
    }
}

/// `processRecords` for a batch of user records (KPL aggregates already taken apart).
pub(crate) fn process_records(batch: &Batch) -> Outgoing<'_> {
    Outgoing::ProcessRecords {
        records: batch.records.iter().map(JsonRecord::from).collect(),
        millis_behind_latest: batch.millis_behind_latest,
    }
}

/// One record, as Java's `JsonFriendlyRecord`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JsonRecord<'a> {
    action: &'static str,
    data: String,
    partition_key: &'a str,
    sequence_number: &'a str,
    approximate_arrival_timestamp: Option<u64>,
    sub_sequence_number: u64,
}

impl<'a> From<&'a Record> for JsonRecord<'a> {
    fn from(record: &'a Record) -> Self {
        Self {
            action: "record",
            data: base64::engine::general_purpose::STANDARD.encode(&record.data),
            partition_key: &record.partition_key,
            sequence_number: record.sequence_number.as_str(),
            approximate_arrival_timestamp: record
                .approximate_arrival_timestamp
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64),
            sub_sequence_number: record.sub_sequence_number,
        }
    }
}

/// A message from the child.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// The child finished `response_for`.
    Status { response_for: String },
    /// Checkpoint at this position (`None`: everything delivered so far).
    Checkpoint { sequence_number: Option<String>, sub_sequence_number: Option<u64> },
    /// A well-formed message the daemon does not act on (Java ignores these too).
    Other { action: String },
}

/// Why a line from the child is not a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineProblem {
    /// Only whitespace: amazon-kclpy and aws-kcl surround every message with newlines; skipped silently.
    Blank,
    /// Not a protocol message (not JSON, no `action`, or a field of the wrong type); the reason, without the text.
    NotAMessage(String),
}

/// Reads one line of the child's stdout.
pub(crate) fn parse_line(line: &[u8]) -> Result<Incoming, LineProblem> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(LineProblem::Blank);
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| LineProblem::NotAMessage(format!("not JSON ({e})")))?;
    let action = value
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| LineProblem::NotAMessage("a JSON value without a string `action`".into()))?;
    match action {
        "status" => match value.get("responseFor") {
            Some(Value::String(response_for)) => Ok(Incoming::Status { response_for: response_for.clone() }),
            _ => Err(LineProblem::NotAMessage("a `status` without a string `responseFor`".into())),
        },
        "checkpoint" => {
            // Jackson turns a JSON number into the String field too; accept both.
            let sequence_number = match value.get("sequenceNumber") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(_) => {
                    return Err(LineProblem::NotAMessage(
                        "a `checkpoint` whose `sequenceNumber` is not a string".into(),
                    ));
                }
            };
            let sub_sequence_number = match value.get("subSequenceNumber") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or_else(|| {
                    LineProblem::NotAMessage("a `checkpoint` whose `subSequenceNumber` is not a whole number".into())
                })?),
            };
            Ok(Incoming::Checkpoint { sequence_number, sub_sequence_number })
        }
        other => Ok(Incoming::Other { action: other.to_owned() }),
    }
}

/// The Java exception name the Java daemon would put in a checkpoint reply's `error` for this failure (clients such
/// as amazon-kclpy's sample compare these names: `ShutdownException` means stop, `ThrottlingException` means retry).
pub(crate) fn java_error_name(error: &KclError) -> &'static str {
    use kcl_core::lease::LeaseStoreError;
    match error {
        KclError::InvalidCheckpoint(_) | KclError::SequenceNumber(_) => "IllegalArgumentException",
        KclError::LeaseLost { .. } | KclError::Shutdown => "ShutdownException",
        KclError::LeaseStore(LeaseStoreError::ConditionFailed { .. }) => "ShutdownException",
        KclError::LeaseStore(LeaseStoreError::Transient { .. }) => "ThrottlingException",
        KclError::Kinesis { retryable: true, .. } => "ThrottlingException",
        KclError::InvalidConfig(_) => "InvalidStateException",
        _ => "KinesisClientLibDependencyException",
    }
}

/// Java's reply when a checkpoint is asked for where none is possible (`initialize`, `leaseLost`).
pub(crate) const NO_CHECKPOINTER: &str = "InvalidStateException";

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
