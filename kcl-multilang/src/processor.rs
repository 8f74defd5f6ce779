//! [`ChildProcessor`]: kcl-core's `RecordProcessor` for one shard, carried out by a child program over the
//! MultiLangDaemon protocol.
//!
//! The child is started at `initialize`. When it fails — exits, hangs past `timeoutInSeconds`, breaks the protocol —
//! it is killed and the callback returns an error; kcl-core retries the same batch (after backoff, never skipping
//! it), and the retry starts a fresh child, initialised at the shard's current checkpoint. So every record reaches a
//! child that answers for it, at least once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kcl_core::process::{InitializeInput, LeaseLostInput, ProcessorError};
use kcl_core::{Batch, BatchResult, Checkpointer, ExtendedSequenceNumber, RecordProcessor};

use crate::child::exchange::exchange;
use crate::child::process::ChildProcess;
use crate::error::MultilangError;
use crate::protocol::{self, Outgoing};

/// How every child of the daemon is started.
#[derive(Debug)]
pub(crate) struct ChildSpec {
    /// The program and its arguments (`executableName`).
    pub(crate) command: Vec<String>,
    /// `timeoutInSeconds`.
    pub(crate) timeout: Option<Duration>,
}

/// The record processor of one shard: a child program.
pub(crate) struct ChildProcessor {
    spec: Arc<ChildSpec>,
    shard_id: Arc<str>,
    /// Where the shard stood at `initialize`; later restarts use the checkpointer's newer position.
    initial_checkpoint: ExtendedSequenceNumber,
    child: Option<ChildProcess>,
}

impl ChildProcessor {
    pub(crate) fn new(spec: Arc<ChildSpec>, shard_id: &str) -> Self {
        Self {
            spec,
            shard_id: Arc::from(shard_id),
            initial_checkpoint: ExtendedSequenceNumber::TrimHorizon,
            child: None,
        }
    }

    /// The running child, or a fresh one told `initialize` at `checkpoint`.
    async fn child(&mut self, checkpoint: &ExtendedSequenceNumber) -> Result<&mut ChildProcess, MultilangError> {
        if self.child.is_none() {
            let mut child = ChildProcess::spawn(&self.spec.command, &self.shard_id, self.spec.timeout)?;
            exchange(&mut child, &protocol::initialize(&self.shard_id, checkpoint), None).await?;
            self.child = Some(child);
        }
        // Set just above when it was missing.
        self.child.as_mut().ok_or_else(|| MultilangError::Child {
            shard_id: self.shard_id.to_string(),
            action: "initialize",
            problem: "no child".into(),
        })
    }

    /// Runs one turn on the child (starting one if needed); on failure the child is killed so the retry gets a
    /// fresh one.
    async fn turn(
        &mut self,
        message: &Outgoing<'_>,
        checkpointer: Option<&mut Checkpointer>,
    ) -> Result<(), MultilangError> {
        let checkpoint =
            checkpointer.as_ref().map_or_else(|| self.initial_checkpoint.clone(), |c| c.last_checkpoint().clone());
        let child = self.child(&checkpoint).await?;
        let outcome = exchange(child, message, checkpointer).await;
        if let Err(error) = &outcome {
            tracing::warn!(shard_id = %self.shard_id, %error, "stopping this record processor; the work is retried on a fresh one");
            self.child = None; // killed on drop
        }
        outcome
    }

    /// After a final message: let the child exit.
    async fn finish(&mut self) {
        if let Some(child) = self.child.take() {
            child.close().await;
        }
    }
}

#[async_trait]
impl RecordProcessor for ChildProcessor {
    async fn initialize(&mut self, input: InitializeInput) -> Result<(), ProcessorError> {
        self.initial_checkpoint = input.checkpoint;
        let checkpoint = self.initial_checkpoint.clone();
        if let Err(error) = self.child(&checkpoint).await {
            tracing::warn!(shard_id = %self.shard_id, %error, "record processor did not initialize; retrying on a fresh one");
            self.child = None;
            return Err(error.into());
        }
        Ok(())
    }

    async fn process_records(&mut self, batch: &Batch, checkpointer: &mut Checkpointer) -> BatchResult {
        let message = protocol::process_records(batch);
        self.turn(&message, Some(checkpointer)).await?;
        Ok(())
    }

    async fn lease_lost(&mut self, _input: LeaseLostInput) {
        // Only a running child is told: a fresh one has nothing to give up.
        if self.child.is_some() && self.turn(&Outgoing::LeaseLost {}, None).await.is_ok() {
            self.finish().await;
        }
        self.child = None;
    }

    async fn shard_ended(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        // Told even when the previous child failed: a fresh one gets the chance to checkpoint as Java's would.
        self.turn(&Outgoing::ShardEnded {}, Some(checkpointer)).await?;
        self.finish().await;
        Ok(())
    }

    async fn shutdown_requested(&mut self, checkpointer: &mut Checkpointer) -> Result<(), ProcessorError> {
        if self.child.is_none() {
            return Ok(());
        }
        let outcome = self.turn(&Outgoing::ShutdownRequested {}, Some(checkpointer)).await;
        self.finish().await;
        outcome?;
        Ok(())
    }
}

impl Drop for ChildProcessor {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            tracing::debug!(shard_id = %self.shard_id, pid = child.pid(), "record processor dropped while running; killed");
        }
    }
}
