//! Results: `name: value unit` lines, or one JSON object; medians over repeated runs; process CPU and memory.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

/// The figures of one scenario. A metric recorded once per run collects one sample per run; the text output shows
/// the median, the JSON output the median and every sample.
pub struct Report {
    scenario: &'static str,
    parameters: BTreeMap<String, Value>,
    /// In first-recorded order: name, unit, samples.
    metrics: Vec<(String, &'static str, Vec<f64>)>,
    notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &'static str) -> Self {
        Self { scenario, parameters: BTreeMap::new(), metrics: Vec::new(), notes: Vec::new() }
    }

    /// A setting the figures depend on (printed as a `#` comment line in text mode).
    pub fn param(&mut self, name: &str, value: impl Into<Value>) {
        self.parameters.insert(name.to_owned(), value.into());
    }

    /// One more sample of `name`.
    pub fn metric(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        let name = name.into();
        match self.metrics.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, _, samples)) => samples.push(value),
            None => self.metrics.push((name, unit, vec![value])),
        }
    }

    /// A remark that belongs with the figures (printed as a `#` comment line in text mode).
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn print(&self, as_json: bool) {
        if as_json {
            let metrics: serde_json::Map<String, Value> = self
                .metrics
                .iter()
                .map(|(name, unit, samples)| {
                    let value = json!({
                        "value": median(samples),
                        "unit": unit,
                        "samples": samples,
                        "min": samples.iter().copied().fold(f64::INFINITY, f64::min),
                        "max": samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    });
                    (name.clone(), value)
                })
                .collect();
            let object = json!({
                "scenario": self.scenario,
                "parameters": self.parameters,
                "metrics": metrics,
                "notes": self.notes,
            });
            println!("{object}");
            return;
        }
        for (name, value) in &self.parameters {
            println!("# {name} = {value}");
        }
        for note in &self.notes {
            println!("# {note}");
        }
        for (name, unit, samples) in &self.metrics {
            println!("{name}: {} {unit}", format_value(median(samples)));
        }
        if self.metrics.iter().any(|(_, _, samples)| samples.len() > 1) {
            println!("# values are medians over the runs; --json lists every sample");
        }
    }
}

pub fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The value at quantile `q` (0..=1) of sorted samples, nearest-rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn format_value(value: f64) -> String {
    if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// CPU time and peak memory from `getrusage`.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub user: Duration,
    pub system: Duration,
    /// Peak resident set size in bytes (`ru_maxrss`, KiB on Linux).
    pub max_rss: u64,
}

impl Usage {
    /// This process, all threads.
    pub fn this_process() -> Self {
        Self::of(libc::RUSAGE_SELF)
    }

    fn of(who: libc::c_int) -> Self {
        // SAFETY: getrusage writes a whole `rusage` into the zeroed struct it is given, and nothing else.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            if libc::getrusage(who, &mut usage) != 0 {
                // Zeros would print as a CPU cost of nothing and win every comparison: stop the run instead.
                let error = std::io::Error::last_os_error();
                panic!("bench: getrusage({who}) failed ({error}); CPU time and memory cannot be measured");
            }
            usage
        };
        Self::from_rusage(&usage)
    }

    /// The figures of a `rusage` (from `getrusage` or `wait4`).
    pub fn from_rusage(usage: &libc::rusage) -> Self {
        let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32).saturating_mul(1000));
        Self {
            user: time(usage.ru_utime),
            system: time(usage.ru_stime),
            max_rss: (usage.ru_maxrss as u64).saturating_mul(1024),
        }
    }

    pub fn cpu(&self) -> Duration {
        self.user + self.system
    }

    /// CPU used since `earlier` (`max_rss` stays this sample's).
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            max_rss: self.max_rss,
        }
    }
}
