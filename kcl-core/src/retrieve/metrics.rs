//! The retrieval metrics, registered once per reader so the hot path only bumps handles.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `kcl_get_records_calls_total` | counter | stream, shard |
//! | `kcl_get_records_errors_total` | counter | stream, shard, kind ([`ApiErrorKind::as_str`]) |
//! | `kcl_throttles_total` | counter | stream, shard |
//! | `kcl_millis_behind_latest` | gauge | stream, shard |

use metrics::{Counter, Gauge, counter, gauge};

use super::ShardSpec;
use super::api::ApiErrorKind;

pub(crate) const GET_RECORDS_CALLS: &str = "kcl_get_records_calls_total";
pub(crate) const GET_RECORDS_ERRORS: &str = "kcl_get_records_errors_total";
pub(crate) const THROTTLES: &str = "kcl_throttles_total";
pub(crate) const MILLIS_BEHIND_LATEST: &str = "kcl_millis_behind_latest";

/// Metric handles for one shard reader.
pub(crate) struct ReaderMetrics {
    stream: String,
    shard: String,
    calls: Counter,
    throttles: Counter,
    millis_behind_latest: Gauge,
}

impl ReaderMetrics {
    pub(crate) fn new(shard: &ShardSpec) -> Self {
        let stream = shard.stream.to_string();
        let shard = shard.shard_id.to_string();
        Self {
            calls: counter!(GET_RECORDS_CALLS, "stream" => stream.clone(), "shard" => shard.clone()),
            throttles: counter!(THROTTLES, "stream" => stream.clone(), "shard" => shard.clone()),
            millis_behind_latest: gauge!(MILLIS_BEHIND_LATEST, "stream" => stream.clone(), "shard" => shard.clone()),
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
}
