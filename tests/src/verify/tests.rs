//! Self-tests of the verifier: a clean history passes, and each kind of wrong history fails for its own reason.
//!
//! The clean history: shard s0 splits into s1 (open) and s2 (open child); worker A (process 1) takes s0 and s1,
//! checkpoints part of s0 and is killed while processing s1; B (process 2) takes both, redelivers s1's first record
//! (a duplicate explained by the crash), finishes s0, processes s2, has a late renewal refused, and shuts down
//! gracefully, handing s1 and s2 to A's restarted process 3.

use kcl_core::lease::Lease;
use kcl_core::{ExtendedSequenceNumber, SequenceNumber};

use super::*;

fn pos(seq: u128) -> ExtendedSequenceNumber {
    ExtendedSequenceNumber::with_sub(SequenceNumber::from_u128(seq), 0)
}

fn write(op: Op, lease: &str, owner: Option<&str>, counter: Option<u64>, outcome: Outcome) -> Write {
    Write { op, lease: lease.into(), owner: owner.map(Into::into), counter, to: None, checkpoint: None, outcome }
}

fn accepted(c: u64) -> Outcome {
    Outcome::Accepted(Some(c))
}

/// Builds a history step by step; every step is one microsecond after the previous one.
#[derive(Default)]
struct Builder {
    h: History,
    t: u64,
}

impl Builder {
    fn tick(&mut self) -> u64 {
        self.t += 1;
        self.t
    }

    fn put(&mut self, shard: &str, seq: u128, pk: &str) {
        let data = format!("{shard}-{seq}").into_bytes();
        self.h.puts.push(Put { shard: shard.into(), seq: SequenceNumber::from_u128(seq), sub: 0, pk: pk.into(), data });
    }

    fn journal(&mut self, worker: &str, pid: u32, event: Event) {
        let t = self.tick();
        self.h.journal.push(Entry { t, worker: worker.into(), pid, event });
    }

    fn init(&mut self, worker: &str, pid: u32, epoch: &str, shard: &str, checkpoint: ExtendedSequenceNumber) {
        self.journal(worker, pid, Event::Init { epoch: epoch.into(), shard: shard.into(), checkpoint });
    }

    fn end(&mut self, worker: &str, pid: u32, epoch: &str, shard: &str, why: EndReason) {
        self.journal(worker, pid, Event::End { epoch: epoch.into(), shard: shard.into(), why });
    }

    /// A processor checkpoint: the processor's own lines around the store write it causes.
    fn checkpoint(&mut self, worker: &str, pid: u32, epoch: &str, shard: &str, at: ExtendedSequenceNumber, fence: u64) {
        let done = self.t + 2;
        let pos = at.clone();
        self.journal(
            worker,
            pid,
            Event::Checkpoint { epoch: epoch.into(), shard: shard.into(), pos, ok: Some(true), done: Some(done) },
        );
        let mut w = write(Op::Checkpoint, shard, Some(worker), Some(fence), accepted(fence + 1));
        w.checkpoint = Some(at);
        self.journal(worker, pid, Event::Write(w));
    }

    fn store(&mut self, worker: &str, pid: u32, w: Write) {
        self.journal(worker, pid, Event::Write(w));
    }

    fn create(&mut self, worker: &str, pid: u32, shard: &str) {
        let mut w = write(Op::Create, shard, None, Some(0), accepted(0));
        w.checkpoint = Some(ExtendedSequenceNumber::TrimHorizon);
        self.store(worker, pid, w);
    }

    fn take(&mut self, worker: &str, pid: u32, shard: &str, expected: u64, to: &str) {
        let mut w = write(Op::Take, shard, None, Some(expected), accepted(expected + 1));
        w.to = Some(to.into());
        self.store(worker, pid, w);
    }

    /// Delivers put records (by index) in one batch of `epoch`.
    fn deliver(&mut self, worker: &str, epoch: &str, puts: &[usize]) {
        let t = self.tick();
        let file = self.h.deliveries.len();
        for (line, &i) in puts.iter().enumerate() {
            let p = self.h.puts[i].clone();
            self.h.deliveries.push(Delivery {
                worker: worker.into(),
                shard: p.shard,
                seq: p.seq,
                sub: 0,
                pk: p.pk,
                data: p.data,
                epoch: epoch.into(),
                t,
                file,
                line,
            });
        }
    }

    fn lease(&mut self, shard: &str, owner: Option<&str>, counter: u64, checkpoint: ExtendedSequenceNumber) {
        let mut lease = Lease::new_for_shard(shard, checkpoint);
        lease.lease_owner = owner.map(Into::into);
        lease.lease_counter = counter;
        self.h.leases.push(lease);
    }
}

/// What to break in the clean history.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Break {
    Nothing,
    LoseRecord,
    DeliverOutOfOrder,
    ZombieCheckpoint,
    DuplicateInOneEpoch,
    WrongFinalCheckpoint,
    CheckpointBeforeProcessing,
}

fn history(broken: Break) -> History {
    let mut b = Builder::default();
    b.put("s0", 1, "a"); // 0
    b.put("s0", 2, "b"); // 1
    b.put("s1", 10, "c"); // 2
    b.put("s0", 3, "a"); // 3
    b.put("s1", 11, "d"); // 4
    b.put("s2", 20, "a"); // 5
    b.put("s2", 21, "b"); // 6
    b.h.shards = vec![
        ShardState { shard: "s0".into(), closed: true },
        ShardState { shard: "s1".into(), closed: false },
        ShardState { shard: "s2".into(), closed: false },
    ];

    // Worker A, process 1: takes s0 and s1, checkpoints s0 through 2, killed while processing s1.
    b.journal("A", 1, Event::Start);
    b.create("A", 1, "s0");
    b.create("A", 1, "s1");
    b.take("A", 1, "s0", 0, "A");
    b.take("A", 1, "s1", 0, "A");
    b.init("A", 1, "A#1#0", "s0", ExtendedSequenceNumber::TrimHorizon);
    b.deliver("A", "A#1#0", &[0, 1]);
    b.checkpoint("A", 1, "A#1#0", "s0", pos(2), 1);
    b.init("A", 1, "A#1#1", "s1", ExtendedSequenceNumber::TrimHorizon);
    b.deliver("A", "A#1#1", &[2]);

    // Worker B, process 2: A's leases expired; B takes them.
    b.journal("B", 2, Event::Start);
    b.take("B", 2, "s1", 1, "B");
    b.init("B", 2, "B#2#0", "s1", ExtendedSequenceNumber::TrimHorizon);
    b.deliver("B", "B#2#0", &[2, 4]);
    if broken == Break::DuplicateInOneEpoch {
        b.deliver("B", "B#2#0", &[4]);
    }
    b.checkpoint("B", 2, "B#2#0", "s1", pos(11), 2);
    if broken == Break::ZombieCheckpoint {
        // A's process was only paused: it wakes up and checkpoints s1 with its old fence, and the store accepts.
        b.checkpoint("A", 1, "A#1#1", "s1", pos(10), 1);
    }
    b.take("B", 2, "s0", 2, "B");
    b.init("B", 2, "B#2#1", "s0", pos(2));
    if broken == Break::DeliverOutOfOrder {
        // The child shard s2 is processed before its parent's last record: key a's records go out of order.
        b.init("B", 2, "B#2#9", "s2", ExtendedSequenceNumber::TrimHorizon);
        b.deliver("B", "B#2#9", &[5]);
        b.end("B", 2, "B#2#9", "s2", EndReason::Shutdown);
    }
    if broken == Break::CheckpointBeforeProcessing {
        b.checkpoint("B", 2, "B#2#1", "s0", pos(3), 3);
        b.deliver("B", "B#2#1", &[3]);
    } else {
        if broken != Break::LoseRecord {
            b.deliver("B", "B#2#1", &[3]);
        }
        b.checkpoint("B", 2, "B#2#1", "s0", pos(3), 3);
    }
    b.end("B", 2, "B#2#1", "s0", EndReason::ShardEnded);
    b.checkpoint("B", 2, "B#2#1", "s0", ExtendedSequenceNumber::ShardEnd, 4);
    b.store("B", 2, write(Op::Release, "s0", Some("B"), Some(5), accepted(6)));
    b.create("B", 2, "s2");
    b.take("B", 2, "s2", 0, "B");
    b.init("B", 2, "B#2#2", "s2", ExtendedSequenceNumber::TrimHorizon);
    b.deliver("B", "B#2#2", &if broken == Break::DeliverOutOfOrder { vec![6] } else { vec![5, 6] });
    b.checkpoint("B", 2, "B#2#2", "s2", pos(21), 1);
    // A's dead process had sent a renewal of s1 with its old fence: refused.
    b.store("A", 1, write(Op::Renew, "s1", Some("A"), Some(1), Outcome::Refused));

    // A restarts (process 3); B shuts down gracefully and hands s1 and s2 to it.
    b.journal("A", 3, Event::Start);
    b.end("B", 2, "B#2#0", "s1", EndReason::Shutdown);
    b.end("B", 2, "B#2#2", "s2", EndReason::Shutdown);
    b.take("B", 2, "s1", 3, "A");
    b.take("B", 2, "s2", 2, "A");
    b.journal("B", 2, Event::Exit { ok: true });
    b.init("A", 3, "A#3#0", "s1", pos(11));
    b.init("A", 3, "A#3#1", "s2", pos(21));
    b.journal("A", 3, Event::Exit { ok: true });

    b.lease("s0", None, 6, ExtendedSequenceNumber::ShardEnd);
    b.lease("s1", Some("A"), 4, pos(11));
    let s2_final = if broken == Break::WrongFinalCheckpoint { pos(20) } else { pos(21) };
    b.lease("s2", Some("A"), 3, s2_final);
    b.h
}

fn failures(report: &Report) -> String {
    report.failures.join("\n")
}

#[test]
fn a_clean_history_passes_with_its_duplicate_explained() {
    let report = verify(&history(Break::Nothing));
    assert!(report.passed(), "{report}");
    assert_eq!((report.records_put, report.deliveries, report.duplicates), (7, 8, 1));
    assert_eq!(report.duplicate_causes.get(&DuplicateCause::Crash), Some(&1));
    assert_eq!(report.epochs, 7);
    assert_eq!(report.crashed_processes, 1);
    assert_eq!((report.writes_refused, report.writes_unjudged), (1, 0));
    // A→B for s1 and s0, B→A for s1 and s2 (takes of fresh, unowned leases are not moves).
    assert_eq!(report.lease_moves, 4);
}

#[test]
fn a_lost_record_fails() {
    let report = verify(&history(Break::LoseRecord));
    assert!(!report.passed());
    let failures = failures(&report);
    assert!(failures.contains("never delivered (lost): 1 (put #3 s0 3/0 key a)"), "{failures}");
}

#[test]
fn an_out_of_order_delivery_fails() {
    let report = verify(&history(Break::DeliverOutOfOrder));
    let failures = failures(&report);
    assert!(failures.contains("first deliveries out of put order: 1"), "{failures}");
    assert!(failures.contains("key a: put #5 (s2 20/0) first delivered before put #3 (s0 3/0)"), "{failures}");
}

#[test]
fn an_accepted_zombie_checkpoint_fails() {
    let report = verify(&history(Break::ZombieCheckpoint));
    let failures = failures(&report);
    assert!(failures.contains("lease s1: fork at counter 2"), "{failures}");
    assert!(failures.contains("A's Checkpoint 10/0 fenced A@1"), "{failures}");
}

#[test]
fn a_write_accepted_from_a_stale_owner_fails() {
    // Only the owner condition is broken here (the counter matches): B took the lease at counter 1 -> 2, then A's
    // checkpoint fenced A@2 was accepted.
    let mut b = Builder::default();
    b.create("A", 1, "s1");
    b.take("A", 1, "s1", 0, "A");
    b.take("B", 2, "s1", 1, "B");
    let mut zombie = write(Op::Checkpoint, "s1", Some("A"), Some(2), accepted(3));
    zombie.checkpoint = Some(pos(5));
    b.store("A", 1, zombie);
    let mut report = Report::default();
    leases::check_lease_history(&b.h, &mut report);
    let failures = failures(&report);
    assert!(failures.contains("zombie write accepted: A's Checkpoint 5/0 fenced A@2"), "{failures}");
    assert!(failures.contains("belonged to B"), "{failures}");
}

#[test]
fn a_duplicate_from_one_processor_and_a_wrong_final_checkpoint_fail() {
    let duplicate = failures(&verify(&history(Break::DuplicateInOneEpoch)));
    assert!(duplicate.contains("unexplained duplicates: 1"), "{duplicate}");
    assert!(duplicate.contains("the same processor instance delivered it twice"), "{duplicate}");
    let wrong = failures(&verify(&history(Break::WrongFinalCheckpoint)));
    assert!(wrong.contains("shard s2: final checkpoint 20/0 but expected 21/0"), "{wrong}");
}

#[test]
fn a_checkpoint_ahead_of_processing_fails() {
    let failures = failures(&verify(&history(Break::CheckpointBeforeProcessing)));
    assert!(failures.contains("checkpoints ahead of processing: 1"), "{failures}");
    assert!(failures.contains("B's checkpoint 3/0 of s0 was sent before every record up to 3/0"), "{failures}");
}

#[test]
fn resume_gaps_measure_from_the_kill_to_the_next_start() {
    let h = history(Break::Nothing);
    let killed_at = h.journal.iter().find(|e| e.worker == "B").map(|e| e.t).unwrap();
    let gaps = h.resume_gaps("A", killed_at);
    // A's process 1 was processing s1 when killed (s0 had an open epoch too: it was taken over by B later).
    let shards: Vec<&str> = gaps.iter().map(|g| g.shard.as_str()).collect();
    assert_eq!(shards, ["s0", "s1"]);
    assert!(gaps.iter().all(|g| g.gap_us.is_some_and(|us| us > 0)));
}

#[test]
fn a_zombie_redelivering_after_the_new_owner_is_explained_only_if_it_lost_its_lease() {
    let judge = |zombie_end: EndReason| {
        let mut b = Builder::default();
        b.put("s1", 10, "c");
        b.put("s1", 11, "c");
        b.journal("A", 1, Event::Start);
        b.init("A", 1, "A#1#0", "s1", ExtendedSequenceNumber::TrimHorizon);
        b.deliver("A", "A#1#0", &[0]);
        // A is paused; B takes the lease over and processes both records.
        b.journal("B", 2, Event::Start);
        b.init("B", 2, "B#2#0", "s1", ExtendedSequenceNumber::TrimHorizon);
        b.deliver("B", "B#2#0", &[0, 1]);
        b.checkpoint("B", 2, "B#2#0", "s1", pos(11), 1);
        // A wakes up and processes the next record it had fetched before it notices.
        b.deliver("A", "A#1#0", &[1]);
        b.end("A", 1, "A#1#0", "s1", zombie_end);
        b.journal("A", 1, Event::Exit { ok: true });
        b.journal("B", 2, Event::Exit { ok: true });
        let mut report = Report::default();
        records::check_deliveries(&b.h, &records::Epochs::from_journal(&b.h.journal), &mut report);
        report
    };
    let report = judge(EndReason::LeaseLost);
    assert!(report.passed(), "{report}");
    assert_eq!(report.duplicates, 2);
    assert_eq!(report.duplicate_causes.get(&DuplicateCause::LeaseLost), Some(&1));
    assert_eq!(report.duplicate_causes.get(&DuplicateCause::Zombie), Some(&1));
    let failures = failures(&judge(EndReason::Shutdown));
    assert!(failures.contains("overlapped with the newer B#2#0 but never lost its lease"), "{failures}");
}

/// The clean history with `change` applied, judged.
fn judge_altered(change: impl FnOnce(&mut History)) -> Report {
    let mut h = history(Break::Nothing);
    change(&mut h);
    verify(&h)
}

#[test]
fn a_delivery_of_a_record_never_put_fails() {
    let report = judge_altered(|h| {
        let mut stranger = h.deliveries[0].clone();
        stranger.seq = SequenceNumber::from_u128(99);
        stranger.line = 9;
        h.deliveries.push(stranger);
    });
    assert_eq!(report.failures, ["delivered but never put: 1 (s0 99/0 by A#1#0)"], "{report}");
}

#[test]
fn a_delivery_with_an_altered_payload_or_key_fails() {
    let payload = judge_altered(|h| h.deliveries[1].data = b"tampered".to_vec());
    assert_eq!(payload.failures, ["delivered with another key or payload than put: 1 (s0 2/0 by A#1#0)"], "{payload}");
    let key = judge_altered(|h| h.deliveries[1].pk = "z".to_owned());
    assert_eq!(key.failures, ["delivered with another key or payload than put: 1 (s0 2/0 by A#1#0)"], "{key}");
}

/// The journaled write of `op` on `lease` by `worker`, fenced on `counter`.
fn write_mut<'h>(h: &'h mut History, worker: &str, op: Op, lease: &str, counter: u64) -> &'h mut Write {
    h.journal
        .iter_mut()
        .find_map(|e| match &mut e.event {
            Event::Write(w) if e.worker == worker && w.op == op && w.lease == lease && w.counter == Some(counter) => {
                Some(w)
            }
            _ => None,
        })
        .expect("the clean history has this write")
}

#[test]
fn a_write_that_skips_counters_fails() {
    // B's checkpoint of s2 fenced on counter 1 comes back accepted with counter 3: the store applied it over a change
    // it did not fence against.
    let report = judge_altered(|h| write_mut(h, "B", Op::Checkpoint, "s2", 1).outcome = accepted(3));
    assert_eq!(report.failures.len(), 1, "{report}");
    assert!(
        report.failures[0]
            .starts_with("lease s2: B's Checkpoint 21/0 fenced B@1 was accepted but moved the counter to 3"),
        "{report}"
    );
}

#[test]
fn a_table_that_is_not_the_end_of_the_chain_fails() {
    // The table says B owns s1 at counter 4, but the accepted writes handed it to A there.
    let owner = judge_altered(|h| h.leases[1].lease_owner = Some("B".to_owned()));
    assert_eq!(owner.failures.len(), 1, "{owner}");
    assert!(
        owner.failures[0].contains(
            "lease s1: the table holds owner Some(\"B\") checkpoint 11/0 at counter 4, but the accepted writes leave \
             owner Some(\"A\") checkpoint Some(\"11/0\") there"
        ),
        "{owner}"
    );
    // A checkpoint the chain never wrote (the final-checkpoint check agrees: the last put is 11).
    let checkpoint = judge_altered(|h| h.leases[1].checkpoint = pos(10));
    let failures = failures(&checkpoint);
    assert!(
        failures.contains("lease s1: the table holds owner Some(\"A\") checkpoint 10/0 at counter 4"),
        "{failures}"
    );
    assert!(failures.contains("shard s1: final checkpoint 10/0 but expected 11/0"), "{failures}");
}

#[test]
fn a_missing_lease_and_an_open_shard_not_at_its_last_record_fail() {
    let missing = judge_altered(|h| h.leases.retain(|l| l.shard_id != "s1"));
    assert_eq!(missing.failures, ["shard s1: no lease in the table (expected 11/0)"], "{missing}");
    // A closed shard whose lease is gone passes only with an accepted SHARD_END and delete in the journals.
    let deleted = judge_altered(|h| h.leases.retain(|l| l.shard_id != "s0"));
    assert_eq!(deleted.failures, ["shard s0: no lease in the table (expected SHARD_END)"], "{deleted}");
}
