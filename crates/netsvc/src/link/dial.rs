//! The client side: the addresses a client connects to, and the task that keeps one such
//! connection up as its [`Retry`] policy says.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::DuplexStream;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::watch;

use super::auth::Transport;
use super::config::Retry;
use super::connector::{ConnectorStatus, LinkPhase};
use super::door::DoorTarget;
use super::error::{ExchangeError, LinkFailure};
use super::shared::{ExchangeShared, stopped};
use super::{Endpoints, LinkEnd, run};

/// Where a client connects.
#[derive(Debug, Clone)]
pub(crate) enum DialAddress {
    Tcp(String),
    Unix(PathBuf),
    /// An in-process door into a hub of this process (`door.rs`).
    Door(DoorTarget),
    /// A hub on this hub's NATS cluster (`nats/`).
    #[cfg(feature = "nats")]
    Nats(super::nats::NatsPeer),
}

/// A connection made to a [`DialAddress`].
enum Dialled {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Unix(UnixStream),
    /// An in-memory stream: a door's, or a link carried by NATS.
    Memory(DuplexStream),
}

/// What became of an attempt to connect.
enum Attempt {
    Connected(Dialled, String, String, Transport),
    /// No connection: the system's error.
    Failed(std::io::Error),
    /// TLS could not be established over the connection.
    Tls(String),
    /// The target is gone for good (a hub that left the NATS cluster): stop dialling.
    #[cfg(feature = "nats")]
    Gone,
}

impl DialAddress {
    /// `HOST:PORT` or `unix:PATH`.
    pub(crate) fn parse(address: &str) -> Result<Self, ExchangeError> {
        if let Some(path) = address.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ExchangeError::InvalidAddress(address.to_owned()));
            }
            return Ok(Self::Unix(path.into()));
        }
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(address.to_owned()))
            }
            _ => Err(ExchangeError::InvalidAddress(address.to_owned())),
        }
    }

    /// Connects, over TLS if the exchange has client TLS settings (TCP only), within the
    /// handshake timeout for the TLS part.
    async fn connect(&self, exchange: &ExchangeShared) -> Attempt {
        match self {
            Self::Tcp(address) => {
                let stream = match TcpStream::connect(address).await {
                    Ok(stream) => stream,
                    Err(e) => return Attempt::Failed(e),
                };
                let _ = stream.set_nodelay(true);
                let peer_addr = stream.peer_addr().ok();
                let peer = peer_addr.map(|a| a.to_string()).unwrap_or_default();
                let local = stream
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let mut transport = Transport {
                    local: peer_addr.is_some_and(|a| a.ip().is_loopback()),
                    ip: peer_addr.map(|a| a.ip()),
                    ..Transport::default()
                };
                let Some((settings, config)) = &exchange.security.client_tls else {
                    return Attempt::Connected(Dialled::Tcp(stream), peer, local, transport);
                };
                let host = address
                    .rsplit_once(':')
                    .map_or(address.as_str(), |(h, _)| h);
                let name = match settings.server_name(host) {
                    Ok(name) => name,
                    Err(e) => return Attempt::Tls(e.to_string()),
                };
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let limit = exchange.config.handshake_timeout;
                match tokio::time::timeout(limit, connector.connect(name, stream)).await {
                    Ok(Ok(tls)) => {
                        transport.tls = true;
                        Attempt::Connected(Dialled::Tls(Box::new(tls)), peer, local, transport)
                    }
                    Ok(Err(e)) => Attempt::Tls(super::tls::describe_client_error(&e)),
                    // Slow, not wrong: a busy server may answer next time.
                    Err(_) => Attempt::Failed(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "TLS handshake not completed in time",
                    )),
                }
            }
            Self::Unix(path) => match UnixStream::connect(path).await {
                Ok(stream) => Attempt::Connected(
                    Dialled::Unix(stream),
                    format!("unix:{}", path.display()),
                    "unix".to_owned(),
                    Transport {
                        local: true,
                        ..Transport::default()
                    },
                ),
                Err(e) => Attempt::Failed(e),
            },
            Self::Door(door) => match door.open() {
                Some(stream) => Attempt::Connected(
                    Dialled::Memory(stream),
                    door.to_string(),
                    "in-process".to_owned(),
                    Transport {
                        local: true,
                        ..Transport::default()
                    },
                ),
                None => Attempt::Failed(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "the hub has stopped",
                )),
            },
            #[cfg(feature = "nats")]
            Self::Nats(peer) => match peer.open(exchange.config.handshake_timeout).await {
                super::nats::Opened::Stream(stream) => Attempt::Connected(
                    Dialled::Memory(stream),
                    peer.to_string(),
                    "nats".to_owned(),
                    Transport::default(),
                ),
                super::nats::Opened::Failed(e) => Attempt::Failed(e),
                super::nats::Opened::Gone => Attempt::Gone,
            },
        }
    }
}

impl fmt::Display for DialAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => f.write_str(a),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Door(door) => door.fmt(f),
            #[cfg(feature = "nats")]
            Self::Nats(peer) => peer.fmt(f),
        }
    }
}

/// Starts a connector task toward `target`: [`connect_loop`] with a status of its own.
pub(crate) fn spawn_connect(
    exchange: &Arc<ExchangeShared>,
    target: DialAddress,
    retry: Retry,
) -> watch::Receiver<ConnectorStatus> {
    let (status, watch) = watch::channel(ConnectorStatus::new());
    exchange.runtime.handle.spawn(connect_loop(
        target,
        retry,
        exchange.clone(),
        Arc::new(status),
    ));
    watch
}

/// The first delay before retrying a refused login, whatever the retry policy says.
const LOGIN_RETRY_MIN: Duration = Duration::from_secs(1);

/// The longest delay between retries of a refused login.
const LOGIN_RETRY_MAX: Duration = Duration::from_secs(60);

/// Keeps a client connection up as `retry` says, until the exchange stops, telling
/// `status` of every attempt and every change of the link.
///
/// A refused login before any link was made stops it: the credentials are wrong, and each
/// retry would count as one more failed login on the server, which locks the address out
/// after a few. Once a link has been made, a refused login (the server's users changed)
/// is retried, at doubling intervals from [`LOGIN_RETRY_MIN`] to [`LOGIN_RETRY_MAX`], which
/// stays under the server's lockout.
pub(crate) async fn connect_loop(
    address: DialAddress,
    retry: Retry,
    exchange: Arc<ExchangeShared>,
    status: Arc<watch::Sender<ConnectorStatus>>,
) {
    let mut stop = exchange.stop.subscribe();
    let mut failures = 0u32;
    let mut linked_once = false;
    let mut login_refusals = 0u32;
    // What was last logged, so that a persistent failure is logged once (and again only
    // when it changes), not once per attempt. Compared without digits: a peer's words may
    // carry a time or a count that differs on every attempt.
    let mut logged: Option<String> = None;
    let security = &exchange.security;
    let presents_credentials = security.credentials.is_some()
        || security
            .client_tls
            .as_ref()
            .is_some_and(|(tls, _)| tls.has_identity());
    let stopped_now = |status: &watch::Sender<ConnectorStatus>| {
        status.send_modify(|s| s.phase = LinkPhase::Stopped);
    };
    loop {
        if exchange.stopping() {
            return stopped_now(&status);
        }
        status.send_modify(|s| {
            s.attempts += 1;
            s.phase = LinkPhase::Connecting;
        });
        let attempt = tokio::select! {
            r = address.connect(&exchange) => r,
            _ = stopped(&mut stop) => return stopped_now(&status),
        };
        let failure = match attempt {
            Attempt::Connected(stream, peer, local, transport) => {
                let endpoints = Endpoints::dialled(peer, local, status.clone(), transport);
                let end = match stream {
                    Dialled::Tcp(s) => run(s, &exchange, endpoints).await,
                    Dialled::Tls(s) => run(*s, &exchange, endpoints).await,
                    Dialled::Unix(s) => run(s, &exchange, endpoints).await,
                    Dialled::Memory(s) => run(s, &exchange, endpoints).await,
                };
                match end {
                    LinkEnd::Ended => {
                        failures = 0;
                        login_refusals = 0;
                        linked_once = true;
                        logged = None;
                        None
                    }
                    LinkEnd::Refused(failure) => Some(failure),
                }
            }
            Attempt::Failed(e) => Some(LinkFailure::of_connect(&e)),
            Attempt::Tls(why) => Some(LinkFailure::Tls(why)),
            #[cfg(feature = "nats")]
            Attempt::Gone => {
                tracing::info!(%address, "no longer dialled: it left the NATS cluster");
                return stopped_now(&status);
            }
        };
        // A refusal of credentials is final before the first link: the same credentials
        // would be refused again, and each try counts towards the server's lockout. A
        // client that presents none is refused by address (the server's `authorise`
        // hook, as the original's) or until anonymous peers are let in: it retries, as
        // the original's clients did.
        let login_refused =
            matches!(failure, Some(LinkFailure::NotAuthorised(_))) && presents_credentials;
        if let Some(failure) = failure {
            let key: String = failure
                .to_string()
                .chars()
                .filter(|c| !c.is_ascii_digit())
                .collect();
            if logged.as_ref() == Some(&key) {
                tracing::debug!(%address, "cannot link (again): {failure}");
            } else if matches!(failure, LinkFailure::Refused(_)) {
                // The usual state of a client started before its server.
                tracing::debug!(%address, "cannot link: {failure}");
            } else {
                tracing::info!(%address, "cannot link: {failure}");
            }
            logged = Some(key);
            let stop_now = (login_refused && !linked_once) || !retry.retries();
            status.send_modify(|s| {
                s.failures += 1;
                s.last_failure = Some(failure);
                // In the same change, so that a watcher never sees a refused first login
                // as one that will be retried.
                if stop_now {
                    s.phase = LinkPhase::Stopped;
                }
            });
            if login_refused && !linked_once {
                tracing::info!(%address, "login refused: not retrying the same credentials");
                return;
            }
        }
        if !retry.retries() {
            tracing::info!(%address, "not reconnecting (single attempt)");
            return stopped_now(&status);
        }
        status.send_modify(|s| s.phase = LinkPhase::Connecting);
        let delay = if login_refused {
            let backoff = LOGIN_RETRY_MIN.saturating_mul(1 << login_refusals.min(6));
            login_refusals = login_refusals.saturating_add(1);
            retry
                .next_delay(failures, linked_once)
                .max(backoff.min(LOGIN_RETRY_MAX))
        } else {
            login_refusals = 0;
            retry.next_delay(failures, linked_once)
        };
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => return stopped_now(&status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert!(DialAddress::parse("127.0.0.1:11111").is_ok());
        assert!(DialAddress::parse("localhost:0").is_ok());
        assert!(DialAddress::parse("unix:/tmp/x.sock").is_ok());
        for bad in ["", "nohost", ":1", "host:notaport", "unix:"] {
            assert!(DialAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
