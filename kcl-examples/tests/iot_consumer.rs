//! The `iot-consumer` example, run as a process over seeded traffic: the alerts file holds exactly the alerts the
//! generator planted, the failure file exactly the malformed records (with their Kinesis metadata), and the JSON
//! summary on stdout matches per-device stats computed here from the generated readings. In memory and against the
//! emulators.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use kcl_examples::iot::traffic::{Traffic, generate};
use kcl_examples::iot::{AlertKind, Measurement, Stats, TrafficConfig};
use serde_json::Value;

const WINDOW_SECS: u64 = 30;

fn run_consumer(dir: &Path, config: &TrafficConfig, extra: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_iot-consumer"))
        .args(["--seed", &config.seed.to_string(), "--devices", &config.devices.to_string()])
        .args(["--readings", &config.readings_per_device.to_string(), "--start-ms", &config.start_ms.to_string()])
        .args(["--window-secs", &WINDOW_SECS.to_string(), "--parallelism", "4", "--timeout-secs", "120"])
        .arg("--alerts")
        .arg(dir.join("alerts.jsonl"))
        .arg("--failures")
        .arg(dir.join("failures.jsonl"))
        .args(extra)
        .output()
        .expect("run the iot-consumer binary");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "iot-consumer failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON summary ({e}):\n{stdout}"))
}

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn stats(value: &Value) -> Option<Stats> {
    serde_json::from_value(value.clone()).unwrap()
}

fn assert_close(actual: Option<Stats>, expected: Option<Stats>, what: &str) {
    match (actual, expected) {
        (Some(a), Some(e)) => {
            assert_eq!((a.count, a.min, a.max), (e.count, e.min, e.max), "{what}");
            assert!((a.avg - e.avg).abs() < 1e-9, "{what}: avg {} vs {}", a.avg, e.avg);
        }
        (a, e) => assert_eq!(a, e, "{what}"),
    }
}

fn check_alerts(dir: &Path, traffic: &Traffic, readings: &HashMap<(String, u64), &Measurement>) {
    let alerts = json_lines(&dir.join("alerts.jsonl"));
    let mut fired: Vec<(String, u64, AlertKind)> = alerts
        .iter()
        .map(|a| {
            let device = a["device"].as_str().unwrap().to_owned();
            let timestamp = a["timestamp_ms"].as_u64().unwrap();
            let kind: AlertKind = serde_json::from_value(a["kind"].clone()).unwrap();
            let reading = readings[&(device.clone(), timestamp)];
            let value = if kind == AlertKind::HumHigh { reading.hum } else { reading.temp };
            assert_eq!(a["value"].as_f64(), value, "the alert quotes the reading: {a}");
            (device, timestamp, kind)
        })
        .collect();
    let mut expected = traffic.expected_alerts.clone();
    fired.sort();
    expected.sort();
    assert_eq!(fired, expected, "the alerts file holds each planted excursion exactly once");
}

fn check_failures(dir: &Path, traffic: &Traffic, stream: &str) {
    let failures = json_lines(&dir.join("failures.jsonl"));
    let mut failed: Vec<(String, Vec<u8>)> = failures
        .iter()
        .map(|f| {
            assert_eq!(f["stream"], stream, "{f}");
            assert!(f["shard"].as_str().unwrap().starts_with("shardId-"), "{f}");
            assert!(!f["seq"].as_str().unwrap().is_empty(), "{f}");
            assert_eq!(f["attempts"], 2, "max_attempts(2): one retry, then the destination: {f}");
            assert_eq!(f["reason"], "attempts_exhausted", "{f}");
            assert!(f["error"].as_str().unwrap().contains("malformed payload"), "{f}");
            let data = base64::engine::general_purpose::STANDARD.decode(f["data_b64"].as_str().unwrap()).unwrap();
            (f["pk"].as_str().unwrap().to_owned(), data)
        })
        .collect();
    let mut expected = traffic.malformed.clone();
    failed.sort();
    expected.sort();
    assert_eq!(failed, expected, "the failure file holds exactly the malformed records");
}

fn check_summary(summary: &Value, traffic: &Traffic) {
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["records_put"], traffic.records.len());
    assert_eq!(summary["readings"], traffic.readings.len());
    assert_eq!(summary["failed_records"], traffic.malformed.len());
    assert_eq!(summary["alerts"], traffic.expected_alerts.len());
    let mut per_device: HashMap<&str, Vec<&Measurement>> = HashMap::new();
    for reading in &traffic.readings {
        per_device.entry(&reading.device).or_default().push(reading);
    }
    let devices = summary["devices"].as_array().unwrap();
    assert_eq!(devices.len(), per_device.len());
    for device in devices {
        let name = device["device"].as_str().unwrap();
        let readings = &per_device[name];
        let last = readings.iter().map(|r| r.timestamp_ms).max().unwrap();
        // The window ending at the newest reading: (last - window, last].
        let window: Vec<_> = readings.iter().filter(|r| r.timestamp_ms + WINDOW_SECS * 1000 > last).collect();
        let alerts = traffic.expected_alerts.iter().filter(|a| a.0 == name).count();
        assert_eq!(device["readings"], readings.len(), "{name}");
        assert_eq!(device["alerts"], alerts, "{name}");
        assert_eq!(device["last_timestamp_ms"], last, "{name}");
        assert_close(stats(&device["temp"]), Stats::of(window.iter().filter_map(|r| r.temp)), name);
        assert_close(stats(&device["hum"]), Stats::of(window.iter().filter_map(|r| r.hum)), name);
    }
}

fn check_run(config: TrafficConfig, extra: &[&str], stream: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let traffic = generate(&config);
    assert!(!traffic.malformed.is_empty() && !traffic.expected_alerts.is_empty() && traffic.ignored > 0);
    let summary = run_consumer(dir.path(), &config, extra);
    let readings: HashMap<(String, u64), &Measurement> =
        traffic.readings.iter().map(|r| ((r.device.clone(), r.timestamp_ms), r)).collect();
    check_alerts(dir.path(), &traffic, &readings);
    check_failures(dir.path(), &traffic, stream.unwrap_or("iot-telemetry"));
    check_summary(&summary, &traffic);
}

#[test]
fn iot_consumer_in_memory_alerts_fails_and_summarises_exactly() {
    check_run(TrafficConfig { seed: 11, devices: 16, readings_per_device: 150, ..TrafficConfig::default() }, &[], None);
}

#[test]
fn iot_consumer_against_the_emulators() {
    let emulators = kcl_tests::emulators();
    let stream = kcl_tests::unique_name("iot-consumer");
    check_run(
        TrafficConfig { seed: 3, devices: 8, readings_per_device: 60, ..TrafficConfig::default() },
        &[
            "--kinesis-endpoint",
            emulators.kinesis_endpoint(),
            "--dynamodb-endpoint",
            emulators.dynamodb_endpoint(),
            "--stream",
            &stream,
            "--shards",
            "2",
        ],
        Some(&stream),
    );
}
