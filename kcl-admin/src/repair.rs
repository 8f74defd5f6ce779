//! `kcl-admin repair`: finds the lease table items that cannot be read as leases (workers report them and do not
//! process their shards) and rewrites or deletes each, as `kcl_dynamo_lease::plan_repair` decides against the
//! stream's shards (`ListShards`). A dry run unless `--apply`; every write is conditional on the item's contents as
//! read, so an item changed meanwhile is left alone and reported.

use std::collections::HashMap;

use kcl_core::Shard;
use kcl_dynamo_lease::{DynamoLeaseStore, Repair, UnreadableItem, plan_repair};
use serde::Serialize;

use crate::connect::Aws;
use crate::error::AdminError;
use crate::kinesis::StreamReader;
use crate::output::{Report, Table};

/// One unreadable item and what was (or would be) done with it.
#[derive(Serialize, Debug)]
pub struct RepairRow {
    /// Its `leaseKey`.
    pub lease_key: String,
    /// Why it cannot be read.
    pub reason: String,
    /// `rewrite`, `delete`, or `skip` (the item belongs to another stream of a multi-stream table).
    pub action: &'static str,
    /// What the rewrite resets, or why the item is deleted or skipped.
    pub changes: Vec<String>,
    /// With `--apply`: `done`, `changed meanwhile` (nothing written) or the error; `null` in a dry run.
    pub outcome: Option<String>,
}

/// The `repair` report.
#[derive(Serialize, Debug)]
pub struct RepairReport {
    /// The lease table.
    pub table: String,
    /// The stream whose shards decided.
    pub stream: String,
    /// Whether anything was written (`--apply`).
    pub applied: bool,
    /// One row per unreadable item, by key.
    pub items: Vec<RepairRow>,
}

/// Whether `item` belongs to `stream`: single-stream items always do; a multi-stream identifier is
/// `account:stream:epoch`.
fn belongs_to(item: &UnreadableItem, stream: &str) -> bool {
    match item.stream_identifier() {
        None => true,
        Some(identifier) => identifier.split(':').nth(1).map_or(identifier == stream, |name| name == stream),
    }
}

/// Runs `repair`.
pub async fn run(
    store: &DynamoLeaseStore,
    aws: &Aws,
    table: &str,
    stream: &str,
    apply: bool,
) -> Result<RepairReport, AdminError> {
    aws.check_stream(stream).await?;
    let mut items = store.unreadable_items().await?;
    items.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    let shards: HashMap<String, Shard> = if items.is_empty() {
        HashMap::new()
    } else {
        let reader = StreamReader::new(aws.polling_api(), stream, aws.kinesis_endpoint());
        reader.shards().await?.into_iter().map(|shard| (shard.shard_id.clone(), shard)).collect()
    };
    let mut rows = Vec::new();
    for item in &items {
        if !belongs_to(item, stream) {
            rows.push(RepairRow {
                lease_key: item.lease_key.clone(),
                reason: item.reason.clone(),
                action: "skip",
                changes: vec!["belongs to another stream: run again with that --stream".to_owned()],
                outcome: None,
            });
            continue;
        }
        let repair = plan_repair(item, shards.get(item.shard_id()));
        let (action, changes) = match &repair {
            Repair::Rewrite { changes, .. } => ("rewrite", changes.clone()),
            Repair::Delete { why } => ("delete", vec![why.clone()]),
            _ => ("skip", Vec::new()),
        };
        let outcome = if apply {
            Some(match store.apply_repair(item, &repair).await {
                Ok(()) => "done".to_owned(),
                Err(error) if error.is_condition_failed() => "changed meanwhile: nothing written, run again".into(),
                Err(error) => format!("failed: {error}"),
            })
        } else {
            None
        };
        rows.push(RepairRow {
            lease_key: item.lease_key.clone(),
            reason: item.reason.clone(),
            action,
            changes,
            outcome,
        });
    }
    Ok(RepairReport { table: table.to_owned(), stream: stream.to_owned(), applied: apply, items: rows })
}

impl Report for RepairReport {
    fn human(&self) -> String {
        if self.items.is_empty() {
            return format!("every item of `{}` is readable: nothing to repair", self.table);
        }
        let mut table = Table::new(&["LEASE KEY", "REASON", "ACTION", "CHANGES", "OUTCOME"]);
        for row in &self.items {
            table.row(vec![
                row.lease_key.clone(),
                row.reason.clone(),
                row.action.to_owned(),
                row.changes.join("; "),
                row.outcome.clone().unwrap_or_else(|| "dry run".to_owned()),
            ]);
        }
        let tail = if self.applied {
            "applied (each write conditional on the item as read)"
        } else {
            "dry run: nothing written; run again with --apply"
        };
        format!("{}\n\n{} unreadable items in `{}`: {tail}", table.render(), self.items.len(), self.table)
    }

    fn exit_code(&self) -> i32 {
        let failed = self.items.iter().any(|r| r.outcome.as_deref().is_some_and(|o| o != "done"));
        i32::from(failed)
    }
}
