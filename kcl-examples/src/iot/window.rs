//! Per-device rolling windows and alert rules: the [`Monitor`] keeps, for each device, the measurements of the last
//! `window` (by the device's own timestamps), raises an [`Alert`] when a value crosses a threshold of the
//! [`AlertRules`] (once per excursion, not for every reading above it) and summarises each device as min/avg/max.
//!
//! Kinesis delivers at least once, so the same reading can arrive twice (a retried batch, a lease that moved). The
//! monitor treats a reading that is not newer than the device's last one as a replay and skips it: windows, counts
//! and alerts stay exact under re-delivery. The price: a device's late, out-of-order readings are dropped too.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Measurement;

/// Thresholds that raise alerts (a value strictly beyond one).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlertRules {
    /// Temperature above this (°C) raises [`AlertKind::TempHigh`].
    pub temp_high: f64,
    /// Temperature below this (°C) raises [`AlertKind::TempLow`].
    pub temp_low: f64,
    /// Humidity above this (%) raises [`AlertKind::HumHigh`].
    pub hum_high: f64,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self { temp_high: 35.0, temp_low: 0.0, hum_high: 85.0 }
    }
}

/// Which threshold was crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Too hot.
    TempHigh,
    /// Too cold (frost risk).
    TempLow,
    /// Too humid (condensation, mould).
    HumHigh,
}

const KINDS: [AlertKind; 3] = [AlertKind::TempHigh, AlertKind::TempLow, AlertKind::HumHigh];

/// Min, average and max of one quantity over a window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The smallest value.
    pub min: f64,
    /// The mean.
    pub avg: f64,
    /// The largest value.
    pub max: f64,
    /// How many values.
    pub count: usize,
}

impl Stats {
    /// Stats of `values`, `None` when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut stats: Option<Stats> = None;
        let mut sum = 0.0;
        for value in values {
            sum += value;
            stats = Some(match stats {
                None => Stats { min: value, avg: 0.0, max: value, count: 1 },
                Some(s) => Stats { min: s.min.min(value), avg: 0.0, max: s.max.max(value), count: s.count + 1 },
            });
        }
        stats.map(|s| Stats { avg: sum / s.count as f64, ..s })
    }
}

/// A threshold crossing, as written to the alerts file (one JSON object per line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The device.
    pub device: String,
    /// The device's timestamp of the reading that crossed the threshold (epoch millis).
    pub timestamp_ms: u64,
    /// Which threshold.
    pub kind: AlertKind,
    /// The reading's value.
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// The quantity's rolling stats including this reading.
    pub window: Stats,
}

/// One device's state and totals at the end of a run (printed as JSON by the example).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceSummary {
    /// The device.
    pub device: String,
    /// Readings accepted (replays not counted).
    pub readings: u64,
    /// Readings skipped as not newer than the device's last one.
    pub replays_skipped: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// The device's newest timestamp (epoch millis).
    pub last_timestamp_ms: u64,
    /// Temperature over the window ending at the newest reading.
    pub temp: Option<Stats>,
    /// Humidity over the window ending at the newest reading.
    pub hum: Option<Stats>,
}

#[derive(Clone, Debug, Default)]
struct DeviceWindow {
    samples: VecDeque<(u64, Option<f64>, Option<f64>)>,
    last_timestamp_ms: Option<u64>,
    readings: u64,
    replays_skipped: u64,
    alerts: u64,
    /// Whether each [`KINDS`] threshold is currently exceeded (alerts fire on the transition only).
    breached: [bool; 3],
}

impl DeviceWindow {
    fn temps(&self) -> impl Iterator<Item = f64> + '_ {
        self.samples.iter().filter_map(|s| s.1)
    }

    fn hums(&self) -> impl Iterator<Item = f64> + '_ {
        self.samples.iter().filter_map(|s| s.2)
    }
}

/// Rolling windows and alert state of every device seen.
#[derive(Clone, Debug)]
pub struct Monitor {
    window_ms: u64,
    rules: AlertRules,
    devices: HashMap<String, DeviceWindow>,
}

/// What one batch of measurements did to the monitor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Alerts raised, in measurement order.
    pub alerts: Vec<Alert>,
    /// Measurements accepted.
    pub accepted: usize,
    /// Measurements skipped as replays.
    pub replays: usize,
}

impl Monitor {
    /// A monitor keeping `window` of readings per device (at least 1 ms).
    pub fn new(window: Duration, rules: AlertRules) -> Self {
        Self { window_ms: (window.as_millis() as u64).max(1), rules, devices: HashMap::new() }
    }

    /// Applies `measurements` (in delivery order) and hands the alerts they raise to `commit`. The monitor's state
    /// changes only when `commit` succeeds, so a batch whose alerts could not be stored can be retried and raises
    /// them again instead of skipping its readings as replays.
    pub fn observe<E>(
        &mut self,
        measurements: &[Measurement],
        commit: impl FnOnce(&[Alert]) -> Result<(), E>,
    ) -> Result<Observed, E> {
        // Work on copies of the touched devices: cheap (a window's worth of samples each) and all-or-nothing.
        let mut staged: HashMap<&str, DeviceWindow> = HashMap::new();
        let mut observed = Observed::default();
        for m in measurements {
            let device = staged
                .entry(m.device.as_str())
                .or_insert_with(|| self.devices.get(&m.device).cloned().unwrap_or_default());
            if device.last_timestamp_ms.is_some_and(|last| m.timestamp_ms <= last) {
                device.replays_skipped += 1;
                observed.replays += 1;
                continue;
            }
            observed.accepted += 1;
            device.last_timestamp_ms = Some(m.timestamp_ms);
            device.readings += 1;
            device.samples.push_back((m.timestamp_ms, m.temp, m.hum));
            while device.samples.front().is_some_and(|s| s.0 + self.window_ms <= m.timestamp_ms) {
                device.samples.pop_front();
            }
            for (slot, kind) in KINDS.into_iter().enumerate() {
                let (value, threshold, beyond) = match kind {
                    AlertKind::TempHigh => (m.temp, self.rules.temp_high, m.temp.map(|t| t > self.rules.temp_high)),
                    AlertKind::TempLow => (m.temp, self.rules.temp_low, m.temp.map(|t| t < self.rules.temp_low)),
                    AlertKind::HumHigh => (m.hum, self.rules.hum_high, m.hum.map(|h| h > self.rules.hum_high)),
                };
                // A reading without this quantity leaves the excursion state as it was.
                let (Some(value), Some(beyond)) = (value, beyond) else { continue };
                if beyond && !device.breached[slot] {
                    let stats = match kind {
                        AlertKind::HumHigh => Stats::of(device.hums()),
                        _ => Stats::of(device.temps()),
                    };
                    if let Some(window) = stats {
                        device.alerts += 1;
                        observed.alerts.push(Alert {
                            device: m.device.clone(),
                            timestamp_ms: m.timestamp_ms,
                            kind,
                            value,
                            threshold,
                            window,
                        });
                    }
                }
                device.breached[slot] = beyond;
            }
        }
        commit(&observed.alerts)?;
        for (device, state) in staged {
            self.devices.insert(device.to_owned(), state);
        }
        Ok(observed)
    }

    /// Every device's totals and current window stats, sorted by device.
    pub fn summary(&self) -> Vec<DeviceSummary> {
        let mut summary: Vec<DeviceSummary> = self
            .devices
            .iter()
            .map(|(device, state)| DeviceSummary {
                device: device.clone(),
                readings: state.readings,
                replays_skipped: state.replays_skipped,
                alerts: state.alerts,
                last_timestamp_ms: state.last_timestamp_ms.unwrap_or(0),
                temp: Stats::of(state.temps()),
                hum: Stats::of(state.hums()),
            })
            .collect();
        summary.sort_by(|a, b| a.device.cmp(&b.device));
        summary
    }

    /// Readings accepted over all devices.
    pub fn readings(&self) -> u64 {
        self.devices.values().map(|d| d.readings).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(device: &str, timestamp_ms: u64, temp: f64, hum: f64) -> Measurement {
        Measurement { device: device.into(), timestamp_ms, temp: Some(temp), hum: Some(hum) }
    }

    fn observe(monitor: &mut Monitor, measurements: &[Measurement]) -> Observed {
        monitor.observe(measurements, |_| Ok::<(), ()>(())).unwrap()
    }

    #[test]
    fn the_window_rolls_by_device_time() {
        let mut monitor = Monitor::new(Duration::from_secs(10), AlertRules::default());
        let readings: Vec<_> = (0..5).map(|i| m("a", i * 4000, 20.0 + i as f64, 50.0)).collect();
        observe(&mut monitor, &readings);
        let summary = &monitor.summary()[0];
        // Newest at 16 s: the window (6 s, 16 s] holds the readings at 8, 12 and 16 s.
        assert_eq!(summary.temp, Some(Stats { min: 22.0, avg: 23.0, max: 24.0, count: 3 }));
        assert_eq!(summary.readings, 5);
        assert_eq!(summary.last_timestamp_ms, 16_000);
    }

    #[test]
    fn alerts_fire_once_per_excursion() {
        let mut monitor = Monitor::new(Duration::from_secs(60), AlertRules::default());
        let temps = [20.0, 36.0, 40.0, 20.0, 37.0, -1.0, -2.0];
        let readings: Vec<_> = temps.iter().enumerate().map(|(i, &t)| m("a", i as u64, t, 50.0)).collect();
        let observed = observe(&mut monitor, &readings);
        let fired: Vec<_> = observed.alerts.iter().map(|a| (a.timestamp_ms, a.kind)).collect();
        assert_eq!(fired, [(1, AlertKind::TempHigh), (4, AlertKind::TempHigh), (5, AlertKind::TempLow)]);
        assert_eq!(observed.alerts[0].window, Stats { min: 20.0, avg: 28.0, max: 36.0, count: 2 });
        assert_eq!(observed.alerts[0].threshold, 35.0);
        let hum = observe(&mut monitor, &[m("a", 10, 20.0, 90.0), m("b", 10, 20.0, 90.0)]);
        assert_eq!(hum.alerts.len(), 2, "devices keep separate state");
        assert!(hum.alerts.iter().all(|a| a.kind == AlertKind::HumHigh));
    }

    #[test]
    fn replays_are_skipped() {
        let mut monitor = Monitor::new(Duration::from_secs(60), AlertRules::default());
        let first = [m("a", 1, 20.0, 50.0), m("a", 2, 40.0, 50.0)];
        assert_eq!(observe(&mut monitor, &first).alerts.len(), 1);
        let again = observe(&mut monitor, &[first[0].clone(), first[1].clone(), m("a", 3, 41.0, 50.0)]);
        assert_eq!((again.accepted, again.replays, again.alerts.len()), (1, 2, 0));
        assert_eq!(monitor.readings(), 3);
        assert_eq!(monitor.summary()[0].replays_skipped, 2);
    }

    #[test]
    fn a_failed_commit_leaves_the_state_untouched() {
        let mut monitor = Monitor::new(Duration::from_secs(60), AlertRules::default());
        let batch = [m("a", 1, 40.0, 50.0)];
        assert_eq!(monitor.observe(&batch, |_| Err("disk full")), Err("disk full"));
        assert_eq!(monitor.readings(), 0);
        assert_eq!(observe(&mut monitor, &batch).alerts.len(), 1, "the retried batch raises its alert");
    }

    #[test]
    fn readings_without_a_quantity_keep_the_excursion_open() {
        let mut monitor = Monitor::new(Duration::from_secs(60), AlertRules::default());
        let hum_only = Measurement { device: "a".into(), timestamp_ms: 2, temp: None, hum: Some(50.0) };
        let observed = observe(&mut monitor, &[m("a", 1, 40.0, 50.0), hum_only, m("a", 3, 41.0, 50.0)]);
        assert_eq!(observed.alerts.len(), 1);
        assert_eq!(monitor.summary()[0].temp.map(|s| s.count), Some(2));
    }
}
