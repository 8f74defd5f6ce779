//! The in-memory stream as a [`ShardLister`].

use async_trait::async_trait;

use super::{ShardListFilter, ShardLister};
use crate::error::KclError;
use crate::retrieve::memory_stream::MemoryStream;
use crate::types::Shard;

#[async_trait]
impl ShardLister for MemoryStream {
    async fn list_shards(&self, filter: ShardListFilter) -> Result<Vec<Shard>, KclError> {
        let mut shards = self.shards();
        if filter == ShardListFilter::Open {
            shards.retain(Shard::is_open);
        }
        Ok(shards)
    }
}
