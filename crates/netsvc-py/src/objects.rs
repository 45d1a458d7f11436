//! The small Python objects the Rust side hands out: bindings and responders, and the
//! conversion of events and failures.

use netsvc::{
    AnnouncementKind, Binding, ConnectionState, Failure, Location, MethodResult, ReportEvent,
    SubscriptionStatus,
};
use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use tokio::sync::oneshot;

use crate::state::Event;
use crate::values::{args_to_py, to_py, to_value};

/// A service's binding: who it is and how to reach it (the original's `ServiceBinding`).
#[pyclass(module = "netsvc._netsvc", name = "ServiceBinding", frozen)]
#[derive(Debug, Clone)]
pub(crate) struct PyBinding {
    pub(crate) inner: Binding,
}

#[pymethods]
impl PyBinding {
    #[allow(non_snake_case)]
    fn serviceName(&self) -> &str {
        self.inner.service_name()
    }
    #[allow(non_snake_case)]
    fn serviceAudience(&self) -> &str {
        self.inner.audience().as_str()
    }
    #[allow(non_snake_case)]
    fn serviceAddress(&self) -> &str {
        self.inner.address()
    }
    #[allow(non_snake_case)]
    fn agentIdentity(&self) -> &str {
        self.inner.agent_identity()
    }
    #[allow(non_snake_case)]
    fn processIdentity(&self) -> &str {
        self.inner.process_identity()
    }
    /// `SERVICE_LOCAL` (0) or `SERVICE_REMOTE` (1).
    #[allow(non_snake_case)]
    fn serviceLocation(&self) -> u8 {
        match self.inner.location() {
            Location::Local => 0,
            _ => 1,
        }
    }
    #[allow(non_snake_case)]
    fn networkGroup(&self) -> &str {
        self.inner.network_group().unwrap_or("")
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Self>()
            .is_ok_and(|o| o.get().inner.address() == self.inner.address())
    }
    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.address().hash(&mut h);
        h.finish()
    }
    fn __repr__(&self) -> String {
        format!(
            "<ServiceBinding {:?} at {}>",
            self.inner.service_name(),
            self.inner.address()
        )
    }
}

pub(crate) fn binding_py(py: Python<'_>, b: &Binding) -> PyResult<Py<PyBinding>> {
    Py::new(py, PyBinding { inner: b.clone() })
}

/// The pending reply to one request; replying twice is an error, never replying fails the
/// request with 57 once this object is gone.
#[pyclass(module = "netsvc._netsvc", name = "Responder", frozen)]
#[derive(Debug)]
pub(crate) struct Responder {
    tx: Mutex<Option<oneshot::Sender<MethodResult>>>,
}

impl Responder {
    pub(crate) fn new(tx: oneshot::Sender<MethodResult>) -> Self {
        Self {
            tx: Mutex::new(Some(tx)),
        }
    }

    fn send(&self, outcome: MethodResult) -> PyResult<bool> {
        let tx = self
            .tx
            .lock()
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this request has already been answered"))?;
        // The caller may have given up (timeout, withdrawal): that is not the method's fault.
        Ok(tx.send(outcome).is_ok())
    }
}

#[pymethods]
impl Responder {
    /// Sends the response; a value netsvc cannot carry raises TypeError and leaves the
    /// request pending. Returns whether the caller still waited.
    fn respond(&self, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        let v = to_value(value)?;
        self.send(Ok(v))
    }

    /// Sends a failure.
    #[pyo3(signature = (error, description, origin = String::new(), details = String::new()))]
    fn fail(
        &self,
        error: i32,
        description: String,
        origin: String,
        details: String,
    ) -> PyResult<bool> {
        self.send(Err(Failure::new(error, description, origin, details)))
    }

    /// Whether no reply has been sent yet.
    fn pending(&self) -> bool {
        self.tx.lock().is_some()
    }

    /// Whether the caller has stopped waiting (timeout, cancellation, withdrawal).
    fn abandoned(&self) -> bool {
        self.tx.lock().as_ref().is_none_or(|t| t.is_closed())
    }
}

/// The kind of a failure, as a short string (see `netsvc.aio.Failure.kind`).
pub(crate) fn kind_name(f: &Failure) -> String {
    use netsvc::FailureKind as K;
    match f.kind() {
        K::ServiceUnavailable => "service-unavailable".into(),
        K::Timeout => "timeout".into(),
        K::Aborted => "aborted".into(),
        K::Busy => "busy".into(),
        K::Encoding => "encoding".into(),
        K::Decoding => "decoding".into(),
        K::MethodUnavailable => "method-unavailable".into(),
        K::BadArguments => "bad-arguments".into(),
        K::MethodFailed => "method-failed".into(),
        K::Withdrawn => "withdrawn".into(),
        K::Application(_) => "application".into(),
        _ => "other".into(),
    }
}

/// A failure as the Python exception `netsvc.ServiceFailure` (or its subclass for the code).
pub(crate) fn failure_err(py: Python<'_>, f: &Failure) -> PyErr {
    let made = py.import("netsvc._errors").and_then(|m| {
        m.getattr("_make_failure")?.call1((
            f.error,
            &f.description,
            &f.origin,
            &f.details,
            kind_name(f),
        ))
    });
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(e) => e,
    }
}

/// A Python exception as a failure: a `ServiceFailure` gives its four fields, anything else
/// failure 57 with the traceback in the details.
pub(crate) fn failure_from_err(py: Python<'_>, err: &PyErr) -> Failure {
    let fields = py.import("netsvc._errors").and_then(|m| {
        m.getattr("_failure_fields")?
            .call1((err.value(py),))?
            .extract::<(i32, String, String, String)>()
    });
    match fields {
        Ok((e, d, o, det)) => Failure::new(e, d, o, det),
        Err(_) => Failure::application_error(err.to_string()),
    }
}

fn tuple<'py>(py: Python<'py>, items: Vec<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, items)
}

/// An event as the tuple the Python dispatcher expects (see `netsvc/_dispatch.py`).
pub(crate) fn event_py(py: Python<'_>, event: Event) -> PyResult<Bound<'_, PyTuple>> {
    let s = |t: &str| t.into_pyobject(py).map(|o| o.into_any());
    let n = |v: u64| v.into_pyobject(py).map(|o| o.into_any());
    let none = || py.None().into_bound(py);
    let b = |x: &Binding| binding_py(py, x).map(|o| o.into_bound(py).into_any());
    match event {
        Event::Wakeup => tuple(py, vec![s("wakeup")?]),
        Event::Request {
            service,
            method,
            args,
            sender,
            conversation,
            responder,
        } => {
            let args = args_to_py(py, &args)?.into_any();
            let sender = match &sender {
                Some(x) => b(x)?,
                None => none(),
            };
            let r = Bound::new(py, Responder::new(responder))?.into_any();
            tuple(
                py,
                vec![
                    s("request")?,
                    n(service)?,
                    s(&method)?,
                    args,
                    sender,
                    n(conversation)?,
                    r,
                ],
            )
        }
        Event::Outcome { id, outcome } => match outcome {
            Ok(v) => match to_py(py, &v) {
                Ok(v) => tuple(py, vec![s("response")?, n(id)?, v]),
                Err(e) => tuple(
                    py,
                    vec![
                        s("failure")?,
                        n(id)?,
                        44i32.into_pyobject(py)?.into_any(),
                        s("Response Decoding Error")?,
                        s("netsvc")?,
                        s(&e.to_string())?,
                    ],
                ),
            },
            Err(f) => tuple(
                py,
                vec![
                    s("failure")?,
                    n(id)?,
                    f.error.into_pyobject(py)?.into_any(),
                    s(&f.description)?,
                    s(&f.origin)?,
                    s(&f.details)?,
                ],
            ),
        },
        Event::Report { token, event } => report_event_py(py, token, event),
        Event::Announcement {
            token,
            announcement,
        } => {
            let (group, status) = match &announcement.kind {
                AnnouncementKind::Available => (none(), 0u64),
                AnnouncementKind::GroupJoined(g) => (s(g)?, 0),
                AnnouncementKind::GroupLeft(g) => (s(g)?, 1),
                _ => (none(), 1),
            };
            tuple(
                py,
                vec![
                    s("announcement")?,
                    n(token)?,
                    b(&announcement.binding)?,
                    group,
                    n(status)?,
                ],
            )
        }
        Event::Lagged { token } => tuple(py, vec![s("lagged")?, n(token)?]),
        Event::Subscription { token, event } => {
            let status = match event.status {
                SubscriptionStatus::Requested => 0u64,
                SubscriptionStatus::Withdrawn => 1,
            };
            tuple(
                py,
                vec![
                    s("subscription")?,
                    n(token)?,
                    b(&event.subscriber)?,
                    s(event.pattern.as_str())?,
                    n(status)?,
                ],
            )
        }
        Event::Connection { token, event } => {
            let state = match event.state {
                ConnectionState::Active => 0u64,
                ConnectionState::Inactive => 1,
                _ => 2,
            };
            tuple(
                py,
                vec![
                    s("connection")?,
                    n(token)?,
                    n(state)?,
                    s(&event.group)?,
                    s(&event.local_address)?,
                    s(&event.peer_address)?,
                    s(&event.peer_process)?,
                    match &event.reason {
                        Some(r) => s(r)?,
                        None => none(),
                    },
                ],
            )
        }
        Event::Closed { token } => tuple(py, vec![s("closed")?, n(token)?]),
    }
}

/// A report monitor's event as a tuple: `("report", token, subject, content, publisher,
/// pattern, error)`, `("publisher", token, binding, available)` or `("missed", token, n)`.
pub(crate) fn report_event_py(
    py: Python<'_>,
    token: u64,
    event: ReportEvent,
) -> PyResult<Bound<'_, PyTuple>> {
    let s = |t: &str| t.into_pyobject(py).map(|o| o.into_any());
    let n = |v: u64| v.into_pyobject(py).map(|o| o.into_any());
    let none = || py.None().into_bound(py);
    let b = |x: &Binding| binding_py(py, x).map(|o| o.into_bound(py).into_any());
    match event {
        ReportEvent::Report(r) => {
            let (content, error) = match r.value() {
                Ok(v) => match to_py(py, v) {
                    Ok(v) => (v, none()),
                    Err(e) => (none(), s(&e.to_string())?),
                },
                Err(e) => (none(), s(&e.to_string())?),
            };
            let pattern = match r.pattern() {
                Some(p) => s(p.as_str())?,
                None => none(),
            };
            tuple(
                py,
                vec![
                    s("report")?,
                    n(token)?,
                    s(r.subject())?,
                    content,
                    b(r.publisher())?,
                    pattern,
                    error,
                ],
            )
        }
        ReportEvent::PublisherAvailable(x) => tuple(
            py,
            vec![
                s("publisher")?,
                n(token)?,
                b(&x)?,
                true.into_pyobject(py)?.to_owned().into_any(),
            ],
        ),
        ReportEvent::PublisherWithdrawn(x) => tuple(
            py,
            vec![
                s("publisher")?,
                n(token)?,
                b(&x)?,
                false.into_pyobject(py)?.to_owned().into_any(),
            ],
        ),
        ReportEvent::Missed(k) => tuple(py, vec![s("missed")?, n(token)?, n(k)?]),
        _ => tuple(py, vec![s("other")?, n(token)?]),
    }
}
