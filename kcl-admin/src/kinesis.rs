//! Kinesis reads: shard listings, and "what is the first record after this position" probes, with the few retries
//! an interactive tool needs (kcl-core's polling API makes exactly one call per method and leaves retrying to its
//! caller).

use std::future::Future;
use std::time::{Duration, SystemTime};

use kcl_core::discover::{KinesisShardLister, ShardListFilter, ShardLister};
use kcl_core::retrieve::ShardSpec;
use kcl_core::retrieve::{ApiError, ApiErrorKind, GetRecordsOutput, IteratorPosition, KinesisPollingApi, PollingApi};
use kcl_core::types::SequenceNumber;
use kcl_core::{KinesisRecord, Shard};

use crate::error::AdminError;

/// How often a throttled or failed (5xx) call is retried, with 200 ms doubling between attempts.
const RETRIES: u32 = 5;
/// How many empty pages a probe follows before it gives up: Kinesis may answer an empty page although records
/// follow (a gap in a shard), which `MillisBehindLatest > 0` reveals.
pub const MAX_EMPTY_PAGES: usize = 20;

/// A Kinesis reader for one stream.
pub struct StreamReader<'a> {
    api: KinesisPollingApi,
    stream: &'a str,
    endpoint: &'a str,
}

/// What follows a position in a shard, from one `GetRecords` with `Limit` 1.
#[derive(Debug, Default)]
pub struct Probe {
    /// The first record after the position: its sequence number and approximate arrival time.
    pub next: Option<(SequenceNumber, Option<SystemTime>)>,
    /// `MillisBehindLatest` of the response that returned it (or of the last empty response).
    pub millis_behind_latest: Option<u64>,
    /// The shard is closed and nothing follows the position (`SHARD_END`).
    pub shard_end: bool,
}

impl<'a> StreamReader<'a> {
    /// A reader of `stream` through `api`; `endpoint` names the endpoint in error messages.
    pub fn new(api: KinesisPollingApi, stream: &'a str, endpoint: &'a str) -> Self {
        Self { api, stream, endpoint }
    }

    fn spec(&self, shard_id: &str) -> ShardSpec {
        ShardSpec::new(self.stream, shard_id)
    }

    /// Calls until success, retrying throttled and failed (5xx) calls; the last error otherwise.
    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            match call().await {
                Err(error)
                    if attempt < RETRIES
                        && matches!(error.kind, ApiErrorKind::Throttled | ApiErrorKind::ServerError) =>
                {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                result => return result,
            }
        }
    }

    /// Whether `sequence` is a record of `shard_id` (GetShardIterator `AT_SEQUENCE_NUMBER` accepts it).
    pub async fn check_sequence(&self, shard_id: &str, sequence: &SequenceNumber) -> Result<(), AdminError> {
        let spec = self.spec(shard_id);
        let position = IteratorPosition::AtSequence(sequence.clone());
        match self.retry(|| self.api.get_shard_iterator(&spec, &position)).await {
            Ok(_) => Ok(()),
            Err(error) if matches!(error.kind, ApiErrorKind::NotFound | ApiErrorKind::InvalidArgument) => {
                Err(AdminError::Usage(format!(
                    "sequence number {sequence} is not a record of shard {shard_id} in stream `{}` (Kinesis: {})",
                    self.stream, error.message
                )))
            }
            Err(error) => Err(AdminError::kinesis("GetShardIterator", self.endpoint, error)),
        }
    }

    /// Every shard the stream still retains, open or closed (`ListShards`, all pages).
    pub async fn shards(&self) -> Result<Vec<Shard>, AdminError> {
        KinesisShardLister::new(self.api.client().clone(), self.stream)
            .list_shards(ShardListFilter::All)
            .await
            .map_err(|e| AdminError::Service { service: "Kinesis", operation: "ListShards", message: e.to_string() })
    }

    /// An iterator at `position` in `shard_id`; `None` when the shard is closed and nothing follows.
    pub async fn iterator(
        &self,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<Option<std::sync::Arc<str>>, AdminError> {
        let spec = self.spec(shard_id);
        self.retry(|| self.api.get_shard_iterator(&spec, position))
            .await
            .map_err(|e| AdminError::kinesis("GetShardIterator", self.endpoint, e))
    }

    /// One page of records.
    pub async fn page(
        &self,
        iterator: &std::sync::Arc<str>,
        limit: usize,
    ) -> Result<GetRecordsOutput<std::sync::Arc<str>>, AdminError> {
        self.retry(|| self.api.get_records(iterator, limit))
            .await
            .map_err(|e| AdminError::kinesis("GetRecords", self.endpoint, e))
    }

    /// The first record at `position`, with `MillisBehindLatest`; follows empty pages while Kinesis says records
    /// follow.
    pub async fn probe(&self, shard_id: &str, position: &IteratorPosition) -> Result<Probe, AdminError> {
        let Some(mut iterator) = self.iterator(shard_id, position).await? else {
            return Ok(Probe { shard_end: true, ..Probe::default() });
        };
        let mut probe = Probe::default();
        for _ in 0..MAX_EMPTY_PAGES {
            let page = self.page(&iterator, 1).await?;
            probe.millis_behind_latest = page.millis_behind_latest;
            if let Some(record) = page.records.into_iter().next() {
                probe.next = Some(record_position(&record));
                return Ok(probe);
            }
            match page.next_iterator {
                None => {
                    probe.shard_end = true;
                    return Ok(probe);
                }
                Some(_) if page.millis_behind_latest.unwrap_or(0) == 0 => return Ok(probe),
                Some(next) => iterator = next,
            }
        }
        Ok(probe)
    }
}

/// A record's sequence number and arrival time.
pub fn record_position(record: &KinesisRecord) -> (SequenceNumber, Option<SystemTime>) {
    (record.sequence_number.clone(), record.approximate_arrival_timestamp)
}

/// The stream name inside a multi-stream identifier `account:stream:creationEpoch`.
pub fn stream_name_of(stream_identifier: &str) -> Option<&str> {
    let mut parts = stream_identifier.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(name), Some(_), None) if !name.is_empty() => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::stream_name_of;

    #[test]
    fn finds_the_stream_name_in_a_multi_stream_identifier() {
        assert_eq!(stream_name_of("123456789012:orders:1700000000"), Some("orders"));
        assert_eq!(stream_name_of("orders"), None);
        assert_eq!(stream_name_of("1:orders:2:shardId-0"), None);
        assert_eq!(stream_name_of("1::2"), None);
    }
}
