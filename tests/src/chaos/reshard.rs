//! Resharding the chaos stream on kinesis-mock: split a random open shard at the middle of its hash range, or merge
//! a random pair of adjacent open shards, then wait until the stream is ACTIVE again (one reshard at a time, as
//! Kinesis requires).

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::StreamStatus;

use crate::proxy::SplitMix64;

/// An open shard and its hash key range.
#[derive(Clone, Debug)]
pub struct OpenShard {
    /// Shard id.
    pub id: String,
    /// First hash key.
    pub start: u128,
    /// Last hash key.
    pub end: u128,
}

/// The open shards, by hash range.
pub async fn open_shards(kinesis: &Client, stream: &str) -> Result<Vec<OpenShard>, String> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let request = match &token {
            Some(token) => kinesis.list_shards().next_token(token),
            None => kinesis.list_shards().stream_name(stream),
        };
        let page = request.send().await.map_err(|e| format!("ListShards: {}", DisplayErrorContext(e)))?;
        for shard in page.shards() {
            if shard.sequence_number_range().is_some_and(|r| r.ending_sequence_number().is_some()) {
                continue;
            }
            let range = shard.hash_key_range();
            let parse = |s: Option<&str>| s.and_then(|s| s.parse::<u128>().ok());
            if let (Some(start), Some(end)) =
                (parse(range.map(|r| r.starting_hash_key())), parse(range.map(|r| r.ending_hash_key())))
            {
                shards.push(OpenShard { id: shard.shard_id().to_owned(), start, end });
            }
        }
        match page.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    shards.sort_by_key(|s| s.start);
    Ok(shards)
}

/// Waits until the stream is ACTIVE (at most 30 s).
pub async fn wait_active(kinesis: &Client, stream: &str) -> Result<(), String> {
    for _ in 0..300 {
        let summary = kinesis.describe_stream_summary().stream_name(stream).send().await;
        if let Ok(summary) = summary
            && summary.stream_description_summary.is_some_and(|s| s.stream_status == StreamStatus::Active)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("stream {stream} did not become ACTIVE"))
}

/// Splits a random open shard in two; returns the parent's id.
pub async fn split(kinesis: &Client, stream: &str, rng: &mut SplitMix64) -> Result<String, String> {
    wait_active(kinesis, stream).await?;
    let shards = open_shards(kinesis, stream).await?;
    let candidates: Vec<&OpenShard> = shards.iter().filter(|s| s.end - s.start >= 2).collect();
    let shard = candidates.get(rng.below(candidates.len() as u64) as usize).ok_or("no shard to split")?;
    let middle = shard.start + (shard.end - shard.start) / 2 + 1;
    kinesis
        .split_shard()
        .stream_name(stream)
        .shard_to_split(&shard.id)
        .new_starting_hash_key(middle.to_string())
        .send()
        .await
        .map_err(|e| format!("SplitShard {}: {}", shard.id, DisplayErrorContext(e)))?;
    wait_active(kinesis, stream).await?;
    Ok(shard.id.clone())
}

/// Merges a random pair of adjacent open shards; returns their ids.
pub async fn merge(kinesis: &Client, stream: &str, rng: &mut SplitMix64) -> Result<(String, String), String> {
    wait_active(kinesis, stream).await?;
    let shards = open_shards(kinesis, stream).await?;
    let pairs: Vec<(&OpenShard, &OpenShard)> =
        shards.windows(2).map(|w| (&w[0], &w[1])).filter(|(a, b)| a.end.checked_add(1) == Some(b.start)).collect();
    let (a, b) = pairs.get(rng.below(pairs.len() as u64) as usize).ok_or("no adjacent shards to merge")?;
    kinesis
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(&a.id)
        .adjacent_shard_to_merge(&b.id)
        .send()
        .await
        .map_err(|e| format!("MergeShards {} {}: {}", a.id, b.id, DisplayErrorContext(e)))?;
    wait_active(kinesis, stream).await?;
    Ok((a.id.clone(), b.id.clone()))
}
