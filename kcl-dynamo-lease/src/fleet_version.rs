//! Refusing to share a lease table with a Java KCL 3.x fleet that runs 3.x lease assignment.
//!
//! Java KCL 3.x keeps a migration state item, key `Migration3.0`, whose `cv` attribute says which protocol the fleet
//! runs. KCL 3.5 keeps it in the lease table itself (`leaseKey = Migration3.0`, `entityType =
//! CLIENT_VERSION_MIGRATION`); KCL 3.0–3.4 in a separate table `<application>-CoordinatorState` (hash key `key`).
//! In `CLIENT_VERSION_3X` and `CLIENT_VERSION_3X_WITH_ROLLBACK` a leader assigns leases by writing owners directly,
//! and workers no longer take expired leases themselves: a worker speaking the 2.x protocol (this store's users)
//! would fight the leader over leases. So:
//!
//! * `build` refuses such a table with [`DynamoLeaseError::Kcl3Fleet`], which names the Java setting to change;
//! * a lease listing that meets such an item (the fleet switched to 3.x while this worker runs) fails with a fatal
//!   error, so the worker takes no lease; its own leases are reassigned by the 3.x leader and it loses them through
//!   the fence, never moving a checkpoint it no longer owns.
//!
//! A fleet in `CLIENT_VERSION_UPGRADE_FROM_2X` or `CLIENT_VERSION_2X` (Java `CoordinatorConfig.clientVersionConfig =
//! CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X`, or rolled back) runs the 2.x algorithms and is fine. It switches to 3.x
//! only when every lease owner publishes worker metrics, which kcl-rs workers do not: while a kcl-rs worker holds a
//! lease, a compatible fleet stays compatible.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::{DynamoLeaseError, classify};
use crate::metrics::{Kind, record_metric};
use crate::schema::{ENTITY_TYPE, Item, LEASE_KEY};

/// Key of Java KCL 3.x's migration state item.
pub(crate) const MIGRATION_KEY: &str = "Migration3.0";
/// Its attribute holding the fleet's client version.
const CLIENT_VERSION: &str = "cv";
/// Its `entityType` in the lease table (KCL 3.5).
const MIGRATION_ENTITY_TYPE: &str = "CLIENT_VERSION_MIGRATION";
/// Suffix of KCL 3.0–3.4's coordinator state table: `<application>-CoordinatorState`.
pub const COORDINATOR_STATE_TABLE_SUFFIX: &str = "-CoordinatorState";
/// Hash key of the coordinator state table.
const COORDINATOR_STATE_KEY: &str = "key";

/// Which lease protocol a Java KCL fleet runs, by its migration state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FleetProtocol {
    /// No 3.x state, or a 3.x fleet running the 2.x algorithms: kcl-rs can share the table.
    Kcl2Compatible,
    /// Leader-based 3.x assignment (or a version this store does not know, taken as newer): kcl-rs must not join.
    Kcl3,
}

/// The decision, from the `cv` attribute of the migration state item (`None`: no item).
pub(crate) fn judge(client_version: Option<&str>) -> FleetProtocol {
    match client_version {
        None | Some("CLIENT_VERSION_2X" | "CLIENT_VERSION_UPGRADE_FROM_2X") => FleetProtocol::Kcl2Compatible,
        // CLIENT_VERSION_3X, CLIENT_VERSION_3X_WITH_ROLLBACK, and CLIENT_VERSION_INIT: a 3.x worker is deciding
        // right now (it replaces INIT within milliseconds); refusing then costs a retry, guessing wrong a fight.
        Some(_) => FleetProtocol::Kcl3,
    }
}

/// If `item` (from the lease table) is the migration state item of a 3.x fleet: its client version.
pub(crate) fn kcl3_version_in_lease_table(item: &Item) -> Option<String> {
    let is_migration = matches!(item.get(LEASE_KEY), Some(AttributeValue::S(key)) if key == MIGRATION_KEY)
        || matches!(item.get(ENTITY_TYPE), Some(AttributeValue::S(kind)) if kind == MIGRATION_ENTITY_TYPE);
    if !is_migration {
        return None;
    }
    let version = client_version(item);
    (judge(version.as_deref()) == FleetProtocol::Kcl3).then(|| version.unwrap_or_else(|| "<no cv>".to_owned()))
}

fn client_version(item: &Item) -> Option<String> {
    match item.get(CLIENT_VERSION) {
        Some(AttributeValue::S(version)) => Some(version.clone()),
        _ => None,
    }
}

/// What a user must change, for error messages.
pub(crate) fn remedy(table: &str) -> String {
    format!(
        "lease table `{table}` belongs to a Java KCL 3.x fleet using leader-based lease assignment; kcl-rs speaks the \
         KCL 2.x lease protocol and would fight its leader over leases. Run the Java workers with \
         `CoordinatorConfig.clientVersionConfig(CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X)` and roll the application \
         back to 2.x-compatible mode with KCL's migration tool (`KclMigrationTool.py --mode rollback`), or give the \
         kcl-rs workers another application name (lease table)"
    )
}

/// Build-time check: reads the migration state from the lease table, then from the coordinator state table.
pub(crate) async fn check(client: &Client, lease_table: &str) -> Result<(), DynamoLeaseError> {
    let in_lease_table = get(client, lease_table, LEASE_KEY).await?;
    let coordinator_table = format!("{lease_table}{COORDINATOR_STATE_TABLE_SUFFIX}");
    let (item, location) = match in_lease_table {
        Some(item) => (Some(item), lease_table.to_owned()),
        None => (get(client, &coordinator_table, COORDINATOR_STATE_KEY).await?, coordinator_table),
    };
    let version = item.as_ref().and_then(client_version);
    match judge(version.as_deref()) {
        FleetProtocol::Kcl2Compatible => Ok(()),
        FleetProtocol::Kcl3 => Err(DynamoLeaseError::Kcl3Fleet {
            table: lease_table.to_owned(),
            client_version: version.unwrap_or_else(|| "<no cv>".to_owned()),
            found_in: location,
            remedy: remedy(lease_table),
        }),
    }
}

/// The migration state item of `table` (hash key `hash_key`), `None` when the item or the table does not exist.
async fn get(client: &Client, table: &str, hash_key: &str) -> Result<Option<Item>, DynamoLeaseError> {
    let result = client
        .get_item()
        .table_name(table)
        .key(hash_key, AttributeValue::S(MIGRATION_KEY.to_owned()))
        .consistent_read(true)
        .send()
        .await;
    record_metric("build", Kind::Read, result.as_ref().map_or_else(|e| classify(e).outcome(), |_| "success"));
    match result {
        Ok(output) => Ok(output.item),
        Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(None),
        Err(err) => Err(DynamoLeaseError::from_sdk("GetItem", table, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_by_client_version() {
        let table = [
            (None, FleetProtocol::Kcl2Compatible),
            (Some("CLIENT_VERSION_2X"), FleetProtocol::Kcl2Compatible),
            (Some("CLIENT_VERSION_UPGRADE_FROM_2X"), FleetProtocol::Kcl2Compatible),
            (Some("CLIENT_VERSION_3X_WITH_ROLLBACK"), FleetProtocol::Kcl3),
            (Some("CLIENT_VERSION_3X"), FleetProtocol::Kcl3),
            (Some("CLIENT_VERSION_INIT"), FleetProtocol::Kcl3),
            (Some("CLIENT_VERSION_4X"), FleetProtocol::Kcl3),
        ];
        for (version, expected) in table {
            assert_eq!(judge(version), expected, "{version:?}");
        }
    }

    fn item(pairs: &[(&str, &str)]) -> Item {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), AttributeValue::S((*v).to_owned()))).collect()
    }

    #[test]
    fn finds_the_migration_item_among_lease_table_items() {
        let migration = [("leaseKey", "Migration3.0"), ("entityType", "CLIENT_VERSION_MIGRATION")];
        let with = |cv: &str| {
            let mut i = item(&migration);
            i.insert("cv".into(), AttributeValue::S(cv.into()));
            i
        };
        assert_eq!(kcl3_version_in_lease_table(&with("CLIENT_VERSION_3X")).as_deref(), Some("CLIENT_VERSION_3X"));
        assert_eq!(kcl3_version_in_lease_table(&with("CLIENT_VERSION_UPGRADE_FROM_2X")), None);
        assert_eq!(kcl3_version_in_lease_table(&item(&[("leaseKey", "shardId-0"), ("entityType", "LEASE")])), None);
        assert_eq!(
            kcl3_version_in_lease_table(&item(&[("leaseKey", "w1"), ("entityType", "WORKER_METRIC_STATS")])),
            None
        );
    }
}
