//! `netsvc._netsvc`: the Rust half of the Python package `netsvc`.
//!
//! The Python package (`python/netsvc`) builds the original OSE API and the asyncio API on
//! the few primitives here: a service core, an exchange core, registry lookups and watches,
//! and the bounded event queue that `Dispatcher().run()` drains (see [`state`]). Value
//! conversion is in [`values`]. Nothing here panics into Python: every error becomes a
//! Python exception.

mod bridge;
mod objects;
mod security;
mod state;
mod values;

use std::sync::Arc;
use std::time::Duration;

use netsvc::{
    ConnectionWatch, Exchange, Failure, Lifetime, Pattern, RecvError, RegistryWatch, ReportMonitor,
    Retry, Service, ServiceHandle, SubscriptionWatch, Target,
};
use parking_lot::Mutex;
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use tokio::sync::oneshot;

use crate::bridge::{spawn_py, with_python};
use crate::objects::{PyBinding, Responder, binding_py, event_py, failure_err, failure_from_err};
use crate::state::{Event, QUEUE_CAPACITY, State, queue_full, state, take_events};
use crate::values::{PyOpaque, args_to_py, to_args, to_py, to_value};

fn exiting() -> Failure {
    Failure::application_error("The Python process is exiting.")
}

fn err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn target_of(obj: &Bound<'_, PyAny>) -> PyResult<Target> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Target::from(s.to_str()?));
    }
    if let Ok(b) = obj.cast::<PyBinding>() {
        return Ok(Target::from(b.get().inner.clone()));
    }
    Err(PyTypeError::new_err(
        "a service is named by a str or given by its ServiceBinding",
    ))
}

fn duration_of(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| PyValueError::new_err(format!("{s} is not a valid number of seconds")))
        })
        .transpose()
}

fn lifetime_of(seconds: f64) -> PyResult<Lifetime> {
    if seconds == 0.0 {
        Ok(Lifetime::None)
    } else if seconds == -1.0 {
        Ok(Lifetime::Forever)
    } else if seconds > 0.0 && seconds.is_finite() {
        Ok(Lifetime::For(Duration::from_secs_f64(seconds)))
    } else {
        Err(PyValueError::new_err(format!(
            "lifetime {seconds}: use 0 for none, a positive number of seconds, or -1 for forever"
        )))
    }
}

/// A call's outcome in Python, for the asyncio API's futures.
fn outcome_py(py: Python<'_>, outcome: Result<netsvc::Value, Failure>) -> PyResult<Py<PyAny>> {
    match outcome {
        Ok(v) => to_py(py, &v).map(Bound::unbind),
        Err(f) => Err(failure_err(py, &f)),
    }
}

fn unit_py(py: Python<'_>, out: Result<(), String>) -> PyResult<Py<PyAny>> {
    out.map(|()| py.None()).map_err(PyConnectionError::new_err)
}

/// One service of this process, as the Python `Service` classes hold it.
#[pyclass(module = "netsvc._netsvc", frozen)]
struct ServiceCore {
    token: u64,
    owned: Mutex<Option<Service>>,
    handle: ServiceHandle,
}

impl std::fmt::Debug for ServiceCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCore")
            .field("token", &self.token)
            .finish()
    }
}

impl ServiceCore {
    fn endpoint(&self, target: &Bound<'_, PyAny>) -> PyResult<netsvc::Endpoint> {
        self.handle.endpoint(target_of(target)?).map_err(err)
    }
}

#[pymethods]
impl ServiceCore {
    #[new]
    #[pyo3(signature = (name, audience = "*", visible = true))]
    fn new(name: &str, audience: &str, visible: bool) -> PyResult<Self> {
        let st = state()?;
        let _enter = st.tokio.enter();
        let mut builder = st.runtime.service(name).audience(audience);
        if !visible {
            builder = builder.hidden();
        }
        let service = builder.build().map_err(err)?;
        Ok(Self {
            token: st.token(),
            handle: service.handle(),
            owned: Mutex::new(Some(service)),
        })
    }

    /// The token under which this service's requests and subscription events arrive.
    #[getter]
    fn token(&self) -> u64 {
        self.token
    }

    fn binding(&self, py: Python<'_>) -> PyResult<Py<PyBinding>> {
        binding_py(py, self.handle.binding())
    }

    fn is_withdrawn(&self) -> bool {
        self.handle.is_withdrawn()
    }

    /// Withdraws the service (idempotent).
    fn withdraw(&self) {
        let service = self.owned.lock().take();
        if let Ok(st) = state() {
            let _enter = st.tokio.enter();
            drop(service);
        }
    }

    fn announce(&self) -> PyResult<()> {
        self.handle.announce().map_err(err)
    }

    fn join_group(&self, group: &str) -> PyResult<()> {
        self.handle.join_group(group).map_err(err)
    }

    fn leave_group(&self, group: &str) -> PyResult<()> {
        self.handle.leave_group(group).map_err(err)
    }

    /// Exports a method whose requests go to the dispatcher's queue as `request` events.
    fn export_queued(&self, method: &str) -> PyResult<()> {
        let token = self.token;
        self.handle
            .export(method, move |req: netsvc::Request| async move {
                let st = state().map_err(|e| Failure::application_error(e.to_string()))?;
                let (tx, rx) = oneshot::channel();
                let event = Event::Request {
                    service: token,
                    method: req.method().to_owned(),
                    sender: req.sender().cloned(),
                    conversation: req.conversation_id(),
                    args: req.into_args(),
                    responder: tx,
                };
                st.tx.try_send(event).map_err(|_| queue_full())?;
                rx.await.unwrap_or_else(|_| {
                    Err(Failure::application_error(
                        "The Python service dropped the request without responding.",
                    ))
                })
            })
            .map_err(err)
    }

    /// Exports a method answered by an `async def` function, run on the asyncio event loop
    /// that is running now. It is called with the request's arguments; its return value is
    /// the response, a `ServiceFailure` it raises that failure, any other exception 57.
    fn export_async(&self, py: Python<'_>, method: &str, func: Py<PyAny>) -> PyResult<()> {
        let event_loop = Arc::new(bridge::current_loop(py)?);
        let func = Arc::new(func);
        self.handle
            .export(method, move |req: netsvc::Request| {
                let func = func.clone();
                let event_loop = event_loop.clone();
                async move {
                    let started = with_python(|py| {
                        args_to_py(py, req.args())
                            .and_then(|args| PyTuple::new(py, args))
                            .and_then(|args| bridge::start_coroutine(py, &event_loop, &func, args))
                            .map_err(|e| failure_from_err(py, &e))
                    })
                    .unwrap_or_else(|| Err(exiting()))?;
                    let out = started.outcome().await;
                    with_python(|py| match out {
                        Ok(obj) => to_value(obj.bind(py))
                            .map_err(|e| Failure::netsvc(52, format!("The method's result: {e}"))),
                        Err(e) => Err(failure_from_err(py, &e)),
                    })
                    .unwrap_or_else(|| Err(exiting()))
                }
            })
            .map_err(err)
    }

    fn unexport(&self, method: &str) {
        self.handle.unexport(method);
    }

    fn exported_methods(&self) -> Vec<String> {
        self.handle.exported_methods()
    }

    /// Publishes a report; returns how many subscriptions it was delivered to.
    fn publish(&self, subject: &str, content: &Bound<'_, PyAny>, lifetime: f64) -> PyResult<usize> {
        let value = to_value(content)?;
        let lifetime = lifetime_of(lifetime)?;
        let st = state()?;
        let _enter = st.tokio.enter();
        self.handle.publish(subject, value, lifetime).map_err(err)
    }

    fn send_report(
        &self,
        subscriber: &Bound<'_, PyBinding>,
        subject: &str,
        content: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let value = to_value(content)?;
        self.handle
            .send_report(&subscriber.get().inner, subject, value)
            .map_err(err)
    }

    fn expire_reports(&self, pattern: &str, age: f64) -> PyResult<usize> {
        let age = duration_of(Some(age))?.unwrap_or_default();
        self.handle.expire_reports(pattern, age).map_err(err)
    }

    fn purge_reports(&self) -> PyResult<()> {
        self.handle.purge_reports().map_err(err)
    }

    fn cached_subjects(&self) -> PyResult<Vec<String>> {
        self.handle.cached_subjects().map_err(err)
    }

    /// Sends a request; its outcome arrives as a `response` or `failure` event with the
    /// returned id. `timeout` None: as long as the service exists.
    #[pyo3(signature = (target, method, args, timeout = None))]
    fn send_request(
        &self,
        target: &Bound<'_, PyAny>,
        method: &str,
        args: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<u64> {
        let endpoint = self.endpoint(target)?;
        let args = to_args(args)?;
        let timeout = duration_of(timeout)?;
        let st = state()?;
        let id = st.token();
        let method = method.to_owned();
        st.spawn_task(id, async move {
            let outcome = endpoint.call_with_timeout(&method, args, timeout).await;
            st.post(Event::Outcome { id, outcome }).await;
        });
        Ok(id)
    }

    /// Calls a method and returns an awaitable of its result (asyncio API). Raises the
    /// failure as `ServiceFailure`; cancelling the awaitable abandons the request.
    #[pyo3(signature = (target, method, args, timeout = None))]
    fn call<'py>(
        &self,
        py: Python<'py>,
        target: &Bound<'py, PyAny>,
        method: &str,
        args: &Bound<'py, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let endpoint = self.endpoint(target)?;
        let args = to_args(args)?;
        let timeout = duration_of(timeout)?;
        let method = method.to_owned();
        spawn_py(
            py,
            async move { endpoint.call_with_timeout(&method, args, timeout).await },
            outcome_py,
        )
    }

    /// Subscribes to reports; events arrive on the dispatcher's queue under the returned
    /// token. `target` None: every publisher.
    fn monitor_queued(&self, target: &Bound<'_, PyAny>, pattern: &str) -> PyResult<u64> {
        let monitor = self.monitor(target, pattern)?;
        let st = state()?;
        let token = st.token();
        forward(st, token, Source::Reports(monitor));
        Ok(token)
    }

    /// Subscribes to reports, for `async for` (asyncio API).
    fn monitor_stream(&self, target: &Bound<'_, PyAny>, pattern: &str) -> PyResult<EventStream> {
        Ok(EventStream::new(Source::Reports(
            self.monitor(target, pattern)?,
        )))
    }

    /// Watches this service's subscribers; events arrive under the returned token.
    fn watch_subscriptions_queued(&self) -> PyResult<u64> {
        let watch = self.handle.watch_subscriptions().map_err(err)?;
        let st = state()?;
        let token = st.token();
        forward(st, token, Source::Subscriptions(watch));
        Ok(token)
    }

    fn watch_subscriptions_stream(&self) -> PyResult<EventStream> {
        Ok(EventStream::new(Source::Subscriptions(
            self.handle.watch_subscriptions().map_err(err)?,
        )))
    }
}

impl ServiceCore {
    fn monitor(&self, target: &Bound<'_, PyAny>, pattern: &str) -> PyResult<ReportMonitor> {
        let st = state()?;
        let _enter = st.tokio.enter();
        if target.is_none() {
            self.handle.monitor_all_reports(pattern).map_err(err)
        } else {
            self.handle
                .monitor_reports(target_of(target)?, pattern)
                .map_err(err)
        }
    }
}

/// Posts a source's events to the dispatcher's queue under `token` until it ends (a lagged
/// watch ends after saying so), then `Closed`.
fn forward(st: &'static State, token: u64, mut source: Source) {
    st.spawn_task(token, async move {
        while let Some(event) = source.next(token).await {
            let lagged = matches!(event, Event::Lagged { .. });
            if !st.post(event).await {
                return;
            }
            if lagged {
                break;
            }
        }
        st.post(Event::Closed { token }).await;
    });
}

fn registry_watch(kind: &str, arg: &str) -> PyResult<(RegistryWatch, u8)> {
    let st = state()?;
    let registry = st.runtime.registry();
    Ok(match kind {
        "registry" => (registry.watch(), 0),
        "name" => (registry.watch_name(arg), 0),
        "group" => (registry.watch_group(arg), 0),
        "address" => {
            let (status, watch) = registry.watch_address(arg);
            let status = match status {
                netsvc::ServiceStatus::Available => 0,
                netsvc::ServiceStatus::Withdrawn => 1,
            };
            (watch, status)
        }
        other => {
            return Err(PyValueError::new_err(format!(
                "no registry watch of kind {other:?}"
            )));
        }
    })
}

/// Starts a registry watch whose announcements arrive on the dispatcher's queue; returns
/// its token and, for an address, whether the service is there now (0) or not (1).
#[pyfunction]
fn watch_queued(kind: &str, arg: &str) -> PyResult<(u64, u8)> {
    let (watch, status) = registry_watch(kind, arg)?;
    let st = state()?;
    let token = st.token();
    forward(st, token, Source::Registry(watch));
    Ok((token, status))
}

/// A registry watch for `async for`.
#[pyfunction]
fn watch_stream(kind: &str, arg: &str) -> PyResult<EventStream> {
    Ok(EventStream::new(Source::Registry(
        registry_watch(kind, arg)?.0,
    )))
}

enum Source {
    Reports(ReportMonitor),
    Registry(RegistryWatch),
    Subscriptions(SubscriptionWatch),
    Connections(ConnectionWatch),
}

/// Events one at a time for the asyncio API: `await stream.next()` gives an event tuple,
/// or None once the source has ended. Dropping or closing it unsubscribes.
#[pyclass(module = "netsvc._netsvc", frozen)]
struct EventStream {
    source: Arc<tokio::sync::Mutex<Option<Source>>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStream")
    }
}

impl EventStream {
    fn new(source: Source) -> Self {
        Self {
            source: Arc::new(tokio::sync::Mutex::new(Some(source))),
        }
    }
}

impl Source {
    /// The next event, tagged with `token`; `None` once the source has ended. A watch that
    /// fell behind yields `Lagged` and is then to be dropped.
    async fn next(&mut self, token: u64) -> Option<Event> {
        let lagged =
            |e: RecvError| matches!(e, RecvError::Lagged).then_some(Event::Lagged { token });
        match self {
            Self::Reports(m) => m.recv().await.map(|event| Event::Report { token, event }),
            Self::Registry(w) => match w.recv().await {
                Ok(announcement) => Some(Event::Announcement {
                    token,
                    announcement,
                }),
                Err(e) => lagged(e),
            },
            Self::Subscriptions(w) => match w.recv().await {
                Ok(event) => Some(Event::Subscription { token, event }),
                Err(e) => lagged(e),
            },
            Self::Connections(w) => match w.recv().await {
                Ok(event) => Some(Event::Connection { token, event }),
                Err(e) => lagged(e),
            },
        }
    }
}

#[pymethods]
impl EventStream {
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let source = self.source.clone();
        spawn_py(
            py,
            async move {
                {
                    let mut guard = source.lock().await;
                    let next = match guard.as_mut() {
                        None => None,
                        Some(source) => source.next(0).await,
                    };
                    if matches!(next, None | Some(Event::Lagged { .. })) {
                        // A lagged watch is cut off: it ends after saying so.
                        *guard = None;
                    }
                    next
                }
            },
            |py, next| match next {
                None => Ok(py.None()),
                Some(e) => event_py(py, e).map(|t| t.into_any().unbind()),
            },
        )
    }

    /// Ends the subscription now.
    fn close(&self) {
        if let Ok(mut guard) = self.source.try_lock() {
            guard.take();
        } else {
            // A `next` is waiting: it holds the lock; ending it happens when it is dropped.
            let source = self.source.clone();
            if let Ok(st) = state() {
                st.tokio.spawn(async move {
                    source.lock().await.take();
                });
            }
        }
    }
}

/// One exchange of this process (per group).
#[pyclass(module = "netsvc._netsvc", frozen)]
struct ExchangeCore {
    exchange: Mutex<Option<Exchange>>,
}

impl std::fmt::Debug for ExchangeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExchangeCore")
    }
}

impl ExchangeCore {
    fn get(&self) -> PyResult<Exchange> {
        self.exchange
            .lock()
            .clone()
            .ok_or_else(|| PyRuntimeError::new_err("the exchange has been shut down"))
    }
}

#[pymethods]
impl ExchangeCore {
    /// `server`: listens and relays; `client`: connects. `authorise`, if given, is called
    /// with each connecting client's IP address (on a runtime thread, holding the GIL) and
    /// refuses it when it returns a false value or raises.
    /// The keyword arguments say how it links to the servers it connects to (TLS trusting
    /// `tls_ca`, a client certificate, a login) and, with `users` (a users file), that
    /// peers must log in to it.
    #[new]
    #[pyo3(signature = (
        server, group = "", authorise = None, *, tls_ca = None, tls_cert = None,
        tls_key = None, tls_server_name = None, user = None, password = None, token = None,
        users = None
    ))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, each optional
    fn new(
        server: bool,
        group: &str,
        authorise: Option<Py<PyAny>>,
        tls_ca: Option<&str>,
        tls_cert: Option<&str>,
        tls_key: Option<&str>,
        tls_server_name: Option<&str>,
        user: Option<&str>,
        password: Option<&str>,
        token: Option<&str>,
        users: Option<&str>,
    ) -> PyResult<Self> {
        let st = state()?;
        let mut builder = if server {
            Exchange::server(&st.runtime)
        } else {
            Exchange::client(&st.runtime)
        };
        builder = builder.group(group);
        builder = security::LinkSecurity {
            tls_ca,
            tls_cert,
            tls_key,
            tls_server_name,
            user,
            password,
            token,
            users,
        }
        .apply(builder)?;
        if let Some(hook) = authorise {
            builder = builder.authorise(move |peer| {
                let host = match peer {
                    netsvc::PeerAddr::Tcp(a) => a.ip().to_string(),
                    _ => "unix".to_owned(),
                };
                with_python(|py| {
                    hook.bind(py)
                        .call1((host,))
                        .and_then(|r| r.is_truthy())
                        .unwrap_or(false)
                })
                .unwrap_or(false)
            });
        }
        let _enter = st.tokio.enter();
        let exchange = builder.build().map_err(err)?;
        Ok(Self {
            exchange: Mutex::new(Some(exchange)),
        })
    }

    /// Listens on `HOST:PORT` (port 0: a free one); returns the address bound. Blocks
    /// (without the GIL) only while binding. With `tls_cert` and `tls_key` the port is TLS
    /// only; `client_ca` verifies client certificates (required with
    /// `require_client_cert`).
    #[pyo3(signature = (
        address, *, tls_cert = None, tls_key = None, client_ca = None,
        require_client_cert = false
    ))]
    fn listen(
        &self,
        py: Python<'_>,
        address: &str,
        tls_cert: Option<&str>,
        tls_key: Option<&str>,
        client_ca: Option<&str>,
        require_client_cert: bool,
    ) -> PyResult<String> {
        let exchange = self.get()?;
        let tls = listen_tls(tls_cert, tls_key, client_ca, require_client_cert)?;
        let st = state()?;
        let address = address.to_owned();
        py.detach(|| {
            st.tokio
                .block_on(listen_on(&exchange, &address, tls.as_ref()))
        })
        .map(|a| a.to_string())
        .map_err(|e| PyConnectionError::new_err(e.to_string()))
    }

    #[pyo3(signature = (
        address, *, tls_cert = None, tls_key = None, client_ca = None,
        require_client_cert = false
    ))]
    fn listen_async<'py>(
        &self,
        py: Python<'py>,
        address: &str,
        tls_cert: Option<&str>,
        tls_key: Option<&str>,
        client_ca: Option<&str>,
        require_client_cert: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let exchange = self.get()?;
        let tls = listen_tls(tls_cert, tls_key, client_ca, require_client_cert)?;
        let address = address.to_owned();
        spawn_py(
            py,
            async move {
                listen_on(&exchange, &address, tls.as_ref())
                    .await
                    .map(|a| a.to_string())
                    .map_err(|e| e.to_string())
            },
            |py, out| match out {
                Ok(a) => Ok(a.into_pyobject(py)?.into_any().unbind()),
                Err(e) => Err(PyConnectionError::new_err(e)),
            },
        )
    }

    /// Connects to a server in the background (`retry` seconds between attempts; negative:
    /// one attempt only).
    fn connect(&self, address: &str, retry: f64) -> PyResult<ConnectorCore> {
        let exchange = self.get()?;
        let retry = if (0.0..0.01).contains(&retry) {
            Retry::every(Duration::from_millis(10))
        } else {
            Retry::from_seconds(retry)
        };
        let st = state()?;
        let _enter = st.tokio.enter();
        let connector = exchange.connect(address, retry).map_err(err)?;
        Ok(ConnectorCore { connector })
    }

    fn watch_connections_queued(&self) -> PyResult<u64> {
        let watch = self.get()?.watch_connections();
        let st = state()?;
        let token = st.token();
        forward(st, token, Source::Connections(watch));
        Ok(token)
    }

    fn watch_connections_stream(&self) -> PyResult<EventStream> {
        Ok(EventStream::new(Source::Connections(
            self.get()?.watch_connections(),
        )))
    }

    /// Stops the exchange, flushing its links for at most `grace` seconds (blocking,
    /// without the GIL).
    fn shutdown(&self, py: Python<'_>, grace: f64) -> PyResult<()> {
        let Some(exchange) = self.exchange.lock().take() else {
            return Ok(());
        };
        let grace = duration_of(Some(grace.max(0.0)))?.unwrap_or_default();
        let st = state()?;
        py.detach(|| st.tokio.block_on(exchange.shutdown(grace)));
        let _enter = st.tokio.enter();
        drop(exchange);
        Ok(())
    }

    fn shutdown_async<'py>(&self, py: Python<'py>, grace: f64) -> PyResult<Bound<'py, PyAny>> {
        let exchange = self.exchange.lock().take();
        let grace = duration_of(Some(grace.max(0.0)))?.unwrap_or_default();
        spawn_py(
            py,
            async move {
                if let Some(exchange) = exchange {
                    exchange.shutdown(grace).await;
                }
                Ok(())
            },
            unit_py,
        )
    }
}

fn listen_tls(
    cert: Option<&str>,
    key: Option<&str>,
    client_ca: Option<&str>,
    require_client_cert: bool,
) -> PyResult<Option<netsvc::security::ServerTls>> {
    match (cert, key) {
        (Some(cert), Some(key)) => {
            security::server_tls(cert, key, client_ca, require_client_cert).map(Some)
        }
        (None, None) if client_ca.is_none() && !require_client_cert => Ok(None),
        (None, None) => Err(PyValueError::new_err(
            "client_ca and require_client_cert need tls_cert and tls_key",
        )),
        _ => Err(PyValueError::new_err("tls_cert and tls_key go together")),
    }
}

async fn listen_on(
    exchange: &Exchange,
    address: &str,
    tls: Option<&netsvc::security::ServerTls>,
) -> Result<std::net::SocketAddr, netsvc::ExchangeError> {
    match tls {
        Some(tls) => exchange.listen_tls(address, tls).await,
        None => exchange.listen(address).await,
    }
}

/// A client's connection to one server.
#[pyclass(module = "netsvc._netsvc", frozen)]
#[derive(Debug)]
struct ConnectorCore {
    connector: netsvc::Connector,
}

#[pymethods]
impl ConnectorCore {
    #[getter]
    fn address(&self) -> &str {
        self.connector.address()
    }

    fn is_synced(&self) -> bool {
        self.connector.is_synced()
    }

    /// `connecting`, `linked`, `synced` or `stopped`, and the last failure if any.
    fn status(&self) -> (String, Option<String>) {
        let s = self.connector.status();
        let phase = match s.phase {
            netsvc::LinkPhase::Connecting => "connecting",
            netsvc::LinkPhase::Linked => "linked",
            netsvc::LinkPhase::Synced => "synced",
            _ => "stopped",
        };
        (phase.to_owned(), s.last_failure.map(|f| f.to_string()))
    }

    /// Waits (without the GIL) until linked and synced, at most `limit` seconds; raises
    /// ConnectionError naming the cause otherwise.
    fn wait_synced(&self, py: Python<'_>, limit: f64) -> PyResult<()> {
        let limit = duration_of(Some(limit))?.unwrap_or_default();
        let st = state()?;
        let connector = self.connector.clone();
        py.detach(|| st.tokio.block_on(connector.synced_within(limit)))
            .map_err(|e| PyConnectionError::new_err(e.to_string()))
    }

    fn synced_async<'py>(
        &self,
        py: Python<'py>,
        limit: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let limit = duration_of(limit)?;
        let connector = self.connector.clone();
        spawn_py(
            py,
            async move {
                match limit {
                    Some(l) => connector.synced_within(l).await,
                    None => connector.synced().await,
                }
                .map_err(|e| e.to_string())
            },
            unit_py,
        )
    }
}

/// Waits at most `timeout` seconds (without the GIL) for events for the dispatcher, and
/// returns up to `max` of them as tuples. Raises KeyboardInterrupt (or whatever a signal
/// handler raises) if a signal arrived meanwhile.
#[pyfunction]
#[pyo3(signature = (timeout, max = 1024))]
fn wait_events(py: Python<'_>, timeout: f64, max: usize) -> PyResult<Bound<'_, PyList>> {
    let st = state()?;
    let timeout = duration_of(Some(timeout.max(0.0)))?.unwrap_or_default();
    let events = py.detach(|| take_events(st, timeout, max.max(1)));
    let list = PyList::empty(py);
    for e in events {
        list.append(event_py(py, e)?)?;
    }
    py.check_signals()?;
    Ok(list)
}

/// Wakes the dispatcher from another thread.
#[pyfunction]
fn wakeup() -> PyResult<()> {
    let _ = state()?.tx.try_send(Event::Wakeup);
    Ok(())
}

/// Cancels a request or ends a subscription or watch by its token; whether it was live.
#[pyfunction]
fn cancel(token: u64) -> PyResult<bool> {
    Ok(state()?.cancel(token))
}

/// How many requests, subscriptions and watches of the dispatcher are live.
#[pyfunction]
fn live_tasks() -> PyResult<usize> {
    Ok(state()?.live_tasks())
}

/// Calls a method from no service in particular (asyncio API).
#[pyfunction]
#[pyo3(signature = (target, method, args, timeout = None))]
fn call<'py>(
    py: Python<'py>,
    target: &Bound<'py, PyAny>,
    method: &str,
    args: &Bound<'py, PyAny>,
    timeout: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let endpoint = state()?.runtime.endpoint(target_of(target)?);
    let args = to_args(args)?;
    let timeout = duration_of(timeout)?;
    let method = method.to_owned();
    spawn_py(
        py,
        async move { endpoint.call_with_timeout(&method, args, timeout).await },
        outcome_py,
    )
}

/// Calls a method and waits (without the GIL) for its result, for the blocking facade
/// `netsvc.client`. Raises the failure as `ServiceFailure`.
#[pyfunction]
#[pyo3(signature = (target, method, args, timeout = None))]
fn call_blocking(
    py: Python<'_>,
    target: &Bound<'_, PyAny>,
    method: &str,
    args: &Bound<'_, PyAny>,
    timeout: Option<f64>,
) -> PyResult<Py<PyAny>> {
    let st = state()?;
    let endpoint = st.runtime.endpoint(target_of(target)?);
    let args = to_args(args)?;
    let timeout = duration_of(timeout)?;
    let outcome = py.detach(|| {
        st.tokio
            .block_on(endpoint.call_with_timeout(method, args, timeout))
    });
    outcome_py(py, outcome)
}

/// Whether a call to this target would find a service now.
#[pyfunction]
fn is_available(target: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(state()?.runtime.endpoint(target_of(target)?).is_available())
}

/// The binding a call to this target would go to now.
#[pyfunction]
fn resolve(py: Python<'_>, target: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyBinding>>> {
    state()?
        .runtime
        .endpoint(target_of(target)?)
        .binding()
        .map(|b| binding_py(py, &b))
        .transpose()
}

fn bindings(py: Python<'_>, list: Vec<netsvc::Binding>) -> PyResult<Vec<Py<PyBinding>>> {
    list.iter().map(|b| binding_py(py, b)).collect()
}

#[pyfunction]
fn services(py: Python<'_>) -> PyResult<Vec<Py<PyBinding>>> {
    bindings(py, state()?.runtime.registry().services())
}

#[pyfunction]
fn lookup_name(py: Python<'_>, name: &str) -> PyResult<Vec<Py<PyBinding>>> {
    bindings(py, state()?.runtime.registry().lookup_name(name))
}

#[pyfunction]
fn lookup_group(py: Python<'_>, group: &str) -> PyResult<Vec<Py<PyBinding>>> {
    bindings(py, state()?.runtime.registry().lookup_group(group))
}

#[pyfunction]
fn lookup_address(py: Python<'_>, address: &str) -> PyResult<Option<Py<PyBinding>>> {
    state()?
        .runtime
        .registry()
        .lookup_address(address)
        .map(|b| binding_py(py, &b))
        .transpose()
}

#[pyfunction]
#[pyo3(signature = (address = None))]
fn groups(address: Option<&str>) -> PyResult<Vec<String>> {
    let registry = state()?.runtime.registry();
    Ok(match address {
        Some(a) => registry.groups_of(a),
        None => registry.groups(),
    })
}

/// This process's identity on the exchange.
#[pyfunction]
fn process_identity() -> PyResult<String> {
    Ok(state()?.runtime.process_identity().to_owned())
}

/// Whether `subject` matches the glob `pattern` (`*` any run, `?` one character).
#[pyfunction]
fn match_subject(pattern: &str, subject: &str) -> PyResult<bool> {
    Ok(Pattern::new(pattern).map_err(err)?.matches(subject))
}

/// Withdraws every service of this process.
#[pyfunction]
fn shutdown_services() -> PyResult<()> {
    let st = state()?;
    let _enter = st.tokio.enter();
    st.runtime.shutdown();
    Ok(())
}

/// Round-trips a value through the netsvc value model and its wire encoding (for tests).
#[pyfunction]
fn roundtrip<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let v = to_value(obj)?;
    let bytes = netsvc::value::encode(&v, &netsvc::value::Limits::DEFAULT).map_err(err)?;
    let back = netsvc::value::decode(&bytes, &netsvc::value::Limits::DEFAULT).map_err(err)?;
    to_py(py, &back)
}

#[pymodule]
fn _netsvc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("QUEUE_CAPACITY", QUEUE_CAPACITY)?;
    m.add_class::<ServiceCore>()?;
    m.add_class::<ExchangeCore>()?;
    m.add_class::<ConnectorCore>()?;
    m.add_class::<EventStream>()?;
    m.add_class::<PyBinding>()?;
    m.add_class::<Responder>()?;
    m.add_class::<PyOpaque>()?;
    m.add_class::<bridge::Canceller>()?;
    m.add_class::<bridge::Receiver>()?;
    m.add_function(wrap_pyfunction!(bridge::finalize, m)?)?;
    m.add_function(wrap_pyfunction!(wait_events, m)?)?;
    m.add_function(wrap_pyfunction!(wakeup, m)?)?;
    m.add_function(wrap_pyfunction!(cancel, m)?)?;
    m.add_function(wrap_pyfunction!(live_tasks, m)?)?;
    m.add_function(wrap_pyfunction!(watch_queued, m)?)?;
    m.add_function(wrap_pyfunction!(watch_stream, m)?)?;
    m.add_function(wrap_pyfunction!(call, m)?)?;
    m.add_function(wrap_pyfunction!(call_blocking, m)?)?;
    m.add_function(wrap_pyfunction!(is_available, m)?)?;
    m.add_function(wrap_pyfunction!(resolve, m)?)?;
    m.add_function(wrap_pyfunction!(services, m)?)?;
    m.add_function(wrap_pyfunction!(lookup_name, m)?)?;
    m.add_function(wrap_pyfunction!(lookup_group, m)?)?;
    m.add_function(wrap_pyfunction!(lookup_address, m)?)?;
    m.add_function(wrap_pyfunction!(groups, m)?)?;
    m.add_function(wrap_pyfunction!(process_identity, m)?)?;
    m.add_function(wrap_pyfunction!(match_subject, m)?)?;
    m.add_function(wrap_pyfunction!(shutdown_services, m)?)?;
    m.add_function(wrap_pyfunction!(roundtrip, m)?)?;
    Ok(())
}
