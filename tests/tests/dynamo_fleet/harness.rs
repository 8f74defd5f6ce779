//! The shared fleet harness (`kcl_core::lease::fleet`) on a `DynamoLeaseStore` table of its own on DynamoDB Local,
//! with the tables deleted at teardown.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use kcl_core::lease::fleet::Fleet;
use kcl_core::lease::{LeaseCoordinatorConfig, RenewalMode};
use kcl_dynamo_lease::DynamoLeaseStore;

pub use kcl_core::lease::fleet::{Entry, Handover, Kind, config, next_checkpoint};

/// A fleet on its own DynamoDB Local table; derefs to the shared [`Fleet`].
pub struct DynamoFleet {
    fleet: Fleet<DynamoLeaseStore>,
    client: Client,
}

impl DynamoFleet {
    /// A fleet on a fresh table (and heartbeat table in heartbeat mode) holding `leases` unowned leases.
    /// Processors checkpoint every 500 ms and conditions are polled every 20 ms: each is a DynamoDB call.
    pub async fn new(leases: usize, config: LeaseCoordinatorConfig) -> Self {
        let client = kcl_tests::emulators().dynamodb_client().await;
        let table = kcl_tests::unique_name("fleet");
        let heartbeats = config.renewal_mode() == RenewalMode::WorkerHeartbeat;
        let dynamo = DynamoLeaseStore::builder(client.clone(), table).worker_heartbeats(heartbeats).build().await;
        let dynamo = Arc::new(dynamo.expect("create the lease table"));
        let mut fleet = Fleet::new(dynamo, leases, config).await;
        fleet.checkpoint_every = Some(Duration::from_millis(500));
        fleet.poll_every = Duration::from_millis(20);
        DynamoFleet { fleet, client }
    }

    /// Stops every worker like a crash and deletes the tables (best effort).
    pub async fn teardown(mut self) {
        for id in self.fleet.worker_ids() {
            self.fleet.kill(&id);
        }
        let tables = [Some(self.fleet.store.table_name()), self.fleet.store.heartbeat_table_name()];
        for table in tables.into_iter().flatten() {
            let _ = self.client.delete_table().table_name(table).send().await;
        }
    }
}

impl Deref for DynamoFleet {
    type Target = Fleet<DynamoLeaseStore>;

    fn deref(&self) -> &Self::Target {
        &self.fleet
    }
}

impl DerefMut for DynamoFleet {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.fleet
    }
}
