//! Errors from misusing the API: bad names, bad values, operations on withdrawn services.
//!
//! These are the caller's mistakes or a state it should handle; what a *request* can end in is a
//! [`Failure`](crate::Failure) instead.

use netsvc_proto::names::NameError;
use netsvc_proto::value::ValueError;
use thiserror::Error;

/// An operation could not be carried out.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A service name, group name, subject or pattern is not acceptable.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A value could not be carried: too deep, too large, or not encodable.
    #[error(transparent)]
    InvalidValue(#[from] ValueError),
    /// The service has been withdrawn; its handle can no longer act.
    #[error("service {address} has been withdrawn")]
    Withdrawn {
        /// The address the service had.
        address: String,
    },
    /// A targeted report was addressed to a service that holds no subscription here.
    #[error("{subscriber} holds no report subscription on {publisher}")]
    NotSubscribed {
        /// The publisher's address.
        publisher: String,
        /// The would-be recipient's address.
        subscriber: String,
    },
    /// A report lifetime that means nothing (for example a negative number of seconds other
    /// than the original's `-1` for "forever").
    #[error("invalid report lifetime: {0}")]
    InvalidLifetime(String),
    /// `Runtime::new` was called outside a tokio runtime.
    #[error("netsvc needs a tokio runtime: create the Runtime from within one")]
    NoTokioRuntime,
}
