//! The raw record a Kinesis read returns, before KPL de-aggregation.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::Record;
use super::sequence::SequenceNumber;

/// The four bytes every KPL aggregated record starts with (also `kcl_core::deaggregate::KPL_MAGIC`). It lives
/// here, with the raw record, so that [`KinesisRecord::has_kpl_magic`] needs nothing from the stage above.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// One record exactly as `GetRecords` (or `SubscribeToShard`) returned it: possibly a KPL aggregate, which the
/// pipeline takes apart into user [`Record`] values.
///
/// Cloning is cheap: the payload is a reference-counted [`Bytes`] and both strings are shared `Arc<str>`s, so an
/// in-memory stream can hand out batches without copying payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KinesisRecord {
    /// The payload (for a KPL aggregate: the whole aggregate, magic bytes included).
    pub data: Bytes,
    /// The partition key the producer sent.
    pub partition_key: Arc<str>,
    /// The Kinesis sequence number.
    pub sequence_number: SequenceNumber,
    /// When Kinesis accepted the record, if the service said.
    pub approximate_arrival_timestamp: Option<SystemTime>,
}

impl KinesisRecord {
    /// A record with no arrival timestamp.
    pub fn new(data: impl Into<Bytes>, partition_key: impl Into<Arc<str>>, sequence_number: SequenceNumber) -> Self {
        Self {
            data: data.into(),
            partition_key: partition_key.into(),
            sequence_number,
            approximate_arrival_timestamp: None,
        }
    }

    /// Bytes this record holds in memory, as the prefetch limits count them: payload plus partition key.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    /// Whether the data starts with the KPL magic bytes (it may still turn out to be a corrupt aggregate).
    pub fn has_kpl_magic(&self) -> bool {
        self.data.starts_with(&KPL_MAGIC)
    }

    /// The record delivered as it is: one ordinary (not aggregated) user record.
    pub fn into_record(self) -> Record {
        Record {
            data: self.data,
            partition_key: self.partition_key,
            sequence_number: self.sequence_number,
            sub_sequence_number: 0,
            approximate_arrival_timestamp: self.approximate_arrival_timestamp,
            explicit_hash_key: None,
            aggregated: false,
        }
    }
}
