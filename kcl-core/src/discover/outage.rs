//! When shard sync keeps failing because something the worker needs is missing — the stream, the lease table, or
//! the permission to use them — which resource it is, what to do about it, and when to stop retrying.
//!
//! A worker retries sync every second. Logged per attempt, a missing stream became an endless WARN stream that
//! said neither what was missing nor how to fix it. Now the first failure of an outage logs one ERROR naming the
//! resource and the remedy, the retries stay quiet (DEBUG), recovery is logged once, and a worker configured with
//! a limit gives up: `Worker::run` returns the error.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{KclError, LeaseStoreError};

/// What a sync failure says is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Missing {
    /// The stream does not exist (`ResourceNotFoundException` from `ListShards`).
    Stream,
    /// The lease table does not exist.
    Table,
    /// A call was denied.
    Permission,
    /// Something else (throttling, an unreachable endpoint, …): retried as before.
    Nothing,
}

/// Classifies a sync error.
pub(crate) fn missing(error: &KclError) -> Missing {
    let text = match error {
        KclError::Kinesis { message, .. } => {
            if message.contains("(not_found)") {
                return Missing::Stream;
            }
            message.as_str()
        }
        KclError::LeaseStore(LeaseStoreError::Fatal { message, .. }) => {
            if message.contains("ResourceNotFoundException") || message.contains("does not exist") {
                return Missing::Table;
            }
            message.as_str()
        }
        _ => return Missing::Nothing,
    };
    if text.contains("access_denied") || text.contains("AccessDenied") || text.contains("UnauthorizedOperation") {
        Missing::Permission
    } else {
        Missing::Nothing
    }
}

/// The resource and the remedy, for the ERROR.
pub(crate) fn remedy(missing: Missing, stream: &str) -> Option<String> {
    match missing {
        Missing::Stream => Some(format!(
            "the stream `{stream}` does not exist (in this account and region): create it, or fix the stream name, \
             region or endpoint the worker is configured with"
        )),
        Missing::Table => Some(
            "the lease table does not exist: let the store create it (DynamoLeaseStore's `create_table_if_missing`), \
             create it with `kcl-admin import`, or fix the table name, region or endpoint"
                .to_owned(),
        ),
        Missing::Permission => Some(format!(
            "access denied: grant this worker's role kinesis:ListShards, GetShardIterator and GetRecords on \
             `{stream}`, and dynamodb:Scan, GetItem, PutItem, UpdateItem and DeleteItem on the lease table"
        )),
        Missing::Nothing => None,
    }
}

/// What to do after one sync attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Keep retrying; `announce` when this failure starts an outage (log the ERROR).
    Retry { announce: bool },
    /// The outage lasted past the limit: stop the worker with the error.
    GiveUp,
    /// A success after an outage: log the recovery.
    Recovered,
    /// A success, no outage.
    Fine,
}

/// The decision, pure: `outage_since` is when the current run of failures began (`None`: the last attempt
/// succeeded), `failed` whether this attempt failed with a missing resource, `limit` the builder's
/// `give_up_after` (`None`: retry forever).
pub(crate) fn step(outage_since: Option<Instant>, failed: bool, now: Instant, limit: Option<Duration>) -> Step {
    match (outage_since, failed) {
        (None, false) => Step::Fine,
        (Some(_), false) => Step::Recovered,
        (None, true) => match limit {
            Some(limit) if limit.is_zero() => Step::GiveUp,
            _ => Step::Retry { announce: true },
        },
        (Some(since), true) => match limit {
            Some(limit) if now.duration_since(since) >= limit => Step::GiveUp,
            _ => Step::Retry { announce: false },
        },
    }
}

/// The outage state of one sync loop.
#[derive(Debug, Default)]
pub(crate) struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// Records one sync attempt's result; logs as [`step`] decides. `Err` when the worker should give up.
    pub(crate) fn after(
        &mut self,
        result: Result<(), &KclError>,
        stream: &str,
        limit: Option<Duration>,
    ) -> Result<(), KclError> {
        let now = Instant::now();
        let what = match result {
            Ok(()) => None,
            // Not a missing resource (throttling, an unreachable endpoint): the caller logs and retries as before,
            // and an outage in progress neither ends nor advances.
            Err(error) if missing(error) == Missing::Nothing => return Ok(()),
            Err(error) => Some((error, missing(error))),
        };
        let failed = what.is_some();
        match step(self.since, failed, now, limit) {
            Step::Fine => {}
            Step::Recovered => {
                self.since = None;
                tracing::info!(stream, "shard sync works again");
            }
            Step::Retry { announce } => {
                let Some((error, missing)) = what else { return Ok(()) };
                if announce {
                    self.since = Some(now);
                    let remedy = remedy(missing, stream).unwrap_or_default();
                    let limit = limit.map_or("retrying every second until it works".to_owned(), |l| {
                        format!("retrying every second; the worker stops after {} s of this", l.as_secs())
                    });
                    tracing::error!(stream, %error, "shard sync cannot run: {remedy}; {limit}");
                } else {
                    tracing::debug!(stream, %error, "shard sync still failing");
                }
            }
            Step::GiveUp => {
                let Some((error, missing)) = what else { return Ok(()) };
                let remedy = remedy(missing, stream).unwrap_or_default();
                tracing::error!(stream, %error, "giving up: {remedy}");
                return Err(KclError::InvalidConfig(format!("shard sync failed for too long: {remedy} ({error})")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(30);
        let cases: &[(Option<Instant>, bool, Option<u64>, Step)] = &[
            (None, false, None, Step::Fine),
            (None, true, None, Step::Retry { announce: true }),
            (Some(t0), true, None, Step::Retry { announce: false }),
            (Some(t0), false, None, Step::Recovered),
            (Some(t0), true, Some(60), Step::Retry { announce: false }),
            (Some(t0), true, Some(30), Step::GiveUp),
            (None, true, Some(0), Step::GiveUp),
            (None, true, Some(30), Step::Retry { announce: true }),
        ];
        for (since, failed, limit, expected) in cases {
            let limit = limit.map(Duration::from_secs);
            assert_eq!(&step(*since, *failed, later, limit), expected, "{since:?} {failed} {limit:?}");
        }
    }

    #[test]
    fn classifies_missing_resources() {
        let kinesis =
            |message: &str| KclError::Kinesis { operation: "ListShards", message: message.into(), retryable: false };
        let fatal = |message: &str| KclError::LeaseStore(LeaseStoreError::fatal("list_leases", message.to_owned()));
        let cases = [
            (kinesis("Stream x under account 1 not found. (not_found)"), Missing::Stream),
            (kinesis("User is not authorized (access_denied)"), Missing::Permission),
            (kinesis("slow down (throttled)"), Missing::Nothing),
            (fatal("DynamoDB Scan for `t` failed: ResourceNotFoundException: no table"), Missing::Table),
            (fatal("DynamoDB Scan for `t` failed: AccessDeniedException: no"), Missing::Permission),
            (KclError::Shutdown, Missing::Nothing),
        ];
        for (error, expected) in cases {
            assert_eq!(missing(&error), expected, "{error}");
            assert_eq!(remedy(expected, "s").is_some(), expected != Missing::Nothing);
        }
    }
}
