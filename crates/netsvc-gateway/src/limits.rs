//! The gateway's bounds on connections: at most `max_connections` at once (past that the
//! accept loop waits, and new connections queue in the kernel's backlog rather than in the
//! hub's memory), and each closed after `idle_timeout` with nothing read or written (a
//! keep-alive connection left idle, a client that stopped sending its request or stopped
//! reading its answer). An event stream is never idle that long: it sends a keep-alive
//! comment every 15 s.
//!
//! A request head must also arrive whole within the header-read timeout of its first byte,
//! however steadily it drips (each byte would otherwise count as progress, and a client
//! could hold its connection forever a byte at a time). hyper times the head
//! ([`HeadTimer`]); a connection idle between requests is left to the idle timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// A listener whose connections are counted and time out when idle.
pub(crate) struct Limited<L> {
    inner: L,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl<L> Limited<L> {
    pub(crate) fn new(inner: L, max_connections: usize, idle: Duration) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            idle,
        }
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for Limited<L> {
    type Io = Idle<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            // The semaphore is never closed.
            return std::future::pending().await;
        };
        let (io, addr) = self.inner.accept().await;
        (Idle::new(io, permit, self.idle), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that fails with `TimedOut` after `idle` without progress, and frees its
/// place among the connections when dropped.
pub(crate) struct Idle<Io> {
    io: Io,
    idle: Duration,
    /// How many reads have brought bytes, for [`HeadTimer`].
    reads: Arc<AtomicU64>,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl<Io> Idle<Io> {
    fn new(io: Io, permit: OwnedSemaphorePermit, idle: Duration) -> Self {
        Self {
            io,
            idle,
            reads: Arc::default(),
            deadline: Box::pin(tokio::time::sleep(idle)),
            _permit: permit,
        }
    }

    /// The timer of this connection's header-read timeout.
    pub(crate) fn head_timer(&self) -> HeadTimer {
        HeadTimer {
            reads: Arc::clone(&self.reads),
        }
    }

    fn progressed(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// A write's outcome, as progress or, while it waits, a timeout.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    /// While the connection waits: an error once it has waited `idle`.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "HTTP connection idle too long")
}

impl<Io: AsyncRead + Unpin> AsyncRead for Idle<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.reads.fetch_add(1, Ordering::Relaxed);
                    self.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Idle<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, data);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// hyper's timer for one connection's header-read timeout, with the clock started by the
/// head's first byte rather than by hyper's wait for it. hyper starts its timer as soon as
/// it waits for a request head, which on a keep-alive connection is right after the last
/// answer: a connection merely idle between requests would be cut after the header-read
/// timeout instead of the idle timeout. hyper uses this timer for nothing else.
#[derive(Debug, Clone)]
pub(crate) struct HeadTimer {
    reads: Arc<AtomicU64>,
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadSleep {
            reads: Arc::clone(&self.reads),
            seen: self.reads.load(Ordering::Relaxed),
            timeout: duration,
            sleep: None,
        })
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep(deadline.saturating_duration_since(std::time::Instant::now()))
    }
}

/// Ends `timeout` after the first read that follows its creation.
struct HeadSleep {
    reads: Arc<AtomicU64>,
    seen: u64,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl hyper::rt::Sleep for HeadSleep {}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.sleep.is_none() {
            if self.reads.load(Ordering::Relaxed) == self.seen {
                // No byte of the head yet. hyper polls this again whenever the connection
                // reads, since it does so from the task that reads; no waker is needed.
                return Poll::Pending;
            }
            self.sleep = Some(Box::pin(tokio::time::sleep(self.timeout)));
        }
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}
