//! What can go wrong with an exchange: setting it up ([`ExchangeError`]), and an attempt to
//! link to a server ([`LinkFailure`]).

use std::fmt;

use netsvc_proto::names::NameError;
use netsvc_proto::wire::CloseCode;
use netsvc_proto::wire::handshake::{Cause, Rejection};

/// An exchange could not be set up or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The group name is not acceptable.
    #[error(transparent)]
    InvalidGroup(#[from] NameError),
    /// This runtime already has an exchange for that group.
    #[error("this process already has an exchange for group {0:?}")]
    DuplicateGroup(String),
    /// An address could not be parsed.
    #[error("invalid exchange address {0:?}: expected HOST:PORT or unix:PATH")]
    InvalidAddress(String),
    /// Listening failed: the port is in use, a Unix socket path holds something else, ...
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address given to listen on.
        address: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// Only a server exchange listens.
    #[error("a client exchange cannot listen; build it with Exchange::server")]
    NotAServer,
    /// The exchange has been shut down.
    #[error("the exchange has been shut down")]
    ShutDown,
    /// A setting in [`ExchangeConfig`](crate::ExchangeConfig) cannot work (for example a
    /// zero heartbeat).
    #[error("invalid exchange configuration: {0}")]
    InvalidConfig(String),
    /// The NATS cluster could not be joined (feature `nats`).
    #[error("cannot join the NATS cluster: {0}")]
    Nats(String),
}

/// Why an attempt to link to a server failed, as precisely as the client can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkFailure {
    /// Nothing accepted the connection: no server listens there (yet).
    Refused(String),
    /// The connection could not be made for another reason (no route, unknown host, ...).
    Unreachable(String),
    /// The server is in another exchange group; its words say which.
    GroupMismatch(String),
    /// The server does not let this process in.
    NotAuthorised(String),
    /// The server speaks another version of the protocol.
    VersionMismatch(String),
    /// An original OSE exchange answered, not a netsvc one.
    OseExchange,
    /// Something that is not a netsvc exchange answered (an HTTP server, say).
    NotNetsvc(String),
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// TLS could not be established: a plaintext peer, an untrusted certificate, a
    /// certificate refused by the server, ...
    Tls(String),
    /// The server refused the link for another reason (duplicate link, too many
    /// connections, ...) or closed the connection during the handshake.
    Closed(String),
}

impl LinkFailure {
    /// Whether retrying cannot help until someone changes a configuration: the peer is not
    /// a netsvc exchange of this group and version, TLS cannot be agreed with it, or it
    /// refused the login (CLOSE 5). (A refused connection, a timeout or another refusal may
    /// pass: the server may be starting or busy.)
    ///
    /// A refused login is final because retrying the same credentials only adds to the
    /// server's count of failed logins from this address, which locks the address out. A
    /// connector stops at once when its first login is refused; one that was linked before
    /// keeps trying (its user's rights may come back with the server's next reload), at
    /// longer and longer intervals.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::GroupMismatch(_)
                | Self::VersionMismatch(_)
                | Self::OseExchange
                | Self::NotNetsvc(_)
                | Self::Tls(_)
                | Self::NotAuthorised(_)
        )
    }

    /// The failure of a connection attempt that the system refused.
    pub(crate) fn of_connect(error: &std::io::Error) -> Self {
        match error.kind() {
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound => {
                Self::Refused(error.to_string())
            }
            // The TLS handshake of a connection that was made did not complete in time.
            std::io::ErrorKind::TimedOut => Self::HandshakeTimeout,
            _ => Self::Unreachable(error.to_string()),
        }
    }

    /// The failure a handshake rejection stands for.
    pub(crate) fn of_rejection(rejection: &Rejection) -> Self {
        let reason = rejection.reason.clone();
        match rejection.cause {
            Cause::OseExchange => Self::OseExchange,
            Cause::NotNetsvc => Self::NotNetsvc(reason),
            Cause::Tls => Self::Tls(reason),
            Cause::Refused(code) | Cause::PeerClosed(code) => match code {
                CloseCode::GroupMismatch => Self::GroupMismatch(reason),
                CloseCode::VersionMismatch => Self::VersionMismatch(reason),
                CloseCode::NotAuthorised => Self::NotAuthorised(reason),
                CloseCode::HandshakeTimeout => Self::HandshakeTimeout,
                CloseCode::TlsRequired => Self::Tls(reason),
                _ => Self::Closed(reason),
            },
            _ => Self::Closed(reason),
        }
    }
}

impl fmt::Display for LinkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(e) => write!(f, "connection refused ({e})"),
            Self::Unreachable(e) => write!(f, "cannot connect ({e})"),
            Self::GroupMismatch(why) => write!(f, "exchange group mismatch ({why})"),
            Self::NotAuthorised(why) => write!(f, "not authorised ({why})"),
            Self::VersionMismatch(why) => write!(f, "protocol version mismatch ({why})"),
            Self::OseExchange => f.write_str(
                "this is an original OSE exchange, not a netsvc one (its frames start with \
                 the bytes AA AA 30 33)",
            ),
            Self::NotNetsvc(why) => f.write_str(why),
            Self::HandshakeTimeout => f.write_str(
                "the server accepted the connection but did not complete the handshake in time",
            ),
            Self::Tls(why) => write!(f, "TLS failed ({why})"),
            Self::Closed(why) => write!(f, "the link was not established ({why})"),
        }
    }
}
