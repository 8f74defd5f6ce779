//! The sampler: one scan of the lease table and the stream per tick, made into an [`Observation`]. It reads only
//! what `kcl-admin leases` and `kcl-admin lag` read (no agent runs on the workers), plus, for throughput, the
//! records between a lease's previous and current checkpoint.
//!
//! Each failure becomes a [`Problem`] shown on the page, and the scan goes on with what it could read: a missing
//! table still lets the stream's shards and lag show; an unreachable Kinesis still lets the lease map show.
//!
//! **Throughput.** The lease table has no record counts, so the sampler counts them: for every lease whose
//! checkpoint moved since the previous scan, it reads the shard from the old checkpoint up to the new one
//! (`GetRecords`, at most [`COUNT_PAGES`] pages of [`COUNT_PAGE_RECORDS`] records per lease and scan; beyond that
//! the count is a lower bound, flagged on the page). These reads share the shard's read limits with the workers, as
//! `lag`'s do. Aggregated (KPL) records count as one Kinesis record each.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use kcl_core::lease::{Lease, LeaseStore, MemoryLeaseStore};
use kcl_core::retrieve::IteratorPosition;
use kcl_core::types::ExtendedSequenceNumber;
use kcl_dynamo_lease::DynamoLeaseStore;

use super::state::{Counted, Observation, Problem};
use crate::connect::Aws;
use crate::error::AdminError;
use crate::kinesis::{StreamReader, stream_name_of};
use crate::lag;

/// Records asked for per `GetRecords` when counting throughput.
pub const COUNT_PAGE_RECORDS: usize = 1000;
/// Pages read per lease and scan when counting throughput.
pub const COUNT_PAGES: usize = 3;

/// Scans one application's lease table and stream.
pub struct Sampler {
    aws: Aws,
    table: String,
    stream: String,
    /// Opened on the first scan that finds the table (it may be created after the dashboard starts).
    store: Option<DynamoLeaseStore>,
    /// Each lease's checkpoint at the previous readable scan.
    checkpoints: HashMap<String, ExtendedSequenceNumber>,
    /// The items of the last readable scan that the store could not read (`key: reason`); `None` until a scan read
    /// the table.
    unreadable: Option<Vec<String>>,
}

impl Sampler {
    /// A sampler of `table` and `stream` through `aws`.
    pub fn new(aws: Aws, table: &str, stream: &str) -> Self {
        Self {
            aws,
            table: table.to_owned(),
            stream: stream.to_owned(),
            store: None,
            checkpoints: HashMap::new(),
            unreadable: None,
        }
    }

    /// One scan.
    pub async fn scan(&mut self) -> Observation {
        let at = SystemTime::now();
        let mut problems = Vec::new();
        let leases = match self.leases().await {
            Ok(leases) => Some(leases),
            Err(error) => {
                problems.push(Problem { source: "lease table", message: error.to_string() });
                None
            }
        };
        let lag = match &self.store {
            Some(store) => lag::run(store, &self.aws, &self.table, &self.stream).await,
            None => self.lag_without_table().await,
        };
        let lag = match lag {
            Ok(report) => Some(report),
            Err(error) => {
                problems.push(Problem { source: "Kinesis", message: error.to_string() });
                None
            }
        };
        let counted = match (&leases, &lag) {
            (Some(leases), Some(_)) => self.count(leases).await,
            _ => BTreeMap::new(),
        };
        if let Some(leases) = &leases {
            self.checkpoints = leases.iter().map(|l| (l.lease_key.clone(), l.checkpoint.clone())).collect();
        }
        Observation { at, leases, lag, counted, problems }
    }

    /// The lease table's items the store could not read at the last scan that read the table, as `key: reason`
    /// (the reason names the attribute, never its value); `None` while the table has not been read.
    pub fn unreadable_items(&self) -> Option<Vec<String>> {
        self.unreadable.clone()
    }

    async fn leases(&mut self) -> Result<Vec<Lease>, AdminError> {
        if self.store.is_none() {
            self.store = Some(self.aws.open_table(&self.table, false).await?.store);
        }
        match &self.store {
            Some(store) => {
                let listing = store.list_everything().await?;
                let unreadable = listing.unreadable.iter().map(|item| format!("{}: {}", item.lease_key, item.reason));
                self.unreadable = Some(unreadable.collect());
                Ok(listing.leases)
            }
            None => Err(AdminError::TableNotFound(self.table.clone())),
        }
    }

    /// The stream's shards with no lease information (an empty store): every shard shows as `no_lease`.
    async fn lag_without_table(&self) -> Result<lag::LagReport, AdminError> {
        lag::run(&MemoryLeaseStore::new(), &self.aws, &self.table, &self.stream).await
    }

    /// Records between the previous and the current checkpoint of every lease of this stream whose checkpoint
    /// moved. A lease whose count fails is left out (its lag row shows the reading problem, if it persists).
    async fn count(&self, leases: &[Lease]) -> BTreeMap<String, Counted> {
        let reader = StreamReader::new(self.aws.polling_api(), &self.stream, self.aws.kinesis_endpoint());
        let mut counted = BTreeMap::new();
        for lease in leases {
            if lease.stream_identifier.as_deref().is_some_and(|id| stream_name_of(id) != Some(self.stream.as_str())) {
                continue;
            }
            let Some(before) = self.checkpoints.get(&lease.lease_key) else { continue };
            if before.checkpoint_str() == lease.checkpoint.checkpoint_str() {
                continue;
            }
            if let Ok(Some(count)) = count_between(&reader, &lease.shard_id, before, &lease.checkpoint).await {
                counted.insert(lease.lease_key.clone(), count);
            }
        }
        counted
    }
}

/// Kinesis records after `from` up to and including `to`; `None` when either end is not a position in the shard
/// (`LATEST`, `AT_TIMESTAMP`, or a checkpoint that moved backwards).
async fn count_between(
    reader: &StreamReader<'_>,
    shard_id: &str,
    from: &ExtendedSequenceNumber,
    to: &ExtendedSequenceNumber,
) -> Result<Option<Counted>, AdminError> {
    let start = match from {
        ExtendedSequenceNumber::TrimHorizon => IteratorPosition::TrimHorizon,
        ExtendedSequenceNumber::Sequence { sequence, .. } => IteratorPosition::AfterSequence(sequence.clone()),
        _ => return Ok(None),
    };
    let end = match to {
        ExtendedSequenceNumber::Sequence { sequence, .. } => Some(sequence),
        ExtendedSequenceNumber::ShardEnd => None,
        _ => return Ok(None),
    };
    if let (Some(from), Some(end)) = (from.sequence_number(), end)
        && end < from
    {
        return Ok(None);
    }
    let Some(mut iterator) = reader.iterator(shard_id, &start).await? else {
        return Ok(Some(Counted { records: 0, capped: false }));
    };
    let mut records = 0;
    for _ in 0..COUNT_PAGES {
        let page = reader.page(&iterator, COUNT_PAGE_RECORDS).await?;
        for record in &page.records {
            if end.is_some_and(|end| &record.sequence_number > end) {
                return Ok(Some(Counted { records, capped: false }));
            }
            records += 1;
        }
        match page.next_iterator {
            Some(next) if !page.records.is_empty() || page.millis_behind_latest.unwrap_or(0) > 0 => iterator = next,
            _ => return Ok(Some(Counted { records, capped: false })),
        }
    }
    Ok(Some(Counted { records, capped: true }))
}
