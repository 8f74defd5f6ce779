//! The randomised processor and failure destination of the property test: failures are a deterministic function
//! of the case's seed, the record and its attempt number, so a failing case replays exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kcl_core::process::failure::{FailedRecords, FailureDestination};
use kcl_core::process::{BatchFailure, BatchResult, ProcessorError};
use kcl_core::{Batch, Checkpointer, ExtendedSequenceNumber, RecordProcessor};

use super::audit::History;

/// SplitMix64 finaliser: a well-spread hash of a few integers.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

/// How a processor reports failing records.
#[derive(Clone, Copy, Debug)]
pub enum Style {
    /// `BatchFailure::records` naming them.
    Partial,
    /// A whole-batch error.
    Whole,
    /// Alternates partial reports, whole errors and panics.
    Mixed,
}

#[derive(Clone, Debug)]
pub struct Behaviour {
    pub seed: u64,
    /// Share of records that fail some attempts.
    pub fail_share: f64,
    /// A failing record fails its first 1..=this attempts.
    pub max_transient: u32,
    /// Share of records that always fail (only with a bounded number of attempts).
    pub poison_share: f64,
    pub style: Style,
    /// Checkpoint after successful batches from inside the processor.
    pub manual_checkpoint: bool,
}

pub struct Model {
    pub behaviour: Behaviour,
    pub history: Arc<Mutex<History>>,
    pub attempts: Arc<Mutex<HashMap<(String, ExtendedSequenceNumber), u32>>>,
    pub calls: u64,
}

fn seq_key(position: &ExtendedSequenceNumber) -> u64 {
    position.sequence_number().and_then(|s| s.to_u128()).map_or(0, |n| (n as u64) ^ ((n >> 64) as u64))
}

impl Behaviour {
    fn fails(&self, position: &ExtendedSequenceNumber, attempt: u32) -> bool {
        let key = mix(self.seed ^ seq_key(position));
        if unit(key ^ 1) < self.poison_share {
            return true;
        }
        if unit(key ^ 2) >= self.fail_share {
            return false;
        }
        let failing_attempts = 1 + (mix(key ^ 3) % u64::from(self.max_transient.max(1))) as u32;
        attempt <= failing_attempts
    }
}

#[async_trait]
impl RecordProcessor for Model {
    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        self.calls += 1;
        let shard = batch.shard_id.to_string();
        let records: Vec<(ExtendedSequenceNumber, String)> =
            batch.records.iter().map(|r| (r.extended_sequence_number(), r.partition_key.to_string())).collect();
        self.history.lock().unwrap().deliveries.push((shard.clone(), records.clone()));
        let mut failed = Vec::new();
        {
            let mut attempts = self.attempts.lock().unwrap();
            for (position, _) in &records {
                let attempt = attempts.entry((shard.clone(), position.clone())).or_default();
                *attempt += 1;
                if self.behaviour.fails(position, *attempt) {
                    failed.push(position.clone());
                }
            }
        }
        if failed.is_empty() {
            {
                let mut history = self.history.lock().unwrap();
                for (position, key) in &records {
                    history.processed.insert((shard.clone(), position.clone()));
                    history.current.insert((shard.clone(), position.clone()));
                    history.successes.push((shard.clone(), position.clone(), key.clone()));
                }
            }
            if self.behaviour.manual_checkpoint {
                checkpointer.checkpoint().await?;
            }
            return Ok(());
        }
        let style = match self.behaviour.style {
            Style::Mixed => match mix(self.behaviour.seed ^ self.calls) % 3 {
                0 => Style::Partial,
                1 => Style::Whole,
                _ => panic!("injected panic"),
            },
            style => style,
        };
        match style {
            Style::Partial => {
                let mut history = self.history.lock().unwrap();
                for (position, key) in records.iter().filter(|(p, _)| !failed.contains(p)) {
                    history.processed.insert((shard.clone(), position.clone()));
                    history.current.insert((shard.clone(), position.clone()));
                    history.successes.push((shard.clone(), position.clone(), key.clone()));
                }
                Err(BatchFailure::records(failed, "injected record failure"))
            }
            _ => Err("injected batch failure".into()),
        }
    }

    async fn shutdown_requested(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        if self.behaviour.manual_checkpoint {
            checkpointer.checkpoint().await?;
        }
        Ok(())
    }
}

/// Records what it accepts; refuses some calls first (a destination that is briefly down).
pub struct RecordingDestination {
    pub history: Arc<Mutex<History>>,
    pub seed: u64,
    pub refuse_share: f64,
    pub calls: Mutex<u64>,
}

#[async_trait]
impl FailureDestination for RecordingDestination {
    async fn send(&self, failed: &FailedRecords) -> Result<(), ProcessorError> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls
        };
        if unit(self.seed ^ call.wrapping_mul(7919)) < self.refuse_share {
            return Err("destination briefly down".into());
        }
        assert!(failed.attempts >= 1, "records reach the destination only after failing");
        let mut history = self.history.lock().unwrap();
        for record in &failed.records {
            let position = (failed.shard_id.to_string(), record.extended_sequence_number());
            history.dead_lettered.insert(position.clone());
            history.current.insert(position);
        }
        Ok(())
    }
}
