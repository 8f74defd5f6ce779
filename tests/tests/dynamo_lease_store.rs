//! `DynamoLeaseStore` against DynamoDB Local: every write's condition, paging, table set-up, and compatibility with
//! lease items as Java KCL writes them. Each test uses its own table.

#[path = "dynamo_lease_store/common.rs"]
mod common;
#[path = "dynamo_lease_store/compat.rs"]
mod compat;
#[path = "dynamo_lease_store/conditions.rs"]
mod conditions;
#[path = "dynamo_lease_store/differential.rs"]
mod differential;
#[path = "dynamo_lease_store/faults.rs"]
mod faults;
#[path = "dynamo_lease_store/handoff.rs"]
mod handoff;
#[path = "dynamo_lease_store/paging.rs"]
mod paging;
#[path = "dynamo_lease_store/tables.rs"]
mod tables;
#[path = "dynamo_lease_store/unreadable.rs"]
mod unreadable;
