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
}

/// The longest gap (seconds), the shards affected, and how many had no later processor (a paused worker that kept
/// its lease through the pause continues with the same one), over `events`.
fn gaps(history: &History, events: &[(String, u64)]) -> (Option<f64>, usize, usize) {
    let (mut max, mut shards, mut never) = (None::<u64>, 0, 0);
    for (worker, at) in events {
        for gap in history.resume_gaps(worker, *at) {
            shards += 1;
            match gap.gap_us {
                Some(us) => max = Some(max.map_or(us, |m| m.max(us))),
                None => never += 1,
            }
        }
    }
    (max.map(|us| us as f64 / 1e6), shards, never)
}

fn describe_gap(name: &str, (max, shards, never): (Option<f64>, usize, usize)) -> String {
    match max {
        Some(max) => format!("{name}: max {max:.1} s over {shards} shard(s) ({never} with no later processor)"),
        None => format!("{name}: {shards} shard(s) affected ({never} with no later processor)"),
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
        "chaos: {} kills, {} graceful stops, {} pauses, {} splits, {} merges, {} fault windows; {} processes, {} \
         processor epochs",
        l.kills.len(),
        l.terms.len(),
        l.pauses.len(),
        l.splits,
        l.merges,
        l.fault_windows,
        i.fleet.journals.len(),
        r.epochs
    );
    let _ = writeln!(s, "faults injected: kinesis {}; dynamodb {}", faults(&i.proxies[0]), faults(&i.proxies[1]));
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
