//! The retrieval metrics, registered once per reader so the hot path only bumps handles. Names, units and labels
//! are in the [catalogue](crate::telemetry).

use std::time::SystemTime;

use metrics::{Counter, Gauge, counter, gauge};

use super::ShardSpec;
use super::api::ApiErrorKind;
use crate::telemetry::{GET_RECORDS_CALLS, GET_RECORDS_ERRORS, ITERATOR_AGE, MILLIS_BEHIND_LATEST, THROTTLES};
use crate::types::KinesisRecord;

/// Metric handles for one shard reader.
pub(crate) struct ReaderMetrics {
    stream: String,
    shard: String,
    calls: Counter,
    throttles: Counter,
    millis_behind_latest: Gauge,
    iterator_age: Gauge,
}

impl ReaderMetrics {
    pub(crate) fn new(shard: &ShardSpec) -> Self {
        let stream = shard.stream.to_string();
        let shard = shard.shard_id.to_string();
        Self {
            calls: counter!(GET_RECORDS_CALLS, "stream" => stream.clone(), "shard" => shard.clone()),
            throttles: counter!(THROTTLES, "stream" => stream.clone(), "shard" => shard.clone()),
            millis_behind_latest: gauge!(MILLIS_BEHIND_LATEST, "stream" => stream.clone(), "shard" => shard.clone()),
            iterator_age: gauge!(ITERATOR_AGE, "stream" => stream.clone(), "shard" => shard.clone()),
            stream,
            shard,
        }
    }

    pub(crate) fn call(&self) {
        self.calls.increment(1);
    }

    pub(crate) fn error(&self, kind: ApiErrorKind) {
        // Errors are rare, so registering the labelled counter on demand costs nothing that matters.
        counter!(GET_RECORDS_ERRORS, "stream" => self.stream.clone(), "shard" => self.shard.clone(), "kind" => kind.as_str())
            .increment(1);
        if kind == ApiErrorKind::Throttled {
            self.throttles.increment(1);
        }
    }

    pub(crate) fn millis_behind_latest(&self, millis: u64) {
        // f64 represents every lag below 2^53 ms exactly, i.e. every realistic one.
        self.millis_behind_latest.set(millis as f64);
    }

    /// Sets the iterator age from a successful read (nothing for an empty one: no record, no age).
    pub(crate) fn records_read(&self, records: &[KinesisRecord]) {
        set_iterator_age(&self.iterator_age, records);
    }
}

/// Sets `gauge` to the age of the newest record in `records` that has an arrival time (the definition of Kinesis'
/// `GetRecords.IteratorAgeMilliseconds`); a clock behind the service's counts as age 0.
pub(crate) fn set_iterator_age(gauge: &Gauge, records: &[KinesisRecord]) {
    if let Some(arrival) = records.iter().rev().find_map(|r| r.approximate_arrival_timestamp) {
        let age = SystemTime::now().duration_since(arrival).unwrap_or_default();
        gauge.set(age.as_millis() as f64);
    }
}
