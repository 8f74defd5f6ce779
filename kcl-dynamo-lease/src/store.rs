//! [`DynamoLeaseStore`]: the struct, request accounting, reads and paging. The per-concern modules (`writes`,
//! `owner_index`, `heartbeat`) add its operations and `lease_store` ties them into the `LeaseStore` impl.

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use kcl_core::lease::{LeasePage, LeaseStoreError, PageToken, RequestCounts};

use crate::error::{classify, to_store_error};
use crate::fleet_version;
use crate::metrics::{Counters, Kind};
use crate::schema::{self, Item, LEASE_KEY};
use crate::table::{IndexState, OwnerIndex};

/// A [`LeaseStore`](kcl_core::lease::LeaseStore) in a DynamoDB table with Java KCL's lease schema.
///
/// Build it with [`DynamoLeaseStore::builder`]. Every write is one conditional DynamoDB request (take may need two,
/// see [`LeaseStore::take_lease`](kcl_core::lease::LeaseStore::take_lease)), every read is strongly consistent,
/// and nothing is cached, so the contract in [`kcl_core::lease`] holds across processes. Share one store per
/// process behind an `Arc`.
pub struct DynamoLeaseStore {
    pub(crate) client: Client,
    pub(crate) table: String,
    pub(crate) heartbeat_table: Option<String>,
    pub(crate) owner_index: OwnerIndex,
    counters: Counters,
    /// Whether a listing that meets a Java KCL 3.x fleet's migration state fails (see `fleet_version`).
    refuse_kcl3_fleet: bool,
}

impl std::fmt::Debug for DynamoLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoLeaseStore")
            .field("table", &self.table)
            .field("heartbeat_table", &self.heartbeat_table)
            .field("owner_index_active", &self.owner_index_active())
            .field("requests", &self.request_counts())
            .finish_non_exhaustive()
    }
}

impl DynamoLeaseStore {
    pub(crate) fn new(
        client: Client,
        table: String,
        heartbeat_table: Option<String>,
        owner_index: IndexState,
        owner_index_recheck: Duration,
    ) -> Self {
        Self {
            client,
            table,
            heartbeat_table,
            owner_index: OwnerIndex::new(owner_index, owner_index_recheck),
            counters: Counters::default(),
            refuse_kcl3_fleet: true,
        }
    }

    pub(crate) fn with_refuse_kcl3_fleet(mut self, refuse: bool) -> Self {
        self.refuse_kcl3_fleet = refuse;
        self
    }

    /// The lease table.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The worker heartbeat table, when heartbeats are enabled.
    pub fn heartbeat_table_name(&self) -> Option<&str> {
        self.heartbeat_table.as_deref()
    }

    /// Whether `list_leases_by_owner` currently queries the `LeaseOwnerToLeaseKeyIndex` (rather than scanning).
    pub fn owner_index_active(&self) -> bool {
        self.owner_index.is_active()
    }

    /// DynamoDB data-plane requests sent so far: reads (GetItem, Scan, Query, BatchGetItem) and writes (PutItem,
    /// UpdateItem, DeleteItem, including ones whose condition failed, which DynamoDB bills too). Table-management
    /// calls are not counted. The same requests are reported in the [`REQUESTS_METRIC`](crate::REQUESTS_METRIC)
    /// metric.
    pub fn request_counts(&self) -> RequestCounts {
        self.counters.snapshot()
    }

    /// Awaits one DynamoDB request and records it.
    pub(crate) async fn send<T, E>(
        &self,
        operation: &'static str,
        kind: Kind,
        request: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, SdkError<E, HttpResponse>>
    where
        E: ProvideErrorMetadata,
    {
        let result = request.await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(err) => classify(err).outcome(),
        };
        self.counters.record(operation, kind, outcome);
        result
    }

    /// A consistent read of one raw item.
    pub(crate) async fn get_item(
        &self,
        operation: &'static str,
        lease_key: &str,
    ) -> Result<Option<Item>, LeaseStoreError> {
        let output = self
            .send(
                operation,
                Kind::Read,
                self.client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(schema::key_of(lease_key)))
                    .consistent_read(true)
                    .send(),
            )
            .await
            .map_err(|e| to_store_error(operation, "GetItem", lease_key, "none", e))?;
        Ok(output.item)
    }

    pub(crate) async fn scan_page(
        &self,
        page: Option<PageToken>,
        page_size: usize,
    ) -> Result<LeasePage, LeaseStoreError> {
        const OP: &str = "list_leases";
        let start = page.map(|token| decode_token(&token)).transpose()?;
        // The trait allows fewer than asked; DynamoDB needs at least 1 (0 is treated as 1, as MemoryLeaseStore does).
        let limit = i32::try_from(page_size.max(1)).unwrap_or(i32::MAX);
        let output = self
            .send(
                OP,
                Kind::Read,
                self.client
                    .scan()
                    .table_name(&self.table)
                    .limit(limit)
                    .consistent_read(true)
                    .set_exclusive_start_key(start.map(|key| schema::key_of(&key)))
                    .send(),
            )
            .await
            .map_err(|e| to_store_error(OP, "Scan", &self.table, "none", e))?;
        if self.refuse_kcl3_fleet
            && let Some(version) = output.items().iter().find_map(fleet_version::kcl3_version_in_lease_table)
        {
            // The fleet switched to 3.x lease assignment while this worker runs: take nothing (see fleet_version).
            return Err(LeaseStoreError::fatal(
                OP,
                format!("{} (found `{version}`)", fleet_version::remedy(&self.table)),
            ));
        }
        // Unreadable items are listed apart: the coordinator reports them (metric, one ERROR per change) and
        // `kcl-admin` lists and repairs them, rather than every scan warning about each.
        let (leases, unreadable) = schema::sort_items(output.items());
        let next_page = match output.last_evaluated_key() {
            None => None,
            Some(key) if key.is_empty() => None,
            Some(key) => Some(encode_token(key)?),
        };
        Ok(LeasePage { leases, unreadable, next_page })
    }
}

/// Page tokens carry the scan's `LastEvaluatedKey`, which on this table is just the `leaseKey` of the last item
/// read: `v1.` and the key's UTF-8 bytes in hex. Opaque to callers, stable across processes and store instances.
fn encode_token(key: &Item) -> Result<PageToken, LeaseStoreError> {
    match (key.len(), key.get(LEASE_KEY)) {
        (1, Some(AttributeValue::S(lease_key))) => {
            let hex: String = lease_key.bytes().map(|b| format!("{b:02x}")).collect();
            Ok(PageToken(format!("v1.{hex}")))
        }
        _ => Err(LeaseStoreError::fatal("list_leases", "DynamoDB returned a LastEvaluatedKey that is not a leaseKey")),
    }
}

fn decode_token(token: &PageToken) -> Result<String, LeaseStoreError> {
    let invalid = || LeaseStoreError::fatal("list_leases", "the page token was not issued by a DynamoLeaseStore");
    let hex = token.0.strip_prefix("v1.").ok_or_else(invalid)?;
    if hex.len() % 2 != 0 {
        return Err(invalid());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_foreign_text() {
        for key in ["shardId-000000000001", "123456789012:my-stream:1690000000:shardId-1", "ü✓"] {
            let token = encode_token(&schema::key_of(key)).unwrap();
            assert!(token.0.starts_with("v1."));
            assert_eq!(decode_token(&token).unwrap(), key);
        }
        for bad in ["", "shardId-1", "v1.zz", "v1.abc", "v1.ff"] {
            assert!(decode_token(&PageToken(bad.into())).is_err(), "{bad}");
        }
        let mut two_keys = schema::key_of("a");
        two_keys.insert("other".into(), AttributeValue::S("b".into()));
        assert!(encode_token(&two_keys).is_err());
    }
}
