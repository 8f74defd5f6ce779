//! The user record handed to processors.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::sequence::{ExtendedSequenceNumber, SequenceNumber};

/// One user record: an ordinary Kinesis record, or one user record taken out of a KPL aggregate.
///
/// Cloning is cheap: the payload is a reference-counted [`Bytes`] slice (for aggregates, a slice of the original blob)
/// and the keys are shared `Arc<str>`s.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The payload.
    pub data: Bytes,
    /// The partition key (for a KPL user record, its own key from the aggregate's key table).
    pub partition_key: Arc<str>,
    /// The Kinesis sequence number (shared by every user record of an aggregate).
    pub sequence_number: SequenceNumber,
    /// Index of the user record inside its aggregate; 0 for an ordinary record.
    pub sub_sequence_number: u64,
    /// When Kinesis accepted the (outer) record, if known.
    pub approximate_arrival_timestamp: Option<SystemTime>,
    /// The explicit hash key (decimal text) of a KPL user record that carried one.
    pub explicit_hash_key: Option<Arc<str>>,
    /// Whether this user record came out of a KPL aggregate.
    pub aggregated: bool,
}

impl Record {
    /// A plain (non-aggregated) record.
    pub fn new(data: impl Into<Bytes>, partition_key: impl Into<Arc<str>>, sequence_number: SequenceNumber) -> Self {
        Self {
            data: data.into(),
            partition_key: partition_key.into(),
            sequence_number,
            sub_sequence_number: 0,
            approximate_arrival_timestamp: None,
            explicit_hash_key: None,
            aggregated: false,
        }
    }

    /// The record's position, as a checkpoint value.
    pub fn extended_sequence_number(&self) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::with_sub(self.sequence_number.clone(), self.sub_sequence_number)
    }

    /// Payload size in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
