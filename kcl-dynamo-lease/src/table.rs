//! Table management for the builder: describe, create, check the key schema, wait until usable, and the
//! `LeaseOwnerToLeaseKeyIndex` global secondary index.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode as SdkBillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ProvisionedThroughput, ScalarAttributeType, TableDescription, TableStatus,
};

use crate::error::{DynamoLeaseError, classify};
use crate::metrics::{Kind, record_metric};
use crate::schema::{LEASE_KEY, LEASE_OWNER};

/// How a table this store creates is billed. Has no effect on an existing table (as in Java KCL, which never changes
/// the billing mode of a table it did not create).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BillingMode {
    /// On-demand capacity. The default, as in Java KCL 2.x and 3.x (`LeaseManagementConfig.billingMode`).
    #[default]
    PayPerRequest,
    /// Provisioned capacity, as in Java KCL 1.x (`initialLeaseTableReadCapacity` / `initialLeaseTableWriteCapacity`,
    /// both 10 there). The owner index, when created, gets the same capacity.
    Provisioned {
        /// Read capacity units (at least 1).
        read_capacity_units: i64,
        /// Write capacity units (at least 1).
        write_capacity_units: i64,
    },
}

/// Name of the global secondary index Java KCL 3.x adds to the lease table: hash `leaseOwner`, range `leaseKey`,
/// keys only. Used to find one worker's leases without scanning the table.
pub const LEASE_OWNER_INDEX_NAME: &str = "LeaseOwnerToLeaseKeyIndex";

/// The table a builder needs.
pub(crate) struct TableSpec<'a> {
    pub(crate) name: &'a str,
    /// Its only key: a string hash key.
    pub(crate) hash_key: &'static str,
    /// For messages: "lease table", "worker heartbeat table".
    pub(crate) role: &'static str,
    pub(crate) billing: BillingMode,
    pub(crate) create_if_missing: bool,
    pub(crate) with_owner_index: bool,
    pub(crate) deletion_protection: bool,
    pub(crate) active_timeout: Duration,
}

fn build_error(what: &str, err: BuildError) -> DynamoLeaseError {
    DynamoLeaseError::InvalidConfig(format!("could not build the {what} request: {err}"))
}

fn key_element(name: &str, key_type: KeyType) -> Result<KeySchemaElement, DynamoLeaseError> {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().map_err(|e| build_error("key", e))
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, DynamoLeaseError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| build_error("attribute", e))
}

fn throughput(read: i64, write: i64) -> Result<ProvisionedThroughput, DynamoLeaseError> {
    ProvisionedThroughput::builder()
        .read_capacity_units(read)
        .write_capacity_units(write)
        .build()
        .map_err(|e| build_error("throughput", e))
}

/// `Ok(None)` when the table does not exist.
pub(crate) async fn describe(client: &Client, table: &str) -> Result<Option<TableDescription>, DynamoLeaseError> {
    let result = client.describe_table().table_name(table).send().await;
    record_metric("build", Kind::Control, result.as_ref().map_or_else(|e| classify(e).outcome(), |_| "success"));
    match result {
        Ok(output) => Ok(output.table),
        Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(None),
        Err(err) => Err(DynamoLeaseError::from_sdk("DescribeTable", table, err)),
    }
}

/// Makes sure the table exists with the right key schema and is usable; returns its description.
pub(crate) async fn ensure_table(client: &Client, spec: &TableSpec<'_>) -> Result<TableDescription, DynamoLeaseError> {
    match describe(client, spec.name).await? {
        Some(existing) => {
            check_key_schema(&existing, spec)?;
            if is_usable(&existing) {
                return Ok(existing);
            }
        }
        None if !spec.create_if_missing => {
            return Err(DynamoLeaseError::TableNotFound { table: spec.name.to_owned(), hash_key: spec.hash_key });
        }
        None => create_table(client, spec).await?,
    }
    let ready = wait_until_usable(client, spec).await?;
    // Checked again: when two workers start together, the table may have been created by the other one.
    check_key_schema(&ready, spec)?;
    Ok(ready)
}

/// ACTIVE, or UPDATING (an index being added): reads and writes work in both, as Java KCL's `leaseTableExists`
/// also assumes.
fn is_usable(table: &TableDescription) -> bool {
    matches!(table.table_status(), Some(TableStatus::Active | TableStatus::Updating))
}

/// Refuses a table whose key is not exactly one string hash key named `spec.hash_key`.
pub(crate) fn check_key_schema(table: &TableDescription, spec: &TableSpec<'_>) -> Result<(), DynamoLeaseError> {
    let keys = table.key_schema();
    let hash_ok = matches!(keys, [only] if only.attribute_name() == spec.hash_key && *only.key_type() == KeyType::Hash);
    let type_ok = table
        .attribute_definitions()
        .iter()
        .any(|d| d.attribute_name() == spec.hash_key && *d.attribute_type() == ScalarAttributeType::S);
    if hash_ok && type_ok {
        return Ok(());
    }
    let found = keys
        .iter()
        .map(|k| {
            let kind = table
                .attribute_definitions()
                .iter()
                .find(|d| d.attribute_name() == k.attribute_name())
                .map_or("?", |d| d.attribute_type().as_str());
            format!("{} {} ({kind})", k.attribute_name(), k.key_type().as_str())
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(DynamoLeaseError::IncompatibleTable {
        table: spec.name.to_owned(),
        reason: format!(
            "its key schema is [{found}], but a {} needs exactly one key: `{}` (S) as the hash key, with no range \
             key. Use another table name, or delete this table if it is not used by anything else",
            spec.role, spec.hash_key
        ),
    })
}

async fn create_table(client: &Client, spec: &TableSpec<'_>) -> Result<(), DynamoLeaseError> {
    let mut request = client
        .create_table()
        .table_name(spec.name)
        .key_schema(key_element(spec.hash_key, KeyType::Hash)?)
        .attribute_definitions(string_attribute(spec.hash_key)?);
    request = match spec.billing {
        BillingMode::PayPerRequest => request.billing_mode(SdkBillingMode::PayPerRequest),
        BillingMode::Provisioned { read_capacity_units, write_capacity_units } => request
            .billing_mode(SdkBillingMode::Provisioned)
            .provisioned_throughput(throughput(read_capacity_units, write_capacity_units)?),
    };
    if spec.with_owner_index {
        // Created with the table rather than added afterwards (as Java KCL does), so a new table never needs a
        // backfill; the index is the same either way.
        let mut index = GlobalSecondaryIndex::builder()
            .index_name(LEASE_OWNER_INDEX_NAME)
            .key_schema(key_element(LEASE_OWNER, KeyType::Hash)?)
            .key_schema(key_element(LEASE_KEY, KeyType::Range)?)
            .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build());
        if let BillingMode::Provisioned { read_capacity_units, write_capacity_units } = spec.billing {
            index = index.provisioned_throughput(throughput(read_capacity_units, write_capacity_units)?);
        }
        request = request
            .attribute_definitions(string_attribute(LEASE_OWNER)?)
            .global_secondary_indexes(index.build().map_err(|e| build_error("index", e))?);
    }
    if spec.deletion_protection {
        request = request.deletion_protection_enabled(true);
    }
    let result = request.send().await;
    record_metric("build", Kind::Control, result.as_ref().map_or_else(|e| classify(e).outcome(), |_| "success"));
    match result {
        Ok(_) => {
            tracing::info!(table = spec.name, role = spec.role, "created DynamoDB table");
            Ok(())
        }
        // Another worker created it between our DescribeTable and CreateTable: fine, wait for it like ours.
        Err(err) if err.code() == Some("ResourceInUseException") => Ok(()),
        Err(err) => Err(DynamoLeaseError::from_sdk("CreateTable", spec.name, err)),
    }
}

/// Polls DescribeTable with exponential backoff (250 ms doubling to 5 s) until the table is usable.
async fn wait_until_usable(client: &Client, spec: &TableSpec<'_>) -> Result<TableDescription, DynamoLeaseError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        let status = match describe(client, spec.name).await? {
            Some(table) if is_usable(&table) => return Ok(table),
            Some(table) => table.table_status().map_or("unknown".to_owned(), |s| s.as_str().to_owned()),
            // Just after CreateTable, DescribeTable may not see the table yet.
            None => "not yet visible".to_owned(),
        };
        let waited = started.elapsed();
        if waited >= spec.active_timeout {
            return Err(DynamoLeaseError::TableNotActive { table: spec.name.to_owned(), status, waited });
        }
        tracing::debug!(table = spec.name, status, "waiting for the table to become ACTIVE");
        tokio::time::sleep(delay.min(spec.active_timeout - waited)).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// What the store knows about the owner index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IndexState {
    /// Usable for queries.
    Active,
    /// Being created or backfilled (or its creation was requested and failed): check again later.
    Pending,
    /// Not there and not being created, or there with another key schema: never used.
    Absent,
}

/// The owner index's state in a table description.
pub(crate) fn owner_index_state(table: &TableDescription) -> IndexState {
    let Some(index) = table.global_secondary_indexes().iter().find(|i| i.index_name() == Some(LEASE_OWNER_INDEX_NAME))
    else {
        return IndexState::Absent;
    };
    let keys_ok = matches!(index.key_schema(), [hash, range]
        if hash.attribute_name() == LEASE_OWNER && *hash.key_type() == KeyType::Hash
            && range.attribute_name() == LEASE_KEY && *range.key_type() == KeyType::Range);
    if !keys_ok {
        tracing::warn!(
            table = table.table_name().unwrap_or_default(),
            index = LEASE_OWNER_INDEX_NAME,
            "the owner index does not have Java KCL's key schema (hash leaseOwner, range leaseKey); \
             listing leases by owner will scan the table instead"
        );
        return IndexState::Absent;
    }
    match index.index_status() {
        Some(IndexStatus::Active) if index.backfilling() != Some(true) => IndexState::Active,
        Some(IndexStatus::Deleting) => IndexState::Absent,
        _ => IndexState::Pending,
    }
}

/// Adds the owner index to an existing table (as Java KCL 3.x does on start-up). Does not wait for the backfill,
/// which can take minutes on a large table: until it is done, the store scans. Failure is not fatal for the same
/// reason — the index only saves reads.
pub(crate) async fn add_owner_index(client: &Client, table: &TableDescription, name: &str) -> IndexState {
    let mut action = CreateGlobalSecondaryIndexAction::builder()
        .index_name(LEASE_OWNER_INDEX_NAME)
        .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build());
    for key in [key_element(LEASE_OWNER, KeyType::Hash), key_element(LEASE_KEY, KeyType::Range)] {
        match key {
            Ok(key) => action = action.key_schema(key),
            Err(_) => return IndexState::Absent,
        }
    }
    // A provisioned table needs provisioned capacity on the index too; like Java KCL, copy the table's.
    let on_demand = table
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .is_some_and(|m| *m == SdkBillingMode::PayPerRequest);
    if !on_demand && let Some(provisioned) = table.provisioned_throughput() {
        let read = provisioned.read_capacity_units().unwrap_or(1).max(1);
        let write = provisioned.write_capacity_units().unwrap_or(1).max(1);
        match throughput(read, write) {
            Ok(t) => action = action.provisioned_throughput(t),
            Err(_) => return IndexState::Absent,
        }
    }
    let (Ok(action), Ok(owner_attr), Ok(key_attr)) =
        (action.build(), string_attribute(LEASE_OWNER), string_attribute(LEASE_KEY))
    else {
        return IndexState::Absent;
    };
    let result = client
        .update_table()
        .table_name(name)
        .attribute_definitions(owner_attr)
        .attribute_definitions(key_attr)
        .global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().create(action).build())
        .send()
        .await;
    record_metric("build", Kind::Control, result.as_ref().map_or_else(|e| classify(e).outcome(), |_| "success"));
    match result {
        Ok(output) => {
            tracing::info!(table = name, index = LEASE_OWNER_INDEX_NAME, "requested the owner index");
            output.table_description.as_ref().map_or(IndexState::Pending, owner_index_state)
        }
        Err(err) => {
            // Often another worker adding it at the same moment, or no UpdateTable permission.
            tracing::warn!(
                table = name,
                index = LEASE_OWNER_INDEX_NAME,
                error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err),
                "could not add the owner index; listing leases by owner scans the table until it exists"
            );
            IndexState::Pending
        }
    }
}

/// The store's view of the index: when it is pending, DescribeTable is asked at most once per `recheck`.
#[derive(Debug)]
pub(crate) struct OwnerIndex {
    state: Mutex<(IndexState, Instant)>,
    recheck: Duration,
}

impl OwnerIndex {
    pub(crate) fn new(state: IndexState, recheck: Duration) -> Self {
        Self { state: Mutex::new((state, Instant::now() + recheck)), recheck }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, (IndexState, Instant)> {
        // The guarded value is two plain fields, each always valid: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn is_active(&self) -> bool {
        self.lock().0 == IndexState::Active
    }

    /// Whether it is time to ask DynamoDB again about a pending index (and if so, pushes the next check out, so that
    /// concurrent callers do not all ask).
    pub(crate) fn due_for_recheck(&self) -> bool {
        let mut guard = self.lock();
        let now = Instant::now();
        if guard.0 == IndexState::Pending && now >= guard.1 {
            guard.1 = now + self.recheck;
            return true;
        }
        false
    }

    pub(crate) fn set(&self, state: IndexState) {
        let mut guard = self.lock();
        *guard = (state, Instant::now() + self.recheck);
    }
}
