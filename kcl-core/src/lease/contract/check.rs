//! Assertions and fixtures shared by the cases. Every failure names the case, the operation, what the contract
//! expects and what the store did.

use std::fmt::{Debug, Display};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Barrier;

use crate::lease::{Lease, LeaseFence, LeaseStore, LeaseStoreError};
use crate::types::{ExtendedSequenceNumber, SequenceNumber};

/// The case being run, for failure messages.
#[derive(Clone, Copy)]
pub(super) struct Ctx {
    case: &'static str,
}

impl Ctx {
    pub(super) fn new(case: &'static str) -> Self {
        Self { case }
    }

    /// Panics with the case name, the operation and what went wrong.
    #[track_caller]
    pub(super) fn fail(&self, op: impl Display, problem: impl Display) -> ! {
        panic!("lease store contract, case `{}`: {op}: {problem}", self.case)
    }

    /// The value of a call that must succeed.
    #[track_caller]
    pub(super) fn ok<T>(&self, op: impl Display, result: Result<T, LeaseStoreError>) -> T {
        match result {
            Ok(value) => value,
            Err(error) => self.fail(op, format_args!("expected success, got error: {error} ({error:?})")),
        }
    }

    /// A call the contract says must lose with `ConditionFailed`.
    #[track_caller]
    pub(super) fn rejected<T: Debug>(&self, op: impl Display, result: Result<T, LeaseStoreError>) {
        match result {
            Err(error) if error.is_condition_failed() => {}
            Err(error) => self.fail(op, format_args!("expected ConditionFailed, got another error: {error:?}")),
            Ok(value) => self.fail(op, format_args!("expected ConditionFailed, got Ok({value:?})")),
        }
    }

    /// A counter-returning write that must succeed and return `expected`.
    #[track_caller]
    pub(super) fn counter(&self, op: &str, expected: u64, result: Result<u64, LeaseStoreError>) {
        self.eq(op, "returned counter", expected, self.ok(op, result));
    }

    #[track_caller]
    pub(super) fn eq<T: PartialEq + Debug>(&self, op: impl Display, what: &str, expected: T, actual: T) {
        if expected != actual {
            self.fail(op, format_args!("{what}: expected {expected:?}, got {actual:?}"));
        }
    }

    /// Reads a lease that must exist.
    pub(super) async fn lease<S: LeaseStore + ?Sized>(&self, store: &S, key: &str) -> Lease {
        let op = &format!("get_lease({key:?})");
        match self.ok(op, store.get_lease(key).await) {
            Some(lease) => lease,
            None => self.fail(op, "expected the lease to exist, got None"),
        }
    }

    /// Reads a lease that must not exist.
    pub(super) async fn absent<S: LeaseStore + ?Sized>(&self, store: &S, key: &str, after: &str) {
        let op = &format!("get_lease({key:?}) after {after}");
        if let Some(lease) = self.ok(op, store.get_lease(key).await) {
            self.fail(op, format_args!("expected None, got {lease:?}"));
        }
    }

    /// Creates a lease that must not exist yet.
    pub(super) async fn create<S: LeaseStore + ?Sized>(&self, store: &S, lease: &Lease) {
        let op = &format!("create_lease_if_not_exists({:?})", lease.lease_key);
        self.eq(op, "created", true, self.ok(op, store.create_lease_if_not_exists(lease).await));
    }

    /// A take the contract says succeeds: `before` (the stored lease) taken at its counter by `new_owner`. Checks
    /// the returned and the stored lease against the take's effect, and returns the lease as taken.
    pub(super) async fn take<S: LeaseStore + ?Sized>(
        &self,
        store: &S,
        op: &str,
        before: &Lease,
        new_owner: &str,
    ) -> Lease {
        let mut expected = before.clone();
        if before.lease_owner.as_deref() != Some(new_owner) {
            expected.owner_switches_since_checkpoint += 1;
        }
        expected.lease_owner = Some(new_owner.to_owned());
        expected.checkpoint_owner = None;
        expected.lease_counter += 1;
        let returned = self.ok(op, store.take_lease(&before.lease_key, before.lease_counter, new_owner).await);
        self.same_lease(format_args!("{op}: the returned lease"), &expected, &returned);
        self.unchanged(store, &expected, op).await;
        expected
    }

    /// Checks that the stored lease is still exactly `before` (after a rejected write, a read or a no-op).
    pub(super) async fn unchanged<S: LeaseStore + ?Sized>(&self, store: &S, before: &Lease, after: &str) {
        let now = self.lease(store, &before.lease_key).await;
        self.same_lease(format_args!("the stored lease after {after}"), before, &now);
    }

    /// Field-by-field comparison. Parent and child shard ids are sets (DynamoDB stores them as string sets, so their
    /// order is not kept); everything else must come back exactly.
    #[track_caller]
    pub(super) fn same_lease(&self, op: impl Display, expected: &Lease, actual: &Lease) {
        let mut diffs = Vec::new();
        let mut field = |name: &str, equal: bool, expected: String, actual: String| {
            if !equal {
                diffs.push(format!("{name}: expected {expected}, got {actual}"));
            }
        };
        macro_rules! compare {
            ($name:ident) => {
                field(
                    stringify!($name),
                    expected.$name == actual.$name,
                    format!("{:?}", expected.$name),
                    format!("{:?}", actual.$name),
                )
            };
        }
        compare!(lease_key);
        compare!(lease_owner);
        compare!(lease_counter);
        compare!(owner_switches_since_checkpoint);
        compare!(checkpoint);
        compare!(pending_checkpoint);
        // `Lease`'s Debug hides application state; the suite's state is synthetic, so show the bytes.
        compare!(pending_checkpoint_state);
        field(
            "parent_shard_ids (as a set)",
            sorted(&expected.parent_shard_ids) == sorted(&actual.parent_shard_ids),
            format!("{:?}", expected.parent_shard_ids),
            format!("{:?}", actual.parent_shard_ids),
        );
        field(
            "child_shard_ids (as a set)",
            sorted(&expected.child_shard_ids) == sorted(&actual.child_shard_ids),
            format!("{:?}", expected.child_shard_ids),
            format!("{:?}", actual.child_shard_ids),
        );
        compare!(hash_key_range);
        compare!(checkpoint_owner);
        compare!(stream_identifier);
        compare!(shard_id);
        if !diffs.is_empty() {
            self.fail(op, format_args!("lease {:?} differs:\n  {}", expected.lease_key, diffs.join("\n  ")));
        }
    }

    /// A listing holding exactly `expected` (in any order), each lease in full.
    #[track_caller]
    pub(super) fn same_leases(&self, op: &str, expected: &[Lease], listed: &[Lease]) {
        self.eq(op, "number of leases", expected.len(), listed.len());
        for lease in expected {
            match listed.iter().find(|l| l.lease_key == lease.lease_key) {
                Some(found) => self.same_lease(op, lease, found),
                None => self.fail(op, format_args!("lease {:?} is missing", lease.lease_key)),
            }
        }
    }
}

fn sorted(ids: &[String]) -> Vec<&str> {
    let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    ids.sort_unstable();
    ids
}

/// A fresh, unowned single-stream lease at `TRIM_HORIZON`.
pub(super) fn unowned(key: &str) -> Lease {
    Lease::new_for_shard(key, ExtendedSequenceNumber::TrimHorizon)
}

/// A lease held by `owner` at `counter` (created directly in that state: `create` stores the counter it is given).
pub(super) fn owned(key: &str, owner: &str, counter: u64) -> Lease {
    Lease { lease_owner: Some(owner.to_owned()), lease_counter: counter, ..unowned(key) }
}

/// A held lease with a checkpoint and a prepared checkpoint with state and some owner switches, so that writes
/// which must not touch them can be seen not to.
pub(super) fn busy(key: &str, owner: &str, counter: u64) -> Lease {
    Lease {
        checkpoint: position(10, 0),
        pending_checkpoint: Some(position(11, 2)),
        pending_checkpoint_state: Some(state(7)),
        owner_switches_since_checkpoint: 2,
        ..owned(key, owner, counter)
    }
}

pub(super) fn fence(key: &str, owner: &str, counter: u64) -> LeaseFence {
    LeaseFence { lease_key: key.to_owned(), owner: owner.to_owned(), counter }
}

/// A real-looking (56-digit) Kinesis sequence number plus `offset`, with a sub-sequence number.
pub(super) fn position(offset: u8, sub_sequence: u64) -> ExtendedSequenceNumber {
    let text = format!("4959033827149025660855969253836157109592157598913658{:04}", 8000 + u16::from(offset));
    match SequenceNumber::parse(&text) {
        Ok(sequence) => ExtendedSequenceNumber::with_sub(sequence, sub_sequence),
        Err(error) => unreachable!("the fixture sequence number {text} is valid: {error}"),
    }
}

/// Application state with bytes that are not UTF-8, a zero byte and a high byte.
pub(super) fn state(tag: u8) -> Bytes {
    Bytes::from(vec![0, tag, 0xff, 0xfe, b'k', b'c', b'l', 0x80, tag])
}

/// Runs `call` from `tasks` spawned tokio tasks released together by a barrier, and collects their results.
pub(super) async fn race<S, T, Fut>(
    ctx: &Ctx,
    op: &str,
    store: &Arc<S>,
    tasks: usize,
    call: impl Fn(Arc<S>, usize) -> Fut,
) -> Vec<Result<T, LeaseStoreError>>
where
    S: LeaseStore + ?Sized,
    Fut: Future<Output = Result<T, LeaseStoreError>> + Send + 'static,
    T: Send + 'static,
{
    let start = Arc::new(Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let start = Arc::clone(&start);
            let call = call(Arc::clone(store), task);
            tokio::spawn(async move {
                start.wait().await;
                call.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks);
    for handle in handles {
        match handle.await {
            Ok(result) => results.push(result),
            Err(error) => ctx.fail(op, format_args!("a racing task did not finish: {error}")),
        }
    }
    results
}

/// Checks that exactly one racer won and every other one lost with `ConditionFailed`; returns the winner's index and
/// value.
#[track_caller]
pub(super) fn one_winner<T>(ctx: &Ctx, op: &str, results: Vec<Result<T, LeaseStoreError>>) -> (usize, T) {
    let racers = results.len();
    let mut winner = None;
    let mut wins = 0;
    for (task, result) in results.into_iter().enumerate() {
        match result {
            Ok(value) => {
                wins += 1;
                winner = Some((task, value));
            }
            Err(error) if error.is_condition_failed() => {}
            Err(error) => ctx.fail(op, format_args!("a losing racer must get ConditionFailed, got {error:?}")),
        }
    }
    match winner {
        Some(winner) if wins == 1 => winner,
        _ => ctx.fail(op, format_args!("expected exactly one of {racers} racers to win, {wins} did")),
    }
}
