//! Fault injection for the in-memory stream: seeded per-call probabilities and scripted per-shard schedules.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::retrieve::api::{ApiError, ApiErrorKind};
use crate::retrieve::backoff::{SplitMix64, fnv1a};

/// One injected failure (or delay) for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `ProvisionedThroughputExceededException`.
    Throttle,
    /// `InternalFailureException` (HTTP 500).
    InternalFailure,
    /// `ExpiredIteratorException` (`GetRecords` only).
    ExpiredIterator,
    /// The call answers normally after this delay (longer than the reader's call timeout: a timeout).
    Latency(Duration),
}

/// Per-call fault probabilities, drawn from a per-shard generator seeded with `seed` and the shard id, so each
/// shard's sequence of faults is reproducible whatever the interleaving of shards.
///
/// Probabilities apply to every `GetRecords` call (`expired_iterator` only there) and to every `GetShardIterator`
/// call (throttle, internal failure, latency). At most one fault is injected per call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Seed of the per-shard generators.
    pub seed: u64,
    /// Probability of [`Fault::Throttle`].
    pub throttle: f64,
    /// Probability of [`Fault::InternalFailure`].
    pub internal_failure: f64,
    /// Probability of [`Fault::ExpiredIterator`].
    pub expired_iterator: f64,
    /// Probability of a [`Fault::Latency`] of `latency_duration`.
    pub latency: f64,
    /// The injected latency.
    pub latency_duration: Duration,
}

impl FaultConfig {
    /// `probability` of a fault per call, split evenly between throttling, internal failure and expired iterator.
    pub fn uniform(seed: u64, probability: f64) -> Self {
        let each = probability / 3.0;
        Self { seed, throttle: each, internal_failure: each, expired_iterator: each, ..Self::default() }
    }
}

/// How many faults of each kind were injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Throttling errors returned.
    pub throttles: u64,
    /// Internal failures returned.
    pub internal_failures: u64,
    /// Expired-iterator errors returned.
    pub expired_iterators: u64,
    /// Calls delayed.
    pub latencies: u64,
}

/// Which call a fault is drawn for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CallKind {
    GetShardIterator,
    GetRecords,
}

#[derive(Default)]
pub(super) struct Faults {
    config: FaultConfig,
    generators: HashMap<String, SplitMix64>,
    scripts: HashMap<String, VecDeque<Fault>>,
}

#[derive(Default)]
pub(super) struct FaultCounters {
    throttles: AtomicU64,
    internal_failures: AtomicU64,
    expired_iterators: AtomicU64,
    latencies: AtomicU64,
}

impl FaultCounters {
    pub(super) fn snapshot(&self) -> FaultCounts {
        FaultCounts {
            throttles: self.throttles.load(Ordering::Relaxed),
            internal_failures: self.internal_failures.load(Ordering::Relaxed),
            expired_iterators: self.expired_iterators.load(Ordering::Relaxed),
            latencies: self.latencies.load(Ordering::Relaxed),
        }
    }

    fn count(&self, fault: Fault) {
        let counter = match fault {
            Fault::Throttle => &self.throttles,
            Fault::InternalFailure => &self.internal_failures,
            Fault::ExpiredIterator => &self.expired_iterators,
            Fault::Latency(_) => &self.latencies,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Faults {
    pub(super) fn configure(&mut self, config: FaultConfig) {
        self.config = config;
        self.generators.clear();
    }

    pub(super) fn script(&mut self, shard_id: &str, faults: impl IntoIterator<Item = Fault>) {
        self.scripts.entry(shard_id.to_owned()).or_default().extend(faults);
    }

    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    fn is_quiet(&self) -> bool {
        let c = &self.config;
        self.scripts.is_empty()
            && c.throttle <= 0.0
            && c.internal_failure <= 0.0
            && c.expired_iterator <= 0.0
            && c.latency <= 0.0
    }

    /// The fault for this call, if any: the shard's script first (scripts apply to `GetRecords` only), then a draw.
    pub(super) fn draw(&mut self, shard_id: &str, call: CallKind, counters: &FaultCounters) -> Option<Fault> {
        if self.is_quiet() {
            return None;
        }
        let scripted = match call {
            CallKind::GetRecords => self.scripts.get_mut(shard_id).and_then(VecDeque::pop_front),
            CallKind::GetShardIterator => None,
        };
        let fault = scripted.or_else(|| self.draw_random(shard_id, call));
        if let Some(fault) = fault {
            counters.count(fault);
        }
        fault
    }

    fn draw_random(&mut self, shard_id: &str, call: CallKind) -> Option<Fault> {
        let c = &self.config;
        let seed = c.seed ^ fnv1a(shard_id.as_bytes());
        let rng = self.generators.entry(shard_id.to_owned()).or_insert_with(|| SplitMix64(seed));
        // 53 random bits as a uniform float in [0, 1).
        let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let expired = if call == CallKind::GetRecords { c.expired_iterator } else { 0.0 };
        let mut edge = c.throttle;
        if x < edge {
            return Some(Fault::Throttle);
        }
        edge += c.internal_failure;
        if x < edge {
            return Some(Fault::InternalFailure);
        }
        edge += expired;
        if x < edge {
            return Some(Fault::ExpiredIterator);
        }
        edge += c.latency;
        (x < edge).then_some(Fault::Latency(c.latency_duration))
    }
}

/// The error a fault stands for; `None` for latency, which only delays the call.
pub(super) fn fault_error(fault: Fault) -> Option<ApiError> {
    match fault {
        Fault::Throttle => Some(ApiError::new(
            ApiErrorKind::Throttled,
            "ProvisionedThroughputExceededException: injected by the in-memory stream",
        )),
        Fault::InternalFailure => {
            Some(ApiError::new(ApiErrorKind::ServerError, "InternalFailureException: injected by the in-memory stream"))
        }
        Fault::ExpiredIterator => Some(ApiError::new(
            ApiErrorKind::ExpiredIterator,
            "ExpiredIteratorException: injected by the in-memory stream",
        )),
        Fault::Latency(_) => None,
    }
}
