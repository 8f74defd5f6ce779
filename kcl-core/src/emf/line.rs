//! Rendering observed metric values as CloudWatch Embedded Metric Format (EMF) lines: pure functions, no I/O and
//! no clock. The recorder ([`super::EmfRecorder`]) collects the values; this file decides the level, the dimensions
//! and the JSON.
//!
//! One line per group of series that share their dimension values, each line a complete EMF document:
//! `{"_aws":{"Timestamp":…,"CloudWatchMetrics":[{"Namespace":…,"Dimensions":[[…]],"Metrics":[{"Name":…,"Unit":…}]}]},
//! "<dimension>":"<value>",…,"<metric>":<number or array of numbers>}`.

use std::collections::BTreeMap;

use metrics::Unit;
use serde_json::{Map, Value, json};

/// How much the EMF exporter emits, like Java KCL's `MetricsLevel` (`MetricsConfig.metricsLevel`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetricsLevel {
    /// Nothing at all (Java `NONE`).
    None,
    /// No per-shard series: series that differ only in their shard are combined (counters and histograms summed
    /// or merged, gauges summed, except lag gauges in milliseconds, which keep the maximum) (Java `SUMMARY`).
    Summary,
    /// Every series with every label (Java `DETAILED`, Java's default and this one's).
    #[default]
    Detailed,
}

/// The most values an EMF array may hold (EMF specification); longer histograms continue on further lines.
pub(crate) const MAX_VALUES_PER_METRIC: usize = 100;
/// The most metrics one EMF directive may name (EMF specification).
pub(crate) const MAX_METRICS_PER_LINE: usize = 100;

/// One series' value since the previous flush.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Observed {
    /// A counter's increase.
    Counter(u64),
    /// A gauge's current value.
    Gauge(f64),
    /// A histogram's samples.
    Samples(Vec<f64>),
}

/// One series: its name, labels (as recorded), unit and value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Observation {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub unit: Option<Unit>,
    pub value: Observed,
}

/// What every line shares.
pub(crate) struct Frame<'a> {
    pub namespace: &'a str,
    /// Dimensions added to every line (for instance `WorkerIdentifier`); a label of the same name wins.
    pub constant: &'a [(String, String)],
    pub timestamp_ms: u64,
}

/// The KCL-style `Operation` dimension of a catalogued metric (Java KCL names its operations `ProcessTask`,
/// `RenewAllLeases`, `TakeLeases`, …); metrics outside the catalogue's families get `Other`.
pub(crate) fn operation_of(name: &str) -> &'static str {
    const FAMILIES: &[(&str, &str)] = &[
        ("kcl_records_processed", "ProcessTask"),
        ("kcl_bytes_processed", "ProcessTask"),
        ("kcl_process_", "ProcessTask"),
        ("kcl_bisects", "ProcessTask"),
        ("kcl_records_failed", "ProcessTask"),
        ("kcl_records_sent_to_destination", "ProcessTask"),
        ("kcl_destination_errors", "ProcessTask"),
        ("kcl_shard_blocks", "ProcessTask"),
        ("kcl_records_filtered", "ProcessTask"),
        ("kcl_batches_in_flight", "ProcessTask"),
        ("kcl_watermark_pending", "ProcessTask"),
        ("kcl_retries", "ShardConsumer"),
        ("kcl_processor_panics", "ShardConsumer"),
        ("kcl_shard_consumer", "ShardConsumer"),
        ("kcl_checkpoints", "Checkpoint"),
        ("kcl_leases_taken", "TakeLeases"),
        ("kcl_leases_stolen", "TakeLeases"),
        ("kcl_lease_renewal_failures", "RenewAllLeases"),
        ("kcl_leases_", "LeaseCoordinator"),
        ("kcl_unreadable_leases", "LeaseCoordinator"),
        ("kcl_lease_store_", "LeaseStore"),
        ("kcl_get_records", "GetRecords"),
        ("kcl_throttles", "GetRecords"),
        ("kcl_millis_behind_latest", "GetRecords"),
        ("kcl_iterator_age", "GetRecords"),
        ("kcl_subscribe_to_shard", "SubscribeToShard"),
        ("kcl_deaggregation", "Deaggregate"),
    ];
    FAMILIES.iter().find(|(prefix, _)| name.starts_with(prefix)).map_or("Other", |(_, operation)| operation)
}

/// The dimension name of a label: KCL's names where KCL has the dimension, else the label capitalised.
pub(crate) fn dimension_name(label: &str) -> String {
    match label {
        "shard" => "ShardId".to_owned(),
        "worker" => "WorkerIdentifier".to_owned(),
        "stream" => "StreamName".to_owned(),
        other => {
            let mut chars = other.chars();
            chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
        }
    }
}

/// The CloudWatch unit of a `metrics` unit (`None` where CloudWatch has no match).
pub(crate) fn cloudwatch_unit(unit: Option<Unit>) -> &'static str {
    match unit {
        Some(Unit::Count) => "Count",
        Some(Unit::Percent) => "Percent",
        Some(Unit::Seconds) => "Seconds",
        Some(Unit::Milliseconds) => "Milliseconds",
        Some(Unit::Microseconds) => "Microseconds",
        Some(Unit::Bytes) => "Bytes",
        Some(Unit::BitsPerSecond) => "Bits/Second",
        Some(Unit::KilobitsPerSecond) => "Kilobits/Second",
        Some(Unit::MegabitsPerSecond) => "Megabits/Second",
        Some(Unit::GigabitsPerSecond) => "Gigabits/Second",
        Some(Unit::TerabitsPerSecond) => "Terabits/Second",
        Some(Unit::CountPerSecond) => "Count/Second",
        _ => "None",
    }
}

/// Applies `level`: `None` drops everything, `Summary` combines series that differ only in their `shard` label.
pub(crate) fn apply_level(level: MetricsLevel, observations: Vec<Observation>) -> Vec<Observation> {
    match level {
        MetricsLevel::None => Vec::new(),
        MetricsLevel::Detailed => observations,
        MetricsLevel::Summary => {
            let mut combined: BTreeMap<(String, Vec<(String, String)>), Observation> = BTreeMap::new();
            for mut observation in observations {
                observation.labels.retain(|(key, _)| key != "shard");
                let key = (observation.name.clone(), observation.labels.clone());
                match combined.get_mut(&key) {
                    None => {
                        combined.insert(key, observation);
                    }
                    Some(into) => combine(into, observation),
                }
            }
            combined.into_values().collect()
        }
    }
}

fn combine(into: &mut Observation, from: Observation) {
    let lag = into.unit == Some(Unit::Milliseconds);
    match (&mut into.value, from.value) {
        (Observed::Counter(a), Observed::Counter(b)) => *a = a.saturating_add(b),
        (Observed::Gauge(a), Observed::Gauge(b)) if lag => *a = a.max(b),
        (Observed::Gauge(a), Observed::Gauge(b)) => *a += b,
        (Observed::Samples(a), Observed::Samples(b)) => a.extend(b),
        // The same name recorded as two instruments: keep the first, as a recorder keeps one per key.
        _ => {}
    }
}

/// The EMF lines for `observations` (already levelled): one per group of equal dimension values, histograms longer
/// than [`MAX_VALUES_PER_METRIC`] continued on further lines. Counters that did not move, empty histograms and
/// non-finite values are left out (an EMF value must be a number).
pub(crate) fn render(frame: &Frame<'_>, observations: Vec<Observation>) -> Vec<String> {
    type Dimensions = Vec<(String, String)>;
    let mut groups: BTreeMap<Dimensions, Vec<(String, &'static str, Value)>> = BTreeMap::new();
    for observation in observations {
        let mut dimensions: BTreeMap<String, String> = frame.constant.iter().cloned().collect();
        dimensions.insert("Operation".to_owned(), operation_of(&observation.name).to_owned());
        for (label, value) in &observation.labels {
            dimensions.insert(dimension_name(label), value.clone());
        }
        let unit = cloudwatch_unit(observation.unit);
        let values: Vec<Value> = match observation.value {
            Observed::Counter(0) => continue,
            Observed::Counter(n) => vec![json!(n)],
            Observed::Gauge(v) if v.is_finite() => vec![json!(v)],
            Observed::Gauge(_) => continue,
            Observed::Samples(samples) => samples
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect::<Vec<f64>>()
                .chunks(MAX_VALUES_PER_METRIC)
                .map(|chunk| json!(chunk))
                .collect(),
        };
        let group = groups.entry(dimensions.into_iter().collect()).or_default();
        for value in values {
            group.push((observation.name.clone(), unit, value));
        }
    }
    let mut lines = Vec::new();
    for (dimensions, mut metrics) in groups {
        // A name may appear once per line: later chunks of a long histogram go on lines of their own.
        while !metrics.is_empty() {
            let mut line_metrics = Vec::new();
            let mut rest = Vec::new();
            for metric in metrics {
                if line_metrics.len() < MAX_METRICS_PER_LINE && !line_metrics.iter().any(|(n, _, _)| *n == metric.0) {
                    line_metrics.push(metric);
                } else {
                    rest.push(metric);
                }
            }
            lines.push(line(frame, &dimensions, &line_metrics));
            metrics = rest;
        }
    }
    lines
}

fn line(frame: &Frame<'_>, dimensions: &[(String, String)], metrics: &[(String, &'static str, Value)]) -> String {
    let definitions: Vec<Value> = metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
    let names: Vec<&str> = dimensions.iter().map(|(name, _)| name.as_str()).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": frame.timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": frame.namespace, "Dimensions": [names], "Metrics": definitions}],
        }),
    );
    for (name, value) in dimensions {
        root.insert(name.clone(), Value::String(value.clone()));
    }
    for (name, _, value) in metrics {
        root.insert(name.clone(), value.clone());
    }
    Value::Object(root).to_string()
}
