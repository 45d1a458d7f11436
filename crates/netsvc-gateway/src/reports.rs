//! Reports over HTTP: `GET /api/reports?service=NAME&pattern=GLOB`, a Server-Sent Events
//! stream of a publisher's reports (its cache first, then live, as a native monitor gets
//! them), and `POST /api/reports/SERVICE/SUBJECT?lifetime=N`, a report published by a
//! publisher service the gateway hosts.
//!
//! Each stream owns one report monitor of the runtime. Its queue is the runtime's bounded
//! one, which coalesces per publisher and subject when the client falls behind and counts
//! what it replaced (a `missed` event): a slow HTTP client costs the hub that queue's
//! bound, never a wait.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use netsvc::value::json::{from_json_with_limits, to_json};
use netsvc::{Lifetime, Pattern, ReportEvent, ReportMonitor, Service, ServiceHandle, names};
use serde_json::{Value as Json, json};

use crate::server::{Exposure, SERVER, Shared, percent_decode, reply};

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    reply(
        status,
        "application/json",
        json!({ "error": message.into() }).to_string(),
    )
}

/// The value of `key` in a query string, percent-decoded (`+` is a space, as forms send).
fn query_value(query: Option<&str>, key: &str) -> Option<Result<String, ()>> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(&v.replace('+', " ")).ok_or(()))
    })
}

/// The services the gateway hosts to publish from, and the one it subscribes with.
#[derive(Debug, Default)]
pub(crate) struct Hosted {
    publishers: HashMap<String, Service>,
    subscriber: Option<Service>,
}

impl Shared {
    /// The gateway's publisher service `name`, made on first use; `None` if the
    /// configuration does not name it.
    pub(crate) fn publisher(&self, name: &str) -> Option<Result<ServiceHandle, netsvc::Error>> {
        if !self.config().publishers.iter().any(|p| p == name) {
            return None;
        }
        let mut hosted = self.hosted();
        if let Some(service) = hosted.publishers.get(name) {
            return Some(Ok(service.handle()));
        }
        Some(self.rt.service(name).build().map(|service| {
            let handle = service.handle();
            hosted.publishers.insert(name.to_owned(), service);
            handle
        }))
    }

    fn subscriber(&self) -> Result<ServiceHandle, netsvc::Error> {
        let mut hosted = self.hosted();
        if let Some(service) = &hosted.subscriber {
            return Ok(service.handle());
        }
        // Anonymous: it takes no name and needs no `provide` right.
        let service = self.rt.service("").build()?;
        let handle = service.handle();
        hosted.subscriber = Some(service);
        Ok(handle)
    }
}

pub(crate) fn stream(state: &Arc<Shared>, query: Option<&str>) -> Response {
    let service = match query_value(query, "service") {
        Some(Ok(name)) if !name.is_empty() => name,
        Some(Err(())) => return problem(StatusCode::BAD_REQUEST, "service is not UTF-8"),
        _ => return problem(StatusCode::BAD_REQUEST, "service=NAME is required"),
    };
    let pattern = match query_value(query, "pattern") {
        None => "*".to_owned(),
        Some(Ok(pattern)) => pattern,
        Some(Err(())) => return problem(StatusCode::BAD_REQUEST, "pattern is not UTF-8"),
    };
    if let Err(e) = names::check_service_name(&service) {
        return problem(StatusCode::BAD_REQUEST, e.to_string());
    }
    if let Err(e) = Pattern::new(&pattern) {
        return problem(StatusCode::BAD_REQUEST, e.to_string());
    }
    // With every service exposed a stream may wait for a publisher still to come; with a
    // narrower exposure only a publisher exposed now can be watched.
    let exposed = match &state.config().exposure {
        Exposure::All => true,
        _ => state.resolve(&service).is_some(),
    };
    if !exposed {
        return problem(
            StatusCode::NOT_FOUND,
            format!("no service {service:?} exposed"),
        );
    }
    let monitor = match state
        .subscriber()
        .and_then(|s| s.monitor_reports(service.as_str(), &pattern))
    {
        Ok(monitor) => monitor,
        Err(e) => return problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let start = ReportStream {
        monitor,
        sequence: 0,
        done: false,
    };
    let events: Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(stream::unfold(start, ReportStream::next));
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    response.headers_mut().insert(header::SERVER, SERVER);
    response
}

struct ReportStream {
    monitor: ReportMonitor,
    sequence: u64,
    done: bool,
}

impl ReportStream {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if self.done {
            return None;
        }
        let (name, data) = match self.monitor.recv().await {
            Some(ReportEvent::Report(report)) => {
                let content = match report.value() {
                    Ok(value) => to_json(value),
                    Err(e) => json!({ "undecodable": e.to_string() }),
                };
                let publisher = report.publisher();
                (
                    "report",
                    json!({
                        "publisher": publisher.service_name(),
                        "address": publisher.address(),
                        "subject": report.subject(),
                        "content": content,
                        "cached": report.is_cached(),
                    }),
                )
            }
            Some(ReportEvent::PublisherAvailable(b)) => (
                "available",
                json!({ "publisher": b.service_name(), "address": b.address() }),
            ),
            Some(ReportEvent::PublisherWithdrawn(b)) => (
                "withdrawn",
                json!({ "publisher": b.service_name(), "address": b.address() }),
            ),
            Some(ReportEvent::Missed(n)) => ("missed", json!({ "count": n })),
            Some(_) => return Box::pin(self.next()).await,
            None => {
                self.done = true;
                ("closed", Json::Null)
            }
        };
        self.sequence += 1;
        let event = Event::default()
            .id(self.sequence.to_string())
            .event(name)
            .data(data.to_string());
        Some((Ok(event), self))
    }
}

/// `POST /api/reports/SERVICE/SUBJECT[?lifetime=N]` with the content as a JSON body.
pub(crate) fn publish(state: &Shared, rest: &str, query: Option<&str>, body: &Bytes) -> Response {
    let Some((service, subject)) = rest.split_once('/') else {
        return problem(
            StatusCode::NOT_FOUND,
            "the path is /api/reports/SERVICE/SUBJECT",
        );
    };
    let (Some(service), Some(subject)) = (percent_decode(service), percent_decode(subject)) else {
        return problem(StatusCode::BAD_REQUEST, "the path is not UTF-8");
    };
    let lifetime = match query_value(query, "lifetime") {
        None => Lifetime::None,
        Some(text) => match text.ok().and_then(|t| t.parse::<i64>().ok()) {
            Some(seconds) => match Lifetime::from_seconds(seconds) {
                Ok(lifetime) => lifetime,
                Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
            },
            None => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "lifetime is whole seconds: -1 forever, 0 none, N > 0",
                );
            }
        },
    };
    let json: Json = match serde_json::from_slice(body) {
        Ok(json) => json,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            );
        }
    };
    let content = match from_json_with_limits(&json, &state.config().value_limits) {
        Ok(value) => value,
        Err(e) => return problem(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let publisher = match state.publisher(&service) {
        None => {
            return problem(
                StatusCode::NOT_FOUND,
                format!("this gateway publishes as no service {service:?} (--publisher NAME)"),
            );
        }
        Some(Err(e)) => return problem(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Some(Ok(publisher)) => publisher,
    };
    match publisher.publish(&subject, content, lifetime) {
        Ok(reached) => reply(
            StatusCode::OK,
            "application/json",
            json!({ "publisher": publisher.address(), "subject": subject, "reached": reached })
                .to_string(),
        ),
        Err(e) => problem(StatusCode::BAD_REQUEST, e.to_string()),
    }
}
