//! A fault-injecting HTTP/1.1 proxy on loopback, put in front of an emulator so that workers see what the emulators
//! never do: throttling, 5xx, answers later than their timeout, and connections dropped mid-response
//! ([`FaultKind`]). Faults follow a seeded [`FaultPlan`] and are switched on and off at run time through
//! [`FaultProxy::control`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kcl_tests::proxy::{FaultKind, FaultPlan, FaultProxy, Flavor};
//! let proxy = FaultProxy::start(kcl_tests::emulators().dynamodb_endpoint(), Flavor::DynamoDb, 42).await?;
//! // point clients at proxy.endpoint() ...
//! proxy.control().set(Some(FaultPlan::mixed(0.3, std::time::Duration::from_secs(5))));
//! # Ok(()) }
//! ```
//!
//! Plain HTTP/1.1 only (what the SDK speaks to an `http://` endpoint). Each request is forwarded on a fresh
//! upstream connection, so a stale pooled connection can never make the proxy itself fail a request; responses are
//! streamed (a fan-out subscription over HTTP/1.1 would pass), but the fan-out path over HTTP/2 is not proxied.

mod cutting;
mod faults;
mod http;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub use cutting::CuttingProxy;
pub use faults::{FaultControl, FaultKind, FaultPlan, FaultStats, Flavor, SplitMix64};

/// A running proxy; stops (with every connection it serves) when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    control: Arc<FaultControl>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (`http://host:port`), faults off, draws
    /// seeded with `seed`.
    pub async fn start(upstream: &str, flavor: Flavor, seed: u64) -> io::Result<Self> {
        let upstream = upstream
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/').to_owned())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the upstream must be an http:// URL"))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let control = Arc::new(FaultControl::new(seed));
        let task = tokio::spawn(accept_loop(listener, Arc::new(upstream), flavor, control.clone()));
        Ok(Self { addr, control, task })
    }

    /// The URL clients use instead of the emulator's.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fault switch and counters.
    pub fn control(&self) -> &Arc<FaultControl> {
        &self.control
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: Arc<String>, flavor: Flavor, control: Arc<FaultControl>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((client, _)) = listener.accept().await else { continue };
        let _ = client.set_nodelay(true);
        let (upstream, control) = (upstream.clone(), control.clone());
        connections.spawn(async move {
            if let Err(error) = serve(client, &upstream, flavor, &control).await {
                tracing::debug!(%error, "proxy connection ended with an error");
            }
        });
    }
}

/// Serves one client connection, request after request.
async fn serve(client: TcpStream, upstream: &str, flavor: Flavor, control: &FaultControl) -> io::Result<()> {
    let (client_read, mut client_write) = client.into_split();
    let mut client_read = BufReader::new(client_read);
    loop {
        let Some(request) = http::read_head(&mut client_read, true).await? else { return Ok(()) };
        let body = http::read_body(request.framing, &mut client_read).await?;
        let fault = control.decide_for(&body);
        if let Some((kind, _, n)) = fault
            && kind.answers_itself()
        {
            http::write_all(&mut client_write, &kind.response(flavor, n)).await?;
        } else {
            let server = TcpStream::connect(upstream).await?;
            let _ = server.set_nodelay(true);
            let (server_read, mut server_write) = server.into_split();
            let mut server_read = BufReader::new(server_read);
            http::write_all(&mut server_write, &request.raw).await?;
            http::write_all(&mut server_write, &body).await?;
            let Some(response) = http::read_head(&mut server_read, false).await? else {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "upstream closed without answering"));
            };
            match fault {
                None => {
                    http::write_all(&mut client_write, &response.raw).await?;
                    http::copy_body(response.framing, &mut server_read, &mut client_write).await?;
                }
                Some((FaultKind::Delay, delay, _)) => {
                    let body = http::read_body(response.framing, &mut server_read).await?;
                    tokio::time::sleep(delay).await;
                    http::write_all(&mut client_write, &response.raw).await?;
                    http::write_all(&mut client_write, &body).await?;
                }
                Some((FaultKind::ShortRecordsAnswer, _, _)) => {
                    let body = http::read_body(response.framing, &mut server_read).await?;
                    let body = if response.framing == http::Framing::Chunked { http::dechunk(&body)? } else { body };
                    let body = drop_last_record_result(body);
                    http::write_all(&mut client_write, &http::with_length(&response.raw, body.len())).await?;
                    http::write_all(&mut client_write, &body).await?;
                }
                Some(_) => {
                    // Drop mid-response: the head and half the body, then close.
                    let body = http::read_body(response.framing, &mut server_read).await?;
                    http::write_all(&mut client_write, &response.raw).await?;
                    http::write_all(&mut client_write, &body[..body.len() / 2]).await?;
                    return Ok(());
                }
            }
            if !response.keep_alive {
                return Ok(());
            }
        }
        if !request.keep_alive {
            return Ok(());
        }
    }
}

/// A JSON answer with its `Records` list one entry shorter (`FailedRecordCount` left as it was); anything else as is.
fn drop_last_record_result(body: Vec<u8>) -> Vec<u8> {
    let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(&body) else { return body };
    match answer.get_mut("Records").and_then(serde_json::Value::as_array_mut) {
        Some(records) if !records.is_empty() => {
            records.pop();
            answer.to_string().into_bytes()
        }
        _ => body,
    }
}
