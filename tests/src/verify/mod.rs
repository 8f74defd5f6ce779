//! The chaos verifier: judges a run from the evidence it left — what the producer put, what every `verify-worker`
//! wrote to its output and journal, the final lease table and which shards are closed — in the style of a Jepsen
//! history checker. [`verify`] returns a [`Report`]; [`Report::passed`] is the verdict.
//!
//! # What is checked
//!
//! 1. **At least once.** Every put record is delivered at least once, with the partition key and data it was put
//!    with; nothing is delivered that was not put.
//! 2. **Order.** For each partition key, first deliveries happen in put order. Checked across shards, which is
//!    stronger than per shard: a child shard starts only after its parents finished, so a key's records stay in
//!    order through splits and merges. Deliveries are ordered by their batch's time (one clock, [`evidence_now_us`]: every process runs
//!    on this machine), then by position in the output file.
//! 3. **Every duplicate is explained.** A redelivery must come from a different processor instance (an *epoch*)
//!    that started from a checkpoint below the record, and the epoch that delivered it before must have ended
//!    without an accepted checkpoint covering it: killed (no `end`, no clean `exit`), lease lost, or a graceful stop
//!    whose final checkpoint failed. Or the redelivering epoch is the *older* of two that had the shard at once: a
//!    zombie that had lost its lease and kept processing until it noticed (it must end with `lease_lost` or be
//!    killed). Counts per cause are reported.
//! 4. **Final checkpoints.** `SHARD_END` for closed shards (or the lease deleted after an accepted `SHARD_END`),
//!    the last put position for open ones.
//! 5. **No zombie checkpoint was accepted.** See the `leases` module: the lease history is rebuilt from every worker's
//!    journaled lease writes and their results. The lease counter is a fencing token that every accepted write moves
//!    up by exactly one, so the accepted writes of a lease form one chain. An accepted write from a worker that had
//!    lost the lease shows up as a fork (two accepted writes against the same counter) or as a write whose fence
//!    names someone other than the owner the chain says held the lease at that counter. The table's final state must
//!    be the chain's end.

mod leases;
mod load;
mod records;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use kcl_core::lease::Lease;
use kcl_core::{ExtendedSequenceNumber, SequenceNumber};

pub use load::{fetch_shards, load_journal, load_outputs, load_puts, load_run, save_end_state, write_put_line};
pub use records::ResumeGap;

/// The evidence clock: µs of `CLOCK_MONOTONIC`. Every process on this machine reads the same one, and no change of
/// the wall clock moves it: not NTP, not a worker whose wall clock the chaos suite skews with libfaketime (which
/// leaves the monotonic clock alone with `FAKETIME_DONT_FAKE_MONOTONIC=1`). Every `t` in outputs and journals is on
/// it, as are the scheduler's kill times; Java's `System.nanoTime()` reads the same clock on Linux (the Java peer's
/// evidence uses it).
pub fn evidence_now_us() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` only writes the timespec it is given, which lives for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed: {}", std::io::Error::last_os_error());
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// One record the producer put (one user record; sub-sequence > 0 inside a KPL aggregate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Put {
    /// The shard Kinesis put it in.
    pub shard: String,
    /// Its sequence number.
    pub seq: SequenceNumber,
    /// Its sub-sequence number.
    pub sub: u64,
    /// Its partition key.
    pub pk: String,
    /// Its payload.
    pub data: Vec<u8>,
}

impl Put {
    /// Its position.
    pub fn position(&self) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::with_sub(self.seq.clone(), self.sub)
    }
}

/// One output line: a record a processor processed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The worker id.
    pub worker: String,
    /// The shard.
    pub shard: String,
    /// Sequence number.
    pub seq: SequenceNumber,
    /// Sub-sequence number.
    pub sub: u64,
    /// Partition key.
    pub pk: String,
    /// Payload.
    pub data: Vec<u8>,
    /// The processor instance (`WORKER#PID#N`).
    pub epoch: String,
    /// When its batch was written ([`evidence_now_us`]).
    pub t: u64,
    /// Which output file (index in load order) and line: orders deliveries with the same `t`.
    pub file: usize,
    /// Line number in the file.
    pub line: usize,
}

impl Delivery {
    /// Its position.
    pub fn position(&self) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::with_sub(self.seq.clone(), self.sub)
    }

    fn order_key(&self) -> (u64, usize, usize) {
        (self.t, self.file, self.line)
    }
}

/// How a processor instance ended, as it journaled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndReason {
    /// `lease_lost`.
    LeaseLost,
    /// `shutdown_requested` (graceful shutdown or handoff).
    Shutdown,
    /// `shard_ended`.
    ShardEnded,
}

/// A lease-table write operation, as journaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `create_lease_if_not_exists`.
    Create,
    /// `take_lease`.
    Take,
    /// `renew_lease`.
    Renew,
    /// `release_lease`.
    Release,
    /// `evict_lease`.
    Evict,
    /// `assign_for_handoff`.
    Handoff,
    /// `update_checkpoint`.
    Checkpoint,
    /// `prepare_checkpoint`.
    Prepare,
    /// `update_child_shards`.
    Children,
    /// `delete_lease`.
    Delete,
}

/// What a lease write returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; the lease counter it left (none for a delete).
    Accepted(Option<u64>),
    /// Refused: its condition did not hold.
    Refused,
    /// Unknown: a transient or fatal error, or no answer before the process died or gave up.
    Unknown,
}

/// One journaled event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A process started.
    Start,
    /// A process finished `run` (ok = exit code 0).
    Exit {
        /// Whether the worker stopped cleanly.
        ok: bool,
    },
    /// A processor instance started on a shard from a checkpoint.
    Init {
        /// The epoch.
        epoch: String,
        /// The shard.
        shard: String,
        /// Where it started.
        checkpoint: ExtendedSequenceNumber,
    },
    /// A processor instance ended.
    End {
        /// The epoch.
        epoch: String,
        /// The shard.
        shard: String,
        /// Why.
        why: EndReason,
    },
    /// A processor's checkpoint call and its result (`ok: None` when the process died before it returned).
    Checkpoint {
        /// The epoch.
        epoch: String,
        /// The shard.
        shard: String,
        /// The position.
        pos: ExtendedSequenceNumber,
        /// Whether it was accepted.
        ok: Option<bool>,
        /// When it returned.
        done: Option<u64>,
    },
    /// A lease-table write and how it ended.
    Write(Write),
    /// A processor held a batch back for `ms` before writing it (the chaos suite's slow processor).
    SlowBatch {
        /// The epoch.
        epoch: String,
        /// How long.
        ms: u64,
    },
}

/// A journaled lease-table write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The operation.
    pub op: Op,
    /// The lease key.
    pub lease: String,
    /// The fence's (or eviction's expected) owner.
    pub owner: Option<String>,
    /// The fence's or take's expected counter; for a create, the initial counter.
    pub counter: Option<u64>,
    /// The new owner of a take or handoff (for a create, the initial owner).
    pub to: Option<String>,
    /// The checkpoint written (checkpoint, prepare, create).
    pub checkpoint: Option<ExtendedSequenceNumber>,
    /// The result.
    pub outcome: Outcome,
}

/// A journal line with its time and process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// When ([`evidence_now_us`]).
    pub t: u64,
    /// The worker id.
    pub worker: String,
    /// The process id (with the worker id, names one process incarnation).
    pub pid: u32,
    /// What happened.
    pub event: Event,
}

/// A shard as Kinesis lists it at the end of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardState {
    /// The shard id.
    pub shard: String,
    /// Whether it is closed (has an ending sequence number).
    pub closed: bool,
}

/// Everything the verifier reads.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// What the producer put, in put order.
    pub puts: Vec<Put>,
    /// Every output line of every worker.
    pub deliveries: Vec<Delivery>,
    /// Every journal line of every worker.
    pub journal: Vec<Entry>,
    /// The lease table at the end.
    pub leases: Vec<Lease>,
    /// The stream's shards at the end.
    pub shards: Vec<ShardState>,
}

/// Why a duplicate delivery happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DuplicateCause {
    /// The previous epoch's process was killed (or failed) before checkpointing the record.
    Crash,
    /// The previous epoch lost its lease (expired, stolen, fenced) before checkpointing it.
    LeaseLost,
    /// The previous epoch stopped gracefully but its final checkpoint was not accepted.
    UncheckpointedHandoff,
    /// A processor that had lost its lease (paused, cut off) processed records again before it noticed, while the
    /// new owner processed them too. Allowed: the fence refuses its checkpoints.
    Zombie,
}

/// The verdict and the figures.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Records put.
    pub records_put: usize,
    /// Output lines.
    pub deliveries: usize,
    /// Deliveries beyond each record's first.
    pub duplicates: usize,
    /// Explained duplicates by cause.
    pub duplicate_causes: BTreeMap<DuplicateCause, usize>,
    /// Processor instances started.
    pub epochs: usize,
    /// Batches a slow processor held back (see [`Event::SlowBatch`]).
    pub slow_batches: usize,
    /// Worker processes that left no clean exit (killed or failed).
    pub crashed_processes: usize,
    /// Accepted takes and handoffs that moved an owned lease to another worker.
    pub lease_moves: usize,
    /// Accepted lease writes.
    pub writes_accepted: usize,
    /// Fenced writes the store refused: a worker writing with a stale fence (it lost the lease, or a lost race), or
    /// a retry meeting its own earlier attempt that had landed unseen.
    pub writes_refused: usize,
    /// Of those, checkpoints.
    pub checkpoints_refused: usize,
    /// Writes whose outcome the writer never learned.
    pub writes_unknown: usize,
    /// Accepted writes whose lease state could not be rebuilt (after a write of unknown outcome), so not judged.
    pub writes_unjudged: usize,
    /// Everything that is wrong; empty when the run passed.
    pub failures: Vec<String>,
}

impl Report {
    /// Whether every check held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn fail(&mut self, failure: String) {
        self.failures.push(failure);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "records put: {}", self.records_put)?;
        writeln!(f, "deliveries: {} ({} duplicates: {:?})", self.deliveries, self.duplicates, self.duplicate_causes)?;
        writeln!(f, "processor epochs: {}, crashed processes: {}", self.epochs, self.crashed_processes)?;
        writeln!(
            f,
            "lease writes: {} accepted, {} refused ({} checkpoints), {} unknown outcome, {} not judgeable; {} lease moves",
            self.writes_accepted,
            self.writes_refused,
            self.checkpoints_refused,
            self.writes_unknown,
            self.writes_unjudged,
            self.lease_moves
        )?;
        if self.passed() {
            writeln!(f, "verdict: PASSED")
        } else {
            writeln!(f, "verdict: FAILED ({} problems)", self.failures.len())?;
            for failure in self.failures.iter().take(40) {
                writeln!(f, "  - {failure}")?;
            }
            if self.failures.len() > 40 {
                writeln!(f, "  ... and {} more", self.failures.len() - 40)?;
            }
            Ok(())
        }
    }
}

/// Checks 1–4 only: deliveries and final checkpoints, not the lease history. For fleets with workers whose lease
/// writes are not journaled (Java KCL peers), whose accepted writes would leave gaps in every lease's chain.
pub fn verify_deliveries(history: &History) -> Report {
    let mut report =
        Report { records_put: history.puts.len(), deliveries: history.deliveries.len(), ..Report::default() };
    let epochs = records::Epochs::from_journal(&history.journal);
    report.epochs = epochs.len();
    report.crashed_processes = epochs.crashed_processes();
    report.slow_batches = history.journal.iter().filter(|e| matches!(e.event, Event::SlowBatch { .. })).count();
    records::check_deliveries(history, &epochs, &mut report);
    leases::check_final_checkpoints(history, &mut report);
    report
}

/// Runs every check on `history`.
pub fn verify(history: &History) -> Report {
    let mut report = verify_deliveries(history);
    leases::check_lease_history(history, &mut report);
    report
}
