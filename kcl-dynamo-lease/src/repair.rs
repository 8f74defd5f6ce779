//! Repairing lease table items that cannot be read (what `kcl-admin repair` runs): finding them with their raw
//! contents, deciding per item what to write ([`plan_repair`], a pure function), and writing it fenced on the
//! item's raw contents, so that a repair never overwrites a change it did not see.
//!
//! # What a repair writes, and why it never skips a record
//! * The shard is not in the stream: the item is **deleted** (no record can be lost: the stream has none for it).
//! * Otherwise the item is **rewritten** as a lease, keeping every attribute that can be read and resetting the rest:
//!   - an unreadable or missing `checkpoint` becomes `TRIM_HORIZON`: the oldest record the shard retains. For a
//!     child shard that is exactly where its parents' records end, and the coordinator still waits for the parents
//!     to finish first (parents come from `ListShards`). Records are replayed, never skipped;
//!   - an unreadable checkpoint sub-sequence number becomes 0: the whole aggregate at that sequence number again;
//!   - an unreadable pending checkpoint (or its state) is dropped: it was never committed;
//!   - the owner is cleared and the counter restarts from the old counter + 1, or 0 when unreadable. Every fence a
//!     worker holds was produced by a take or write, so is at least 1 and differs from 0: a worker that believed it
//!     held the item can no longer write to it, and the lease is taken afresh;
//!   - parents and the hash key range come from `ListShards`; unreadable children are dropped (a finished shard's
//!     children are found again by shard sync).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use kcl_core::lease::{Lease, LeaseStoreError};
use kcl_core::{ExtendedSequenceNumber, HashKeyRange, Shard};

use crate::error::to_store_error;
use crate::expr::Expr;
use crate::metrics::Kind;
use crate::schema::{self, Item, Malformed};
use crate::store::DynamoLeaseStore;

/// A lease table item that cannot be read as a lease, with its raw contents (kept for the fenced write; never
/// printed).
#[derive(Clone)]
pub struct UnreadableItem {
    /// Its `leaseKey`.
    pub lease_key: String,
    /// What is wrong (the attribute, never its value).
    pub reason: String,
    raw: Item,
}

impl std::fmt::Debug for UnreadableItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnreadableItem").field("lease_key", &self.lease_key).field("reason", &self.reason).finish()
    }
}

impl UnreadableItem {
    /// The shard id the item names: its `shardId` attribute when readable, else the part of the key after the last
    /// `:` (a multi-stream key is `account:stream:epoch:shardId`; a single-stream key is the shard id).
    pub fn shard_id(&self) -> &str {
        match self.raw.get(schema::SHARD_ID) {
            Some(AttributeValue::S(shard)) if !shard.is_empty() => shard,
            _ => self.lease_key.rsplit(':').next().unwrap_or(&self.lease_key),
        }
    }

    /// The stream identifier of a multi-stream item (`streamName`, or the key before the shard id); `None` for a
    /// single-stream item.
    pub fn stream_identifier(&self) -> Option<&str> {
        match self.raw.get(schema::STREAM_NAME) {
            Some(AttributeValue::S(stream)) => Some(stream),
            _ => self.lease_key.rsplit_once(':').map(|(stream, _)| stream),
        }
    }
}

/// What [`plan_repair`] decided for one item.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Repair {
    /// Rewrite the item as this lease; `changes` says what was reset, attribute by attribute.
    Rewrite {
        /// The lease to write.
        lease: Box<Lease>,
        /// One line per attribute reset, e.g. "`checkpoint` unreadable → TRIM_HORIZON".
        changes: Vec<String>,
    },
    /// Delete the item: its shard is not in the stream.
    Delete {
        /// Why.
        why: String,
    },
}

/// Decides the repair of `item` given its shard as `ListShards` returned it (`None`: the stream has no such shard).
/// See the `repair` module documentation (in the source) for why each reset is safe.
pub fn plan_repair(item: &UnreadableItem, shard: Option<&Shard>) -> Repair {
    let Some(shard) = shard else {
        return Repair::Delete {
            why: format!("the stream has no shard `{}`: no record can be waiting for this item", item.shard_id()),
        };
    };
    let raw = &item.raw;
    let mut changes = Vec::new();
    let number = |name: &str| match raw.get(name) {
        Some(AttributeValue::N(text)) => text.parse::<u64>().ok(),
        _ => None,
    };
    let string = |name: &str| match raw.get(name) {
        Some(AttributeValue::S(text)) => Some(text.clone()),
        _ => None,
    };
    let sequence = |name: &str, sub: &str| {
        let sub = number(sub).unwrap_or(0);
        string(name).filter(|t| !t.is_empty()).and_then(|text| ExtendedSequenceNumber::parse(&text, sub).ok())
    };
    let lease_counter = match number(schema::LEASE_COUNTER) {
        Some(counter) => counter.saturating_add(1),
        None => {
            changes.push(format!("`{}` unreadable or missing → 0", schema::LEASE_COUNTER));
            0
        }
    };
    if raw.contains_key(schema::LEASE_OWNER) {
        changes.push(format!("`{}` cleared (a worker takes the lease afresh)", schema::LEASE_OWNER));
    }
    let sub_readable = !raw.contains_key(schema::CHECKPOINT_SUB) || number(schema::CHECKPOINT_SUB).is_some();
    let checkpoint = match sequence(schema::CHECKPOINT, schema::CHECKPOINT_SUB) {
        Some(checkpoint) => {
            if !sub_readable {
                changes.push(format!("`{}` unreadable → 0 (the aggregate is replayed)", schema::CHECKPOINT_SUB));
            }
            checkpoint
        }
        None => {
            changes.push(format!(
                "`{}` unreadable or missing → TRIM_HORIZON (records are replayed from the oldest retained, never \
                 skipped)",
                schema::CHECKPOINT
            ));
            ExtendedSequenceNumber::TrimHorizon
        }
    };
    let pending_checkpoint = sequence(schema::PENDING_CHECKPOINT, schema::PENDING_CHECKPOINT_SUB);
    let pending_present =
        matches!(raw.get(schema::PENDING_CHECKPOINT), Some(v) if v.as_s().map_or(true, |text| !text.is_empty()));
    if pending_present && pending_checkpoint.is_none() {
        changes.push(format!("`{}` unreadable → dropped (it was never committed)", schema::PENDING_CHECKPOINT));
    }
    let pending_checkpoint_state = match (&pending_checkpoint, raw.get(schema::PENDING_CHECKPOINT_STATE)) {
        (Some(_), Some(AttributeValue::B(blob))) => Some(bytes::Bytes::copy_from_slice(blob.as_ref())),
        _ => None,
    };
    let owner_switches_since_checkpoint = number(schema::OWNER_SWITCHES).unwrap_or(0);
    if raw.contains_key(schema::OWNER_SWITCHES) && number(schema::OWNER_SWITCHES).is_none() {
        changes.push(format!("`{}` unreadable → 0", schema::OWNER_SWITCHES));
    }
    let child_shard_ids = match raw.get(schema::CHILD_SHARD_IDS) {
        Some(AttributeValue::Ss(children)) => children.clone(),
        None => Vec::new(),
        Some(_) => {
            changes.push(format!("`{}` unreadable → dropped (shard sync finds them again)", schema::CHILD_SHARD_IDS));
            Vec::new()
        }
    };
    let mut parent_shard_ids = shard.parent_shard_ids.clone();
    parent_shard_ids.sort();
    let old_parents = match raw.get(schema::PARENT_SHARD_ID) {
        Some(AttributeValue::Ss(parents)) => Some({
            let mut p = parents.clone();
            p.sort();
            p
        }),
        None => Some(Vec::new()),
        Some(_) => None,
    };
    if old_parents.as_ref() != Some(&parent_shard_ids) {
        changes.push(format!("`{}` → {parent_shard_ids:?} (from ListShards)", schema::PARENT_SHARD_ID));
    }
    let hash_key_range: HashKeyRange = shard.hash_key_range;
    let old_range = match (string(schema::STARTING_HASH_KEY), string(schema::ENDING_HASH_KEY)) {
        (Some(start), Some(end)) => HashKeyRange::parse(&start, &end),
        _ => None,
    };
    if old_range != Some(hash_key_range) {
        changes.push("hash key range → the shard's (from ListShards)".to_owned());
    }
    let stream_identifier = item.stream_identifier().map(str::to_owned);
    let lease = Lease {
        lease_key: item.lease_key.clone(),
        lease_owner: None,
        lease_counter,
        owner_switches_since_checkpoint,
        checkpoint,
        pending_checkpoint,
        pending_checkpoint_state,
        parent_shard_ids,
        child_shard_ids,
        hash_key_range: Some(hash_key_range),
        checkpoint_owner: None,
        stream_identifier,
        shard_id: shard.shard_id.clone(),
    };
    Repair::Rewrite { lease: Box::new(lease), changes }
}

/// The condition "the item still holds exactly `raw`": every attribute read is still there with the same value.
fn unchanged(raw: &Item, expr: &mut Expr) -> String {
    let mut names: Vec<&String> = raw.keys().collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| raw.get(name).map(|value| (name, value)))
        .map(|(name, value)| format!("{} = {}", expr.name(name), expr.value(value.clone())))
        .collect::<Vec<_>>()
        .join(" AND ")
}

impl DynamoLeaseStore {
    /// Every item of the lease table that cannot be read as a lease (a full consistent scan).
    pub async fn unreadable_items(&self) -> Result<Vec<UnreadableItem>, LeaseStoreError> {
        const OP: &str = "unreadable_items";
        let mut found = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let output = self
                .send(
                    OP,
                    Kind::Read,
                    self.client
                        .scan()
                        .table_name(&self.table)
                        .consistent_read(true)
                        .set_exclusive_start_key(start.take())
                        .send(),
                )
                .await
                .map_err(|e| to_store_error(OP, "Scan", &self.table, "none", e))?;
            for item in output.items() {
                if let Err(Malformed { lease_key, reason }) = schema::item_to_lease(item) {
                    let Some(lease_key) = lease_key else {
                        // The table's key attribute is a string by schema; an item without one cannot be addressed.
                        continue;
                    };
                    found.push(UnreadableItem { lease_key, reason, raw: item.clone() });
                }
            }
            match output.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(found),
            }
        }
    }

    /// Applies `repair` to `item`, on condition that the item still holds exactly the contents `item` was read
    /// with (every attribute, same value). [`LeaseStoreError::ConditionFailed`] when it changed meanwhile.
    pub async fn apply_repair(&self, item: &UnreadableItem, repair: &Repair) -> Result<(), LeaseStoreError> {
        const OP: &str = "apply_repair";
        const CONDITION: &str = "repair: the item must still hold the contents read";
        let mut expr = Expr::default();
        let condition = unchanged(&item.raw, &mut expr);
        let (names, values) = expr.finish();
        match repair {
            Repair::Rewrite { lease, .. } => {
                let request = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(schema::lease_to_item(lease)))
                    .condition_expression(condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values);
                self.send(OP, Kind::Write, request.send())
                    .await
                    .map_err(|e| to_store_error(OP, "PutItem", &item.lease_key, CONDITION, e))?;
            }
            Repair::Delete { .. } => {
                let request = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(schema::key_of(&item.lease_key)))
                    .condition_expression(condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values);
                self.send(OP, Kind::Write, request.send())
                    .await
                    .map_err(|e| to_store_error(OP, "DeleteItem", &item.lease_key, CONDITION, e))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "repair_tests.rs"]
mod tests;
