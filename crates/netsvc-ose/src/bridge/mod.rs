//! The bridge: OSE connections run for a netsvc [`Runtime`].
//!
//! Each OSE connection is one task that owns its socket and all of that connection's state
//! (`link`). Toward netsvc it uses nothing but the public API: a service of the OSE peer
//! becomes a local proxy service (same name, audience and groups) whose calls go out as
//! `$S::REQUEST`; each netsvc service the registry shows is announced to the peer under a
//! receiver name of its own, and the peer's calls to it become ordinary calls; report
//! subscriptions cross as `SUBSCRIPTION-REQUESTED` one way and as monitors the other. So
//! netsvc code sees OSE services as it sees native ones, and an OSE process sees the
//! netsvc exchange as one more OSE process.

mod config;
mod link;

pub use config::{IpPrefix, OseConfig};

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netsvc::{Retry, Runtime};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ids::Ids;
use config::Context;

/// The OSE side of a netsvc runtime: listens for OSE peers and connects to OSE servers.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use netsvc::{Retry, Runtime};
/// use netsvc_ose::bridge::{OseBridge, OseConfig};
/// use std::time::Duration;
///
/// let rt = Runtime::new();
/// let bridge = OseBridge::new(&rt, OseConfig::default());
/// // OSE clients connect here and see this runtime's services (and those of its exchange).
/// let listener = bridge.listen("127.0.0.1:11112").await?;
/// // And this runtime takes part in an OSE exchange server's exchange.
/// let connector = bridge.connect("127.0.0.1:11000", Retry::every(Duration::from_secs(1)));
/// # drop((listener, connector)); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OseBridge {
    context: Arc<Context>,
}

impl OseBridge {
    /// A bridge for `runtime`.
    pub fn new(runtime: &Runtime, config: OseConfig) -> Self {
        let host = hostname();
        Self {
            context: Arc::new(Context {
                runtime: runtime.clone(),
                config,
                ids: Ids::new(Ipv4Addr::LOCALHOST),
                identity: format!("{host}:{}", std::process::id()),
            }),
        }
    }

    /// Accepts OSE peers (clients, or servers linking as peers) on `address`. Stops when
    /// the returned listener is dropped; the connections it accepted stay up.
    pub async fn listen(&self, address: &str) -> io::Result<OseListener> {
        let listener = netsvc::exchange::bind_tcp(address).await?;
        let local = listener.local_addr()?;
        if !local.ip().is_loopback() {
            tracing::warn!(%local, "the OSE listener is reachable beyond this machine: the OSE protocol has no TLS and no logins");
        }
        let context = self.context.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) if !context.config.admits(peer.ip()) => {
                        // As the original's `authorise(host)`: closed before anything is
                        // read; the peer sees a failed attempt.
                        tracing::info!(%peer, "OSE peer refused: its address is not allowed");
                        drop(stream);
                    }
                    Ok((stream, peer)) => {
                        let context = context.clone();
                        tokio::spawn(async move {
                            let ended = link::run(context, stream, link::Side::Accepted).await;
                            log_end(peer, &ended);
                        });
                    }
                    Err(e) => {
                        // Out of descriptors, say: wait instead of spinning.
                        tracing::warn!(error = %e, "accepting an OSE connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(OseListener { local, task })
    }

    /// Connects to the OSE exchange server at `address` as an exchange client, with the
    /// original's retry and reconnect behaviour (`retry`); runs until the returned
    /// connector is dropped.
    pub fn connect(&self, address: &str, retry: Retry) -> OseConnector {
        let (state_tx, state_rx) = watch::channel(false);
        let context = self.context.clone();
        let address = address.to_owned();
        let task = tokio::spawn(async move {
            let mut failures: u32 = 0;
            loop {
                // Bounded, so that a server that drops the SYN is tried again at the
                // next retry rather than after the kernel's two minutes.
                let limit = context.config.handshake_timeout;
                let connected = tokio::time::timeout(limit, TcpStream::connect(&address))
                    .await
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                    });
                match connected {
                    Ok(stream) => {
                        let peer = stream.peer_addr().ok();
                        let ended = link::run(
                            context.clone(),
                            stream,
                            link::Side::Connecting(state_tx.clone()),
                        )
                        .await;
                        let _ = state_tx.send(false);
                        if let Some(peer) = peer {
                            log_end(peer, &ended);
                        }
                        // A connection that got established resets the count: the next
                        // attempt is the first after a loss.
                        if ended.established {
                            failures = 0;
                        } else {
                            failures = failures.saturating_add(1);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%address, error = %e, "OSE server not reachable");
                        failures = failures.saturating_add(1);
                    }
                }
                if !retry.retries() {
                    break;
                }
                tokio::time::sleep(retry.delay(failures.saturating_sub(1))).await;
            }
        });
        OseConnector {
            task,
            established: state_rx,
        }
    }
}

fn log_end(peer: SocketAddr, ended: &link::Ended) {
    match &ended.outcome {
        Ok(_) => tracing::info!(%peer, "OSE connection closed"),
        Err(e) => tracing::warn!(%peer, error = %e, "OSE connection closed"),
    }
}

/// A listening OSE port; dropping it stops accepting.
#[derive(Debug)]
pub struct OseListener {
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl OseListener {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for OseListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection to an OSE server, kept up; dropping it closes it.
#[derive(Debug)]
pub struct OseConnector {
    task: JoinHandle<()>,
    established: watch::Receiver<bool>,
}

impl OseConnector {
    /// Whether the connection is up and both handshakes are done.
    pub fn is_established(&self) -> bool {
        *self.established.borrow()
    }

    /// Waits until the connection is established (once more, after a loss), or `timeout`
    /// passes; true if it is.
    pub async fn established_within(&self, timeout: Duration) -> bool {
        let mut established = self.established.clone();
        tokio::time::timeout(timeout, established.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for OseConnector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// This machine's host name, as the original's process identity starts with.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
