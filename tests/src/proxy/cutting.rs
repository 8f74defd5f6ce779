//! A loopback TCP proxy that can cut every connection passing through it: "the network dropped the connection",
//! e.g. under an open `SubscribeToShard` event stream. It forwards bytes unchanged, so TLS passes through it (the
//! certificate names 127.0.0.1, where the proxy listens too).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy; dropping it stops accepting and closes every connection.
#[derive(Debug)]
pub struct CuttingProxy {
    port: u16,
    cut: watch::Sender<u64>,
    live: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// Counts a connection as live while it exists.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CuttingProxy {
    /// Listens on a free port of 127.0.0.1 and forwards each connection to `127.0.0.1:upstream_port`.
    pub async fn start(upstream_port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream_port));
        let (cut, cuts) = watch::channel(0u64);
        let (live, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = tokio::spawn({
            let (live, accepted) = (Arc::clone(&live), Arc::clone(&accepted));
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    live.fetch_add(1, Ordering::SeqCst);
                    let guard = Live(Arc::clone(&live));
                    let mut cuts = cuts.clone();
                    cuts.mark_unchanged();
                    tokio::spawn(async move {
                        let _guard = guard;
                        let Ok(mut outbound) = TcpStream::connect(upstream).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            // Both sockets are dropped: the client sees its connection closed mid-response.
                            _ = cuts.changed() => {}
                        }
                    });
                }
            }
        });
        Ok(Self { port, cut, live, accepted, task })
    }

    /// The port the proxy listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every connection open now; returns how many there were. New connections are accepted as before.
    pub fn cut_all(&self) -> usize {
        let open = self.live.load(Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
        open
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|generation| *generation += 1);
    }
}
