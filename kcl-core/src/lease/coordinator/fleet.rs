//! What the table says about the fleet: listing every lease (and heartbeat) into the fleet view that the taker and
//! a stopping worker decide from, and fencing a dead worker's heartbeat before its leases are taken.

use tokio::time::Instant;

use super::config::RenewalMode;
use super::io;
use super::state::Shared;
use crate::lease::Lease;

/// Lists the lease table (and heartbeats in heartbeat mode) and records the observations. Returns the listing.
pub(crate) async fn list_and_observe(shared: &Shared) -> Option<Vec<Lease>> {
    let config = &shared.config;
    let started = Instant::now();
    let leases = match io::read(shared, "list_leases", config.list_timeout(), || shared.store.list_everything()).await {
        Ok(listing) => {
            // Unreadable items are reported, never taken: see `unreadable` for why their shards wait for a repair.
            shared.unreadable.observe(&listing.unreadable, &shared.metrics.unreadable);
            listing.leases
        }
        Err(error) => {
            tracing::warn!(%error, "could not list leases; skipping this take cycle");
            return None;
        }
    };
    let listed_at = Instant::now();
    let heartbeats = if config.renewal_mode() == RenewalMode::WorkerHeartbeat {
        match io::read(shared, "list_heartbeats", config.list_timeout(), || shared.store.list_heartbeats()).await {
            Ok(heartbeats) => Some((heartbeats, Instant::now())),
            Err(error) => {
                tracing::warn!(%error, "could not list heartbeats; skipping this take cycle");
                return None;
            }
        }
    } else {
        None
    };
    let mut state = shared.state();
    state.view.observe_leases(&leases, listed_at);
    if let Some((heartbeats, at)) = heartbeats {
        state.view.observe_heartbeats(&heartbeats, &leases, at);
    }
    state.last_table_read = Some(state.last_table_read.map_or(started, |t| t.max(started)));
    // Listings may overlap (the taker's and a stopping worker's): keep the one that began last.
    if state.listed.is_none_or(|(previous, _)| previous <= started) {
        state.listing = leases.clone();
        state.listed = Some((started, listed_at));
    }
    Some(leases)
}

/// For a stopping worker choosing whom to hand a lease to: lists again unless the last listing began after the
/// shutdown did and is younger than one renewal interval. An older listing misleads both ways. Its content may
/// predate the fleet's last moves (three workers that just converged: the taker's listing can show the others'
/// leases unowned). And judged from it every other worker may look expired: the taker lists about once per lease
/// duration, so just before its next listing each counter it saw was last seen to change a lease duration ago
/// (per-lease mode). Either way there is no live receiver and the lease would be released instead of handed over.
/// A live worker renews at least once per renewal interval, so a listing that young, compared with the one before
/// it, shows each live owner's counter moving.
pub(crate) async fn ensure_listing_since_stop(shared: &Shared) {
    let fresh = |shared: &Shared| {
        let state = shared.state();
        match (state.listed, state.stopping_since) {
            (Some((started, ended)), Some(stop)) => {
                started >= stop && ended.elapsed() < shared.config.renewal_interval()
            }
            _ => false,
        }
    };
    if fresh(shared) {
        return;
    }
    let _relist = shared.relist.lock().await;
    if !fresh(shared) {
        list_and_observe(shared).await;
    }
}

/// Heartbeat mode: before taking leases of a worker judged dead, bump its heartbeat from the value we saw go stale.
/// Success proves no renewal of that worker landed since, and makes every later one fail its condition, so the
/// worker self-fences (see the renewer's `self_fence_all`) and can never extend its validity past the renewal we saw. Returns
/// whether the fence is in place.
pub(crate) async fn fence_heartbeat(shared: &Shared, worker: &str) -> bool {
    let Some(expected) = shared.state().view.heartbeat_of(worker) else { return false };
    let config = &shared.config;
    for attempt in 0..3 {
        let result =
            io::call("renew_heartbeat", config.call_timeout(), shared.store.renew_heartbeat(worker, expected)).await;
        match result {
            Ok(counter) => {
                tracing::debug!(%worker, "fenced the heartbeat of a dead worker");
                shared.state().view.record_fence(worker, counter);
                return true;
            }
            // A retry meeting a changed heartbeat cannot tell our first attempt from a renewal: treat it as alive.
            Err(error) if error.is_retryable() && attempt < 2 => tokio::time::sleep(io::backoff(shared, attempt)).await,
            Err(error) => {
                tracing::debug!(%error, %worker, "could not fence heartbeat; not taking its leases this cycle");
                return false;
            }
        }
    }
    false
}
