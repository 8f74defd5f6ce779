//! One turn of the protocol: send a message, carry out the checkpoints the child asks for through kcl-core's
//! [`Checkpointer`] (answering each with the Java exception name on failure), until the child's `status` names the
//! message.

use kcl_core::{Checkpointer, ExtendedSequenceNumber, KclError, SequenceNumber};

use super::process::ChildProcess;
use crate::error::MultilangError;
use crate::protocol::{self, Incoming, Outgoing};

/// Sends `message` and waits for the child to finish it. `checkpointer` is `None` where Java offers none
/// (`initialize`, `leaseLost`): checkpoint requests are then answered with `InvalidStateException`.
pub(crate) async fn exchange(
    child: &mut ChildProcess,
    message: &Outgoing<'_>,
    mut checkpointer: Option<&mut Checkpointer>,
) -> Result<(), MultilangError> {
    let action = message.action();
    child.send(message, action).await?;
    loop {
        match child.next_message(action).await? {
            Incoming::Status { response_for } if response_for == action => return Ok(()),
            Incoming::Status { response_for } => {
                let problem = format!("it replied `status` for `{response_for}` while `{action}` was pending");
                return Err(child.failure(action, problem));
            }
            Incoming::Checkpoint { sequence_number, sub_sequence_number } => {
                let error =
                    checkpoint(checkpointer.as_deref_mut(), sequence_number.as_deref(), sub_sequence_number).await;
                let reply = Outgoing::Checkpoint { sequence_number, sub_sequence_number, error };
                child.send(&reply, action).await?;
            }
            Incoming::Other { action: other } => {
                tracing::warn!(
                    pending = action,
                    "the record processor sent `{other}`, which is not a child's message; ignored"
                );
            }
        }
    }
}

/// Carries out a checkpoint request; the Java exception name on failure. No sequence number: everything delivered
/// so far. No sub-sequence number: 0 (Java's `checkpoint(String)`).
async fn checkpoint(
    checkpointer: Option<&mut Checkpointer>,
    sequence_number: Option<&str>,
    sub_sequence_number: Option<u64>,
) -> Option<&'static str> {
    let Some(checkpointer) = checkpointer else {
        tracing::warn!("the record processor asked for a checkpoint where none is possible");
        return Some(protocol::NO_CHECKPOINTER);
    };
    let result = match sequence_number {
        None => checkpointer.checkpoint().await,
        Some(text) => match SequenceNumber::parse(text) {
            Ok(sequence) => {
                let position = ExtendedSequenceNumber::with_sub(sequence, sub_sequence_number.unwrap_or(0));
                checkpointer.checkpoint_at(position).await
            }
            Err(error) => Err(KclError::from(error)),
        },
    };
    match result {
        Ok(()) => None,
        Err(error) => {
            let name = protocol::java_error_name(&error);
            tracing::warn!(lease = checkpointer.lease_key(), %error, "checkpoint refused; the record processor is told {name}");
            Some(name)
        }
    }
}
