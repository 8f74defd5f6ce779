//! KPL de-aggregation: taking the user records out of Kinesis Producer Library aggregated records.
//!
//! An aggregated record is `F3 89 9A C2` ‖ protobuf `AggregatedRecord` ‖ MD5 of the protobuf bytes (16 bytes):
//!
//! ```text
//! AggregatedRecord { repeated string partition_key_table = 1; repeated string explicit_hash_key_table = 2;
//!                    repeated Record records = 3; }
//! Record { required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2;
//!          required bytes data = 3; repeated Tag tags = 4; }
//! Tag    { required string key = 1; optional string value = 2; }
//! ```
//!
//! [`deaggregate_into`] turns one raw [`KinesisRecord`] into [`Record`]s and says what it found
//! ([`Deaggregated`]):
//!
//! * **Plain** — the data does not start with the magic: one ordinary record, as read.
//! * **Aggregate** — every user record, in order. User record `i` has sub-sequence number `i`, the outer record's
//!   sequence number and arrival time, its own partition key (a shared `Arc<str>` per key-table entry) and, only if
//!   its explicit-hash-key field is present, its explicit hash key. Payloads are zero-copy slices of the blob.
//! * **Corrupt** — the magic is there but the rest is not a valid aggregate (too short, MD5 mismatch, malformed
//!   protobuf, a key index out of range, an explicit hash key that is not a 128-bit decimal number, no user
//!   records). The *whole blob* is delivered as one ordinary record (`aggregated == false`, sub-sequence 0), the
//!   counter [`FAILURES_METRIC`] is incremented with label `reason` ([`CorruptReason::label`]) and a warning is
//!   logged. Never a panic, never a silent drop, never part of an aggregate.
//!
//! [`deaggregate_into_for_shard`] also applies KCL's shard-boundary rule after resharding (see there).
//!
//! ## Differences from Java KCL (`AggregatorUtil`), on purpose
//!
//! * A key index out of range, or an explicit hash key that is not a number: KCL logs an error and keeps the user
//!   records decoded before the bad one, silently dropping the rest; an explicit hash key above 2^128 − 1 makes
//!   it drop the whole aggregate. Here each is a corrupt aggregate, delivered whole.
//! * A partition key that is not UTF-8: KCL (proto2 strings are not checked) replaces the bad bytes with U+FFFD,
//!   changing the key and its hash. Here it is a malformed aggregate, delivered whole.
//! * Magic followed by no more than 16 bytes, or an aggregate without user records: KCL delivers the blob as a plain
//!   record (or, for zero user records, nothing). Here both count as corrupt, so the blob is always delivered.
//!
//! [`aggregate()`] is the inverse (an encoder, for tests, in-memory streams and benchmarks), and
//! [`effective_hash_key`] says which shard a record belongs to.

mod aggregate;
mod decode;
mod hash;
#[cfg(test)]
mod proptests;
mod proto;
#[cfg(test)]
mod tests;
mod wire;

use md5::{Digest, Md5};

pub use crate::types::{KPL_MAGIC, KinesisRecord};
pub use aggregate::{UserRecordInput, aggregate};
pub use hash::{effective_hash_key, parse_explicit_hash_key, partition_key_hash_key};

use crate::types::{HashKeyRange, Record};
use aggregate::DIGEST_LEN;

/// Counter of aggregates that carried the KPL magic but could not be de-aggregated (delivered whole instead);
/// label `reason` is [`CorruptReason::label`].
pub const FAILURES_METRIC: &str = crate::telemetry::DEAGGREGATION_FAILURES;

/// Counter of user records dropped because their aggregate had a user record outside the shard's hash key range
/// (see [`deaggregate_into_for_shard`]).
pub const FILTERED_METRIC: &str = crate::telemetry::DEAGGREGATION_FILTERED;

/// What [`deaggregate_into`] or [`deaggregate_into_for_shard`] found and appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deaggregated {
    /// Not an aggregate (no KPL magic): one ordinary record was appended.
    Plain,
    /// A valid aggregate: `user_records` records were appended (at least one).
    Aggregate {
        /// How many user records were appended.
        user_records: usize,
    },
    /// A valid aggregate with at least one user record outside the shard's hash key range: as Java KCL does,
    /// the whole aggregate was dropped and nothing was appended (counted in [`FILTERED_METRIC`]).
    OutsideShard {
        /// How many user records the aggregate held (all were dropped).
        user_records: usize,
        /// How many of them were outside the range.
        outside: usize,
    },
    /// The KPL magic was there but the rest was not a valid aggregate: the whole blob was appended as one
    /// ordinary record (counted in [`FAILURES_METRIC`]).
    Corrupt {
        /// What was wrong.
        reason: CorruptReason,
    },
}

impl Deaggregated {
    /// How many records were appended to the output.
    pub fn records_appended(&self) -> usize {
        match self {
            Self::Plain | Self::Corrupt { .. } => 1,
            Self::Aggregate { user_records } => *user_records,
            Self::OutsideShard { .. } => 0,
        }
    }

    /// Whether the input was a corrupt aggregate.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }
}

/// Why a record with the KPL magic could not be de-aggregated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum CorruptReason {
    /// No more than the 16-byte MD5 trailer follows the magic.
    #[error("too short for a KPL aggregate")]
    TooShort,
    /// The MD5 trailer does not match the protobuf bytes.
    #[error("MD5 checksum mismatch")]
    BadMd5,
    /// The protobuf bytes are not a valid `AggregatedRecord`.
    #[error("malformed protobuf: {0}")]
    Malformed(MalformedKind),
    /// A user record refers to a key-table entry that does not exist.
    #[error("{0} index out of range")]
    BadIndex(KeyTable),
    /// A user record's explicit hash key is not a decimal number in 0..=2^128 − 1.
    #[error("explicit hash key is not a 128-bit decimal number")]
    BadExplicitHashKey,
    /// The aggregate holds no user records.
    #[error("aggregate holds no user records")]
    NoRecords,
}

impl CorruptReason {
    /// The `reason` label of [`FAILURES_METRIC`]: `too_short`, `bad_md5`, `malformed`, `bad_index`,
    /// `bad_explicit_hash_key` or `no_records`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::BadMd5 => "bad_md5",
            Self::Malformed(_) => "malformed",
            Self::BadIndex(_) => "bad_index",
            Self::BadExplicitHashKey => "bad_explicit_hash_key",
            Self::NoRecords => "no_records",
        }
    }
}

/// How the protobuf bytes of an aggregate are malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MalformedKind {
    /// A field runs past the end of its message.
    #[error("truncated field")]
    Truncated,
    /// A varint is longer than 10 bytes or does not fit in 64 bits.
    #[error("varint overflow")]
    VarintOverflow,
    /// A field key is invalid (field number 0, wire type 6 or 7, unmatched group end).
    #[error("invalid field key")]
    InvalidKey,
    /// Groups (a deprecated encoding) are nested too deeply.
    #[error("groups nested too deeply")]
    NestingTooDeep,
    /// A partition key or explicit hash key is not valid UTF-8.
    #[error("key is not valid UTF-8")]
    InvalidUtf8,
    /// A required field is missing: a user record's partition key index or data, or a tag's key.
    #[error("required field missing")]
    MissingRequiredField,
}

impl From<MalformedKind> for CorruptReason {
    fn from(kind: MalformedKind) -> Self {
        Self::Malformed(kind)
    }
}

/// Which key table of an aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum KeyTable {
    /// `partition_key_table`.
    #[error("partition key")]
    PartitionKey,
    /// `explicit_hash_key_table`.
    #[error("explicit hash key")]
    ExplicitHashKey,
}

/// De-aggregates one record read from Kinesis, appending the result to `out` (see the [module docs](self)).
///
/// Appends one ordinary record for a plain or corrupt record and the user records for an aggregate; `out` is
/// never left with part of an aggregate. Never panics, whatever the data.
pub fn deaggregate_into(raw: KinesisRecord, out: &mut Vec<Record>) -> Deaggregated {
    deaggregate_into_for_shard(raw, None, out)
}

/// [`deaggregate_into`], plus Java KCL's shard-boundary rule for a shard with hash key range `range`.
///
/// After a split or merge, the KPL may still pack user records for the old parent's hash key range into one
/// aggregate, so an aggregate read from a child can contain user records that belong to the other child. Like
/// Java KCL's `AggregatorUtil.deaggregate(records, startingHashKey, endingHashKey)`, if **any** user record's
/// [`effective_hash_key`] is outside `range`, the **whole aggregate** is dropped: nothing is appended, the outcome
/// is [`Deaggregated::OutsideShard`], [`FILTERED_METRIC`] grows by the number of user records dropped and a warning
/// is logged. Plain records are never filtered, and a corrupt aggregate is delivered whole as usual (corruption is
/// checked for across the whole aggregate before filtering applies).
///
/// `range == None` (or the full key space) means no filtering, and no hashing cost.
pub fn deaggregate_into_for_shard(
    raw: KinesisRecord,
    range: Option<HashKeyRange>,
    out: &mut Vec<Record>,
) -> Deaggregated {
    deaggregate_one(raw, range, out, &mut decode::Scratch::default())
}

/// [`deaggregate_into_for_shard`] for every record of one read, in order, appending to `out`: what the shard
/// consumer does with each batch. The plain-record path is inlined into this loop (profiled: the call and the
/// record moved through it cost as much as the work), and the aggregates share one decoding scratch space.
pub(crate) fn deaggregate_batch_into_for_shard(
    raws: Vec<KinesisRecord>,
    range: Option<HashKeyRange>,
    out: &mut Vec<Record>,
) {
    out.reserve(raws.len());
    let mut scratch = decode::Scratch::default();
    for raw in raws {
        deaggregate_one(raw, range, out, &mut scratch);
    }
}

#[inline]
fn deaggregate_one(
    raw: KinesisRecord,
    range: Option<HashKeyRange>,
    out: &mut Vec<Record>,
    scratch: &mut decode::Scratch,
) -> Deaggregated {
    // The same test as `KinesisRecord::has_kpl_magic`, written here so it is inlined.
    if !raw.data.starts_with(&KPL_MAGIC) {
        out.push(raw.into_record());
        return Deaggregated::Plain;
    }
    deaggregate_aggregate(raw, range, out, scratch)
}

/// The aggregate path of [`deaggregate_into_for_shard`] (the data starts with the KPL magic).
fn deaggregate_aggregate(
    raw: KinesisRecord,
    range: Option<HashKeyRange>,
    out: &mut Vec<Record>,
    scratch: &mut decode::Scratch,
) -> Deaggregated {
    let range = range.filter(|range| *range != HashKeyRange::FULL);
    let start = out.len();
    match decode_checked(&raw, range, out, scratch) {
        Ok(decode::Decoded::Kept(user_records)) => Deaggregated::Aggregate { user_records },
        Ok(decode::Decoded::Outside { user_records, outside }) => {
            out.truncate(start);
            metrics::counter!(FILTERED_METRIC).increment(user_records as u64);
            tracing::warn!(
                sequence_number = %raw.sequence_number,
                user_records,
                outside,
                "dropping a KPL aggregate with user records outside the shard's hash key range (as Java KCL does)"
            );
            Deaggregated::OutsideShard { user_records, outside }
        }
        Err(reason) => {
            out.truncate(start);
            metrics::counter!(FAILURES_METRIC, "reason" => reason.label()).increment(1);
            tracing::warn!(
                sequence_number = %raw.sequence_number,
                %reason,
                len = raw.data.len(),
                "corrupt KPL aggregate; delivering it as one ordinary record"
            );
            out.push(raw.into_record());
            Deaggregated::Corrupt { reason }
        }
    }
}

/// Checks the length and the MD5 trailer, then decodes the protobuf part.
fn decode_checked(
    raw: &KinesisRecord,
    range: Option<HashKeyRange>,
    out: &mut Vec<Record>,
    scratch: &mut decode::Scratch,
) -> Result<decode::Decoded, CorruptReason> {
    let blob: &[u8] = &raw.data;
    let body_start = KPL_MAGIC.len();
    if blob.len() <= body_start + DIGEST_LEN {
        return Err(CorruptReason::TooShort);
    }
    let body_end = blob.len() - DIGEST_LEN;
    let (body, digest) = blob[body_start..].split_at(body_end - body_start);
    if Md5::digest(body).as_slice() != digest {
        return Err(CorruptReason::BadMd5);
    }
    decode::decode(raw, body_start..body_end, range, out, scratch)
}
