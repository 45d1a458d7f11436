//! The IO side of the exchange: one task per link, the listeners that accept links and the
//! connectors that make them.
//!
//! A link task is the only code that touches its socket. It performs the handshake
//! ([`netsvc_proto::wire::handshake`] decides; the task only moves bytes), registers the
//! link with the core, then loops over five events: bytes to read (decoded into frames that
//! the core handles under its lock, a batch at a time), frames to write (the link's
//! [`LinkQueue`], taken whole), a heartbeat tick, a congested downstream link draining, and
//! the exchange's stop signal. It works over any byte stream (`AsyncRead + AsyncWrite`):
//! TCP and Unix sockets today, TLS or an in-memory pipe just the same.
//!
//! - `config.rs`: the exchange's settings and the retry policy;
//! - `shared.rs`: what one exchange's tasks share;
//! - `listen.rs`, `dial.rs`: accepting and making connections;
//! - `events.rs`, `connector.rs`, `error.rs`: what the exchange reports about its links.

pub(crate) mod auth;
pub(crate) mod checkers;
pub(crate) mod config;
pub(crate) mod connector;
pub(crate) mod dial;
pub(crate) mod door;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod listen;
#[cfg(feature = "nats")]
pub(crate) mod nats;
pub(crate) mod secret_tags;
pub(crate) mod shared;
pub(crate) mod tls;
pub(crate) mod users;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use netsvc_proto::wire::{
    self, CloseCode, Decoder, Frame, Hello, Text, WireError, frame, handshake,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use self::auth::{Login, LoginRefused, Transport};
use self::connector::{ConnectorStatus, LinkPhase};
use self::error::LinkFailure;
use self::events::{ConnectionEvent, ConnectionState};
use self::shared::{ExchangeShared, stopped};
use crate::core::link_queue::{LinkQueue, QueueLimits};
use crate::core::{Action, LinkInfo, LinkRefused};
use crate::model::ids::LinkId;

/// How long a link that is being closed for a fault may spend sending what is queued and its
/// CLOSE frame: a peer that does not read must not keep the link (and everything routed
/// through it) alive.
const FLUSH_ON_CLOSE: Duration = Duration::from_millis(200);

/// The HELLO option in which the connecting side numbers its connections (PROTOCOL.md §4.1).
const ATTEMPT_OPTION: &str = "attempt";

/// The HELLO option of an interest-scoped registry (PROTOCOL.md §8.1): from the connecting
/// side, a request; from the accepting side, an offer. The link is scoped when both say it.
const REGISTRY_OPTION: (&str, &str) = ("registry", "scoped");

/// A batch to write smaller than this may wait for more while other links are writing too
/// (see [`Writing`]).
const COALESCE_BELOW: usize = 16 * 1024;
/// The most scheduler passes such a batch waits.
const COALESCE_PASSES: usize = 4;

/// Whether this link counts among its exchange's links that have something to write.
///
/// When several do at once (a hub fanning out a registry storm: every SERVICE it reads adds
/// one frame to each link), a link with a small batch lets the ready tasks run a few times
/// before writing, so that what the other readers fan out to it goes in the same write;
/// written alone, each frame cost one system call and one loopback packet per link (70% of
/// a hub's time at a thousand clients, and 15% of a whole-registry resync). When it is the
/// only one (a request relayed on its way, an idle hub), it writes at once: the wait would
/// only add latency.
struct Writing<'a> {
    count: &'a std::sync::atomic::AtomicUsize,
    counted: bool,
}

impl<'a> Writing<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        Self {
            count,
            counted: false,
        }
    }

    /// Records whether the link has something to write; returns whether other links do too.
    fn set(&mut self, writing: bool) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if writing != self.counted {
            self.counted = writing;
            if writing {
                return self.count.fetch_add(1, Relaxed) > 0;
            }
            self.count.fetch_sub(1, Relaxed);
            return false;
        }
        writing && self.count.load(Relaxed) > 1
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// The read buffer's size bounds: it starts small and doubles while reads fill it.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 64 * 1024;

/// The two ends of a connection, as logs and connection events name them, who made it, and
/// what the transport says of the peer.
pub(crate) struct Endpoints {
    peer: String,
    local: String,
    /// The connector that made it, for a connection this process opened.
    connector: Option<Arc<watch::Sender<ConnectorStatus>>>,
    transport: Transport,
}

impl Endpoints {
    pub(crate) fn accepted(peer: String, local: String, transport: Transport) -> Self {
        Self {
            peer,
            local,
            connector: None,
            transport,
        }
    }

    pub(crate) fn dialled(
        peer: String,
        local: String,
        connector: Arc<watch::Sender<ConnectorStatus>>,
        transport: Transport,
    ) -> Self {
        Self {
            peer,
            local,
            connector: Some(connector),
            transport,
        }
    }

    fn initiated_here(&self) -> bool {
        self.connector.is_some()
    }

    fn tell_connector(&self, phase: LinkPhase) {
        if let Some(connector) = &self.connector {
            connector.send_modify(|s| {
                s.phase = phase;
                if phase == LinkPhase::Linked {
                    s.last_failure = None;
                }
            });
        }
    }
}

/// How a link ended.
#[derive(Debug)]
pub(crate) enum LinkEnd {
    /// It never became active: the handshake failed or was refused.
    Refused(LinkFailure),
    /// It was active, and then ended.
    Ended,
}

/// Writes a CLOSE frame and shuts the stream's sending side.
async fn send_close<S: AsyncWrite + Unpin>(
    stream: &mut S,
    code: CloseCode,
    reason: &str,
) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    wire::encode(
        &Frame::Close(frame::Close {
            code,
            reason: Text::from(reason),
        }),
        &mut buf,
    );
    stream.write_all(&buf).await?;
    stream.shutdown().await
}

/// Why a handshake did not produce the peer's HELLO.
enum NoHello {
    /// The handshake's decision: refuse, telling the peer `rejection.code` if there is one.
    Rejected(handshake::Rejection),
    /// The connection failed or ended before there was anything to decide on.
    Io(String),
    /// TLS failed after its handshake seemed done: with TLS 1.3 a server checks the
    /// client's certificate then, and its alert arrives on the first read.
    Tls(String),
}

impl NoHello {
    fn of_io(error: &std::io::Error) -> Self {
        match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            Some(tls) => Self::Tls(format!("the server refused the TLS session: {tls}")),
            None => Self::Io(error.to_string()),
        }
    }
}

/// The peer's HELLO, checked (`wire::handshake`), or why there is none.
async fn read_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    local: &handshake::Local<'_>,
    spoke_first: bool,
) -> Result<Hello, NoHello> {
    loop {
        match handshake::step(buf, local) {
            handshake::Step::Accept(hello) => return Ok(hello),
            handshake::Step::Reject(r) => return Err(NoHello::Rejected(r)),
            handshake::Step::NeedMore => {}
        }
        match stream.read_buf(buf).await {
            Ok(0) if buf.is_empty() && spoke_first => {
                // An original OSE exchange server closes on a netsvc HELLO without a word.
                return Err(NoHello::Io(
                    "connection closed during the handshake, before the server sent anything; \
                     if it is an original OSE exchange server, join it with \
                     `netsvc exchange --ose-connect`"
                        .to_owned(),
                ));
            }
            Ok(0) => {
                return Err(NoHello::Io(
                    "connection closed during the handshake".to_owned(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(NoHello::of_io(&e)),
        }
    }
}

/// Runs one link from handshake to end.
pub(crate) async fn run<S>(
    mut stream: S,
    exchange: &Arc<ExchangeShared>,
    endpoints: Endpoints,
) -> LinkEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let rt = &exchange.runtime;
    let config = &exchange.config;
    let initiated_here = endpoints.initiated_here();
    let mut rbuf = BytesMut::with_capacity(READ_MIN);
    let attempt = initiated_here.then(|| rt.next_attempt());
    // An accepting side always offers the scope; a connecting side asks for it when its
    // runtime is scoped.
    let scope_asked_or_offered = !initiated_here || rt.core.lock().asks_scoped_registry();
    let options = match hello_options(exchange, &endpoints, attempt, scope_asked_or_offered) {
        Ok(options) => options,
        Err(reason) => {
            let failure = LinkFailure::NotAuthorised(reason.clone());
            return refuse(stream, &endpoints, None, reason, failure).await;
        }
    };
    let hello = Hello {
        version: wire::PROTOCOL_VERSION,
        role: exchange.role,
        group: Text::from(&*exchange.group),
        process: Text::from(&*rt.identity),
        incarnation: rt.incarnation,
        heartbeat_ms: u32::try_from(config.heartbeat.as_millis()).unwrap_or(u32::MAX),
        max_frame: u32::try_from(config.max_frame).unwrap_or(u32::MAX),
        options,
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
                .map_err(|e| NoHello::Io(e.to_string()))?;
        }
        let local = handshake::Local {
            group: &exchange.group,
            process: &rt.identity,
            version: wire::PROTOCOL_VERSION,
            max_frame: config.max_frame,
        };
        read_hello(&mut stream, &mut rbuf, &local, initiated_here).await
    };
    let peer = match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Ok(Ok(peer)) => peer,
        Ok(Err(NoHello::Rejected(rejection))) => {
            let failure = LinkFailure::of_rejection(&rejection);
            return refuse(
                stream,
                &endpoints,
                rejection.code,
                rejection.reason,
                failure,
            )
            .await;
        }
        Ok(Err(NoHello::Io(reason))) => {
            let failure = LinkFailure::Closed(reason.clone());
            return refuse(stream, &endpoints, None, reason, failure).await;
        }
        Ok(Err(NoHello::Tls(reason))) => {
            let failure = LinkFailure::Tls(reason.clone());
            return refuse(stream, &endpoints, None, reason, failure).await;
        }
        Err(_) => {
            let reason = format!(
                "handshake not completed within {:.1} s",
                config.handshake_timeout.as_secs_f64()
            );
            let code = Some(CloseCode::HandshakeTimeout);
            return refuse(
                stream,
                &endpoints,
                code,
                reason,
                LinkFailure::HandshakeTimeout,
            )
            .await;
        }
    };

    let hello_at = Instant::now();
    let login = match log_in(exchange, &peer, &endpoints, hello_at).await {
        Ok(login) => login,
        Err(reason) => {
            let failure = LinkFailure::NotAuthorised(reason.clone());
            let code = Some(CloseCode::NotAuthorised);
            return refuse(stream, &endpoints, code, reason, failure).await;
        }
    };
    let grants = login.as_ref().map(|l| l.grants.clone());
    let user = login.and_then(|Login { user, .. }| user);
    let queue = Arc::new(
        LinkQueue::new(QueueLimits {
            soft: config.queue_soft_limit,
            hard: config.queue_hard_limit,
            peer_max_frame: usize::try_from(peer.max_frame).unwrap_or(usize::MAX),
        })
        .restricted(grants.clone()),
    );
    let info = LinkInfo {
        group: exchange.group.clone(),
        peer: Arc::from(peer.process.as_str()),
        initiated_here,
        attempt: attempt.or_else(|| {
            let option = peer
                .options
                .iter()
                .find(|(k, _)| k.as_str() == ATTEMPT_OPTION);
            option.and_then(|(_, v)| v.parse().ok())
        }),
        grants,
        remote: Arc::from(endpoints.peer.as_str()),
        tls: endpoints.transport.tls,
        user: user.as_deref().map(Arc::from),
        since: std::time::Instant::now(),
        scoped_registry: scope_asked_or_offered
            && peer
                .options
                .iter()
                .any(|(k, v)| (k.as_str(), v.as_str()) == REGISTRY_OPTION),
    };
    if !initiated_here {
        // Our HELLO must precede everything `link_up` queues.
        if let Err(e) = stream.write_all(&hello_bytes).await {
            return LinkEnd::Refused(LinkFailure::Closed(e.to_string()));
        }
    }
    let registered = rt.core.lock().link_up(info, queue.clone());
    let id = match registered {
        Ok((id, replaced)) => {
            if let Some(old) = replaced {
                old.close(CloseCode::DuplicateLink, "replaced by a newer link", false);
            }
            id
        }
        Err(LinkRefused::Duplicate) => {
            let reason = format!("already linked to {}", peer.process);
            let failure = LinkFailure::Closed(reason.clone());
            let code = Some(CloseCode::DuplicateLink);
            return refuse(stream, &endpoints, code, reason, failure).await;
        }
        Err(LinkRefused::OtherUser) => {
            let reason = format!(
                "process identity {} is linked by another user",
                peer.process
            );
            tracing::warn!(peer = %peer.process, address = %endpoints.peer,
                user = user.as_deref().unwrap_or("(anonymous)"),
                "link refused: its process identity is linked by another user");
            let failure = LinkFailure::NotAuthorised(reason.clone());
            let code = Some(CloseCode::NotAuthorised);
            return refuse(stream, &endpoints, code, reason, failure).await;
        }
    };
    let event = |state, reason: Option<String>| ConnectionEvent {
        state,
        group: exchange.group.to_string(),
        peer_process: peer.process.to_string(),
        peer_role: peer.role,
        peer_address: endpoints.peer.clone(),
        local_address: endpoints.local.clone(),
        initiated_here,
        user: user.as_deref().map(str::to_owned),
        tls: endpoints.transport.tls,
        reason,
    };
    // The connector hears first: whoever sees the event then finds the status already moved.
    endpoints.tell_connector(LinkPhase::Linked);
    exchange.announce(id, event(ConnectionState::Active, None));
    match &user {
        Some(user) => {
            tracing::info!(peer = %peer.process, address = %endpoints.peer, %user, "link up")
        }
        None => tracing::info!(peer = %peer.process, address = %endpoints.peer, "link up"),
    }

    let task = LinkTask::new(exchange, id, queue, rbuf, &peer, &endpoints);
    let (stream, reason) = task.drive(stream).await;

    rt.core.lock().link_down(id);
    tracing::info!(peer = %peer.process, address = %endpoints.peer, "link down: {reason}");
    endpoints.tell_connector(LinkPhase::Connecting);
    exchange.announce(id, event(ConnectionState::Inactive, Some(reason)));
    let mut stream = stream;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    LinkEnd::Ended
}

/// The options of our HELLO: the connection's number and the credentials, on a connection
/// this process makes, and the registry scope. Refuses to send a password in clear to
/// another machine.
fn hello_options(
    exchange: &ExchangeShared,
    endpoints: &Endpoints,
    attempt: Option<u64>,
    scoped_registry: bool,
) -> Result<Vec<(Text, Text)>, String> {
    let mut options: Vec<(Text, Text)> = attempt
        .map(|n| (Text::from(ATTEMPT_OPTION), Text::from(n.to_string())))
        .into_iter()
        .collect();
    if scoped_registry {
        let (key, value) = REGISTRY_OPTION;
        options.push((Text::from(key), Text::from(value)));
    }
    if let (Some(credentials), true) = (&exchange.security.credentials, endpoints.initiated_here())
    {
        let transport = &endpoints.transport;
        if credentials.is_password() && !transport.tls && !transport.local {
            return Err(
                "a password is never sent in clear to another machine: connect with TLS".to_owned(),
            );
        }
        for (k, v) in credentials.options() {
            options.push((Text::from(k), Text::from(v)));
        }
    }
    Ok(options)
}

/// On a connection this exchange accepted, with users configured: who the peer is, checked
/// before our HELLO answers it. `Ok(None)`: no login applies. Every refusal is logged at
/// warn (the CLI's default level) with the user name and address, and answered within the
/// handshake's time so that the peer hears why: a failed check after the penalty (failures
/// of that user name from the address are answered ever more slowly), a throttled login at
/// once.
async fn log_in(
    exchange: &ExchangeShared,
    peer: &Hello,
    endpoints: &Endpoints,
    hello_at: Instant,
) -> Result<Option<Login>, String> {
    let Some(users) = &exchange.security.users else {
        return Ok(None);
    };
    if endpoints.initiated_here() {
        return Ok(None);
    }
    // The peer's handshake timer started before its HELLO reached us, and may be ours:
    // the check gets half of our timeout and the penalty ends by three quarters, so that
    // the CLOSE with the reason arrives before the peer gives up.
    let limit = exchange.config.handshake_timeout;
    let check_by = hello_at + limit / 2;
    let answer_by = hello_at + limit * 3 / 4;
    let transport = &endpoints.transport;
    let outcome = tokio::time::timeout_at(check_by, users.login(peer, transport))
        .await
        .unwrap_or(Err(LoginRefused::Busy));
    let refusal = match outcome {
        Ok(login) => return Ok(Some(login)),
        Err(refusal) => refusal,
    };
    let user = auth::claimed_user(peer);
    match user {
        // Debug-quoted: the name is the peer's to choose, and must not forge log lines.
        Some(user) => {
            tracing::warn!(user = ?user, address = %endpoints.peer, "login refused: {refusal}");
        }
        None => tracing::warn!(address = %endpoints.peer, "login refused: {refusal}"),
    }
    if let LoginRefused::Failed(_) | LoginRefused::CredentialsRequired = &refusal {
        let penalty = users.penalty(transport.ip, user);
        let until = (Instant::now() + penalty).min(answer_by);
        tokio::time::sleep_until(until).await;
    }
    Err(refusal.to_string())
}

/// Ends a connection whose handshake failed: the peer is told why (if there is something
/// to tell it) and the failure logged.
async fn refuse<S: AsyncWrite + Unpin>(
    mut stream: S,
    endpoints: &Endpoints,
    code: Option<CloseCode>,
    reason: String,
    failure: LinkFailure,
) -> LinkEnd {
    if matches!(failure, LinkFailure::OseExchange) && !endpoints.initiated_here() {
        // Someone pointed an original OSE process at the native port: worth a warning.
        tracing::warn!(peer = %endpoints.peer, "link not established: {reason}; a hub serves OSE processes on a port of their own (`netsvc exchange --ose-listen`)");
    } else {
        tracing::info!(peer = %endpoints.peer, "link not established: {reason}");
    }
    if let Some(code) = code {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            send_close(&mut stream, code, &reason),
        )
        .await;
    }
    LinkEnd::Refused(failure)
}

/// The state of one established link's task.
struct LinkTask<'a> {
    exchange: &'a Arc<ExchangeShared>,
    endpoints: &'a Endpoints,
    id: LinkId,
    queue: Arc<LinkQueue>,
    decoder: Decoder,
    /// Bytes read and not decoded yet; grows while reads fill it, freed when idle.
    rbuf: BytesMut,
    read_size: usize,
    frames: VecDeque<(Frame, Bytes)>,
    actions: Vec<Action>,
    /// The batch being written, and the next one (empty until there is something to
    /// write: idle links cost little memory).
    pending: BytesMut,
    next: BytesMut,
    read_since_tick: bool,
    wrote_since_tick: bool,
    /// Written to a stream that may hold some of it back until flushed: TLS encrypts what it
    /// accepts, and keeps what the socket would not take then.
    unflushed: bool,
    last_rx: Instant,
    last_tx: Instant,
    /// How long the peer may stay silent (its heartbeat interval times the misses allowed).
    silence_limit: Duration,
    /// Congested links this link's paced reports go to: reading pauses until they drain,
    /// or until `held_until`.
    held: Vec<Arc<LinkQueue>>,
    held_until: Instant,
    stopping: bool,
}

impl<'a> LinkTask<'a> {
    fn new(
        exchange: &'a Arc<ExchangeShared>,
        id: LinkId,
        queue: Arc<LinkQueue>,
        rbuf: BytesMut,
        peer: &Hello,
        endpoints: &'a Endpoints,
    ) -> Self {
        let config = &exchange.config;
        Self {
            exchange,
            endpoints,
            id,
            queue,
            decoder: Decoder::new(config.max_frame),
            rbuf,
            read_size: READ_MIN,
            frames: VecDeque::new(),
            actions: Vec::new(),
            pending: BytesMut::new(),
            next: BytesMut::new(),
            read_since_tick: false,
            wrote_since_tick: false,
            unflushed: false,
            last_rx: Instant::now(),
            last_tx: Instant::now(),
            silence_limit: Duration::from_millis(u64::from(peer.heartbeat_ms.max(50)))
                * config.heartbeat_misses.max(1),
            held: Vec::new(),
            held_until: Instant::now(),
            stopping: false,
        }
    }

    /// Moves frames both ways until the link ends; returns the stream and why it ended.
    async fn drive<S: AsyncRead + AsyncWrite + Unpin>(mut self, stream: S) -> (S, String) {
        let heartbeat = self.exchange.config.heartbeat;
        let mut tick = tokio::time::interval(heartbeat.min(self.silence_limit) / 2);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut stop = self.exchange.stop.subscribe();
        let (mut reader, mut writer) = tokio::io::split(stream);
        let exchange = self.exchange;
        let mut writing = Writing::new(&exchange.writing);
        let end = 'link: {
            // Frames that arrived with the HELLO.
            if let Err((code, reason)) = self.take_frames() {
                break 'link self.fail(&mut writer, code, reason).await;
            }
            loop {
                if !self.frames.is_empty() && self.held.is_empty() {
                    if let Some(end) = self.on_batch() {
                        break 'link end;
                    }
                    // Let the links this batch fed write before reading more: on a
                    // single-threaded runtime a busy reader would otherwise fill their
                    // queues up to the soft limit before they ever ran.
                    tokio::task::yield_now().await;
                }
                // Read in chunks that grow while the peer fills them, so a busy link makes
                // few system calls and an idle one keeps a small buffer.
                if self.rbuf.capacity() - self.rbuf.len() < self.read_size {
                    self.rbuf.reserve(self.read_size);
                }
                tokio::select! {
                    () = drained(self.held.clone(), self.held_until), if !self.held.is_empty() => {
                        self.on_drained();
                    }
                    read = reader.read_buf(&mut self.rbuf), if self.held.is_empty() => {
                        if let Some((code, reason)) = self.on_read(read) {
                            match code {
                                Some(code) => break 'link self.fail(&mut writer, code, reason).await,
                                None => break 'link reason,
                            }
                        }
                    }
                    more = self.queue.next_batch(&mut self.next), if self.pending.is_empty() => {
                        if !more {
                            let closing = self.queue.closing();
                            break 'link closing.map_or_else(
                                || "closed".to_owned(),
                                |c| format!("closed: {}: {}", c.code, c.reason),
                            );
                        }
                        // Both empty buffers keep their capacity for the next turn.
                        std::mem::swap(&mut self.pending, &mut self.next);
                        if writing.set(true) && self.pending.len() < COALESCE_BELOW {
                            for _ in 0..COALESCE_PASSES {
                                tokio::task::yield_now().await;
                                // Closed meanwhile: the next turn ends the link.
                                let _ = self.queue.try_next_batch(&mut self.pending);
                                if self.pending.len() >= COALESCE_BELOW {
                                    break;
                                }
                            }
                        }
                    }
                    // Writes, or once all is written to a stream that may hold some back,
                    // flushes: without it the ciphertext of a batch's end could wait for the
                    // next write (a heartbeat, a second away) once the socket had been full.
                    written = write_or_flush(&mut writer, &mut self.pending),
                        if !self.pending.is_empty() || self.unflushed => {
                        match written {
                            Ok(Some(0)) => break 'link "connection closed while writing".to_owned(),
                            Ok(Some(n)) => {
                                self.queue.wrote(n);
                                if self.pending.is_empty() {
                                    writing.set(false);
                                }
                                self.last_tx = Instant::now();
                                self.wrote_since_tick = true;
                                self.unflushed = self.endpoints.transport.tls;
                            }
                            Ok(None) => self.unflushed = false,
                            Err(e) => break 'link format!("write failed: {e}"),
                        }
                    }
                    _ = tick.tick() => {
                        if let Some(reason) = self.on_tick() {
                            break 'link self.fail(&mut writer, CloseCode::HeartbeatTimeout, reason).await;
                        }
                    }
                    _ = stopped(&mut stop), if !self.stopping => {
                        self.stopping = true;
                        self.queue.close(CloseCode::Normal, "exchange shutting down", true);
                    }
                }
            }
        };
        (reader.unsplit(writer), end)
    }

    /// Hands the decoded frames to the core, under one lock, then performs what it returned.
    /// Returns the reason if the peer closed the link.
    fn on_batch(&mut self) -> Option<String> {
        let rt = &self.exchange.runtime;
        {
            let now = Instant::now();
            let mut core = rt.core.lock();
            while let Some((frame, raw)) = self.frames.pop_front() {
                if let Frame::Close(close) = &frame {
                    return Some(format!("closed by peer: {}: {}", close.code, close.reason));
                }
                core.handle_frame(self.id, frame, &raw, now, &mut self.actions);
                // The rest of the batch waits until the congested link has drained:
                // forwarding it now would only coalesce it.
                if self
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::Backpressure(_)))
                {
                    break;
                }
            }
        }
        let actions = std::mem::take(&mut self.actions);
        for action in actions {
            self.perform(action);
        }
        if !self.held.is_empty() {
            self.held_until = Instant::now() + self.exchange.config.backpressure_limit;
        }
        None
    }

    /// Carries out work handed back by the core.
    fn perform(&mut self, action: Action) {
        match action {
            Action::Dispatch {
                service,
                call,
                responder,
            } => match call.decode(&self.exchange.runtime.config.value_limits) {
                Ok(call) => service.dispatch(call, responder),
                Err(failure) => responder.respond(Err(failure)),
            },
            Action::Backpressure(downstream) => {
                if !self.exchange.config.backpressure_limit.is_zero() {
                    self.held.push(downstream);
                }
            }
            Action::Resynced => {
                if let Some(event) = self.exchange.link_event(self.id, ConnectionState::Resynced) {
                    self.exchange.announce(self.id, event);
                }
                self.endpoints.tell_connector(LinkPhase::Synced);
            }
        }
    }

    /// The links this link was held for drained, or the backpressure limit passed.
    fn on_drained(&mut self) {
        for downstream in self.held.drain(..) {
            if downstream.applies_backpressure() {
                downstream.mark_slow();
            }
        }
        // The peer's frames waited in the socket meanwhile: it was not silent.
        self.last_rx = Instant::now();
    }

    /// A read completed. Returns how the link must end, if it must: with a CLOSE `code`, or
    /// (no code) without one.
    fn on_read(&mut self, read: std::io::Result<usize>) -> Option<(Option<CloseCode>, String)> {
        match read {
            Ok(0) if self.rbuf.is_empty() => Some((None, "connection closed by peer".to_owned())),
            // The peer stopped sending in the middle of a frame; it may still read.
            Ok(0) => Some((
                Some(CloseCode::ProtocolError),
                format!(
                    "protocol error: connection closed in the middle of a frame ({} bytes of it received)",
                    self.rbuf.len()
                ),
            )),
            Ok(n) => {
                self.last_rx = Instant::now();
                self.read_since_tick = true;
                if n >= self.read_size && self.read_size < READ_MAX {
                    self.read_size *= 2;
                }
                let before = self.frames.len();
                let taken = self.take_frames();
                self.queue.read(n, self.frames.len() - before);
                taken.err().map(|(code, reason)| (Some(code), reason))
            }
            Err(e) => Some((None, format!("read failed: {e}"))),
        }
    }

    /// A heartbeat tick: a heartbeat if we have been quiet, buffers given back if the link
    /// has been idle. Returns a reason if the peer has been silent too long.
    fn on_tick(&mut self) -> Option<String> {
        let now = Instant::now();
        if self.held.is_empty() && now.duration_since(self.last_rx) > self.silence_limit {
            return Some(format!(
                "no frame from the peer for {:.1} s",
                self.silence_limit.as_secs_f64()
            ));
        }
        if now.duration_since(self.last_tx) >= self.exchange.config.heartbeat
            && self.pending.is_empty()
        {
            self.queue.push(Frame::Heartbeat);
        }
        // A link that has gone quiet gives its read-side memory back (a heartbeat costs one
        // small allocation again): idle links are most links.
        if !self.read_since_tick && self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
            self.read_size = READ_MIN;
        }
        if !self.read_since_tick && self.frames.is_empty() {
            self.frames = VecDeque::new();
        }
        // Nor must the write buffers of a link that has gone quiet.
        if !self.wrote_since_tick && self.pending.is_empty() {
            self.pending = BytesMut::new();
            self.next = BytesMut::new();
            self.queue.release_idle_buffer();
        }
        self.wrote_since_tick = false;
        self.read_since_tick = false;
        None
    }

    /// Decodes every whole frame in the read buffer; on error, how to close the link
    /// (PROTOCOL.md §2: an oversized frame is `FrameTooLarge`, anything else undecodable a
    /// protocol error).
    fn take_frames(&mut self) -> Result<(), (CloseCode, String)> {
        loop {
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(frame)) => self.frames.push_back(frame),
                Ok(None) => return Ok(()),
                Err(e @ WireError::FrameTooLarge { .. }) => {
                    return Err((CloseCode::FrameTooLarge, e.to_string()));
                }
                Err(e) => return Err((CloseCode::ProtocolError, format!("protocol error: {e}"))),
            }
        }
    }

    /// Ends the link for a fault: CLOSE `code` goes after what is queued, and both get at
    /// most [`FLUSH_ON_CLOSE`] to leave (a peer that does not read must not keep the link
    /// alive). Returns the reason.
    async fn fail<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        code: CloseCode,
        reason: String,
    ) -> String {
        self.queue.close(code, reason.clone(), false);
        let flush = async {
            while self.queue.next_batch(&mut self.pending).await {
                writer.write_all(&self.pending).await?;
                self.pending.clear();
            }
            writer.flush().await
        };
        let _ = tokio::time::timeout(FLUSH_ON_CLOSE, flush).await;
        reason
    }
}

/// Writes what is pending, or flushes when nothing is.
async fn write_or_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    pending: &mut BytesMut,
) -> std::io::Result<Option<usize>> {
    if pending.is_empty() {
        writer.flush().await.map(|()| None)
    } else {
        writer.write_buf(pending).await.map(Some)
    }
}

/// Completes when every link in `held` is back under its soft limit, or at `until`.
async fn drained(held: Vec<Arc<LinkQueue>>, until: Instant) {
    let _ = tokio::time::timeout_at(until, async {
        for downstream in &held {
            downstream.uncongested().await;
        }
    })
    .await;
}
