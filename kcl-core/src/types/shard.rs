//! Shard descriptions: lineage, hash key range and sequence range.

use super::sequence::SequenceNumber;

/// An inclusive range of 128-bit hash keys (Kinesis hash keys run from 0 to 2^128 − 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HashKeyRange {
    /// First hash key in the range.
    pub start: u128,
    /// Last hash key in the range (inclusive).
    pub end: u128,
}

impl HashKeyRange {
    /// The whole key space, as a stream with one shard has.
    pub const FULL: HashKeyRange = HashKeyRange { start: 0, end: u128::MAX };

    /// A range; `None` when `start > end`.
    pub fn new(start: u128, end: u128) -> Option<Self> {
        (start <= end).then_some(Self { start, end })
    }

    /// Parses the decimal text Kinesis and the KCL lease table use.
    pub fn parse(start: &str, end: &str) -> Option<Self> {
        Self::new(start.trim().parse().ok()?, end.trim().parse().ok()?)
    }

    /// Whether `hash_key` lies in the range.
    pub fn contains(&self, hash_key: u128) -> bool {
        self.start <= hash_key && hash_key <= self.end
    }
}

/// The sequence numbers a shard spans; `end` is set once the shard is closed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SequenceNumberRange {
    /// First sequence number of the shard.
    pub start: SequenceNumber,
    /// Last sequence number, present when the shard is closed (split, merged or stream scaled).
    pub end: Option<SequenceNumber>,
}

/// What the framework knows about one shard.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    /// The shard id, e.g. `shardId-000000000001`.
    pub shard_id: String,
    /// Parent shard ids: none for an original shard, one after a split, two after a merge.
    pub parent_shard_ids: Vec<String>,
    /// The hash keys routed to this shard.
    pub hash_key_range: HashKeyRange,
    /// The sequence numbers the shard spans.
    pub sequence_number_range: SequenceNumberRange,
}

impl Shard {
    /// Whether the shard still accepts writes (no ending sequence number).
    pub fn is_open(&self) -> bool {
        self.sequence_number_range.end.is_none()
    }
}
