//! The lease item, attribute for attribute as Java KCL's `DynamoDBLeaseSerializer` and
//! `DynamoDBMultiStreamLeaseSerializer` (3.5.1) write it, and the tolerant reader for items written by either side.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use kcl_core::lease::Lease;
use kcl_core::{ExtendedSequenceNumber, HashKeyRange};

/// A DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

// Attribute names: exactly Java KCL's.
pub(crate) const LEASE_KEY: &str = "leaseKey";
pub(crate) const LEASE_OWNER: &str = "leaseOwner";
pub(crate) const LEASE_COUNTER: &str = "leaseCounter";
pub(crate) const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
pub(crate) const CHECKPOINT: &str = "checkpoint";
pub(crate) const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
pub(crate) const PENDING_CHECKPOINT: &str = "pendingCheckpoint";
pub(crate) const PENDING_CHECKPOINT_SUB: &str = "pendingCheckpointSubSequenceNumber";
pub(crate) const PENDING_CHECKPOINT_STATE: &str = "pendingCheckpointState";
pub(crate) const PARENT_SHARD_ID: &str = "parentShardId";
pub(crate) const CHILD_SHARD_IDS: &str = "childShardIds";
pub(crate) const STARTING_HASH_KEY: &str = "startingHashKey";
pub(crate) const ENDING_HASH_KEY: &str = "endingHashKey";
pub(crate) const CHECKPOINT_OWNER: &str = "checkpointOwner";
pub(crate) const STREAM_NAME: &str = "streamName";
pub(crate) const SHARD_ID: &str = "shardId";
pub(crate) const ENTITY_TYPE: &str = "entityType";
/// The `entityType` of a lease. KCL 3.5 keeps other entities (leader lock, stream info, migration state) in the
/// lease table under other values; items without the attribute are leases written by older versions.
pub(crate) const ENTITY_TYPE_LEASE: &str = "LEASE";

/// Worker heartbeat table attributes.
pub(crate) const WORKER_ID: &str = "workerId";
pub(crate) const HEARTBEAT_COUNTER: &str = "heartbeatCounter";

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A string set; `None` when empty, because DynamoDB rejects empty sets (KCL then omits the attribute).
/// Duplicates are dropped for the same reason.
pub(crate) fn ss(values: &[String]) -> Option<AttributeValue> {
    let mut values = values.to_vec();
    values.sort();
    values.dedup();
    (!values.is_empty()).then_some(AttributeValue::Ss(values))
}

pub(crate) fn key_of(lease_key: &str) -> Item {
    HashMap::from([(LEASE_KEY.to_owned(), s(lease_key))])
}

/// The full item for a new lease, as Java KCL's `toDynamoRecord` writes it: the attributes it always writes
/// (`leaseKey`, `leaseCounter`, `ownerSwitchesSinceCheckpoint`, `checkpoint`, `checkpointSubSequenceNumber`,
/// `entityType`) and the optional ones only when they have a value.
pub(crate) fn lease_to_item(lease: &Lease) -> Item {
    let mut item = key_of(&lease.lease_key);
    item.insert(LEASE_COUNTER.into(), n(lease.lease_counter));
    if let Some(owner) = &lease.lease_owner {
        item.insert(LEASE_OWNER.into(), s(owner));
    }
    item.insert(OWNER_SWITCHES.into(), n(lease.owner_switches_since_checkpoint));
    item.insert(CHECKPOINT.into(), s(lease.checkpoint.checkpoint_str()));
    item.insert(CHECKPOINT_SUB.into(), n(lease.checkpoint.sub_sequence()));
    if let Some(parents) = ss(&lease.parent_shard_ids) {
        item.insert(PARENT_SHARD_ID.into(), parents);
    }
    if let Some(children) = ss(&lease.child_shard_ids) {
        item.insert(CHILD_SHARD_IDS.into(), children);
    }
    if let Some(pending) = &lease.pending_checkpoint {
        item.insert(PENDING_CHECKPOINT.into(), s(pending.checkpoint_str()));
        item.insert(PENDING_CHECKPOINT_SUB.into(), n(pending.sub_sequence()));
    }
    if let Some(state) = &lease.pending_checkpoint_state {
        // Binary, as KCL's checkpoint path writes it (its create path writes a number here by mistake; see `read`).
        item.insert(PENDING_CHECKPOINT_STATE.into(), AttributeValue::B(Blob::new(state.to_vec())));
    }
    if let Some(range) = &lease.hash_key_range {
        item.insert(STARTING_HASH_KEY.into(), s(range.start.to_string()));
        item.insert(ENDING_HASH_KEY.into(), s(range.end.to_string()));
    }
    if let Some(checkpoint_owner) = &lease.checkpoint_owner {
        item.insert(CHECKPOINT_OWNER.into(), s(checkpoint_owner));
    }
    item.insert(ENTITY_TYPE.into(), s(ENTITY_TYPE_LEASE));
    if let Some(stream) = &lease.stream_identifier {
        // Multi-stream leases also carry the stream and the bare shard id (KCL's multi-stream serializer).
        item.insert(STREAM_NAME.into(), s(stream));
        item.insert(SHARD_ID.into(), s(&lease.shard_id));
    }
    item
}

/// What an item in the lease table turned out to be.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A lease.
    Lease(Box<Lease>),
    /// Another KCL entity kept in the lease table (`entityType` other than `LEASE`): not ours to read.
    NotALease,
}

/// Why an item could not be read. Never holds attribute values: the reason names the attribute and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// The lease key, when the item had a readable one.
    pub(crate) lease_key: Option<String>,
    /// What was wrong, e.g. "`leaseCounter` is missing".
    pub(crate) reason: String,
}

struct Reader<'a> {
    item: &'a Item,
    key: Option<&'a str>,
}

impl<'a> Reader<'a> {
    fn bad(&self, reason: String) -> Malformed {
        Malformed { lease_key: self.key.map(str::to_owned), reason }
    }

    fn opt_s(&self, name: &str) -> Result<Option<&'a str>, Malformed> {
        match self.item.get(name) {
            None => Ok(None),
            Some(AttributeValue::S(value)) => Ok(Some(value)),
            Some(_) => Err(self.bad(format!("`{name}` is not a string"))),
        }
    }

    fn opt_n(&self, name: &str) -> Result<Option<u64>, Malformed> {
        match self.item.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(value)) => {
                value.parse::<u64>().map(Some).map_err(|_| self.bad(format!("`{name}` is not a non-negative integer")))
            }
            Some(_) => Err(self.bad(format!("`{name}` is not a number"))),
        }
    }

    fn ss(&self, name: &str) -> Result<Vec<String>, Malformed> {
        match self.item.get(name) {
            None => Ok(Vec::new()),
            Some(AttributeValue::Ss(values)) => {
                // A set has no order; sort so that reads are deterministic.
                let mut values = values.clone();
                values.sort();
                Ok(values)
            }
            Some(_) => Err(self.bad(format!("`{name}` is not a string set"))),
        }
    }

    fn checkpoint(&self, name: &str, sub_name: &str) -> Result<Option<ExtendedSequenceNumber>, Malformed> {
        let sub = self.opt_n(sub_name)?.unwrap_or(0);
        match self.opt_s(name)? {
            // KCL treats an empty pending checkpoint as none.
            None | Some("") => Ok(None),
            Some(text) => ExtendedSequenceNumber::parse(text, sub)
                .map(Some)
                .map_err(|_| self.bad(format!("`{name}` is neither a sentinel nor a decimal sequence number"))),
        }
    }
}

/// Reads a lease table item. Tolerates what Java KCL tolerates (absent optional attributes, no `entityType`), and
/// refuses what it could only misread (a missing key or counter, wrong types, an unparsable checkpoint).
pub(crate) fn item_to_lease(item: &Item) -> Result<Parsed, Malformed> {
    let key = match item.get(LEASE_KEY) {
        Some(AttributeValue::S(key)) => Some(key.as_str()),
        _ => None,
    };
    let r = Reader { item, key };
    let Some(lease_key) = key else {
        return Err(r.bad(format!("`{LEASE_KEY}` is missing or not a string")));
    };
    match r.opt_s(ENTITY_TYPE)? {
        None | Some(ENTITY_TYPE_LEASE) => {}
        Some(_) => return Ok(Parsed::NotALease),
    }
    let lease_counter = r.opt_n(LEASE_COUNTER)?.ok_or_else(|| r.bad(format!("`{LEASE_COUNTER}` is missing")))?;
    let checkpoint =
        r.checkpoint(CHECKPOINT, CHECKPOINT_SUB)?.ok_or_else(|| r.bad(format!("`{CHECKPOINT}` is missing")))?;
    let pending_checkpoint = r.checkpoint(PENDING_CHECKPOINT, PENDING_CHECKPOINT_SUB)?;
    let pending_checkpoint_state = match item.get(PENDING_CHECKPOINT_STATE) {
        None => None,
        Some(AttributeValue::B(blob)) => Some(Bytes::copy_from_slice(blob.as_ref())),
        // Java KCL's `toDynamoRecord` (3.5.1) writes the checkpoint sub-sequence number, a number, into this
        // attribute when it creates a lease that has state; its own reader then sees no state. Read it the same way.
        Some(AttributeValue::N(_)) => None,
        Some(_) => return Err(r.bad(format!("`{PENDING_CHECKPOINT_STATE}` is not binary"))),
    };
    let hash_key_range = match (r.opt_s(STARTING_HASH_KEY)?, r.opt_s(ENDING_HASH_KEY)?) {
        // Like KCL, a range needs both ends; one alone is ignored.
        (Some(start), Some(end)) if !start.is_empty() && !end.is_empty() => Some(
            HashKeyRange::parse(start, end)
                .ok_or_else(|| r.bad("the hash key range is not two ordered decimal 128-bit numbers".into()))?,
        ),
        _ => None,
    };
    let stream_identifier = r.opt_s(STREAM_NAME)?.map(str::to_owned);
    let shard_id = match (r.opt_s(SHARD_ID)?, &stream_identifier) {
        (Some(shard_id), _) => shard_id.to_owned(),
        // A multi-stream item without `shardId`: the key is `<stream>:<shard>`.
        (None, Some(stream)) => lease_key
            .strip_prefix(stream.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
            .unwrap_or(lease_key)
            .to_owned(),
        (None, None) => lease_key.to_owned(),
    };
    Ok(Parsed::Lease(Box::new(Lease {
        lease_key: lease_key.to_owned(),
        lease_owner: r.opt_s(LEASE_OWNER)?.map(str::to_owned),
        lease_counter,
        owner_switches_since_checkpoint: r.opt_n(OWNER_SWITCHES)?.unwrap_or(0),
        checkpoint,
        pending_checkpoint,
        pending_checkpoint_state,
        parent_shard_ids: r.ss(PARENT_SHARD_ID)?,
        child_shard_ids: r.ss(CHILD_SHARD_IDS)?,
        hash_key_range,
        checkpoint_owner: r.opt_s(CHECKPOINT_OWNER)?.map(str::to_owned),
        stream_identifier,
        shard_id,
    })))
}

impl Malformed {
    /// The report a listing carries for this item.
    pub(crate) fn to_report(&self) -> kcl_core::lease::UnreadableLease {
        kcl_core::lease::UnreadableLease::new(
            self.lease_key.clone().unwrap_or_else(|| format!("<no string `{LEASE_KEY}`>")),
            self.reason.clone(),
        )
    }
}

/// Sorts a page of items into leases and reports of unreadable items; other entity types are ignored.
pub(crate) fn sort_items<'a>(
    items: impl IntoIterator<Item = &'a Item>,
) -> (Vec<Lease>, Vec<kcl_core::lease::UnreadableLease>) {
    let (mut leases, mut unreadable) = (Vec::new(), Vec::new());
    for item in items {
        match item_to_lease(item) {
            Ok(Parsed::Lease(lease)) => leases.push(*lease),
            Ok(Parsed::NotALease) => {}
            Err(malformed) => unreadable.push(malformed.to_report()),
        }
    }
    (leases, unreadable)
}

/// Reads an item, or skips it: malformed items are logged by key and reason (never their contents) and other
/// entity types are ignored. `table` names the table in the warning.
pub(crate) fn lease_or_skip(table: &str, item: &Item) -> Option<Lease> {
    match item_to_lease(item) {
        Ok(Parsed::Lease(lease)) => Some(*lease),
        Ok(Parsed::NotALease) => None,
        Err(Malformed { lease_key, reason }) => {
            tracing::warn!(
                table,
                lease_key = lease_key.as_deref().unwrap_or("<missing>"),
                reason = reason.as_str(),
                "skipping a lease table item this store cannot read"
            );
            None
        }
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
