//! An in-memory network of cores for unit tests of routing: no sockets, no tasks, no
//! sleeps. Each node is a [`Core`]; each wire joins two of them by a pair of link queues.
//! [`Network::settle`] moves every queued frame to its peer (through the real decoder) and
//! lets the peer's core handle it, over and over until nothing is left to move, so that a
//! test states what the network looks like once every message has arrived.
//!
//! Local services here answer at once: a request's arguments come back as its result (the
//! `echo` of the integration tests), so relays and conversation ids can be checked without
//! the API layer.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use netsvc_proto::Pattern;
use netsvc_proto::value::{self, Limits, Value};
use netsvc_proto::wire::{Decoder, Frame, Text, frame};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::link_queue::{LinkQueue, QueueLimits};
use super::local::{Call, Methods};
use super::queue::{EventReceiver, ReportQueue};
use super::reply::{Reply, Responder};
use super::{Action, Core, LinkInfo, Monitor, MonitorTarget, Publication, Route};
use crate::model::announcement::{Announcement, RegistryScope, WithdrawReason};
use crate::model::binding::{Audience, Binding, Location};
use crate::model::failure::MethodResult;
use crate::model::ids::{Id as _, LinkId, MonitorId};
use crate::model::report::{Lifetime, ReportEvent};

/// A service that answers every request with its arguments.
struct Echo {
    binding: Binding,
    alive: watch::Sender<()>,
}

impl Methods for Echo {
    fn binding(&self) -> &Binding {
        &self.binding
    }

    fn liveness(&self) -> watch::Receiver<()> {
        self.alive.subscribe()
    }

    fn dispatch(self: Arc<Self>, call: Call, responder: Responder) {
        responder.respond(Ok(Value::List(call.args)));
    }

    fn end(&self) {}

    fn refused(&self, _why: &str) {}
}

/// One end of a wire: the node, its link id there, and the queue it sends on.
struct End {
    node: usize,
    link: LinkId,
    queue: Arc<LinkQueue>,
}

struct Wire {
    ends: [End; 2],
    up: bool,
}

/// A pending call made with [`Network::call`].
pub(super) struct PendingCall(oneshot::Receiver<Reply>);

impl PendingCall {
    /// The outcome, once the network has settled; panics if there is none yet.
    pub(super) fn outcome(mut self) -> MethodResult {
        match self.0.try_recv() {
            Ok(reply) => reply.into_result(&Limits::default()),
            Err(e) => panic!("no reply yet: {e}"),
        }
    }
}

/// Several cores joined by in-memory links.
pub(super) struct Network {
    nodes: Vec<Core>,
    wires: Vec<Wire>,
    agents: u64,
    /// Connections opened so far (every node numbers its connections from the same count
    /// here, which is enough for tests: the numbers only have to grow).
    attempts: u64,
    /// What each node's link tasks would have done after its core's lock: the resync
    /// notices, by node.
    pub(super) resynced: Vec<usize>,
    /// The nodes whose registry is scoped (`RegistrySync::Scoped`): their HELLOs ask for it.
    scoped: Vec<bool>,
}

impl Network {
    /// Nodes whose process identities are `names` (`"a"`, `"b"`, ...).
    pub(super) fn new(names: &[&str]) -> Self {
        Self {
            nodes: names
                .iter()
                .map(|n| Core::new(Arc::from(*n), Limits::default()))
                .collect(),
            wires: Vec::new(),
            agents: 0,
            attempts: 0,
            resynced: Vec::new(),
            scoped: vec![false; names.len()],
        }
    }

    /// Scopes `node`'s registry (before it links): the nodes it links to then tell it only
    /// of what it wants.
    pub(super) fn scope(&mut self, node: usize) {
        self.nodes[node].scope_registry();
        self.scoped[node] = true;
    }

    pub(super) fn core(&mut self, node: usize) -> &mut Core {
        &mut self.nodes[node]
    }

    /// Links `from` to `to` (`from` initiates) in the default group; returns the wire's
    /// index, or `None` if a node refused it as a duplicate.
    pub(super) fn link(&mut self, from: usize, to: usize) -> Option<usize> {
        let queue = || {
            Arc::new(LinkQueue::new(QueueLimits {
                soft: 8 << 20,
                hard: 64 << 20,
                peer_max_frame: netsvc_proto::wire::DEFAULT_MAX_FRAME,
            }))
        };
        self.attempts += 1;
        let attempt = Some(self.attempts);
        // The accepting side always offers the scope; the connecting side asks when scoped.
        let scoped_registry = self.scoped[from];
        let info = |peer: usize, initiated_here: bool, nodes: &[Core]| LinkInfo {
            group: Arc::from(""),
            peer: nodes[peer].identity.clone(),
            initiated_here,
            attempt,
            grants: None,
            remote: Arc::from("test"),
            tls: false,
            user: None,
            since: std::time::Instant::now(),
            scoped_registry,
        };
        let (qa, qb) = (queue(), queue());
        let ia = info(to, true, &self.nodes);
        let ib = info(from, false, &self.nodes);
        let (la, replaced_a) = self.nodes[from].link_up(ia, qa.clone()).ok()?;
        let Ok((lb, replaced_b)) = self.nodes[to].link_up(ib, qb.clone()) else {
            self.nodes[from].link_down(la);
            return None;
        };
        for replaced in [replaced_a, replaced_b].into_iter().flatten() {
            self.cut_queue(&replaced);
        }
        self.wires.push(Wire {
            ends: [
                End {
                    node: from,
                    link: la,
                    queue: qa,
                },
                End {
                    node: to,
                    link: lb,
                    queue: qb,
                },
            ],
            up: true,
        });
        Some(self.wires.len() - 1)
    }

    /// The wire whose queue this is goes down at both ends (a replaced duplicate).
    fn cut_queue(&mut self, queue: &Arc<LinkQueue>) {
        let found = self
            .wires
            .iter()
            .position(|w| w.up && w.ends.iter().any(|e| Arc::ptr_eq(&e.queue, queue)));
        if let Some(wire) = found {
            self.unlink(wire);
        }
    }

    /// Cuts a wire: both ends see their link go down, as when a socket breaks.
    pub(super) fn unlink(&mut self, wire: usize) {
        let w = &mut self.wires[wire];
        if !w.up {
            return;
        }
        w.up = false;
        for end in &w.ends {
            self.nodes[end.node].link_down(end.link);
        }
    }

    /// Moves every queued frame across its wire and lets the receiving core handle it,
    /// until nothing is queued anywhere. Panics if the network does not fall quiet (a
    /// routing loop).
    pub(super) fn settle(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the network never settled: frames keep circulating");
    }

    /// One round: each wire's queued frames, both ways. Returns whether any moved.
    fn step(&mut self) -> bool {
        let mut moved = false;
        for w in 0..self.wires.len() {
            if !self.wires[w].up {
                continue;
            }
            for (from, to) in [(0, 1), (1, 0)] {
                let mut bytes = BytesMut::new();
                let queue = &self.wires[w].ends[from].queue;
                if queue.try_next_batch(&mut bytes) != Some(true) {
                    continue;
                }
                queue.wrote(bytes.len());
                moved = true;
                let (node, link) = (self.wires[w].ends[to].node, self.wires[w].ends[to].link);
                self.deliver(node, link, &mut bytes);
            }
        }
        moved
    }

    fn deliver(&mut self, node: usize, link: LinkId, bytes: &mut BytesMut) {
        let decoder = Decoder::default();
        let now = Instant::now();
        let mut actions = Vec::new();
        while let Some((frame, raw)) = decoder.decode(bytes).expect("frames decode") {
            if matches!(frame, Frame::Heartbeat | Frame::Close(_)) {
                continue;
            }
            self.nodes[node].handle_frame(link, frame, &raw, now, &mut actions);
        }
        assert!(bytes.is_empty(), "only whole frames cross a wire");
        for action in actions {
            match action {
                Action::Dispatch {
                    service,
                    call,
                    responder,
                } => match call.decode(&Limits::default()) {
                    Ok(call) => service.dispatch(call, responder),
                    Err(f) => responder.respond(Err(f)),
                },
                Action::Resynced => self.resynced.push(node),
                Action::Backpressure(_) => {}
            }
        }
    }

    /// Starts an `echo` service named `name` on `node`, in `groups`; returns its binding.
    pub(super) fn service(&mut self, node: usize, name: &str, groups: &[&str]) -> Binding {
        self.agents += 1;
        let core = &mut self.nodes[node];
        let process = core.identity.clone();
        let agent: Arc<str> = format!("{}@{process}", self.agents).into();
        let binding = Binding::new(
            name.into(),
            Audience::Everyone,
            agent,
            process,
            Location::Local,
            None,
        );
        let service = Arc::new(Echo {
            binding: binding.clone(),
            alive: watch::channel(()).0,
        });
        let now = Instant::now();
        core.add_local(service, false, now);
        for group in groups {
            core.join_group(&binding, Arc::from(*group));
        }
        core.announce(&binding, now);
        binding
    }

    /// Withdraws a local service of `node`.
    pub(super) fn withdraw(&mut self, node: usize, service: &Binding) {
        let gone = self.nodes[node].withdraw_local(service.address(), WithdrawReason::Owner);
        if let Some(gone) = gone {
            gone.end();
        }
    }

    /// The names of the services `node` sees, with their processes, sorted.
    pub(super) fn seen(&mut self, node: usize) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self.nodes[node]
            .registry
            .entries()
            .map(|e| {
                (
                    e.binding.service_name().to_owned(),
                    e.binding.process_identity().to_owned(),
                )
            })
            .collect();
        all.sort();
        all
    }

    /// Calls `echo` with `args` from `node` on the service at `address` (the request goes
    /// out at once; its outcome is there once the network has settled).
    pub(super) fn call(&mut self, node: usize, address: &str, args: Vec<Value>) -> PendingCall {
        self.call_from(node, None, address, args)
    }

    /// As [`call`](Self::call), with the request sent by the service `from` of `node`.
    pub(super) fn call_from(
        &mut self,
        node: usize,
        from: Option<&Binding>,
        address: &str,
        args: Vec<Value>,
    ) -> PendingCall {
        let (tx, rx) = oneshot::channel();
        let core = &mut self.nodes[node];
        match core.route(address) {
            Some(Route::Local {
                service,
                id,
                served,
                ..
            }) => {
                let call = Call {
                    id,
                    method: Arc::from("echo"),
                    args,
                    sender: from.cloned(),
                    user: None,
                    grants: None,
                };
                service.dispatch(call, Responder::local(tx, served));
            }
            Some(Route::Remote { link, .. }) => {
                let encoded = value::encode(&Value::List(args), &Limits::default())
                    .expect("encodable arguments");
                let request = |conv: crate::model::ids::Conv| {
                    Frame::Request(frame::Request {
                        conv: conv.raw(),
                        to: Text::from(address),
                        from: from.map(|b| Text::from(b.address())),
                        method: Text::from("echo"),
                        timeout_ms: 0,
                        args: encoded.into(),
                        user: None,
                    })
                };
                if let Err(f) = core.start_call(link, request, tx) {
                    panic!("the call could not start: {f}");
                }
            }
            None => panic!("{address} is not reachable from node {node}"),
        }
        PendingCall(rx)
    }

    /// A monitor on `node`, held by a new anonymous service there, of the reports of the
    /// services named `publisher` whose subjects match `pattern`.
    pub(super) fn monitor(&mut self, node: usize, publisher: &str, pattern: &str) -> Reports {
        let subscriber = self.service(node, "", &[]);
        let queue = Arc::new(ReportQueue::new(1024));
        let monitor = Monitor::new(
            subscriber,
            MonitorTarget::Name(Arc::from(publisher)),
            Pattern::new(pattern).expect("a valid pattern"),
            queue.clone(),
        );
        let id = self.nodes[node].add_monitor(monitor, Instant::now());
        Reports { id, queue }
    }

    /// Publishes on `node` as `publisher`.
    pub(super) fn publish(
        &mut self,
        node: usize,
        publisher: &Binding,
        subject: &str,
        content: i64,
        lifetime: Lifetime,
    ) {
        let core = &mut self.nodes[node];
        let limits = core.limits;
        let report = Publication {
            subject,
            content: Value::from(content),
            lifetime,
            paced: false,
        };
        core.publisher(publisher.address())
            .expect("a local publisher")
            .publish(publisher, report, &limits, Instant::now())
            .expect("publishable");
    }

    /// A registry watch of everything on `node`.
    pub(super) fn watch(&mut self, node: usize) -> EventReceiver<Announcement> {
        self.watch_scope(node, RegistryScope::All)
    }

    /// A registry watch of `scope` on `node`.
    pub(super) fn watch_scope(
        &mut self,
        node: usize,
        scope: RegistryScope,
    ) -> EventReceiver<Announcement> {
        self.nodes[node].watch(scope, 1024).1
    }
}

/// What a monitor made with [`Network::monitor`] received.
pub(super) struct Reports {
    pub(super) id: MonitorId,
    queue: Arc<ReportQueue>,
}

impl Reports {
    /// The (subject, content) of every report received since the last call.
    pub(super) fn take(&self) -> Vec<(String, i64)> {
        let mut events = VecDeque::new();
        self.queue.try_pop_all(&mut events);
        events
            .into_iter()
            .filter_map(|e| match e {
                ReportEvent::Report(r) => Some((
                    r.subject().to_owned(),
                    r.value().ok().and_then(Value::as_i64).unwrap_or(-1),
                )),
                _ => None,
            })
            .collect()
    }
}

/// Every announcement queued on a watch.
pub(super) fn announcements(watch: &mut EventReceiver<Announcement>) -> Vec<Announcement> {
    let mut all = Vec::new();
    while let Ok(Some(a)) = watch.try_recv() {
        all.push(a);
    }
    all
}
