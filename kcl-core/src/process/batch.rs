//! The batch handed to [`RecordProcessor::process_records`](super::RecordProcessor::process_records).

use std::sync::Arc;

use crate::types::{ExtendedSequenceNumber, Record};

/// Records of one shard, in order, with context.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Batch {
    /// The user records (KPL aggregates already taken apart), in shard order.
    pub records: Vec<Record>,
    /// How far the shard's newest record is ahead of this batch, as Kinesis reported it.
    pub millis_behind_latest: Option<u64>,
    /// The shard the records came from.
    pub shard_id: Arc<str>,
}

impl Batch {
    /// The records of shard `shard_id`, in shard order, with the lag Kinesis reported (for tests of processors; the
    /// framework makes the batches it delivers).
    pub fn new(shard_id: impl Into<Arc<str>>, records: Vec<Record>, millis_behind_latest: Option<u64>) -> Self {
        Self { records, millis_behind_latest, shard_id: shard_id.into() }
    }

    /// The position of the last record, if the batch is not empty.
    pub fn last_position(&self) -> Option<ExtendedSequenceNumber> {
        self.records.last().map(Record::extended_sequence_number)
    }

    /// Number of user records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records (only delivered when the consumer asks for empty batches).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
