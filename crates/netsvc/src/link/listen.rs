//! Listening sockets: accepting connections, admitting them (the `authorise` hook and the
//! connection limit) and handing each to a link task.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use netsvc_proto::wire::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, UnixListener};
use tokio::sync::OwnedSemaphorePermit;

use super::auth::Transport;
use super::shared::{ExchangeShared, PeerAddr, TlsSlot, stopped};
use super::{Endpoints, run, send_close};

/// The accept queue asked of the kernel for a listening TCP socket. Linux caps it at
/// `net.core.somaxconn` (4096 by default since 5.4), silently. tokio's `TcpListener::bind`
/// asks for 128 (mio 1.2, as the standard library): a hub restarting under a few hundred
/// clients or more then overflows its queue, the kernel drops their SYNs, and each waits
/// out TCP's retransmission timeout (1 s, then 3 s) although the hub is up and idle.
/// Measured (W5, 4,000 clients): clients back 1.5 to 2.6 s after the hub instead of within
/// the 0.5 s of their reconnect policy.
const ACCEPT_QUEUE: u32 = 65_535;

/// Binds a listening TCP socket on `address` (`HOST:PORT`, resolved; the first address that
/// binds wins) with the longest accept queue the kernel allows, and `SO_REUSEADDR` as tokio
/// sets it (a hub restarted at once gets its port back despite connections in TIME_WAIT).
/// Every TCP listener of the workspace (exchange, gateway, OSE bridge) binds through this.
pub async fn bind_tcp(address: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(address).await? {
        match bind_one(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{address} resolves to no address"),
        )
    }))
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_QUEUE)
}

/// Accepts TCP connections until the exchange stops; with `tls`, each connection must open
/// with a TLS handshake.
pub(crate) async fn accept_tcp(
    listener: TcpListener,
    exchange: Arc<ExchangeShared>,
    tls: Option<TlsSlot>,
) {
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
                let transport = Transport {
                    tls: tls.is_some(),
                    local: peer.ip().is_loopback(),
                    ip: Some(peer.ip()),
                    ..Transport::default()
                };
                let endpoints = Endpoints::accepted(peer.to_string(), local, transport);
                match &tls {
                    None => admit(&exchange, stream, PeerAddr::Tcp(peer), endpoints),
                    Some(slot) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(slot.lock().clone());
                        admit_tls(&exchange, stream, acceptor, peer, endpoints);
                    }
                }
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
    /// use, and only a stale socket (nothing listening) is replaced. With a `mode`, the
    /// socket has it before anyone can reach it (see [`bind_private`]).
    pub(crate) async fn bind(
        path: &Path,
        mode: Option<u32>,
    ) -> std::io::Result<(UnixListener, Self)> {
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
        let listener = match mode {
            None => UnixListener::bind(path)?,
            Some(mode) => bind_private(path, mode)?,
        };
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

/// Binds a Unix socket at `path` that nobody can reach before it has `mode`. Binding at
/// `path` and then changing the mode leaves a window in which the socket has the mode the
/// umask gives it, and the umask cannot be narrowed for one call (it belongs to the whole
/// multi-threaded process). So the socket is bound inside a private directory (mode 0700,
/// next to `path` so that both are on one file system), given its mode there, and only
/// then linked to `path`. A hard link rather than a rename: a link never replaces what is
/// at `path`, should something have appeared there since it was checked.
fn bind_private(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    use std::sync::atomic::{AtomicU64, Ordering};
    // Tells apart the private directories of one process's concurrent binds.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // A short name: a socket's path is limited to about a hundred bytes.
    let mut attempts = 0;
    let private = loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!(".netsvc-{}-{n}", std::process::id()));
        attempts += 1;
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => break PrivateDir(dir),
            // Left by a process that had this one's id before it, or someone else's: this
            // process never touches it and tries another name.
            Err(e) if e.kind() == ErrorKind::AlreadyExists && attempts < 100 => {}
            Err(e) => return Err(e),
        }
    };
    let socket = private.0.join("s");
    let listener = UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(mode))?;
    std::fs::hard_link(&socket, path).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => Error::new(
            ErrorKind::AlreadyExists,
            "the path appeared while the socket was bound; it is left as it is",
        ),
        _ => e,
    })?;
    Ok(listener)
}

/// A private directory [`bind_private`] created, removed with the socket bound in it when
/// the bind is over (the socket stays reachable by its other link).
struct PrivateDir(PathBuf);

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let socket = self.0.join("s");
        if let Err(e) = std::fs::remove_file(&socket)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", socket.display());
        }
        if let Err(e) = std::fs::remove_dir(&self.0) {
            tracing::warn!("cannot remove {}: {e}", self.0.display());
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
            Ok((stream, _)) => {
                let transport = Transport {
                    local: true,
                    uid: stream.peer_cred().ok().map(|c| c.uid()),
                    ..Transport::default()
                };
                let local = format!("unix:{}", socket.path.display());
                let endpoints = Endpoints::accepted("unix".to_owned(), local, transport);
                admit(&exchange, stream, PeerAddr::Unix, endpoints);
            }
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

/// A connection's permit, or why it is refused before anything is read: the `authorise`
/// hook or the connection limit. The connection holds its permit from accept to the end
/// of its link, handshakes included.
fn admission(
    exchange: &ExchangeShared,
    peer: &PeerAddr,
) -> Result<OwnedSemaphorePermit, (CloseCode, String)> {
    if exchange.authorise.as_ref().is_some_and(|hook| !hook(peer)) {
        return Err((
            CloseCode::NotAuthorised,
            "connection not authorised".to_owned(),
        ));
    }
    exchange.admission.clone().try_acquire_owned().map_err(|_| {
        let limit = exchange.config.max_connections;
        (
            CloseCode::TooManyConnections,
            format!("too many connections (limit {limit})"),
        )
    })
}

/// Tells a refused peer why, in at most a second, and logs it.
async fn turn_away<S: AsyncWrite + Unpin>(
    mut stream: S,
    peer: &str,
    code: CloseCode,
    reason: &str,
) {
    tracing::info!(%peer, "refused: {reason}");
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        send_close(&mut stream, code, reason),
    )
    .await;
}

/// Starts the link task for an accepted connection, unless [`admission`] refuses it.
fn admit<S>(exchange: &Arc<ExchangeShared>, stream: S, peer: PeerAddr, endpoints: Endpoints)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let admitted = admission(exchange, &peer);
    let exchange = exchange.clone();
    let handle = exchange.runtime.handle.clone();
    handle.spawn(async move {
        match admitted {
            Ok(_permit) => {
                run(stream, &exchange, endpoints).await;
            }
            Err((code, reason)) => turn_away(stream, &endpoints.peer, code, &reason).await,
        }
    });
}

/// Like [`admit`], for a TLS listener: the TLS handshake comes first, within the handshake
/// timeout. A peer that speaks plaintext netsvc instead is told so in plaintext (CLOSE
/// `TLS required`), so that it can say why rather than hang or see garbage.
fn admit_tls(
    exchange: &Arc<ExchangeShared>,
    stream: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    peer: SocketAddr,
    mut endpoints: Endpoints,
) {
    let admitted = admission(exchange, &PeerAddr::Tcp(peer));
    let exchange = exchange.clone();
    let handle = exchange.runtime.handle.clone();
    handle.spawn(async move {
        let _permit = match admitted {
            Ok(permit) => permit,
            Err((code, reason)) => return turn_away(stream, &endpoints.peer, code, &reason).await,
        };
        let limit = exchange.config.handshake_timeout;
        let mut first = [0u8; 1];
        match tokio::time::timeout(limit, stream.peek(&mut first)).await {
            Ok(Ok(1..)) if first[0] == TLS_HANDSHAKE_RECORD => {}
            Ok(Ok(1..)) => {
                let reason = "this port speaks netsvc over TLS only: connect with TLS";
                return turn_away(stream, &endpoints.peer, CloseCode::TlsRequired, reason).await;
            }
            _ => return, // closed, failed or silent before saying anything
        }
        let tls = match tokio::time::timeout(limit, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::info!(peer = %endpoints.peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::info!(peer = %endpoints.peer, "TLS handshake not completed in time");
                return;
            }
        };
        endpoints.transport.certificate_names =
            super::tls::certificate_names(tls.get_ref().1.peer_certificates());
        run(tls, &exchange, endpoints).await;
    });
}

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
