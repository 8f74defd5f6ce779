//! Checks on the lease table: final checkpoints, and the lease history rebuilt from every worker's journaled writes.
//!
//! # Detecting an accepted zombie checkpoint
//!
//! A zombie is a worker that still writes after it lost a lease: it was paused or cut off, another worker took the
//! lease, and the zombie resumes with the fence it had. The store must refuse its writes. To check that it did,
//! without trusting the store, the verifier uses the fencing counter itself:
//!
//! * every write a worker makes is journaled before it is sent, with its fence (owner + counter), and again when it
//!   returns (accepted with the new counter, refused, or unknown);
//! * the contract says an accepted write moves the counter from its fence's value `c` to `c + 1`, so the accepted
//!   writes of a lease, ordered by counter, form a single chain, and replaying the chain gives who owned the lease
//!   (and who had the checkpoint right, during a handoff) at every counter;
//! * a zombie write that got through appears as **a fork** — two accepted writes against the same counter (the
//!   thief's take and the zombie's checkpoint) — or as **a write accepted against a stale owner**: its fence names a
//!   worker that, at that counter, the chain says no longer held the lease. A write accepted with a counter other
//!   than `c + 1` means it was applied over a change it did not fence against.
//!
//! Writes whose outcome is unknown (timeouts, a process killed mid-call) leave gaps; a gap is filled when a later
//! accepted write was fenced on the counter the unknown write would have produced (so it must have landed). Accepted
//! writes right after an unfillable gap cannot be judged; they are counted, not trusted. Finally, the table's lease
//! must be the end of its chain: same counter, owner and checkpoint.

use std::collections::{BTreeMap, HashMap};

use kcl_core::ExtendedSequenceNumber;

use super::{Event, History, Op, Outcome, Report, Write};

/// Checks 4 of the module documentation: final checkpoints.
pub(crate) fn check_final_checkpoints(history: &History, report: &mut Report) {
    let mut last_put: HashMap<&str, ExtendedSequenceNumber> = HashMap::new();
    for put in &history.puts {
        let entry = last_put.entry(put.shard.as_str()).or_insert_with(|| put.position());
        if put.position() > *entry {
            *entry = put.position();
        }
    }
    let leases: HashMap<&str, &kcl_core::lease::Lease> =
        history.leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    for shard in &history.shards {
        let id = shard.shard.as_str();
        let expected = if shard.closed {
            ExtendedSequenceNumber::ShardEnd
        } else {
            last_put.get(id).cloned().unwrap_or(ExtendedSequenceNumber::TrimHorizon)
        };
        match leases.get(id) {
            Some(lease) if lease.checkpoint == expected => {}
            Some(lease) => {
                report.fail(format!("shard {id}: final checkpoint {} but expected {expected}", lease.checkpoint))
            }
            None if shard.closed && finished_and_deleted(history, id) => {}
            None => report.fail(format!("shard {id}: no lease in the table (expected {expected})")),
        }
    }
}

/// Whether the journals show an accepted `SHARD_END` for `lease` and its deletion.
fn finished_and_deleted(history: &History, lease: &str) -> bool {
    let writes = || {
        history.journal.iter().filter_map(|e| match &e.event {
            Event::Write(w) if w.lease == lease && matches!(w.outcome, Outcome::Accepted(_)) => Some(w),
            _ => None,
        })
    };
    writes().any(|w| w.op == Op::Checkpoint && w.checkpoint.as_ref().is_some_and(|c| c.is_shard_end()))
        && writes().any(|w| w.op == Op::Delete)
}

/// Who may do what with a lease at one counter, and its checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    owner: Option<String>,
    checkpoint_owner: Option<String>,
    /// `None` when no write in the chain has set it since a gap.
    checkpoint: Option<ExtendedSequenceNumber>,
}

/// The counter a write was fenced on, and the one it left if accepted.
fn counters(w: &Write) -> (Option<u64>, Option<u64>) {
    let after = match w.outcome {
        Outcome::Accepted(counter) => counter,
        _ => None,
    };
    match w.op {
        Op::Create => (None, w.counter),
        Op::Evict => (after.map(|c| c.saturating_sub(1)), after),
        Op::Delete => (None, None),
        _ => (w.counter, after.or(w.counter.map(|c| c + 1))),
    }
}

/// Whether two writes would leave the same state.
fn same_effect(a: &Write, b: &Write) -> bool {
    (a.op, &a.owner, a.counter, &a.to, &a.checkpoint) == (b.op, &b.owner, b.counter, &b.to, &b.checkpoint)
}

/// Whether `w`'s condition holds in `state` (creates and deletes have no counter condition).
fn condition_holds(w: &Write, state: &State) -> bool {
    let owner = w.owner.as_deref();
    match w.op {
        Op::Renew => state.owner.as_deref() == owner && state.checkpoint_owner.is_none(),
        Op::Release | Op::Evict | Op::Handoff => state.owner.as_deref() == owner,
        Op::Checkpoint | Op::Prepare | Op::Children => {
            state.checkpoint_owner.as_deref().or(state.owner.as_deref()) == owner
        }
        Op::Take | Op::Create | Op::Delete => true,
    }
}

/// The state after `w`, from the state before it (`None`: unknown).
fn apply(w: &Write, before: Option<&State>) -> Option<State> {
    let keep_checkpoint = || before.and_then(|s| s.checkpoint.clone());
    Some(match w.op {
        Op::Create => State { owner: w.to.clone(), checkpoint_owner: None, checkpoint: w.checkpoint.clone() },
        Op::Take => State { owner: w.to.clone(), checkpoint_owner: None, checkpoint: keep_checkpoint() },
        Op::Release | Op::Evict => State { owner: None, checkpoint_owner: None, checkpoint: keep_checkpoint() },
        Op::Handoff => State { owner: w.to.clone(), checkpoint_owner: w.owner.clone(), checkpoint: keep_checkpoint() },
        Op::Checkpoint => State { checkpoint: w.checkpoint.clone(), checkpoint_owner: None, ..before?.clone() },
        Op::Renew | Op::Prepare | Op::Children => before?.clone(),
        Op::Delete => return None,
    })
}

fn describe(w: &Write, worker: &str) -> String {
    let fence = match (&w.owner, w.counter) {
        (Some(owner), Some(counter)) => format!(" fenced {owner}@{counter}"),
        (_, Some(counter)) => format!(" expecting counter {counter}"),
        _ => String::new(),
    };
    let what = w.checkpoint.as_ref().map(|c| format!(" {c}")).unwrap_or_default();
    let to = w.to.as_ref().map(|t| format!(" to {t}")).unwrap_or_default();
    format!("{worker}'s {:?}{what}{to}{fence}", w.op)
}

/// Check 5: the lease history.
pub(crate) fn check_lease_history(history: &History, report: &mut Report) {
    let mut by_lease: BTreeMap<&str, Vec<(&Write, &str)>> = BTreeMap::new();
    for entry in &history.journal {
        if let Event::Write(w) = &entry.event {
            by_lease.entry(w.lease.as_str()).or_default().push((w, entry.worker.as_str()));
        }
    }
    let table: HashMap<&str, &kcl_core::lease::Lease> =
        history.leases.iter().map(|l| (l.lease_key.as_str(), l)).collect();
    for (lease, writes) in by_lease {
        check_one(lease, &writes, table.get(lease).copied(), report);
    }
}

fn check_one(
    lease: &str,
    writes: &[(&Write, &str)],
    final_lease: Option<&kcl_core::lease::Lease>,
    report: &mut Report,
) {
    let fenced = |w: &Write| !matches!(w.op, Op::Create | Op::Delete);
    // Accepted writes by the counter they produced; forks are failures.
    let mut producer: BTreeMap<u64, (&Write, &str)> = BTreeMap::new();
    // Counters two accepted writes produced: what state they left is unknowable, so nothing is judged against it
    // (one failure, not a cascade of them).
    let mut forked: Vec<u64> = Vec::new();
    let mut unknown_from: HashMap<u64, Vec<(&Write, &str)>> = HashMap::new();
    for &(w, worker) in writes {
        let (before, after) = counters(w);
        match w.outcome {
            Outcome::Accepted(_) => {
                report.writes_accepted += 1;
                if let (Some(before), Some(after)) = (before, after)
                    && fenced(w)
                    && after != before + 1
                {
                    report.fail(format!(
                        "lease {lease}: {} was accepted but moved the counter to {after}: it was applied over a \
                         change it did not fence against",
                        describe(w, worker)
                    ));
                    forked.push(after);
                    continue;
                }
                let Some(after) = after else { continue };
                if let Some((other, other_worker)) = producer.insert(after, (w, worker)) {
                    forked.push(after);
                    report.fail(format!(
                        "lease {lease}: fork at counter {after}: both {} and {} were accepted — one of them wrote \
                         with a lease it no longer held",
                        describe(other, other_worker),
                        describe(w, worker)
                    ));
                }
            }
            Outcome::Refused => {
                report.writes_refused += usize::from(fenced(w));
                report.checkpoints_refused += usize::from(w.op == Op::Checkpoint);
            }
            Outcome::Unknown => {
                report.writes_unknown += 1;
                if let (Some(before), true) = (before, fenced(w)) {
                    unknown_from.entry(before).or_default().push((w, worker));
                }
            }
        }
    }
    // Fill gaps. A create whose answer was lost may still have created the lease (every worker creates the same
    // initial lease, so any of them will do). An accepted write fenced on counter c whose producer is missing proves
    // that one unknown write fenced on c - 1 landed: if there is one, or several identical ones (a worker retrying
    // the same write; at most one of them can land), the state it left is known.
    for &(w, worker) in writes {
        if w.op == Op::Create
            && w.outcome == Outcome::Unknown
            && let Some(c) = w.counter
        {
            producer.entry(c).or_insert((w, worker));
        }
    }
    let fences: Vec<u64> = producer.values().filter_map(|(w, _)| counters(w).0).collect();
    for c in fences {
        if c > 0
            && !producer.contains_key(&c)
            && let Some([first, rest @ ..]) = unknown_from.get(&(c - 1)).map(Vec::as_slice)
            && rest.iter().all(|(w, worker)| same_effect(w, first.0) && *worker == first.1)
        {
            producer.insert(c, *first);
        }
    }
    for counter in forked {
        producer.remove(&counter);
    }
    // Replay the chain in counter order and judge each accepted write against the state it was fenced on.
    let mut states: BTreeMap<u64, State> = BTreeMap::new();
    for (&after, &(w, _)) in &producer {
        let before = counters(w).0.and_then(|c| states.get(&c));
        if let Some(state) = apply(w, before) {
            states.insert(after, state);
        }
    }
    for &(w, worker) in writes {
        if !matches!(w.outcome, Outcome::Accepted(_)) || !fenced(w) {
            continue;
        }
        let Some(before) = counters(w).0 else { continue };
        let state = states.get(&before);
        if w.op == Op::Take {
            // Conditioned on the counter alone, which the chain checks already.
            report.lease_moves += usize::from(state.is_some_and(|s| s.owner.is_some() && s.owner != w.to));
            continue;
        }
        let Some(state) = state else {
            report.writes_unjudged += 1;
            continue;
        };
        if !condition_holds(w, state) {
            report.fail(format!(
                "lease {lease}: zombie write accepted: {} while at counter {before} the lease belonged to {} \
                 (checkpoint right: {})",
                describe(w, worker),
                state.owner.as_deref().unwrap_or("nobody"),
                state.checkpoint_owner.as_deref().or(state.owner.as_deref()).unwrap_or("nobody"),
            ));
        }
        report.lease_moves += usize::from(w.op == Op::Handoff && state.owner != w.to);
    }
    // The table must show the chain's end.
    let Some(lease_now) = final_lease else { return };
    let Some(state) = states.get(&lease_now.lease_counter) else { return };
    if state.owner != lease_now.lease_owner || state.checkpoint.as_ref().is_some_and(|c| *c != lease_now.checkpoint) {
        report.fail(format!(
            "lease {lease}: the table holds owner {:?} checkpoint {} at counter {}, but the accepted writes leave \
             owner {:?} checkpoint {:?} there",
            lease_now.lease_owner,
            lease_now.checkpoint,
            lease_now.lease_counter,
            state.owner,
            state.checkpoint.as_ref().map(ToString::to_string)
        ));
    }
}
