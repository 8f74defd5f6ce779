//! Every log line a shard's processing writes sits in the `shard` span (shard id, lease counter) inside the `worker`
//! span (worker id), as the catalogue in `kcl_core::telemetry` documents.
//!
//! The subscriber is installed for the current thread only; the test runs on a current-thread runtime, so every
//! task of the worker runs on this thread and reports to it.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcl_core::lease::coordinator::LeaseCoordinatorConfig;
use kcl_core::lease::{LeaseStore, MemoryLeaseStore};
use kcl_core::retrieve::memory_stream::MemoryStream;
use kcl_core::{Batch, BatchResult, Checkpointer, InitialPosition, RecordProcessor, Worker};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span's fields as `name=value` strings.
struct Fields(Vec<String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push(format!("{}={:?}", field.name(), value));
    }
}

/// For each event whose message is `processing`: its spans, innermost first, as (name, fields).
type Scopes = Arc<Mutex<Vec<Vec<(String, Vec<String>)>>>>;

struct Capture(Scopes);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields(Vec::new());
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut message = Fields(Vec::new());
        event.record(&mut message);
        if !message.0.iter().any(|f| f == "message=processing") {
            return;
        }
        let scope = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .map(|span| {
                        let fields = span.extensions().get::<Fields>().map(|f| f.0.clone()).unwrap_or_default();
                        (span.name().to_owned(), fields)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().unwrap().push(scope);
    }
}

struct Processor;

#[async_trait::async_trait]
impl RecordProcessor for Processor {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        tracing::info!(records = batch.records.len(), "processing");
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

#[tokio::test]
async fn processing_logs_carry_the_worker_and_shard_spans() {
    let scopes = Scopes::default();
    let subscriber = tracing_subscriber::registry().with(Capture(scopes.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let stream = MemoryStream::new("traced", 1);
    let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
    let worker = Worker::builder(stream.name().clone(), "app")
        .worker_id("trace-worker")
        .record_source(Arc::new(stream.clone()))
        .shard_lister(Arc::new(stream.clone()))
        .lease_store(store)
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(LeaseCoordinatorConfig::builder().lease_duration(Duration::from_secs(2)).build().unwrap())
        .processor_factory(|_: &str| Processor)
        .build()
        .unwrap();
    let shutdown = worker.shutdown_handle();
    let task = tokio::spawn(worker.run());
    stream.put("key", "hello").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while scopes.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for the record to be processed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.shutdown();
    tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap().unwrap();

    let scope = scopes.lock().unwrap()[0].clone();
    let names: Vec<&str> = scope.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["shard", "worker"], "spans around process_records, innermost first");
    let (_, shard) = &scope[0];
    assert!(shard.contains(&"shard_id=shardId-000000000000".to_owned()), "{shard:?}");
    assert!(shard.iter().any(|f| f.starts_with("lease_counter=")), "{shard:?}");
    let (_, worker) = &scope[1];
    assert!(worker.contains(&"worker_id=trace-worker".to_owned()), "{worker:?}");
    assert!(worker.contains(&"stream=traced".to_owned()), "{worker:?}");
}
