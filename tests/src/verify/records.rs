//! Checks on deliveries: at-least-once, per-key order of first deliveries, and an explanation for every duplicate;
//! plus the processor epochs they rely on, and how long shards waited for a new owner after a worker went away.

use std::collections::{BTreeMap, HashMap};

use kcl_core::ExtendedSequenceNumber;

use super::{Delivery, DuplicateCause, EndReason, Entry, Event, History, Op, Outcome, Report};

/// Problems of one kind beyond this many are counted, not listed.
const LISTED: usize = 8;

/// One processor instance, from its journal lines.
#[derive(Clone, Debug)]
pub(crate) struct Epoch {
    pub(crate) worker: String,
    pub(crate) pid: u32,
    pub(crate) shard: String,
    pub(crate) start: u64,
    pub(crate) checkpoint: ExtendedSequenceNumber,
    pub(crate) end: Option<(u64, EndReason)>,
    /// Checkpoints the store accepted, with the time the call returned.
    pub(crate) accepted: Vec<(ExtendedSequenceNumber, u64)>,
}

/// A worker process: when it started and how it exited (`None`: killed).
#[derive(Clone, Copy, Debug)]
struct Process {
    start: u64,
    exit: Option<bool>,
}

/// Every epoch and process in the journals.
#[derive(Debug, Default)]
pub(crate) struct Epochs {
    epochs: HashMap<String, Epoch>,
    processes: HashMap<(String, u32), Process>,
}

impl Epochs {
    pub(crate) fn from_journal(journal: &[Entry]) -> Self {
        let mut this = Self::default();
        for entry in journal {
            let process = (entry.worker.clone(), entry.pid);
            match &entry.event {
                Event::Start => {
                    this.processes.insert(process, Process { start: entry.t, exit: None });
                }
                Event::Exit { ok } => {
                    if let Some(p) = this.processes.get_mut(&process) {
                        p.exit = Some(*ok);
                    }
                }
                Event::Init { epoch, shard, checkpoint } => {
                    this.epochs.insert(
                        epoch.clone(),
                        Epoch {
                            worker: entry.worker.clone(),
                            pid: entry.pid,
                            shard: shard.clone(),
                            start: entry.t,
                            checkpoint: checkpoint.clone(),
                            end: None,
                            accepted: Vec::new(),
                        },
                    );
                }
                Event::End { epoch, why, .. } => {
                    if let Some(e) = this.epochs.get_mut(epoch) {
                        e.end = Some((entry.t, *why));
                    }
                }
                Event::Checkpoint { epoch, pos, ok: Some(true), done, .. } => {
                    if let Some(e) = this.epochs.get_mut(epoch) {
                        e.accepted.push((pos.clone(), done.unwrap_or(entry.t)));
                    }
                }
                Event::Checkpoint { .. } | Event::Write(_) | Event::SlowBatch { .. } => {}
            }
        }
        this
    }

    pub(crate) fn len(&self) -> usize {
        self.epochs.len()
    }

    pub(crate) fn get(&self, epoch: &str) -> Option<&Epoch> {
        self.epochs.get(epoch)
    }

    /// Processes without a clean exit.
    pub(crate) fn crashed_processes(&self) -> usize {
        self.processes.values().filter(|p| p.exit != Some(true)).count()
    }

    fn process_crashed(&self, epoch: &Epoch) -> bool {
        self.processes.get(&(epoch.worker.clone(), epoch.pid)).is_none_or(|p| p.exit != Some(true))
    }
}

/// How long a shard a worker was processing waited for its next processor after that worker went away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeGap {
    /// The shard.
    pub shard: String,
    /// Microseconds from the worker going away to the next processor's start; `None` if none started.
    pub gap_us: Option<u64>,
}

impl History {
    /// For each shard `worker` was processing at `at_us` (the moment it was killed, paused or told to stop): how
    /// long until another processor instance started on it.
    pub fn resume_gaps(&self, worker: &str, at_us: u64) -> Vec<ResumeGap> {
        let epochs = Epochs::from_journal(&self.journal);
        // The incarnation of `worker` running at `at_us`: the latest one started before it.
        let Some(pid) = epochs
            .processes
            .iter()
            .filter(|((w, _), p)| w == worker && p.start <= at_us)
            .max_by_key(|(_, p)| p.start)
            .map(|((_, pid), _)| *pid)
        else {
            return Vec::new();
        };
        let mut gaps = Vec::new();
        for (id, epoch) in &epochs.epochs {
            let open = epoch.worker == worker
                && epoch.pid == pid
                && epoch.start <= at_us
                && epoch.end.is_none_or(|(t, why)| t >= at_us && why != EndReason::ShardEnded);
            if !open {
                continue;
            }
            let next = epochs
                .epochs
                .iter()
                .filter(|(other, e)| *other != id && e.shard == epoch.shard && e.start > at_us)
                .map(|(_, e)| e.start)
                .min();
            gaps.push(ResumeGap { shard: epoch.shard.clone(), gap_us: next.map(|start| start - at_us) });
        }
        gaps.sort_by(|a, b| a.shard.cmp(&b.shard));
        gaps
    }
}

fn list(report: &mut Report, what: &str, problems: Vec<String>) {
    if problems.is_empty() {
        return;
    }
    let n = problems.len();
    let shown: Vec<String> = problems.into_iter().take(LISTED).collect();
    report.fail(format!("{what}: {n} ({})", shown.join("; ")));
}

/// Checks 1–3 of the module documentation.
pub(crate) fn check_deliveries(history: &History, epochs: &Epochs, report: &mut Report) {
    let index: HashMap<(&str, ExtendedSequenceNumber), usize> =
        history.puts.iter().enumerate().map(|(i, p)| ((p.shard.as_str(), p.position()), i)).collect();
    let mut by_put: Vec<Vec<&Delivery>> = vec![Vec::new(); history.puts.len()];
    let (mut strangers, mut altered) = (Vec::new(), Vec::new());
    for d in &history.deliveries {
        match index.get(&(d.shard.as_str(), d.position())) {
            None => strangers.push(format!("{} {} by {}", d.shard, d.position(), d.epoch)),
            Some(&i) => {
                let put = &history.puts[i];
                if put.pk != d.pk || put.data != d.data {
                    altered.push(format!("{} {} by {}", d.shard, d.position(), d.epoch));
                }
                by_put[i].push(d);
            }
        }
    }
    list(report, "delivered but never put", strangers);
    list(report, "delivered with another key or payload than put", altered);
    for deliveries in &mut by_put {
        deliveries.sort_by_key(|d| d.order_key());
    }

    let missing: Vec<String> = by_put
        .iter()
        .enumerate()
        .filter(|(_, d)| d.is_empty())
        .map(|(i, _)| {
            let p = &history.puts[i];
            format!("put #{i} {} {} key {}", p.shard, p.position(), p.pk)
        })
        .collect();
    list(report, "put but never delivered (lost)", missing);

    // Per key, first deliveries in put order.
    let mut last_first: HashMap<&str, (usize, (u64, usize, usize))> = HashMap::new();
    let mut disorder = Vec::new();
    for (i, put) in history.puts.iter().enumerate() {
        let Some(first) = by_put[i].first() else { continue };
        let key = first.order_key();
        if let Some((j, previous)) = last_first.get(put.pk.as_str())
            && key < *previous
        {
            let earlier = &history.puts[*j];
            disorder.push(format!(
                "key {}: put #{i} ({} {}) first delivered before put #{j} ({} {})",
                put.pk,
                put.shard,
                put.position(),
                earlier.shard,
                earlier.position()
            ));
        }
        last_first.insert(put.pk.as_str(), (i, key));
    }
    list(report, "first deliveries out of put order", disorder);

    check_checkpoints_follow_deliveries(history, &by_put, report);

    let mut unexplained = Vec::new();
    let mut causes: BTreeMap<DuplicateCause, usize> = BTreeMap::new();
    for deliveries in &by_put {
        for (n, d) in deliveries.iter().enumerate().skip(1) {
            report.duplicates += 1;
            match explain(epochs, &deliveries[..n], d) {
                Ok(cause) => *causes.entry(cause).or_default() += 1,
                Err(why) => unexplained.push(format!("{} {} again by {}: {why}", d.shard, d.position(), d.epoch)),
            }
        }
    }
    report.duplicate_causes = causes;
    list(report, "unexplained duplicates", unexplained);
}

/// Why `again` redelivered a record that `before` (sorted, non-empty) had delivered.
fn explain(epochs: &Epochs, before: &[&Delivery], again: &Delivery) -> Result<DuplicateCause, String> {
    if before.iter().any(|d| d.epoch == again.epoch) {
        return Err("the same processor instance delivered it twice".to_owned());
    }
    let position = again.position();
    let e2 = epochs.get(&again.epoch).ok_or("its epoch has no `init` in any journal")?;
    if position <= e2.checkpoint {
        return Err(format!("its processor started from checkpoint {}, at or after the record", e2.checkpoint));
    }
    let previous = before.last().map(|d| d.epoch.as_str()).unwrap_or_default();
    let e1 = epochs.get(previous).ok_or("the previous epoch has no `init` in any journal")?;
    if e2.start < e1.start {
        // The redelivering processor is the older one: two had the shard at once, which is allowed only while the
        // older one has lost its lease without noticing yet (a zombie, whose checkpoints the fence refuses).
        let lost =
            matches!(e2.end, Some((_, EndReason::LeaseLost))) || (e2.end.is_none() && epochs.process_crashed(e2));
        return if lost {
            Ok(DuplicateCause::Zombie)
        } else {
            Err(format!("it overlapped with the newer {previous} but never lost its lease"))
        };
    }
    if let Some((cp, _)) = e1.accepted.iter().find(|(cp, _)| *cp >= position) {
        return Err(format!("{previous} had checkpoint {cp} accepted, covering it"));
    }
    match e1.end {
        None if epochs.process_crashed(e1) => Ok(DuplicateCause::Crash),
        None => Err(format!("{previous} ended without a lifecycle callback in a process that exited cleanly")),
        Some((_, EndReason::LeaseLost | EndReason::ShardEnded)) => Ok(DuplicateCause::LeaseLost),
        Some((_, EndReason::Shutdown)) => Ok(DuplicateCause::UncheckpointedHandoff),
    }
}

/// At-least-once at its root: when a checkpoint write is sent, every record of the shard at or below it has been
/// delivered (its output line was written and fsynced before). Records never delivered are reported as lost
/// instead.
fn check_checkpoints_follow_deliveries(history: &History, by_put: &[Vec<&Delivery>], report: &mut Report) {
    // Per shard: positions in order, and the latest first-delivery time among the records up to each.
    let mut shards: HashMap<&str, Vec<(ExtendedSequenceNumber, u64)>> = HashMap::new();
    for (put, deliveries) in history.puts.iter().zip(by_put) {
        let first = deliveries.first().map_or(0, |d| d.t);
        shards.entry(put.shard.as_str()).or_default().push((put.position(), first));
    }
    for records in shards.values_mut() {
        records.sort();
        let mut latest = 0;
        for record in records.iter_mut() {
            latest = latest.max(record.1);
            record.1 = latest;
        }
    }
    let mut early = Vec::new();
    for entry in &history.journal {
        let Event::Write(w) = &entry.event else { continue };
        let (Op::Checkpoint, Outcome::Accepted(_), Some(target)) = (w.op, w.outcome, &w.checkpoint) else { continue };
        let Some(records) = shards.get(w.lease.as_str()) else { continue };
        let covered = records.partition_point(|(position, _)| position <= target);
        if let Some((position, latest)) = covered.checked_sub(1).map(|i| &records[i])
            && *latest > entry.t
        {
            early.push(format!(
                "{}'s checkpoint {target} of {} was sent before every record up to {position} was delivered",
                entry.worker, w.lease
            ));
        }
    }
    list(report, "checkpoints ahead of processing", early);
}
