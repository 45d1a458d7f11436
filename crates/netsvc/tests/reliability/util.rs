//! Helpers for the reliability tests: an exchange hub with short timeouts, a raw protocol peer
//! that can misbehave in every way the codec allows, and the log lines netsvc writes.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use netsvc::{
    AnnouncementKind, Binding, Exchange, ExchangeConfig, Retry, Runtime, RuntimeConfig, Value,
};
use netsvc_proto::wire::{self, CloseCode, Decoder, Frame, Hello, Role, Text, frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every wait in these tests ends by then.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// The hub's handshake timeout in these tests (the default is 5 s).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);

/// The heartbeat of every exchange (and raw peer) in these tests.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(100);

pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not within {DEADLINE:?}"),
    }
}

/// Exchange settings for tests: fast heartbeats, a short handshake timeout.
pub(crate) fn config() -> ExchangeConfig {
    let mut config = ExchangeConfig::default();
    config.heartbeat = HEARTBEAT;
    config.handshake_timeout = HANDSHAKE_TIMEOUT;
    config
}

/// A hub in group `"g"` on an ephemeral loopback port.
pub(crate) async fn hub_with(
    config: ExchangeConfig,
    rt: RuntimeConfig,
) -> (Runtime, Exchange, SocketAddr) {
    let rt = Runtime::with_config(rt).unwrap();
    let ex = Exchange::server(&rt)
        .group("g")
        .config(config)
        .build()
        .unwrap();
    let address = ex.listen("127.0.0.1:0").await.unwrap();
    (rt, ex, address)
}

pub(crate) async fn hub() -> (Runtime, Exchange, SocketAddr) {
    hub_with(config(), RuntimeConfig::default()).await
}

/// A client runtime in group `"g"` connected to `address`.
pub(crate) fn client_with(address: SocketAddr, rt: RuntimeConfig) -> (Runtime, Exchange) {
    let rt = Runtime::with_config(rt).unwrap();
    let ex = Exchange::client(&rt)
        .group("g")
        .config(config())
        .build()
        .unwrap();
    ex.connect(
        &address.to_string(),
        Retry::every(Duration::from_millis(20)),
    )
    .unwrap();
    (rt, ex)
}

pub(crate) fn client(address: SocketAddr) -> (Runtime, Exchange) {
    client_with(address, RuntimeConfig::default())
}

/// Waits until `rt` sees a service named `name`.
pub(crate) async fn visible(rt: &Runtime, name: &str) -> Binding {
    let mut watch = rt.registry().watch_name(name);
    within(&format!("{name} visible"), async {
        loop {
            let a = watch.recv().await.unwrap();
            if a.kind == AnnouncementKind::Available {
                return a.binding;
            }
        }
    })
    .await
}

/// Polls `check` until it holds. (The 5 ms sleep only spaces the checks of a condition that
/// must become true; it never stands in for "long enough".)
pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A service with `echo` (its arguments back).
pub(crate) fn echo(rt: &Runtime, name: &str) -> netsvc::Service {
    rt.service(name)
        .export("echo", |req| async move {
            Ok::<_, netsvc::Failure>(Value::List(req.into_args()))
        })
        .build()
        .unwrap()
}

/// The peers of the hub's active links, sorted.
pub(crate) fn linked_peers(ex: &Exchange) -> Vec<String> {
    let mut peers: Vec<String> = ex
        .connections()
        .into_iter()
        .map(|c| c.peer_process)
        .collect();
    peers.sort();
    peers
}

// ----- log capture ----------------------------------------------------------------------------

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

#[derive(Clone, Copy)]
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends netsvc's `tracing` output of this test process into a buffer that
/// [`log_line`] searches (once per process; tests run in parallel share it, so they look
/// for lines naming their own peers).
pub(crate) fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(|| LogWriter)
            .try_init();
    });
}

/// Everything logged so far by this test process.
pub(crate) fn all_logs() -> String {
    let log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    String::from_utf8_lossy(&log).into_owned()
}

/// Waits for a log line containing every one of `parts`; returns it. (Polls every 5 ms for a
/// line that must come.)
pub(crate) async fn log_line(parts: &[&str]) -> String {
    let find = || {
        let log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&log)
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .map(str::to_owned)
    };
    let what = format!("a log line with {parts:?}");
    within(&what, async {
        loop {
            if let Some(line) = find() {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

// ----- a raw protocol peer ------------------------------------------------------------------

/// A TCP peer that speaks the wire protocol by hand, so that it can break it.
pub(crate) struct RawPeer {
    pub(crate) stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

/// How a connection ended, as the raw peer saw it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Closed {
    /// The CLOSE frame's code and reason, if one came.
    pub(crate) close: Option<(CloseCode, String)>,
    /// Every other frame received before the end.
    pub(crate) frames: Vec<Frame>,
}

impl RawPeer {
    pub(crate) async fn connect(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self::from_stream(stream)
    }

    pub(crate) fn from_stream(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::default(),
        }
    }

    /// This end's address, as the hub's logs name it.
    pub(crate) fn local(&self) -> String {
        self.stream.local_addr().unwrap().to_string()
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub(crate) async fn send_frame(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        wire::encode(frame, &mut out);
        self.send(&out).await;
    }

    /// The next frame, or `None` at the end of the stream (or on a reset).
    pub(crate) async fn next_frame(&mut self) -> Option<Frame> {
        within("the next frame", async {
            loop {
                if let Some((frame, _)) = self.decoder.decode(&mut self.buf).unwrap() {
                    return Some(frame);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// Reads until the hub closes the connection: the CLOSE frame (if any) and everything
    /// before it. Panics if anything follows the CLOSE but the end of the stream, or if the
    /// connection stays open.
    pub(crate) async fn closed(&mut self) -> Closed {
        let mut frames = Vec::new();
        loop {
            match self.next_frame().await {
                None => {
                    return Closed {
                        close: None,
                        frames,
                    };
                }
                Some(Frame::Close(frame::Close { code, reason })) => {
                    let after = self.next_frame().await;
                    assert_eq!(after, None, "the connection ends after CLOSE");
                    return Closed {
                        close: Some((code, reason.to_string())),
                        frames,
                    };
                }
                Some(other) => frames.push(other),
            }
        }
    }

    /// Reads until the hub closes the connection, and returns the CLOSE frame's code and
    /// reason (panics if none came).
    pub(crate) async fn close_frame(&mut self) -> (CloseCode, String) {
        let closed = self.closed().await;
        closed
            .close
            .unwrap_or_else(|| panic!("the connection ended without CLOSE: {:?}", closed.frames))
    }

    /// Opens a link as a client named `process` in group `"g"`: sends HELLO, waits for the
    /// hub's HELLO and then its SYNCED (the hub's registry having been announced), and
    /// returns the hub's SERVICE frames.
    pub(crate) async fn open(&mut self, process: &str) -> Vec<Frame> {
        self.send_frame(&Frame::Hello(hello("g", process))).await;
        match self.next_frame().await {
            Some(Frame::Hello(h)) => assert_eq!(h.role, Role::Server),
            other => panic!("expected the hub's HELLO, got {other:?}"),
        }
        let mut announced = Vec::new();
        loop {
            match self.next_frame().await {
                Some(Frame::Synced) => return announced,
                Some(Frame::Heartbeat) => {}
                Some(f @ Frame::Service(frame::Service { .. })) => announced.push(f),
                other => panic!("expected the hub's registry, got {other:?}"),
            }
        }
    }
}

/// A client HELLO for group `group`, announcing a 1 s heartbeat (so the hub tolerates 4 s
/// of silence from a raw peer that sends no heartbeats).
pub(crate) fn hello(group: &str, process: &str) -> Hello {
    Hello {
        version: wire::PROTOCOL_VERSION,
        role: Role::Client,
        group: Text::from(group),
        process: Text::from(process),
        incarnation: 1,
        heartbeat_ms: 1000,
        max_frame: u32::try_from(wire::DEFAULT_MAX_FRAME).unwrap(),
        options: Vec::new(),
    }
}
