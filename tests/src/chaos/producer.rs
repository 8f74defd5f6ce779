//! The chaos producer: puts records with ~50 partition keys at a steady rate, straight to kinesis-mock (not through
//! a proxy), one `PutRecords` call at a time so that put order per key is well defined. About one entry in ten is a
//! KPL aggregate of 2–4 user records of one key. Every accepted user record goes to the put log, in put order.

use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use kcl_core::SequenceNumber;
use kcl_core::deaggregate::{UserRecordInput, aggregate};
use tokio::time::Instant;

use crate::proxy::SplitMix64;
use crate::verify::Put;

/// Distinct partition keys.
pub const KEYS: u64 = 50;
/// Calls per second.
const CALLS_PER_SECOND: u64 = 10;

/// One entry of a `PutRecords` call: its key and user records (one, or several in an aggregate).
struct Pending {
    pk: String,
    users: Vec<Vec<u8>>,
}

impl Pending {
    fn entry(&self) -> Result<PutRecordsRequestEntry, String> {
        let data = if self.users.len() == 1 {
            self.users[0].clone()
        } else {
            let inputs: Vec<UserRecordInput<'_>> =
                self.users.iter().map(|u| UserRecordInput::new(&self.pk, u)).collect();
            aggregate(&inputs).to_vec()
        };
        PutRecordsRequestEntry::builder()
            .partition_key(&self.pk)
            .data(Blob::new(data))
            .build()
            .map_err(|e| e.to_string())
    }
}

/// Puts `rate` records a second (user records, roughly) until `until`; returns the put log.
pub async fn produce(kinesis: &Client, stream: &str, seed: u64, rate: u64, until: Instant) -> Result<Vec<Put>, String> {
    let mut rng = SplitMix64(seed ^ 0x005E_ED0F_9E0D);
    let mut puts = Vec::new();
    let mut n = 0u64;
    let mut retry: Vec<Pending> = Vec::new();
    let per_call = rate.div_ceil(CALLS_PER_SECOND).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / CALLS_PER_SECOND));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    while Instant::now() < until || !retry.is_empty() {
        tick.tick().await;
        let mut batch = std::mem::take(&mut retry);
        if Instant::now() < until {
            while batch.len() < per_call as usize {
                let pk = format!("key-{:02}", rng.below(KEYS));
                let users = if rng.below(10) == 0 { 2 + rng.below(3) } else { 1 };
                let users = (0..users)
                    .map(|_| {
                        n += 1;
                        let mut data = format!("{seed:016x}-{n:08}-{pk}-").into_bytes();
                        data.resize(80, b'.');
                        data
                    })
                    .collect();
                batch.push(Pending { pk, users });
            }
        }
        let entries = batch.iter().map(Pending::entry).collect::<Result<Vec<_>, _>>()?;
        let output = match kinesis.put_records().stream_name(stream).set_records(Some(entries)).send().await {
            Ok(output) => output,
            Err(error) => {
                // Not accepted as a whole (e.g. the stream is being resharded): send the same entries again.
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
        for (pending, result) in batch.into_iter().zip(output.records()) {
            match (result.shard_id(), result.sequence_number()) {
                (Some(shard), Some(seq)) if result.error_code().is_none() => {
                    let seq = SequenceNumber::parse(seq).map_err(|e| format!("bad sequence number {seq}: {e}"))?;
                    let sub_count = pending.users.len();
                    for (sub, data) in pending.users.into_iter().enumerate() {
                        // A plain record has sub-sequence 0; an aggregate's user records 0..n.
                        let sub = if sub_count == 1 { 0 } else { sub as u64 };
                        puts.push(Put { shard: shard.to_owned(), seq: seq.clone(), sub, pk: pending.pk.clone(), data });
                    }
                }
                _ => retry.push(pending),
            }
        }
    }
    Ok(puts)
}
