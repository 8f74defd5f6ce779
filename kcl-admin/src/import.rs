//! `kcl-admin import --from <java-kcl-table>`: adopts a Java KCL application's progress into a kcl-rs lease table.
//!
//! The source is read with the same `DynamoLeaseStore` (Java KCL 1.x–3.x items are what it reads; entries of other
//! KCL 3.5 entity types are ignored). Each lease is copied with its checkpoint, pending checkpoint (and its state),
//! parent and child shards, hash key range and multi-stream fields, **unowned and at counter 0**: ownership and
//! counters belong to the source fleet's workers, not to the new one.
//!
//! * A lease missing from the target is created (`create_lease_if_not_exists`).
//! * A lease present in the target is skipped, unless `--overwrite`: then its checkpoint (and pending checkpoint and
//!   children) are rewritten through the fenced take / checkpoint / release sequence (see `reset.rs`). A target
//!   lease whose parents or hash range differ from the source's (no lease write changes those) is **replaced**: a
//!   take fenced on the counter as read, a delete, and a create of the source's copy. A target lease owned by a
//!   worker is skipped unless `--force` (one left owned by an interrupted kcl-admin run is not).
//!
//! The target table is created when missing, as a worker would create it.

use kcl_core::lease::{Lease, LeaseStore};
use serde::Serialize;

use crate::connect::Aws;
use crate::error::{AdminError, EXIT_FAILED};
use crate::output::{Report, Table, list, position};
use crate::reset::{Extras, admin_owner, give_back, is_admin_owner, rewrite};

/// A lease written to the target (or that would be, with `--dry-run`).
#[derive(Serialize, Debug)]
pub struct Adopted {
    /// The lease key.
    pub lease_key: String,
    /// `created` or `overwritten`.
    pub action: &'static str,
    /// The adopted checkpoint.
    pub checkpoint: String,
    /// Its sub-sequence number.
    pub checkpoint_sub_sequence: u64,
    /// The adopted pending checkpoint.
    pub pending_checkpoint: Option<String>,
    /// The parent shards.
    pub parent_shard_ids: Vec<String>,
    /// The child shards.
    pub child_shard_ids: Vec<String>,
}

/// A lease not written, and why.
#[derive(Serialize, Debug)]
pub struct NotAdopted {
    /// The lease key.
    pub lease_key: String,
    /// Why.
    pub reason: String,
}

/// The `import` report.
#[derive(Serialize, Debug)]
pub struct ImportReport {
    /// The Java KCL table read.
    pub source_table: String,
    /// The table written.
    pub table: String,
    /// Whether the target table was created (would be, with `--dry-run`).
    pub created_table: bool,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Leases adopted.
    pub adopted: Vec<Adopted>,
    /// Leases left alone on purpose.
    pub skipped: Vec<NotAdopted>,
    /// Leases whose write failed (the command exits non-zero).
    pub failed: Vec<NotAdopted>,
}

/// Options of `import`.
pub struct ImportArgs<'a> {
    /// `--from`.
    pub from: &'a str,
    /// `--table`.
    pub table: &'a str,
    /// `--overwrite`.
    pub overwrite: bool,
    /// `--force`.
    pub force: bool,
    /// `--dry-run`.
    pub dry_run: bool,
}

/// Runs `import`.
pub async fn run(aws: &Aws, args: ImportArgs<'_>) -> Result<ImportReport, AdminError> {
    if args.from == args.table {
        return Err(AdminError::Usage(format!("--from and --table are both `{}`", args.table)));
    }
    let source = aws.open_table(args.from, false).await?.store;
    let (target, created_table) = match aws.open_table(args.table, !args.dry_run).await {
        Ok(opened) => (Some(opened.store), opened.created),
        Err(AdminError::TableNotFound(_)) if args.dry_run => (None, true),
        Err(error) => return Err(error),
    };
    let mut leases = source.list_all_leases().await?;
    leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    let mut report = ImportReport {
        source_table: args.from.to_owned(),
        table: args.table.to_owned(),
        created_table,
        dry_run: args.dry_run,
        adopted: Vec::new(),
        skipped: Vec::new(),
        failed: Vec::new(),
    };
    for lease in &leases {
        let existing = match &target {
            Some(store) => store.get_lease(&lease.lease_key).await?,
            None => None,
        };
        let outcome = match (&target, existing) {
            (_, None) if args.dry_run => Ok("created"),
            (Some(store), None) => match store.create_lease_if_not_exists(&unowned_copy(lease)).await {
                Ok(true) => Ok("created"),
                Ok(false) => Err(Skip("created in the target by someone else meanwhile; left alone".to_owned())),
                Err(error) => Err(Fail(error.to_string())),
            },
            (None, None) => Ok("created"),
            (_, Some(_)) if !args.overwrite => {
                Err(Skip("already in the target table (pass --overwrite to replace its checkpoint)".to_owned()))
            }
            (store, Some(current)) => overwrite(store.as_ref(), lease, &current, args.force, args.dry_run).await,
        };
        match outcome {
            Ok(action) => report.adopted.push(Adopted {
                lease_key: lease.lease_key.clone(),
                action,
                checkpoint: lease.checkpoint.checkpoint_str().to_owned(),
                checkpoint_sub_sequence: lease.checkpoint.sub_sequence(),
                pending_checkpoint: lease.pending_checkpoint.as_ref().map(ToString::to_string),
                parent_shard_ids: lease.parent_shard_ids.clone(),
                child_shard_ids: lease.child_shard_ids.clone(),
            }),
            Err(Skip(reason)) => report.skipped.push(NotAdopted { lease_key: lease.lease_key.clone(), reason }),
            Err(Fail(reason)) => report.failed.push(NotAdopted { lease_key: lease.lease_key.clone(), reason }),
        }
    }
    Ok(report)
}

/// Why a lease was not adopted.
enum NotWritten {
    /// On purpose.
    Skip(String),
    /// A write failed.
    Fail(String),
}
use NotWritten::{Fail, Skip};

/// The source lease as the target should hold it: unowned, counter 0, no handoff.
fn unowned_copy(lease: &Lease) -> Lease {
    Lease {
        lease_owner: None,
        lease_counter: 0,
        owner_switches_since_checkpoint: 0,
        checkpoint_owner: None,
        ..lease.clone()
    }
}

/// Rewrites an existing target lease with the source's progress (`--overwrite`).
async fn overwrite(
    store: Option<&impl LeaseStore>,
    source: &Lease,
    current: &Lease,
    force: bool,
    dry_run: bool,
) -> Result<&'static str, NotWritten> {
    let sorted = |ids: &[String]| {
        let mut ids = ids.to_vec();
        ids.sort();
        ids
    };
    if let (Some(owner), false) = (&current.lease_owner, force)
        && !is_admin_owner(owner)
    {
        return Err(Skip(format!(
            "owned by worker `{owner}` in the target (stop the application, or pass --force to take it)"
        )));
    }
    // Parents and hash range never change on a lease (no store operation writes them), so a target lease that
    // disagrees with the source is replaced whole: the source describes the shard as the source fleet knew it.
    let replace = sorted(&source.parent_shard_ids) != sorted(&current.parent_shard_ids)
        || matches!((source.hash_key_range, current.hash_key_range), (Some(a), Some(b)) if a != b);
    let action = if replace { "replaced" } else { "overwritten" };
    let Some(store) = store.filter(|_| !dry_run) else {
        return Ok(action);
    };
    if replace {
        return match replace_lease(store, current, &unowned_copy(source)).await {
            Ok(()) => Ok(action),
            Err(error) => Err(Fail(error)),
        };
    }
    let children = (!source.child_shard_ids.is_empty()
        && sorted(&source.child_shard_ids) != sorted(&current.child_shard_ids))
    .then(|| source.child_shard_ids.clone());
    let extras = Extras {
        pending: source.pending_checkpoint.clone().map(|p| (p, source.pending_checkpoint_state.clone())),
        child_shard_ids: children,
    };
    match rewrite(store, current, &source.checkpoint, extras).await {
        Ok(_) => Ok(action),
        Err(error) => Err(Fail(error.to_string())),
    }
}

/// Replaces `current` (as read) by `replacement`: a take fenced on the counter as read (so no worker holds it, and
/// a worker that renewed or checkpointed meanwhile makes it fail), then delete and create. Interrupted after the
/// delete, the lease is missing: running the import again creates it (a worker's shard sync could create it first,
/// from the stream, at the application's initial position: stop the application for an import that replaces).
async fn replace_lease(store: &dyn LeaseStore, current: &Lease, replacement: &Lease) -> Result<(), String> {
    let key = current.lease_key.as_str();
    let written = |e| AdminError::from_write(key, e).to_string();
    let owner = admin_owner();
    store.take_lease(key, current.lease_counter, &owner).await.map_err(written)?;
    if let Err(error) = store.delete_lease(key).await {
        give_back(store, key, &owner).await;
        return Err(written(error));
    }
    match store.create_lease_if_not_exists(replacement).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "`{key}` was deleted to be replaced, then created by someone else (a worker's shard sync?) before the \
             import could: check its checkpoint, or stop the application and run the import again"
        )),
        Err(error) => Err(format!(
            "`{key}` was deleted to be replaced but could not be created again ({error}): run the import again, it \
             creates missing leases"
        )),
    }
}

impl Report for ImportReport {
    fn human(&self) -> String {
        let mut table = Table::new(&["LEASE KEY", "RESULT", "CHECKPOINT", "PARENTS", "CHILDREN"]);
        for a in &self.adopted {
            table.row(vec![
                a.lease_key.clone(),
                a.action.to_owned(),
                position(&a.checkpoint, a.checkpoint_sub_sequence),
                list(&a.parent_shard_ids),
                list(&a.child_shard_ids),
            ]);
        }
        let mut notes = String::new();
        for (label, entries) in [("skipped", &self.skipped), ("FAILED", &self.failed)] {
            for entry in entries {
                notes.push_str(&format!("\n{label} {}: {}", entry.lease_key, entry.reason));
            }
        }
        let would = if self.dry_run { " (dry run: nothing written)" } else { "" };
        let created = match (self.created_table, self.dry_run) {
            (true, false) => format!("; created table `{}`", self.table),
            (true, true) => format!("; would create table `{}`", self.table),
            (false, _) => String::new(),
        };
        format!(
            "{}\n{notes}\nfrom `{}` into `{}`: {} adopted, {} skipped, {} failed{created}{would}",
            table.render(),
            self.source_table,
            self.table,
            self.adopted.len(),
            self.skipped.len(),
            self.failed.len()
        )
    }

    fn exit_code(&self) -> i32 {
        if self.failed.is_empty() { 0 } else { EXIT_FAILED }
    }
}
