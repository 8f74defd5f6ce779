//! The in-memory stream as a [`SubscribeApi`]: enhanced fan-out without a network, so the whole fan-out pipeline —
//! resubscribes, injected faults, and the final event of a closed shard with its `ChildShards` — runs in
//! deterministic tests. (kinesis-mock, the emulator, never ends a closed shard's subscription; see
//! `tests/tests/pipeline.rs`.)
//!
//! A subscription is a shard iterator read in a loop on the stream's own [`PollingApi`] implementation, so the
//! same injected faults apply: `subscribe` draws a `GetShardIterator` fault, each read a `GetRecords` fault (an
//! error ends the subscription with that error, as a broken event stream does). Events are what Kinesis sends:
//! the records (at most 1,000), a continuation sequence number, the lag, and on a closed shard's final event no
//! continuation but the children; an idle subscription sends an empty event every 100 ms (Kinesis: every few
//! seconds). A subscription ends by itself after 25 events (Kinesis ends one every 5 minutes), so every test
//! exercises renewals; it also ends when it has waited 1 s with nothing to report and no continuation to give (an
//! empty shard read from `TRIM_HORIZON`).

use std::time::Duration;

use async_trait::async_trait;

use super::{MemoryIterator, MemoryStream, lock};
use crate::retrieve::api::{ApiError, IteratorPosition, PollingApi};
use crate::retrieve::fanout::{EventSubscription, FanOutEvent, SubscribeApi};
use crate::retrieve::{ChildShard, ShardSpec};
use crate::types::SequenceNumber;

/// Records in one event at most.
const RECORDS_PER_EVENT: usize = 1_000;
/// Events one subscription delivers before it ends by itself.
const EVENTS_PER_SUBSCRIPTION: usize = 25;
/// How often an idle subscription looks for new records (Tokio time).
const IDLE_POLL: Duration = Duration::from_millis(5);
/// How long an idle subscription waits before it sends an empty event (when it has a continuation to report).
const EMPTY_EVENT_AFTER: Duration = Duration::from_millis(100);
/// How long a subscription with nothing to send and no continuation to report waits before it ends.
const IDLE_END: Duration = Duration::from_secs(1);

/// One subscription to a shard of a [`MemoryStream`] (see [`SubscribeApi`] for `MemoryStream`).
#[derive(Debug)]
pub struct MemorySubscription {
    stream: MemoryStream,
    /// `None` once the final event of a closed shard was sent.
    iterator: Option<MemoryIterator>,
    /// The sequence number just before the iterator (what an empty event reports as its continuation).
    before: Option<SequenceNumber>,
    sent: usize,
}

#[async_trait]
impl SubscribeApi for MemoryStream {
    type Subscription = MemorySubscription;

    /// Opens a subscription; the consumer ARN is not checked (the stream has no consumers).
    async fn subscribe(
        &self,
        _consumer_arn: &str,
        shard: &ShardSpec,
        position: &IteratorPosition,
    ) -> Result<MemorySubscription, ApiError> {
        let iterator = self.get_shard_iterator(shard, position).await?;
        // Where the subscription starts, as a continuation: the record before the iterator, if any.
        let before = iterator.as_ref().and_then(|it| {
            let topology = self.topology();
            let data = lock(&topology.shard(&it.shard)?.data);
            let index = it.position.checked_sub(1)?;
            data.records.get(index).map(|r| r.sequence_number.clone())
        });
        Ok(MemorySubscription { stream: self.clone(), iterator, before, sent: 0 })
    }
}

#[async_trait]
impl EventSubscription for MemorySubscription {
    async fn next_event(&mut self) -> Result<Option<FanOutEvent>, ApiError> {
        if self.sent == EVENTS_PER_SUBSCRIPTION {
            return Ok(None);
        }
        let Some(iterator) = self.iterator.take() else {
            return Ok(None);
        };
        let mut idle = Duration::ZERO;
        let mut iterator = iterator;
        loop {
            let output = self.stream.get_records(&iterator, RECORDS_PER_EVENT).await?;
            if let Some(last) = output.records.last() {
                self.before = Some(last.sequence_number.clone());
            }
            let Some(next) = output.next_iterator else {
                // The final event of a closed shard: no continuation, the children.
                self.sent += 1;
                return Ok(Some(event(output.records, None, output.millis_behind_latest, output.child_shards)));
            };
            if !output.records.is_empty() || (self.before.is_some() && idle >= EMPTY_EVENT_AFTER) {
                // Records, or (like Kinesis every few seconds) an empty event that says where the reader is.
                self.iterator = Some(next);
                self.sent += 1;
                let continuation = self.before.clone();
                return Ok(Some(event(output.records, continuation, output.millis_behind_latest, Vec::new())));
            }
            if idle >= IDLE_END {
                return Ok(None);
            }
            iterator = next;
            tokio::time::sleep(IDLE_POLL).await;
            idle += IDLE_POLL;
        }
    }
}

fn event(
    records: Vec<crate::types::KinesisRecord>,
    continuation: Option<SequenceNumber>,
    millis_behind_latest: Option<u64>,
    child_shards: Vec<ChildShard>,
) -> FanOutEvent {
    FanOutEvent { records, continuation, millis_behind_latest, child_shards }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::retrieve::RecordSource;
    use crate::retrieve::fanout::{FanOutConfig, FanOutSource};
    use crate::types::{ExtendedSequenceNumber, InitialPosition};

    fn config() -> FanOutConfig {
        FanOutConfig {
            min_time_between_subscribes: Duration::from_millis(10),
            retry_base: Duration::from_millis(10),
            retry_cap: Duration::from_millis(100),
            backoff_seed: Some(7),
            ..FanOutConfig::default()
        }
    }

    /// Across many renewals (a subscription ends every 25 events), every record arrives once and in order, and the
    /// closed parent's reader ends with the children a split created, exactly as polling reports them.
    #[tokio::test(start_paused = true)]
    async fn renewals_lose_nothing_and_a_split_parent_ends_with_its_children() {
        let stream = MemoryStream::new("fanout-memory", 1);
        let shard = stream.open_shard_ids()[0].clone();
        let mut expected = Vec::new();
        let source = FanOutSource::with_api(stream.clone(), Arc::<str>::from("consumer"), config())
            .unwrap_or_else(|e| panic!("{e}"));
        let spec = ShardSpec::new(Arc::clone(stream.name()), shard.as_str());
        let mut reader = source
            .open(&spec, &ExtendedSequenceNumber::TrimHorizon, &InitialPosition::Latest)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut seen = Vec::new();
        // One record per event keeps the renewals coming: 60 records take three subscriptions or more.
        for i in 0..60 {
            expected.push(stream.put(format!("key-{i}"), format!("record-{i}")).unwrap_or_else(|e| panic!("{e}")));
            while seen.len() <= i {
                let batch = reader.next_batch().await.unwrap_or_else(|e| panic!("{e}"));
                seen.extend(batch.records.into_iter().map(|r| r.sequence_number));
            }
        }
        let (_, gets) = stream.call_counts();
        assert!(gets >= 3, "at least three subscriptions: {gets} GetShardIterator calls");
        let children = stream.split(&shard, u128::MAX / 2).unwrap_or_else(|e| panic!("{e}"));
        let end = loop {
            let batch = reader.next_batch().await.unwrap_or_else(|e| panic!("{e}"));
            seen.extend(batch.records.iter().map(|r| r.sequence_number.clone()));
            if batch.shard_end {
                break batch;
            }
        };
        assert_eq!(seen, expected.iter().map(|p| p.sequence_number.clone()).collect::<Vec<_>>());
        let mut reported: Vec<String> = end.child_shards.unwrap_or_default().into_iter().map(|c| c.shard_id).collect();
        reported.sort();
        assert_eq!(reported, children.to_vec());
    }
}
