//! The public [`LeaseStore`] contract suite: run it against your own store (SQLite, PostgreSQL, Redis, …) to check
//! that it honours every rule in the [trait contract](super::LeaseStore) — conditional writes, the counter as a
//! fencing token, handoff, listing, heartbeats — the way [`MemoryLeaseStore`](super::MemoryLeaseStore) and
//! `DynamoLeaseStore` do.
//!
//! Each case is a public async function taking the store as `&Arc<S>` (`Arc` because the concurrency cases share it
//! with spawned tasks) and **expects a fresh, empty store**: it creates the leases and heartbeats it needs and checks
//! exact listings. A failing case panics with a message naming the case, the operation and what the contract
//! expected versus what the store did.
//!
//! Three ways to run it, all with the `test-util` feature of `kcl-core` in your `[dev-dependencies]`:
//!
//! * [`run_all`] runs every case in one test, each against a new store from your factory;
//! * [`lease_store_contract_tests!`](crate::lease_store_contract_tests) expands to one `#[test]` per case, so a
//!   failure names its case in the test report and cases can be filtered;
//! * [`cases`] lists them, and each case can be called on its own (`contract::take_unowned_lease(&store).await`).
//!
//! Run on a multi-thread runtime: the concurrency cases spawn racing tasks and mean more when they truly run in
//! parallel. The whole suite makes about 1,700 store calls, 1,150 of them in `pagination_over_many_leases` (which
//! creates a thousand leases with at most 32 calls in flight); it takes well under a second on the memory store.
//!
//! # Example
//!
//! In `tests/lease_store_contract.rs` of the crate that implements the store (here the memory store stands in):
//!
//! ```no_run
//! use kcl_core::lease::{MemoryLeaseStore, contract};
//!
//! /// Every case in one test; each case gets a fresh store from the factory.
//! #[tokio::test(flavor = "multi_thread")]
//! async fn my_store_honours_the_lease_store_contract() {
//!     contract::run_all(|| async { MemoryLeaseStore::new() }).await;
//! }
//!
//! /// Or one `#[test]` per case (`cargo test per_case::concurrent_takes_have_one_winner`), each on its own runtime.
//! mod per_case {
//!     use kcl_core::lease::MemoryLeaseStore;
//!     kcl_core::lease_store_contract_tests!(|| async { MemoryLeaseStore::new() });
//! }
//! # fn main() {}
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::LeaseStore;

mod basics;
mod check;
mod checkpoints;
mod listing;
mod ownership;

pub use basics::{
    concurrent_creates_have_one_winner, create_if_not_exists, delete_present_and_absent, every_field_round_trips,
    get_absent_and_present, writes_to_an_absent_lease_fail,
};
pub use checkpoints::{
    checkpoint_rejects_a_non_owner, checkpoint_rejects_a_stale_counter, checkpoint_resets_switches_and_pending,
    child_shards_update, handoff_blocks_renewal_and_keeps_child_shards_with_previous_owner,
    handoff_final_checkpoint_by_previous_owner, handoff_previous_owner_may_prepare, handoff_rejects_a_stale_fence,
    prepare_then_checkpoint, previous_owner_cannot_renew_after_handoff, take_clears_checkpoint_owner,
};
pub use listing::{
    counter_rises_by_one_per_successful_write, heartbeats, heartbeats_are_not_leases, list_all_and_by_owner,
    pagination_over_many_leases,
};
pub use ownership::{
    concurrent_takes_have_one_winner, evict, owner_switches_count_only_owner_changes, release_failures_change_nothing,
    release_then_take, renew_failures_change_nothing, renew_succeeds_for_the_holder,
    take_expired_lease_of_another_owner, take_rejects_a_stale_counter, take_unowned_lease,
};

/// One case of the suite, for harnesses that drive the cases themselves (see [`cases`]).
pub struct Case<S: ?Sized> {
    /// The case's name, which is also the name of its function in this module.
    pub name: &'static str,
    /// Runs the case against a fresh, empty store; panics when the store breaks the contract.
    pub run: fn(Arc<S>) -> BoxFuture<'static, ()>,
}

impl<S: ?Sized> std::fmt::Debug for Case<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish_non_exhaustive()
    }
}

/// The single list of cases, in run order; expands `@cases` into a `Vec<Case<S>>` and `@tests` into test functions.
#[doc(hidden)]
#[macro_export]
macro_rules! __lease_store_contract_cases {
    (@expand cases ($store:ty) [$($case:ident)*]) => {
        ::std::vec![$(
            $crate::lease::contract::Case::<$store> {
                name: ::std::stringify!($case),
                run: |store| ::std::boxed::Box::pin(async move { $crate::lease::contract::$case(&store).await }),
            }
        ),*]
    };
    (@expand tests ($factory:expr) [$($case:ident)*]) => {
        $(
            #[test]
            fn $case() {
                $crate::lease::contract::__run_case_blocking(::std::stringify!($case), $factory);
            }
        )*
    };
    (@$mode:ident $args:tt) => {
        $crate::__lease_store_contract_cases! { @expand $mode $args [
            create_if_not_exists
            concurrent_creates_have_one_winner
            get_absent_and_present
            every_field_round_trips
            writes_to_an_absent_lease_fail
            delete_present_and_absent
            renew_succeeds_for_the_holder
            renew_failures_change_nothing
            take_unowned_lease
            take_expired_lease_of_another_owner
            take_rejects_a_stale_counter
            owner_switches_count_only_owner_changes
            concurrent_takes_have_one_winner
            release_then_take
            release_failures_change_nothing
            evict
            checkpoint_rejects_a_stale_counter
            checkpoint_rejects_a_non_owner
            checkpoint_resets_switches_and_pending
            prepare_then_checkpoint
            handoff_final_checkpoint_by_previous_owner
            handoff_previous_owner_may_prepare
            handoff_rejects_a_stale_fence
            previous_owner_cannot_renew_after_handoff
            handoff_blocks_renewal_and_keeps_child_shards_with_previous_owner
            take_clears_checkpoint_owner
            child_shards_update
            list_all_and_by_owner
            pagination_over_many_leases
            heartbeats
            heartbeats_are_not_leases
            counter_rises_by_one_per_successful_write
        ] }
    };
}

/// Expands to one `#[test]` function per contract case, each named after its case and running it on its own
/// multi-thread runtime against a fresh store from `factory` (an expression for a `Fn() -> impl Future<Output = S>`,
/// evaluated once per test).
///
/// Invoke it inside a module of its own so that the test names (`heartbeats`, `evict`, …) cannot clash with yours;
/// the factory expression is resolved in that module. Your test crate needs no `tokio` macros for it.
///
/// ```no_run
/// mod lease_store_contract {
///     use kcl_core::lease::MemoryLeaseStore;
///     kcl_core::lease_store_contract_tests!(|| async { MemoryLeaseStore::new() });
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! lease_store_contract_tests {
    ($factory:expr $(,)?) => {
        $crate::__lease_store_contract_cases!(@tests ($factory));
    };
}

/// Every case of the suite, in the order [`run_all`] runs them.
pub fn cases<S: LeaseStore + ?Sized>() -> Vec<Case<S>> {
    crate::__lease_store_contract_cases!(@cases (S))
}

/// Runs every case, each against a fresh, empty store from `factory`; panics at the first case the store fails.
///
/// ```no_run
/// # use kcl_core::lease::{MemoryLeaseStore, contract};
/// # async fn example() {
/// contract::run_all(|| async { MemoryLeaseStore::new() }).await;
/// # }
/// ```
pub async fn run_all<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: LeaseStore,
{
    for case in cases::<S>() {
        run_case(&case, Arc::new(factory().await)).await;
    }
}

/// Runs one case; when it fails, says which case before passing the panic on (the panic message already names it,
/// but a panic raised inside the store itself would not).
async fn run_case<S: LeaseStore + ?Sized>(case: &Case<S>, store: Arc<S>) {
    if let Err(panic) = AssertUnwindSafe((case.run)(store)).catch_unwind().await {
        eprintln!("lease store contract: case `{}` failed", case.name);
        std::panic::resume_unwind(panic);
    }
}

/// What [`lease_store_contract_tests!`](crate::lease_store_contract_tests) expands to: runs the named case on a new
/// multi-thread runtime against a fresh store from `factory`.
#[doc(hidden)]
pub fn __run_case_blocking<F, Fut, S>(name: &str, factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: LeaseStore,
{
    let Some(case) = cases::<S>().into_iter().find(|case| case.name == name) else {
        panic!("lease store contract: no case named `{name}`");
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("lease store contract: cannot start a tokio runtime for case `{name}`: {error}"),
    };
    runtime.block_on(async { run_case(&case, Arc::new(factory().await)).await });
}
