//! Judging an interop run: waits until every put record was delivered, reads the lease table and the shards, and
//! runs the chaos verifier's delivery and final-checkpoint checks on everything the fleet left.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{Lease, LeaseStore};
use kcl_dynamo_lease::DynamoLeaseStore;

use super::Fleet;
use crate::verify::{self, History, Put, Report};

/// A judged run.
pub struct Judged {
    /// What the verifier read.
    pub history: History,
    /// Its verdict.
    pub report: Report,
}

/// The leases of `app` (Java KCL entities other than leases are skipped by the store). Reads a 3.x fleet's table
/// too: this store takes no lease.
pub async fn leases(dynamodb: &aws_sdk_dynamodb::Client, app: &str) -> Result<Vec<Lease>, String> {
    let store = DynamoLeaseStore::builder(dynamodb.clone(), app)
        .create_table_if_missing(false)
        .create_owner_index(false)
        .refuse_kcl3_fleet(false)
        .build()
        .await
        .map_err(|e| format!("lease table {app}: {e}"))?;
    store.list_all_leases().await.map_err(|e| format!("listing leases of {app}: {e}"))
}

/// Owner of every lease of `app` (shard id -> owner).
pub async fn lease_owners(
    dynamodb: &aws_sdk_dynamodb::Client,
    app: &str,
) -> Result<BTreeMap<String, Option<String>>, String> {
    Ok(leases(dynamodb, app).await?.into_iter().map(|l| (l.shard_id, l.lease_owner)).collect())
}

/// Positions delivered so far, from the outputs.
fn delivered(outputs: &[PathBuf]) -> Result<HashSet<(String, ExtendedSequenceNumber)>, String> {
    Ok(verify::load_outputs(outputs)?.into_iter().map(|d| (d.shard.clone(), d.position())).collect())
}

/// Waits until every put is in some output (at most `timeout`).
pub async fn wait_all_delivered(fleet: &Fleet, puts: &[Put], timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = delivered(&fleet.outputs)?;
        let missing = puts.iter().filter(|p| !seen.contains(&(p.shard.clone(), p.position()))).count();
        if missing == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{missing} of {} put records not delivered after {timeout:?}", puts.len()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the fleet's outputs hold at least `lines` deliveries.
pub async fn wait_deliveries(fleet: &Fleet, lines: usize, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = verify::load_outputs(&fleet.outputs)?.len();
        if n >= lines {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("only {n} of {lines} deliveries after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Reads everything the (stopped) fleet left and judges it.
pub async fn judge(
    fleet: &Fleet,
    puts: Vec<Put>,
    kinesis: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    stream: &str,
    app: &str,
) -> Result<Judged, String> {
    let history = History {
        puts,
        deliveries: verify::load_outputs(&fleet.outputs)?,
        journal: verify::load_journal(&fleet.journals)?,
        leases: leases(dynamodb, app).await?,
        shards: verify::fetch_shards(kinesis, stream).await?,
    };
    verify::save_end_state(fleet.dir(), &history.leases, &history.shards)?;
    let mut lines = String::new();
    for put in &history.puts {
        lines.push_str(&verify::write_put_line(put));
        lines.push('\n');
    }
    std::fs::write(fleet.dir().join("puts.jsonl"), lines).map_err(|e| e.to_string())?;
    let report = verify::verify_deliveries(&history);
    Ok(Judged { history, report })
}
