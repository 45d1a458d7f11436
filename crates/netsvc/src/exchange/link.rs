//! One task per link: the handshake, then reading frames into the runtime's state and
//! writing the link's outbound queue to the socket, with heartbeats both ways.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use netsvc_proto::value::{self, Value};
use netsvc_proto::wire::{self, CloseCode, Decoder, Frame, Hello, Text, WireError, handshake};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::outbound::{Outbound, QueueLimits};
use super::{ConnectionEvent, ConnectionState, ExchangeShared, PeerAddr, Retry, Target};
use crate::core::{Action, LinkInfo, LinkRefused};
use crate::failure::{Failure, codes};
use crate::service::{Request, ServiceHandle};

/// A connected socket of either kind.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How long a link that is being closed for a fault may spend sending what is queued and its
/// CLOSE frame: a peer that does not read must not keep the link (and everything routed
/// through it) alive.
const FLUSH_ON_CLOSE: Duration = Duration::from_millis(200);

/// The read buffer's size bounds: it starts small and doubles while reads fill it.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;

/// How a link ended.
#[derive(Debug)]
pub(crate) enum LinkEnd {
    /// It never became active: the handshake failed or was refused.
    Refused {
        code: Option<CloseCode>,
        reason: String,
    },
    /// It was active, and then ended.
    Ended,
}

/// Accepts TCP connections until the exchange stops.
pub(crate) async fn accept_tcp(listener: TcpListener, exchange: Arc<ExchangeShared>) {
    let mut stop = exchange.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut stop) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let local = stream
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                admit(
                    &exchange,
                    Stream::Tcp(stream),
                    PeerAddr::Tcp(peer),
                    peer.to_string(),
                    local,
                );
            }
            Err(e) => {
                // Out of file descriptors, typically: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Accepts Unix-socket connections until the exchange stops, then removes the socket file.
pub(crate) async fn accept_unix(
    listener: UnixListener,
    path: PathBuf,
    exchange: Arc<ExchangeShared>,
) {
    let mut stop = exchange.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut stop) => break,
        };
        match accepted {
            Ok((stream, _)) => admit(
                &exchange,
                Stream::Unix(stream),
                PeerAddr::Unix,
                "unix".to_owned(),
                format!("unix:{}", path.display()),
            ),
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// Starts the link task for an accepted connection, unless the `authorise` hook or the
/// connection limit refuses it.
fn admit(
    exchange: &Arc<ExchangeShared>,
    mut stream: Stream,
    peer: PeerAddr,
    peer_address: String,
    local_address: String,
) {
    let refusal = if exchange.authorise.as_ref().is_some_and(|hook| !hook(&peer)) {
        Some((
            CloseCode::NotAuthorised,
            "connection not authorised".to_owned(),
        ))
    } else if exchange.state.lock().links.len() >= exchange.config.max_connections {
        Some((
            CloseCode::Other(12),
            format!(
                "too many connections (limit {})",
                exchange.config.max_connections
            ),
        ))
    } else {
        None
    };
    let exchange = exchange.clone();
    let handle = exchange.runtime.handle.clone();
    handle.spawn(async move {
        if let Some((code, reason)) = refusal {
            tracing::info!(peer = %peer_address, "refused: {reason}");
            let _ = send_close(&mut stream, code, &reason).await;
            return;
        }
        run(stream, &exchange, false, peer_address, local_address).await;
    });
}

/// Keeps a client connection up as `retry` says, until the exchange stops.
pub(crate) async fn connect_loop(target: Target, retry: Retry, exchange: Arc<ExchangeShared>) {
    let mut stop = exchange.stop.subscribe();
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let attempt = tokio::select! {
            r = target.connect() => r,
            _ = stopped(&mut stop) => return,
        };
        match attempt {
            Ok((stream, peer, local)) => match run(stream, &exchange, true, peer, local).await {
                LinkEnd::Ended => failures = 0,
                LinkEnd::Refused { code, reason } => {
                    let code = code.map_or_else(String::new, |c| format!(" ({c})"));
                    tracing::info!(%target, "connection refused{code}: {reason}");
                }
            },
            Err(e) => tracing::debug!(%target, "cannot connect: {e}"),
        }
        if !retry.retries() {
            tracing::info!(%target, "not reconnecting (single attempt)");
            return;
        }
        let delay = retry.delay(failures);
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Completes once the exchange is told to stop (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn send_close(stream: &mut Stream, code: CloseCode, reason: &str) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    wire::encode(
        &Frame::Close {
            code,
            reason: Text::from(reason),
        },
        &mut buf,
    );
    stream.write_all(&buf).await?;
    stream.shutdown().await
}

/// The peer's HELLO, checked (`wire::handshake`), or why there is none.
async fn read_hello(
    stream: &mut Stream,
    buf: &mut BytesMut,
    local: &handshake::Local<'_>,
) -> Result<Hello, (Option<CloseCode>, String)> {
    loop {
        match handshake::step(buf, local) {
            handshake::Step::Accept(hello) => return Ok(hello),
            handshake::Step::Reject(r) => return Err((r.code, r.reason)),
            handshake::Step::NeedMore => {}
        }
        match stream.read_buf(buf).await {
            Ok(0) => return Err((None, "connection closed during the handshake".to_owned())),
            Ok(_) => {}
            Err(e) => return Err((None, e.to_string())),
        }
    }
}

/// Runs one link from handshake to end.
async fn run(
    mut stream: Stream,
    exchange: &Arc<ExchangeShared>,
    initiated_here: bool,
    peer_address: String,
    local_address: String,
) -> LinkEnd {
    let rt = &exchange.runtime;
    let config = &exchange.config;
    let decoder = Decoder::new(config.max_frame);
    let mut rbuf = BytesMut::with_capacity(READ_MIN);
    let hello = Hello {
        version: wire::PROTOCOL_VERSION,
        role: exchange.role,
        group: Text::from(&*exchange.group),
        process: Text::from(&*rt.identity),
        incarnation: rt.incarnation,
        heartbeat_ms: u32::try_from(config.heartbeat.as_millis()).unwrap_or(u32::MAX),
        max_frame: u32::try_from(config.max_frame).unwrap_or(u32::MAX),
        options: Vec::new(),
    };
    let mut hello_bytes = BytesMut::new();
    wire::encode(&Frame::Hello(hello), &mut hello_bytes);

    // The connecting side speaks first; the accepting side answers only once it has
    // checked the peer.
    let handshake = async {
        if initiated_here {
            stream
                .write_all(&hello_bytes)
                .await
                .map_err(|e| (None, e.to_string()))?;
        }
        let local = handshake::Local {
            group: &exchange.group,
            process: &rt.identity,
            version: wire::PROTOCOL_VERSION,
            max_frame: config.max_frame,
        };
        read_hello(&mut stream, &mut rbuf, &local).await
    };
    let peer = match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Ok(Ok(peer)) => peer,
        Ok(Err((code, reason))) => return refuse(stream, &peer_address, code, reason).await,
        Err(_) => {
            let reason = format!(
                "handshake not completed within {:.1} s",
                config.handshake_timeout.as_secs_f64()
            );
            return refuse(
                stream,
                &peer_address,
                Some(CloseCode::HandshakeTimeout),
                reason,
            )
            .await;
        }
    };

    let outbound = Arc::new(Outbound::new(QueueLimits {
        soft: config.queue_soft_limit,
        hard: config.queue_hard_limit,
    }));
    let info = LinkInfo {
        group: exchange.group.clone(),
        peer: Arc::from(peer.process.as_str()),
        peer_role: peer.role,
        initiated_here,
    };
    if !initiated_here {
        // Our HELLO must precede everything `link_up` queues.
        if let Err(e) = stream.write_all(&hello_bytes).await {
            return LinkEnd::Refused {
                code: None,
                reason: e.to_string(),
            };
        }
    }
    let registered = rt.core.lock().link_up(info, outbound.clone());
    let id = match registered {
        Ok((id, replaced)) => {
            if let Some(old) = replaced {
                exchange.close_link(old, CloseCode::DuplicateLink, "replaced by a newer link");
            }
            id
        }
        Err(LinkRefused::Duplicate) => {
            let reason = format!("already linked to {}", peer.process);
            return refuse(
                stream,
                &peer_address,
                Some(CloseCode::DuplicateLink),
                reason,
            )
            .await;
        }
    };
    let event = |state, reason: Option<String>| ConnectionEvent {
        state,
        group: exchange.group.to_string(),
        peer_process: peer.process.to_string(),
        peer_role: peer.role,
        peer_address: peer_address.clone(),
        local_address: local_address.clone(),
        initiated_here,
        reason,
    };
    exchange.register_link(id, outbound.clone(), event(ConnectionState::Active, None));
    tracing::info!(peer = %peer.process, address = %peer_address, "link up");

    let reason = drive(&mut stream, exchange, id, &outbound, &decoder, rbuf, &peer).await;

    rt.core.lock().link_down(id);
    tracing::info!(peer = %peer.process, address = %peer_address, "link down: {reason}");
    exchange.announce(id, event(ConnectionState::Inactive, Some(reason)));
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    LinkEnd::Ended
}

async fn refuse(
    mut stream: Stream,
    peer_address: &str,
    code: Option<CloseCode>,
    reason: String,
) -> LinkEnd {
    tracing::info!(peer = %peer_address, "link not established: {reason}");
    if let Some(code) = code {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            send_close(&mut stream, code, &reason),
        )
        .await;
    }
    LinkEnd::Refused { code, reason }
}

/// Moves frames both ways until the link ends; returns why it ended.
async fn drive(
    stream: &mut Stream,
    exchange: &Arc<ExchangeShared>,
    id: u64,
    outbound: &Arc<Outbound>,
    decoder: &Decoder,
    mut rbuf: BytesMut,
    peer: &Hello,
) -> String {
    let rt = &exchange.runtime;
    let heartbeat = exchange.config.heartbeat;
    let silence_limit = Duration::from_millis(u64::from(peer.heartbeat_ms.max(50)))
        * exchange.config.heartbeat_misses.max(1);
    let mut tick = tokio::time::interval(heartbeat.min(silence_limit) / 2);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stop = exchange.stop.subscribe();
    let (mut reader, mut writer) = tokio::io::split(stream);
    // Empty until there is something to write: idle links cost little memory.
    let mut pending = BytesMut::new();
    let mut next = BytesMut::new();
    let mut read_size = READ_MIN;
    let mut read_since_tick = false;
    let mut wrote_since_tick = false;
    let mut last_rx = Instant::now();
    let mut last_tx = Instant::now();
    let mut frames = VecDeque::new();
    let mut actions = Vec::new();
    let mut stopping = false;
    // Congested links this link's reports go to: reading pauses until they drain.
    let mut held: Vec<Arc<Outbound>> = Vec::new();
    let mut held_until = Instant::now();

    // Frames that arrived with the HELLO.
    if let Err((code, reason)) = take_frames(decoder, &mut rbuf, &mut frames) {
        outbound.close(code, reason.clone(), false);
        let _ = tokio::time::timeout(
            FLUSH_ON_CLOSE,
            flush_close(&mut writer, outbound, &mut pending),
        )
        .await;
        return reason;
    }
    loop {
        if !frames.is_empty() && held.is_empty() {
            {
                let now = Instant::now();
                let mut core = rt.core.lock();
                while let Some((frame, raw)) = frames.pop_front() {
                    if let Frame::Close { code, reason } = &frame {
                        return format!("closed by peer: {code}: {reason}");
                    }
                    core.handle_frame(id, frame, &raw, now, &mut actions);
                    // The rest of the batch waits until the congested link has drained:
                    // forwarding it now would only coalesce it.
                    if actions.iter().any(|a| matches!(a, Action::Backpressure(_))) {
                        break;
                    }
                }
            }
            for action in actions.drain(..) {
                match action {
                    Action::Backpressure(downstream) => {
                        if !exchange.config.backpressure_limit.is_zero() {
                            held.push(downstream);
                        }
                    }
                    action => perform(exchange, id, action),
                }
            }
            if !held.is_empty() {
                held_until = Instant::now() + exchange.config.backpressure_limit;
            }
            // Let the links this batch fed write before reading more: on a single-threaded
            // runtime a busy reader would otherwise fill their queues up to the soft limit
            // before they ever ran.
            tokio::task::yield_now().await;
        }
        // Read in chunks that grow while the peer fills them, so a busy link makes few
        // system calls and an idle one keeps a small buffer.
        if rbuf.capacity() - rbuf.len() < read_size {
            rbuf.reserve(read_size);
        }
        tokio::select! {
            () = drained(held.clone(), held_until), if !held.is_empty() => {
                for downstream in held.drain(..) {
                    if downstream.applies_backpressure() {
                        downstream.mark_slow();
                    }
                }
                // The peer's frames waited in the socket meanwhile: it was not silent.
                last_rx = Instant::now();
            }
            read = reader.read_buf(&mut rbuf), if held.is_empty() => match read {
                Ok(0) if rbuf.is_empty() => return "connection closed by peer".to_owned(),
                Ok(0) => {
                    // The peer stopped sending in the middle of a frame; it may still read.
                    let reason = format!(
                        "protocol error: connection closed in the middle of a frame ({} bytes of it received)",
                        rbuf.len()
                    );
                    outbound.close(CloseCode::ProtocolError, reason.clone(), false);
                    let _ = tokio::time::timeout(FLUSH_ON_CLOSE, flush_close(&mut writer, outbound, &mut pending)).await;
                    return reason;
                }
                Ok(n) => {
                    last_rx = Instant::now();
                    read_since_tick = true;
                    if n >= read_size && read_size < READ_MAX {
                        read_size *= 2;
                    }
                    if let Err((code, reason)) = take_frames(decoder, &mut rbuf, &mut frames) {
                        outbound.close(code, reason.clone(), false);
                        // Bounded: a peer that does not read must not keep the link alive.
                        let _ = tokio::time::timeout(FLUSH_ON_CLOSE, flush_close(&mut writer, outbound, &mut pending)).await;
                        return reason;
                    }
                }
                Err(e) => return format!("read failed: {e}"),
            },
            more = outbound.next_batch(&mut next), if pending.is_empty() => {
                if !more {
                    let closing = outbound.closing().map(|c| format!("closed: {}: {}", c.code, c.reason));
                    return closing.unwrap_or_else(|| "closed".to_owned());
                }
                // Both empty buffers keep their capacity for the next turn.
                std::mem::swap(&mut pending, &mut next);
            }
            written = writer.write_buf(&mut pending), if !pending.is_empty() => match written {
                Ok(0) => return "connection closed while writing".to_owned(),
                Ok(_) => {
                    last_tx = Instant::now();
                    wrote_since_tick = true;
                }
                Err(e) => return format!("write failed: {e}"),
            },
            _ = tick.tick() => {
                let now = Instant::now();
                if held.is_empty() && now.duration_since(last_rx) > silence_limit {
                    let reason = format!("no frame from the peer for {:.1} s", silence_limit.as_secs_f64());
                    outbound.close(CloseCode::HeartbeatTimeout, reason.clone(), false);
                    let _ = tokio::time::timeout(FLUSH_ON_CLOSE, flush_close(&mut writer, outbound, &mut pending)).await;
                    return reason;
                }
                if now.duration_since(last_tx) >= heartbeat && pending.is_empty() {
                    outbound.push(Frame::Heartbeat);
                }
                // A link that has gone quiet gives its read-side memory back (a heartbeat
                // costs one small allocation again): idle links are most links.
                if !read_since_tick && rbuf.is_empty() {
                    rbuf = BytesMut::new();
                    read_size = READ_MIN;
                }
                if !read_since_tick && frames.is_empty() {
                    frames = VecDeque::new();
                }
                // Nor must the write buffers of a link that has gone quiet.
                if !wrote_since_tick && pending.is_empty() {
                    pending = BytesMut::new();
                    next = BytesMut::new();
                    outbound.release_idle_buffer();
                }
                wrote_since_tick = false;
                read_since_tick = false;
            }
            _ = stopped(&mut stop), if !stopping => {
                stopping = true;
                outbound.close(CloseCode::Normal, "exchange shutting down", true);
            }
        }
    }
}

/// Completes when every link in `held` is back under its soft limit, or at `until`.
async fn drained(held: Vec<Arc<Outbound>>, until: Instant) {
    let _ = tokio::time::timeout_at(until, async {
        for downstream in &held {
            downstream.uncongested().await;
        }
    })
    .await;
}

/// Decodes every whole frame in `rbuf`; on error, how to close the link (PROTOCOL.md §2: an
/// oversized frame is `FrameTooLarge`, anything else undecodable a protocol error).
fn take_frames(
    decoder: &Decoder,
    rbuf: &mut BytesMut,
    frames: &mut VecDeque<(Frame, bytes::Bytes)>,
) -> Result<(), (CloseCode, String)> {
    loop {
        match decoder.decode(rbuf) {
            Ok(Some(frame)) => frames.push_back(frame),
            Ok(None) => return Ok(()),
            Err(e @ WireError::FrameTooLarge { .. }) => {
                return Err((CloseCode::FrameTooLarge, e.to_string()));
            }
            Err(e) => return Err((CloseCode::ProtocolError, format!("protocol error: {e}"))),
        }
    }
}

/// Writes what is queued plus the CLOSE frame, best effort.
async fn flush_close<W: AsyncWrite + Unpin>(
    writer: &mut W,
    outbound: &Outbound,
    pending: &mut BytesMut,
) -> std::io::Result<()> {
    while outbound.next_batch(pending).await {
        writer.write_all(pending).await?;
        pending.clear();
    }
    writer.flush().await
}

/// Carries out work handed back by the state owner.
fn perform(exchange: &ExchangeShared, id: u64, action: Action) {
    let rt = &exchange.runtime;
    match action {
        Action::Dispatch {
            service,
            method,
            args,
            sender,
            conv,
            responder,
        } => {
            let args = match value::decode(&args, &rt.config.value_limits) {
                Ok(Value::List(args)) => args,
                Ok(other) => {
                    return responder.respond(Err(Failure::netsvc(
                        codes::REQUEST_DECODING_ERROR,
                        format!("the arguments are a {}, not a list", other.type_name()),
                    )));
                }
                Err(e) => {
                    return responder.respond(Err(Failure::netsvc(
                        codes::REQUEST_DECODING_ERROR,
                        e.to_string(),
                    )));
                }
            };
            let request = Request {
                method: Arc::from(method.as_str()),
                args,
                sender,
                conversation: conv,
                service: ServiceHandle {
                    shared: service.clone(),
                },
            };
            service.dispatch(request, responder, rt);
        }
        Action::Backpressure(_) => {} // the link's loop handles it
        Action::Resynced => {
            let event = exchange.state.lock().links.get(&id).cloned();
            if let Some(mut event) = event {
                event.state = ConnectionState::Resynced;
                exchange.announce(id, event);
            }
        }
    }
}
