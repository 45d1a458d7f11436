//! The exchange's own service, [`INTROSPECTION_SERVICE`]: what a hub tells remote tools
//! about itself (`netsvc info`, the HTTP gateway, any caller), through the same requests
//! as every other service, so it is seen, called and permitted like one.

use std::sync::{Arc, Weak};

use netsvc_proto::value::{self, Value};

use super::service::{Request, Service, ServiceBuilder};
use crate::core::shared::RuntimeShared;
use crate::model::error::Error;
use crate::model::failure::Failure;
use crate::model::grant::Grants;
use crate::model::stats::{LinkStats, Stats};

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
/// A caller that logged in to this hub without the `link` right is told only of what it may
/// see: the requests of services its `see` allows, the subjects and subscriptions its
/// `subscribe` allows, and only its own user's links (the others name users and their
/// addresses). Callers in this process, on an exchange without users, and hubs get
/// everything.
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
        move |_: &Request| {
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
        move |req: &Request| {
            let mut stats = snapshot(&weak)?;
            if let Some(grants) = &req.grants {
                restrict(&mut stats, grants);
            }
            convert(&stats)
        }
    };
    let links = {
        let weak = weak.clone();
        move |req: &Request| {
            let mut links = snapshot(&weak)?.links;
            if let Some(grants) = &req.grants {
                links.retain(|l| own_link(l, grants));
            }
            convert(&links)
        }
    };
    let subscriptions = move |req: &Request| {
        let runtime = alive(&weak)?;
        let mut subscriptions = runtime.core.lock().subscriptions(MAX_SUBSCRIPTIONS);
        if let Some(grants) = &req.grants {
            subscriptions.entries.retain(|s| {
                sees(grants, &s.publisher)
                    && sees(grants, &s.subscriber)
                    && grants.subscribe.allows(&s.pattern)
            });
        }
        convert(&subscriptions)
    };
    ServiceBuilder::new(runtime.clone(), INTROSPECTION_SERVICE)
        .export("info", move |req| {
            let answer = info(&req);
            async move { answer }
        })
        .export("stats", move |req| {
            let answer = stats(&req);
            async move { answer }
        })
        .export("links", move |req| {
            let answer = links(&req);
            async move { answer }
        })
        .export("subscriptions", move |req| {
            let answer = subscriptions(&req);
            async move { answer }
        })
        .build()
}

/// What a caller logged in without the `link` right may learn of this process (callers in
/// this process, on an exchange without users, or hubs, learn everything): the requests of
/// the services it may see, the subjects it may receive, and only its own user's links
/// (the others name users and their addresses).
fn restrict(stats: &mut Stats, grants: &Grants) {
    stats.requests.retain(|r| sees(grants, &r.service));
    stats
        .subjects
        .retain(|s| sees(grants, &s.publisher) && grants.subscribe.allows(&s.subject));
    stats.links.retain(|l| own_link(l, grants));
}

/// Whether `name` is a service the caller may see (unnamed agents can be seen by no one's
/// name and reveal none).
fn sees(grants: &Grants, name: &str) -> bool {
    name.is_empty() || grants.see.allows(name)
}

/// Whether `link` is one of the caller's own user's (an anonymous caller's: anonymous ones).
fn own_link(link: &LinkStats, grants: &Grants) -> bool {
    link.user.as_deref().unwrap_or("") == grants.user
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
