//! The wire format, checked against lines the Java daemon writes and amazon-kclpy / aws-kcl send.

use std::time::{Duration, UNIX_EPOCH};

use kcl_core::lease::LeaseStoreError;
use kcl_core::{Batch, ExtendedSequenceNumber, KclError, Record, SequenceNumber};
use serde_json::{Value, json};

use super::*;

fn json_of(message: &Outgoing<'_>) -> Value {
    let line = message.to_line();
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    serde_json::from_slice(&line).unwrap()
}

#[test]
fn daemon_messages_match_the_java_daemon() {
    let checkpoint = ExtendedSequenceNumber::TrimHorizon;
    assert_eq!(
        json_of(&initialize("shardId-000000000001", &checkpoint)),
        json!({"action": "initialize", "shardId": "shardId-000000000001", "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0})
    );
    let mut record = Record::new(&b"hello"[..], "pk", SequenceNumber::from_u128(4957));
    record.sub_sequence_number = 2;
    record.approximate_arrival_timestamp = Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123));
    let batch = Batch::new("shardId-0", vec![record], Some(42));
    assert_eq!(
        json_of(&process_records(&batch)),
        json!({"action": "processRecords", "millisBehindLatest": 42, "records": [{
            "action": "record", "data": "aGVsbG8=", "partitionKey": "pk", "sequenceNumber": "4957",
            "subSequenceNumber": 2, "approximateArrivalTimestamp": 1_700_000_000_123u64}]})
    );
    assert_eq!(json_of(&Outgoing::LeaseLost {}), json!({"action": "leaseLost"}));
    assert_eq!(json_of(&Outgoing::ShardEnded {}), json!({"action": "shardEnded"}));
    assert_eq!(json_of(&Outgoing::ShutdownRequested {}), json!({"action": "shutdownRequested"}));
    assert_eq!(
        json_of(&Outgoing::Checkpoint { sequence_number: Some("12".into()), sub_sequence_number: None, error: None }),
        json!({"action": "checkpoint", "sequenceNumber": "12", "subSequenceNumber": null, "error": null})
    );
    assert_eq!(
        json_of(&Outgoing::Checkpoint {
            sequence_number: None,
            sub_sequence_number: None,
            error: Some("ShutdownException")
        }),
        json!({"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null, "error": "ShutdownException"})
    );
}

#[test]
fn reads_what_clients_send() {
    let cases: &[(&str, Result<Incoming, ()>)] = &[
        (
            r#"{"action": "status", "responseFor": "processRecords"}"#,
            Ok(Incoming::Status { response_for: "processRecords".into() }),
        ),
        // amazon-kclpy: both fields, nulls allowed.
        (
            r#"{"action": "checkpoint", "sequenceNumber": "495", "subSequenceNumber": 3}"#,
            Ok(Incoming::Checkpoint { sequence_number: Some("495".into()), sub_sequence_number: Some(3) }),
        ),
        (
            r#"{"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null}"#,
            Ok(Incoming::Checkpoint { sequence_number: None, sub_sequence_number: None }),
        ),
        // aws-kcl: no subSequenceNumber key.
        (
            r#"{"action":"checkpoint","sequenceNumber":"495"}"#,
            Ok(Incoming::Checkpoint { sequence_number: Some("495".into()), sub_sequence_number: None }),
        ),
        (
            r#"{"action":"checkpoint","sequenceNumber":495}"#,
            Ok(Incoming::Checkpoint { sequence_number: Some("495".into()), sub_sequence_number: None }),
        ),
        (r#"{"action":"initialize","shardId":"x"}"#, Ok(Incoming::Other { action: "initialize".into() })),
        ("hello world", Err(())),
        (r#"{"responseFor": "x"}"#, Err(())),
        (r#"{"action": "status"}"#, Err(())),
        (r#"{"action": "checkpoint", "subSequenceNumber": -1}"#, Err(())),
        (r#"[1, 2]"#, Err(())),
    ];
    for (line, expected) in cases {
        let got = parse_line(line.as_bytes());
        match expected {
            Ok(message) => assert_eq!(got.as_ref(), Ok(message), "{line}"),
            Err(()) => assert!(matches!(got, Err(LineProblem::NotAMessage(_))), "{line}: {got:?}"),
        }
    }
    assert_eq!(parse_line(b"   \r"), Err(LineProblem::Blank));
    assert_eq!(parse_line(b""), Err(LineProblem::Blank));
}

#[test]
fn checkpoint_errors_carry_the_java_exception_names() {
    let cases = [
        (KclError::InvalidCheckpoint("beyond".into()), "IllegalArgumentException"),
        (KclError::LeaseLost { lease_key: "s".into() }, "ShutdownException"),
        (KclError::Shutdown, "ShutdownException"),
        (KclError::LeaseStore(LeaseStoreError::condition_failed("s", "owner")), "ShutdownException"),
        (KclError::LeaseStore(LeaseStoreError::transient("checkpoint", "throttled")), "ThrottlingException"),
        (KclError::LeaseStore(LeaseStoreError::fatal("checkpoint", "denied")), "KinesisClientLibDependencyException"),
        (KclError::InvalidConfig("x".into()), "InvalidStateException"),
    ];
    for (error, name) in cases {
        assert_eq!(java_error_name(&error), name, "{error}");
    }
}
