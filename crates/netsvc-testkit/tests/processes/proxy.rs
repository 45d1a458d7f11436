//! A TCP proxy inside the test, between a netsvc process and its server, that can misbehave
//! like a network: stop delivering in both directions without closing anything (a
//! partition, or a peer that froze behind a NAT), or deliver slowly toward the client (a
//! slow link or a slow reader).
//!
//! Each accepted connection gets a fresh connection to the upstream address and two pumps,
//! one per direction. [`Proxy::blackhole`] affects the connections open at that moment
//! only: a client that gives up on its dead link and reconnects gets a working one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Handle;

/// How often a paused pump looks again.
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Default)]
struct Connection {
    frozen: AtomicBool,
}

#[derive(Debug, Default)]
struct Shared {
    connections: Mutex<Vec<Arc<Connection>>>,
    /// Bytes per second toward the client; 0: unlimited.
    downstream_rate: AtomicU64,
    /// Bytes forwarded toward the client, over all connections.
    downstream_bytes: AtomicU64,
}

/// A running proxy; it stops when dropped (its runtime's tasks end with the runtime).
#[derive(Debug)]
pub(crate) struct Proxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on an ephemeral loopback port that forwards to `upstream`.
    pub(crate) fn start(handle: &Handle, upstream: &str) -> Self {
        let upstream: SocketAddr = upstream.parse().expect("an IP:PORT upstream");
        let listener = handle.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let accept = handle.spawn(accept(listener, upstream, shared.clone()));
        Self {
            address,
            shared,
            accept,
        }
    }

    /// Where clients connect.
    pub(crate) fn address(&self) -> String {
        self.address.to_string()
    }

    /// Every connection open now stops forwarding, both ways, and nothing is closed.
    pub(crate) fn blackhole(&self) {
        for c in self
            .shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            c.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// Limits the bytes per second toward the clients (`None`: unlimited).
    pub(crate) fn throttle(&self, bytes_per_second: Option<u64>) {
        self.shared
            .downstream_rate
            .store(bytes_per_second.unwrap_or(0), Ordering::SeqCst);
    }

    /// How many bytes went toward the clients so far.
    pub(crate) fn downstream_bytes(&self) -> u64 {
        self.shared.downstream_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        let socket = TcpSocket::new_v4().unwrap();
        // A small receive buffer toward the server, so that a throttled (slow) direction
        // pushes back on the server quickly instead of disappearing into kernel buffers.
        let _ = socket.set_recv_buffer_size(32 * 1024);
        let Ok(server) = socket.connect(upstream).await else {
            continue; // the client sees its connection closed
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let connection = Arc::new(Connection::default());
        shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(connection.clone());
        let (client_rx, client_tx) = client.into_split();
        let (server_rx, server_tx) = server.into_split();
        tokio::spawn(pump(client_rx, server_tx, connection.clone(), None));
        tokio::spawn(pump(server_rx, client_tx, connection, Some(shared.clone())));
    }
}

/// Copies one direction until either side ends; pauses while the connection is frozen;
/// with `downstream`, keeps to the proxy's rate limit and counts the bytes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    connection: Arc<Connection>,
    downstream: Option<Arc<Shared>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if connection.frozen.load(Ordering::SeqCst) {
            // Neither read nor write nor close: the bytes stay where they are.
            tokio::time::sleep(POLL).await;
            continue;
        }
        let rate = downstream
            .as_ref()
            .map_or(0, |s| s.downstream_rate.load(Ordering::SeqCst));
        // Under a rate limit, read at most what 10 ms allow, then wait those 10 ms.
        let want = if rate == 0 {
            buf.len()
        } else {
            usize::try_from(rate / 100)
                .unwrap_or(usize::MAX)
                .clamp(1, buf.len())
        };
        let n = tokio::select! {
            r = from.read(&mut buf[..want]) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            // Look at the flags again now and then, even when nothing arrives.
            () = tokio::time::sleep(POLL) => continue,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if let Some(shared) = &downstream {
            shared
                .downstream_bytes
                .fetch_add(n as u64, Ordering::SeqCst);
            if rate != 0 {
                let pause = Duration::from_secs_f64(n as f64 / rate as f64);
                tokio::time::sleep(pause).await;
            }
        }
    }
    let _ = to.shutdown().await;
}
