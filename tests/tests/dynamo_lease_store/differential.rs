//! The same random sequence of calls on `DynamoLeaseStore` and on `MemoryLeaseStore` (the contract's reference
//! reading) gives the same results and leaves the same leases and heartbeats.

use bytes::Bytes;
use kcl_core::lease::{Lease, LeaseStore, LeaseStoreError, MemoryLeaseStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::*;

const KEYS: [&str; 3] = ["shardId-0", "shardId-1", "shardId-2"];
const WORKERS: [&str; 3] = ["w0", "w1", "w2"];

/// A call's outcome, comparable across stores: the value, or the error class.
#[derive(Debug, PartialEq)]
enum Outcome {
    Value(String),
    ConditionFailed,
    Other(String),
}

fn outcome<T: std::fmt::Debug>(result: Result<T, LeaseStoreError>) -> Outcome {
    match result {
        Ok(value) => Outcome::Value(format!("{value:?}")),
        Err(LeaseStoreError::ConditionFailed { .. }) => Outcome::ConditionFailed,
        Err(other) => Outcome::Other(other.to_string()),
    }
}

/// One random call, aimed near the current state so both success and failure paths are taken.
async fn step(store: &dyn LeaseStore, rng: &mut StdRng, current: &dyn Fn(&str) -> Option<Lease>, op: u32) -> Outcome {
    let key = KEYS[(op as usize / 17) % KEYS.len()];
    let worker = WORKERS[rng.random_range(0..WORKERS.len())];
    let existing = current(key);
    let counter = existing.as_ref().map_or(0, |l| l.lease_counter);
    // Mostly the right counter, sometimes a stale or future one.
    let counter = match rng.random_range(0..6) {
        0 => counter.saturating_sub(1),
        1 => counter + 1,
        _ => counter,
    };
    // Mostly the lease's owner (or its checkpoint owner), sometimes another worker.
    let owner = match (rng.random_range(0..4), existing.as_ref()) {
        (0, _) | (_, None) => worker.to_string(),
        (1, Some(l)) => l.checkpointing_owner().unwrap_or(worker).to_string(),
        (_, Some(l)) => l.lease_owner.clone().unwrap_or_else(|| worker.to_string()),
    };
    let f = fence(key, &owner, counter);
    match rng.random_range(0..14) {
        0 => {
            let mut new = if rng.random_bool(0.5) { owned(key, worker, counter) } else { lease(key) };
            new.parent_shard_ids = vec!["shardId-a".into(), "shardId-b".into()];
            outcome(store.create_lease_if_not_exists(&new).await)
        }
        1 | 2 => outcome(store.renew_lease(&f).await),
        3 | 4 => outcome(store.take_lease(key, counter, worker).await),
        5 => outcome(store.release_lease(&f).await),
        6 => outcome(store.evict_lease(key, &owner).await),
        7 => outcome(store.assign_for_handoff(&f, worker).await),
        8 => outcome(store.update_checkpoint(&f, &seq(u128::from(op))).await),
        9 => {
            let state = rng.random_bool(0.5).then(|| Bytes::from(format!("state-{op}")));
            outcome(store.prepare_checkpoint(&f, &seq(u128::from(op)), state).await)
        }
        10 => {
            let children: Vec<String> = (0..rng.random_range(0..3)).map(|i| format!("child-{i}")).collect();
            outcome(store.update_child_shards(&f, &children).await)
        }
        11 if rng.random_bool(0.2) => outcome(store.delete_lease(key).await),
        11 => outcome(store.get_lease(key).await),
        12 => {
            let expected = if rng.random_bool(0.3) { None } else { Some(u64::from(op % 3)) };
            outcome(store.renew_heartbeat(worker, expected).await)
        }
        _ => outcome(store.list_leases_by_owner(worker).await.map(|leases| {
            let mut keys: Vec<String> = leases.into_iter().map(|l| l.lease_key).collect();
            keys.sort();
            keys
        })),
    }
}

#[tokio::test]
async fn matches_the_in_memory_reference_store() {
    let (dynamo, _, _) = store("ddb-differential").await;
    let memory = MemoryLeaseStore::new();
    for seed in 0..3u64 {
        let mut rng_dynamo = StdRng::seed_from_u64(seed);
        let mut rng_memory = StdRng::seed_from_u64(seed);
        for op in 0..150u32 {
            // Both stores draw the same random numbers and aim at the same (reference) state.
            let mut snapshot = Vec::new();
            for key in KEYS {
                snapshot.push(memory.get_lease(key).await.unwrap());
            }
            let current = |key: &str| snapshot.iter().flatten().find(|l| l.lease_key == key).cloned();
            let expected = step(&memory, &mut rng_memory, &current, op).await;
            let actual = step(&dynamo, &mut rng_dynamo, &current, op).await;
            assert_eq!(actual, expected, "seed {seed} op {op}");
            for key in KEYS {
                assert_eq!(
                    dynamo.get_lease(key).await.unwrap(),
                    memory.get_lease(key).await.unwrap(),
                    "seed {seed} op {op} {key}"
                );
            }
        }
        assert_eq!(dynamo.list_heartbeats().await.unwrap(), memory.list_heartbeats().await.unwrap());
    }
}
