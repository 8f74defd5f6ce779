//! The public LeaseStore contract suite against `DynamoLeaseStore` on DynamoDB Local: one test per case, each on a
//! fresh table (with the owner index and the heartbeat table, as a production fleet would use them).

mod dynamo_lease_store_contract {
    use kcl_dynamo_lease::DynamoLeaseStore;

    async fn fresh_store() -> DynamoLeaseStore {
        let client = kcl_tests::emulators().dynamodb_client().await;
        let table = kcl_tests::unique_name("contract");
        match DynamoLeaseStore::builder(client, table).worker_heartbeats(true).build().await {
            Ok(store) => store,
            Err(error) => panic!("could not create a lease table on DynamoDB Local: {error}"),
        }
    }

    kcl_core::lease_store_contract_tests!(fresh_store);
}
