//! The two ends of one request in flight: how a reply reaches the caller, and how a method's
//! outcome is sent back from wherever the request came from.

use std::sync::Arc;

use bytes::Bytes;
use netsvc_proto::value::{self, Limits, Value};
use netsvc_proto::wire::{Frame, frame};
use tokio::sync::oneshot;

use super::link_queue::{LinkQueue, failure_frame};
use super::meters::{Metered, RequestMeter};
use crate::model::failure::{Failure, MethodResult, codes};
use crate::model::ids::{Conv, Id as _};

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

/// Where a method's outcome goes, and the meter that counts it. Dropping a responder
/// without responding tells the caller that the service went away before responding
/// (failure 57).
#[derive(Debug)]
pub(crate) struct Responder {
    to: ReplyTo,
    /// Taken when the outcome is counted (once: by `respond`, or on drop as a 57).
    metered: Option<Metered>,
}

#[derive(Debug)]
enum ReplyTo {
    /// A caller in this runtime.
    Local(oneshot::Sender<Reply>),
    /// A caller behind an exchange link.
    Link(LinkResponder),
    /// Answered.
    Done,
}

impl Responder {
    /// The responder of a caller in this runtime, counted by `meter`.
    pub(crate) fn local(reply: oneshot::Sender<Reply>, meter: Arc<RequestMeter>) -> Self {
        Self {
            to: ReplyTo::Local(reply),
            metered: Some(Metered::start(meter)),
        }
    }

    /// The responder of a request `conv` that came in on the link of `queue`.
    pub(crate) fn link(
        queue: Arc<LinkQueue>,
        conv: Conv,
        limits: Limits,
        meter: Arc<RequestMeter>,
    ) -> Self {
        Self {
            to: ReplyTo::Link(LinkResponder {
                queue,
                conv,
                limits,
                sent: false,
            }),
            metered: Some(Metered::start(meter)),
        }
    }

    pub(crate) fn respond(mut self, result: MethodResult) {
        if let Some(metered) = self.metered.take() {
            metered.finish(result.as_ref().err().map(|f| f.error));
        }
        match std::mem::replace(&mut self.to, ReplyTo::Done) {
            ReplyTo::Local(tx) => {
                let _ = tx.send(match result {
                    Ok(v) => Reply::Value(v),
                    Err(f) => Reply::Failure(f),
                });
            }
            ReplyTo::Link(mut link) => link.respond(result),
            ReplyTo::Done => {}
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(metered) = self.metered.take() {
            metered.finish(Some(codes::APPLICATION_ERROR));
        }
    }
}

/// The responder of a request that came in on a link: it writes the RESPONSE or FAILURE
/// straight into the link's queue (no need to take the core's lock for it).
#[derive(Debug)]
pub(crate) struct LinkResponder {
    queue: Arc<LinkQueue>,
    conv: Conv,
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
            Ok(bytes) => Frame::Response(frame::Response {
                conv: self.conv.raw(),
                result: Bytes::from(bytes),
            }),
            Err(f) => failure_frame(self.conv, &f),
        };
        self.queue.push_reply(frame);
    }
}

impl Drop for LinkResponder {
    fn drop(&mut self) {
        if !self.sent {
            self.queue
                .push_reply(failure_frame(self.conv, &Failure::withdrawn()));
        }
    }
}
