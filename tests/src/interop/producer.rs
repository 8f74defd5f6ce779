//! The interop producer: puts records with 16 partition keys at a steady rate until stopped, one `PutRecords` call
//! at a time (so put order per key is well defined). A chosen share of the entries are KPL aggregates of 4 user
//! records of one key, so checkpoints land at sub-sequence numbers. Returns the put log for the verifier.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kcl_core::SequenceNumber;
use kcl_core::deaggregate::{UserRecordInput, aggregate};
use tokio::task::JoinHandle;

use crate::proxy::SplitMix64;
use crate::verify::Put;

/// Distinct partition keys.
const KEYS: u64 = 16;
/// User records per aggregate.
const PER_AGGREGATE: usize = 4;
/// Calls per second.
const CALLS_PER_SECOND: u64 = 5;

/// A running producer.
pub struct Producer {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<Vec<Put>, String>>,
}

impl Producer {
    /// Starts putting about `rate` user records a second to `stream`, `aggregate_percent` % of the entries as
    /// aggregates.
    pub fn start(kinesis: Client, stream: &str, rate: u64, aggregate_percent: u64, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(produce(kinesis, stream.to_owned(), rate, aggregate_percent, seed, stop.clone()));
        Self { stop, task }
    }

    /// Stops after the call in flight; the put log.
    pub async fn stop(self) -> Result<Vec<Put>, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.map_err(|e| format!("producer task: {e}"))?
    }
}

async fn produce(
    kinesis: Client,
    stream: String,
    rate: u64,
    aggregate_percent: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Result<Vec<Put>, String> {
    let mut rng = SplitMix64(seed ^ 0x1A7E_0D0C);
    let mut puts = Vec::new();
    let mut n = 0u64;
    let per_call = rate.div_ceil(CALLS_PER_SECOND).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / CALLS_PER_SECOND));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0;
    let mut retry: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    while !stop.load(Ordering::Relaxed) || !retry.is_empty() {
        tick.tick().await;
        let mut batch = std::mem::take(&mut retry);
        let mut users_in_batch: usize = batch.iter().map(|(_, u)| u.len()).sum();
        while !stop.load(Ordering::Relaxed) && users_in_batch < per_call {
            let pk = format!("key-{:02}", rng.below(KEYS));
            let count = if rng.below(100) < aggregate_percent { PER_AGGREGATE } else { 1 };
            let users: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    n += 1;
                    let mut data = format!("{seed:08x}-{n:08}-{pk}-").into_bytes();
                    data.resize(64, b'.');
                    data
                })
                .collect();
            users_in_batch += users.len();
            batch.push((pk, users));
        }
        if batch.is_empty() {
            continue;
        }
        let entries = batch
            .iter()
            .map(|(pk, users)| {
                let data = if users.len() == 1 {
                    users[0].clone()
                } else {
                    let inputs: Vec<UserRecordInput<'_>> = users.iter().map(|u| UserRecordInput::new(pk, u)).collect();
                    aggregate(&inputs).to_vec()
                };
                PutRecordsRequestEntry::builder().partition_key(pk).data(Blob::new(data)).build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let output = match kinesis.put_records().stream_name(&stream).set_records(Some(entries)).send().await {
            Ok(output) => output,
            Err(error) => {
                failures += 1;
                if failures > 100 {
                    return Err(format!(
                        "PutRecords keeps failing: {}",
                        aws_sdk_kinesis::error::DisplayErrorContext(error)
                    ));
                }
                retry = batch;
                continue;
            }
        };
        failures = 0;
        for ((pk, users), result) in batch.into_iter().zip(output.records()) {
            match (result.shard_id(), result.sequence_number()) {
                (Some(shard), Some(seq)) if result.error_code().is_none() => {
                    let seq = SequenceNumber::parse(seq).map_err(|e| format!("bad sequence number {seq}: {e}"))?;
                    let aggregated = users.len() > 1;
                    for (sub, data) in users.into_iter().enumerate() {
                        let sub = if aggregated { sub as u64 } else { 0 };
                        puts.push(Put { shard: shard.to_owned(), seq: seq.clone(), sub, pk: pk.clone(), data });
                    }
                }
                _ => retry.push((pk, users)),
            }
        }
    }
    Ok(puts)
}
