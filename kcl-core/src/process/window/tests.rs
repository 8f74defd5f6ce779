//! The windowing rules, driven directly (the framework's part — permitting delivered positions — done by hand).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::process::{Batch, CheckpointSink, Checkpointer, RecordProcessor};
use crate::types::{ExtendedSequenceNumber, Record, SequenceNumber};

#[derive(Default)]
struct Sink(Mutex<Vec<ExtendedSequenceNumber>>);

#[async_trait]
impl CheckpointSink for Sink {
    async fn checkpoint(&self, _: &str, position: &ExtendedSequenceNumber) -> Result<(), KclError> {
        self.0.lock().unwrap().push(position.clone());
        Ok(())
    }
    async fn prepare_checkpoint(&self, _: &str, _: &ExtendedSequenceNumber, _: Option<Bytes>) -> Result<(), KclError> {
        Ok(())
    }
}

/// Sums payload numbers per window; fails `process` on a payload "bad" while `fail_bad`, and `window_ended`
/// while `fail_end`.
#[derive(Default)]
struct Summer {
    ended: Arc<Mutex<Vec<(SystemTime, u64, WindowEnd)>>>,
    fail_bad: bool,
    fail_end: bool,
}

#[async_trait]
impl WindowProcessor for Summer {
    type State = u64;
    async fn process(&mut self, _: &Window, sum: &mut u64, batch: &Batch) -> Result<(), ProcessorError> {
        for record in &batch.records {
            if record.data.as_ref() == b"bad" && self.fail_bad {
                return Err("bad record".into());
            }
            *sum += std::str::from_utf8(&record.data).ok().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
        }
        Ok(())
    }
    async fn window_ended(&mut self, window: &Window, sum: &u64, end: WindowEnd) -> Result<(), ProcessorError> {
        if self.fail_end {
            return Err("downstream unavailable".into());
        }
        self.ended.lock().unwrap().push((window.start, *sum, end));
        Ok(())
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// A record with sequence number `seq`, arriving `secs` seconds after an epoch-aligned minute boundary.
fn record(seq: u128, secs: u64, data: &str) -> Record {
    let mut record = Record::new(data.to_owned(), "k", SequenceNumber::from_u128(seq));
    record.approximate_arrival_timestamp = Some(UNIX_EPOCH + Duration::from_secs(1_700_000_040 + secs));
    record
}

fn minute(index: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_040 + index * 60)
}

fn pos(seq: u128) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::with_sub(SequenceNumber::from_u128(seq), 0)
}

struct Harness {
    windows: TumblingWindows<Summer>,
    checkpointer: Checkpointer,
    sink: Arc<Sink>,
    ended: Arc<Mutex<Vec<(SystemTime, u64, WindowEnd)>>>,
}

impl Harness {
    async fn new() -> Self {
        let factory = TumblingWindows::factory(MINUTE, |_: &str| Summer::default()).unwrap();
        let mut windows = crate::process::ProcessorFactory::create(&factory, "shard-0");
        let sink = Arc::new(Sink::default());
        let checkpointer = Checkpointer::new("shard-0", sink.clone(), ExtendedSequenceNumber::TrimHorizon);
        windows
            .initialize(InitializeInput {
                shard_id: "shard-0".into(),
                lease_key: "shard-0".into(),
                checkpoint: ExtendedSequenceNumber::TrimHorizon,
                pending_checkpoint: None,
                pending_checkpoint_state: None,
            })
            .await
            .unwrap();
        let ended = windows.inner().ended.clone();
        Self { windows, checkpointer, sink, ended }
    }

    async fn deliver(&mut self, records: Vec<Record>) -> Result<(), String> {
        if let Some(last) = records.last() {
            self.checkpointer.set_largest_permitted(last.extended_sequence_number());
        }
        let batch = Batch { records, millis_behind_latest: Some(0), shard_id: Arc::from("shard-0") };
        self.windows.process_records(&batch, &mut self.checkpointer).await.map_err(|e| e.to_string())
    }

    fn checkpoints(&self) -> Vec<ExtendedSequenceNumber> {
        self.sink.0.lock().unwrap().clone()
    }

    fn ended(&self) -> Vec<(SystemTime, u64, WindowEnd)> {
        self.ended.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn state_carries_across_batches_and_the_checkpoint_waits_for_the_window_end() {
    let mut h = Harness::new().await;
    h.deliver(vec![record(1, 1, "1"), record(2, 10, "2")]).await.unwrap();
    h.deliver(vec![record(3, 59, "3")]).await.unwrap();
    assert!(h.ended().is_empty());
    assert!(h.checkpoints().is_empty(), "nothing checkpointed inside an open window");
    // A record of the next minute ends the first window: its sum, then the checkpoint at its last record.
    h.deliver(vec![record(4, 61, "10"), record(5, 70, "20")]).await.unwrap();
    assert_eq!(h.ended(), vec![(minute(0), 6, WindowEnd::Closed)]);
    assert_eq!(h.checkpoints(), vec![pos(3)]);
    // The shard ends: the open window ends early with its state.
    h.checkpointer.permit_only(Some(pos(5)));
    h.windows.shard_ended(&mut h.checkpointer).await.unwrap();
    assert_eq!(h.ended()[1], (minute(1), 30, WindowEnd::ShardEnded));
    assert_eq!(h.checkpoints(), vec![pos(3), pos(5)]);
}

#[tokio::test]
async fn a_failed_call_restores_the_state_and_a_retry_applies_records_once() {
    let mut h = Harness::new().await;
    h.windows.inner_mut().fail_bad = true;
    // The batch spans two windows; the second run fails after the first window was ended and checkpointed.
    let batch = vec![record(1, 5, "1"), record(2, 62, "100"), record(3, 63, "bad")];
    assert!(h.deliver(batch.clone()).await.is_err());
    assert_eq!(h.ended(), vec![(minute(0), 1, WindowEnd::Closed)]);
    assert_eq!(h.checkpoints(), vec![pos(1)]);
    // Retried (as the lane does) once the record is fine: the first window's record is not applied again, and the
    // second window's state does not hold the failed call's partial sum.
    h.windows.inner_mut().fail_bad = false;
    h.deliver(batch).await.unwrap();
    h.deliver(vec![record(4, 125, "7")]).await.unwrap();
    assert_eq!(h.ended(), vec![(minute(0), 1, WindowEnd::Closed), (minute(1), 100, WindowEnd::Closed)]);
    assert_eq!(h.checkpoints(), vec![pos(1), pos(3)]);
}

#[tokio::test]
async fn a_failed_window_end_is_retried_first_and_only_then_checkpointed() {
    let mut h = Harness::new().await;
    h.deliver(vec![record(1, 5, "4")]).await.unwrap();
    h.windows.inner_mut().fail_end = true;
    assert!(h.deliver(vec![record(2, 65, "5")]).await.is_err());
    assert!(h.checkpoints().is_empty(), "no checkpoint before the window's result is accepted");
    assert!(h.deliver(vec![record(2, 65, "5")]).await.is_err());
    h.windows.inner_mut().fail_end = false;
    h.deliver(vec![record(2, 65, "5")]).await.unwrap();
    assert_eq!(h.ended(), vec![(minute(0), 4, WindowEnd::Closed)]);
    assert_eq!(h.checkpoints(), vec![pos(1)]);
}

#[tokio::test]
async fn an_idle_shard_ends_a_window_once_its_time_has_passed_and_late_stamps_join_the_open_window() {
    let mut h = Harness::new().await;
    h.deliver(vec![record(1, 61, "2")]).await.unwrap();
    // Kinesis hosts' clocks differ a little: an earlier stamp joins the open window instead of reopening one.
    h.deliver(vec![record(2, 59, "3")]).await.unwrap();
    // The window ended long ago (1_700_000_160): an empty read ends it.
    h.deliver(Vec::new()).await.unwrap();
    assert_eq!(h.ended(), vec![(minute(1), 5, WindowEnd::Closed)]);
    assert_eq!(h.checkpoints(), vec![pos(2)]);
    // An empty read with no open window does nothing.
    h.deliver(Vec::new()).await.unwrap();
    assert_eq!(h.ended().len(), 1);
}

#[tokio::test]
async fn an_open_window_in_the_future_is_not_ended_by_an_empty_read() {
    let mut h = Harness::new().await;
    let mut now = Record::new("9", "k", SequenceNumber::from_u128(1));
    now.approximate_arrival_timestamp = Some(SystemTime::now());
    h.deliver(vec![now]).await.unwrap();
    h.deliver(Vec::new()).await.unwrap();
    // (A minute-long window that just began cannot have ended, barring a test stalled for a minute.)
    assert!(h.ended().is_empty());
}

#[test]
fn windows_are_epoch_aligned_and_bounded_by_fifteen_minutes() {
    let shard: Arc<str> = Arc::from("s");
    let at = UNIX_EPOCH + Duration::from_millis(1_700_000_123_456);
    let window = window_of(&shard, at, MINUTE);
    assert_eq!(window.start, UNIX_EPOCH + Duration::from_secs(1_700_000_100));
    assert_eq!(window.end, UNIX_EPOCH + Duration::from_secs(1_700_000_160));
    assert!(validate(Duration::ZERO).is_err());
    assert!(validate(MAX_TUMBLING_WINDOW + Duration::from_millis(1)).is_err());
    assert!(validate(MAX_TUMBLING_WINDOW).is_ok());
    assert!(TumblingWindows::new(Duration::from_secs(3600), Summer::default()).is_err());
    assert_eq!(TumblingWindows::new(MINUTE, Summer::default()).unwrap().tumbling_window(), Some(MINUTE));
}
