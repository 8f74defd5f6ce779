//! The in-memory stream as a [`PollingApi`] (iterators, reads, injected faults) and as a [`RecordSource`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::time::Instant;

use super::faults::{CallKind, Fault, fault_error};
use super::{CallRecord, MemoryStream, lock};
use crate::error::KclError;
use crate::retrieve::api::{ApiError, ApiErrorKind, GetRecordsOutput, IteratorPosition, PollingApi};
use crate::retrieve::{PollingFetcher, RecordSource, ShardReader, ShardSpec};
use crate::types::{ExtendedSequenceNumber, InitialPosition};

/// Kinesis caps one `GetRecords` response at 10 MiB.
const MAX_BYTES_PER_CALL: usize = 10 << 20;

/// A shard iterator of the in-memory stream: a shard, an index into its records, and when it was issued.
#[derive(Clone, Debug)]
pub struct MemoryIterator {
    pub(super) shard: Arc<str>,
    pub(super) position: usize,
    issued: Instant,
}

impl MemoryStream {
    /// Logs the call, then applies the fault drawn for it: sleeps for latency, or returns the injected error.
    async fn before_call(&self, shard_id: &Arc<str>, call: CallKind) -> Result<(), ApiError> {
        let counter = match call {
            CallKind::GetRecords => &self.inner.get_records_calls,
            CallKind::GetShardIterator => &self.inner.get_shard_iterator_calls,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(log) = lock(&self.inner.call_log).as_mut() {
            log.push(CallRecord {
                shard_id: Arc::clone(shard_id),
                get_records: call == CallKind::GetRecords,
                at: Instant::now(),
            });
        }
        let fault = lock(&self.inner.faults).draw(shard_id, call, &self.inner.fault_counts);
        match fault {
            None => Ok(()),
            Some(Fault::Latency(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Some(fault) => fault_error(fault).map_or(Ok(()), Err),
        }
    }

    fn not_found(shard_id: &str) -> ApiError {
        ApiError::new(ApiErrorKind::NotFound, format!("ResourceNotFoundException: no shard {shard_id}"))
    }
}

#[async_trait]
impl PollingApi for MemoryStream {
    type Iterator = MemoryIterator;

    fn min_time_between_calls(&self) -> Duration {
        self.inner.config.min_time_between_calls
    }

    async fn get_shard_iterator(
        &self,
        shard: &ShardSpec,
        position: &IteratorPosition,
    ) -> Result<Option<MemoryIterator>, ApiError> {
        if *shard.stream != *self.inner.name {
            return Err(ApiError::new(
                ApiErrorKind::NotFound,
                format!("ResourceNotFoundException: no stream {}", shard.stream),
            ));
        }
        self.before_call(&shard.shard_id, CallKind::GetShardIterator).await?;
        let topology = self.topology();
        let mem_shard = topology.shard(&shard.shard_id).ok_or_else(|| Self::not_found(&shard.shard_id))?;
        let data = lock(&mem_shard.data);
        let sequence_of = |seq: &crate::types::SequenceNumber| -> Result<u64, ApiError> {
            let value = seq.to_u128().and_then(|v| u64::try_from(v).ok());
            let in_range =
                value.is_some_and(|v| v >= mem_shard.start_sequence && data.end_sequence.is_none_or(|end| v <= end));
            match value {
                Some(v) if in_range => Ok(v),
                _ => Err(ApiError::new(
                    ApiErrorKind::InvalidArgument,
                    format!("InvalidArgumentException: sequence number {seq} is not in shard {}", shard.shard_id),
                )),
            }
        };
        let index = match position {
            IteratorPosition::TrimHorizon => 0,
            IteratorPosition::Latest => data.records.len(),
            IteratorPosition::AtTimestamp(at) => {
                data.records.partition_point(|r| r.approximate_arrival_timestamp.is_some_and(|t| t < *at))
            }
            IteratorPosition::AtSequence(seq) => {
                let value = sequence_of(seq)?;
                data.sequences.partition_point(|&s| s < value)
            }
            IteratorPosition::AfterSequence(seq) => {
                let value = sequence_of(seq)?;
                data.sequences.partition_point(|&s| s <= value)
            }
        };
        Ok(Some(MemoryIterator { shard: Arc::clone(&mem_shard.id), position: index, issued: Instant::now() }))
    }

    async fn get_records(
        &self,
        iterator: &MemoryIterator,
        limit: usize,
    ) -> Result<GetRecordsOutput<MemoryIterator>, ApiError> {
        self.before_call(&iterator.shard, CallKind::GetRecords).await?;
        if iterator.issued.elapsed() > self.inner.config.iterator_ttl {
            return Err(ApiError::new(ApiErrorKind::ExpiredIterator, "ExpiredIteratorException: iterator expired"));
        }
        let topology = self.topology();
        let mem_shard = topology.shard(&iterator.shard).ok_or_else(|| Self::not_found(&iterator.shard))?;
        let data = lock(&mem_shard.data);
        let start = iterator.position.min(data.records.len());
        let mut end = start;
        let mut bytes = 0;
        let last = start.saturating_add(limit.max(1)).min(data.records.len());
        // Count bytes only up to the limit; the first record always fits, as in Kinesis.
        while end < last {
            bytes += data.records[end].size_bytes();
            if end > start && bytes > MAX_BYTES_PER_CALL {
                break;
            }
            end += 1;
        }
        let records = data.records[start..end].to_vec();
        let caught_up = end == data.records.len();
        let shard_end = caught_up && data.end_sequence.is_some();
        let millis_behind_latest = if caught_up {
            0
        } else {
            data.records[end]
                .approximate_arrival_timestamp
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map_or(0, |lag| u64::try_from(lag.as_millis()).unwrap_or(u64::MAX))
        };
        Ok(GetRecordsOutput {
            records,
            next_iterator: (!shard_end).then(|| MemoryIterator {
                shard: Arc::clone(&iterator.shard),
                position: end,
                issued: Instant::now(),
            }),
            millis_behind_latest: Some(millis_behind_latest),
            child_shards: if shard_end { data.children.clone() } else { Vec::new() },
        })
    }
}

#[async_trait]
impl RecordSource for MemoryStream {
    /// Opens a reader through a [`PollingFetcher`] with the stream's [`polling`](super::MemoryStreamConfig::polling)
    /// settings and the stream's shared prefetch [`ByteBudget`](crate::retrieve::ByteBudget).
    async fn open(
        &self,
        shard: &ShardSpec,
        start: &ExtendedSequenceNumber,
        initial_position: &InitialPosition,
    ) -> Result<Box<dyn ShardReader>, KclError> {
        PollingFetcher::new(self.clone(), self.inner.config.polling.clone())?
            .with_byte_budget(self.inner.budget.clone())
            .open(shard, start, initial_position)
            .await
    }
}
