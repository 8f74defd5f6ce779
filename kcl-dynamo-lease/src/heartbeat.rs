//! Worker heartbeats, in their own table (`<lease table>-WorkerHeartbeats` by default): hash key `workerId` (S),
//! attribute `heartbeatCounter` (N).
//!
//! Not in the lease table: Java KCL workers sharing it would read a heartbeat item as a lease (no `entityType` filter
//! before 3.5, and 3.5 treats unknown items without one as leases) and try to take it.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use kcl_core::lease::{LeaseStoreError, WorkerHeartbeat};

use crate::error::{ErrorClass, classify, to_store_error};
use crate::expr::Expr;
use crate::metrics::Kind;
use crate::retried::{Attempts, unknown_outcome};
use crate::schema::{HEARTBEAT_COUNTER, Item, WORKER_ID, n, s};
use crate::store::DynamoLeaseStore;

impl DynamoLeaseStore {
    fn heartbeat_table_or_error(&self, operation: &'static str) -> Result<&str, LeaseStoreError> {
        self.heartbeat_table.as_deref().ok_or_else(|| {
            LeaseStoreError::fatal(
                operation,
                "worker heartbeats are disabled for this store: build it with \
                 `DynamoLeaseStore::builder(..).worker_heartbeats(true)`",
            )
        })
    }

    pub(crate) async fn heartbeat(&self, worker_id: &str, expected: Option<u64>) -> Result<u64, LeaseStoreError> {
        const OP: &str = "renew_heartbeat";
        let table = self.heartbeat_table_or_error(OP)?;
        let mut e = Expr::default();
        let counter = e.name(HEARTBEAT_COUNTER);
        let (condition, update) = match expected {
            None => {
                let key = e.name(WORKER_ID);
                (format!("attribute_not_exists({key})"), format!("SET {counter} = {}", e.value(n(1))))
            }
            Some(expected) => (
                format!("{counter} = {}", e.value(n(expected))),
                format!("SET {counter} = {counter} + {}", e.value(n(1))),
            ),
        };
        let (names, values) = e.finish();
        let attempts = Attempts::default();
        let request = self
            .client
            .update_item()
            .table_name(table)
            .key(WORKER_ID, s(worker_id))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::UpdatedNew)
            .customize()
            .interceptor(attempts.clone())
            .send();
        let output = self.send(OP, Kind::Write, request).await.map_err(|err| {
            if attempts.retried() && classify(&err) == ErrorClass::ConditionFailed {
                unknown_outcome(OP, worker_id)
            } else {
                to_store_error(OP, "UpdateItem", worker_id, "heartbeat: counter must match", err)
            }
        })?;
        match output.attributes.as_ref().and_then(|a| a.get(HEARTBEAT_COUNTER)) {
            Some(AttributeValue::N(text)) => text.parse().map_err(|_| {
                LeaseStoreError::fatal(OP, format!("heartbeat of `{worker_id}` has a non-integer heartbeatCounter"))
            }),
            _ => Err(LeaseStoreError::fatal(
                OP,
                format!("heartbeat of `{worker_id}` was written but no counter came back"),
            )),
        }
    }

    pub(crate) async fn heartbeats(&self) -> Result<Vec<WorkerHeartbeat>, LeaseStoreError> {
        const OP: &str = "list_heartbeats";
        let table = self.heartbeat_table_or_error(OP)?;
        let mut heartbeats = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let request =
                self.client.scan().table_name(table).consistent_read(true).set_exclusive_start_key(start.take()).send();
            let output =
                self.send(OP, Kind::Read, request).await.map_err(|e| to_store_error(OP, "Scan", table, "none", e))?;
            heartbeats.extend(output.items().iter().filter_map(|item| parse_heartbeat(table, item)));
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        heartbeats.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        Ok(heartbeats)
    }

    pub(crate) async fn remove_heartbeat(&self, worker_id: &str) -> Result<(), LeaseStoreError> {
        const OP: &str = "delete_heartbeat";
        let table = self.heartbeat_table_or_error(OP)?;
        let request = self.client.delete_item().table_name(table).key(WORKER_ID, s(worker_id)).send();
        self.send(OP, Kind::Write, request)
            .await
            .map_err(|e| to_store_error(OP, "DeleteItem", worker_id, "none", e))?;
        Ok(())
    }
}

/// A heartbeat item, or `None` (with a warning naming the worker) when it is not one this store wrote.
fn parse_heartbeat(table: &str, item: &Item) -> Option<WorkerHeartbeat> {
    let worker_id = match item.get(WORKER_ID) {
        Some(AttributeValue::S(id)) => id.clone(),
        _ => {
            tracing::warn!(table, "skipping a heartbeat item without a string workerId");
            return None;
        }
    };
    match item.get(HEARTBEAT_COUNTER) {
        Some(AttributeValue::N(text)) => match text.parse() {
            Ok(counter) => Some(WorkerHeartbeat { worker_id, counter }),
            Err(_) => {
                tracing::warn!(table, worker_id, "skipping a heartbeat whose heartbeatCounter is not an integer");
                None
            }
        },
        _ => {
            tracing::warn!(table, worker_id, "skipping a heartbeat without a numeric heartbeatCounter");
            None
        }
    }
}
