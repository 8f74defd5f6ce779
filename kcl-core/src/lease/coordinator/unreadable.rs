//! Reporting the lease table items the store cannot read: a gauge on every listing, and one ERROR naming the keys
//! and the remedy whenever the set of such items changes (not on every scan, which would bury the message).
//!
//! Such a shard is deliberately **not consumed**: its checkpoint is unknown, and every start position this worker
//! could pick would either skip records (LATEST, a guess) or silently rewrite an item it cannot read (which may be
//! another tool's, or evidence of what went wrong). Its records stay in the stream for the stream's retention
//! period; the ERROR and the `kcl_unreadable_leases` gauge are there so that an operator runs `kcl-admin repair`
//! within it. Java KCL fails the whole lease listing on such an item; here the readable shards keep going.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::lease::UnreadableLease;

/// What to tell the operator after a listing, given the previous listing's unreadable items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Nothing changed: stay quiet.
    Quiet,
    /// The set of unreadable items changed and is not empty: an ERROR naming them.
    Unreadable,
    /// Every item is readable again after some were not.
    Recovered,
}

/// The decision: speak only when the set changes.
pub(crate) fn notice(previous: &BTreeSet<UnreadableLease>, current: &BTreeSet<UnreadableLease>) -> Notice {
    if previous == current {
        Notice::Quiet
    } else if current.is_empty() {
        Notice::Recovered
    } else {
        Notice::Unreadable
    }
}

/// The unreadable items of the last listing this worker reported on.
#[derive(Default)]
pub(crate) struct UnreadableReport {
    last: Mutex<BTreeSet<UnreadableLease>>,
}

impl UnreadableReport {
    /// Records a listing's unreadable items: sets `gauge` and logs when the set changed.
    pub(crate) fn observe(&self, table_items: &[UnreadableLease], gauge: &metrics::Gauge) {
        let current: BTreeSet<UnreadableLease> = table_items.iter().cloned().collect();
        gauge.set(current.len() as f64);
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match notice(&last, &current) {
            Notice::Quiet => {}
            Notice::Unreadable => {
                let items: Vec<String> = current.iter().map(|u| format!("{} ({})", u.lease_key, u.reason)).collect();
                tracing::error!(
                    count = current.len(),
                    items = %items.join("; "),
                    "lease table items this worker cannot read: their shards are not processed (their checkpoints \
                     are unknown, so any start could skip records) until repaired. Remedy: `kcl-admin repair \
                     --table <table>` shows what it would rewrite or delete; add `--apply` to do it"
                );
            }
            Notice::Recovered => tracing::info!("every lease table item is readable again"),
        }
        *last = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaks_once_per_change() {
        let set = |keys: &[&str]| keys.iter().map(|k| UnreadableLease::new(*k, "`checkpoint` is missing")).collect();
        let cases: &[(&[&str], &[&str], Notice)] = &[
            (&[], &[], Notice::Quiet),
            (&[], &["a"], Notice::Unreadable),
            (&["a"], &["a"], Notice::Quiet),
            (&["a"], &["a", "b"], Notice::Unreadable),
            (&["a", "b"], &["b"], Notice::Unreadable),
            (&["b"], &[], Notice::Recovered),
        ];
        for (previous, current, expected) in cases {
            assert_eq!(&notice(&set(previous), &set(current)), expected, "{previous:?} -> {current:?}");
        }
        let reason = |r: &str| BTreeSet::from([UnreadableLease::new("a", r)]);
        assert_eq!(notice(&reason("x"), &reason("y")), Notice::Unreadable, "a new reason is a change");
    }
}
