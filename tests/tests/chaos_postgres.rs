//! The chaos suite with PostgreSQL leases and a transactional sink, CI-sized (about 3 minutes): the same fleet,
//! kills, pauses, restarts and reshards as `chaos.rs` (faults are injected on Kinesis only; PostgreSQL has no
//! proxy), with every `verify-worker` keeping its leases in PostgreSQL and committing each record to a sink table in
//! the transaction that carries its checkpoint. The verifier's rules hold as in the DynamoDB run, and the sink must
//! hold every put record exactly once although the delivery logs show redeliveries.
//!
//! Longer: `KCL_CHAOS_DURATION_SECS=600 scripts/test --test chaos_postgres -- --nocapture` (settings as in
//! `kcl_tests::chaos`; `KCL_CHAOS_STORE` is fixed to `postgres` here).

use std::time::Duration;

use kcl_tests::chaos::{ChaosConfig, ChaosStore, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_with_postgres_leases_and_a_transactional_sink() {
    let mut config = ChaosConfig::from_env().unwrap();
    config.store = ChaosStore::Postgres;
    if std::env::var_os("KCL_CHAOS_DURATION_SECS").is_none() {
        config.duration = Duration::from_secs(60);
    }
    let seed = config.seed;
    let outcome = run(config.clone()).await.unwrap_or_else(|e| panic!("chaos run (seed {seed:#x}) could not run: {e}"));
    outcome.assert_passed(&config, &format!("KCL_CHAOS_SEED={seed:x} (PostgreSQL)"));
}
