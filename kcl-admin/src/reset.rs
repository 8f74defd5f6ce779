//! `kcl-admin reset-checkpoint` and `kcl-admin release`, and the fenced rewrite both `reset-checkpoint` and
//! `import --overwrite` use.
//!
//! Every write goes through the `LeaseStore` trait and is fenced, so a worker that renews, takes or checkpoints the
//! lease meanwhile makes kcl-admin's write fail instead of being overwritten:
//!
//! * **release**: `release_lease` with the owner and counter as read.
//! * **rewrite** (a checkpoint, optionally a pending checkpoint and child shards): the store lets only the lease's
//!   checkpointing owner write a checkpoint, and an unowned lease has none, so kcl-admin briefly becomes the owner:
//!   `take_lease` conditioned on the counter as read (every change of owner moves the counter, so this is fenced by
//!   the owner as read too), then `update_checkpoint` (and `prepare_checkpoint` / `update_child_shards`) fenced by
//!   kcl-admin's own owner and counter, then `release_lease`. The lease ends unowned, and the next worker to take it
//!   starts at the new checkpoint. Taking an owned lease (`--force`) makes its worker's next renewal fail, so it
//!   stops processing the shard; its checkpoints fail too, as the counter moved. If kcl-admin dies in the middle,
//!   the lease stays owned by `kcl-admin-<pid>` until it expires (the workers' lease duration) and is then taken —
//!   possibly before the new checkpoint was written. Running the same command again resumes it: a lease owned by
//!   a `kcl-admin-` owner (no worker processes it) is taken without `--force` and the rewrite is done whole.

use bytes::Bytes;
use kcl_core::lease::{Lease, LeaseFence, LeaseStore};
use kcl_core::types::ExtendedSequenceNumber;
use serde::Serialize;

use crate::connect::Aws;
use crate::error::AdminError;
use crate::kinesis::{StreamReader, stream_name_of};
use crate::output::{Report, position};
use crate::position::Target;

/// The owner kcl-admin writes while it holds a lease for a rewrite.
pub fn admin_owner() -> String {
    format!("kcl-admin-{}", std::process::id())
}

/// Whether `owner` is a kcl-admin run (possibly one that was interrupted): no worker processes such a lease, so
/// resetting it again needs no `--force`.
pub fn is_admin_owner(owner: &str) -> bool {
    owner.strip_prefix("kcl-admin-").is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// What a rewrite writes besides the checkpoint.
#[derive(Default)]
pub struct Extras {
    /// A prepared checkpoint and its application state, written after the checkpoint.
    pub pending: Option<(ExtendedSequenceNumber, Option<Bytes>)>,
    /// Child shards, when the lease should record them.
    pub child_shard_ids: Option<Vec<String>>,
}

/// Rewrites `lease` (as read) through take, checkpoint, extras, release; returns the counter after the release.
pub async fn rewrite(
    store: &dyn LeaseStore,
    lease: &Lease,
    checkpoint: &ExtendedSequenceNumber,
    extras: Extras,
) -> Result<u64, AdminError> {
    let owner = admin_owner();
    let key = lease.lease_key.as_str();
    let taken = store.take_lease(key, lease.lease_counter, &owner).await.map_err(|e| AdminError::from_write(key, e))?;
    let mut fence = LeaseFence { lease_key: key.to_owned(), owner, counter: taken.lease_counter };
    let written = async {
        fence.counter = store.update_checkpoint(&fence, checkpoint).await?;
        if let Some((pending, state)) = extras.pending {
            fence.counter = store.prepare_checkpoint(&fence, &pending, state).await?;
        }
        if let Some(children) = extras.child_shard_ids {
            fence.counter = store.update_child_shards(&fence, &children).await?;
        }
        store.release_lease(&fence).await
    }
    .await;
    match written {
        Ok(counter) => Ok(counter),
        Err(error) => {
            give_back(store, key, &fence.owner).await;
            Err(AdminError::from_write(key, error))
        }
    }
}

/// After a failed rewrite: releases the lease if kcl-admin still holds it (a write's outcome may be unknown).
pub(crate) async fn give_back(store: &dyn LeaseStore, key: &str, owner: &str) {
    let released = match store.get_lease(key).await {
        Ok(Some(lease)) if lease.lease_owner.as_deref() == Some(owner) => match lease.fence() {
            Some(fence) => store.release_lease(&fence).await.is_ok(),
            None => true,
        },
        Ok(_) => true,
        Err(_) => false,
    };
    if !released {
        eprintln!("kcl-admin: lease `{key}` may still be owned by `{owner}`; it expires after the lease duration");
    }
}

/// The `reset-checkpoint` report.
#[derive(Serialize, Debug)]
pub struct ResetReport {
    /// The lease table.
    pub table: String,
    /// The lease.
    pub lease_key: String,
    /// `--to` as given (normalised).
    pub target: String,
    /// The owner before the reset (`--force` took it from this worker).
    pub previous_owner: Option<String>,
    /// The checkpoint before the reset.
    pub previous_checkpoint: String,
    /// Its sub-sequence number.
    pub previous_checkpoint_sub_sequence: u64,
    /// A pending checkpoint the reset discarded (a new checkpoint clears it).
    pub discarded_pending_checkpoint: Option<String>,
    /// The checkpoint written (or that would be, with `--dry-run`).
    pub checkpoint: String,
    /// Its sub-sequence number.
    pub checkpoint_sub_sequence: u64,
    /// The stream the target was resolved or checked against, if any.
    pub stream: Option<String>,
    /// The lease counter after the reset (as read, with `--dry-run`).
    pub lease_counter: u64,
    /// Whether nothing was written.
    pub dry_run: bool,
}

/// Options of `reset-checkpoint`.
pub struct ResetArgs<'a> {
    /// The lease.
    pub lease_key: &'a str,
    /// Where to move the checkpoint.
    pub target: &'a Target,
    /// `--stream`.
    pub stream: Option<&'a str>,
    /// `--force`.
    pub force: bool,
    /// `--dry-run`.
    pub dry_run: bool,
}

/// Runs `reset-checkpoint`.
pub async fn reset(
    store: &dyn LeaseStore,
    aws: &Aws,
    table: &str,
    args: ResetArgs<'_>,
) -> Result<ResetReport, AdminError> {
    let key = args.lease_key;
    let lease = store
        .get_lease(key)
        .await?
        .ok_or_else(|| AdminError::LeaseNotFound { table: table.to_owned(), lease_key: key.to_owned() })?;
    if let (Some(owner), false) = (lease.lease_owner.as_deref().filter(|o| !is_admin_owner(o)), args.force) {
        return Err(AdminError::Refused(format!(
            "lease `{key}` is owned by worker `{owner}`, which may be processing the shard. Stop the application \
             first, or pass --force to take the lease from the worker (it stops processing the shard; the next \
             worker to take the lease starts at the new checkpoint)"
        )));
    }
    if lease.checkpoint.is_shard_end() && !args.force {
        return Err(AdminError::Refused(format!(
            "lease `{key}` is finished (SHARD_END), so its child shards may already be processing; resetting it \
             delivers its records again, out of order with the children's. Pass --force to do it anyway"
        )));
    }
    let stream = args
        .stream
        .map(str::to_owned)
        .or_else(|| lease.stream_identifier.as_deref().and_then(stream_name_of).map(str::to_owned));
    if args.target.needs_stream() && stream.is_none() {
        return Err(AdminError::Usage(format!(
            "{} needs the stream of lease `{key}`: pass --stream <name>",
            args.target.describe()
        )));
    }
    if let Some(stream) = &stream {
        aws.check_stream(stream).await?;
    }
    let reader = stream.as_deref().map(|s| StreamReader::new(aws.polling_api(), s, aws.kinesis_endpoint()));
    let checkpoint = args.target.resolve(reader.as_ref(), &lease.shard_id).await?;
    let lease_counter =
        if args.dry_run { lease.lease_counter } else { rewrite(store, &lease, &checkpoint, Extras::default()).await? };
    Ok(ResetReport {
        table: table.to_owned(),
        lease_key: key.to_owned(),
        target: args.target.describe(),
        previous_owner: lease.lease_owner.clone(),
        previous_checkpoint: lease.checkpoint.checkpoint_str().to_owned(),
        previous_checkpoint_sub_sequence: lease.checkpoint.sub_sequence(),
        discarded_pending_checkpoint: lease.pending_checkpoint.as_ref().map(ToString::to_string),
        checkpoint: checkpoint.checkpoint_str().to_owned(),
        checkpoint_sub_sequence: checkpoint.sub_sequence(),
        stream,
        lease_counter,
        dry_run: args.dry_run,
    })
}

impl Report for ResetReport {
    fn human(&self) -> String {
        let verb = if self.dry_run { "would move" } else { "moved" };
        let mut text = format!(
            "lease `{}`: checkpoint {verb} from {} to {} (--to {})",
            self.lease_key,
            position(&self.previous_checkpoint, self.previous_checkpoint_sub_sequence),
            position(&self.checkpoint, self.checkpoint_sub_sequence),
            self.target
        );
        if let Some(owner) = &self.previous_owner {
            text.push_str(&format!("\ntaken from worker `{owner}`; the lease is now unowned"));
        }
        if let Some(pending) = &self.discarded_pending_checkpoint {
            text.push_str(&format!("\ndiscarded pending checkpoint {pending}"));
        }
        text.push_str(&format!("\nlease counter: {}", self.lease_counter));
        text
    }
}

/// The `release` report.
#[derive(Serialize, Debug)]
pub struct ReleaseReport {
    /// The lease table.
    pub table: String,
    /// The lease.
    pub lease_key: String,
    /// The owner before the release; `null` when the lease was already unowned.
    pub previous_owner: Option<String>,
    /// Whether an owner was cleared (`false`: it was already unowned, nothing was written).
    pub released: bool,
    /// The lease counter after the release.
    pub lease_counter: u64,
}

/// Runs `release`: clears the owner, fenced by the owner and counter as read.
pub async fn release(store: &dyn LeaseStore, table: &str, key: &str) -> Result<ReleaseReport, AdminError> {
    let lease = store
        .get_lease(key)
        .await?
        .ok_or_else(|| AdminError::LeaseNotFound { table: table.to_owned(), lease_key: key.to_owned() })?;
    let (released, lease_counter) = match lease.fence() {
        Some(fence) => (true, store.release_lease(&fence).await.map_err(|e| AdminError::from_write(key, e))?),
        None => (false, lease.lease_counter),
    };
    Ok(ReleaseReport {
        table: table.to_owned(),
        lease_key: key.to_owned(),
        previous_owner: lease.lease_owner,
        released,
        lease_counter,
    })
}

impl Report for ReleaseReport {
    fn human(&self) -> String {
        match (&self.previous_owner, self.released) {
            (Some(owner), true) => format!(
                "lease `{}` released from worker `{owner}` (counter {}); the next worker to look takes it",
                self.lease_key, self.lease_counter
            ),
            _ => format!("lease `{}` was already unowned; nothing was written", self.lease_key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_kcl_admin_owner_is_recognised() {
        let own = admin_owner();
        let cases = [
            ("kcl-admin-1234", true),
            (own.as_str(), true),
            ("kcl-admin-", false),
            ("kcl-admin-12x", false),
            ("worker-kcl-admin-1", false),
            ("ip-10-0-0-1:1234:abcd", false),
        ];
        for (owner, expected) in cases {
            assert_eq!(is_admin_owner(owner), expected, "{owner}");
        }
    }
}
