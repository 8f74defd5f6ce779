//! Enhanced fan-out: `SubscribeToShard` behind the same [`RecordSource`] / [`ShardReader`] traits as polling.
//!
//! * [`FanOutSource`] registers (or finds) the stream consumer and opens one [`FanOutReader`] per shard.
//! * [`SubscribeApi`] is the transport ([`KinesisSubscribeApi`] for the AWS SDK), so the reader's policy can be
//!   exercised in-process with fault injection.
//!
//! # Reader policy (per shard)
//! * **Start** exactly like polling: a whole-record checkpoint subscribes `AT_SEQUENCE_NUMBER` and drops that record
//!   unless it is a KPL aggregate; sub-sequence > 0 subscribes `AT_SEQUENCE_NUMBER` and keeps the aggregate;
//!   `TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP` as they are; `SHARD_END` reads nothing.
//! * **Resubscribe** `AFTER_SEQUENCE_NUMBER` of the continuation of the last queued event (never before a queued
//!   record) whenever a subscription ends (every 5 minutes on AWS), fails, stays silent for `health_timeout`, or is
//!   dropped for backpressure. Subscribe calls for one shard are at least `min_time_between_subscribes` apart (the
//!   service allows one per second). Retryable failures — including `ResourceInUseException`, which means the
//!   previous subscription is still open — back off exponentially with full jitter. Not-found, access-denied and
//!   invalid-argument errors end the reader with a non-retryable error.
//! * **Shard end**: the final event has no continuation sequence number; its `ChildShards` become the final batch's
//!   `child_shards`, exactly as polling reports them.
//! * **Backpressure**: events wait in a buffer bounded by `max_buffered_events` and `max_buffered_bytes` (plus at most
//!   one event). While it is full the task does not read the stream (HTTP/2 flow control pushes back on the service);
//!   if it stays full for `max_stall`, the subscription is cancelled and a new one starts after the last queued event
//!   once the processor has made room. Memory per shard is bounded however slow the processor is (Java KCL issues
//!   #463 and #653).
//!
//! # Metrics
//! SubscribeToShard calls, errors (`kind`: an [`ApiErrorKind`](super::ApiErrorKind) label, or `health_timeout`),
//! throttles, backpressure drops, millis behind latest and iterator age, per stream and shard: see the
//! [catalogue](crate::telemetry).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::polling::start_position;
use super::{RecordSource, ShardReader, ShardSpec};
use crate::error::KclError;
use crate::types::{ExtendedSequenceNumber, InitialPosition};

mod api;
mod buffer;
mod consumer;
mod reader;

pub use api::{EventSubscription, FanOutEvent, KinesisSubscribeApi, KinesisSubscription, SubscribeApi};
pub use reader::FanOutReader;

/// Settings of a [`FanOutSource`]. Defaults follow Java KCL where it has a setting. Other crates start from
/// `default()` and change what they need with the `with_*` setters.
///
/// ```
/// use std::time::Duration;
///
/// use kcl_core::retrieve::fanout::FanOutConfig;
///
/// // Resubscribe sooner after a silent subscription, and buffer more events per shard.
/// let fan_out = FanOutConfig::default()
///     .with_health_timeout(Duration::from_secs(30))
///     .with_max_buffered_events(16);
/// assert_eq!(fan_out.max_buffered_events, 16);
/// // Hand it to `Worker::builder(..).retrieval(Retrieval::FanOut { consumer_name: None, config: fan_out })`.
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FanOutConfig {
    /// Resubscribe when no event arrives for this long (KCL cancels a subscription after 60 s without events;
    /// default 60 s). Kinesis sends an event at least every few seconds, even on an idle shard.
    pub health_timeout: Duration,
    /// Least time between two `SubscribeToShard` calls for one shard (default 1 s, the service's limit per
    /// consumer and shard).
    pub min_time_between_subscribes: Duration,
    /// Events the per-shard buffer holds (default 8; KCL's fan-out publisher queues 8 events too).
    pub max_buffered_events: usize,
    /// Bytes (payload + partition keys) the per-shard buffer holds, plus at most one event (default 16 MiB).
    pub max_buffered_bytes: usize,
    /// How long the buffer may stay full before the subscription is dropped (default 30 s).
    pub max_stall: Duration,
    /// First retry backoff ceiling (KCL `taskBackoffTimeMillis`, default 500 ms).
    pub retry_base: Duration,
    /// Largest retry backoff ceiling (default 10 s).
    pub retry_cap: Duration,
    /// How long [`FanOutSource`] waits for the consumer to become ACTIVE before `open` fails with a retryable error
    /// (default 2 min; registration usually takes seconds).
    pub registration_timeout: Duration,
    /// Seed for the retry jitter; `None` (default) seeds randomly.
    pub backoff_seed: Option<u64>,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        Self {
            health_timeout: Duration::from_secs(60),
            min_time_between_subscribes: Duration::from_secs(1),
            max_buffered_events: 8,
            max_buffered_bytes: 16 << 20,
            max_stall: Duration::from_secs(30),
            retry_base: Duration::from_millis(500),
            retry_cap: Duration::from_secs(10),
            registration_timeout: Duration::from_secs(120),
            backoff_seed: None,
        }
    }
}

with_setters!(FanOutConfig {
    with_health_timeout => health_timeout: Duration,
    with_min_time_between_subscribes => min_time_between_subscribes: Duration,
    with_max_buffered_events => max_buffered_events: usize,
    with_max_buffered_bytes => max_buffered_bytes: usize,
    with_max_stall => max_stall: Duration,
    with_retry_base => retry_base: Duration,
    with_retry_cap => retry_cap: Duration,
    with_registration_timeout => registration_timeout: Duration,
    with_backoff_seed => backoff_seed: Option<u64>,
});

impl FanOutConfig {
    fn validate(&self) -> Result<(), KclError> {
        let bad = |message: &str| Err(KclError::InvalidConfig(message.to_owned()));
        if self.health_timeout.is_zero() || self.max_stall.is_zero() || self.registration_timeout.is_zero() {
            return bad("fan-out health_timeout, max_stall and registration_timeout must be positive");
        }
        if self.max_buffered_events == 0 || self.max_buffered_bytes == 0 {
            return bad("fan-out max_buffered_events and max_buffered_bytes must be positive");
        }
        if self.retry_base.is_zero() || self.retry_cap < self.retry_base {
            return bad("fan-out retry backoff needs 0 < retry_base <= retry_cap");
        }
        Ok(())
    }
}

/// A stream's consumer ARN, filled by the first `open` that needs it.
type ArnCell = Arc<OnceCell<Arc<str>>>;

/// Consumer ARNs by stream.
type ArnCache = HashMap<Arc<str>, ArnCell>;

/// Where the consumer ARN comes from.
enum Consumer {
    /// Given by the caller.
    Fixed(Arc<str>),
    /// Registered (or found) once per stream on first use, through the SDK.
    Registered {
        client: aws_sdk_kinesis::Client,
        name: String,
        /// One cell per stream, so concurrent `open`s for the same stream share one registration.
        arns: Arc<Mutex<ArnCache>>,
    },
}

/// Opens [`FanOutReader`]s: enhanced fan-out (`SubscribeToShard`) behind [`RecordSource`]. See the
/// [module documentation](self) for the reader policy.
pub struct FanOutSource<A: SubscribeApi = KinesisSubscribeApi> {
    api: Arc<A>,
    consumer: Consumer,
    config: FanOutConfig,
}

impl<A: SubscribeApi> std::fmt::Debug for FanOutSource<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let consumer = match &self.consumer {
            Consumer::Fixed(arn) => arn.to_string(),
            Consumer::Registered { name, .. } => name.clone(),
        };
        f.debug_struct("FanOutSource").field("consumer", &consumer).field("config", &self.config).finish()
    }
}

impl FanOutSource<KinesisSubscribeApi> {
    /// A source reading through the consumer `consumer_name` (KCL uses the application name), registered with
    /// `RegisterStreamConsumer` on first use if it does not exist yet; an existing consumer is reused.
    pub fn new(
        client: aws_sdk_kinesis::Client,
        consumer_name: impl Into<String>,
        config: FanOutConfig,
    ) -> Result<Self, KclError> {
        config.validate()?;
        let name = consumer_name.into();
        if name.is_empty() {
            return Err(KclError::InvalidConfig("the fan-out consumer name must not be empty".to_owned()));
        }
        Ok(Self {
            api: Arc::new(KinesisSubscribeApi::new(client.clone())),
            consumer: Consumer::Registered { client, name, arns: Arc::default() },
            config,
        })
    }
}

impl<A: SubscribeApi> FanOutSource<A> {
    /// A source over any [`SubscribeApi`] with a known consumer ARN (no registration).
    pub fn with_api(api: A, consumer_arn: impl Into<Arc<str>>, config: FanOutConfig) -> Result<Self, KclError> {
        config.validate()?;
        Ok(Self { api: Arc::new(api), consumer: Consumer::Fixed(consumer_arn.into()), config })
    }

    /// The configuration.
    pub fn config(&self) -> &FanOutConfig {
        &self.config
    }

    /// The ARN of the ACTIVE consumer for `stream` (a name or an ARN), registering it and waiting for it if needed.
    /// The result is cached: later calls for the same stream make no service call.
    pub async fn consumer_arn(&self, stream: &str) -> Result<Arc<str>, KclError> {
        let (client, name, arns) = match &self.consumer {
            Consumer::Fixed(arn) => return Ok(Arc::clone(arn)),
            Consumer::Registered { client, name, arns } => (client, name, arns),
        };
        let cell = {
            let mut arns = arns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(arns.entry(Arc::from(stream)).or_default())
        };
        let timing = consumer::RegistrationTiming {
            base: self.config.retry_base,
            cap: self.config.retry_cap,
            timeout: self.config.registration_timeout,
        };
        let arn = cell
            .get_or_try_init(|| async {
                consumer::register_consumer(client, stream, name, &timing).await.map(Arc::<str>::from)
            })
            .await?;
        Ok(Arc::clone(arn))
    }

    /// A reader as a concrete type (what [`RecordSource::open`] boxes).
    pub async fn reader(
        &self,
        shard: &ShardSpec,
        start: &ExtendedSequenceNumber,
        initial_position: &InitialPosition,
    ) -> Result<FanOutReader, KclError> {
        let position = start_position(shard, start, initial_position)?;
        let arn = match position {
            // Nothing to read: no consumer needed either.
            None => Arc::from(""),
            Some(_) => self.consumer_arn(&shard.stream).await?,
        };
        Ok(FanOutReader::spawn(
            Arc::clone(&self.api),
            arn,
            shard.clone(),
            position,
            &self.config,
            self.forgetter(shard),
        ))
    }

    /// What a reader calls when the service no longer knows the consumer (ResourceNotFoundException): the cached
    /// ARN is dropped, so the next `open` describes (and, if it was deregistered, registers) the consumer again
    /// instead of failing with the stale ARN forever.
    fn forgetter(&self, shard: &ShardSpec) -> Option<reader::Forget> {
        let Consumer::Registered { arns, .. } = &self.consumer else {
            return None;
        };
        let (arns, stream) = (Arc::clone(arns), Arc::clone(&shard.stream));
        Some(Arc::new(move || {
            arns.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&stream);
        }))
    }
}

#[async_trait]
impl<A: SubscribeApi> RecordSource for FanOutSource<A> {
    async fn open(
        &self,
        shard: &ShardSpec,
        start: &ExtendedSequenceNumber,
        initial_position: &InitialPosition,
    ) -> Result<Box<dyn ShardReader>, KclError> {
        Ok(Box::new(self.reader(shard, start, initial_position).await?))
    }
}
