//! `kcl-admin dashboard`: a live web page for one application — lease map (shards × owners, parents and children),
//! lag per shard with a sparkline, throughput and lease count per worker, recent lease moves, unreadable items —
//! served on loopback by default. It only reads the lease table and Kinesis, like `leases` and `lag`.
//!
//! * `state.rs`: what is shown and remembered across scans (lag samples, moves, counts), pure.
//! * `sample.rs`: one scan of the table and the stream.
//! * `render.rs`: the HTML.
//! * `server.rs`: the HTTP routes.
//!
//! This file runs them: it binds the address, prints the URL, then scans every interval until Ctrl-C.

mod render;
mod sample;
mod server;
mod state;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::connect::Aws;
use crate::error::AdminError;

/// How the dashboard runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Time between scans.
    pub interval: Duration,
    /// How far back lag samples and throughput go.
    pub window: Duration,
}

/// Serves the dashboard of `table` and `stream` until Ctrl-C; returns the exit code.
pub async fn run(aws: Aws, table: &str, stream: &str, options: Options) -> Result<i32, AdminError> {
    let listener = tokio::net::TcpListener::bind(options.bind)
        .await
        .map_err(|e| AdminError::Usage(format!("cannot listen on {} (--bind): {e}", options.bind)))?;
    let address = listener.local_addr().map_err(|e| AdminError::Output(e.to_string()))?;
    let mut history = state::History::new(table, stream, options.interval, options.window);
    let shared: server::Shared = Arc::new(Mutex::new(history.view().clone()));
    let server = tokio::spawn(server::serve(listener, shared.clone()));
    {
        let mut stdout = std::io::stdout().lock();
        // The URL line is what scripts (and the browser test) wait for.
        writeln!(stdout, "kcl-admin dashboard: table `{table}`, stream `{stream}` at http://{address}/")
            .and_then(|()| stdout.flush())
            .map_err(|e| AdminError::Output(e.to_string()))?;
    }
    let mut sampler = sample::Sampler::new(aws, table, stream);
    let mut ticks = tokio::time::interval(options.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticks.tick() => {
                let observation = sampler.scan().await;
                history.record(observation, sampler.unreadable_items());
                let view = history.view().clone();
                *shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = view;
            }
        }
    }
    server.abort();
    Ok(0)
}
