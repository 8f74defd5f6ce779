//! Keeps record payloads out of the logs when the AWS SDK reads records.
//!
//! At TRACE the SDK prints whole bodies: `aws_smithy_runtime` logs "read HTTP response body" and the deserialised
//! `output_or_error` of every call, `aws_smithy_http` every event-stream message. For `GetRecords` and
//! `SubscribeToShard` those are the stream's records, which may carry personal data; an application turned to
//! `RUST_LOG=trace` to chase a problem would write them to its logs. Calls that carry records therefore run under
//! [`QuietSdkBodies`]: a dispatcher that hands everything to the application's own, except TRACE events of
//! `aws_smithy_*` targets. Spans, and the SDK's DEBUG and above, pass unchanged.

use std::any::TypeId;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use tracing::Dispatch;
use tracing::instrument::{WithDispatch, WithSubscriber};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Event, Level, Metadata};
use tracing_core::span::Current;

/// Runs futures under the application's dispatcher minus the SDK's TRACE events (see the module documentation).
///
/// The application's dispatcher is the one current at the first call (the global one, normally); until one is set,
/// futures run as they are.
#[derive(Clone, Debug, Default)]
pub(crate) struct QuietSdkBodies {
    dispatch: Arc<OnceLock<Dispatch>>,
}

impl QuietSdkBodies {
    /// `future`, polled under the quieted dispatcher.
    pub(crate) fn run<F: Future>(&self, future: F) -> WithDispatch<F> {
        let dispatch = match self.dispatch.get() {
            Some(dispatch) => dispatch.clone(),
            None => tracing::dispatcher::get_default(|current| {
                if current.is::<tracing::subscriber::NoSubscriber>() {
                    // Nothing logs yet; wrapping nothing now would keep a later subscriber from ever seeing these calls.
                    current.clone()
                } else {
                    // One wrapper per reader, not per call: every new dispatcher makes tracing recompute the interest
                    // of every callsite.
                    self.dispatch.get_or_init(|| Dispatch::new(WithoutSdkTrace::new(current.clone()))).clone()
                }
            }),
        };
        future.with_subscriber(dispatch)
    }
}

/// Forwards to `inner`, minus TRACE events of `aws_smithy_*` targets.
struct WithoutSdkTrace {
    inner: Dispatch,
    /// The application's level ceiling when this was made (`Dispatch` does not expose its subscriber's hint).
    max_level: LevelFilter,
}

impl WithoutSdkTrace {
    fn new(inner: Dispatch) -> Self {
        Self { inner, max_level: LevelFilter::current() }
    }
}

/// Whether `metadata` is an SDK event that may print a body.
fn is_sdk_trace_event(metadata: &Metadata<'_>) -> bool {
    metadata.is_event() && *metadata.level() == Level::TRACE && metadata.target().starts_with("aws_smithy_")
}

impl Subscriber for WithoutSdkTrace {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if is_sdk_trace_event(metadata) {
            // Asked again per event, so the application's other dispatchers still see it outside these calls.
            Interest::sometimes()
        } else {
            self.inner.register_callsite(metadata)
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !is_sdk_trace_event(metadata) && self.inner.enabled(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event_enabled(&self, event: &Event<'_>) -> bool {
        !is_sdk_trace_event(event.metadata())
    }

    fn event(&self, event: &Event<'_>) {
        if !is_sdk_trace_event(event.metadata()) {
            self.inner.event(event);
        }
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }

    fn current_span(&self) -> Current {
        self.inner.current_span()
    }

    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        // Only this type: `Dispatch` does not expose its subscriber for a downcast by `TypeId`.
        (id == TypeId::of::<Self>()).then_some(self as *const Self as *const ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing::subscriber::with_default;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects the messages of the events it sees.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> tracing_subscriber::Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            let meta = event.metadata();
            self.0.lock().unwrap().push(format!("{} {}", meta.level(), meta.target()));
        }
    }

    /// One callsite, hit inside and outside the quieted calls.
    fn sdk_body_event() {
        tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "body");
    }

    #[test]
    fn sdk_trace_events_are_dropped_inside_and_kept_outside() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(seen.clone());
        with_default(subscriber, || {
            let quiet = QuietSdkBodies::default();
            sdk_body_event();
            futures::executor::block_on(quiet.run(async {
                sdk_body_event();
                tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "attempt");
                tracing::trace!(target: "kcl_core::retrieve", "ours");
            }));
            sdk_body_event();
        });
        let seen = seen.0.lock().unwrap().clone();
        let expected = [
            "TRACE aws_smithy_runtime::client::orchestrator",
            "DEBUG aws_smithy_runtime::client::orchestrator",
            "TRACE kcl_core::retrieve",
            "TRACE aws_smithy_runtime::client::orchestrator",
        ];
        assert_eq!(seen, expected);
    }
}
