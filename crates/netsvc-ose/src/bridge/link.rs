//! One OSE connection: a task that owns the socket and every piece of the connection's
//! state. The tasks around it (proxy methods, report monitors, calls into netsvc) hand it
//! work through one bounded channel; it alone reads and writes the socket.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use netsvc::{
    Announcement, AnnouncementKind, Binding, Failure, MethodResult, Pattern, RecvError,
    RegistryWatch, ReportEvent, Service, ServiceHandle, SubscriptionEvent, SubscriptionStatus,
    Value,
};
use netsvc_gateway::codec::{Fault, XmlLimits, netrpc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::Context;
use crate::frame::{Envelope, FrameDecoder, FrameError};
use crate::message::ExchangeRole;
use crate::message::{
    Message, Outbound, RELAY, ServiceRecord, split_first, strip_endpoint, subjects,
};

/// The groups of proxies start with this, then the `host:pid` of the OSE process whose
/// connection brought them: `netsvc services` shows where an OSE service came from, and no
/// bridge announces to an OSE process what came from that process (two hubs joined to one
/// OSE server would otherwise hand its services back to it for ever, each time by a new
/// route).
pub(super) const PROXY_GROUP_PREFIX: &str = "ose@";

/// The group of the proxies made for the OSE process `identity` (`host:pid`), with any
/// character a group name may not hold replaced.
fn proxy_group(identity: &str) -> String {
    let clean: String = identity
        .chars()
        .map(|c| {
            if c == '!' || c == '*' || c == '?' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("{PROXY_GROUP_PREFIX}{clean}")
}

/// Work queued for the connection task at most; senders wait beyond it (a proxy's caller,
/// a report monitor, which then coalesces).
const COMMAND_CAPACITY: usize = 1024;

/// Output gathered from queued work before it is written in one go.
const WRITE_BATCH: usize = 64 * 1024;

/// Which end of the connection this side is.
#[derive(Debug)]
pub(super) enum Side {
    /// An OSE peer connected to our listener: it speaks first.
    Accepted,
    /// We connected to an OSE server; the sender says when the connection is established.
    Connecting(watch::Sender<bool>),
}

/// Why a connection ended, other than by the peer closing it.
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the OSE handshake was not done within {0:?}")]
    Handshake(Duration),
    #[error("the OSE peer was silent for {0:?}: taken for dead")]
    Silent(Duration),
    #[error("the OSE peer's first frame was {0:?}, not $EP::ANNOUNCE")]
    Unexpected(String),
    #[error("this process's registry changed faster than the OSE peer took it in")]
    Lagged,
}

/// Work handed to the connection task.
enum Command {
    /// A netsvc caller's request to one of the peer's services (by its address relative
    /// to the peer).
    Call {
        to: Arc<str>,
        method: String,
        args: Vec<Value>,
        sender: Option<Binding>,
        reply: oneshot::Sender<MethodResult>,
    },
    /// The outcome of one of the peer's requests.
    Answer {
        request: Box<Envelope>,
        result: MethodResult,
    },
    /// A netsvc report for one of the peer's subscriptions.
    Report {
        to: String,
        from: String,
        subject: String,
        pattern: String,
        payload: String,
    },
    /// A netsvc subscriber subscribed to one of the proxies, or withdrew.
    Subscription {
        proxy: Arc<str>,
        event: SubscriptionEvent,
    },
}

/// What woke the task.
enum Wake {
    Read(std::io::Result<usize>),
    Command(Command),
    Announcement(Result<Announcement, RecvError>),
    Tick,
}

/// A task that is stopped when its owner lets go of it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A service of the peer, standing in this runtime as a proxy.
struct Imported {
    service: Service,
    _subscriptions: AbortOnDrop,
}

/// Groups one OSE service may join; more joins are ignored (and logged), so that a peer
/// cannot grow every registry of the exchange without bound.
const MAX_GROUPS: usize = 64;

/// A netsvc service announced to the peer.
struct Exported {
    receiver: String,
    record: ServiceRecord,
    groups: Vec<Arc<str>>,
}

impl Exported {
    /// Its address as the peer reaches it through this side.
    fn relative_address(&self) -> String {
        self.record.relative_address()
    }
}

/// A call into the peer, waiting for its answer.
struct Pending {
    reply: oneshot::Sender<MethodResult>,
    deadline: Instant,
}

/// The connection's state.
struct Link {
    context: Arc<Context>,
    side: Side,
    out: Outbound,
    commands: mpsc::Sender<Command>,
    output: BytesMut,
    /// The peer's endpoint id, once its `$EP::ANNOUNCE` arrived.
    peer: Option<String>,
    /// The conversation of the exchange handshake, and the sequence number its replay
    /// frames carry (a reply to the last frame received in it).
    handshake: (String, u32),
    established: bool,
    /// The group every proxy of this connection joins: `ose@<the peer's host:pid>`.
    proxy_group: String,
    last_heard: Instant,
    next_keep_alive: Instant,
    requests: Arc<Semaphore>,
    /// The peer's calls in progress: they end with the connection.
    serving: tokio::task::JoinSet<()>,
    /// The peer's services as proxies, by their address relative to the peer.
    imported: HashMap<Arc<str>, Imported>,
    /// The netsvc addresses of this connection's own proxies (and of its helper service),
    /// never announced back to the peer.
    own: HashSet<Arc<str>>,
    /// The netsvc services announced to the peer, by netsvc address.
    exported: HashMap<Arc<str>, Exported>,
    /// The same, by the receiver name the peer knows them by.
    receivers: HashMap<String, Binding>,
    pending: HashMap<String, Pending>,
    /// The peer's subscriptions to netsvc publishers, (subscriber, publisher, pattern), each
    /// with the task that forwards its reports.
    monitors: HashMap<(String, String, String), AbortOnDrop>,
    /// netsvc subscriptions on the proxies: (proxy, subscriber's netsvc address) → patterns.
    relays: HashMap<(Arc<str>, Arc<str>), Vec<Pattern>>,
    /// Calls and subscriptions from peer addresses that are no service of the peer's go out
    /// from this one (made when first needed).
    helper: Option<Service>,
    /// Where calls from netsvc callers the peer does not know come from.
    anonymous_from: String,
}

/// How a connection ended.
pub(super) struct Ended {
    /// Whether both handshakes were done before it ended.
    pub(super) established: bool,
    /// `Ok` if the peer closed it.
    pub(super) outcome: Result<(), LinkError>,
}

/// Runs one OSE connection to its end.
pub(super) async fn run(context: Arc<Context>, stream: TcpStream, side: Side) -> Ended {
    let _ = stream.set_nodelay(true);
    // The original sets no keepalive and notices a dead peer only when a write fails; with
    // it, the kernel notices a peer machine that went away even when nothing is sent.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    let (reader, writer) = stream.into_split();
    let (commands, command_rx) = mpsc::channel(COMMAND_CAPACITY);
    let mut link = Link::new(context, side, commands);
    let outcome = link.drive(reader, writer, command_rx).await;
    Ended {
        established: link.established,
        outcome,
    }
}

impl Link {
    fn new(context: Arc<Context>, side: Side, commands: mpsc::Sender<Command>) -> Self {
        let config = &context.config;
        let out = Outbound {
            endpoint: context.ids.endpoint(),
            exchange: config.exchange_name(),
        };
        let now = Instant::now();
        Self {
            requests: Arc::new(Semaphore::new(config.max_requests)),
            serving: tokio::task::JoinSet::new(),
            next_keep_alive: now + config.keep_alive,
            anonymous_from: format!("{RELAY}!{}", context.ids.receiver()),
            out,
            side,
            commands,
            output: BytesMut::new(),
            peer: None,
            handshake: (String::new(), 0),
            established: false,
            proxy_group: String::new(),
            last_heard: now,
            imported: HashMap::new(),
            own: HashSet::new(),
            exported: HashMap::new(),
            receivers: HashMap::new(),
            pending: HashMap::new(),
            monitors: HashMap::new(),
            relays: HashMap::new(),
            helper: None,
            context,
        }
    }

    async fn drive(
        &mut self,
        mut reader: OwnedReadHalf,
        mut writer: OwnedWriteHalf,
        mut commands: mpsc::Receiver<Command>,
    ) -> Result<(), LinkError> {
        let config = self.context.config.clone();
        let mut decoder = FrameDecoder::new(config.max_frame);
        let mut registry: Option<RegistryWatch> = None;
        let handshake_deadline = Instant::now() + config.handshake_timeout;
        let mut ticker = tokio::time::interval(
            Duration::from_millis(250)
                .min(config.keep_alive)
                .max(Duration::from_millis(10)),
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if matches!(self.side, Side::Connecting(_)) {
            // The connecting endpoint speaks first, and nothing else until it is answered.
            let conversation = self.context.ids.conversation();
            let announce = self.out.endpoint_announce(&conversation);
            self.send(&announce);
        }
        loop {
            self.flush(&mut writer, config.dead_after).await?;
            // Reading first: after a long write, what the peer sent meanwhile counts before
            // the ticker asks how long it has been silent.
            let wake = tokio::select! {
                biased;
                read = reader.read_buf(decoder.buffer_mut()) => Wake::Read(read),
                Some(command) = commands.recv() => Wake::Command(command),
                announcement = next_announcement(&mut registry) => Wake::Announcement(announcement),
                _ = ticker.tick() => Wake::Tick,
            };
            match wake {
                Wake::Read(read) => {
                    if read? == 0 {
                        return Ok(());
                    }
                    self.last_heard = Instant::now();
                    while let Some(envelope) = decoder.next_frame()? {
                        if self.on_envelope(envelope)? {
                            registry = Some(self.replay());
                        }
                    }
                }
                Wake::Command(command) => self.on_command(command),
                Wake::Announcement(announcement) => match announcement {
                    Ok(announcement) => self.on_announcement(announcement, false),
                    Err(RecvError::Lagged) => return Err(LinkError::Lagged),
                    Err(RecvError::Closed) => return Ok(()),
                },
                Wake::Tick => self.on_tick(handshake_deadline)?,
            }
            // Whatever else is queued goes out in the same write.
            while self.output.len() < WRITE_BATCH {
                let Ok(command) = commands.try_recv() else {
                    break;
                };
                self.on_command(command);
            }
        }
    }

    fn send(&mut self, envelope: &Envelope) {
        envelope.encode(&mut self.output);
    }

    async fn flush(
        &mut self,
        writer: &mut OwnedWriteHalf,
        dead_after: Duration,
    ) -> Result<(), LinkError> {
        if self.output.is_empty() {
            return Ok(());
        }
        // A peer that stops reading for as long as it may stay silent is as good as dead.
        tokio::time::timeout(dead_after, writer.write_all(&self.output))
            .await
            .map_err(|_| LinkError::Silent(dead_after))??;
        self.output.clear();
        Ok(())
    }

    /// Handles one frame; true when it established the connection (the replay is due).
    fn on_envelope(&mut self, envelope: Envelope) -> Result<bool, LinkError> {
        let message = match Message::parse(&envelope) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(subject = %envelope.subject, error = %e, "OSE frame ignored");
                // A call is answered whatever it holds.
                if let (true, Some(peer)) = (
                    envelope.subject == subjects::REQUEST && self.established,
                    self.peer.clone(),
                ) {
                    let bad = Failure::netsvc(53, e.to_string());
                    let frame = self.failure(&envelope, &peer, &bad);
                    self.send(&frame);
                }
                return Ok(false);
            }
        };
        let Some(peer) = self.peer.clone() else {
            if message != Message::EndpointAnnounce {
                return Err(LinkError::Unexpected(envelope.subject));
            }
            self.peer = Some(envelope.from);
            match self.side {
                Side::Accepted => {
                    let conversation = self.context.ids.conversation();
                    let announce = self.out.endpoint_announce(&conversation);
                    self.send(&announce);
                }
                Side::Connecting(_) => {
                    let conversation = self.context.ids.conversation();
                    let announce = self.out.exchange_announce(
                        own_role(&self.side),
                        &self.context.identity,
                        &conversation,
                        0,
                    );
                    self.send(&announce);
                    self.handshake = (conversation, 0);
                }
            }
            return Ok(false);
        };
        match message {
            Message::ExchangeAnnounce { role, identity } => {
                if self.established {
                    tracing::debug!(%identity, "repeated OSE exchange announce ignored");
                    return Ok(false);
                }
                if envelope.to != self.out.exchange {
                    // As the original: the connection stays up, and idle.
                    tracing::warn!(to = %envelope.to, ours = %self.out.exchange, %identity,
                        "an OSE peer announced itself to another exchange group: connection left idle");
                    return Ok(false);
                }
                let reply_sequence = envelope.sequence.saturating_add(1);
                if matches!(self.side, Side::Accepted) {
                    let answer = self.out.exchange_announce(
                        own_role(&self.side),
                        &self.context.identity,
                        &envelope.conversation,
                        reply_sequence,
                    );
                    self.send(&answer);
                }
                self.handshake = (envelope.conversation, reply_sequence);
                self.established = true;
                self.proxy_group = proxy_group(&identity);
                tracing::info!(%identity, ?role, endpoint = %peer, "OSE exchange connected");
                if let Side::Connecting(state) = &self.side {
                    let _ = state.send(true);
                }
                Ok(true)
            }
            _ if !self.established => {
                tracing::debug!(subject = %envelope.subject, "OSE frame before the exchange handshake ignored");
                Ok(false)
            }
            Message::EndpointAnnounce => Ok(false),
            Message::ServiceAvailable(record) => {
                self.import(record);
                Ok(false)
            }
            Message::ServiceWithdrawn { address } => {
                self.unimport(&address);
                Ok(false)
            }
            Message::GroupAvailable(record) | Message::GroupWithdrawn(record) => {
                let joined = envelope.subject == subjects::GROUP_AVAILABLE;
                if let Some(imported) = self.imported.get(record.relative_address().as_str()) {
                    if record.scope.starts_with(PROXY_GROUP_PREFIX) {
                        // Reserved for the bridges' own marking.
                        return Ok(false);
                    }
                    // Its `ose@` group is among them.
                    let groups = self
                        .context
                        .runtime
                        .registry()
                        .groups_of(imported.service.address())
                        .len();
                    let outcome = if !joined {
                        imported.service.leave_group(&record.scope)
                    } else if groups <= MAX_GROUPS {
                        imported.service.join_group(&record.scope)
                    } else {
                        tracing::warn!(group = %record.scope, limit = MAX_GROUPS,
                            "OSE service joined more groups than allowed: ignored");
                        Ok(())
                    };
                    if let Err(e) = outcome {
                        tracing::warn!(group = %record.scope, error = %e, "OSE group change not taken");
                    }
                }
                Ok(false)
            }
            Message::KeepAlive => {
                // Ours, come back, ends here; the peer's goes on round, back to it.
                if !split_first(&envelope.to).1.is_empty() {
                    let back = self.out.keep_alive_return(&envelope, &peer);
                    self.send(&back);
                }
                Ok(false)
            }
            Message::Request { method } => {
                self.serve(envelope, method, &peer);
                Ok(false)
            }
            Message::Response => {
                self.answered(&envelope, false);
                Ok(false)
            }
            Message::Failure => {
                self.answered(&envelope, true);
                Ok(false)
            }
            Message::Report { subject, pattern } => {
                self.report_from_peer(&envelope, &peer, &subject, pattern.as_deref());
                Ok(false)
            }
            Message::SubscriptionRequested { pattern } => {
                self.peer_subscribes(&envelope, &peer, pattern);
                Ok(false)
            }
            Message::SubscriptionWithdrawn { pattern } => {
                let subscriber = strip_endpoint(&envelope.from, &peer).to_owned();
                if let Some(publisher) = self.receiver_of(&envelope.to) {
                    let key = (subscriber, publisher.address().to_owned(), pattern);
                    self.monitors.remove(&key);
                }
                Ok(false)
            }
            Message::Unsupported => {
                tracing::debug!(subject = %envelope.subject, "OSE frame not bridged");
                Ok(false)
            }
        }
    }

    /// Starts watching the registry and announces what it holds now to the peer, as replies
    /// in the handshake's conversation (what the original calls the replay).
    fn replay(&mut self) -> RegistryWatch {
        let mut watch = self.context.runtime.registry().watch();
        while let Ok(Some(announcement)) = watch.try_recv() {
            self.on_announcement(announcement, true);
        }
        watch
    }

    fn on_announcement(&mut self, announcement: Announcement, replay: bool) {
        let binding = announcement.binding;
        match announcement.kind {
            AnnouncementKind::Available => {
                self.export(&binding, replay);
            }
            AnnouncementKind::GroupJoined(group) if !group.starts_with(PROXY_GROUP_PREFIX) => {
                let Some(exported) = self.exported.get_mut(binding.address()) else {
                    return;
                };
                if exported.groups.contains(&group) {
                    return;
                }
                exported.groups.push(group.clone());
                let record = exported.record.clone();
                self.send_membership(subjects::GROUP_AVAILABLE, &record, &group, replay);
            }
            AnnouncementKind::GroupLeft(group) => {
                let Some(exported) = self.exported.get_mut(binding.address()) else {
                    return;
                };
                let before = exported.groups.len();
                exported.groups.retain(|g| *g != group);
                if exported.groups.len() == before {
                    return;
                }
                let record = exported.record.clone();
                self.send_membership(subjects::GROUP_WITHDRAWN, &record, &group, false);
            }
            AnnouncementKind::Withdrawn(_) => {
                let Some(exported) = self.exported.remove(binding.address()) else {
                    return;
                };
                self.receivers.remove(&exported.receiver);
                // As the original: the groups are left first, then the service goes.
                for group in &exported.groups {
                    self.send_membership(subjects::GROUP_WITHDRAWN, &exported.record, group, false);
                }
                let conversation = self.context.ids.conversation();
                let frame = self
                    .out
                    .service_withdrawn(&exported.relative_address(), &conversation);
                self.send(&frame);
                let gone = binding.address();
                self.monitors
                    .retain(|(_, publisher, _), _| publisher != gone);
            }
            _ => {}
        }
    }

    /// `GROUP-AVAILABLE` or `GROUP-WITHDRAWN` for one group of an exported service.
    fn send_membership(
        &mut self,
        subject: &str,
        record: &ServiceRecord,
        group: &str,
        replay: bool,
    ) {
        let record = ServiceRecord {
            scope: group.to_owned(),
            ..record.clone()
        };
        let (conversation, sequence) = self.conversation(replay);
        let frame = self.out.record(subject, &record, &conversation, sequence);
        self.send(&frame);
    }

    /// The conversation and sequence number of an exchange-level frame: a reply in the
    /// handshake's during the replay, a conversation of its own afterwards.
    fn conversation(&self, replay: bool) -> (String, u32) {
        if replay {
            self.handshake.clone()
        } else {
            (self.context.ids.conversation(), 0)
        }
    }

    /// Announces a netsvc service to the peer unless it must not see it; its address
    /// relative to this side if announced (now or before).
    fn export(&mut self, binding: &Binding, replay: bool) -> Option<String> {
        if let Some(exported) = self.exported.get(binding.address()) {
            return Some(exported.relative_address());
        }
        if self.own.contains(binding.address())
            || !binding.audience().admits(&self.context.config.group)
            || self.comes_from_peer(binding)
        {
            return None;
        }
        // Asked for on demand (a caller, a subscriber): only a service the registry shows,
        // so that the registry watch will also say when it goes. A hidden or just withdrawn
        // one goes unannounced.
        if !replay
            && self
                .context
                .runtime
                .registry()
                .lookup_address(binding.address())
                .is_none()
        {
            return None;
        }
        let receiver = self.context.ids.receiver();
        let record = ServiceRecord {
            name: binding.service_name().to_owned(),
            receiver: receiver.clone(),
            process_address: RELAY.to_owned(),
            scope: binding.audience().as_str().to_owned(),
        };
        let (conversation, sequence) = self.conversation(replay);
        let frame = self.out.record(
            subjects::SERVICE_AVAILABLE,
            &record,
            &conversation,
            sequence,
        );
        self.send(&frame);
        let exported = Exported {
            receiver: receiver.clone(),
            record,
            groups: Vec::new(),
        };
        let address = exported.relative_address();
        self.exported.insert(binding.address().into(), exported);
        self.receivers.insert(receiver, binding.clone());
        Some(address)
    }

    /// Whether `binding` is a proxy (of this bridge or of another, in any process) for a
    /// service that came from this connection's peer.
    fn comes_from_peer(&self, binding: &Binding) -> bool {
        !self.proxy_group.is_empty()
            && self
                .context
                .runtime
                .registry()
                .groups_of(binding.address())
                .contains(&self.proxy_group)
    }

    /// The netsvc service a `to` of the peer's names: `$RELAY!<receiver>[!name]`.
    fn receiver_of(&self, to: &str) -> Option<Binding> {
        let rest = to.strip_prefix(RELAY)?.strip_prefix('!')?;
        self.receivers.get(split_first(rest).0).cloned()
    }

    /// Makes a proxy for a service the peer announced.
    fn import(&mut self, record: ServiceRecord) {
        let key: Arc<str> = record.relative_address().into();
        if self.imported.contains_key(&key) {
            tracing::debug!(address = %key, "OSE service announced twice: ignored");
            return;
        }
        if self.imported.len() >= self.context.config.max_services {
            tracing::warn!(name = %record.name, limit = self.context.config.max_services,
                "OSE peer announced more services than allowed: ignored");
            return;
        }
        let audience = if record.scope.is_empty() {
            "*"
        } else {
            &record.scope
        };
        let service = match self
            .context
            .runtime
            .service(&record.name)
            .audience(audience)
            .join_group(&self.proxy_group)
            .fallback(proxy_method(self.commands.clone(), key.clone()))
            .build()
        {
            Ok(service) => service,
            Err(e) => {
                tracing::warn!(name = %record.name, error = %e, "OSE service not imported");
                return;
            }
        };
        let subscriptions = match service.watch_subscriptions() {
            Ok(mut watch) => {
                let commands = self.commands.clone();
                let proxy = key.clone();
                tokio::spawn(async move {
                    while let Ok(event) = watch.recv().await {
                        let command = Command::Subscription {
                            proxy: proxy.clone(),
                            event,
                        };
                        if commands.send(command).await.is_err() {
                            break;
                        }
                    }
                })
            }
            Err(_) => tokio::spawn(async {}),
        };
        self.own.insert(service.address().into());
        self.imported.insert(
            key,
            Imported {
                service,
                _subscriptions: AbortOnDrop(subscriptions),
            },
        );
    }

    /// Withdraws the proxy of a service the peer withdrew: calls in flight to it fail
    /// with 57, its subscribers are told.
    fn unimport(&mut self, address: &str) {
        let Some(imported) = self.imported.remove(address) else {
            return;
        };
        self.own.remove(imported.service.address());
        self.relays.retain(|(proxy, _), _| &**proxy != address);
        self.monitors
            .retain(|(subscriber, _, _), _| subscriber != address);
    }

    /// The helper service, for calls and subscriptions from peer addresses that are no
    /// service of the peer's.
    fn helper(&mut self) -> Option<ServiceHandle> {
        if self.helper.is_none() {
            match self.context.runtime.service("").build() {
                Ok(service) => {
                    self.own.insert(service.address().into());
                    self.helper = Some(service);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "OSE bridge helper service not made");
                    return None;
                }
            }
        }
        self.helper.as_ref().map(|s| s.handle())
    }

    /// The service a peer address stands for here: its proxy, or the helper.
    fn acting_for(&mut self, peer_address: &str) -> Option<ServiceHandle> {
        match self.imported.get(peer_address) {
            Some(imported) => Some(imported.service.handle()),
            None => self.helper(),
        }
    }

    /// A request from the peer: answered always, by the service or with a failure.
    fn serve(&mut self, request: Envelope, method: String, peer: &str) {
        let Some(binding) = self.receiver_of(&request.to) else {
            let frame = self.failure(&request, peer, &Failure::withdrawn());
            self.send(&frame);
            return;
        };
        let Ok(permit) = self.requests.clone().try_acquire_owned() else {
            let busy = Failure::netsvc(
                51,
                format!(
                    "The OSE peer already has {} requests in progress.",
                    self.context.config.max_requests
                ),
            );
            let frame = self.failure(&request, peer, &busy);
            self.send(&frame);
            return;
        };
        let args = match netrpc::decode_params(&request.content, XmlLimits::DEFAULT) {
            Ok(args) => args,
            Err(e) => {
                let frame = self.failure(&request, peer, &Failure::netsvc(54, e.to_string()));
                self.send(&frame);
                return;
            }
        };
        let caller = strip_endpoint(&request.from, peer).to_owned();
        let endpoint = match self.acting_for(&caller) {
            Some(sender) => sender.endpoint(binding),
            None => Ok(self.context.runtime.endpoint(binding)),
        };
        let endpoint = match endpoint {
            Ok(endpoint) => endpoint.with_timeout(self.context.config.call_timeout),
            Err(_) => {
                // The caller's proxy went at this moment: so does its call.
                let frame = self.failure(&request, peer, &Failure::withdrawn());
                self.send(&frame);
                return;
            }
        };
        let commands = self.commands.clone();
        // Finished calls are reaped here, so the set holds only those in progress.
        while self.serving.try_join_next().is_some() {}
        self.serving.spawn(async move {
            let result = endpoint.call(&method, args).await;
            drop(permit);
            let _ = commands
                .send(Command::Answer {
                    request: Box::new(request),
                    result,
                })
                .await;
        });
    }

    fn failure(&self, request: &Envelope, peer: &str, failure: &Failure) -> Envelope {
        self.out
            .answer(request, peer, true, netrpc::encode_failure(&fault(failure)))
    }

    /// A response or failure from the peer, for a call into it.
    fn answered(&mut self, envelope: &Envelope, failed: bool) {
        let Some(pending) = self.pending.remove(&envelope.conversation) else {
            tracing::debug!(conversation = %envelope.conversation, "OSE answer to no call of ours (late?) ignored");
            return;
        };
        let decoded = netrpc::decode(&envelope.content, XmlLimits::DEFAULT);
        let result = match (failed, decoded) {
            (false, Ok(value)) => Ok(value),
            (true, Ok(value)) => Err(failure_of(&value)),
            (_, Err(e)) => Err(Failure::netsvc(
                44,
                format!("The OSE peer's answer could not be decoded: {e}"),
            )),
        };
        let _ = pending.reply.send(result);
    }

    /// A report from one of the peer's publishers, for one of the subscriptions made
    /// through a proxy.
    fn report_from_peer(
        &mut self,
        envelope: &Envelope,
        peer: &str,
        subject: &str,
        pattern: Option<&str>,
    ) {
        let Some(subscriber) = self.receiver_of(&envelope.to) else {
            return;
        };
        let publisher: Arc<str> = strip_endpoint(&envelope.from, peer).into();
        let Some(imported) = self.imported.get(&publisher) else {
            return;
        };
        // The peer sends a report once per matching pattern of the subscriber's; the proxy
        // delivers each report to every matching subscription at once, so only the copy
        // answering the first matching pattern goes on.
        if let Some(pattern) = pattern {
            let key = (publisher.clone(), Arc::<str>::from(subscriber.address()));
            let first = self
                .relays
                .get(&key)
                .and_then(|patterns| patterns.iter().find(|p| p.matches(subject)));
            if first.is_some_and(|p| p.as_str() != pattern) {
                return;
            }
        }
        let value = match netrpc::decode(&envelope.content, XmlLimits::DEFAULT) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(%subject, error = %e, "OSE report not decodable: dropped");
                return;
            }
        };
        if let Err(e) = imported.service.send_report(&subscriber, subject, value) {
            tracing::debug!(%subject, error = %e, "OSE report not delivered");
        }
    }

    /// The peer subscribes to a netsvc publisher: a monitor, acting for the subscriber's
    /// proxy, forwards the publisher's reports (its cached ones first).
    fn peer_subscribes(&mut self, envelope: &Envelope, peer: &str, pattern: String) {
        let Some(publisher) = self.receiver_of(&envelope.to) else {
            return;
        };
        let subscriber = strip_endpoint(&envelope.from, peer).to_owned();
        let key = (
            subscriber.clone(),
            publisher.address().to_owned(),
            pattern.clone(),
        );
        if self.monitors.contains_key(&key) {
            return;
        }
        if self.monitors.len() >= self.context.config.max_subscriptions {
            tracing::warn!(%pattern, limit = self.context.config.max_subscriptions,
                "OSE peer holds more subscriptions than allowed: ignored");
            return;
        }
        let Some(acting) = self.acting_for(&subscriber) else {
            return;
        };
        let mut monitor = match acting.monitor_reports(&publisher, &pattern) {
            Ok(monitor) => monitor,
            Err(e) => {
                tracing::warn!(%pattern, error = %e, "OSE subscription not taken");
                return;
            }
        };
        let commands = self.commands.clone();
        let from = envelope.to.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = monitor.recv().await {
                let ReportEvent::Report(report) = event else {
                    continue;
                };
                let Ok(value) = report.value() else {
                    continue;
                };
                let command = Command::Report {
                    to: subscriber.clone(),
                    from: from.clone(),
                    subject: report.subject().to_owned(),
                    pattern: pattern.clone(),
                    payload: netrpc::encode(value),
                };
                if commands.send(command).await.is_err() {
                    break;
                }
            }
        });
        self.monitors.insert(key, AbortOnDrop(task));
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Call {
                to,
                method,
                args,
                sender,
                reply,
            } => {
                if self.pending.len() >= self.context.config.max_requests {
                    let _ = reply.send(Err(Failure::netsvc(
                        51,
                        "Too many calls into the OSE peer are waiting for their answers.",
                    )));
                    return;
                }
                let from = sender
                    .and_then(|s| self.export(&s, false))
                    .unwrap_or_else(|| self.anonymous_from.clone());
                let conversation = self.context.ids.conversation();
                let payload = netrpc::encode(&Value::List(args));
                let frame = self
                    .out
                    .request(&to, &from, &method, &conversation, payload);
                self.send(&frame);
                let deadline = Instant::now() + self.context.config.request_timeout;
                self.pending
                    .insert(conversation, Pending { reply, deadline });
            }
            Command::Answer { request, result } => {
                let Some(peer) = self.peer.clone() else {
                    return;
                };
                let frame = match result {
                    Ok(value) => self
                        .out
                        .answer(&request, &peer, false, netrpc::encode(&value)),
                    Err(failure) => self.failure(&request, &peer, &failure),
                };
                self.send(&frame);
            }
            Command::Report {
                to,
                from,
                subject,
                pattern,
                payload,
            } => {
                let conversation = self.context.ids.conversation();
                let frame = self
                    .out
                    .report(&to, &from, &subject, &pattern, &conversation, payload);
                self.send(&frame);
            }
            Command::Subscription { proxy, event } => self.proxy_subscription(proxy, event),
        }
    }

    /// A netsvc subscriber subscribed to a proxy (or withdrew): the peer's publisher is
    /// told, from the subscriber's own address there, so that it can see who it serves.
    fn proxy_subscription(&mut self, proxy: Arc<str>, event: SubscriptionEvent) {
        if !self.imported.contains_key(&proxy) {
            return;
        }
        let SubscriptionEvent {
            subscriber,
            pattern,
            status,
        } = event;
        let key = (proxy.clone(), Arc::<str>::from(subscriber.address()));
        let requested = status == SubscriptionStatus::Requested;
        // The peer holds one subscription per (subscriber, pattern): it hears of the first
        // netsvc subscription of that pattern and of the last one's end only.
        let patterns = self.relays.entry(key.clone()).or_default();
        let held = patterns.iter().filter(|p| **p == pattern).count();
        let tell = if requested {
            patterns.push(pattern.clone());
            held == 0
        } else {
            if let Some(at) = patterns.iter().position(|p| *p == pattern) {
                patterns.remove(at);
            }
            held == 1
        };
        if self.relays.get(&key).is_some_and(Vec::is_empty) {
            self.relays.remove(&key);
        }
        if !tell {
            return;
        }
        // A subscription that ends because its subscriber was withdrawn ends with the
        // SERVICE-WITHDRAWN the peer is about to hear, as in the original. The runtime has
        // taken the subscriber out of its registry by now, even when this command is read
        // before the registry's announcement of it.
        if !requested
            && self
                .context
                .runtime
                .registry()
                .lookup_address(subscriber.address())
                .is_none()
        {
            return;
        }
        // The subscriber's address as the peer knows it. One withdrawn with its service (whose
        // SERVICE-WITHDRAWN has gone already) is not announced again; one the peer may not
        // see gets nothing from it, as within netsvc.
        let from = if requested {
            self.export(&subscriber, false)
        } else {
            self.exported
                .get(subscriber.address())
                .map(Exported::relative_address)
        };
        let Some(from) = from else {
            return;
        };
        let conversation = self.context.ids.conversation();
        let frame =
            self.out
                .subscription(requested, &proxy, &from, pattern.as_str(), &conversation);
        self.send(&frame);
    }

    fn on_tick(&mut self, handshake_deadline: Instant) -> Result<(), LinkError> {
        let context = self.context.clone();
        let config = &context.config;
        let now = Instant::now();
        if !self.established && now >= handshake_deadline {
            return Err(LinkError::Handshake(config.handshake_timeout));
        }
        if now.duration_since(self.last_heard) >= config.dead_after {
            return Err(LinkError::Silent(config.dead_after));
        }
        if self.established && now >= self.next_keep_alive {
            self.next_keep_alive = now + config.keep_alive;
            let conversation = self.context.ids.conversation();
            let frame = self.out.keep_alive(&conversation);
            self.send(&frame);
        }
        let timeout = config.request_timeout;
        self.pending.retain(|_, pending| {
            if pending.reply.is_closed() {
                return false;
            }
            if now < pending.deadline {
                return true;
            }
            let (reply, _) = oneshot::channel();
            let _ =
                std::mem::replace(&mut pending.reply, reply).send(Err(Failure::timeout(timeout)));
            false
        });
        Ok(())
    }
}

/// The method of a proxy: every call goes to the peer.
fn proxy_method(
    commands: mpsc::Sender<Command>,
    to: Arc<str>,
) -> impl Fn(netsvc::Request) -> std::pin::Pin<Box<dyn Future<Output = MethodResult> + Send>>
+ Send
+ Sync
+ 'static {
    move |request| {
        let commands = commands.clone();
        let to = to.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let sender = request.sender().cloned();
            let method = request.method().to_owned();
            let command = Command::Call {
                to,
                method,
                args: request.into_args(),
                sender,
                reply,
            };
            commands
                .send(command)
                .await
                .map_err(|_| Failure::withdrawn())?;
            // The connection ended before the answer came: the service is gone with it.
            answer.await.unwrap_or_else(|_| Err(Failure::withdrawn()))
        })
    }
}

async fn next_announcement(
    registry: &mut Option<RegistryWatch>,
) -> Result<Announcement, RecvError> {
    match registry {
        Some(watch) => watch.recv().await,
        None => std::future::pending().await,
    }
}

/// A failure in the original's four fields.
fn fault(failure: &Failure) -> Fault {
    Fault {
        error: failure.error,
        description: failure.description.clone(),
        origin: failure.origin.clone(),
        details: failure.details.clone(),
    }
}

/// A failure from the original's four fields (a peer's `$S::FAILURE`).
fn failure_of(value: &Value) -> Failure {
    let Value::Map(fields) = value else {
        return Failure::netsvc(44, "The OSE peer's failure is not an index of four fields.");
    };
    let text = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let error = fields
        .get("error")
        .and_then(Value::as_i64)
        .and_then(|e| i32::try_from(e).ok())
        .unwrap_or(50);
    Failure::new(error, text("description"), text("origin"), text("details"))
}

/// The role this side announces: a listener is what OSE clients connect to, a server; a
/// connection this side opens is a client's.
fn own_role(side: &Side) -> ExchangeRole {
    match side {
        Side::Accepted => ExchangeRole::Server,
        Side::Connecting(_) => ExchangeRole::Client,
    }
}
