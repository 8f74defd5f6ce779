//! Store calls with timeouts, retries with backoff, and recovery of writes whose outcome was unknown.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::state::Shared;
use crate::lease::{Lease, LeaseStoreError};

/// Attempts for a read before giving up until the next cycle.
const READ_ATTEMPTS: u32 = 3;
/// Attempts for a write before giving up (each bounded by the caller's deadline too).
const WRITE_ATTEMPTS: u32 = 4;
const BACKOFF_BASE: Duration = Duration::from_millis(20);

/// Runs one store call with a timeout; a timeout is a transient error with an unknown outcome.
pub(crate) async fn call<T>(
    op: &'static str,
    timeout: Duration,
    future: impl Future<Output = Result<T, LeaseStoreError>>,
) -> Result<T, LeaseStoreError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result,
        Err(_) => Err(LeaseStoreError::transient(op, format!("no answer within {timeout:?}"))),
    }
}

/// Exponential backoff with jitter, capped well below the renewal interval so retries fit before a deadline.
pub(crate) fn backoff(shared: &Shared, attempt: u32) -> Duration {
    let cap = (shared.config.renewal_interval() / 4).max(BACKOFF_BASE);
    let exp = BACKOFF_BASE.saturating_mul(1 << attempt.min(10)).min(cap);
    // Full jitter between half and the whole step spreads a fleet's retries apart.
    let half = exp / 2;
    let jitter_ms = shared.rng().below(half.as_millis() as usize + 1) as u64;
    half + Duration::from_millis(jitter_ms)
}

/// A read retried on transient errors.
pub(crate) async fn read<T, F, Fut>(
    shared: &Shared,
    op: &'static str,
    timeout: Duration,
    mut f: F,
) -> Result<T, LeaseStoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LeaseStoreError>>,
{
    let mut attempt = 0;
    loop {
        match call(op, timeout, f()).await {
            Err(error) if error.is_retryable() && attempt + 1 < READ_ATTEMPTS => {
                tracing::debug!(%error, attempt, "lease store read failed; retrying");
                tokio::time::sleep(backoff(shared, attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Reads one lease, retrying transient errors.
pub(crate) async fn get_lease(shared: &Shared, key: &str) -> Result<Option<Lease>, LeaseStoreError> {
    read(shared, "get_lease", shared.config.call_timeout(), || shared.store.get_lease(key)).await
}

/// A write that succeeded, and the START of the attempt that (at the latest) made it.
#[derive(Debug)]
pub(crate) struct Written<T> {
    pub(crate) value: T,
    pub(crate) started: Instant,
}

/// A conditional write on lease `key`, retried on transient errors until `deadline` or a few attempts.
///
/// A transient error leaves the outcome unknown: the write may have happened. When a retry then fails its
/// condition, the lease is read back and `applied` decides whether it shows our earlier write; if so that counts as
/// success, dated from the start of the FIRST unknown attempt (a lower bound on when the write happened, which is
/// the safe direction for self-fencing).
pub(crate) async fn write<T, F, Fut>(
    shared: &Shared,
    key: &str,
    op: &'static str,
    deadline: Option<Instant>,
    mut attempt: F,
    applied: impl Fn(&Lease) -> Option<T>,
) -> Result<Written<T>, LeaseStoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LeaseStoreError>>,
{
    let mut first_unknown: Option<Instant> = None;
    let mut tries = 0;
    loop {
        let started = Instant::now();
        match call(op, shared.config.call_timeout(), attempt()).await {
            Ok(value) => return Ok(Written { value, started }),
            Err(error) if error.is_retryable() => {
                first_unknown.get_or_insert(started);
                tries += 1;
                let pause = backoff(shared, tries);
                let past_deadline = deadline.is_some_and(|d| Instant::now() + pause >= d);
                if tries >= WRITE_ATTEMPTS || past_deadline {
                    return Err(error);
                }
                tracing::debug!(%error, lease_key = %key, op, "lease write failed transiently; retrying");
                tokio::time::sleep(pause).await;
            }
            Err(error) if error.is_condition_failed() => {
                let Some(first_unknown) = first_unknown else { return Err(error) };
                // Did one of our unknown attempts land? Only a read can tell.
                return match get_lease(shared, key).await {
                    Ok(Some(lease)) => match applied(&lease) {
                        Some(value) => Ok(Written { value, started: first_unknown }),
                        None => Err(error),
                    },
                    Ok(None) => Err(error),
                    Err(read_error) => Err(read_error),
                };
            }
            Err(error) => return Err(error),
        }
    }
}
