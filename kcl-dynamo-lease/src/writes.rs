//! The conditional writes. Each is one UpdateItem whose ConditionExpression is the contract's condition and whose
//! UpdateExpression touches only the attributes the contract changes, so attributes this store does not know
//! (`throughputKBps`, `entityType`, anything a later KCL adds) are left as they are. The new counter is read from
//! the write's return values, never computed locally.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use bytes::Bytes;
use kcl_core::ExtendedSequenceNumber;
use kcl_core::lease::{Lease, LeaseFence, LeaseStoreError};

use crate::error::{ErrorClass, classify, to_store_error};
use crate::expr::Expr;
use crate::metrics::Kind;
use crate::retried::{Attempts, unknown_outcome};
use crate::schema::{
    self, CHECKPOINT, CHECKPOINT_OWNER, CHECKPOINT_SUB, CHILD_SHARD_IDS, Item, LEASE_COUNTER, LEASE_KEY, LEASE_OWNER,
    OWNER_SWITCHES, PENDING_CHECKPOINT, PENDING_CHECKPOINT_STATE, PENDING_CHECKPOINT_SUB, Parsed, n, s,
};
use crate::store::DynamoLeaseStore;

/// One conditional UpdateItem.
struct Update<'a> {
    operation: &'static str,
    lease_key: &'a str,
    /// The condition in words, for `ConditionFailed`.
    reason: &'static str,
    expr: Expr,
    update: String,
    condition: String,
}

/// `#counter = :counter` and `#counter = #counter + 1` in one place: every write here is fenced on the counter or
/// the owner and bumps the counter.
fn bump(e: &mut Expr) -> String {
    let c = e.name(LEASE_COUNTER);
    let one = e.value(n(1));
    format!("{c} = {c} + {one}")
}

fn owner_and_counter(e: &mut Expr, fence: &LeaseFence) -> String {
    let (o, c) = (e.name(LEASE_OWNER), e.name(LEASE_COUNTER));
    let (owner, counter) = (e.value(s(&fence.owner)), e.value(n(fence.counter)));
    format!("{o} = {owner} AND {c} = {counter}")
}

/// The checkpointing right: `checkpointOwner` during a handoff, else `leaseOwner`; and the counter.
fn may_checkpoint(e: &mut Expr, fence: &LeaseFence) -> String {
    let (c, o, cpo) = (e.name(LEASE_COUNTER), e.name(LEASE_OWNER), e.name(CHECKPOINT_OWNER));
    let (counter, me) = (e.value(n(fence.counter)), e.value(s(&fence.owner)));
    format!("{c} = {counter} AND ({cpo} = {me} OR (attribute_not_exists({cpo}) AND {o} = {me}))")
}

fn counter_of(operation: &'static str, lease_key: &str, attributes: Option<&Item>) -> Result<u64, LeaseStoreError> {
    match attributes.and_then(|a| a.get(LEASE_COUNTER)) {
        Some(AttributeValue::N(text)) => text.parse().map_err(|_| {
            LeaseStoreError::fatal(
                operation,
                format!("lease `{lease_key}` was written but its leaseCounter is not an integer"),
            )
        }),
        _ => Err(LeaseStoreError::fatal(
            operation,
            format!("lease `{lease_key}` was written but no leaseCounter came back"),
        )),
    }
}

impl DynamoLeaseStore {
    async fn update(&self, u: Update<'_>, returns: ReturnValue) -> Result<Option<Item>, LeaseStoreError> {
        let Update { operation, lease_key, reason, expr, update, condition } = u;
        let (names, values) = expr.finish();
        let attempts = Attempts::default();
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(schema::key_of(lease_key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(returns)
            .customize()
            .interceptor(attempts.clone())
            .send();
        let output = self.send(operation, Kind::Write, request).await.map_err(|e| {
            if attempts.retried() && classify(&e) == ErrorClass::ConditionFailed {
                unknown_outcome(operation, lease_key)
            } else {
                to_store_error(operation, "UpdateItem", lease_key, reason, e)
            }
        })?;
        Ok(output.attributes)
    }

    /// Runs `u` and returns the new counter.
    async fn update_counter(&self, u: Update<'_>) -> Result<u64, LeaseStoreError> {
        let (operation, lease_key) = (u.operation, u.lease_key);
        let attributes = self.update(u, ReturnValue::UpdatedNew).await?;
        counter_of(operation, lease_key, attributes.as_ref())
    }

    pub(crate) async fn create(&self, lease: &Lease) -> Result<bool, LeaseStoreError> {
        const OP: &str = "create_lease_if_not_exists";
        let mut e = Expr::default();
        let condition = format!("attribute_not_exists({})", e.name(LEASE_KEY));
        let (names, _) = e.finish();
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(schema::lease_to_item(lease)))
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .send();
        match self.send(OP, Kind::Write, request).await {
            Ok(_) => Ok(true),
            Err(err) if classify(&err) == ErrorClass::ConditionFailed => Ok(false),
            Err(err) => Err(to_store_error(OP, "PutItem", &lease.lease_key, "lease key must not exist", err)),
        }
    }

    pub(crate) async fn renew(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        let mut e = Expr::default();
        let held = owner_and_counter(&mut e, fence);
        let cpo = e.name(CHECKPOINT_OWNER);
        // No renewal during a handoff, so the previous owner's final checkpoint keeps a valid fence.
        let condition = format!("{held} AND attribute_not_exists({cpo})");
        let update = format!("SET {}", bump(&mut e));
        self.update_counter(Update {
            operation: "renew_lease",
            lease_key: &fence.lease_key,
            reason: "renew: owner and counter must match and no handoff may be in progress",
            expr: e,
            update,
            condition,
        })
        .await
    }

    pub(crate) async fn take(&self, lease_key: &str, expected: u64, new_owner: &str) -> Result<Lease, LeaseStoreError> {
        const OP: &str = "take_lease";
        const REASON: &str = "take: counter must match";
        // Attempt 1: the owner changes (the lease is unowned or someone else's): counter + 1, switches + 1.
        let mut e = Expr::default();
        let (k, o, c, sw, cpo) = (
            e.name(LEASE_KEY),
            e.name(LEASE_OWNER),
            e.name(LEASE_COUNTER),
            e.name(OWNER_SWITCHES),
            e.name(CHECKPOINT_OWNER),
        );
        let (counter, owner, zero) = (e.value(n(expected)), e.value(s(new_owner)), e.value(n(0)));
        let update = format!(
            "SET {o} = {owner}, {}, {sw} = if_not_exists({sw}, {zero}) + {one} REMOVE {cpo}",
            bump(&mut e),
            one = e.value(n(1))
        );
        let condition =
            format!("attribute_exists({k}) AND {c} = {counter} AND (attribute_not_exists({o}) OR {o} <> {owner})");
        let (names, values) = e.finish();
        let attempts = Attempts::default();
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(schema::key_of(lease_key)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .customize()
            .interceptor(attempts.clone())
            .send();
        let stored = match self.send(OP, Kind::Write, request).await {
            Ok(output) => return self.lease_from_write(OP, lease_key, output.attributes),
            Err(err) if attempts.retried() && classify(&err) == ErrorClass::ConditionFailed => {
                return Err(unknown_outcome(OP, lease_key));
            }
            Err(err) if classify(&err) == ErrorClass::ConditionFailed => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(ccf) if ccf.item.is_some() => ccf.item,
                // No item with the failure: the lease does not exist, or an older DynamoDB Local that does not
                // support ReturnValuesOnConditionCheckFailure. One consistent read settles it.
                _ => self.get_item(OP, lease_key).await?,
            },
            Err(err) => return Err(to_store_error(OP, "UpdateItem", lease_key, REASON, err)),
        };
        // Attempt 2, only when the item is at the expected counter and already names `new_owner` (re-taking one's
        // own expired lease, e.g. after a restart): same write without counting a switch.
        let already_owner = matches!(
            stored.as_ref().map(schema::item_to_lease),
            Some(Ok(Parsed::Lease(lease))) if lease.lease_counter == expected
                && lease.lease_owner.as_deref() == Some(new_owner)
        );
        if !already_owner {
            return Err(LeaseStoreError::condition_failed(lease_key, REASON));
        }
        let mut e = Expr::default();
        let (o, c, cpo) = (e.name(LEASE_OWNER), e.name(LEASE_COUNTER), e.name(CHECKPOINT_OWNER));
        let condition = format!("{c} = {} AND {o} = {}", e.value(n(expected)), e.value(s(new_owner)));
        let update = format!("SET {} REMOVE {cpo}", bump(&mut e));
        let attributes = self
            .update(
                Update { operation: OP, lease_key, reason: REASON, expr: e, update, condition },
                ReturnValue::AllNew,
            )
            .await?;
        self.lease_from_write(OP, lease_key, attributes)
    }

    fn lease_from_write(&self, op: &'static str, key: &str, item: Option<Item>) -> Result<Lease, LeaseStoreError> {
        match item.as_ref().map(schema::item_to_lease) {
            Some(Ok(Parsed::Lease(lease))) => Ok(*lease),
            _ => Err(LeaseStoreError::fatal(
                op,
                format!("lease `{key}` was written, but the item that came back is not a readable lease"),
            )),
        }
    }

    pub(crate) async fn release(&self, fence: &LeaseFence) -> Result<u64, LeaseStoreError> {
        let mut e = Expr::default();
        let condition = owner_and_counter(&mut e, fence);
        let update = format!("SET {} REMOVE {}, {}", bump(&mut e), e.name(LEASE_OWNER), e.name(CHECKPOINT_OWNER));
        self.update_counter(Update {
            operation: "release_lease",
            lease_key: &fence.lease_key,
            reason: "release: owner and counter must match",
            expr: e,
            update,
            condition,
        })
        .await
    }

    pub(crate) async fn evict(&self, lease_key: &str, expected_owner: &str) -> Result<u64, LeaseStoreError> {
        let mut e = Expr::default();
        let condition = format!("{} = {}", e.name(LEASE_OWNER), e.value(s(expected_owner)));
        let update = format!("SET {} REMOVE {}, {}", bump(&mut e), e.name(LEASE_OWNER), e.name(CHECKPOINT_OWNER));
        self.update_counter(Update {
            operation: "evict_lease",
            lease_key,
            reason: "evict: owner must match",
            expr: e,
            update,
            condition,
        })
        .await
    }

    pub(crate) async fn handoff(&self, fence: &LeaseFence, new_owner: &str) -> Result<u64, LeaseStoreError> {
        let mut e = Expr::default();
        let condition = owner_and_counter(&mut e, fence);
        let update = format!(
            "SET {o} = {new}, {cpo} = {old}, {bump}",
            o = e.name(LEASE_OWNER),
            new = e.value(s(new_owner)),
            cpo = e.name(CHECKPOINT_OWNER),
            old = e.value(s(&fence.owner)),
            bump = bump(&mut e),
        );
        self.update_counter(Update {
            operation: "assign_for_handoff",
            lease_key: &fence.lease_key,
            reason: "handoff: owner and counter must match",
            expr: e,
            update,
            condition,
        })
        .await
    }

    pub(crate) async fn checkpoint(
        &self,
        fence: &LeaseFence,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<u64, LeaseStoreError> {
        let mut e = Expr::default();
        let condition = may_checkpoint(&mut e, fence);
        let update = format!(
            "SET {cp} = {cpv}, {sub} = {subv}, {sw} = {zero}, {bump} REMOVE {p}, {psub}, {pstate}, {cpo}",
            cp = e.name(CHECKPOINT),
            cpv = e.value(s(checkpoint.checkpoint_str())),
            sub = e.name(CHECKPOINT_SUB),
            subv = e.value(n(checkpoint.sub_sequence())),
            sw = e.name(OWNER_SWITCHES),
            zero = e.value(n(0)),
            bump = bump(&mut e),
            p = e.name(PENDING_CHECKPOINT),
            psub = e.name(PENDING_CHECKPOINT_SUB),
            pstate = e.name(PENDING_CHECKPOINT_STATE),
            cpo = e.name(CHECKPOINT_OWNER),
        );
        self.update_counter(Update {
            operation: "update_checkpoint",
            lease_key: &fence.lease_key,
            reason: "checkpoint: counter must match and the caller must hold the checkpointing right",
            expr: e,
            update,
            condition,
        })
        .await
    }

    pub(crate) async fn prepare(
        &self,
        fence: &LeaseFence,
        pending: &ExtendedSequenceNumber,
        state: Option<Bytes>,
    ) -> Result<u64, LeaseStoreError> {
        let mut e = Expr::default();
        let condition = may_checkpoint(&mut e, fence);
        let mut update = format!(
            "SET {p} = {pv}, {psub} = {psubv}, {bump}",
            p = e.name(PENDING_CHECKPOINT),
            pv = e.value(s(pending.checkpoint_str())),
            psub = e.name(PENDING_CHECKPOINT_SUB),
            psubv = e.value(n(pending.sub_sequence())),
            bump = bump(&mut e),
        );
        let pstate = e.name(PENDING_CHECKPOINT_STATE);
        match state {
            Some(state) => {
                let value = e.value(AttributeValue::B(Blob::new(state.to_vec())));
                update.push_str(&format!(", {pstate} = {value}"));
            }
            None => update.push_str(&format!(" REMOVE {pstate}")),
        }
        self.update_counter(Update {
            operation: "prepare_checkpoint",
            lease_key: &fence.lease_key,
            reason: "prepare checkpoint: counter must match and the caller must hold the checkpointing right",
            expr: e,
            update,
            condition,
        })
        .await
    }

    pub(crate) async fn child_shards(&self, fence: &LeaseFence, children: &[String]) -> Result<u64, LeaseStoreError> {
        let mut e = Expr::default();
        let condition = may_checkpoint(&mut e, fence);
        let attr = e.name(CHILD_SHARD_IDS);
        let update = match schema::ss(children) {
            Some(set) => format!("SET {attr} = {}, {}", e.value(set), bump(&mut e)),
            // DynamoDB has no empty sets: "no children" is the attribute's absence, as in KCL.
            None => format!("SET {} REMOVE {attr}", bump(&mut e)),
        };
        self.update_counter(Update {
            operation: "update_child_shards",
            lease_key: &fence.lease_key,
            reason: "child shards: counter must match and the caller must hold the checkpointing right",
            expr: e,
            update,
            condition,
        })
        .await
    }

    pub(crate) async fn delete(&self, lease_key: &str) -> Result<(), LeaseStoreError> {
        const OP: &str = "delete_lease";
        let request = self.client.delete_item().table_name(&self.table).set_key(Some(schema::key_of(lease_key))).send();
        self.send(OP, Kind::Write, request)
            .await
            .map_err(|e| to_store_error(OP, "DeleteItem", lease_key, "none", e))?;
        Ok(())
    }
}
