//! A seeded generator of device traffic for the IoT consumer, with its ground truth: half the devices publish
//! EMQX-style readings, the other half MODE-style events; some readings spike past the default [`AlertRules`]
//! (a few readings in a row, so each spike is one alert), MODE devices also send events the consumer filters out,
//! and a few payloads are malformed (not JSON, truncated, wrong types, missing fields, bad timestamps, impossible
//! values). The same seed always gives the same traffic, so a test can regenerate it and compare.
//!
//! [`AlertRules`]: super::AlertRules

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::parse::format_rfc3339;
use super::{AlertKind, Measurement};

/// What to generate.
#[derive(Clone, Debug)]
pub struct TrafficConfig {
    /// Seed of the pseudo-random choices.
    pub seed: u64,
    /// Devices (even-numbered ones speak EMQX, odd-numbered ones MODE).
    pub devices: usize,
    /// Readings per device (spikes need at least 20).
    pub readings_per_device: usize,
    /// Timestamp of the first reading (epoch millis).
    pub start_ms: u64,
    /// Time between a device's readings.
    pub interval_ms: u64,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self { seed: 7, devices: 20, readings_per_device: 120, start_ms: 1_700_000_000_000, interval_ms: 1000 }
    }
}

/// Generated traffic and what a correct consumer makes of it (with [`AlertRules::default`](super::AlertRules)).
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// `(partition key, payload)` in the order to put them.
    pub records: Vec<(String, Vec<u8>)>,
    /// The valid measurements, per device in order.
    pub readings: Vec<Measurement>,
    /// The malformed records, which must end in the failure destination.
    pub malformed: Vec<(String, Vec<u8>)>,
    /// MODE events of types that carry no measurement (the consumer filters them out).
    pub ignored: usize,
    /// The alerts the readings must raise: `(device, timestamp_ms, kind)`.
    pub expected_alerts: Vec<(String, u64, AlertKind)>,
}

/// Rounds to two decimals, as a sensor reports.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Generates traffic for `config`.
pub fn generate(config: &TrafficConfig) -> Traffic {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut traffic = Traffic::default();
    let mut per_device: Vec<Vec<(String, Vec<u8>)>> = Vec::new();
    for index in 0..config.devices {
        let mode = index % 2 == 1;
        let device = if mode { format!("mode-{}", 1000 + index) } else { format!("emqx-client-{index:03}") };
        // Excursions, decided per slot of 10 readings (none in the first slot, so windows start normal): a heat
        // spike at readings 3–5 or a frost dip at 3–4 of the slot, and a humidity spike at 6–7.
        let mut temp_override = vec![None; config.readings_per_device];
        let mut hum_override = vec![None; config.readings_per_device];
        for slot in 1..config.readings_per_device / 10 {
            let base = slot * 10;
            let roll: f64 = rng.random();
            if roll < 0.12 {
                traffic.expected_alerts.push((device.clone(), 0, AlertKind::TempHigh));
                for value in &mut temp_override[base + 3..base + 6] {
                    *value = Some((rng.random_range(38.0..45.0), traffic.expected_alerts.len() - 1));
                }
            } else if roll < 0.18 {
                traffic.expected_alerts.push((device.clone(), 0, AlertKind::TempLow));
                for value in &mut temp_override[base + 3..base + 5] {
                    *value = Some((rng.random_range(-8.0..-2.0), traffic.expected_alerts.len() - 1));
                }
            }
            if rng.random_bool(0.10) {
                traffic.expected_alerts.push((device.clone(), 0, AlertKind::HumHigh));
                for value in &mut hum_override[base + 6..base + 8] {
                    *value = Some((rng.random_range(88.0..95.0), traffic.expected_alerts.len() - 1));
                }
            }
        }
        let mut records = Vec::new();
        for j in 0..config.readings_per_device {
            let timestamp_ms = config.start_ms + j as u64 * config.interval_ms + index as u64;
            let mut temp = round2(rng.random_range(18.0..24.0));
            let mut hum = round2(rng.random_range(40.0..60.0));
            // The first reading of an excursion is the one that alerts.
            for (value, alert) in [(&mut temp, temp_override[j]), (&mut hum, hum_override[j])] {
                if let Some((spike, alert)) = alert {
                    *value = round2(spike);
                    let expected = &mut traffic.expected_alerts[alert];
                    if expected.1 == 0 {
                        expected.1 = timestamp_ms;
                    }
                }
            }
            // Some MODE readings carry humidity only (never during an excursion: slots' readings 9).
            let hum_only = mode && j % 10 == 9 && rng.random_bool(0.3);
            let measurement =
                Measurement { device: device.clone(), timestamp_ms, temp: (!hum_only).then_some(temp), hum: Some(hum) };
            let payload = if mode { mode_payload(&measurement, index) } else { emqx_payload(&measurement) };
            records.push((device.clone(), payload.clone()));
            traffic.readings.push(measurement);
            if mode && rng.random_bool(0.04) {
                let door = json!({"eventType": "doorOpened", "eventData": {"door": "front"},
                    "timestamp": format_rfc3339(timestamp_ms + 1), "homeId": 100 + index / 4,
                    "originDeviceId": 1000 + index});
                records.push((device.clone(), door.to_string().into_bytes()));
                traffic.ignored += 1;
            }
            if rng.random_bool(0.03) {
                let bad = malformed(rng.random_range(0..6), &device, timestamp_ms, &payload);
                records.push((device.clone(), bad.clone()));
                traffic.malformed.push((device.clone(), bad));
            }
        }
        per_device.push(records);
    }
    // Devices publish concurrently: interleave their messages round-robin.
    let longest = per_device.iter().map(Vec::len).max().unwrap_or(0);
    for round in 0..longest {
        for records in &per_device {
            if let Some(record) = records.get(round) {
                traffic.records.push(record.clone());
            }
        }
    }
    traffic
}

fn emqx_payload(m: &Measurement) -> Vec<u8> {
    json!({"timestamp": m.timestamp_ms, "client_id": m.device, "temp": m.temp, "hum": m.hum}).to_string().into_bytes()
}

fn mode_payload(m: &Measurement, index: usize) -> Vec<u8> {
    let data = match m.temp {
        Some(temp) => json!({"temperature": temp, "humidity": m.hum}),
        None => json!({"humidity": m.hum}),
    };
    let kind = if m.temp.is_some() { "sensorReading" } else { "climate" };
    json!({"eventType": kind, "eventData": data, "timestamp": format_rfc3339(m.timestamp_ms),
        "homeId": 100 + index / 4, "originDeviceId": 1000 + index})
    .to_string()
    .into_bytes()
}

/// A malformed payload of kind `kind` (0–5); unique per device and time so tests can match them one by one.
fn malformed(kind: u32, device: &str, timestamp_ms: u64, valid: &[u8]) -> Vec<u8> {
    let text = match kind {
        0 => format!("temp=21.5;hum=40;dev={device};t={timestamp_ms}"),
        1 => {
            let mut cut = valid[..valid.len() / 2].to_vec();
            cut.extend_from_slice(format!("…{timestamp_ms}").as_bytes());
            return cut;
        }
        2 => json!({"timestamp": timestamp_ms, "client_id": device, "temp": "hot", "hum": 50}).to_string(),
        3 => json!({"timestamp": timestamp_ms, "temp": 21.0, "hum": 50, "from": device}).to_string(),
        4 => json!({"eventType": "sensorReading", "eventData": {"temperature": 21.0}, "timestamp": "yesterday",
            "homeId": 1, "originDeviceId": device, "t": timestamp_ms})
        .to_string(),
        _ => json!({"timestamp": timestamp_ms, "client_id": device, "temp": 999.0, "hum": 50}).to_string(),
    };
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iot::{AlertRules, Monitor, parse, wanted};
    use std::time::Duration;

    #[test]
    fn the_same_seed_gives_the_same_traffic() {
        let config = TrafficConfig::default();
        assert_eq!(generate(&config).records, generate(&config).records);
        let other = generate(&TrafficConfig { seed: 8, ..config.clone() });
        assert_ne!(other.records, generate(&config).records);
    }

    #[test]
    fn the_ground_truth_matches_what_the_domain_logic_makes_of_the_traffic() {
        let traffic = generate(&TrafficConfig::default());
        assert!(traffic.malformed.len() >= 20 && traffic.expected_alerts.len() >= 20 && traffic.ignored > 0);
        let kinds: std::collections::HashSet<_> = traffic.expected_alerts.iter().map(|a| a.2).collect();
        assert_eq!(kinds.len(), 3, "every kind of alert occurs");
        let mut monitor = Monitor::new(Duration::from_secs(60), AlertRules::default());
        let (mut measurements, mut failed, mut filtered) = (Vec::new(), Vec::new(), 0);
        for (key, payload) in &traffic.records {
            if !wanted(payload) {
                filtered += 1;
                continue;
            }
            match parse(payload) {
                Ok(Some(m)) => measurements.push(m),
                Ok(None) => panic!("a wanted record without a measurement"),
                Err(_) => failed.push((key.clone(), payload.clone())),
            }
        }
        let observed = monitor.observe(&measurements, |_| Ok::<(), ()>(())).unwrap();
        assert_eq!(filtered, traffic.ignored);
        failed.sort();
        let mut malformed = traffic.malformed.clone();
        malformed.sort();
        assert_eq!(failed, malformed);
        let mut fired: Vec<_> = observed.alerts.iter().map(|a| (a.device.clone(), a.timestamp_ms, a.kind)).collect();
        let mut expected = traffic.expected_alerts.clone();
        fired.sort();
        expected.sort();
        assert_eq!(fired, expected);
        assert_eq!(observed.accepted, traffic.readings.len());
    }
}
