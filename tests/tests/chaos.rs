//! The chaos suite, CI-sized (about 3 minutes: 60 s of chaos per lease renewal mode): 4 `verify-worker` processes
//! consume a 4-shard stream on kinesis-mock through fault-injecting proxies while a seeded scheduler kills, stops,
//! pauses and restarts them, splits and merges shards and injects throttling, 5xx, timeouts, dropped connections and
//! conditional-check storms on the lease table; one worker's processor is now and then slower than its lease, and a producer puts records with 50 keys meanwhile.
//! After the fleet drains, the verifier checks at-least-once delivery, per-key order, that every duplicate is
//! explained, the final checkpoints, and that no zombie checkpoint was accepted. Graceful stops must exit 0.
//!
//! The same test is the long run: `KCL_CHAOS_SEED=<hex> KCL_CHAOS_DURATION_SECS=1800 scripts/test --test chaos --
//! --nocapture` (see `kcl_tests::chaos` for every setting). A failing run prints its seed and keeps its files.

use std::time::Duration;

use kcl_tests::chaos::{ChaosConfig, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos() {
    let base = ChaosConfig::from_env().unwrap();
    // Both renewal modes, one after the other with the same seed, unless KCL_CHAOS_RENEWAL picks one; 60 s each
    // unless KCL_CHAOS_DURATION_SECS says otherwise.
    let modes = match std::env::var_os("KCL_CHAOS_RENEWAL") {
        Some(_) => vec![base.renewal],
        None => vec!["per-lease", "heartbeat"],
    };
    let halve = modes.len() > 1 && std::env::var_os("KCL_CHAOS_DURATION_SECS").is_none();
    for renewal in modes {
        let mut config = ChaosConfig { renewal, ..base.clone() };
        if halve {
            config.duration = Duration::from_secs(60);
        }
        let seed = config.seed;
        let outcome =
            run(config.clone()).await.unwrap_or_else(|e| panic!("chaos run (seed {seed:#x}) could not run: {e}"));
        outcome.assert_passed(&config, &format!("KCL_CHAOS_SEED={seed:x} KCL_CHAOS_RENEWAL={renewal}"));
    }
}
