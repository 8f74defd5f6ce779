//! `MemoryStreams` (feature `test-util`): a set of in-memory streams playing one account, for multi-stream tests. It is
//! the [`StreamCatalog`] (identifiers with a creation epoch, shard listers) and the [`RecordSource`] (routing each
//! shard to its stream by name).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;

use super::{ShardLister, StreamCatalog, StreamIdentifier};
use crate::error::KclError;
use crate::retrieve::memory_stream::MemoryStream;
use crate::retrieve::{RecordSource, ShardReader, ShardSpec};
use crate::types::{ExtendedSequenceNumber, InitialPosition};

/// The account id of in-memory streams (the emulators' default account).
pub const MEMORY_ACCOUNT_ID: &str = "000000000000";

/// Several [`MemoryStream`]s of one account. Cloning gives another handle to the same set.
#[derive(Clone, Default)]
pub struct MemoryStreams {
    inner: Arc<Mutex<Streams>>,
}

#[derive(Default)]
struct Streams {
    by_name: HashMap<Arc<str>, (MemoryStream, u64)>,
    last_epoch: u64,
}

impl std::fmt::Debug for MemoryStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let streams = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("MemoryStreams").field("streams", &streams.by_name.keys().collect::<Vec<_>>()).finish()
    }
}

impl MemoryStreams {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `stream` (replacing one of the same name, like a re-created stream) and gives it a creation epoch: the
    /// current second, or one more than the last given, so a re-created stream gets a new identifier.
    pub fn add(&self, stream: MemoryStream) -> StreamIdentifier {
        let mut streams = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let epoch = now.max(streams.last_epoch + 1);
        streams.last_epoch = epoch;
        let name = stream.name().clone();
        streams.by_name.insert(name.clone(), (stream, epoch));
        identifier(&name, epoch)
    }

    /// Creates a stream with `shard_count` shards and adds it.
    pub fn create(&self, name: &str, shard_count: usize) -> MemoryStream {
        let stream = MemoryStream::new(name, shard_count);
        self.add(stream.clone());
        stream
    }

    /// Deletes a stream: it no longer describes, lists or reads.
    pub fn delete(&self, name: &str) -> Option<MemoryStream> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).by_name.remove(name).map(|(stream, _)| stream)
    }

    /// The stream called `name`.
    pub fn get(&self, name: &str) -> Option<MemoryStream> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).by_name.get(name).map(|(stream, _)| stream.clone())
    }

    /// The identifier of the stream called `name`.
    pub fn identifier(&self, name: &str) -> Option<StreamIdentifier> {
        let streams = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        streams.by_name.get(name).map(|(_, epoch)| identifier(name, *epoch))
    }

    fn not_found(operation: &'static str, name: &str) -> KclError {
        KclError::Kinesis {
            operation,
            message: format!("ResourceNotFoundException: no stream {name}"),
            retryable: false,
        }
    }
}

fn identifier(name: &str, epoch: u64) -> StreamIdentifier {
    StreamIdentifier { account_id: MEMORY_ACCOUNT_ID.to_owned(), stream_name: name.to_owned(), creation_epoch: epoch }
}

#[async_trait]
impl StreamCatalog for MemoryStreams {
    async fn describe_stream(&self, stream: &str) -> Result<Option<StreamIdentifier>, KclError> {
        Ok(self.identifier(stream))
    }

    fn shard_lister(&self, stream: &str) -> Arc<dyn ShardLister> {
        Arc::new(NamedLister { streams: self.clone(), name: stream.to_owned() })
    }
}

/// Lists the stream of that name at the time of the call, so a deleted stream fails like `ResourceNotFound`.
struct NamedLister {
    streams: MemoryStreams,
    name: String,
}

#[async_trait]
impl ShardLister for NamedLister {
    async fn list_shards(&self, filter: super::ShardListFilter) -> Result<Vec<crate::types::Shard>, KclError> {
        match self.streams.get(&self.name) {
            Some(stream) => stream.list_shards(filter).await,
            None => Err(MemoryStreams::not_found("ListShards", &self.name)),
        }
    }
}

#[async_trait]
impl RecordSource for MemoryStreams {
    async fn open(
        &self,
        shard: &ShardSpec,
        start: &ExtendedSequenceNumber,
        initial_position: &InitialPosition,
    ) -> Result<Box<dyn ShardReader>, KclError> {
        match self.get(&shard.stream) {
            Some(stream) => stream.open(shard, start, initial_position).await,
            None => Err(Self::not_found("GetShardIterator", &shard.stream)),
        }
    }
}
