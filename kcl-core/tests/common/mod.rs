//! Helpers shared by the in-memory integration tests.
#![allow(dead_code)]

use kcl_core::KinesisRecord;
use kcl_core::retrieve::{ReadBatch, ShardReader};

/// Reads until `n` records arrived or the shard ended; returns the records and the final batch, if any.
pub async fn read_until(reader: &mut dyn ShardReader, n: usize) -> (Vec<KinesisRecord>, Option<ReadBatch>) {
    let mut records = Vec::new();
    while records.len() < n {
        let batch = reader.next_batch().await.expect("the in-memory reader should recover from every injected fault");
        records.extend(batch.records.iter().cloned());
        if batch.shard_end {
            return (records, Some(batch));
        }
    }
    (records, None)
}

/// Reads a closed shard to its end.
pub async fn read_to_end(reader: &mut dyn ShardReader) -> (Vec<KinesisRecord>, ReadBatch) {
    let (records, last) = read_until(reader, usize::MAX).await;
    (records, last.expect("read_until(usize::MAX) returns only at the shard end"))
}

/// Sequence numbers, for compact comparisons.
pub fn seqs(records: &[KinesisRecord]) -> Vec<String> {
    records.iter().map(|r| r.sequence_number.to_string()).collect()
}
