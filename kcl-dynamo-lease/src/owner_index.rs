//! `list_leases_by_owner` through Java KCL 3.x's `LeaseOwnerToLeaseKeyIndex`.
//!
//! The index is KEYS_ONLY, as KCL creates it, and this store reads the items themselves with a consistent
//! BatchGetItem rather than projecting every attribute into the index. Two reasons: the index is shared with Java
//! KCL workers, and an index of the same name cannot have two projections; and a keys-only index is written only
//! when `leaseOwner` changes, while an ALL projection would be rewritten on every renewal and checkpoint (the bulk of
//! a lease table's writes), roughly doubling write cost. The consistent item read also filters out leases the
//! index still lists under an owner that no longer holds them.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use kcl_core::lease::{Lease, LeaseStoreError};

use crate::error::to_store_error;
use crate::expr::Expr;
use crate::metrics::Kind;
use crate::schema::{self, Item, LEASE_KEY, LEASE_OWNER};
use crate::store::DynamoLeaseStore;
use crate::table::{self, IndexState, LEASE_OWNER_INDEX_NAME};

const OP: &str = "list_leases_by_owner";
/// BatchGetItem's limit.
const BATCH_GET_MAX_KEYS: usize = 100;
/// How often unprocessed keys (throttling inside a batch) are retried before giving up with a transient error.
const BATCH_GET_ATTEMPTS: u32 = 8;

impl DynamoLeaseStore {
    /// The owner's leases through the index, or `None` when the index cannot be used now (then the caller scans).
    pub(crate) async fn list_by_owner_index(&self, owner: &str) -> Result<Option<Vec<Lease>>, LeaseStoreError> {
        if self.owner_index.due_for_recheck() {
            self.recheck_owner_index().await;
        }
        if !self.owner_index.is_active() {
            return Ok(None);
        }
        let Some(keys) = self.query_owner_keys(owner).await? else {
            return Ok(None);
        };
        let mut leases = self.batch_get(keys).await?;
        // The index lags the table; the items are read consistently, so trust them.
        leases.retain(|lease| lease.lease_owner.as_deref() == Some(owner));
        leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
        Ok(Some(leases))
    }

    async fn recheck_owner_index(&self) {
        // When the table is gone or DescribeTable fails, keep scanning: the scan reports the real error, if any.
        if let Ok(Some(description)) = table::describe(&self.client, &self.table).await {
            self.owner_index.set(table::owner_index_state(&description));
        }
    }

    /// All lease keys the index lists under `owner`; `None` when the index turned out not to exist.
    async fn query_owner_keys(&self, owner: &str) -> Result<Option<Vec<String>>, LeaseStoreError> {
        let mut keys = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut e = Expr::default();
            let condition = format!("{} = {}", e.name(LEASE_OWNER), e.value(schema::s(owner)));
            let (names, values) = e.finish();
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(LEASE_OWNER_INDEX_NAME)
                .key_condition_expression(condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .set_exclusive_start_key(start.take())
                .send();
            let output = match self.send(OP, Kind::Read, request).await {
                Ok(output) => output,
                // Someone deleted the index: fall back to scanning and look again later.
                Err(err) if index_missing(err.code(), err.message()) => {
                    tracing::warn!(table = self.table, index = LEASE_OWNER_INDEX_NAME, "owner index is gone; scanning");
                    self.owner_index.set(IndexState::Pending);
                    return Ok(None);
                }
                Err(err) => return Err(to_store_error(OP, "Query", owner, "none", err)),
            };
            keys.extend(output.items().iter().filter_map(|item| match item.get(LEASE_KEY) {
                Some(AttributeValue::S(key)) => Some(key.clone()),
                _ => None,
            }));
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(Some(keys)),
            }
        }
    }

    /// Consistent reads of `keys`, 100 at a time, retrying what DynamoDB leaves unprocessed.
    async fn batch_get(&self, keys: Vec<String>) -> Result<Vec<Lease>, LeaseStoreError> {
        let mut leases = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX_KEYS) {
            let mut pending: Vec<Item> = chunk.iter().map(|key| schema::key_of(key)).collect();
            let mut delay = Duration::from_millis(25);
            for attempt in 1.. {
                let request_keys = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| LeaseStoreError::fatal(OP, format!("could not build BatchGetItem: {e}")))?;
                let request = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(HashMap::from([(self.table.clone(), request_keys)])))
                    .send();
                let mut output = self
                    .send(OP, Kind::Read, request)
                    .await
                    .map_err(|e| to_store_error(OP, "BatchGetItem", &self.table, "none", e))?;
                if let Some(items) = output.responses.as_mut().and_then(|r| r.remove(&self.table)) {
                    leases.extend(items.iter().filter_map(|item| schema::lease_or_skip(&self.table, item)));
                }
                pending = output
                    .unprocessed_keys
                    .as_mut()
                    .and_then(|u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt >= BATCH_GET_ATTEMPTS {
                    return Err(LeaseStoreError::transient(
                        OP,
                        format!("BatchGetItem left {} keys unprocessed after {attempt} attempts", pending.len()),
                    ));
                }
                // Unprocessed keys mean throttling: back off before asking again.
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
        Ok(leases)
    }
}

/// DynamoDB reports a query on a missing index as a validation error naming the index.
fn index_missing(code: Option<&str>, message: Option<&str>) -> bool {
    matches!(code, Some("ValidationException" | "ResourceNotFoundException"))
        && message.is_some_and(|m| m.to_ascii_lowercase().contains("index"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::OwnerIndex;

    #[test]
    fn recheck_only_when_pending_and_due() {
        let index = OwnerIndex::new(IndexState::Pending, Duration::ZERO);
        assert!(index.due_for_recheck());
        let active = OwnerIndex::new(IndexState::Active, Duration::ZERO);
        assert!(!active.due_for_recheck());
        let later = OwnerIndex::new(IndexState::Pending, Duration::from_secs(3600));
        assert!(!later.due_for_recheck());
    }

    #[test]
    fn missing_index_errors_are_recognised() {
        assert!(index_missing(Some("ValidationException"), Some("The table does not have the specified index: X")));
        assert!(!index_missing(Some("ValidationException"), Some("Invalid KeyConditionExpression")));
        assert!(!index_missing(Some("ThrottlingException"), Some("index")));
    }
}
