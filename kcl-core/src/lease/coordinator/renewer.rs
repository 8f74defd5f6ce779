//! The renewer: every renewal interval, renew each owned lease (per-lease mode) or the worker heartbeat (heartbeat
//! mode). Transient failures are retried with backoff up to the fencing deadline; a failed condition is resolved by
//! reading the lease (it may show a handoff request, a completed incoming handoff, or a loss).

use futures::StreamExt;
use tokio::time::{Instant, MissedTickBehavior};

use super::config::RenewalMode;
use super::slots::{self, Next, lock_slot};
use super::state::Shared;
use super::{handoff, io};
use crate::lease::LeaseStoreError;

/// How many lease renewals run at once (KCL uses a thread pool for the same reason: one slow call must not delay
/// every other lease's renewal).
const RENEW_CONCURRENCY: usize = 16;

/// The renewal loop; runs until the coordinator stops.
pub(crate) async fn run(shared: std::sync::Arc<Shared>) {
    let mut ticks = tokio::time::interval(shared.config.renewal_interval());
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match shared.config.renewal_mode() {
            RenewalMode::PerLease => renew_leases(&shared).await,
            RenewalMode::WorkerHeartbeat => renew_heartbeat(&shared).await,
        }
    }
}

async fn renew_leases(shared: &Shared) {
    let keys: Vec<String> = {
        let state = shared.state();
        state.slots.iter().filter(|(_, slot)| slot.phase.is_owned()).map(|(key, _)| key.clone()).collect()
    };
    futures::stream::iter(keys).for_each_concurrent(RENEW_CONCURRENCY, |key| renew_one(shared, key)).await;
}

async fn renew_one(shared: &Shared, key: String) {
    let Some(lock) = lock_slot(shared, &key).await else { return };
    let me = shared.worker_id.as_str();
    // At most one retry after a refreshed counter; a second surprise waits for the next tick.
    for _ in 0..2 {
        let (fence, deadline) = {
            let mut state = shared.state();
            let Some(slot) = state.slots.get(&key).filter(|s| s.generation == lock.generation) else { return };
            if !slot.phase.is_owned() {
                return;
            }
            let fence = slot.fence(me);
            let Some(deadline) = shared.deadline(&state, slot) else { return };
            if Instant::now() >= deadline {
                // The clock is about to fence it; do it now rather than renew a lease we must not be processing.
                super::fence::expire(shared, &mut state, &key);
                return;
            }
            (fence, deadline)
        };
        let renewed = io::write(
            shared,
            &key,
            "renew_lease",
            Some(deadline),
            || shared.store.renew_lease(&fence),
            |l| slots::renewed_by(l, me, fence.counter),
        )
        .await;
        match renewed {
            Ok(written) => {
                let mut state = shared.state();
                if let Some(slot) = Shared::slot_mut(&mut state, &key, lock.generation) {
                    slot.lease.lease_counter = written.value;
                    slot.written_at = slot.written_at.max(written.started);
                }
                return;
            }
            Err(error) if error.is_condition_failed() => {
                shared.metrics.renewal_failures.increment(1);
                match slots::refresh(shared, &key, lock.generation).await {
                    Next::Retry => continue,
                    Next::ConfirmIncoming(lease) => {
                        return handoff::confirm_incoming(shared, &key, lock.generation, lease).await;
                    }
                    Next::Done => return,
                }
            }
            Err(error) => {
                shared.metrics.renewal_failures.increment(1);
                log_failure(&error, &key);
                return;
            }
        }
    }
}

fn log_failure(error: &LeaseStoreError, key: &str) {
    match error {
        LeaseStoreError::Fatal { .. } => tracing::error!(%error, lease_key = %key, "lease renewal failed"),
        _ => tracing::debug!(%error, lease_key = %key, "lease renewal failed"),
    }
}

async fn renew_heartbeat(shared: &Shared) {
    let me = shared.worker_id.as_str();
    let config = &shared.config;
    let (mut expected, healthy) = {
        let state = shared.state();
        let now = Instant::now();
        // A worker whose lease-table reads keep failing would keep its heartbeat fresh while blind to handoff
        // requests; stop heartbeating so the fleet can recover its leases after lease_duration.
        let healthy = state.last_table_read.is_none_or(|t| now.duration_since(t) < config.lease_duration());
        (state.heartbeat.counter, healthy)
    };
    // Retry until just before the next tick; the fencing clock independently stops processing if this keeps failing.
    let retry_until = Instant::now() + config.renewal_interval().mul_f32(0.9);
    if !healthy {
        shared.metrics.renewal_failures.increment(1);
        tracing::warn!("lease table unreadable for a lease duration; not renewing the heartbeat");
        return;
    }
    let mut tries = 0;
    loop {
        let started = Instant::now();
        let result =
            io::call("renew_heartbeat", config.call_timeout(), shared.store.renew_heartbeat(me, expected)).await;
        match result {
            Ok(counter) => {
                let mut state = shared.state();
                state.heartbeat.counter = Some(counter);
                state.heartbeat.renewed_at = Some(state.heartbeat.renewed_at.map_or(started, |t| t.max(started)));
                return;
            }
            Err(error) => {
                shared.metrics.renewal_failures.increment(1);
                tries += 1;
                if error.is_condition_failed() {
                    // Another worker fenced our heartbeat (it judged us dead and takes our leases), or an attempt of
                    // ours landed unseen (a timeout or lost response, then a retry with the old counter). Read the
                    // stored counter to heartbeat from, and let `judge_condition_failure` say which it may be.
                    let read =
                        io::read(shared, "list_heartbeats", config.call_timeout(), || shared.store.list_heartbeats())
                            .await;
                    let answered = Instant::now();
                    let stored =
                        read.as_ref().ok().map(|all| all.iter().find(|hb| hb.worker_id == me).map(|hb| hb.counter));
                    let deadline = shared.heartbeat_deadline(&shared.state());
                    match judge_condition_failure(expected, stored, answered, deadline) {
                        ConditionFailure::OwnWrite(counter) => {
                            tracing::debug!(
                                ?expected,
                                counter,
                                "an unseen heartbeat write of ours landed; adopting it"
                            );
                            expected = Some(counter);
                            shared.state().heartbeat.counter = expected;
                        }
                        ConditionFailure::Unread => {
                            if let Err(read_error) = &read {
                                tracing::debug!(%read_error, "could not read heartbeats");
                            }
                        }
                        ConditionFailure::MaybeFenced(counter) => {
                            // Stop processing everything now: a later renewal must never extend leases held before
                            // this point. Leases still ours are adopted again through writes fenced per lease.
                            self_fence_all(shared);
                            expected = counter;
                            shared.state().heartbeat.counter = expected;
                        }
                    }
                } else {
                    log_failure(&error, me);
                }
                let pause = io::backoff(shared, tries);
                if Instant::now() + pause >= retry_until {
                    return;
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// What a heartbeat renewal that failed its condition means, given the stored counter read after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConditionFailure {
    /// Only our own earlier attempt can have moved the counter: heartbeat on from it, keep every lease.
    OwnWrite(u64),
    /// The heartbeat could not be read, before our deadline: no fence can have happened yet; retry (the fencing
    /// clock still stops processing at the deadline).
    Unread,
    /// Another worker may have fenced us: self-fence every lease, then heartbeat on from the stored counter.
    MaybeFenced(Option<u64>),
}

/// Judges a failed heartbeat condition. `stored` is the read that followed (`None`: it failed; `Some(None)`: no
/// heartbeat), `answered` when that read returned, `deadline` our heartbeat deadline (`None`: never renewed).
///
/// A fencer bumps our heartbeat only after seeing its value unchanged for `lease_duration`, from the end of a read
/// that came after the write that produced it, which began no earlier than our last successful renewal `H`: so no
/// fence lands before `H + lease_duration`, a safety margin after our deadline. A change seen before the deadline is
/// therefore ours (an attempt whose answer we lost). Only the single step `expected + 1` (or `1` for a heartbeat we
/// were creating) is taken as ours; anything else is treated as a fence.
fn judge_condition_failure(
    expected: Option<u64>,
    stored: Option<Option<u64>>,
    answered: Instant,
    deadline: Option<Instant>,
) -> ConditionFailure {
    let before_deadline = deadline.is_some_and(|deadline| answered < deadline);
    let own_step = expected.map_or(1, |counter| counter + 1);
    match stored {
        Some(Some(counter)) if before_deadline && counter == own_step => ConditionFailure::OwnWrite(counter),
        None if before_deadline => ConditionFailure::Unread,
        Some(counter) => ConditionFailure::MaybeFenced(counter),
        None => ConditionFailure::MaybeFenced(expected),
    }
}

/// Heartbeat mode: declares every lease lost at once (our heartbeat was fenced, or may have been).
fn self_fence_all(shared: &Shared) {
    let mut state = shared.state();
    let keys: Vec<String> = state.slots.keys().cloned().collect();
    if !keys.is_empty() {
        tracing::warn!(leases = keys.len(), "heartbeat condition failed (fenced by another worker?); self-fencing");
    }
    for key in keys {
        super::fence::expire(shared, &mut state, &key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn judging_a_failed_heartbeat_condition() {
        let now = Instant::now();
        let later = Some(now + Duration::from_secs(1));
        let past = Some(now - Duration::from_millis(1));
        use ConditionFailure::*;
        let table = [
            // (expected, stored, deadline, verdict)
            (Some(5), Some(Some(6)), later, OwnWrite(6)),
            (None, Some(Some(1)), later, OwnWrite(1)),
            // After the deadline a fencer may have made the very same step.
            (Some(5), Some(Some(6)), past, MaybeFenced(Some(6))),
            (Some(5), Some(Some(6)), now.into(), MaybeFenced(Some(6))),
            // Never renewed: nothing to keep.
            (Some(5), Some(Some(6)), None, MaybeFenced(Some(6))),
            // Not a single step of ours.
            (Some(5), Some(Some(7)), later, MaybeFenced(Some(7))),
            (Some(5), Some(Some(5)), later, MaybeFenced(Some(5))),
            (Some(5), Some(None), later, MaybeFenced(None)),
            // Unreadable: wait before the deadline, give up after it.
            (Some(5), None, later, Unread),
            (Some(5), None, past, MaybeFenced(Some(5))),
        ];
        for (expected, stored, deadline, verdict) in table {
            assert_eq!(judge_condition_failure(expected, stored, now, deadline), verdict, "{expected:?} {stored:?}");
        }
    }
}
