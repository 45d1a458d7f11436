//! The services of this runtime as the core keeps them, and the seam through which it starts
//! their methods.
//!
//! A method is application code that takes a `Request` and may use a `ServiceHandle`: types
//! of the API layer, above the core. So the core does not hold the method table itself; it
//! holds a [`ServiceRef`], a trait object the API layer implements, and asks it to start a
//! [`Call`] with a [`Responder`] for the outcome.

use std::sync::Arc;

use bytes::Bytes;
use netsvc_proto::value::{self, Limits, Value};
use netsvc_proto::wire::Text;
use tokio::sync::watch;

use super::meters::RequestMeter;
use super::publisher::PublisherState;
use super::reply::Responder;
use crate::model::binding::Binding;
use crate::model::failure::{Failure, codes};
use crate::model::grant::Grants;
use crate::model::ids::RequestId;

/// What the core needs of a local service's behaviour.
pub(crate) trait Methods: Send + Sync {
    /// The service's binding.
    fn binding(&self) -> &Binding;
    /// A signal that completes when the service is withdrawn.
    fn liveness(&self) -> watch::Receiver<()>;
    /// Starts handling a request. The outcome goes to `responder`; a responder dropped
    /// without an answer tells the caller the service went away (failure 57).
    fn dispatch(self: Arc<Self>, call: Call, responder: Responder);
    /// The service is gone: wake everyone waiting on it and drop its handlers. Called after
    /// the core's lock is released (handlers are application code and may take it).
    fn end(&self);
    /// A process this one is linked to would not announce the service: its user may not
    /// provide the name (WITHDRAW `refused`). Runs no application code.
    fn refused(&self, why: &str);
}

/// A local service's behaviour, shared.
pub(crate) type ServiceRef = Arc<dyn Methods>;

/// One request for a local service, decoded.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) id: RequestId,
    pub(crate) method: Arc<str>,
    pub(crate) args: Vec<Value>,
    pub(crate) sender: Option<Binding>,
    /// The user the caller logged in as, if a hub with users said (`Request::user`).
    pub(crate) user: Option<Arc<str>>,
    /// What the caller's link may do, when it came in on a link of this process logged in
    /// without the `link` right: what this process's own services may tell it (the
    /// introspection service filters its answers by it).
    pub(crate) grants: Option<Arc<Grants>>,
}

/// A request that arrived on a link for a local service, still encoded: its arguments are
/// decoded by the link's task after the core's lock is released.
#[derive(Debug)]
pub(crate) struct EncodedCall {
    pub(crate) id: RequestId,
    pub(crate) method: Text,
    pub(crate) args: Bytes,
    pub(crate) sender: Option<Binding>,
    pub(crate) user: Option<Arc<str>>,
    pub(crate) grants: Option<Arc<Grants>>,
}

/// The limits of a request's argument list, given those of each argument: the list that
/// carries the arguments on the wire is one level more, which must not make an argument
/// that is within the limits in-process fail across a link.
pub(crate) fn argument_list_limits(limits: &Limits) -> Limits {
    Limits {
        max_depth: limits.max_depth.saturating_add(1),
        ..*limits
    }
}

impl EncodedCall {
    /// Decodes the arguments: one list value (PROTOCOL.md §9), else failure 54.
    pub(crate) fn decode(self, limits: &Limits) -> Result<Call, Failure> {
        let args = match value::decode(&self.args, &argument_list_limits(limits)) {
            Ok(Value::List(args)) => args,
            Ok(other) => {
                return Err(Failure::netsvc(
                    codes::REQUEST_DECODING_ERROR,
                    format!("the arguments are a {}, not a list", other.type_name()),
                ));
            }
            Err(e) => {
                return Err(Failure::netsvc(
                    codes::REQUEST_DECODING_ERROR,
                    e.to_string(),
                ));
            }
        };
        Ok(Call {
            id: self.id,
            method: Arc::from(self.method.as_str()),
            args,
            sender: self.sender,
            user: self.user,
            grants: self.grants,
        })
    }
}

/// One local service, visible or not.
pub(crate) struct LocalService {
    pub(crate) service: ServiceRef,
    /// Counts the requests the service answers, from wherever they come.
    pub(crate) served: Arc<RequestMeter>,
    pub(crate) publisher: PublisherState,
    pub(crate) visible: bool,
    /// Groups joined while hidden, applied when the service is announced.
    pub(crate) hidden_groups: Vec<Arc<str>>,
    /// Increases with every group change, so that other processes keep the newest state.
    pub(crate) version: u64,
}
