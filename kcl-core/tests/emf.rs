//! The EMF exporter (`kcl_core::emf`) on a real run: a worker consumes an in-memory stream with the
//! EMF recorder installed, and every line it writes must satisfy the CloudWatch Embedded Metric Format
//! specification's required fields (checked by [`emf_problems`], which has its own self-test), carry KCL's
//! dimensions, and add up to the records put.
//!
//! Recorders are process-global, so this file is its own test binary.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use kcl_core::emf::{EmfConfig, EmfExporter, EmfRecorder};
use kcl_core::lease::MemoryLeaseStore;
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::telemetry::{self as t};
use kcl_core::{Batch, BatchResult, Checkpointer, InitialPosition, RecordProcessor, Worker};
use serde_json::{Value, json};

/// CloudWatch's units (the `Unit` of a MetricDefinition must be one of them).
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// What an EMF document violates of the specification's required fields and limits (empty: valid).
fn emf_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |what: String| problems.push(what);
    let Some(root) = doc.as_object() else { return vec!["the document is not a JSON object".into()] };
    let Some(aws) = root.get("_aws").and_then(Value::as_object) else { return vec!["no _aws object".into()] };
    if !aws.get("Timestamp").is_some_and(|t| t.is_u64()) {
        problem("_aws.Timestamp must be a non-negative integer (milliseconds since the epoch)".into());
    }
    let Some(directives) = aws.get("CloudWatchMetrics").and_then(Value::as_array) else {
        return vec!["_aws.CloudWatchMetrics must be an array".into()];
    };
    if directives.is_empty() {
        problem("_aws.CloudWatchMetrics is empty: nothing would be extracted".into());
    }
    for directive in directives {
        let namespace = directive.get("Namespace").and_then(Value::as_str).unwrap_or("");
        if namespace.is_empty() || namespace.chars().count() > 255 {
            problem(format!("Namespace must be a string of 1 to 255 characters: {:?}", directive.get("Namespace")));
        }
        match directive.get("Dimensions").and_then(Value::as_array) {
            None => problem("Dimensions must be an array of dimension sets".into()),
            Some(sets) => {
                for set in sets {
                    let Some(keys) = set.as_array() else {
                        problem(format!("a dimension set must be an array: {set}"));
                        continue;
                    };
                    if keys.len() > 30 {
                        problem(format!("a dimension set has {} dimensions (at most 30)", keys.len()));
                    }
                    for key in keys {
                        let value = key.as_str().and_then(|k| root.get(k));
                        if !value.and_then(Value::as_str).is_some_and(|v| !v.is_empty() && v.len() <= 1024) {
                            problem(format!("dimension {key} must name a root member holding a string of 1 to 1024"));
                        }
                    }
                }
            }
        }
        match directive.get("Metrics").and_then(Value::as_array) {
            None => problem("Metrics must be an array of metric definitions".into()),
            Some(metrics) => {
                if metrics.len() > 100 {
                    problem(format!("{} metrics in one directive (at most 100)", metrics.len()));
                }
                for metric in metrics {
                    let name = metric.get("Name").and_then(Value::as_str).unwrap_or("");
                    if name.is_empty() || name.chars().count() > 255 {
                        problem(format!("a metric Name must be a string of 1 to 255 characters: {metric}"));
                    }
                    if let Some(unit) = metric.get("Unit")
                        && !unit.as_str().is_some_and(|u| UNITS.contains(&u))
                    {
                        problem(format!("{name}: Unit {unit} is not a CloudWatch unit"));
                    }
                    match root.get(name) {
                        Some(Value::Number(_)) => {}
                        Some(Value::Array(values)) if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                        other => {
                            problem(format!("{name} must be a root member holding a number or up to 100: {other:?}"))
                        }
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn the_validator_catches_what_the_specification_forbids() {
    let good = json!({
        "_aws": {"Timestamp": 1, "CloudWatchMetrics": [
            {"Namespace": "ns", "Dimensions": [["Operation"]], "Metrics": [{"Name": "m", "Unit": "Count"}]}
        ]},
        "Operation": "ProcessTask", "m": 1
    });
    assert_eq!(emf_problems(&good), Vec::<String>::new());
    type Breaker = fn(&mut Value);
    let broken: [(&str, Breaker); 8] = [
        ("no _aws", |d| drop(d.as_object_mut().unwrap().remove("_aws"))),
        ("no timestamp", |d| drop(d["_aws"].as_object_mut().unwrap().remove("Timestamp"))),
        ("empty namespace", |d| d["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!("")),
        ("dimension not in root", |d| drop(d.as_object_mut().unwrap().remove("Operation"))),
        ("numeric dimension value", |d| d["Operation"] = json!(3)),
        ("metric value a string", |d| d["m"] = json!("1")),
        ("101 values", |d| d["m"] = json!(vec![1; 101])),
        ("unknown unit", |d| d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Records")),
    ];
    for (what, break_it) in broken {
        let mut doc = good.clone();
        break_it(&mut doc);
        assert!(!emf_problems(&doc).is_empty(), "{what} was not caught");
    }
}

/// The recorder, installed as the global recorder on first use.
fn exporter() -> &'static EmfExporter {
    static EXPORTER: OnceLock<EmfExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let config = EmfConfig::new("kcl-rs-test").with_dimension("Application", "emf-app");
        let recorder = EmfRecorder::new(config).expect("valid settings");
        let exporter = recorder.exporter();
        metrics::set_global_recorder(recorder).expect("the only recorder of this binary");
        t::describe();
        exporter
    })
}

struct Count(Arc<AtomicU64>);

#[async_trait::async_trait]
impl RecordProcessor for Count {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        self.0.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_lines_follow_the_specification_and_add_up() {
    let exporter = exporter();
    let stream = MemoryStream::new("emf-run", 2);
    let processed = Arc::new(AtomicU64::new(0));
    let counter = processed.clone();
    let worker = Worker::builder(stream.name().clone(), "emf-app")
        .worker_id("emf-worker")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(Arc::new(MemoryLeaseStore::new()))
        .initial_position(InitialPosition::TrimHorizon)
        .processor_factory(move |_: &str| Count(counter.clone()))
        .build()
        .expect("worker");
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    let mut shards = HashSet::new();
    let put = 60u64;
    for i in 0..put {
        shards.insert(stream.put(format!("device-{i}"), format!("{{\"temp\":{i}}}")).expect("put").shard_id);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while processed.load(Ordering::Relaxed) < put {
        assert!(tokio::time::Instant::now() < deadline, "the worker did not process every record");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.shutdown();
    task.await.expect("join").expect("the worker stops cleanly");

    let lines = exporter.render(SystemTime::now());
    let docs: Vec<Value> =
        lines.iter().map(|l| serde_json::from_str(l).expect("each line is one JSON document")).collect();
    for (line, doc) in lines.iter().zip(&docs) {
        assert_eq!(emf_problems(doc), Vec::<String>::new(), "{line}");
        assert_eq!(doc["Application"], "emf-app", "the constant dimension is on every line: {line}");
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "kcl-rs-test");
    }
    // Records processed: one series per shard, dimensions ShardId and StreamName under ProcessTask, adding up.
    let per_shard: Vec<&Value> = docs.iter().filter(|d| d.get(t::RECORDS_PROCESSED).is_some()).collect();
    let sum: u64 = per_shard.iter().filter_map(|d| d[t::RECORDS_PROCESSED].as_u64()).sum();
    assert_eq!(sum, put, "records processed in the EMF lines = records put");
    let seen_shards: BTreeSet<&str> = per_shard.iter().filter_map(|d| d["ShardId"].as_str()).collect();
    assert_eq!(seen_shards, shards.iter().map(|s| &**s).collect(), "one series per shard");
    assert!(per_shard.iter().all(|d| d["Operation"] == "ProcessTask" && d["StreamName"] == "emf-run"));
    // KCL's worker dimension on the lease metrics, with the catalogue's unit.
    let taken = docs.iter().find(|d| d.get(t::LEASES_TAKEN).is_some()).expect("leases taken are reported");
    assert_eq!(
        (taken["WorkerIdentifier"].as_str(), taken["Operation"].as_str()),
        (Some("emf-worker"), Some("TakeLeases"))
    );
    let duration = docs.iter().find(|d| d.get(t::PROCESS_DURATION).is_some()).expect("process durations");
    let definition = &duration["_aws"]["CloudWatchMetrics"][0]["Metrics"];
    let unit =
        definition.as_array().unwrap().iter().find(|m| m["Name"] == t::PROCESS_DURATION).unwrap()["Unit"].clone();
    assert_eq!(unit, "Seconds");
    // The next flush carries no increase of a counter that did not move.
    let again = exporter.render(SystemTime::now());
    assert!(again.iter().all(|l| !l.contains(t::RECORDS_PROCESSED)), "{again:#?}");
}
