//! Endpoints: the caller's side of requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use netsvc_proto::value::{self, Value};
use netsvc_proto::wire::{Frame, Text, frame};
use tokio::sync::oneshot;

use crate::core::local::{Call, argument_list_limits};
use crate::core::meters::Metered;
use crate::core::reply::{Reply, Responder};
use crate::core::shared::RuntimeShared;
use crate::core::{INTEREST_PATIENCE, Route};
use crate::model::binding::Binding;
use crate::model::failure::{Failure, codes};
use crate::model::ids::{Conv, Id as _, LinkId};
use crate::model::payload::check_depth;
use crate::model::stats::RequestRole;

/// Which service an endpoint or a report subscription addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any service of this name (for requests: the first one in the registry).
    Name(Arc<str>),
    /// This one service.
    Binding(Binding),
}

impl From<&str> for Target {
    fn from(name: &str) -> Self {
        Self::Name(name.into())
    }
}

impl From<String> for Target {
    fn from(name: String) -> Self {
        Self::Name(name.into())
    }
}

impl From<Binding> for Target {
    fn from(binding: Binding) -> Self {
        Self::Binding(binding)
    }
}

impl From<&Binding> for Target {
    fn from(binding: &Binding) -> Self {
        Self::Binding(binding.clone())
    }
}

/// The caller's handle on a service: call its methods.
///
/// Every call ends, in a value or a [`Failure`]: 46 if there is no such service, 55/56/57
/// from the service, 57 at once if the service is withdrawn before it responds, 47 when
/// the timeout passes. Any number of calls may be in flight at once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use netsvc::Runtime;
/// use netsvc::failure::codes;
/// let rt = Runtime::new();
/// let missing = rt.endpoint("missing");
/// assert!(!missing.is_available());
/// let failure = missing.call("anything", vec![]).await.unwrap_err();
/// assert_eq!(failure.error, codes::SERVICE_UNAVAILABLE);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Endpoint {
    runtime: Arc<RuntimeShared>,
    target: Target,
    sender: Option<Binding>,
    timeout: Option<Duration>,
}

impl Endpoint {
    pub(crate) fn new(
        runtime: Arc<RuntimeShared>,
        target: Target,
        sender: Option<Binding>,
    ) -> Self {
        let timeout = runtime.config.request_timeout;
        // In a scoped registry, the hub is asked for the services of the name now, so that
        // the first call finds them known.
        if let Target::Name(name) = &target {
            runtime.core.lock().want_name(name);
        }
        Self {
            runtime,
            target,
            sender,
            timeout,
        }
    }

    /// What the endpoint addresses.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Sets the timeout of later calls (`None`: wait as long as the service exists). The
    /// default is the runtime's [`request_timeout`](crate::RuntimeConfig::request_timeout).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The service a call would go to now, if any.
    pub fn binding(&self) -> Option<Binding> {
        let core = self.runtime.core.lock();
        match &self.target {
            Target::Name(name) => core
                .first_named(name)
                .and_then(|a| core.registry.lookup_address(&a)),
            Target::Binding(b) => core.reachable(b.address()).then(|| b.clone()),
        }
    }

    /// Whether a call would find a service now (the original's proxy truthiness).
    pub fn is_available(&self) -> bool {
        self.binding().is_some()
    }

    /// Calls `method` with `args`, with the endpoint's timeout.
    pub async fn call(&self, method: &str, args: Vec<Value>) -> Result<Value, Failure> {
        self.call_with_timeout(method, args, self.timeout).await
    }

    /// Calls `method` and decodes the result into `T` (failure 44 if it does not fit).
    pub async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        args: Vec<Value>,
    ) -> Result<T, Failure> {
        let result = self.call(method, args).await?;
        value::from_value(result)
            .map_err(|e| Failure::netsvc(codes::RESPONSE_DECODING_ERROR, e.to_string()))
    }

    /// Calls `method` with `args` and this timeout (`None`: no timeout).
    pub async fn call_with_timeout(
        &self,
        method: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, Failure> {
        let name = match &self.target {
            Target::Name(name) => &**name,
            Target::Binding(b) => b.service_name(),
        };
        let metered = Metered::start(self.runtime.meters.requests(name, RequestRole::Called));
        let call = self.start(method, args, timeout);
        let outcome = match timeout {
            None => call.await,
            Some(limit) => tokio::time::timeout(limit, call)
                .await
                .unwrap_or_else(|_| Err(Failure::timeout(limit))),
        };
        metered.finish(outcome.as_ref().err().map(|f| f.error));
        outcome
    }

    async fn start(
        &self,
        method: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, Failure> {
        let rt = &self.runtime;
        let limits = &rt.config.value_limits;
        for arg in &args {
            check_depth(arg, limits.max_depth)
                .map_err(|e| Failure::netsvc(codes::REQUEST_ENCODING_ERROR, e.to_string()))?;
        }
        let unavailable = |name: &str| {
            Failure::service_unavailable(format!("No service named {name:?} is available."))
        };
        let (address, route) = match &self.target {
            Target::Binding(b) => {
                let mut core = rt.core.lock();
                (b.address_arc().clone(), core.route(b.address()))
            }
            Target::Name(name) => {
                let known = {
                    let mut core = rt.core.lock();
                    match core.first_named(name) {
                        Some(address) => {
                            let route = core.route(&address);
                            Ok((address, route))
                        }
                        None => {
                            let seq = core.want_name(name);
                            Err(core.interest_answered(seq))
                        }
                    }
                };
                match known {
                    Ok(found) => found,
                    Err(None) => return Err(unavailable(name)),
                    // In a scoped registry, a name the hub has not answered for yet is
                    // waited for (within the call's timeout and `INTEREST_PATIENCE`; a
                    // link that goes answers at once).
                    Err(Some(answered)) => {
                        let _ = tokio::time::timeout(INTEREST_PATIENCE, answered).await;
                        let mut core = rt.core.lock();
                        let address = core.first_named(name).ok_or_else(|| unavailable(name))?;
                        let route = core.route(&address);
                        (address, route)
                    }
                }
            }
        };
        match route {
            None => Err(Failure::withdrawn()),
            Some(Route::Local {
                service,
                id,
                served,
                mut liveness,
            }) => {
                let (responder, response) = oneshot::channel::<Reply>();
                let call = Call {
                    id,
                    method: method.into(),
                    args,
                    sender: self.sender.clone(),
                    user: None,
                    grants: None,
                };
                service.dispatch(call, Responder::local(responder, served));
                tokio::select! {
                    biased;
                    outcome = response => match outcome {
                        Ok(reply) => reply.into_result(limits),
                        Err(_) => Err(Failure::withdrawn()),
                    },
                    _ = liveness.changed() => Err(Failure::withdrawn()),
                }
            }
            Some(Route::Remote { link, mut liveness }) => {
                let list_limits = argument_list_limits(limits);
                let args = value::encode(&Value::List(args), &list_limits)
                    .map_err(|e| Failure::netsvc(codes::REQUEST_ENCODING_ERROR, e.to_string()))?;
                let args = Bytes::from(args);
                let request = |conv: Conv| {
                    Frame::Request(frame::Request {
                        conv: conv.raw(),
                        to: Text::from(&*address),
                        from: self.sender.as_ref().map(|b| Text::from(b.address())),
                        method: Text::from(method),
                        timeout_ms: timeout
                            .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                        args,
                        user: None,
                    })
                };
                let (tx, rx) = oneshot::channel::<Reply>();
                let conv = rt.core.lock().start_call(link, request, tx)?;
                // If this future is dropped (timeout, cancellation), the next hop is told.
                let abandon = AbandonOnDrop {
                    runtime: rt,
                    link,
                    conv,
                    armed: true,
                };
                let outcome = tokio::select! {
                    biased;
                    outcome = rx => match outcome {
                        Ok(reply) => reply.into_result(limits),
                        Err(_) => Err(Failure::withdrawn()),
                    },
                    _ = liveness.changed() => Err(Failure::withdrawn()),
                };
                abandon.disarm();
                outcome
            }
        }
    }
}

/// Tells the next hop that a remote call is no longer awaited, unless disarmed.
struct AbandonOnDrop<'a> {
    runtime: &'a RuntimeShared,
    link: LinkId,
    conv: Conv,
    armed: bool,
}

impl AbandonOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.runtime.core.lock().cancel_call(self.link, self.conv);
        }
    }
}
