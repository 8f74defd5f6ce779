//! Where a consumer starts reading a shard that has no checkpoint yet.

use std::time::SystemTime;

use super::sequence::ExtendedSequenceNumber;

/// The application's initial position in the stream (Java KCL `InitialPositionInStreamExtended`): used for shards
/// that have no checkpoint, and to supply the timestamp of an `AT_TIMESTAMP` lease (the lease table stores only the
/// sentinel).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InitialPosition {
    /// Start at the oldest record still retained (`TRIM_HORIZON`).
    TrimHorizon,
    /// Start with records written after the first read (`LATEST`; Java KCL's default).
    #[default]
    Latest,
    /// Start with the first record that arrived at or after this time (`AT_TIMESTAMP`).
    AtTimestamp(SystemTime),
}

impl InitialPosition {
    /// The checkpoint value a new lease starts with (KCL stores only the sentinel for `AT_TIMESTAMP`).
    pub fn to_checkpoint(&self) -> ExtendedSequenceNumber {
        match self {
            Self::TrimHorizon => ExtendedSequenceNumber::TrimHorizon,
            Self::Latest => ExtendedSequenceNumber::Latest,
            Self::AtTimestamp(_) => ExtendedSequenceNumber::AtTimestamp(None),
        }
    }
}
