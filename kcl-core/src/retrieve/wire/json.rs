//! `GetRecords` in awsJson 1.1: the request, the response (serde over borrowed strings, base64 decoded in one pass
//! into one buffer) and the fields of an error body.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;

use super::super::api::GetRecordsOutput;
use super::{Assembler, RawRecord, child_shard, lag, time_from_secs};

pub(super) fn get_records_request(iterator: &str, limit: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "ShardIterator": iterator, "Limit": limit })).unwrap_or_else(|_| Vec::new())
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(rename = "Records", borrow, default)]
    records: Option<Vec<Record<'a>>>,
    #[serde(rename = "NextShardIterator", borrow, default)]
    next_shard_iterator: Option<Cow<'a, str>>,
    #[serde(rename = "MillisBehindLatest", default)]
    millis_behind_latest: Option<i64>,
    #[serde(rename = "ChildShards", borrow, default)]
    child_shards: Option<Vec<Child<'a>>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: Cow<'a, str>,
    #[serde(rename = "SequenceNumber", borrow)]
    sequence_number: Cow<'a, str>,
    #[serde(rename = "ApproximateArrivalTimestamp", default)]
    approximate_arrival_timestamp: Option<f64>,
}

#[derive(Deserialize)]
struct Child<'a> {
    #[serde(rename = "ShardId", borrow, default)]
    shard_id: Option<Cow<'a, str>>,
    #[serde(rename = "ParentShards", default)]
    parent_shards: Option<Vec<String>>,
    #[serde(rename = "HashKeyRange", borrow, default)]
    hash_key_range: Option<Range<'a>>,
}

#[derive(Deserialize)]
struct Range<'a> {
    #[serde(rename = "StartingHashKey", borrow)]
    starting_hash_key: Cow<'a, str>,
    #[serde(rename = "EndingHashKey", borrow)]
    ending_hash_key: Cow<'a, str>,
}

pub(super) fn decode_get_records(body: &bytes::Bytes) -> Result<GetRecordsOutput<Arc<str>>, String> {
    // serde would also accept an array for a struct; a GetRecords response is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("the body is not a JSON object".into());
    }
    let response: Response<'_> = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let records = response.records.unwrap_or_default();
    let mut assembler = Assembler {
        // The decoded data is at most 3/4 of the base64 text: one allocation for the whole response.
        decoded: Vec::with_capacity(records.iter().map(|r| r.data.len() / 4 * 3 + 3).sum()),
        records: Vec::with_capacity(records.len()),
        ..Assembler::default()
    };
    for record in records {
        let data = assembler.decode_base64(record.data.as_bytes())?;
        assembler.records.push(RawRecord {
            data,
            partition_key: record.partition_key,
            sequence_number: record.sequence_number,
            arrival: record.approximate_arrival_timestamp.and_then(time_from_secs),
        });
    }
    assembler.next_iterator = response.next_shard_iterator;
    assembler.millis_behind_latest = response.millis_behind_latest.map(lag);
    for child in response.child_shards.unwrap_or_default() {
        let range = child.hash_key_range.map(|r| (r.starting_hash_key, r.ending_hash_key));
        assembler.child_shards.push(child_shard(child.shard_id, child.parent_shards.unwrap_or_default(), range)?);
    }
    assembler.finish(body)
}

/// `__type` (or `code`) and `message` (or `Message`) of an error body, when it is a JSON object.
pub(super) fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let text = |keys: &[&str]| keys.iter().find_map(|k| object.get(*k).and_then(|v| v.as_str()).map(str::to_owned));
    (text(&["__type", "code"]), text(&["message", "Message"]))
}
