//! The run's summary: records, kills, reshards, faults injected, duplicates, failover gaps, and the verdict.

use std::fmt::Write as _;
use std::time::Duration;

use super::{ChaosConfig, ChaosLog, Fleet};
use crate::proxy::FaultStats;
use crate::verify::{History, Report};

/// Everything the summary is made of.
pub(crate) struct Inputs<'a> {
    pub(crate) config: &'a ChaosConfig,
    pub(crate) report: &'a Report,
    pub(crate) history: &'a History,
    pub(crate) log: &'a ChaosLog,
    pub(crate) fleet: &'a Fleet,
    /// Kinesis proxy, DynamoDB proxy.
    pub(crate) proxies: [FaultStats; 2],
    pub(crate) drain_time: Duration,
    pub(crate) wall: Duration,
    pub(crate) problems: &'a [String],
    /// Each skewed worker's planned skew (s) and measured skews at its starts (ms), when the class is on.
    pub(crate) skews: &'a [(String, i64, Vec<i64>)],
}

/// The gaps (seconds, ascending) over `events`, and how many shards had no later processor (a paused worker that
/// kept its lease through the pause continues with the same one).
fn gaps(history: &History, events: &[(String, u64)]) -> (Vec<f64>, usize) {
    let (mut gaps, mut never) = (Vec::new(), 0);
    for (worker, at) in events {
        for gap in history.resume_gaps(worker, *at) {
            match gap.gap_us {
                Some(us) => gaps.push(us as f64 / 1e6),
                None => never += 1,
            }
        }
    }
    gaps.sort_by(f64::total_cmp);
    (gaps, never)
}

/// The value at percentile `p` of ascending `sorted` (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

fn describe_gap(name: &str, (gaps, never): (Vec<f64>, usize)) -> String {
    let shards = gaps.len() + never;
    match (percentile(&gaps, 50.0), percentile(&gaps, 99.0), gaps.last()) {
        (Some(p50), Some(p99), Some(max)) => format!(
            "{name}: p50 {p50:.1} s, p99 {p99:.1} s, max {max:.1} s over {shards} shard(s) ({never} with no later \
             processor)"
        ),
        _ => format!("{name}: {shards} shard(s) affected ({never} with no later processor)"),
    }
}

fn faults(stats: &FaultStats) -> String {
    let kinds: Vec<String> = stats.injected.iter().map(|(k, n)| format!("{k:?} {n}")).collect();
    format!("{} of {} requests ({})", stats.total_injected(), stats.requests, kinds.join(", "))
}

/// Renders the summary.
pub(crate) fn render(i: &Inputs<'_>) -> String {
    let (r, c, l, h) = (i.report, i.config, i.log, i.history);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "chaos summary: seed {:#x}, {} s of chaos, {} workers, {} renewal, {} ms leases, {} records/s",
        c.seed,
        c.duration.as_secs(),
        c.workers,
        c.renewal,
        c.lease_ms,
        c.rate
    );
    let keys: std::collections::HashSet<&str> = h.puts.iter().map(|p| p.pk.as_str()).collect();
    let _ = writeln!(
        s,
        "records: {} put with {} keys into {} shards ({} closed); {} deliveries, {} duplicates {:?}",
        r.records_put,
        keys.len(),
        h.shards.len(),
        h.shards.iter().filter(|s| s.closed).count(),
        r.deliveries,
        r.duplicates,
        r.duplicate_causes
    );
    let _ = writeln!(
        s,
        "chaos: {} kills, {} graceful stops, {} pauses, {} splits, {} merges, {} fault windows, {} conditional-check \
         storms; {} processes, {} processor epochs",
        l.kills.len(),
        l.terms.len(),
        l.pauses.len(),
        l.splits,
        l.merges,
        l.fault_windows,
        l.condition_storms,
        i.fleet.journals.len(),
        r.epochs
    );
    let _ = writeln!(s, "faults injected: kinesis {}; dynamodb {}", faults(&i.proxies[0]), faults(&i.proxies[1]));
    if c.slow_processor {
        let _ = writeln!(
            s,
            "slow processor: {} batches of w0 held back {} ms (1.5 lease durations) before being written",
            r.slow_batches,
            c.lease_ms * 3 / 2
        );
    }
    if !i.skews.is_empty() {
        let skews: Vec<String> = i
            .skews
            .iter()
            .map(|(id, planned, measured)| {
                format!("{id} {planned:+} s (measured at {} starts: {measured:?} ms)", measured.len())
            })
            .collect();
        let _ = writeln!(s, "skewed wall clocks: {}", skews.join("; "));
    }
    let _ = writeln!(s, "{}", describe_gap("failover after a kill (kill -> next processor start)", gaps(h, &l.kills)));
    let _ = writeln!(s, "{}", describe_gap("failover after a pause (SIGSTOP -> next start)", gaps(h, &l.pauses)));
    let _ = writeln!(s, "{}", describe_gap("handoff after SIGTERM (signal -> next start)", gaps(h, &l.terms)));
    let _ = writeln!(
        s,
        "lease writes: {} accepted, {} refused by the fence ({} checkpoints), {} unknown outcome, {} not judgeable; \
         {} lease moves",
        r.writes_accepted, r.writes_refused, r.checkpoints_refused, r.writes_unknown, r.writes_unjudged, r.lease_moves
    );
    let slowest_stop = i.fleet.term_exits.iter().map(|e| e.took).max().unwrap_or_default();
    let _ = writeln!(
        s,
        "drain after the producer stopped: {:.1} s; slowest graceful stop: {:.1} s; wall: {:.0} s",
        i.drain_time.as_secs_f64(),
        slowest_stop.as_secs_f64(),
        i.wall.as_secs_f64()
    );
    if !l.skipped.is_empty() {
        let _ = writeln!(s, "skipped actions: {}", l.skipped.join("; "));
    }
    for problem in i.problems {
        let _ = writeln!(s, "problem: {problem}");
    }
    let passed = r.passed() && i.problems.is_empty();
    let _ = writeln!(s, "verdict: {}", if passed { "PASSED" } else { "FAILED" });
    if !r.passed() {
        let _ = write!(s, "{r}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_by_nearest_rank() {
        let gaps: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&gaps, 50.0), Some(100.0));
        assert_eq!(percentile(&gaps, 99.0), Some(198.0));
        assert_eq!(percentile(&gaps, 100.0), Some(200.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 99.0), None);
    }
}
