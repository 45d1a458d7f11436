//! The process's one Rust runtime and the bounded event queue the Python dispatcher drains.
//!
//! One tokio runtime (two worker threads named `netsvc-py`) and one netsvc [`Runtime`] per
//! Python process, made on first use. Everything the Rust side has to tell the original API's
//! Python code (a request for a method, a response, a report, an announcement, a link change)
//! becomes an [`Event`] in one bounded queue of [`QUEUE_CAPACITY`] events, which
//! `Dispatcher().run()` drains on its own thread. The policy when the queue is full:
//!
//! - a request for a method of a Python service is refused at once with failure 51
//!   ("Resource Unavailable": the dispatcher is that far behind), so the caller never hangs;
//! - everything else (responses, reports, announcements, link and subscription events) waits
//!   for room in the task that forwards it, so nothing is lost here; while it waits, the
//!   core's own bounded queues behind it apply their policy (reports of one subject coalesce
//!   and the monitor is told how many it missed; a registry watch that falls too far behind
//!   is cut off, which the dispatcher reports as a lag);
//! - a wake-up from `Dispatcher().schedule()` on another thread is dropped: the queue being
//!   full already wakes the dispatcher.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use netsvc::{
    Announcement, Binding, ConnectionEvent, Failure, MethodResult, ReportEvent, Runtime,
    RuntimeConfig, SubscriptionEvent, Value,
};
use parking_lot::Mutex;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// How many events the queue to the dispatcher holds.
pub(crate) const QUEUE_CAPACITY: usize = 16_384;

/// What the Rust side tells the dispatcher.
#[derive(Debug)]
pub(crate) enum Event {
    Wakeup,
    Request {
        service: u64,
        method: String,
        args: Vec<Value>,
        sender: Option<Binding>,
        conversation: u64,
        responder: oneshot::Sender<MethodResult>,
    },
    Outcome {
        id: u64,
        outcome: MethodResult,
    },
    Report {
        token: u64,
        event: ReportEvent,
    },
    Announcement {
        token: u64,
        announcement: Announcement,
    },
    Lagged {
        token: u64,
    },
    Subscription {
        token: u64,
        event: SubscriptionEvent,
    },
    Connection {
        token: u64,
        event: ConnectionEvent,
    },
    Closed {
        token: u64,
    },
}

pub(crate) struct State {
    pub(crate) tokio: &'static tokio::runtime::Runtime,
    pub(crate) runtime: Runtime,
    pub(crate) tx: mpsc::Sender<Event>,
    pub(crate) rx: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    tasks: Mutex<HashMap<u64, AbortHandle>>,
    next_token: AtomicU64,
}

static TOKIO: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
static STATE: OnceLock<State> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// The process's state, made on first use.
pub(crate) fn state() -> PyResult<&'static State> {
    if let Some(s) = STATE.get() {
        return Ok(s);
    }
    let _guard = INIT.lock();
    if let Some(s) = STATE.get() {
        return Ok(s);
    }
    if TOKIO.get().is_none() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("netsvc-py")
            .enable_all()
            .build()
            .map_err(|e| {
                PyRuntimeError::new_err(format!("cannot start the netsvc runtime: {e}"))
            })?;
        let _ = TOKIO.set(rt);
    }
    let tokio = TOKIO
        .get()
        .ok_or_else(|| PyRuntimeError::new_err("the netsvc runtime did not start"))?;
    let runtime = {
        let _enter = tokio.enter();
        Runtime::with_config(RuntimeConfig::default().with_request_timeout(None))
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?
    };
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let state = State {
        tokio,
        runtime,
        tx,
        rx: tokio::sync::Mutex::new(rx),
        tasks: Mutex::new(HashMap::new()),
        next_token: AtomicU64::new(1),
    };
    let _ = STATE.set(state);
    STATE
        .get()
        .ok_or_else(|| PyRuntimeError::new_err("the netsvc state was not set"))
}

impl State {
    pub(crate) fn token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `fut` on the runtime under `token`; [`cancel`](Self::cancel) aborts it.
    pub(crate) fn spawn_task<F>(&'static self, token: u64, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.tasks.lock();
        let handle = self.tokio.spawn(async move {
            fut.await;
            if let Some(s) = STATE.get() {
                s.tasks.lock().remove(&token);
            }
        });
        if !handle.is_finished() {
            tasks.insert(token, handle.abort_handle());
        }
    }

    /// Aborts the task under `token`; whether there was one.
    pub(crate) fn cancel(&self, token: u64) -> bool {
        match self.tasks.lock().remove(&token) {
            Some(h) => {
                h.abort();
                true
            }
            None => false,
        }
    }

    /// How many forwarding tasks and requests are live.
    pub(crate) fn live_tasks(&self) -> usize {
        self.tasks.lock().len()
    }

    /// Posts an event, waiting for room.
    pub(crate) async fn post(&self, event: Event) -> bool {
        self.tx.send(event).await.is_ok()
    }
}

/// Waits at most `timeout` for events and takes up to `max` of them.
pub(crate) fn take_events(state: &'static State, timeout: Duration, max: usize) -> Vec<Event> {
    let mut out = Vec::new();
    state.tokio.block_on(async {
        let mut rx = state.rx.lock().await;
        let _ = tokio::time::timeout(timeout, rx.recv_many(&mut out, max)).await;
    });
    out
}

/// The failure a Python service's caller gets when the dispatcher's queue is full.
pub(crate) fn queue_full() -> Failure {
    Failure::netsvc(
        51,
        format!(
            "The Python dispatcher has {QUEUE_CAPACITY} events queued and takes no more requests \
             until it catches up."
        ),
    )
}
