//! Multi-stream applications: which streams an application consumes ([`StreamSource`]), how a stream name becomes the
//! Java KCL stream identifier `account:stream:creationEpoch` ([`StreamIdentifier`], [`StreamCatalog`]), and the
//! catalog over the AWS SDK ([`KinesisStreamCatalog`], `DescribeStreamSummary`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_kinesis::types::StreamStatus;

use super::{KinesisShardLister, ShardLister};
use crate::error::KclError;
use crate::retrieve::{ApiErrorKind, classify_sdk_error};

/// What a stream discovery closure may fail with; the worker logs it and asks again at the next interval.
pub type DiscoveryError = Box<dyn std::error::Error + Send + Sync>;

/// Returns the streams (names or ARNs) the application should consume now.
#[async_trait]
pub trait StreamDiscovery: Send + Sync {
    /// The current list. Streams that appear are picked up; streams that disappear stop being consumed, and their
    /// leases are deleted after the worker's `removed_stream_grace`.
    async fn streams(&self) -> Result<Vec<String>, DiscoveryError>;
}

type BoxedList = Pin<Box<dyn Future<Output = Result<Vec<String>, DiscoveryError>> + Send>>;

struct FnDiscovery(Box<dyn Fn() -> BoxedList + Send + Sync>);

#[async_trait]
impl StreamDiscovery for FnDiscovery {
    async fn streams(&self) -> Result<Vec<String>, DiscoveryError> {
        (self.0)().await
    }
}

/// The streams of a multi-stream application: a fixed list, or a discovery polled every
/// `stream_discovery_interval` (see [`WorkerBuilder::stream_discovery_interval`](crate::WorkerBuilder)).
///
/// ```
/// # use std::sync::{Arc, Mutex};
/// use kcl_core::discover::StreamSource;
///
/// let fixed = StreamSource::fixed(["orders", "payments"]);
///
/// // A list the application changes at run time (it could as well come from a config service).
/// let current = Arc::new(Mutex::new(vec!["orders".to_owned()]));
/// let list = current.clone();
/// let dynamic = StreamSource::from_fn(move || {
///     let names = list.lock().unwrap().clone();
///     async move { Ok(names) }
/// });
/// current.lock().unwrap().push("refunds".to_owned());
/// # let _ = (fixed, dynamic);
/// ```
#[derive(Clone)]
pub enum StreamSource {
    /// These streams, for the whole run.
    Fixed(Vec<String>),
    /// Asked again at every discovery interval.
    Discover(Arc<dyn StreamDiscovery>),
}

impl fmt::Debug for StreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(names) => f.debug_tuple("Fixed").field(names).finish(),
            Self::Discover(_) => f.write_str("Discover(..)"),
        }
    }
}

impl StreamSource {
    /// A fixed list of stream names (or ARNs).
    pub fn fixed<S: Into<String>>(streams: impl IntoIterator<Item = S>) -> Self {
        Self::Fixed(streams.into_iter().map(Into::into).collect())
    }

    /// A discovery closure returning the current list; called every discovery interval.
    pub fn from_fn<F, Fut>(discover: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<String>, DiscoveryError>> + Send + 'static,
    {
        Self::Discover(Arc::new(FnDiscovery(Box::new(move || Box::pin(discover())))))
    }

    /// The current list, without duplicates, in the order given.
    pub async fn current(&self) -> Result<Vec<String>, DiscoveryError> {
        let mut streams = match self {
            Self::Fixed(streams) => streams.clone(),
            Self::Discover(discovery) => discovery.streams().await?,
        };
        let mut seen = std::collections::HashSet::new();
        streams.retain(|s| !s.is_empty() && seen.insert(s.clone()));
        Ok(streams)
    }
}

/// A stream's identity in a multi-stream lease table, `account:stream:creationEpoch` as Java KCL writes it (the
/// lease key is `identifier:shardId`). The creation epoch (seconds) tells a re-created stream from its predecessor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamIdentifier {
    /// The AWS account id owning the stream.
    pub account_id: String,
    /// The stream name.
    pub stream_name: String,
    /// When the stream was created, in seconds since the Unix epoch.
    pub creation_epoch: u64,
}

impl StreamIdentifier {
    /// Parses `account:stream:creationEpoch`; `None` for anything else (stream names never contain `:`).
    pub fn parse(serialized: &str) -> Option<Self> {
        let mut parts = serialized.split(':');
        let (account, stream, epoch) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || account.is_empty() || stream.is_empty() {
            return None;
        }
        Some(Self {
            account_id: account.to_owned(),
            stream_name: stream.to_owned(),
            creation_epoch: epoch.parse().ok()?,
        })
    }
}

impl fmt::Display for StreamIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.account_id, self.stream_name, self.creation_epoch)
    }
}

/// Resolves the streams of a multi-stream application: their identifiers and their shard listers. The worker asks
/// once per newly listed stream (not on every discovery), and again after a sync found the stream gone.
#[async_trait]
pub trait StreamCatalog: Send + Sync {
    /// The identifier of `stream` (a name or an ARN); `Ok(None)` when it does not exist or is being deleted.
    async fn describe_stream(&self, stream: &str) -> Result<Option<StreamIdentifier>, KclError>;

    /// A lister for the shards of `stream`.
    fn shard_lister(&self, stream: &str) -> Arc<dyn ShardLister>;
}

/// The [`StreamCatalog`] over the AWS SDK: `DescribeStreamSummary` gives the ARN (its account) and the creation time;
/// shards are listed with [`KinesisShardLister`].
#[derive(Clone, Debug)]
pub struct KinesisStreamCatalog {
    client: aws_sdk_kinesis::Client,
}

impl KinesisStreamCatalog {
    /// A catalog using `client`.
    pub fn new(client: aws_sdk_kinesis::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl StreamCatalog for KinesisStreamCatalog {
    async fn describe_stream(&self, stream: &str) -> Result<Option<StreamIdentifier>, KclError> {
        let request = self.client.describe_stream_summary();
        let request = if stream.starts_with("arn:") { request.stream_arn(stream) } else { request.stream_name(stream) };
        let summary = match request.send().await {
            Ok(output) => output.stream_description_summary,
            Err(error) => {
                let error = classify_sdk_error(&error);
                if error.kind == ApiErrorKind::NotFound {
                    return Ok(None);
                }
                return Err(error.into_kcl("DescribeStreamSummary"));
            }
        };
        let bad = |what: &str| KclError::Kinesis {
            operation: "DescribeStreamSummary",
            message: format!("the summary of {stream} has {what}"),
            retryable: false,
        };
        let Some(summary) = summary else { return Err(bad("no description")) };
        if summary.stream_status == StreamStatus::Deleting {
            return Ok(None);
        }
        // arn:aws:kinesis:region:account:stream/name
        let account = summary.stream_arn.split(':').nth(4).filter(|a| !a.is_empty()).ok_or_else(|| bad("no ARN"))?;
        let creation_epoch =
            u64::try_from(summary.stream_creation_timestamp.secs()).map_err(|_| bad("a creation time before 1970"))?;
        Ok(Some(StreamIdentifier { account_id: account.to_owned(), stream_name: summary.stream_name, creation_epoch }))
    }

    fn shard_lister(&self, stream: &str) -> Arc<dyn ShardLister> {
        Arc::new(KinesisShardLister::new(self.client.clone(), stream.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_round_trip_and_reject_other_shapes() {
        let id = StreamIdentifier::parse("123456789012:orders:1700000000").unwrap();
        assert_eq!(id.account_id, "123456789012");
        assert_eq!(id.stream_name, "orders");
        assert_eq!(id.creation_epoch, 1_700_000_000);
        assert_eq!(id.to_string(), "123456789012:orders:1700000000");
        for bad in ["orders", "1:orders", "1:orders:x", "1:orders:2:3", ":orders:1", "1::1"] {
            assert_eq!(StreamIdentifier::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_source_drops_duplicates_and_empty_names() {
        let source = StreamSource::fixed(["a", "b", "a", ""]);
        assert_eq!(source.current().await.unwrap(), ["a", "b"]);
        let failing = StreamSource::from_fn(|| async { Err::<Vec<String>, DiscoveryError>("down".into()) });
        assert_eq!(failing.current().await.unwrap_err().to_string(), "down");
    }
}
