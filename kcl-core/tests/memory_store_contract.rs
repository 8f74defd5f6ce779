//! The public lease store contract suite against the reference store, both ways a third party would run it.

use kcl_core::lease::{FaultyLeaseStore, MemoryLeaseStore, contract};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_honours_the_lease_store_contract() {
    contract::run_all(|| async { MemoryLeaseStore::new() }).await;
}

/// One test per case, as the macro generates them.
mod per_case {
    use kcl_core::lease::MemoryLeaseStore;
    kcl_core::lease_store_contract_tests!(|| async { MemoryLeaseStore::new() });
}

/// With faults off, the fault-injecting wrapper is transparent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faulty_wrapper_with_faults_off_honours_the_lease_store_contract() {
    contract::run_all(|| async { FaultyLeaseStore::new(MemoryLeaseStore::new()) }).await;
}
