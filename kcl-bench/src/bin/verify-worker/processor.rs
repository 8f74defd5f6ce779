//! The verifying processor: appends one JSON line per user record to the output file, makes it durable (write +
//! fsync), and only then checkpoints the batch. Each processor instance is an *epoch* (`WORKER#PID#N`): the
//! verifier uses it to tell a redelivery after a crash or a lease move from a duplicate inside one processor.
//!
//! Output line: `{"worker","shard","seq","sub","pk","data_b64","epoch","t"}` (`t`: when the batch was written, on
//! the evidence clock, see `journal::now_us`).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use kcl_core::process::{BatchResult, InitializeInput, LeaseLostInput, ProcessorError};
use kcl_core::{Batch, Checkpointer, ExtendedSequenceNumber, RecordProcessor};
use serde::Serialize;
use serde_json::json;

use crate::journal::{Journal, now_us, position};

/// The output file, shared by every shard of this process.
pub struct Output {
    file: Arc<Mutex<File>>,
}

impl Output {
    /// Opens `path` for appending (created if missing).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(Self { file: Arc::new(Mutex::new(file)) })
    }

    /// Appends `bytes` and waits until they are on disk.
    async fn append_durably(&self, bytes: Vec<u8>) -> std::io::Result<()> {
        let file = self.file.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            file.write_all(&bytes)?;
            file.sync_data()
        })
        .await;
        written.unwrap_or_else(|join| Err(std::io::Error::other(join)))
    }
}

#[derive(Serialize)]
struct Line<'a> {
    worker: &'a str,
    shard: &'a str,
    seq: &'a str,
    sub: u64,
    pk: &'a str,
    data_b64: String,
    epoch: &'a str,
    t: u64,
}

/// PostgreSQL mode: where each processor commits its records with its checkpoint.
pub struct Sink {
    /// The database.
    pub url: String,
    /// The sink table.
    pub table: String,
    /// The lease store, whose transactional checkpoint joins the sink's transaction.
    pub store: Arc<kcl_postgres_lease::PostgresLeaseStore>,
}

/// Makes one [`VerifyProcessor`] per shard lease, numbering the epochs.
pub struct Factory {
    pub worker: Arc<str>,
    pub output: Arc<Output>,
    pub journal: Arc<Journal>,
    pub next_epoch: AtomicU64,
    /// PostgreSQL mode.
    pub sink: Option<Arc<Sink>>,
    /// Every Nth batch of a processor waits this long before it is written (a processor slower than its lease).
    pub slow: Option<(u64, Duration)>,
}

impl kcl_core::ProcessorFactory for Factory {
    type Processor = VerifyProcessor;
    fn create(&self, shard_id: &str) -> VerifyProcessor {
        let n = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        VerifyProcessor {
            worker: self.worker.clone(),
            epoch: format!("{}#{}#{n}", self.worker, std::process::id()),
            shard: shard_id.to_owned(),
            output: self.output.clone(),
            journal: self.journal.clone(),
            sink: self.sink.clone(),
            client: None,
            written_up_to: None,
            slow: self.slow,
            batches: 0,
        }
    }
}

/// Writes what it processes, durably, before checkpointing it.
pub struct VerifyProcessor {
    worker: Arc<str>,
    epoch: String,
    shard: String,
    output: Arc<Output>,
    journal: Arc<Journal>,
    sink: Option<Arc<Sink>>,
    /// PostgreSQL mode: this processor's connection.
    client: Option<kcl_postgres_lease::tokio_postgres::Client>,
    /// The last record written to the output: a batch retried after a failed transaction is not written twice.
    written_up_to: Option<ExtendedSequenceNumber>,
    /// See [`Factory::slow`].
    slow: Option<(u64, Duration)>,
    /// Batches handed to this processor so far.
    batches: u64,
}

impl VerifyProcessor {
    fn end(&self, why: &str) {
        self.journal.event(json!({"ev": "end", "epoch": self.epoch, "shard": self.shard, "why": why}));
    }

    /// Checkpoints everything delivered so far, journaling the attempt and its result. A failure is not an error of
    /// the batch: the records were processed, and whoever owns the shard next redelivers what is not checkpointed
    /// (returning it would redeliver the batch to this same processor).
    async fn checkpoint(&self, checkpointer: &mut Checkpointer) {
        let Some(target) = checkpointer.largest_permitted().cloned() else { return };
        if *checkpointer.last_checkpoint() >= target {
            return;
        }
        let pos = position(&target);
        self.journal.event(json!({"ev": "cp", "epoch": self.epoch, "shard": self.shard, "pos": pos}));
        let result = checkpointer.checkpoint().await;
        let ok = result.is_ok();
        self.journal.event(json!({"ev": "cp_done", "epoch": self.epoch, "shard": self.shard, "pos": pos, "ok": ok}));
        if let Err(error) = result {
            tracing::info!(shard = %self.shard, %error, "checkpoint failed; the next owner redelivers");
        }
    }
}

impl VerifyProcessor {
    /// PostgreSQL mode: inserts the batch into the sink and commits it with the checkpoint past it. Refused by the
    /// fence: nothing was written, the lease is another worker's, which gets the records again. Any other failure
    /// before the commit rolls back and returns the error, so the framework retries the batch (its lines are not
    /// written to the output again).
    async fn commit(&mut self, sink: &Sink, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        let Some(target) = checkpointer.largest_permitted().cloned() else { return Ok(()) };
        let Some(client) = self.client.as_mut() else { return Err("no PostgreSQL connection".into()) };
        let tx = client.transaction().await?;
        let insert = format!("INSERT INTO {} (seq, sub, worker) VALUES ($1, $2, $3)", sink.table);
        for record in &batch.records {
            let sub = i64::try_from(record.sub_sequence_number)?;
            tx.execute(&insert, &[&record.sequence_number.as_str(), &sub, &&*self.worker]).await?;
        }
        let pos = position(&target);
        self.journal.event(json!({"ev": "cp", "epoch": self.epoch, "shard": self.shard, "pos": pos}));
        let result = sink.store.commit_with_checkpoint(tx, &self.worker, checkpointer, None).await;
        let ok = result.is_ok();
        self.journal.event(json!({"ev": "cp_done", "epoch": self.epoch, "shard": self.shard, "pos": pos, "ok": ok}));
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.is_fenced() => {
                tracing::info!(shard = %self.shard, %error, "transaction refused by the fence; the next owner redelivers");
                Ok(())
            }
            // Committed, but the framework could not record the checkpoint: the lease is being lost.
            Err(kcl_postgres_lease::PostgresLeaseError::Framework { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

#[async_trait::async_trait]
impl RecordProcessor for VerifyProcessor {
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        self.journal.event(json!({
            "ev": "init", "epoch": self.epoch, "shard": self.shard, "checkpoint": position(&input.checkpoint),
        }));
        if let Some(sink) = &self.sink {
            let (client, connection) =
                kcl_postgres_lease::tokio_postgres::connect(&sink.url, kcl_postgres_lease::tokio_postgres::NoTls)
                    .await?;
            tokio::spawn(connection);
            self.client = Some(client);
        }
        Ok(())
    }

    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        self.batches += 1;
        if let Some((every, pause)) = self.slow
            && self.batches.is_multiple_of(every)
        {
            // The lease may move meanwhile: what is written after this is a zombie's, and its checkpoint is fenced.
            self.journal.event(json!({"ev": "slow", "epoch": self.epoch, "shard": self.shard, "ms": u64::try_from(pause.as_millis()).unwrap_or(u64::MAX)}));
            tokio::time::sleep(pause).await;
        }
        let t = now_us();
        let mut bytes = Vec::with_capacity(batch.len() * 160);
        let fresh = batch
            .records
            .iter()
            .filter(|r| self.written_up_to.as_ref().is_none_or(|w| r.extended_sequence_number() > *w));
        for record in fresh {
            let line = Line {
                worker: &self.worker,
                shard: &self.shard,
                seq: record.sequence_number.as_str(),
                sub: record.sub_sequence_number,
                pk: &record.partition_key,
                data_b64: base64::engine::general_purpose::STANDARD.encode(&record.data),
                epoch: &self.epoch,
                t,
            };
            serde_json::to_writer(&mut bytes, &line)?;
            bytes.push(b'\n');
        }
        // Durable first: a checkpoint must never cover a record that is not in the output.
        self.output.append_durably(bytes).await?;
        if let Some(last) = batch.records.last() {
            self.written_up_to = Some(last.extended_sequence_number());
        }
        match self.sink.clone() {
            Some(sink) => self.commit(&sink, batch, checkpointer).await,
            None => {
                self.checkpoint(checkpointer).await;
                Ok(())
            }
        }
    }

    async fn lease_lost(&mut self, _input: LeaseLostInput) {
        self.end("lease_lost");
    }

    async fn shard_ended(&mut self, _checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        // Every batch was checkpointed already; the framework writes SHARD_END after this returns.
        self.end("shard_ended");
        Ok(())
    }

    async fn shutdown_requested(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        self.checkpoint(checkpointer).await;
        self.end("shutdown");
        Ok(())
    }
}
