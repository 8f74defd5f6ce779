//! The fleet harness's shared log: every processing start, stop and final checkpoint across the fleet, in one
//! total order, and the checks run on it (no lease processed by two workers at once, handoffs resume from the
//! final checkpoint).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

use crate::types::{ExtendedSequenceNumber, SequenceNumber};

/// What happened, as the simulated processors saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Acquired`: processing starts from this checkpoint.
    Start {
        /// The checkpoint the lease carried when acquired.
        checkpoint: ExtendedSequenceNumber,
    },
    /// Processing stopped (handoff requested, lost, killed, or a checkpoint rejected).
    Stop {
        /// Why, e.g. `"killed"`, `"handoff requested"`, `"lost: Expired"`, `"checkpoint rejected"`.
        why: String,
    },
    /// The final checkpoint of a graceful handoff, recorded just BEFORE `handoff_done` writes it (so it precedes
    /// the new owner's start in the timeline even on a multi-threaded runtime).
    Final {
        /// The checkpoint written.
        checkpoint: ExtendedSequenceNumber,
    },
    /// `handoff_done` failed after all: forget the preceding `Final`.
    FinalFailed,
}

/// One step of one worker on one lease.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Position in the timeline (0-based, gap-free).
    pub seq: u64,
    /// When it was recorded.
    pub at: Instant,
    /// The worker id.
    pub worker: String,
    /// The lease key.
    pub lease: String,
    /// What happened.
    pub kind: Kind,
}

/// A totally ordered log of processing starts and stops across the fleet.
#[derive(Debug, Default)]
pub struct Timeline {
    entries: Mutex<Vec<Entry>>,
}

impl Timeline {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        // A panicking test thread must not hide the log from the assertion that explains it.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends an entry stamped now.
    pub fn record(&self, worker: &str, lease: &str, kind: Kind) {
        let mut entries = self.lock();
        let seq = entries.len() as u64;
        entries.push(Entry { seq, at: Instant::now(), worker: worker.into(), lease: lease.into(), kind });
    }

    /// A copy of every entry so far, in order.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    /// How many entries so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True before anything was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Asserts no lease was ever processed by two workers at once, and that a lease handed over gracefully started
    /// at its new owner from exactly the final checkpoint the old owner wrote.
    ///
    /// # Panics
    /// On the first violation, after printing that lease's history.
    pub fn assert_no_overlap(&self) {
        let entries = self.entries();
        let mut running: HashMap<&str, &str> = HashMap::new();
        let mut last_final: HashMap<&str, &ExtendedSequenceNumber> = HashMap::new();
        for entry in &entries {
            match &entry.kind {
                Kind::Start { checkpoint } => {
                    if let Some(other) = running.get(entry.lease.as_str()) {
                        for e in entries.iter().filter(|e| e.lease == entry.lease) {
                            eprintln!("{:?} {} {:?}", e.at, e.worker, e.kind);
                        }
                        panic!(
                            "{} started {} at {:?} while {other} was processing it",
                            entry.worker, entry.lease, entry.at
                        );
                    }
                    if let Some(final_checkpoint) = last_final.remove(entry.lease.as_str()) {
                        assert_eq!(
                            checkpoint, final_checkpoint,
                            "{} must resume {} from the previous owner's final checkpoint",
                            entry.worker, entry.lease
                        );
                    }
                    running.insert(&entry.lease, &entry.worker);
                }
                Kind::Stop { .. } => {
                    if running.get(entry.lease.as_str()) == Some(&entry.worker.as_str()) {
                        running.remove(entry.lease.as_str());
                    }
                }
                Kind::Final { checkpoint } => {
                    last_final.insert(&entry.lease, checkpoint);
                }
                Kind::FinalFailed => {
                    last_final.remove(entry.lease.as_str());
                }
            }
        }
    }

    /// When each lease was last started by someone other than `exclude`, after `since`.
    pub fn starts_after(&self, since: Instant, exclude: &str) -> HashMap<String, Instant> {
        let mut starts = HashMap::new();
        for entry in self.lock().iter() {
            if entry.at >= since && entry.worker != exclude && matches!(entry.kind, Kind::Start { .. }) {
                starts.insert(entry.lease.clone(), entry.at);
            }
        }
        starts
    }
}

/// Globally increasing fake sequence numbers, so checkpoints are comparable across workers.
static NEXT_SEQUENCE: AtomicU64 = AtomicU64::new(1_000);

/// A fresh checkpoint, greater than every one handed out before in this process.
pub fn next_checkpoint() -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::sequence(SequenceNumber::from_u128(NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed).into()))
}
