//! Listening sockets: accepting connections, admitting them (the `authorise` hook and the
//! connection limit) and handing each to a link task.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use netsvc_proto::wire::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::OwnedSemaphorePermit;

use super::shared::{ExchangeShared, PeerAddr, stopped};
use super::{Endpoints, run, send_close};

/// Accepts TCP connections until the exchange stops.
pub(crate) async fn accept_tcp(listener: TcpListener, exchange: Arc<ExchangeShared>) {
    let mut stop = exchange.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut stop) => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let local = stream
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                admit(
                    &exchange,
                    stream,
                    PeerAddr::Tcp(peer),
                    Endpoints::accepted(peer.to_string(), local),
                );
            }
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    exchange.listener_ended();
}

/// A Unix socket this process created, to be removed when it stops listening, and only if
/// the file there is still the socket it created.
pub(crate) struct OwnSocket {
    path: PathBuf,
    identity: (u64, u64),
}

impl OwnSocket {
    /// Binds a Unix socket at `path` without ever destroying what is there: a file that is
    /// not a socket is refused, a socket that something still answers on is refused as in
    /// use, and only a stale socket (nothing listening) is replaced.
    pub(crate) async fn bind(path: &Path) -> std::io::Result<(UnixListener, Self)> {
        use std::io::{Error, ErrorKind};
        use std::os::unix::fs::FileTypeExt as _;
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                match tokio::net::UnixStream::connect(path).await {
                    Ok(_) => {
                        return Err(Error::new(
                            ErrorKind::AddrInUse,
                            "address in use: another process is listening on this socket",
                        ));
                    }
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                        // A stale socket left by a process that is gone.
                        std::fs::remove_file(path)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    "the path exists and is not a socket; it is left as it is",
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok((
            listener,
            Self {
                path: path.to_owned(),
                identity: (meta.dev(), meta.ino()),
            },
        ))
    }

    /// Removes the socket, unless another has taken its place since.
    fn remove(&self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.identity);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!("cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Accepts Unix-socket connections until the exchange stops, then removes its socket.
pub(crate) async fn accept_unix(
    listener: UnixListener,
    socket: OwnSocket,
    exchange: Arc<ExchangeShared>,
) {
    let mut stop = exchange.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut stop) => break,
        };
        match accepted {
            Ok((stream, _)) => admit(
                &exchange,
                stream,
                PeerAddr::Unix,
                Endpoints::accepted("unix".to_owned(), format!("unix:{}", socket.path.display())),
            ),
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    socket.remove();
    exchange.listener_ended();
}

/// Starts the link task for an accepted connection, unless the `authorise` hook or the
/// connection limit refuses it. The connection holds its permit from here to the end of
/// its link, the handshake included.
fn admit<S>(exchange: &Arc<ExchangeShared>, stream: S, peer: PeerAddr, endpoints: Endpoints)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let permit: Result<OwnedSemaphorePermit, _> = exchange.admission.clone().try_acquire_owned();
    let refusal = if exchange.authorise.as_ref().is_some_and(|hook| !hook(&peer)) {
        Some((
            CloseCode::NotAuthorised,
            "connection not authorised".to_owned(),
        ))
    } else if permit.is_err() {
        Some((
            CloseCode::TooManyConnections,
            format!(
                "too many connections (limit {})",
                exchange.config.max_connections
            ),
        ))
    } else {
        None
    };
    let exchange = exchange.clone();
    let handle = exchange.runtime.handle.clone();
    handle.spawn(async move {
        let mut stream = stream;
        if let Some((code, reason)) = refusal {
            tracing::info!(peer = %endpoints.peer, "refused: {reason}");
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                send_close(&mut stream, code, &reason),
            )
            .await;
            return;
        }
        let _permit = permit;
        run(stream, &exchange, endpoints).await;
    });
}
