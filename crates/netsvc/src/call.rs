//! The two ends of one request in flight: how a reply reaches the caller, and how a method's
//! outcome is sent back from wherever the request came from.

use std::sync::Arc;

use bytes::Bytes;
use netsvc_proto::value::{self, Limits, Value};
use netsvc_proto::wire::{Frame, Text};
use tokio::sync::oneshot;

use crate::exchange::outbound::Outbound;
use crate::failure::{Failure, codes};
use crate::service::MethodResult;

/// What reaches a caller.
#[derive(Debug)]
pub(crate) enum Reply {
    /// From a service in this runtime.
    Value(Value),
    /// From another process: decoded by the caller, not by whoever relayed it.
    Encoded(Bytes),
    /// The request failed.
    Failure(Failure),
}

impl Reply {
    pub(crate) fn into_result(self, limits: &Limits) -> MethodResult {
        match self {
            Self::Value(v) => Ok(v),
            Self::Failure(f) => Err(f),
            Self::Encoded(bytes) => value::decode(&bytes, limits)
                .map_err(|e| Failure::netsvc(codes::RESPONSE_DECODING_ERROR, e.to_string())),
        }
    }
}

/// Where a method's outcome goes. Dropping a responder without responding tells the caller
/// that the service went away before responding (failure 57).
#[derive(Debug)]
pub(crate) enum Responder {
    /// A caller in this runtime.
    Local(oneshot::Sender<Reply>),
    /// A caller behind an exchange link.
    Link(LinkResponder),
}

impl Responder {
    pub(crate) fn link(outbound: Arc<Outbound>, conv: u64, limits: Limits) -> Self {
        Self::Link(LinkResponder {
            outbound,
            conv,
            limits,
            sent: false,
        })
    }

    pub(crate) fn respond(self, result: MethodResult) {
        match self {
            Self::Local(tx) => {
                let _ = tx.send(match result {
                    Ok(v) => Reply::Value(v),
                    Err(f) => Reply::Failure(f),
                });
            }
            Self::Link(mut link) => link.respond(result),
        }
    }
}

#[derive(Debug)]
pub(crate) struct LinkResponder {
    outbound: Arc<Outbound>,
    conv: u64,
    limits: Limits,
    sent: bool,
}

impl LinkResponder {
    fn respond(&mut self, result: MethodResult) {
        self.sent = true;
        let frame = match result.and_then(|v| {
            value::encode(&v, &self.limits)
                .map_err(|e| Failure::netsvc(codes::RESPONSE_ENCODING_ERROR, e.to_string()))
        }) {
            Ok(bytes) => Frame::Response {
                conv: self.conv,
                result: Bytes::from(bytes),
            },
            Err(f) => failure_frame(self.conv, &f),
        };
        self.outbound.push(frame);
    }
}

impl Drop for LinkResponder {
    fn drop(&mut self) {
        if !self.sent {
            self.outbound
                .push(failure_frame(self.conv, &Failure::withdrawn()));
        }
    }
}

/// The FAILURE frame carrying `failure` for conversation `conv`.
pub(crate) fn failure_frame(conv: u64, failure: &Failure) -> Frame {
    Frame::Failure {
        conv,
        error: failure.error,
        description: Text::from(failure.description.as_str()),
        origin: Text::from(failure.origin.as_str()),
        details: Text::from(failure.details.as_str()),
    }
}
