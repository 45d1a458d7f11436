//! Rust futures as asyncio futures, and asyncio coroutines as Rust futures, with every
//! entry into Python from a runtime thread counted, so that the interpreter's exit can
//! wait for them and then shut the door.
//!
//! Why not pyo3-async-runtimes' `future_into_py`: it completes the asyncio future from a
//! runtime thread with no way to know when that thread has left Python. When the last
//! awaited future of a program completes, the main thread resumes, finishes and starts
//! finalizing while the runtime thread is still inside `call_soon_threadsafe`; CPython then
//! ends that thread with `pthread_exit`, whose unwinding through Rust frames crashed the
//! process (SIGSEGV in `tupledealloc`, seen under gdb in the withdrawal test). Here the
//! `atexit` hook ([`finalize`]) closes a gate, waits without the GIL until no runtime thread
//! is inside Python, and from then on runtime threads no longer enter Python at all.

use std::future::Future;

use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::state::state;

/// (closed, threads inside Python).
static GATE: Mutex<(bool, usize)> = Mutex::new((false, 0));
static LEFT: Condvar = Condvar::new();

/// Runs `f` attached to the interpreter, unless it is exiting (then `None`). For runtime
/// threads only: the dispatcher's thread is a Python thread already.
pub(crate) fn with_python<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    {
        let mut gate = GATE.lock();
        if gate.0 {
            return None;
        }
        gate.1 += 1;
    }
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            let mut gate = GATE.lock();
            gate.1 -= 1;
            if gate.1 == 0 {
                LEFT.notify_all();
            }
        }
    }
    let _leave = Leave;
    Some(Python::attach(f))
}

/// Closes the gate and waits (without the GIL) until no runtime thread is inside Python.
/// Called by the package's `atexit` hook, before the interpreter finalizes.
#[pyfunction]
pub(crate) fn finalize(py: Python<'_>) {
    GATE.lock().0 = true;
    py.detach(|| {
        let mut gate = GATE.lock();
        while gate.1 > 0 {
            LEFT.wait(&mut gate);
        }
    });
}

static SETTLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static GET_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn settle_fn(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    SETTLE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("netsvc._bridge")?.getattr("_settle")?.unbind())
        })
        .map(|f| f.bind(py))
}

fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let get = GET_LOOP.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
    })?;
    get.bind(py).call0()
}

/// Aborts the Rust task when its asyncio future is cancelled (a done callback).
#[pyclass(module = "netsvc._netsvc", frozen)]
#[derive(Debug)]
pub(crate) struct Canceller {
    task: Mutex<Option<AbortHandle>>,
}

#[pymethods]
impl Canceller {
    fn __call__(&self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if fut.call_method0("cancelled")?.is_truthy()?
            && let Some(task) = self.task.lock().take()
        {
            task.abort();
        }
        Ok(())
    }
}

/// Runs `fut` on the runtime and returns an asyncio future of the running loop that
/// `convert` completes with its output. Cancelling the asyncio future drops `fut`.
pub(crate) fn spawn_py<'py, T, F, C>(
    py: Python<'py>,
    fut: F,
    convert: C,
) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let st = state()?;
    let event_loop = running_loop(py)?;
    let pyfut = event_loop.call_method0("create_future")?;
    let target = pyfut.clone().unbind();
    let event_loop = event_loop.unbind();
    let handle = st.tokio.spawn(async move {
        let out = fut.await;
        with_python(move |py| {
            let (ok, value) = match convert(py, out) {
                Ok(v) => (true, v),
                Err(e) => (false, e.into_value(py).into_any()),
            };
            // A loop that has closed meanwhile cannot take the result: nobody awaits it.
            let _ = settle_fn(py).and_then(|settle| {
                event_loop
                    .bind(py)
                    .call_method1("call_soon_threadsafe", (settle, target, ok, value))
            });
        });
    });
    let canceller = Bound::new(
        py,
        Canceller {
            task: Mutex::new(Some(handle.abort_handle())),
        },
    )?;
    pyfut.call_method1("add_done_callback", (canceller,))?;
    Ok(pyfut)
}

/// Receives the outcome of a coroutine run on the loop (a done callback of its
/// `concurrent.futures.Future`).
#[pyclass(module = "netsvc._netsvc", frozen)]
#[derive(Debug)]
pub(crate) struct Receiver {
    tx: Mutex<Option<oneshot::Sender<PyResult<Py<PyAny>>>>>,
}

#[pymethods]
impl Receiver {
    fn __call__(&self, fut: &Bound<'_, PyAny>) {
        let outcome = fut.call_method0("result").map(Bound::unbind);
        if let Some(tx) = self.tx.lock().take() {
            let _ = tx.send(outcome);
        }
    }
}

/// A coroutine started on an event loop from a runtime thread; dropping it cancels the
/// coroutine.
pub(crate) struct Started {
    rx: oneshot::Receiver<PyResult<Py<PyAny>>>,
    cfut: Option<Py<PyAny>>,
}

impl Started {
    /// The coroutine's outcome.
    pub(crate) async fn outcome(mut self) -> PyResult<Py<PyAny>> {
        let out = (&mut self.rx).await;
        self.cfut = None;
        out.unwrap_or_else(|_| {
            Err(PyRuntimeError::new_err(
                "the event loop dropped the method's coroutine",
            ))
        })
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(cfut) = self.cfut.take() {
            with_python(|py| {
                let _ = cfut.bind(py).call_method0("cancel");
            });
        }
    }
}

/// Starts `func(*args)` (a coroutine function) on `event_loop`; call under the GIL.
pub(crate) fn start_coroutine(
    py: Python<'_>,
    event_loop: &Py<PyAny>,
    func: &Py<PyAny>,
    args: Bound<'_, PyTuple>,
) -> PyResult<Started> {
    let coro = func.bind(py).call1(args)?;
    let cfut = py
        .import("asyncio")?
        .call_method1("run_coroutine_threadsafe", (coro, event_loop.bind(py)))?;
    let (tx, rx) = oneshot::channel();
    let receiver = Bound::new(
        py,
        Receiver {
            tx: Mutex::new(Some(tx)),
        },
    )?;
    cfut.call_method1("add_done_callback", (receiver,))?;
    Ok(Started {
        rx,
        cfut: Some(cfut.unbind()),
    })
}

/// The running event loop (for `export_async`).
pub(crate) fn current_loop(py: Python<'_>) -> PyResult<Py<PyAny>> {
    running_loop(py).map(Bound::unbind)
}
