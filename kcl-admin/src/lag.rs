//! `kcl-admin lag`: per shard of the stream, how far the lease's checkpoint is behind the stream.
//!
//! **What "lag" means here.** For every shard `ListShards` returns (open and closed, within retention), kcl-admin
//! reads the first record *after the checkpoint*: `GetShardIterator` at `AFTER_SEQUENCE_NUMBER` of the checkpoint
//! (`AT_SEQUENCE_NUMBER` when the checkpoint is inside a KPL aggregate, `TRIM_HORIZON` for a `TRIM_HORIZON`
//! checkpoint), then one `GetRecords` with `Limit` 1, and reports
//!
//! * `millis_behind_latest`: Kinesis' `MillisBehindLatest` for that read — how far (in milliseconds of arrival time)
//!   the first unprocessed record is behind the newest record of the shard; 0 when nothing follows the checkpoint.
//!   This is the number Java KCL publishes as `MillisBehindLatest`, measured at the checkpoint rather than at the
//!   worker's read position, so it also counts records read but not yet checkpointed.
//! * `next_sequence_number` and `next_record_age_millis`: that first unprocessed record and how long ago it arrived
//!   (this host's clock minus Kinesis' `ApproximateArrivalTimestamp`), `null` when caught up.
//! * `status`: `behind` (a record follows the checkpoint), `caught_up` (none does; for a closed shard, `SHARD_END`
//!   is then written once the worker's processor has seen the end), `finished` (checkpoint `SHARD_END`), `no_lease`
//!   (no lease for the shard yet: a worker creates it at its next shard sync, after its parents finish), `unknown`
//!   (checkpoint `LATEST` or `AT_TIMESTAMP`, whose starting point the table does not hold), or `error` (the read
//!   failed, e.g. the checkpoint is no longer in the shard; see `note`).
//! * `ending_sequence_number`: for a closed shard, the end of its sequence number range (from `ListShards`).
//!
//! The read costs one `GetShardIterator` and one `GetRecords` per shard, which share the shard's read limits with the
//! running consumers (5 `GetRecords` per second per shard); throttled calls are retried.

use std::time::SystemTime;

use futures::StreamExt;
use kcl_core::Shard;
use kcl_core::lease::{Lease, LeaseStore};
use kcl_core::retrieve::IteratorPosition;
use kcl_core::types::ExtendedSequenceNumber;
use serde::Serialize;

use crate::connect::Aws;
use crate::error::AdminError;
use crate::kinesis::{StreamReader, stream_name_of};
use crate::output::{Report, Table, list, or_dash, position};

/// Shards probed at a time.
const CONCURRENCY: usize = 8;

/// One shard's lag.
#[derive(Serialize, Debug, Default)]
pub struct ShardLag {
    /// The shard id.
    pub shard_id: String,
    /// Its lease's key; `null` when it has no lease.
    pub lease_key: Option<String>,
    /// Whether the shard is open (accepts records).
    pub open: bool,
    /// Its parents.
    pub parent_shard_ids: Vec<String>,
    /// The lease owner.
    pub owner: Option<String>,
    /// `behind`, `caught_up`, `finished`, `no_lease`, `unknown` or `error` (see the module documentation).
    pub status: &'static str,
    /// The checkpoint.
    pub checkpoint: Option<String>,
    /// Its sub-sequence number.
    pub checkpoint_sub_sequence: Option<u64>,
    /// `MillisBehindLatest` of a read right after the checkpoint.
    pub millis_behind_latest: Option<u64>,
    /// The first record after the checkpoint.
    pub next_sequence_number: Option<String>,
    /// How long ago that record arrived, in milliseconds.
    pub next_record_age_millis: Option<u64>,
    /// A closed shard's last sequence number (end of its range).
    pub ending_sequence_number: Option<String>,
    /// Why the status is what it is, when that needs saying.
    pub note: Option<String>,
}

/// The `lag` report.
#[derive(Serialize, Debug)]
pub struct LagReport {
    /// The lease table.
    pub table: String,
    /// The stream.
    pub stream: String,
    /// One entry per shard, sorted by shard id.
    pub shards: Vec<ShardLag>,
    /// Leases of this stream whose shard `ListShards` no longer returns (trimmed after retention).
    pub leases_without_shard: Vec<String>,
    /// The largest `millis_behind_latest`.
    pub max_millis_behind_latest: Option<u64>,
    /// How many shards are `behind`.
    pub shards_behind: usize,
}

/// Runs `lag`.
pub async fn run(store: &dyn LeaseStore, aws: &Aws, table: &str, stream: &str) -> Result<LagReport, AdminError> {
    aws.check_stream(stream).await?;
    let reader = StreamReader::new(aws.polling_api(), stream, aws.kinesis_endpoint());
    let leases: Vec<Lease> = store
        .list_all_leases()
        .await?
        .into_iter()
        .filter(|lease| lease.stream_identifier.as_deref().is_none_or(|id| stream_name_of(id) == Some(stream)))
        .collect();
    let mut shards = reader.shards().await?;
    shards.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    let leases_without_shard = leases
        .iter()
        .filter(|lease| !shards.iter().any(|shard| shard.shard_id == lease.shard_id))
        .map(|lease| lease.lease_key.clone())
        .collect();
    let rows: Vec<ShardLag> = futures::stream::iter(&shards)
        .map(|shard| shard_lag(&reader, shard, leases.iter().find(|l| l.shard_id == shard.shard_id)))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    Ok(LagReport {
        table: table.to_owned(),
        stream: stream.to_owned(),
        max_millis_behind_latest: rows.iter().filter_map(|r| r.millis_behind_latest).max(),
        shards_behind: rows.iter().filter(|r| r.status == "behind").count(),
        shards: rows,
        leases_without_shard,
    })
}

async fn shard_lag(reader: &StreamReader<'_>, shard: &Shard, lease: Option<&Lease>) -> ShardLag {
    let mut row = ShardLag {
        shard_id: shard.shard_id.clone(),
        open: shard.is_open(),
        parent_shard_ids: shard.parent_shard_ids.clone(),
        ending_sequence_number: shard.sequence_number_range.end.as_ref().map(ToString::to_string),
        ..ShardLag::default()
    };
    let Some(lease) = lease else {
        row.status = "no_lease";
        return row;
    };
    row.lease_key = Some(lease.lease_key.clone());
    row.owner = lease.lease_owner.clone();
    row.checkpoint = Some(lease.checkpoint.checkpoint_str().to_owned());
    row.checkpoint_sub_sequence = Some(lease.checkpoint.sub_sequence());
    let position = match &lease.checkpoint {
        ExtendedSequenceNumber::ShardEnd => {
            row.status = "finished";
            return row;
        }
        ExtendedSequenceNumber::Latest | ExtendedSequenceNumber::AtTimestamp(_) => {
            row.status = "unknown";
            row.note = Some(format!(
                "checkpoint {}: the worker starts where the application's initial position says when it first \
                 reads the shard; the table does not hold that point",
                lease.checkpoint.checkpoint_str()
            ));
            return row;
        }
        ExtendedSequenceNumber::TrimHorizon => IteratorPosition::TrimHorizon,
        ExtendedSequenceNumber::Sequence { sequence, sub_sequence: 0 } => {
            IteratorPosition::AfterSequence(sequence.clone())
        }
        // Inside an aggregate: the rest of it is unprocessed.
        ExtendedSequenceNumber::Sequence { sequence, .. } => IteratorPosition::AtSequence(sequence.clone()),
    };
    match reader.probe(&shard.shard_id, &position).await {
        Err(error) => {
            row.status = "error";
            row.note = Some(error.to_string());
        }
        Ok(probe) => {
            row.millis_behind_latest = Some(probe.millis_behind_latest.unwrap_or(0));
            match probe.next {
                Some((sequence, arrived)) => {
                    row.status = "behind";
                    row.next_sequence_number = Some(sequence.to_string());
                    row.next_record_age_millis = arrived.map(|at| {
                        SystemTime::now().duration_since(at).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
                    });
                }
                None => {
                    row.status = "caught_up";
                    row.millis_behind_latest = Some(0);
                    if probe.shard_end {
                        row.note = Some("closed shard fully processed; SHARD_END is not recorded yet".to_owned());
                    }
                }
            }
        }
    }
    row
}

impl Report for LagReport {
    fn human(&self) -> String {
        let mut table = Table::new(&[
            "SHARD",
            "STATUS",
            "MILLIS BEHIND",
            "NEXT RECORD AGE",
            "CHECKPOINT",
            "OWNER",
            "OPEN",
            "PARENTS",
        ]);
        for row in &self.shards {
            table.row(vec![
                row.shard_id.clone(),
                row.status.to_owned(),
                or_dash(row.millis_behind_latest),
                or_dash(row.next_record_age_millis.map(|ms| format!("{ms} ms"))),
                or_dash(row.checkpoint.as_ref().map(|c| position(c, row.checkpoint_sub_sequence.unwrap_or(0)))),
                or_dash(row.owner.as_deref()),
                if row.open { "yes" } else { "no" }.to_owned(),
                list(&row.parent_shard_ids),
            ]);
        }
        let mut text = format!(
            "{}\n\nstream `{}`, table `{}`: {} of {} shards behind, max {} ms behind latest",
            table.render(),
            self.stream,
            self.table,
            self.shards_behind,
            self.shards.len(),
            self.max_millis_behind_latest.unwrap_or(0)
        );
        for row in self.shards.iter().filter(|r| r.note.is_some()) {
            text.push_str(&format!("\n{}: {}", row.shard_id, or_dash(row.note.as_deref())));
        }
        if !self.leases_without_shard.is_empty() {
            text.push_str(&format!(
                "\nleases whose shard the stream no longer has: {}",
                self.leases_without_shard.join(", ")
            ));
        }
        text
    }
}
