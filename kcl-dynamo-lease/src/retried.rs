//! Telling a refusal from the echo of one's own write. The SDK retries a request whose answer was lost (a dropped
//! connection, a timeout, a 5xx after the fact); when the first attempt of a conditional write was carried out, the
//! retry fails its condition — because of the write itself. Reporting that as `ConditionFailed` would break the
//! `LeaseStore` contract ("nothing changed"): the lease coordinator would believe it lost a race for a lease it
//! holds, or that a checkpoint was refused that is stored. [`Attempts`] counts a request's attempts, and a condition
//! failure after more than one attempt is reported as [`unknown_outcome`] (transient), so the caller re-reads the
//! lease, as it does after any write of unknown outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use kcl_core::lease::LeaseStoreError;

/// Counts the attempts the SDK makes for one request (attach with `.customize().interceptor(..)`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Attempts(Arc<AtomicU32>);

impl Attempts {
    /// Whether the SDK sent the request more than once.
    pub(crate) fn retried(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 1
    }
}

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "kcl_dynamo_lease::Attempts"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A conditional write that failed its condition on an SDK retry: an earlier attempt may have been carried out.
pub(crate) fn unknown_outcome(operation: &'static str, key: &str) -> LeaseStoreError {
    LeaseStoreError::transient(
        operation,
        format!(
            "the write to `{key}` failed its condition after the SDK retried it; an earlier attempt whose answer was \
             lost may have been carried out"
        ),
    )
}
