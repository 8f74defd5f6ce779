//! The aggregator: packs user records into one KPL aggregated record, as the KPL does.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use md5::{Digest, Md5};
use prost::Message;

use super::proto::{AggregatedRecord, ProtoRecord};
use crate::types::{KPL_MAGIC, Record};

/// Size of the MD5 trailer of an aggregated record.
pub(super) const DIGEST_LEN: usize = 16;

/// One user record to put into an aggregate (see [`aggregate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRecordInput<'a> {
    /// The user record's partition key.
    pub partition_key: &'a str,
    /// Its explicit hash key (decimal text), if it has one. Written as given, not validated.
    pub explicit_hash_key: Option<&'a str>,
    /// Its payload.
    pub data: &'a [u8],
}

impl<'a> UserRecordInput<'a> {
    /// A user record without an explicit hash key.
    pub fn new(partition_key: &'a str, data: &'a [u8]) -> Self {
        Self { partition_key, explicit_hash_key: None, data }
    }

    /// The same record with an explicit hash key.
    pub fn with_explicit_hash_key(self, explicit_hash_key: &'a str) -> Self {
        Self { explicit_hash_key: Some(explicit_hash_key), ..self }
    }
}

impl<'a> From<&'a Record> for UserRecordInput<'a> {
    fn from(record: &'a Record) -> Self {
        Self {
            partition_key: &record.partition_key,
            explicit_hash_key: record.explicit_hash_key.as_deref(),
            data: &record.data,
        }
    }
}

/// Packs user records into one KPL aggregated record: `F3 89 9A C2` ‖ protobuf `AggregatedRecord` ‖ MD5 of the
/// protobuf bytes.
///
/// As the KPL does, each distinct partition key and explicit hash key is stored once in its table (in order of
/// first use), and a record has the explicit-hash-key index field only if it has an explicit hash key. User record
/// `i` gets sub-sequence number `i` when de-aggregated.
///
/// The size is not limited here: Kinesis accepts records up to 1 MiB (data plus the outer partition key). An empty
/// `records` gives an aggregate without user records, which [`deaggregate_into`](super::deaggregate_into) reports
/// as corrupt ([`CorruptReason::NoRecords`](super::CorruptReason::NoRecords)).
pub fn aggregate(records: &[UserRecordInput<'_>]) -> Bytes {
    let mut message = AggregatedRecord::default();
    let mut partition_keys: HashMap<&str, u64> = HashMap::new();
    let mut explicit_hash_keys: HashMap<&str, u64> = HashMap::new();
    message.records.reserve(records.len());
    for record in records {
        let partition_key_index =
            table_index(&mut partition_keys, &mut message.partition_key_table, record.partition_key);
        let explicit_hash_key_index = record
            .explicit_hash_key
            .map(|key| table_index(&mut explicit_hash_keys, &mut message.explicit_hash_key_table, key));
        message.records.push(ProtoRecord {
            partition_key_index,
            explicit_hash_key_index,
            data: record.data.to_vec(),
            tags: Vec::new(),
        });
    }
    frame(&message)
}

/// Frames an encoded `AggregatedRecord`: magic, protobuf bytes, MD5 trailer.
pub(crate) fn frame(message: &AggregatedRecord) -> Bytes {
    let body_len = message.encoded_len();
    let mut out = BytesMut::with_capacity(KPL_MAGIC.len() + body_len + DIGEST_LEN);
    out.put_slice(&KPL_MAGIC);
    message.encode_raw(&mut out);
    let digest = Md5::digest(&out[KPL_MAGIC.len()..]);
    out.put_slice(&digest);
    out.freeze()
}

fn table_index<'a>(indices: &mut HashMap<&'a str, u64>, table: &mut Vec<String>, key: &'a str) -> u64 {
    *indices.entry(key).or_insert_with(|| {
        table.push(key.to_owned());
        table.len() as u64 - 1
    })
}
