//! Metrics for AWS users: a [`metrics`] recorder that writes the [catalogue](crate::telemetry) (and any other
//! `metrics` series) as
//! CloudWatch [Embedded Metric Format] lines, which CloudWatch Logs turns into metrics (Lambda, ECS with the
//! awslogs driver, the CloudWatch agent). No AWS call is made: the lines go to stdout or any writer.
//!
//! Each flush writes, per group of series with equal dimensions, one JSON line with KCL's dimensions:
//! `Operation` (`ProcessTask`, `GetRecords`, `RenewAllLeases`, `TakeLeases`, `Checkpoint`, …), `ShardId`,
//! `WorkerIdentifier` and `StreamName` from the series' labels, the other labels capitalised (`Kind`, `Outcome`),
//! and the constant dimensions of [`EmfConfig::dimensions`]. Counters are written as their increase since the
//! previous flush, gauges as their value, histograms as arrays of their samples (at most
//! [`MAX_SAMPLES_PER_FLUSH`] per series and flush are kept).
//!
//! [Embedded Metric Format]: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
//!
//! ```
//! use kcl_core::emf::{EmfConfig, EmfRecorder, MetricsLevel};
//!
//! let recorder = EmfRecorder::new(
//!     EmfConfig::new("iot-consumer").with_level(MetricsLevel::Summary).with_dimension("WorkerIdentifier", "w1"),
//! )?;
//! let exporter = recorder.exporter();
//! metrics::with_local_recorder(&recorder, || metrics::counter!(kcl_core::telemetry::RECORDS_PROCESSED).increment(3));
//! let lines = exporter.render(std::time::SystemTime::now());
//! assert!(lines[0].contains(r#""kcl_records_processed_total":3"#));
//! // In a service: metrics::set_global_recorder(recorder), then exporter.spawn_stdout() inside the tokio runtime.
//! # Ok::<(), kcl_core::KclError>(())
//! ```

mod line;

use std::collections::HashMap;
use std::hash::Hash;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};

pub use line::MetricsLevel;
use line::{Frame, Observation, Observed};

use crate::error::KclError;

/// The most histogram samples kept per series between two flushes; later ones are dropped until the next flush.
pub const MAX_SAMPLES_PER_FLUSH: usize = 1000;

/// Settings of the EMF exporter.
///
/// | setting | default | Java KCL (`MetricsConfig`) |
/// |---|---|---|
/// | [`namespace`](Self::namespace) | required | `namespace` (the application name by default) |
/// | [`level`](Self::level) | [`MetricsLevel::Detailed`] | `metricsLevel` (`DETAILED`) |
/// | [`dimensions`](Self::dimensions) | none | — (KCL adds `WorkerIdentifier` itself) |
/// | [`flush_interval`](Self::flush_interval) | 10 s | `metricsBufferTimeMillis` (10 s) |
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmfConfig {
    /// The CloudWatch namespace of every metric (1 to 255 characters).
    pub namespace: String,
    /// How much is emitted.
    pub level: MetricsLevel,
    /// Dimensions added to every line, such as `("WorkerIdentifier", worker_id)`; a series' label of the same
    /// dimension name wins.
    pub dimensions: Vec<(String, String)>,
    /// How often [`EmfExporter::spawn_stdout`] writes.
    pub flush_interval: Duration,
}

impl EmfConfig {
    /// The defaults of the table above, in `namespace`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            level: MetricsLevel::default(),
            dimensions: Vec::new(),
            flush_interval: Duration::from_secs(10),
        }
    }

    /// Sets [`level`](Self::level).
    #[must_use]
    pub fn with_level(mut self, level: MetricsLevel) -> Self {
        self.level = level;
        self
    }

    /// Adds a constant dimension (see [`dimensions`](Self::dimensions)).
    #[must_use]
    pub fn with_dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dimensions.push((name.into(), value.into()));
        self
    }

    /// Sets [`flush_interval`](Self::flush_interval).
    #[must_use]
    pub fn with_flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    fn validate(&self) -> Result<(), KclError> {
        let invalid = |what: String| Err(KclError::InvalidConfig(format!("EMF exporter: {what}")));
        if self.namespace.is_empty() || self.namespace.chars().count() > 255 {
            return invalid("the namespace must have 1 to 255 characters".to_owned());
        }
        if self.flush_interval.is_zero() {
            return invalid("flush_interval must be greater than zero".to_owned());
        }
        // Operation and the labels' dimensions come on top; an EMF dimension set holds at most 30.
        if self.dimensions.len() > 20 {
            return invalid(format!("{} constant dimensions; at most 20 leave room for KCL's", self.dimensions.len()));
        }
        if let Some((name, _)) = self.dimensions.iter().find(|(name, value)| name.is_empty() || value.is_empty()) {
            return invalid(format!("dimension {name:?} needs a non-empty name and value"));
        }
        Ok(())
    }
}

/// A counter: its total, and the total at the previous flush.
#[derive(Default)]
struct CounterCell {
    total: AtomicU64,
    reported: AtomicU64,
}

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.total.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.total.fetch_max(value, Ordering::Relaxed);
    }
}

/// A gauge: its value's bits.
#[derive(Default)]
struct GaugeCell(AtomicU64);

impl GaugeCell {
    fn update(&self, change: impl Fn(f64) -> f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some(change(f64::from_bits(bits)).to_bits()));
    }
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// A histogram: the samples since the previous flush.
#[derive(Default)]
struct HistogramCell(Mutex<Vec<f64>>);

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        let mut samples = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() < MAX_SAMPLES_PER_FLUSH {
            samples.push(value);
        }
    }
}

struct Registry {
    config: EmfConfig,
    counters: Mutex<HashMap<Key, Arc<CounterCell>>>,
    gauges: Mutex<HashMap<Key, Arc<GaugeCell>>>,
    histograms: Mutex<HashMap<Key, Arc<HistogramCell>>>,
    units: Mutex<HashMap<String, Unit>>,
}

fn cell<T: Default>(map: &Mutex<HashMap<Key, Arc<T>>>, key: &Key) -> Arc<T> {
    map.lock().unwrap_or_else(PoisonError::into_inner).entry(key.clone()).or_default().clone()
}

fn snapshot<K: Clone + Eq + Hash, T>(map: &Mutex<HashMap<K, Arc<T>>>) -> Vec<(K, Arc<T>)> {
    map.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Registry {
    fn unit_of(&self, name: &str) -> Option<Unit> {
        let described = self.units.lock().unwrap_or_else(PoisonError::into_inner).get(name).copied();
        described.or_else(|| crate::telemetry::CATALOG.iter().find(|def| def.name == name).map(|def| def.unit))
    }

    fn observation(&self, key: &Key, value: Observed) -> Observation {
        Observation {
            name: key.name().to_owned(),
            labels: key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect(),
            unit: self.unit_of(key.name()),
            value,
        }
    }

    /// Every series' value since the previous call (counter increases and histogram samples are taken).
    fn collect(&self) -> Vec<Observation> {
        let mut observations = Vec::new();
        for (key, counter) in snapshot(&self.counters) {
            let total = counter.total.load(Ordering::Relaxed);
            let before = counter.reported.swap(total, Ordering::Relaxed);
            observations.push(self.observation(&key, Observed::Counter(total.saturating_sub(before))));
        }
        for (key, gauge) in snapshot(&self.gauges) {
            observations.push(self.observation(&key, Observed::Gauge(f64::from_bits(gauge.0.load(Ordering::Relaxed)))));
        }
        for (key, histogram) in snapshot(&self.histograms) {
            let samples = std::mem::take(&mut *histogram.0.lock().unwrap_or_else(PoisonError::into_inner));
            observations.push(self.observation(&key, Observed::Samples(samples)));
        }
        observations
    }
}

/// A [`metrics::Recorder`] that keeps every series for the EMF exporter. Install it with
/// [`metrics::set_global_recorder`] and keep its [`exporter`](Self::exporter) to write the lines.
pub struct EmfRecorder {
    registry: Arc<Registry>,
}

impl EmfRecorder {
    /// A recorder with these settings; an error names the setting that is out of range.
    pub fn new(config: EmfConfig) -> Result<Self, KclError> {
        config.validate()?;
        Ok(Self {
            registry: Arc::new(Registry {
                config,
                counters: Mutex::default(),
                gauges: Mutex::default(),
                histograms: Mutex::default(),
                units: Mutex::default(),
            }),
        })
    }

    /// The exporter that writes what this recorder collects (cheap to clone).
    pub fn exporter(&self) -> EmfExporter {
        EmfExporter { registry: self.registry.clone() }
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>) {
        if let Some(unit) = unit {
            self.registry.units.lock().unwrap_or_else(PoisonError::into_inner).insert(key.as_str().to_owned(), unit);
        }
    }
}

impl metrics::Recorder for EmfRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(cell(&self.registry.counters, key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(cell(&self.registry.gauges, key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(cell(&self.registry.histograms, key))
    }
}

/// Writes what an [`EmfRecorder`] collected as EMF lines.
#[derive(Clone)]
pub struct EmfExporter {
    registry: Arc<Registry>,
}

impl EmfExporter {
    /// The EMF lines (without newlines) for everything since the previous render or write, stamped `at`.
    pub fn render(&self, at: SystemTime) -> Vec<String> {
        let config = &self.registry.config;
        let timestamp_ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        let frame = Frame { namespace: &config.namespace, constant: &config.dimensions, timestamp_ms };
        line::render(&frame, line::apply_level(config.level, self.registry.collect()))
    }

    /// Renders now and writes the lines, one per line, to `out`.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        for line in self.render(SystemTime::now()) {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    /// Writes to stdout every [`EmfConfig::flush_interval`] until the task is aborted (write once more with
    /// [`write_to`](Self::write_to) at shutdown for the last interval). A failed write is logged once per failure
    /// streak; those lines are lost, the next flush goes on.
    pub fn spawn_stdout(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.registry.config.flush_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            let mut failing = false;
            loop {
                ticks.tick().await;
                match self.write_to(&mut std::io::stdout().lock()) {
                    Ok(()) => failing = false,
                    Err(error) if !failing => {
                        failing = true;
                        tracing::warn!(%error, "could not write EMF metric lines to stdout; retrying at the next flush");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
