//! The child side of the `e2e` protocol (see `contender.rs`): announcing milestones on stdout as they happen, and
//! the child's own record of when they happened and what they cost.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::report::Usage;

/// A moment in the consumer's life: when (since `main`) and the process's CPU and peak RSS so far.
#[derive(Clone, Copy)]
pub struct Milestone {
    at: Duration,
    usage: Usage,
}

impl Milestone {
    pub fn now(started: Instant) -> Self {
        Self { at: started.elapsed(), usage: Usage::this_process() }
    }

    /// Takes the milestone and tells the parent at once (it stamps the line's arrival with its own clock).
    pub fn announce(name: &str, started: Instant) -> Self {
        let mut out = std::io::stdout().lock();
        // A parent that stopped reading only loses the stamp; the run's result line reports the failure.
        let _ = writeln!(out, "{}", json!({ "milestone": name }));
        let _ = out.flush();
        Self::now(started)
    }

    pub fn json(&self) -> Value {
        json!({
            "ms": self.at.as_secs_f64() * 1e3,
            "cpu_ms": self.usage.cpu().as_secs_f64() * 1e3,
            "max_rss_mib": self.usage.max_rss as f64 / (1 << 20) as f64,
        })
    }
}

/// `None` as JSON `null`.
pub fn json_of(milestone: Option<&Milestone>) -> Value {
    milestone.map_or(Value::Null, Milestone::json)
}
