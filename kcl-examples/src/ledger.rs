//! `Ledger`: records every delivery a fleet makes and judges it: missing records, duplicates, and per-partition-key
//! order of first deliveries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// What the ledger concluded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Records the producer put.
    pub put: u64,
    /// Deliveries to processors (including duplicates).
    pub delivered: u64,
    /// Distinct records delivered at least once.
    pub unique: u64,
    /// Deliveries beyond the first of a record.
    pub duplicates: u64,
    /// Records put but never delivered.
    pub missing: u64,
    /// First deliveries that came before an earlier record of the same partition key.
    pub order_violations: u64,
}

impl Verdict {
    /// At-least-once held and per-key order was kept.
    pub fn passed(&self) -> bool {
        self.missing == 0 && self.order_violations == 0
    }
}

#[derive(Default)]
struct State {
    put: HashMap<String, u64>,
    deliveries: HashMap<(String, u64), u32>,
    last_first_delivery: HashMap<String, u64>,
    order_violations: u64,
    per_worker: BTreeMap<String, u64>,
}

/// A thread-safe record of puts and deliveries; records are identified by partition key and a per-key counter.
#[derive(Default)]
pub struct Ledger {
    state: Mutex<State>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that the producer put record `seq` of `key` (counters start at 0 and go up by one per key).
    pub fn put(&self, key: &str, seq: u64) {
        let mut state = self.lock();
        let next = state.put.entry(key.to_owned()).or_default();
        *next = (*next).max(seq + 1);
    }

    /// Notes that `worker` processed record `seq` of `key`.
    pub fn delivered(&self, worker: &str, key: &str, seq: u64) {
        let mut guard = self.lock();
        let state = &mut *guard;
        *state.per_worker.entry(worker.to_owned()).or_default() += 1;
        let count = state.deliveries.entry((key.to_owned(), seq)).or_default();
        *count += 1;
        if *count == 1 {
            let last = state.last_first_delivery.entry(key.to_owned()).or_insert(seq);
            if seq < *last {
                state.order_violations += 1;
            }
            *last = (*last).max(seq);
        }
    }

    /// Deliveries per worker so far.
    pub fn per_worker(&self) -> BTreeMap<String, u64> {
        self.lock().per_worker.clone()
    }

    /// Distinct records delivered so far.
    pub fn unique_delivered(&self) -> u64 {
        self.lock().deliveries.len() as u64
    }

    /// The verdict over everything noted so far.
    pub fn verdict(&self) -> Verdict {
        let state = self.lock();
        let put: u64 = state.put.values().sum();
        let delivered: u64 = state.deliveries.values().map(|&c| u64::from(c)).sum();
        let unique = state.deliveries.len() as u64;
        let missing = state
            .put
            .iter()
            .map(|(key, &count)| {
                (0..count).filter(|seq| !state.deliveries.contains_key(&(key.clone(), *seq))).count() as u64
            })
            .sum();
        Verdict {
            put,
            delivered,
            unique,
            duplicates: delivered - unique,
            missing,
            order_violations: state.order_violations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_missing_duplicates_and_reordering() {
        let ledger = Ledger::new();
        for seq in 0..4 {
            ledger.put("a", seq);
        }
        ledger.put("b", 0);
        ledger.delivered("w1", "a", 0);
        ledger.delivered("w1", "a", 2);
        ledger.delivered("w1", "a", 1);
        ledger.delivered("w2", "a", 2);
        ledger.delivered("w2", "b", 0);
        let verdict = ledger.verdict();
        assert_eq!(
            verdict,
            Verdict { put: 5, delivered: 5, unique: 4, duplicates: 1, missing: 1, order_violations: 1 }
        );
        assert!(!verdict.passed());
        ledger.delivered("w2", "a", 3);
        let verdict = ledger.verdict();
        assert_eq!((verdict.missing, verdict.order_violations), (0, 1));
    }
}
