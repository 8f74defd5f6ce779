//! Exponential backoff with full jitter, and the small random generator behind it.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Exponential backoff with "full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"): after the n-th
/// consecutive failure the caller waits a uniformly random time in `[0, min(cap, base × 2ⁿ⁻¹)]`.
///
/// Full jitter spreads a fleet's retries out, so readers throttled together do not retry together.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff seeded from the process's random hash keys.
    pub fn new(base: Duration, cap: Duration) -> Self {
        let seed = RandomState::new().build_hasher().finish();
        Self::with_seed(base, cap, seed)
    }

    /// A backoff whose delays are a deterministic function of `seed` (for tests).
    pub fn with_seed(base: Duration, cap: Duration, seed: u64) -> Self {
        Self { base, cap: cap.max(base), attempt: 0, rng: SplitMix64(seed) }
    }

    /// The delay before the next retry; counts one more consecutive failure.
    pub fn next_delay(&mut self) -> Duration {
        // 2^20 × base already exceeds any sensible cap; limiting the shift keeps the arithmetic in range.
        let exponent = self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = self.base.saturating_mul(1 << exponent).min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.below(nanos.saturating_add(1)))
    }

    /// Forgets the failures (call after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Consecutive failures since the last [`reset`](Self::reset).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and good enough for jitter; not for anything secret.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `[0, bound)` (0 when `bound` is 0); the modulo bias is irrelevant for jitter.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next_u64() % bound }
    }
}

/// FNV-1a, to derive per-shard seeds from one configured seed.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_growing_ceiling_and_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        let mut backoff = Backoff::with_seed(base, cap, 7);
        for n in 0..40u32 {
            let ceiling = base.saturating_mul(1 << n.min(20)).min(cap);
            let delay = backoff.next_delay();
            assert!(delay <= ceiling, "attempt {n}: {delay:?} > {ceiling:?}");
        }
        assert_eq!(backoff.attempts(), 40);
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert!(backoff.next_delay() <= base);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut backoff = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(1), 42);
        let delays: Vec<Duration> = (0..100).map(|_| backoff.next_delay()).collect();
        let distinct = delays.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct > 90, "full jitter should rarely repeat: {distinct}");
        assert!(delays.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(500)));
    }

    #[test]
    fn same_seed_same_delays() {
        let mut a = Backoff::with_seed(Duration::from_millis(10), Duration::from_secs(1), 3);
        let mut b = Backoff::with_seed(Duration::from_millis(10), Duration::from_secs(1), 3);
        for _ in 0..10 {
            assert_eq!(a.next_delay(), b.next_delay());
        }
    }
}
