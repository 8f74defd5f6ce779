//! Unit tests of the EMF exporter: the pure decisions (operation, dimension names, levels, line splitting) as
//! tables, and the recorder's counter deltas. The EMF specification's required fields are checked on a real
//! worker's output in `kcl-core/tests/emf.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::Unit;
use serde_json::Value;

use super::line::{self, Frame, MAX_VALUES_PER_METRIC, MetricsLevel, Observation, Observed};
use super::{EmfConfig, EmfRecorder};
use crate::telemetry as t;

fn obs(name: &str, labels: &[(&str, &str)], unit: Option<Unit>, value: Observed) -> Observation {
    Observation {
        name: name.to_owned(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        unit,
        value,
    }
}

fn parse(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn operations_follow_kcl_names() {
    let table = [
        ("kcl_records_processed_total", "ProcessTask"),
        ("kcl_process_duration_seconds", "ProcessTask"),
        ("kcl_watermark_pending_records", "ProcessTask"),
        ("kcl_shard_consumers", "ShardConsumer"),
        ("kcl_checkpoints_total", "Checkpoint"),
        ("kcl_leases_taken_total", "TakeLeases"),
        ("kcl_leases_stolen_total", "TakeLeases"),
        ("kcl_lease_renewal_failures_total", "RenewAllLeases"),
        ("kcl_leases_held", "LeaseCoordinator"),
        ("kcl_unreadable_leases", "LeaseCoordinator"),
        ("kcl_lease_store_requests_total", "LeaseStore"),
        ("kcl_millis_behind_latest", "GetRecords"),
        ("kcl_subscribe_to_shard_backpressure_drops_total", "SubscribeToShard"),
        ("kcl_deaggregation_failures_total", "Deaggregate"),
        ("my_app_rows_written", "Other"),
    ];
    for (name, operation) in table {
        assert_eq!(line::operation_of(name), operation, "{name}");
    }
    // Every catalogued metric has a KCL operation.
    for def in crate::telemetry::CATALOG {
        assert_ne!(line::operation_of(def.name), "Other", "{}", def.name);
    }
}

#[test]
fn dimension_names() {
    for (label, dimension) in
        [("shard", "ShardId"), ("worker", "WorkerIdentifier"), ("stream", "StreamName"), ("kind", "Kind"), ("", "")]
    {
        assert_eq!(line::dimension_name(label), dimension);
    }
}

#[test]
fn levels() {
    let ms = Some(Unit::Milliseconds);
    let series = || {
        vec![
            obs("kcl_records_processed_total", &[("stream", "s"), ("shard", "a")], None, Observed::Counter(2)),
            obs("kcl_records_processed_total", &[("stream", "s"), ("shard", "b")], None, Observed::Counter(3)),
            obs("kcl_millis_behind_latest", &[("stream", "s"), ("shard", "a")], ms, Observed::Gauge(40.0)),
            obs("kcl_millis_behind_latest", &[("stream", "s"), ("shard", "b")], ms, Observed::Gauge(900.0)),
            obs("kcl_watermark_pending_records", &[("stream", "s"), ("shard", "a")], None, Observed::Gauge(1.0)),
            obs("kcl_watermark_pending_records", &[("stream", "s"), ("shard", "b")], None, Observed::Gauge(4.0)),
            obs("kcl_process_duration_seconds", &[("stream", "s")], None, Observed::Samples(vec![0.5])),
        ]
    };
    assert!(line::apply_level(MetricsLevel::None, series()).is_empty());
    assert_eq!(line::apply_level(MetricsLevel::Detailed, series()), series());
    let summary = line::apply_level(MetricsLevel::Summary, series());
    let value = |name: &str| summary.iter().find(|o| o.name == name).map(|o| o.value.clone()).unwrap();
    assert_eq!(summary.len(), 4, "{summary:?}");
    assert!(summary.iter().all(|o| o.labels == [("stream".to_owned(), "s".to_owned())]), "{summary:?}");
    assert_eq!(value("kcl_records_processed_total"), Observed::Counter(5), "counters add up");
    assert_eq!(value("kcl_millis_behind_latest"), Observed::Gauge(900.0), "lag keeps the worst shard");
    assert_eq!(value("kcl_watermark_pending_records"), Observed::Gauge(5.0), "counts add up");
}

#[test]
fn lines_group_by_dimensions_and_split_long_histograms() {
    let constant = [("WorkerIdentifier".to_owned(), "w1".to_owned()), ("Application".to_owned(), "app".to_owned())];
    let frame = Frame { namespace: "ns", constant: &constant, timestamp_ms: 1_700_000_000_000 };
    let samples: Vec<f64> = (0..250).map(f64::from).collect();
    let lines = line::render(
        &frame,
        vec![
            obs("kcl_records_processed_total", &[("stream", "s"), ("shard", "a")], None, Observed::Counter(7)),
            obs(
                "kcl_bytes_processed_total",
                &[("stream", "s"), ("shard", "a")],
                Some(Unit::Bytes),
                Observed::Counter(9),
            ),
            obs("kcl_records_processed_total", &[("stream", "s"), ("shard", "b")], None, Observed::Counter(0)),
            obs("kcl_millis_behind_latest", &[("stream", "s"), ("shard", "b")], None, Observed::Gauge(f64::NAN)),
            obs("kcl_process_duration_seconds", &[("stream", "s")], Some(Unit::Seconds), Observed::Samples(samples)),
            obs("kcl_leases_held", &[("worker", "w2")], None, Observed::Gauge(3.0)),
        ],
    );
    let docs = parse(&lines);
    // Shard a's two counters share a line; shard b has nothing to say (no increase, a NaN gauge); the histogram
    // needs three lines of at most 100 values; the gauge's worker label overrides the constant dimension.
    assert_eq!(docs.len(), 1 + 3 + 1, "{lines:#?}");
    let shard_a = docs.iter().find(|d| d["ShardId"] == "a").unwrap();
    assert_eq!(
        (shard_a["kcl_records_processed_total"].as_u64(), shard_a["kcl_bytes_processed_total"].as_u64()),
        (Some(7), Some(9))
    );
    assert_eq!(shard_a["Operation"], "ProcessTask");
    assert_eq!(shard_a["WorkerIdentifier"], "w1");
    let directive = &shard_a["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(
        directive["Dimensions"][0].as_array().unwrap().len(),
        5,
        "Application, Operation, ShardId, StreamName, WorkerIdentifier"
    );
    let units: Vec<&str> =
        directive["Metrics"].as_array().unwrap().iter().map(|m| m["Unit"].as_str().unwrap()).collect();
    assert_eq!(units, ["None", "Bytes"], "in the order recorded");
    let chunks: Vec<usize> =
        docs.iter().filter_map(|d| d["kcl_process_duration_seconds"].as_array().map(Vec::len)).collect();
    assert_eq!(chunks, [MAX_VALUES_PER_METRIC, MAX_VALUES_PER_METRIC, 50]);
    let held = docs.iter().find(|d| d.get("kcl_leases_held").is_some()).unwrap();
    assert_eq!(held["WorkerIdentifier"], "w2");
    assert!(docs.iter().all(|d| d["_aws"]["Timestamp"] == 1_700_000_000_000u64));
}

#[test]
fn counters_are_written_as_their_increase_since_the_last_flush() {
    let recorder = EmfRecorder::new(EmfConfig::new("ns")).unwrap();
    let exporter = recorder.exporter();
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!(t::CHECKPOINTS, "worker" => "w1", "outcome" => "ok").increment(4);
        metrics::gauge!(t::LEASES_HELD, "worker" => "w1").set(2.0);
        metrics::histogram!(t::PROCESS_DURATION, "stream" => "s").record(0.25);
    });
    let first = parse(&exporter.render(at));
    let checkpoints = first.iter().find_map(|d| d["kcl_checkpoints_total"].as_u64());
    assert_eq!(checkpoints, Some(4));
    let duration = first.iter().find(|d| d.get("kcl_process_duration_seconds").is_some()).unwrap();
    assert_eq!(duration["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"], "Seconds", "unit from the catalogue");
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!(t::CHECKPOINTS, "worker" => "w1", "outcome" => "ok").increment(1);
    });
    let second = parse(&exporter.render(SystemTime::now()));
    assert_eq!(second.iter().find_map(|d| d["kcl_checkpoints_total"].as_u64()), Some(1));
    assert!(second.iter().all(|d| d.get("kcl_process_duration_seconds").is_none()), "samples are taken once");
    assert_eq!(second.iter().find_map(|d| d["kcl_leases_held"].as_f64()), Some(2.0), "gauges repeat their value");
    let third = parse(&exporter.render(SystemTime::now()));
    assert!(third.iter().all(|d| d.get("kcl_checkpoints_total").is_none()), "no increase, no line");
}

#[test]
fn bad_settings_are_refused_with_the_setting_named() {
    let cases = [
        (EmfConfig::new(""), "namespace"),
        (EmfConfig::new("x".repeat(256)), "namespace"),
        (EmfConfig::new("ns").with_flush_interval(Duration::ZERO), "flush_interval"),
        (EmfConfig::new("ns").with_dimension("", "v"), "dimension"),
    ];
    for (config, named) in cases {
        let error = EmfRecorder::new(config).err().expect("refused").to_string();
        assert!(error.contains(named), "{error}");
    }
    let too_many = (0..21).fold(EmfConfig::new("ns"), |c, i| c.with_dimension(format!("D{i}"), "v"));
    assert!(EmfRecorder::new(too_many).is_err());
}
