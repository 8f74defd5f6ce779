//! The KPL protobuf messages (`messages.proto` of the KPL, proto2), as prost types.
//!
//! Used to *encode* aggregates ([`aggregate()`](super::aggregate())) and as an independent reference decoder in tests.
//! De-aggregation itself uses the hand-written, zero-copy reader in `decode.rs`.

/// `AggregatedRecord`: the key tables and the user records.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AggregatedRecord {
    /// Distinct partition keys, referenced by index from the records.
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    /// Distinct explicit hash keys (decimal text), referenced by index from the records.
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    /// The user records, in order: the index is the sub-sequence number.
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<ProtoRecord>,
}

/// `Record`: one user record.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoRecord {
    /// Index into the partition key table.
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    /// Index into the explicit hash key table, only for records that have an explicit hash key.
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    /// The payload.
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
    /// Tags: written by some producers, ignored by KCL and by this crate.
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// `Tag`: a key and an optional value.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Tag {
    /// The tag's key.
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// The tag's value.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}
