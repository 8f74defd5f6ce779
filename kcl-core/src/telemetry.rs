//! The metrics catalogue: every metric kcl-core emits, with its name, type, unit, labels and meaning.
//!
//! Metrics go through the [`metrics`](https://docs.rs/metrics) facade, so any recorder works (Prometheus,
//! StatsD, OpenTelemetry, CloudWatch EMF, …) and they cost nothing when none is installed. Every emission site
//! uses the constants below, and a unit test checks this table against [`CATALOG`], so the two cannot drift.
//! Call [`describe`] once after installing a recorder to hand it the units and help texts. For CloudWatch,
//! the `emf` module writes every series as Embedded Metric Format lines with KCL's dimensions and a `MetricsLevel` switch.
//!
//! Labels: `stream` is the stream name, `shard` the shard id, `worker` the worker id. Shard labels appear only on
//! per-shard series (a fleet has as many of those as it has shards); histograms carry no shard label.
//!
//! | name | type | unit | labels | meaning |
//! |---|---|---|---|---|
//! | `kcl_records_processed_total` | counter | count | stream, shard | records the processor completed (not filtered, not given up) |
//! | `kcl_bytes_processed_total` | counter | bytes | stream, shard | payload bytes of those records (after de-aggregation) |
//! | `kcl_process_duration_seconds` | histogram | seconds | stream | duration of each `process_records` call, failed ones included |
//! | `kcl_process_attempts_total` | counter | count | stream | `process_records` calls with records (retries included) |
//! | `kcl_process_failures_total` | counter | count | stream, kind | failed calls; kind `batch` (error or panic) or `partial` |
//! | `kcl_bisects_total` | counter | count | stream | failed batches split in two (`bisect_on_error`) |
//! | `kcl_records_failed_total` | counter | count | stream, reason | records whose retries ran out; reason `attempts_exhausted` or `record_too_old` |
//! | `kcl_records_sent_to_destination_total` | counter | count | stream | failed records the failure destination accepted |
//! | `kcl_destination_errors_total` | counter | count | stream | failure-destination writes that failed (they are retried) |
//! | `kcl_shard_blocks_total` | counter | count | stream | shards stopped at a record whose retries ran out (`OnExhausted::Block`) |
//! | `kcl_records_filtered_total` | counter | count | stream | records the record filter dropped before processing |
//! | `kcl_batches_in_flight` | gauge | count | stream | batches handed to lanes and not yet finished |
//! | `kcl_watermark_pending_records` | gauge | count | stream, shard | records read but not completed; the checkpoint waits for them |
//! | `kcl_retries_total` | counter | count | call | retried lifecycle callbacks (`initialize`, `shard_ended`, …) |
//! | `kcl_processor_panics_total` | counter | count | call | processor callbacks that panicked |
//! | `kcl_shard_consumers` | gauge | count | — | shard consumers running in this process |
//! | `kcl_shard_consumer_failures_total` | counter | count | — | shard consumers that stopped on a non-retryable error |
//! | `kcl_checkpoints_total` | counter | count | worker, outcome | checkpoint writes; outcome `ok` or `failed` |
//! | `kcl_leases_held` | gauge | count | worker | leases the worker currently processes |
//! | `kcl_leases_taken_total` | counter | count | worker | expired or unowned leases taken |
//! | `kcl_leases_stolen_total` | counter | count | worker | leases stolen from a busier worker (graceful handoff) |
//! | `kcl_leases_lost_total` | counter | count | worker | leases lost without being asked (fenced, taken over, handoff timed out) |
//! | `kcl_lease_renewal_failures_total` | counter | count | worker | failed lease renewals or heartbeats |
//! | `kcl_unreadable_leases` | gauge | count | worker | lease table items the store cannot read (last listing); their shards are not processed until `kcl-admin repair` fixes them |
//! | `kcl_get_records_calls_total` | counter | count | stream, shard | GetRecords calls |
//! | `kcl_get_records_errors_total` | counter | count | stream, shard, kind | failed GetRecords / GetShardIterator calls, by error kind |
//! | `kcl_throttles_total` | counter | count | stream, shard | throttled GetRecords or SubscribeToShard calls |
//! | `kcl_millis_behind_latest` | gauge | milliseconds | stream, shard | how far the last read was behind the tip of the shard |
//! | `kcl_iterator_age_milliseconds` | gauge | milliseconds | stream, shard | age of the newest record of the last non-empty read |
//! | `kcl_subscribe_to_shard_calls_total` | counter | count | stream, shard | SubscribeToShard calls (enhanced fan-out) |
//! | `kcl_subscribe_to_shard_errors_total` | counter | count | stream, shard, kind | failed subscriptions, by error kind or `health_timeout` |
//! | `kcl_subscribe_to_shard_backpressure_drops_total` | counter | count | stream, shard | subscriptions given up because processing stalled |
//! | `kcl_deaggregation_failures_total` | counter | count | reason | corrupt KPL aggregates delivered as ordinary records |
//! | `kcl_deaggregation_filtered_user_records_total` | counter | count | — | aggregated user records outside the shard's hash range |
//!
//! Lease stores may add their own: `kcl-dynamo-lease` counts its requests in `kcl_lease_store_requests_total`.
//!
//! Tracing: a worker runs in the span `worker` (fields `worker_id`, `stream`); the lease coordinator's tasks in
//! `lease_coordinator` (`worker_id`); each shard consumer, its lanes and its reader in `shard` (`shard_id`,
//! `lease_counter`) under the worker's span, with the reader's own `kcl_shard_reader` or `kcl_fanout_reader` span
//! inside.

use metrics::Unit;

/// What kind of instrument a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonically increasing count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of observed values.
    Histogram,
}

impl MetricKind {
    /// The word used in the catalogue table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One entry of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    /// The metric's name.
    pub name: &'static str,
    /// Its instrument.
    pub kind: MetricKind,
    /// Its unit.
    pub unit: Unit,
    /// Its label keys, in the order they are emitted.
    pub labels: &'static [&'static str],
    /// What it measures (the help text [`describe`] registers).
    pub help: &'static str,
}

/// Declares the name constants and [`CATALOG`] from one list, so a name cannot lack its entry.
macro_rules! catalogue {
    ($($const:ident = $name:literal, $kind:ident, $unit:ident, [$($label:literal),*], $help:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "`: ", $help, ".")]
            pub const $const: &str = $name;
        )*
        /// Every metric kcl-core emits, in the order of the table above.
        pub const CATALOG: &[MetricDef] = &[
            $(MetricDef {
                name: $const,
                kind: MetricKind::$kind,
                unit: Unit::$unit,
                labels: &[$($label),*],
                help: $help,
            },)*
        ];
    };
}

catalogue! {
    RECORDS_PROCESSED = "kcl_records_processed_total", Counter, Count, ["stream", "shard"],
        "Records the processor completed (not filtered, not given up)";
    BYTES_PROCESSED = "kcl_bytes_processed_total", Counter, Bytes, ["stream", "shard"],
        "Payload bytes of the records the processor completed";
    PROCESS_DURATION = "kcl_process_duration_seconds", Histogram, Seconds, ["stream"],
        "Duration of each process_records call, failed ones included";
    PROCESS_ATTEMPTS = "kcl_process_attempts_total", Counter, Count, ["stream"],
        "process_records calls with records, retries included";
    PROCESS_FAILURES = "kcl_process_failures_total", Counter, Count, ["stream", "kind"],
        "Failed process_records calls, kind batch or partial";
    BISECTS = "kcl_bisects_total", Counter, Count, ["stream"],
        "Failed batches split in two";
    RECORDS_FAILED = "kcl_records_failed_total", Counter, Count, ["stream", "reason"],
        "Records whose retries ran out";
    RECORDS_SENT_TO_DESTINATION = "kcl_records_sent_to_destination_total", Counter, Count, ["stream"],
        "Failed records the failure destination accepted";
    DESTINATION_ERRORS = "kcl_destination_errors_total", Counter, Count, ["stream"],
        "Failure-destination writes that failed";
    SHARD_BLOCKS = "kcl_shard_blocks_total", Counter, Count, ["stream"],
        "Shards stopped at a record whose retries ran out";
    RECORDS_FILTERED = "kcl_records_filtered_total", Counter, Count, ["stream"],
        "Records the record filter dropped before processing";
    BATCHES_IN_FLIGHT = "kcl_batches_in_flight", Gauge, Count, ["stream"],
        "Batches handed to lanes and not yet finished";
    WATERMARK_PENDING = "kcl_watermark_pending_records", Gauge, Count, ["stream", "shard"],
        "Records read but not completed";
    RETRIES = "kcl_retries_total", Counter, Count, ["call"],
        "Retried lifecycle callbacks";
    PROCESSOR_PANICS = "kcl_processor_panics_total", Counter, Count, ["call"],
        "Processor callbacks that panicked";
    SHARD_CONSUMERS = "kcl_shard_consumers", Gauge, Count, [],
        "Shard consumers running in this process";
    SHARD_CONSUMER_FAILURES = "kcl_shard_consumer_failures_total", Counter, Count, [],
        "Shard consumers that stopped on a non-retryable error";
    CHECKPOINTS = "kcl_checkpoints_total", Counter, Count, ["worker", "outcome"],
        "Checkpoint writes, outcome ok or failed";
    LEASES_HELD = "kcl_leases_held", Gauge, Count, ["worker"],
        "Leases this worker currently processes";
    LEASES_TAKEN = "kcl_leases_taken_total", Counter, Count, ["worker"],
        "Leases taken because they were expired or unowned";
    LEASES_STOLEN = "kcl_leases_stolen_total", Counter, Count, ["worker"],
        "Leases stolen (through a graceful handoff) to balance the fleet";
    LEASES_LOST = "kcl_leases_lost_total", Counter, Count, ["worker"],
        "Leases lost involuntarily: self-fenced, taken by another worker, or handoff timed out";
    RENEWAL_FAILURES = "kcl_lease_renewal_failures_total", Counter, Count, ["worker"],
        "Failed renewal attempts (per-lease renewals or heartbeats)";
    UNREADABLE_LEASES = "kcl_unreadable_leases", Gauge, Count, ["worker"],
        "Lease table items the store cannot read in the last listing; their shards wait for kcl-admin repair";
    GET_RECORDS_CALLS = "kcl_get_records_calls_total", Counter, Count, ["stream", "shard"],
        "GetRecords calls";
    GET_RECORDS_ERRORS = "kcl_get_records_errors_total", Counter, Count, ["stream", "shard", "kind"],
        "Failed GetRecords or GetShardIterator calls, by error kind";
    THROTTLES = "kcl_throttles_total", Counter, Count, ["stream", "shard"],
        "Throttled GetRecords or SubscribeToShard calls";
    MILLIS_BEHIND_LATEST = "kcl_millis_behind_latest", Gauge, Milliseconds, ["stream", "shard"],
        "How far the last read was behind the tip of the shard";
    ITERATOR_AGE = "kcl_iterator_age_milliseconds", Gauge, Milliseconds, ["stream", "shard"],
        "Age of the newest record of the last non-empty read";
    SUBSCRIBE_CALLS = "kcl_subscribe_to_shard_calls_total", Counter, Count, ["stream", "shard"],
        "SubscribeToShard calls";
    SUBSCRIBE_ERRORS = "kcl_subscribe_to_shard_errors_total", Counter, Count, ["stream", "shard", "kind"],
        "Failed subscriptions, by error kind or health_timeout";
    BACKPRESSURE_DROPS = "kcl_subscribe_to_shard_backpressure_drops_total", Counter, Count, ["stream", "shard"],
        "Subscriptions given up because processing stalled";
    DEAGGREGATION_FAILURES = "kcl_deaggregation_failures_total", Counter, Count, ["reason"],
        "Corrupt KPL aggregates delivered as ordinary records";
    DEAGGREGATION_FILTERED = "kcl_deaggregation_filtered_user_records_total", Counter, Count, [],
        "Aggregated user records outside the shard's hash range";
}

/// Registers the unit and help text of every catalogued metric with the installed recorder (exporters such as
/// Prometheus show them). Call it once, after installing the recorder.
pub fn describe() {
    for def in CATALOG {
        match def.kind {
            MetricKind::Counter => metrics::describe_counter!(def.name, def.unit, def.help),
            MetricKind::Gauge => metrics::describe_gauge!(def.name, def.unit, def.help),
            MetricKind::Histogram => metrics::describe_histogram!(def.name, def.unit, def.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module doc's table rows, as (name, type, unit, labels).
    fn documented() -> Vec<(String, String, String, Vec<String>)> {
        include_str!("telemetry.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("//! | `kcl_"))
            .map(|row| {
                let cells: Vec<&str> = row.split(" | ").collect();
                let name = format!("kcl_{}", cells[0].trim_end_matches('`'));
                let labels = match cells[3] {
                    "—" => Vec::new(),
                    labels => labels.split(", ").map(str::to_owned).collect(),
                };
                (name, cells[1].to_owned(), cells[2].to_owned(), labels)
            })
            .collect()
    }

    #[test]
    fn the_table_matches_the_catalogue() {
        let catalogue: Vec<_> = CATALOG
            .iter()
            .map(|d| {
                let labels = d.labels.iter().map(|l| l.to_string()).collect();
                (d.name.to_owned(), d.kind.as_str().to_owned(), d.unit.as_str().to_owned(), labels)
            })
            .collect();
        assert_eq!(documented(), catalogue);
    }

    #[test]
    fn names_are_unique_and_prometheus_style() {
        let mut names: Vec<_> = CATALOG.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len(), "duplicate names");
        for def in CATALOG {
            assert!(def.name.starts_with("kcl_"), "{}", def.name);
            assert_eq!(def.name.ends_with("_total"), def.kind == MetricKind::Counter, "{}", def.name);
        }
    }

    /// Emission sites name metrics through the constants, never through string literals.
    #[test]
    fn no_emission_site_spells_a_name_out() {
        fn visit(dir: &std::path::Path, offenders: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    visit(&path, offenders);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (n, line) in text.lines().enumerate() {
                        if ["counter!(\"", "gauge!(\"", "histogram!(\""].iter().any(|m| line.contains(m)) {
                            offenders.push(format!("{}:{}", path.display(), n + 1));
                        }
                    }
                }
            }
        }
        let mut offenders = Vec::new();
        visit(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut offenders);
        assert!(offenders.is_empty(), "metric names spelled out at: {offenders:?}");
    }
}
