//! The PostgreSQL lease store against the public `LeaseStore` contract suite, on the real PostgreSQL that
//! `scripts/test` starts (its URL in `KCL_TEST_POSTGRES_URL`). One test per case; each case gets its own tables.

use std::sync::atomic::{AtomicUsize, Ordering};

use kcl_postgres_lease::PostgresLeaseStore;

mod common;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A store on tables no other case uses (the suite expects a fresh, empty store).
async fn fresh_store() -> PostgresLeaseStore {
    let table = format!("contract_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    match PostgresLeaseStore::builder(&common::postgres_url()).table(table).open().await {
        Ok(store) => store,
        Err(error) => panic!("cannot open the PostgreSQL lease store: {error}"),
    }
}

mod postgres_lease_store_contract {
    kcl_core::lease_store_contract_tests!(super::fresh_store);
}
