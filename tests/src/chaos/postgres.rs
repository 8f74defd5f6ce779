//! The chaos suite's PostgreSQL mode (`KCL_CHAOS_STORE=postgres`): the workers keep their leases in PostgreSQL
//! (kcl-postgres-lease, on the server `scripts/test` starts) and commit every record to a sink table in the
//! transaction that carries its checkpoint. On top of the verifier's rules, the sink must hold every put record
//! exactly once, however often the delivery log shows it delivered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kcl_postgres_lease::PostgresLeaseStore;
use kcl_postgres_lease::tokio_postgres::{self, Client, NoTls};

use crate::postgres::POSTGRES_URL_ENV;
use crate::verify::Put;

/// The run's PostgreSQL tables and an admin connection.
pub(crate) struct PostgresSide {
    pub url: String,
    /// The lease table; the sink is `<table>_sink`.
    pub table: String,
    pub store: Arc<PostgresLeaseStore>,
    admin: Client,
}

impl PostgresSide {
    /// Opens the lease table named after the stream (`-` becomes `_`) and creates the sink.
    pub async fn open(stream: &str) -> Result<Self, String> {
        let url = std::env::var(POSTGRES_URL_ENV).map_err(|_| {
            format!("{POSTGRES_URL_ENV} is not set: run the PostgreSQL chaos mode through scripts/test, which starts PostgreSQL")
        })?;
        let table = stream.replace('-', "_");
        let store = PostgresLeaseStore::builder(&url).table(table.clone()).open().await.map_err(|e| e.to_string())?;
        let (admin, connection) = tokio_postgres::connect(&url, NoTls).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        admin
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table}_sink (seq TEXT NOT NULL, sub BIGINT NOT NULL, worker TEXT NOT NULL)"
            ))
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { url, table, store: Arc::new(store), admin })
    }

    /// What is wrong with the sink: records put but missing, records committed more than once, rows that were
    /// never put. Also returns the number of rows.
    pub async fn sink_problems(&self, puts: &[Put]) -> Result<(usize, Vec<String>), String> {
        let rows = self
            .admin
            .query(&format!("SELECT seq, sub FROM {}_sink", self.table), &[])
            .await
            .map_err(|e| e.to_string())?;
        let mut committed: BTreeMap<(String, i64), usize> = BTreeMap::new();
        for row in &rows {
            *committed.entry((row.get(0), row.get(1))).or_default() += 1;
        }
        let put: BTreeSet<(String, i64)> =
            puts.iter().map(|p| (p.seq.as_str().to_owned(), i64::try_from(p.sub).unwrap_or(i64::MAX))).collect();
        let mut problems = Vec::new();
        let twice: Vec<_> = committed.iter().filter(|(_, n)| **n > 1).map(|(k, n)| format!("{k:?} x{n}")).collect();
        if !twice.is_empty() {
            problems.push(format!(
                "{} records committed more than once: {:?}",
                twice.len(),
                &twice[..twice.len().min(5)]
            ));
        }
        let missing: Vec<_> = put.iter().filter(|k| !committed.contains_key(*k)).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{} put records not in the sink: {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        let unknown: Vec<_> = committed.keys().filter(|k| !put.contains(*k)).collect();
        if !unknown.is_empty() {
            problems.push(format!("{} sink rows never put: {:?}", unknown.len(), &unknown[..unknown.len().min(5)]));
        }
        Ok((rows.len(), problems))
    }

    /// Drops the run's tables.
    pub async fn cleanup(&self) {
        let t = &self.table;
        let _ = self.admin.batch_execute(&format!("DROP TABLE IF EXISTS {t}, {t}_heartbeats, {t}_sink")).await;
    }
}
