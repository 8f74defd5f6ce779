//! Decoding the protobuf part of an aggregate into user records, without copying payloads.
//!
//! Two passes over the bytes, no intermediate collections besides the key tables:
//! 1. the top level: build the key tables (one `Arc<str>` per entry), count the records and validate the
//!    structure (fields may come in any order, so a record's indices can only be resolved once the tables are
//!    complete);
//! 2. from the first record on: decode each record and append it to the output.
//!
//! Measured against prost decoding from `Bytes` (zero-copy `data`, then `String` → `Arc<str>` for the keys) on
//! aggregates of 100 × 100 B with distinct keys: about 7.1 M vs 5.8 M user records per CPU-second without the MD5
//! check; with it (which dominates) about 2.3 M vs 2.2 M. Beyond speed, a hand decoder sees field presence, so
//! required fields are checked and an explicit hash key is attached only when its field is there.

use std::ops::Range;
use std::sync::Arc;

use super::hash::{parse_explicit_hash_key, partition_key_hash_key};
use super::wire::{Key, LEN, Reader, VARINT};
use super::{CorruptReason, KeyTable, KinesisRecord, MalformedKind};
use crate::types::{HashKeyRange, Record};

/// Field numbers of `AggregatedRecord`.
const PARTITION_KEY_TABLE: u32 = 1;
const EXPLICIT_HASH_KEY_TABLE: u32 = 2;
const RECORDS: u32 = 3;
/// Field numbers of `Record`.
const PARTITION_KEY_INDEX: u32 = 1;
const EXPLICIT_HASH_KEY_INDEX: u32 = 2;
const DATA: u32 = 3;
const TAGS: u32 = 4;
/// Field number of `Tag.key`.
const TAG_KEY: u32 = 1;

/// A successfully decoded aggregate.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decoded {
    /// All user records were appended.
    Kept(usize),
    /// User records were appended, but `outside` of them are outside the shard's range: the caller drops them all.
    Outside { user_records: usize, outside: usize },
}

/// An entry of the explicit hash key table.
struct ExplicitHashKey {
    text: Arc<str>,
    /// `None` when the text is not a valid hash key; an error only if a record refers to it.
    value: Option<u128>,
}

/// The key tables and hash cache of one decode, kept from one aggregate to the next so a batch of aggregates does
/// not grow them from empty each time (profiled: a few allocations per aggregate). Empty between decodes: nothing
/// of an aggregate outlives its decode here.
#[derive(Default)]
pub(super) struct Scratch {
    partition_keys: Vec<Arc<str>>,
    explicit_hash_keys: Vec<ExplicitHashKey>,
    /// Hashes of partition keys, computed on first use, only when filtering by shard.
    partition_key_hashes: Vec<Option<u128>>,
}

/// Decodes `raw.data[body]` (the protobuf bytes, MD5 already checked) and appends its user records to `out`.
///
/// On error, `out` may hold some of the aggregate's records: the caller truncates it.
pub(super) fn decode(
    raw: &KinesisRecord,
    body: Range<usize>,
    range: Option<HashKeyRange>,
    out: &mut Vec<Record>,
    scratch: &mut Scratch,
) -> Result<Decoded, CorruptReason> {
    let decoded = decode_with(raw, body, range, out, scratch);
    scratch.partition_keys.clear();
    scratch.explicit_hash_keys.clear();
    scratch.partition_key_hashes.clear();
    decoded
}

fn decode_with(
    raw: &KinesisRecord,
    body: Range<usize>,
    range: Option<HashKeyRange>,
    out: &mut Vec<Record>,
    scratch: &mut Scratch,
) -> Result<Decoded, CorruptReason> {
    let blob: &[u8] = &raw.data;
    let Scratch { partition_keys, explicit_hash_keys, partition_key_hashes } = scratch;

    // Pass 1: key tables, record count, structure.
    let mut first_record = None;
    let mut record_count = 0usize;
    let mut reader = Reader::new(blob, body.clone());
    while !reader.is_done() {
        let at = reader.pos();
        let key = reader.key()?;
        match (key.field, key.wire_type) {
            (PARTITION_KEY_TABLE, LEN) => partition_keys.push(utf8(blob, reader.len_delimited()?)?),
            (EXPLICIT_HASH_KEY_TABLE, LEN) => {
                let text = utf8(blob, reader.len_delimited()?)?;
                let value = parse_explicit_hash_key(&text);
                explicit_hash_keys.push(ExplicitHashKey { text, value });
            }
            (RECORDS, LEN) => {
                reader.len_delimited()?;
                first_record.get_or_insert(at);
                record_count += 1;
            }
            _ => reader.skip(key)?,
        }
    }
    let Some(first_record) = first_record else {
        return Err(CorruptReason::NoRecords);
    };

    if range.is_some() {
        partition_key_hashes.resize(partition_keys.len(), None);
    }

    // Pass 2: the records.
    out.reserve(record_count);
    let mut outside = 0usize;
    let mut sub_sequence_number = 0u64;
    let mut reader = Reader::new(blob, first_record..body.end);
    while !reader.is_done() {
        let key = reader.key()?;
        if (key.field, key.wire_type) != (RECORDS, LEN) {
            reader.skip(key)?;
            continue;
        }
        let fields = record_fields(blob, reader.len_delimited()?)?;
        let pk_index = table_index(fields.partition_key_index, partition_keys.len(), KeyTable::PartitionKey)?;
        let (explicit_hash_key, explicit_value) = match fields.explicit_hash_key_index {
            None => (None, None),
            Some(index) => {
                let entry =
                    &explicit_hash_keys[table_index(index, explicit_hash_keys.len(), KeyTable::ExplicitHashKey)?];
                let value = entry.value.ok_or(CorruptReason::BadExplicitHashKey)?;
                (Some(Arc::clone(&entry.text)), Some(value))
            }
        };
        let partition_key = &partition_keys[pk_index];
        if let Some(range) = range {
            let hash_key = match explicit_value {
                Some(value) => value,
                None => *partition_key_hashes[pk_index].get_or_insert_with(|| partition_key_hash_key(partition_key)),
            };
            if !range.contains(hash_key) {
                outside += 1;
            }
        }
        out.push(Record {
            data: raw.data.slice(fields.data),
            partition_key: Arc::clone(partition_key),
            sequence_number: raw.sequence_number.clone(),
            sub_sequence_number,
            approximate_arrival_timestamp: raw.approximate_arrival_timestamp,
            explicit_hash_key,
            aggregated: true,
        });
        sub_sequence_number += 1;
    }
    let user_records = record_count;
    Ok(if outside > 0 { Decoded::Outside { user_records, outside } } else { Decoded::Kept(user_records) })
}

/// The fields of one `Record` message.
struct RecordFields {
    partition_key_index: u64,
    explicit_hash_key_index: Option<u64>,
    data: Range<usize>,
}

/// Decodes one `Record` message, `blob[message]`. As in protobuf, the last occurrence of a field wins.
fn record_fields(blob: &[u8], message: Range<usize>) -> Result<RecordFields, MalformedKind> {
    let mut partition_key_index = None;
    let mut explicit_hash_key_index = None;
    let mut data = None;
    let mut reader = Reader::new(blob, message);
    while !reader.is_done() {
        let key = reader.key()?;
        match (key.field, key.wire_type) {
            (PARTITION_KEY_INDEX, VARINT) => partition_key_index = Some(reader.varint()?),
            (EXPLICIT_HASH_KEY_INDEX, VARINT) => explicit_hash_key_index = Some(reader.varint()?),
            (DATA, LEN) => data = Some(reader.len_delimited()?),
            (TAGS, LEN) => check_tag(blob, reader.len_delimited()?)?,
            _ => reader.skip(key)?,
        }
    }
    match (partition_key_index, data) {
        (Some(partition_key_index), Some(data)) => {
            Ok(RecordFields { partition_key_index, explicit_hash_key_index, data })
        }
        _ => Err(MalformedKind::MissingRequiredField),
    }
}

/// Checks that a `Tag` message is well formed and has its required key. Tags are otherwise ignored (as by KCL).
fn check_tag(blob: &[u8], message: Range<usize>) -> Result<(), MalformedKind> {
    let mut has_key = false;
    let mut reader = Reader::new(blob, message);
    while !reader.is_done() {
        let key: Key = reader.key()?;
        has_key |= (key.field, key.wire_type) == (TAG_KEY, LEN);
        reader.skip(key)?;
    }
    if has_key { Ok(()) } else { Err(MalformedKind::MissingRequiredField) }
}

/// A key-table index as a `usize`, if it is within the table.
fn table_index(index: u64, len: usize, table: KeyTable) -> Result<usize, CorruptReason> {
    usize::try_from(index).ok().filter(|&index| index < len).ok_or(CorruptReason::BadIndex(table))
}

/// A key-table entry as a shared string.
fn utf8(blob: &[u8], range: Range<usize>) -> Result<Arc<str>, MalformedKind> {
    let bytes = blob.get(range).ok_or(MalformedKind::Truncated)?;
    std::str::from_utf8(bytes).map(Arc::from).map_err(|_| MalformedKind::InvalidUtf8)
}
