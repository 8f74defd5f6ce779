//! The shared vocabulary: sequence numbers, checkpoint values, records (raw and user), shards and initial positions.

mod kinesis_record;
mod position;
mod record;
mod sequence;
mod shard;

pub use kinesis_record::{KPL_MAGIC, KinesisRecord};
pub use position::InitialPosition;
pub use record::Record;
pub use sequence::{ExtendedSequenceNumber, MAX_SEQUENCE_DIGITS, ParseSequenceNumberError, SequenceNumber, sentinel};
pub use shard::{HashKeyRange, SequenceNumberRange, Shard};
