//! The recording processor and its journal: every delivery (worker, shard, sequence and sub-sequence number, partition
//! key, data) in the time order processors saw them, every attempt at a batch and how it ended, and the highest
//! position each shard has fully processed (for "the checkpoint never passes an unprocessed record").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use kcl_core::process::{BatchResult, InitializeInput, LeaseLostInput, ProcessorError};
use kcl_core::{Batch, Checkpointer, ExtendedSequenceNumber, Record, RecordProcessor};

/// One user record handed to a processor that completed the attempt.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Position in the journal: deliveries are numbered in the order processors handled them, across workers.
    pub order: usize,
    pub worker: Arc<str>,
    pub shard: Arc<str>,
    /// Sequence and sub-sequence number.
    pub position: ExtendedSequenceNumber,
    pub partition_key: Arc<str>,
    pub data: Bytes,
}

/// How one attempt at a batch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Processed (the records are in the delivery log).
    Processed,
    /// The processor returned `Err`.
    Failed,
    /// The processor panicked.
    Panicked,
    /// The shard had already stopped at its checkpoint target: the batch was acknowledged without processing.
    Ignored,
}

/// One call of `process_records`.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub worker: Arc<str>,
    pub shard: Arc<str>,
    pub first: ExtendedSequenceNumber,
    pub last: ExtendedSequenceNumber,
    pub len: usize,
    pub outcome: Outcome,
}

/// What a failure plan decides for one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Error,
    Panic,
}

/// Decides whether an attempt fails: `(shard, batch, attempts already made at a batch starting at the same record)`.
pub type FailurePlan = Arc<dyn Fn(&str, &Batch, usize) -> Option<Failure> + Send + Sync>;

/// How the recording processors behave.
#[derive(Clone, Default)]
pub struct Plan {
    /// Per shard: checkpoint exactly at this position (`checkpoint_at`), then stop — later batches of the shard are
    /// acknowledged without processing or checkpointing, and `shutdown_requested` does not checkpoint.
    pub stop_at: HashMap<String, ExtendedSequenceNumber>,
    /// Failures to inject before an attempt processes anything.
    pub failures: Option<FailurePlan>,
}

#[derive(Default)]
struct State {
    deliveries: Vec<Delivery>,
    attempts: Vec<Attempt>,
    /// Highest position processed per shard; raised BEFORE the processor checkpoints it.
    processed: HashMap<String, ExtendedSequenceNumber>,
    /// Shards that reached their `stop_at` target.
    stopped: HashSet<String>,
    leases_lost: usize,
    shards_ended: Vec<String>,
}

/// Everything the recording processors of one fleet (or several fleets in turn) saw. Cheap to share.
#[derive(Default)]
pub struct Journal {
    state: Mutex<State>,
}

impl Journal {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A processor that panics on purpose never holds this lock while panicking.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every delivery so far, in time order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// Every attempt so far, in time order.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.lock().attempts.clone()
    }

    /// The highest position processed on `shard`.
    pub fn processed(&self, shard: &str) -> Option<ExtendedSequenceNumber> {
        self.lock().processed.get(shard).cloned()
    }

    /// Shards that reached their `stop_at` target.
    pub fn stopped_shards(&self) -> HashSet<String> {
        self.lock().stopped.clone()
    }

    /// `lease_lost` callbacks so far (a graceful, failure-free run has none).
    pub fn leases_lost(&self) -> usize {
        self.lock().leases_lost
    }

    /// Shards whose `shard_ended` ran, in order.
    pub fn shards_ended(&self) -> Vec<String> {
        self.lock().shards_ended.clone()
    }

    /// Makes a processor factory for a worker (`Worker::builder(..).processor_factory(..)`).
    pub fn factory(self: &Arc<Self>, worker: &str, plan: &Plan) -> impl Fn(&str) -> Recorder + Send + Sync + use<> {
        let journal = self.clone();
        let worker: Arc<str> = Arc::from(worker);
        let plan = Arc::new(plan.clone());
        move |shard: &str| Recorder {
            worker: worker.clone(),
            shard: Arc::from(shard),
            journal: journal.clone(),
            plan: plan.clone(),
        }
    }
}

/// The recording processor: logs every record and checkpoints after every batch (and when asked to shut down),
/// unless its [`Plan`] says otherwise.
pub struct Recorder {
    worker: Arc<str>,
    shard: Arc<str>,
    journal: Arc<Journal>,
    plan: Arc<Plan>,
}

impl Recorder {
    fn attempt(&self, batch: &Batch, outcome: Outcome) {
        let (Some(first), Some(last)) = (batch.records.first(), batch.records.last()) else { return };
        self.journal.lock().attempts.push(Attempt {
            worker: self.worker.clone(),
            shard: self.shard.clone(),
            first: first.extended_sequence_number(),
            last: last.extended_sequence_number(),
            len: batch.len(),
            outcome,
        });
    }

    fn deliver(&self, state: &mut State, record: &Record) {
        let order = state.deliveries.len();
        state.deliveries.push(Delivery {
            order,
            worker: self.worker.clone(),
            shard: self.shard.clone(),
            position: record.extended_sequence_number(),
            partition_key: record.partition_key.clone(),
            data: record.data.clone(),
        });
    }
}

#[async_trait]
impl RecordProcessor for Recorder {
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        assert_eq!(&*self.shard, input.shard_id, "the factory and initialize name the same shard");
        Ok(())
    }

    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        assert_eq!(&*batch.shard_id, &*self.shard, "a batch of another shard");
        if let (Some(plan), Some(first)) = (&self.plan.failures, batch.records.first()) {
            let first = first.extended_sequence_number();
            let earlier = self
                .journal
                .lock()
                .attempts
                .iter()
                .filter(|a| a.shard == self.shard && a.first == first && a.outcome != Outcome::Processed)
                .count();
            match plan(&self.shard, batch, earlier) {
                Some(Failure::Error) => {
                    self.attempt(batch, Outcome::Failed);
                    return Err(format!("injected failure at {first} of {}", self.shard).into());
                }
                Some(Failure::Panic) => {
                    self.attempt(batch, Outcome::Panicked);
                    panic!("injected panic at {first} of {}", self.shard);
                }
                None => {}
            }
        }
        let target = self.plan.stop_at.get(&*self.shard);
        if target.is_some() && self.journal.lock().stopped.contains(&*self.shard) {
            self.attempt(batch, Outcome::Ignored);
            return Ok(());
        }
        self.attempt(batch, Outcome::Processed);
        let mut reached = None;
        {
            let mut state = self.journal.lock();
            for record in &batch.records {
                self.deliver(&mut state, record);
                if target == Some(&record.extended_sequence_number()) {
                    reached = Some(record);
                    break;
                }
            }
            let done = reached.or(batch.records.last()).map(Record::extended_sequence_number);
            if let Some(done) = done {
                let entry = state.processed.entry(self.shard.to_string()).or_insert_with(|| done.clone());
                *entry = entry.clone().max(done);
            }
        }
        match reached {
            Some(record) => {
                checkpointer.checkpoint_record(record).await?;
                self.journal.lock().stopped.insert(self.shard.to_string());
            }
            None => checkpointer.checkpoint().await?,
        }
        Ok(())
    }

    async fn lease_lost(&mut self, _input: LeaseLostInput) {
        self.journal.lock().leases_lost += 1;
    }

    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        checkpointer.checkpoint().await?;
        self.journal.lock().shards_ended.push(self.shard.to_string());
        Ok(())
    }

    async fn shutdown_requested(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        // The usual pattern: "checkpoint what you have processed". A shard stopped at its target keeps that target.
        if self.plan.stop_at.contains_key(&*self.shard) && self.journal.lock().stopped.contains(&*self.shard) {
            return Ok(());
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

/// First deliveries of each record, grouped by shard, in time order.
pub fn first_deliveries(deliveries: &[Delivery]) -> BTreeMap<String, Vec<Delivery>> {
    let mut seen = HashSet::new();
    let mut by_shard: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
    for delivery in deliveries {
        if seen.insert((delivery.shard.clone(), delivery.position.clone())) {
            by_shard.entry(delivery.shard.to_string()).or_default().push(delivery.clone());
        }
    }
    by_shard
}

/// Per-shard order: in time order, first deliveries of each shard have strictly increasing positions. Returns a
/// description of every violation.
pub fn order_violations(deliveries: &[Delivery]) -> Vec<String> {
    let mut violations = Vec::new();
    for (shard, firsts) in first_deliveries(deliveries) {
        for pair in firsts.windows(2) {
            if pair[1].position <= pair[0].position {
                violations.push(format!(
                    "{shard}: {} (delivery #{}) came after {} (delivery #{})",
                    pair[1].position, pair[1].order, pair[0].position, pair[0].order
                ));
            }
        }
    }
    violations
}

/// Deliveries beyond the first of a record, as `(shard, position, count)`.
pub fn duplicates(deliveries: &[Delivery]) -> Vec<(String, ExtendedSequenceNumber, usize)> {
    let mut counts: BTreeMap<(String, ExtendedSequenceNumber), usize> = BTreeMap::new();
    for delivery in deliveries {
        *counts.entry((delivery.shard.to_string(), delivery.position.clone())).or_default() += 1;
    }
    counts.into_iter().filter(|(_, n)| *n > 1).map(|((shard, position), n)| (shard, position, n)).collect()
}
