//! Retrying user callbacks and store calls: capped exponential backoff with jitter, interrupted by a stop request.
//! A panic in a user callback is caught and treated as a failure, so user code never kills the worker.

use std::any::Any;
use std::time::Duration;

use super::stop::StopSignal;
use crate::retrieve::Backoff;

/// Why a retried call gave up: a stop was requested while waiting to retry.
#[derive(Debug)]
pub(crate) struct Stopped;

/// The state of one retried call.
pub(crate) struct Retry {
    what: &'static str,
    backoff: Backoff,
}

impl Retry {
    pub(crate) fn new(what: &'static str, base: Duration, cap: Duration) -> Self {
        Self { what, backoff: Backoff::new(base, cap) }
    }

    /// The value of a successful attempt; logs and counts a failed or panicked one.
    pub(crate) fn check<T, E: std::fmt::Display>(
        &mut self,
        outcome: Result<Result<T, E>, Box<dyn Any + Send>>,
    ) -> Option<T> {
        match outcome {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => {
                metrics::counter!(crate::telemetry::RETRIES, "call" => self.what).increment(1);
                tracing::warn!(call = self.what, attempt = self.backoff.attempts() + 1, %error, "failed; will retry");
            }
            Err(panic) => {
                metrics::counter!(crate::telemetry::PROCESSOR_PANICS, "call" => self.what).increment(1);
                tracing::error!(call = self.what, panic = panic_message(&panic), "panicked; will retry");
            }
        }
        None
    }

    /// Sleeps for the next backoff delay, or returns early when a stop is requested.
    pub(crate) async fn wait(&mut self, stop: &mut StopSignal) -> Result<(), Stopped> {
        let delay = self.backoff.next_delay();
        tokio::select! {
            biased;
            _ = stop.requested() => Err(Stopped),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }
}

/// Evaluates the future expression `$call` until it returns `Ok`, with backoff between attempts; panics count as
/// failures. Yields `Ok(value)` or `Err(Stopped)` when `$stop` fires while waiting (never mid-attempt).
macro_rules! until_ok {
    ($what:expr, $cfg:expr, $stop:expr, $call:expr) => {{
        let mut retry = $crate::lifecycle::retry::Retry::new($what, $cfg.retry_base, $cfg.retry_cap);
        loop {
            let outcome = ::futures::FutureExt::catch_unwind(::std::panic::AssertUnwindSafe($call)).await;
            if let Some(value) = retry.check(outcome) {
                break Ok(value);
            }
            if let Err(stopped) = retry.wait($stop).await {
                break Err(stopped);
            }
        }
    }};
}
pub(crate) use until_ok;

/// The text of a panic payload, when it is a string (user panics usually are).
pub(crate) fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}
