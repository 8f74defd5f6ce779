//! The shared vocabulary: sequence numbers, checkpoint values, records and shards.

mod record;
mod sequence;
mod shard;

pub use record::Record;
pub use sequence::{ExtendedSequenceNumber, MAX_SEQUENCE_DIGITS, ParseSequenceNumberError, SequenceNumber, sentinel};
pub use shard::{HashKeyRange, SequenceNumberRange, Shard};
