//! `kcl-admin leases`: every lease of the table with its owner, checkpoint, pending checkpoint, parents, children
//! and counter, and every item that cannot be read as a lease, with the reason (`kcl-admin repair` fixes those).
//!
//! The lease table holds no timestamps (neither does Java KCL's): workers judge a lease's age by how long ago *they*
//! saw its counter change. So this command reports the counter; `--observe N` reads the table twice, N seconds
//! apart, and reports whether each counter moved — an owned lease whose counter stands still longer than the lease
//! duration (10 s by default) belongs to a dead worker and is about to be taken.

use std::collections::HashMap;
use std::time::Duration;

use kcl_core::lease::{Lease, LeaseStore, UnreadableLease};
use serde::Serialize;

use crate::error::AdminError;
use crate::output::{Report, Table, list, or_dash, position};

/// One lease as reported.
#[derive(Serialize, Debug)]
pub struct LeaseRow {
    /// `leaseKey`.
    pub lease_key: String,
    /// The stream identifier (`account:stream:epoch`) of a multi-stream lease; `null` in single-stream tables.
    pub stream: Option<String>,
    /// The shard id.
    pub shard_id: String,
    /// The worker holding the lease; `null` when unowned.
    pub owner: Option<String>,
    /// The checkpoint: a sequence number or `TRIM_HORIZON` / `LATEST` / `AT_TIMESTAMP` / `SHARD_END`.
    pub checkpoint: String,
    /// The KPL sub-sequence number of the checkpoint (0 for whole records and sentinels).
    pub checkpoint_sub_sequence: u64,
    /// A prepared (two-phase) checkpoint not committed yet.
    pub pending_checkpoint: Option<String>,
    /// Its sub-sequence number.
    pub pending_checkpoint_sub_sequence: Option<u64>,
    /// Whether application state is stored with the pending checkpoint (its content is never printed).
    pub has_pending_checkpoint_state: bool,
    /// During a graceful handoff: the previous owner, still allowed to write the final checkpoint.
    pub checkpoint_owner: Option<String>,
    /// Parent shards (none, one after a split, two after a merge).
    pub parent_shard_ids: Vec<String>,
    /// Child shards, written when the shard ended.
    pub child_shard_ids: Vec<String>,
    /// The fencing counter: it goes up on every renewal, take, release and checkpoint.
    pub lease_counter: u64,
    /// Owner changes since the last checkpoint.
    pub owner_switches_since_checkpoint: u64,
    /// First hash key of the shard (decimal, as a string: it does not fit a JSON number).
    pub starting_hash_key: Option<String>,
    /// Last hash key of the shard.
    pub ending_hash_key: Option<String>,
    /// With `--observe`: whether the counter moved during the observation (`null` without it, or when the lease
    /// appeared or vanished meanwhile).
    pub counter_moved: Option<bool>,
}

impl LeaseRow {
    /// The report row of a lease.
    pub fn from_lease(lease: &Lease) -> Self {
        Self {
            lease_key: lease.lease_key.clone(),
            stream: lease.stream_identifier.clone(),
            shard_id: lease.shard_id.clone(),
            owner: lease.lease_owner.clone(),
            checkpoint: lease.checkpoint.checkpoint_str().to_owned(),
            checkpoint_sub_sequence: lease.checkpoint.sub_sequence(),
            pending_checkpoint: lease.pending_checkpoint.as_ref().map(|p| p.checkpoint_str().to_owned()),
            pending_checkpoint_sub_sequence: lease.pending_checkpoint.as_ref().map(|p| p.sub_sequence()),
            has_pending_checkpoint_state: lease.pending_checkpoint_state.is_some(),
            checkpoint_owner: lease.checkpoint_owner.clone(),
            parent_shard_ids: lease.parent_shard_ids.clone(),
            child_shard_ids: lease.child_shard_ids.clone(),
            lease_counter: lease.lease_counter,
            owner_switches_since_checkpoint: lease.owner_switches_since_checkpoint,
            starting_hash_key: lease.hash_key_range.map(|r| r.start.to_string()),
            ending_hash_key: lease.hash_key_range.map(|r| r.end.to_string()),
            counter_moved: None,
        }
    }
}

/// An item of the lease table that cannot be read as a lease. Workers do not process its shard.
#[derive(Serialize, Debug)]
pub struct UnreadableRow {
    /// Its `leaseKey`.
    pub lease_key: String,
    /// What is wrong with it (the attribute, never its value).
    pub reason: String,
}

/// The `leases` report.
#[derive(Serialize, Debug)]
pub struct LeasesReport {
    /// The lease table.
    pub table: String,
    /// The leases, sorted by key.
    pub leases: Vec<LeaseRow>,
    /// The items that cannot be read as leases, sorted by key (at the first read with `--observe`).
    pub unreadable: Vec<UnreadableRow>,
    /// How many leases there are.
    pub total: usize,
    /// How many have an owner.
    pub owned: usize,
    /// How many are at `SHARD_END`.
    pub finished: usize,
    /// The observation window of `--observe`, in seconds.
    pub observed_seconds: Option<u64>,
    /// What "age" means here: the table has no timestamps.
    pub age_note: &'static str,
}

const AGE_NOTE: &str = "the lease table stores no timestamps; a lease's age is judged by whether its counter moves \
                        (use --observe SECONDS)";

/// Runs `leases`.
pub async fn run(store: &dyn LeaseStore, table: &str, observe: Option<u64>) -> Result<LeasesReport, AdminError> {
    let listing = store.list_everything().await?;
    let mut unreadable: Vec<UnreadableLease> = listing.unreadable;
    unreadable.sort();
    let mut leases = listing.leases;
    let mut moved: Option<HashMap<String, bool>> = None;
    if let Some(seconds) = observe {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let before: HashMap<String, u64> = leases.iter().map(|l| (l.lease_key.clone(), l.lease_counter)).collect();
        leases = store.list_all_leases().await?;
        moved = Some(
            leases
                .iter()
                .filter_map(|l| before.get(&l.lease_key).map(|c| (l.lease_key.clone(), *c != l.lease_counter)))
                .collect(),
        );
    }
    leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
    let rows: Vec<LeaseRow> = leases
        .iter()
        .map(|lease| {
            let mut row = LeaseRow::from_lease(lease);
            row.counter_moved = moved.as_ref().and_then(|m| m.get(&lease.lease_key).copied());
            row
        })
        .collect();
    Ok(LeasesReport {
        table: table.to_owned(),
        total: rows.len(),
        owned: rows.iter().filter(|r| r.owner.is_some()).count(),
        finished: leases.iter().filter(|l| l.checkpoint.is_shard_end()).count(),
        leases: rows,
        unreadable: unreadable
            .into_iter()
            .map(|u| UnreadableRow { lease_key: u.lease_key, reason: u.reason })
            .collect(),
        observed_seconds: observe,
        age_note: AGE_NOTE,
    })
}

impl Report for LeasesReport {
    fn human(&self) -> String {
        let multi_stream = self.leases.iter().any(|r| r.stream.is_some());
        let mut headers = vec!["LEASE KEY", "OWNER", "CHECKPOINT", "SUB", "PENDING", "PARENTS", "CHILDREN", "COUNTER"];
        if self.observed_seconds.is_some() {
            headers.push("MOVED");
        }
        if multi_stream {
            headers.push("STREAM");
        }
        let mut table = Table::new(&headers);
        for row in &self.leases {
            let mut owner = or_dash(row.owner.as_deref());
            if let Some(previous) = &row.checkpoint_owner {
                owner.push_str(&format!(" (handoff from {previous})"));
            }
            let pending = row.pending_checkpoint.as_ref().map(|p| {
                position(p, row.pending_checkpoint_sub_sequence.unwrap_or(0))
                    + if row.has_pending_checkpoint_state { " +state" } else { "" }
            });
            let mut cells = vec![
                row.lease_key.clone(),
                owner,
                row.checkpoint.clone(),
                row.checkpoint_sub_sequence.to_string(),
                or_dash(pending),
                list(&row.parent_shard_ids),
                list(&row.child_shard_ids),
                row.lease_counter.to_string(),
            ];
            if self.observed_seconds.is_some() {
                cells.push(or_dash(row.counter_moved.map(|m| if m { "yes" } else { "no" })));
            }
            if multi_stream {
                cells.push(or_dash(row.stream.as_deref()));
            }
            table.row(cells);
        }
        let observed = match self.observed_seconds {
            Some(s) => format!("; MOVED = counter changed during {s} s"),
            None => "; no timestamps in the table: run with --observe SECONDS to see which counters move".to_owned(),
        };
        let mut out = format!(
            "{}\n\n{} leases in `{}`: {} owned, {} unowned, {} finished{observed}",
            table.render(),
            self.total,
            self.table,
            self.owned,
            self.total - self.owned,
            self.finished
        );
        if !self.unreadable.is_empty() {
            let mut bad = Table::new(&["UNREADABLE ITEM", "REASON"]);
            for row in &self.unreadable {
                bad.row(vec![row.lease_key.clone(), row.reason.clone()]);
            }
            out.push_str(&format!(
                "\n\n{}\n\n{} items cannot be read as leases: workers do not process their shards. Run \
                 `kcl-admin repair --table {}` to see the fix, then again with --apply",
                bad.render(),
                self.unreadable.len(),
                self.table
            ));
        }
        out
    }
}
