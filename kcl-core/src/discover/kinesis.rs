//! [`ShardLister`] over the AWS SDK: paged `ListShards`.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::{ShardFilter, ShardFilterType};

use super::{ShardListFilter, ShardLister};
use crate::error::KclError;
use crate::retrieve::classify_sdk_error as classify;
use crate::types::{HashKeyRange, SequenceNumber, SequenceNumberRange, Shard};

/// How often a listing restarts from the first page after `ExpiredNextTokenException` before giving up.
const MAX_LISTING_RESTARTS: u32 = 3;

/// Lists a stream's shards with `ListShards`, following `NextToken`.
///
/// Retries of throttled calls are left to the SDK client's retry configuration; an expired page token restarts the
/// listing (at most 3 times), because pages of different listings must not be mixed.
#[derive(Clone, Debug)]
pub struct KinesisShardLister {
    client: aws_sdk_kinesis::Client,
    stream: Arc<str>,
    page_size: i32,
}

impl KinesisShardLister {
    /// A lister for `stream` (a name, or an ARN starting with `arn:`), 1000 shards per page.
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<Arc<str>>) -> Self {
        Self { client, stream: stream.into(), page_size: 1000 }
    }

    /// Shards per page (`MaxResults`, clamped to 1..=10000; small pages are for testing the paging).
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = i32::try_from(page_size.clamp(1, 10_000)).unwrap_or(1000);
        self
    }

    async fn list_once(&self, filter: ShardListFilter) -> Result<Result<Vec<Shard>, ExpiredToken>, KclError> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let mut request = self.client.list_shards().max_results(self.page_size);
            // With a NextToken, Kinesis rejects the stream name and the filter: the token already carries them.
            request = match next_token.take() {
                Some(token) => request.next_token(token),
                None => {
                    let request = if self.stream.starts_with("arn:") {
                        request.stream_arn(self.stream.as_ref())
                    } else {
                        request.stream_name(self.stream.as_ref())
                    };
                    match filter {
                        ShardListFilter::All => request,
                        ShardListFilter::Open => request.shard_filter(
                            ShardFilter::builder().r#type(ShardFilterType::AtLatest).build().map_err(|e| {
                                KclError::InvalidConfig(format!("cannot build the ListShards filter: {e}"))
                            })?,
                        ),
                    }
                }
            };
            let output = match request.send().await {
                Ok(output) => output,
                Err(error) if error.code() == Some("ExpiredNextTokenException") => return Ok(Err(ExpiredToken)),
                Err(error) => return Err(classify(&error).into_kcl("ListShards")),
            };
            for shard in output.shards.unwrap_or_default() {
                shards.push(convert(shard)?);
            }
            match output.next_token {
                Some(token) if !token.is_empty() => next_token = Some(token),
                _ => return Ok(Ok(shards)),
            }
        }
    }
}

struct ExpiredToken;

#[async_trait]
impl ShardLister for KinesisShardLister {
    async fn list_shards(&self, filter: ShardListFilter) -> Result<Vec<Shard>, KclError> {
        for attempt in 0..=MAX_LISTING_RESTARTS {
            match self.list_once(filter).await? {
                Ok(shards) => return Ok(shards),
                Err(ExpiredToken) => tracing::info!(attempt, "ListShards page token expired; listing again"),
            }
        }
        Err(KclError::Kinesis {
            operation: "ListShards",
            message: "the page token kept expiring before the listing finished".into(),
            retryable: true,
        })
    }
}

fn convert(shard: aws_sdk_kinesis::types::Shard) -> Result<Shard, KclError> {
    let bad = |what: &str| KclError::Kinesis {
        operation: "ListShards",
        message: format!("shard {} has {what}", shard.shard_id),
        retryable: false,
    };
    let hash_key_range = shard
        .hash_key_range
        .as_ref()
        .and_then(|r| HashKeyRange::parse(&r.starting_hash_key, &r.ending_hash_key))
        .ok_or_else(|| bad("no valid hash key range"))?;
    let range = shard.sequence_number_range.as_ref().ok_or_else(|| bad("no sequence number range"))?;
    let start = SequenceNumber::parse(&range.starting_sequence_number)
        .map_err(|_| bad("an invalid starting sequence number"))?;
    let end = match &range.ending_sequence_number {
        Some(end) => Some(SequenceNumber::parse(end).map_err(|_| bad("an invalid ending sequence number"))?),
        None => None,
    };
    let parent_shard_ids = [&shard.parent_shard_id, &shard.adjacent_parent_shard_id]
        .into_iter()
        .flatten()
        .filter(|id| !id.is_empty())
        .cloned()
        .collect();
    Ok(Shard {
        shard_id: shard.shard_id,
        parent_shard_ids,
        hash_key_range,
        sequence_number_range: SequenceNumberRange { start, end },
    })
}
