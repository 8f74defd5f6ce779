//! A tiny pseudo-random generator for shuffling candidates and jittering backoff. Randomness here only spreads
//! workers apart; it protects nothing, so a 64-bit mixer is plenty and saves a dependency.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::retrieve::backoff::SplitMix64;

/// The retrieval backoff's SplitMix64, seeded per worker, with the helpers the taker needs.
#[derive(Debug)]
pub(crate) struct Rng(SplitMix64);

impl Rng {
    /// Seeded from the worker id and the wall clock, so workers and restarts differ. (The wall clock is used for
    /// entropy only, never for timing.)
    pub(crate) fn seeded_for(worker_id: &str) -> Self {
        let mut hasher = DefaultHasher::new();
        worker_id.hash(&mut hasher);
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default().hash(&mut hasher);
        Self(SplitMix64(hasher.finish()))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A value in `0..bound` (`0` when `bound` is 0).
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        if bound == 0 { 0 } else { (self.next_u64() % bound as u64) as usize }
    }

    /// Fisher–Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}
