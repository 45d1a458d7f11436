//! The exchange's own service, [`INTROSPECTION_SERVICE`]: what a hub tells remote tools
//! about itself (`netsvc info`, the HTTP gateway, any caller), through the same requests
//! as every other service, so it is seen, called and permitted like one.

use std::sync::{Arc, Weak};

use netsvc_proto::value::{self, Value};

use super::service::{Service, ServiceBuilder};
use crate::core::shared::RuntimeShared;
use crate::model::error::Error;
use crate::model::failure::Failure;
use crate::model::stats::Stats;

/// The name of the service a server exchange hosts when
/// [`ExchangeBuilder::introspection`](crate::ExchangeBuilder::introspection) is on. Its
/// methods, none of which takes arguments:
///
/// - `info`: a map of `identity`, `version`, `group` (the exchange group), `uptime_s`,
///   `services_local`, `services_remote`, `links` (how many are up);
/// - `stats`: the process's [`Stats`] as a value (field names as in its JSON);
/// - `links`: the links up now, as `stats`'s `links`;
/// - `subscriptions`: the report subscriptions held there, as
///   [`Runtime::subscriptions`](crate::Runtime::subscriptions) gives them (at most
///   [`MAX_SUBSCRIPTIONS`]).
///
/// Names beginning `netsvc.` are netsvc's own; the CLI lists them only when asked.
pub const INTROSPECTION_SERVICE: &str = "netsvc.exchange";

/// The most subscriptions the introspection service lists in one answer.
pub const MAX_SUBSCRIPTIONS: usize = 10_000;

/// Hosts the introspection service of an exchange of group `group` in `runtime`. Its
/// handlers hold the runtime weakly: the service must not keep its runtime alive.
pub(crate) fn host(runtime: &Arc<RuntimeShared>, group: &str) -> Result<Service, Error> {
    let weak = Arc::downgrade(runtime);
    let group: Arc<str> = group.into();
    let info = {
        let weak = weak.clone();
        move || {
            let stats = snapshot(&weak)?;
            convert(&Info {
                identity: &stats.identity,
                version: &stats.version,
                group: &group,
                uptime_s: stats.uptime_s,
                services_local: stats.services_local,
                services_remote: stats.services_remote,
                links: stats.links.len() as u64,
            })
        }
    };
    let stats = {
        let weak = weak.clone();
        move || convert(&snapshot(&weak)?)
    };
    let links = {
        let weak = weak.clone();
        move || convert(&snapshot(&weak)?.links)
    };
    let subscriptions = move || {
        let runtime = alive(&weak)?;
        let subscriptions = runtime.core.lock().subscriptions(MAX_SUBSCRIPTIONS);
        convert(&subscriptions)
    };
    ServiceBuilder::new(runtime.clone(), INTROSPECTION_SERVICE)
        .export("info", move |_| {
            let answer = info();
            async move { answer }
        })
        .export("stats", move |_| {
            let answer = stats();
            async move { answer }
        })
        .export("links", move |_| {
            let answer = links();
            async move { answer }
        })
        .export("subscriptions", move |_| {
            let answer = subscriptions();
            async move { answer }
        })
        .build()
}

/// The answer of `info`.
#[derive(serde::Serialize)]
struct Info<'a> {
    identity: &'a str,
    version: &'a str,
    group: &'a str,
    uptime_s: f64,
    services_local: u64,
    services_remote: u64,
    links: u64,
}

fn alive(runtime: &Weak<RuntimeShared>) -> Result<Arc<RuntimeShared>, Failure> {
    runtime
        .upgrade()
        .ok_or_else(|| Failure::application_error("the runtime has stopped"))
}

fn snapshot(runtime: &Weak<RuntimeShared>) -> Result<Stats, Failure> {
    Ok(alive(runtime)?.stats())
}

fn convert<T: serde::Serialize + ?Sized>(item: &T) -> Result<Value, Failure> {
    value::to_value(item).map_err(|e| Failure::application_error(e.to_string()))
}
