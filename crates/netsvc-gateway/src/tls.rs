//! HTTPS: a listener that hands axum only connections whose TLS handshake is done.
//!
//! Handshakes run in tasks of their own, so one slow or silent client cannot hold up the
//! accepts of the others; at most [`MAX_HANDSHAKES`] run at once (the accept loop waits for
//! a free one, so a flood of half-open connections queues in the kernel's backlog instead
//! of in memory), each has [`HANDSHAKE_TIMEOUT`], and one that sends nothing gives its place
//! up after 3 s. A flood of silent connections can still hold every place for those 3 s. A client that speaks plain HTTP to
//! the port is answered, in plain HTTP, that it must use HTTPS, rather than left to time
//! out on bytes it cannot read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use crate::logins::Peer;
use netsvc::security::certificate_names;

/// Handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 256;
/// Time a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a new connection has to send its first byte.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(3);

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

const NOT_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain\r\n\
Connection: close\r\n\
Content-Length: 50\r\n\
\r\n\
This port speaks HTTPS only: use an https:// URL.\n";

/// Connections that have completed their TLS handshake, as axum accepts them.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener`; handshakes with the settings in force in `config`
    /// when each connection arrives.
    pub(crate) fn new(
        listener: TcpListener,
        config: watch::Receiver<Arc<ServerConfig>>,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        // Handshaken connections wait here for axum's accept loop, which takes them as
        // fast as it can spawn their tasks; the handshake permits bound what is in flight.
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        tokio::spawn(accept_loop(listener, config, tx));
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    /// With the DNS names of the client's verified certificate, which can log it in.
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop has ended, which it does only once nothing accepts from
            // it: nothing more to hand out.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer::from(self.local))
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: watch::Receiver<Arc<ServerConfig>>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, Peer)>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // The server is gone: stop accepting.
            () = ready.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!("HTTPS accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(config.borrow().clone());
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&acceptor, stream));
            match handshake.await {
                Ok(Ok(Some(tls))) => {
                    // Verified against the listener's client CA, if it has one.
                    let names = certificate_names(tls.get_ref().1.peer_certificates());
                    let peer = Peer {
                        address: peer,
                        certificate_names: names.into(),
                    };
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Ok(None)) => tracing::info!("{peer}: plain HTTP on the HTTPS port, told so"),
                Ok(Err(e)) => tracing::info!("{peer}: TLS handshake failed: {e}"),
                Err(_) => tracing::info!("{peer}: TLS handshake timed out"),
            }
        });
    }
}

/// The TLS stream, or `None` if the client spoke something else (it has been answered).
async fn handshake(
    acceptor: &TlsAcceptor,
    mut stream: TcpStream,
) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    // A client that connects and says nothing gives up its handshake place soon.
    let peeked = tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no ClientHello"))??;
    if peeked == 1 && first[0] != TLS_HANDSHAKE_RECORD {
        // Read what the client sent (bounded) before answering and closing: closing with
        // unread bytes would reset the connection, and the client would not see the answer.
        let mut request = [0u8; 8192];
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut request)).await;
        stream.write_all(NOT_TLS).await?;
        stream.shutdown().await?;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while matches!(stream.read(&mut request).await, Ok(n) if n > 0) {}
        })
        .await;
        return Ok(None);
    }
    acceptor.accept(stream).await.map(Some)
}
