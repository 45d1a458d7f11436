//! Services: named agents that export methods, publish reports and subscribe to them.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use netsvc_proto::names;
use netsvc_proto::value::{Limits, Value};
use netsvc_proto::{Pattern, value};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Semaphore, watch};

use super::endpoint::{Endpoint, Target};
use super::monitor::{ReportMonitor, SubscriptionWatch};
use crate::core::local::{Call, Methods};
use crate::core::queue::ReportQueue;
use crate::core::reply::Responder;
use crate::core::shared::RuntimeShared;
use crate::core::{Core, Monitor, MonitorTarget, Publication, Published, PublisherState};
use crate::model::announcement::WithdrawReason;
use crate::model::binding::{Audience, Binding, Location, Visibility};
use crate::model::error::Error;
use crate::model::failure::{Failure, MethodResult, codes};
use crate::model::grant::Grants;
use crate::model::identity;
use crate::model::ids::{Id as _, RequestId};
use crate::model::payload::{Payload, check_depth};
use crate::model::report::Lifetime;

type BoxFuture = Pin<Box<dyn Future<Output = MethodResult> + Send>>;
type Handler = Arc<dyn Fn(Request) -> BoxFuture + Send + Sync>;

/// Builds a service: its name, audience, visibility, methods and groups, all in place before
/// it becomes visible, so that no request can arrive before its method is exported.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use netsvc::{Runtime, Value};
/// let rt = Runtime::new();
/// let echo = rt
///     .service("echo")
///     .export("echo", |req| async move { Ok(Value::List(req.into_args())) })
///     .join_group("examples")
///     .build()?;
/// let result = rt.endpoint("echo").call("echo", vec!["hi".into()]).await?;
/// assert_eq!(result, Value::List(vec!["hi".into()]));
/// # drop(echo); Ok(()) }
/// ```
#[must_use = "a service exists only once built"]
pub struct ServiceBuilder {
    runtime: Arc<RuntimeShared>,
    name: String,
    audience: Result<Audience, Error>,
    visibility: Visibility,
    methods: Vec<(String, Handler)>,
    fallback: Option<Handler>,
    groups: Vec<String>,
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("name", &self.name)
            .field("visibility", &self.visibility)
            .finish_non_exhaustive()
    }
}

impl ServiceBuilder {
    pub(crate) fn new(runtime: Arc<RuntimeShared>, name: &str) -> Self {
        Self {
            runtime,
            name: name.to_owned(),
            audience: Ok(Audience::Everyone),
            visibility: Visibility::Visible,
            methods: Vec::new(),
            fallback: None,
            groups: Vec::new(),
        }
    }

    /// The audience, as the original wrote it: `"*"` (default) everywhere, `""` this
    /// process only, or an exchange group's name.
    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = audience.parse().map_err(Error::from);
        self
    }

    /// Keeps the service out of the registry until [`ServiceHandle::announce`].
    pub fn hidden(mut self) -> Self {
        self.visibility = Visibility::Hidden;
        self
    }

    /// Sets the visibility.
    pub fn visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self
    }

    /// Exports a method. See [`ServiceHandle::export`].
    pub fn export<F, Fut, R>(mut self, method: &str, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Failure>> + Send + 'static,
        R: Into<Value>,
    {
        self.methods.push((method.to_owned(), box_handler(handler)));
        self
    }

    /// Answers every method that is not exported by name, [`LIST_METHODS`] included: for a
    /// service that stands in for one elsewhere (a bridge to another system, say) and so
    /// cannot know its methods in advance. The request's [`method`](Request::method) says
    /// which was called. Without a fallback such calls fail with 55.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use netsvc::{Runtime, Value};
    /// let rt = Runtime::new();
    /// let _proxy = rt
    ///     .service("proxy")
    ///     .export("ping", |_| async { Ok("pong") })
    ///     .fallback(|req| async move { Ok(format!("{} forwarded", req.method())) })
    ///     .build()?;
    /// let endpoint = rt.endpoint("proxy");
    /// assert_eq!(endpoint.call("ping", vec![]).await?, Value::from("pong"));
    /// assert_eq!(endpoint.call("any.thing", vec![]).await?, Value::from("any.thing forwarded"));
    /// # Ok(()) }
    /// ```
    pub fn fallback<F, Fut, R>(mut self, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Failure>> + Send + 'static,
        R: Into<Value>,
    {
        self.fallback = Some(box_handler(handler));
        self
    }

    /// Joins a group as the service is created.
    pub fn join_group(mut self, group: &str) -> Self {
        self.groups.push(group.to_owned());
        self
    }

    /// Creates the service, announcing it unless hidden.
    pub fn build(self) -> Result<Service, Error> {
        names::check_service_name(&self.name)?;
        let audience = self.audience?;
        let mut methods = HashMap::new();
        for (name, handler) in self.methods {
            names::check_method_name(&name)?;
            methods.insert(Arc::from(name), handler);
        }
        let groups = self
            .groups
            .iter()
            .filter(|g| !g.is_empty())
            .map(|g| names::check_group_name(g).map(|()| Arc::<str>::from(g.as_str())))
            .collect::<Result<Vec<_>, _>>()?;

        let rt = &self.runtime;
        let agent = identity::agent_identity(rt.next_agent_number(), &rt.identity);
        let binding = Binding::new(
            self.name.into(),
            audience,
            agent,
            rt.identity.clone(),
            Location::Local,
            None,
        );
        let (liveness, liveness_rx) = watch::channel(());
        let shared = Arc::new(ServiceShared {
            refusal: watch::channel(None).0,
            binding: binding.clone(),
            runtime: Arc::downgrade(rt),
            methods: RwLock::new(methods),
            fallback: RwLock::new(self.fallback),
            liveness: Mutex::new(Some(liveness)),
            liveness_rx,
            // Clamped: tokio's semaphore cannot count higher, and that many is "no limit" anyway.
            inflight: Arc::new(Semaphore::new(
                rt.config
                    .max_requests_in_progress
                    .min(Semaphore::MAX_PERMITS),
            )),
            max_in_progress: rt.config.max_requests_in_progress,
            value_limits: rt.config.value_limits,
            handle: rt.handle.clone(),
        });
        {
            let now = tokio::time::Instant::now();
            let mut core = rt.core.lock();
            core.add_local(shared.clone(), false, now);
            for group in groups {
                core.join_group(&binding, group);
            }
            if self.visibility == Visibility::Visible {
                core.announce(&binding, now);
            }
        }
        Ok(Service {
            handle: ServiceHandle { shared },
            _runtime: self.runtime,
        })
    }
}

fn box_handler<F, Fut, R>(handler: F) -> Handler
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Failure>> + Send + 'static,
    R: Into<Value>,
{
    Arc::new(move |req| {
        let fut = handler(req);
        Box::pin(async move { fut.await.map(Into::into) })
    })
}

/// A service, owned: dropping it withdraws the service.
///
/// All the service's operations are on [`ServiceHandle`], which this dereferences to; clone
/// a handle (with [`Service::handle`]) to use the service from handlers and other tasks
/// without keeping it alive.
#[derive(Debug)]
pub struct Service {
    handle: ServiceHandle,
    /// Keeps the runtime alive for as long as the service exists.
    _runtime: Arc<RuntimeShared>,
}

impl Service {
    /// A handle for use from handlers and other tasks. It does not keep the service alive:
    /// once the service is withdrawn, the handle's operations fail with
    /// [`Error::Withdrawn`].
    pub fn handle(&self) -> ServiceHandle {
        self.handle.clone()
    }

    /// Withdraws the service now (the same as dropping it).
    pub fn withdraw(self) {}
}

impl std::ops::Deref for Service {
    type Target = ServiceHandle;

    fn deref(&self) -> &ServiceHandle {
        &self.handle
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.handle.withdraw_with(WithdrawReason::Owner);
    }
}

/// What a service can do. Cheap to clone; does not keep the service alive.
#[derive(Clone)]
pub struct ServiceHandle {
    pub(crate) shared: Arc<ServiceShared>,
}

impl std::fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ServiceHandle")
            .field(&self.shared.binding.address())
            .finish()
    }
}

impl ServiceHandle {
    /// The service's binding.
    pub fn binding(&self) -> &Binding {
        &self.shared.binding
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        self.shared.binding.service_name()
    }

    /// The service's address.
    pub fn address(&self) -> &str {
        self.shared.binding.address()
    }

    /// Whether the service has been withdrawn.
    pub fn is_withdrawn(&self) -> bool {
        self.shared.liveness.lock().is_none()
    }

    /// Why the exchange would not announce the service, if it said so: a hub with users
    /// answers a name the process's user may not provide with a refusal (docs/SECURITY.md),
    /// and the service then stays in this process only.
    pub fn refusal(&self) -> Option<String> {
        self.shared.refusal.borrow().as_deref().map(str::to_owned)
    }

    /// Waits until the exchange refuses to announce the service (see
    /// [`refusal`](Self::refusal)), and says why; never returns if it does not.
    pub async fn refused(&self) -> String {
        let mut refusal = self.shared.refusal.subscribe();
        match refusal.wait_for(Option::is_some).await {
            Ok(why) => why.as_deref().unwrap_or_default().to_owned(),
            // The sender lives as long as the service's shared state, which `self` holds.
            Err(_) => std::future::pending().await,
        }
    }

    fn runtime(&self) -> Result<Arc<RuntimeShared>, Error> {
        match self.shared.runtime.upgrade() {
            Some(rt) if !self.is_withdrawn() => Ok(rt),
            _ => Err(self.withdrawn()),
        }
    }

    fn withdrawn(&self) -> Error {
        Error::Withdrawn {
            address: self.address().to_owned(),
        }
    }

    /// Makes a hidden service visible: it is announced, with the groups it joined while
    /// hidden. Does nothing if it is already visible.
    pub fn announce(&self) -> Result<(), Error> {
        let rt = self.runtime()?;
        let now = tokio::time::Instant::now();
        rt.core.lock().announce(self.binding(), now);
        Ok(())
    }

    /// Joins a group. Idempotent; the empty group name is ignored, as in the original.
    pub fn join_group(&self, group: &str) -> Result<(), Error> {
        if group.is_empty() {
            return Ok(());
        }
        names::check_group_name(group)?;
        let rt = self.runtime()?;
        rt.core.lock().join_group(self.binding(), group.into());
        Ok(())
    }

    /// Leaves a group. Idempotent; the empty group name is ignored.
    pub fn leave_group(&self, group: &str) -> Result<(), Error> {
        if group.is_empty() {
            return Ok(());
        }
        let rt = self.runtime()?;
        rt.core.lock().leave_group(self.binding(), group);
        Ok(())
    }

    /// Exports a method: `handler` is called with each [`Request`] for it and its future's
    /// output is the response. Replaces an earlier export of the same name.
    ///
    /// Requests run concurrently, each in its own task. A handler that panics produces
    /// failure 57 and the service carries on. A handler that needs to respond later simply
    /// awaits whatever it is waiting for (the original's delayed responses).
    pub fn export<F, Fut, R>(&self, method: &str, handler: F) -> Result<(), Error>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Failure>> + Send + 'static,
        R: Into<Value>,
    {
        names::check_method_name(method)?;
        self.runtime()?;
        self.shared
            .methods
            .write()
            .insert(method.into(), box_handler(handler));
        Ok(())
    }

    /// Stops exporting a method; later requests for it fail with 55.
    pub fn unexport(&self, method: &str) {
        self.shared.methods.write().remove(method);
    }

    /// The names of the exported methods, sorted: what a remote caller gets from the
    /// service's [`LIST_METHODS`] method.
    pub fn exported_methods(&self) -> Vec<String> {
        self.shared.exported_methods()
    }

    /// An endpoint for calling another service, by name (the first service of that name at
    /// each call) or by binding. Requests carry this service as their sender.
    pub fn endpoint(&self, target: impl Into<Target>) -> Result<Endpoint, Error> {
        let rt = self.runtime()?;
        Ok(Endpoint::new(
            rt,
            target.into(),
            Some(self.binding().clone()),
        ))
    }

    /// Publishes a report on `subject`.
    ///
    /// Every current subscription whose pattern matches receives it (a subscriber with two
    /// matching patterns receives it twice, as in the original). The `lifetime` decides
    /// what later subscribers see: [`Lifetime::None`] delivers only and clears the cached
    /// report of this subject; a duration or [`Lifetime::Forever`] caches it, replacing the
    /// previous one. Returns the number of deliveries made in this process.
    ///
    /// Publishing never waits. If a link to remote subscribers is congested, reports queued
    /// for it are coalesced (the latest of each subject is kept); use
    /// [`publish_paced`](Self::publish_paced) to wait instead.
    pub fn publish(
        &self,
        subject: &str,
        content: impl Into<Value>,
        lifetime: Lifetime,
    ) -> Result<usize, Error> {
        Ok(self
            .publish_inner(subject, content.into(), lifetime, false)?
            .delivered)
    }

    /// Publishes like [`publish`](Self::publish), then waits while any link the report was
    /// queued on is congested: a fast publisher runs at the pace of its slowest remote
    /// subscriber's link instead of having its reports coalesced.
    pub async fn publish_paced(
        &self,
        subject: &str,
        content: impl Into<Value>,
        lifetime: Lifetime,
    ) -> Result<usize, Error> {
        let published = self.publish_inner(subject, content.into(), lifetime, true)?;
        for link in &published.congested {
            link.uncongested().await;
        }
        Ok(published.delivered)
    }

    fn publish_inner(
        &self,
        subject: &str,
        content: Value,
        lifetime: Lifetime,
        paced: bool,
    ) -> Result<Published, Error> {
        names::check_subject(subject)?;
        let lifetime = lifetime.validated()?;
        let report = Publication {
            subject,
            content,
            lifetime,
            paced,
        };
        self.with_publisher(|rt, core, now| {
            let publisher = core
                .publisher(self.address())
                .ok_or_else(|| self.withdrawn())?;
            let mut published =
                publisher.publish(self.binding(), report, &rt.config.value_limits, now)?;
            core.note_published(self.address(), &mut published);
            if let Some(at) = published.expires {
                core.schedule_sweep(at, &rt.sweeper);
            }
            Ok(published)
        })
    }

    /// Runs `f` with the runtime, its core locked and the time, unless the service is gone.
    fn with_publisher<T>(
        &self,
        f: impl FnOnce(&RuntimeShared, &mut Core, tokio::time::Instant) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let rt = self.runtime()?;
        let now = tokio::time::Instant::now();
        let mut core = rt.core.lock();
        f(&rt, &mut core, now)
    }

    /// Runs `f` on this service's publisher state, unless the service is gone.
    fn on_publisher<T>(
        &self,
        f: impl FnOnce(&mut PublisherState, tokio::time::Instant) -> T,
    ) -> Result<T, Error> {
        self.with_publisher(|_, core, now| {
            let publisher = core
                .publisher(self.address())
                .ok_or_else(|| self.withdrawn())?;
            Ok(f(publisher, now))
        })
    }

    /// Publishes a typed value (see [`publish`](Self::publish)).
    pub fn publish_as<T: serde::Serialize + ?Sized>(
        &self,
        subject: &str,
        content: &T,
        lifetime: Lifetime,
    ) -> Result<usize, Error> {
        self.publish(subject, value::to_value(content)?, lifetime)
    }

    /// Sends a report to one subscriber only. It is never cached. The subscriber gets it
    /// once per subscription of theirs on this service whose pattern matches, or once with
    /// no pattern if none matches. Fails with [`Error::NotSubscribed`] if the subscriber
    /// holds no subscription on this service.
    pub fn send_report(
        &self,
        subscriber: &Binding,
        subject: &str,
        content: impl Into<Value>,
    ) -> Result<usize, Error> {
        names::check_subject(subject)?;
        let payload = Payload::from_value(content.into(), &self.runtime()?.config.value_limits)?;
        self.on_publisher(|publisher, _| {
            publisher.send_to(
                self.binding(),
                subscriber.address(),
                subject.into(),
                payload,
            )
        })?
        .ok_or_else(|| Error::NotSubscribed {
            publisher: self.address().to_owned(),
            subscriber: subscriber.address().to_owned(),
        })
    }

    /// Drops cached reports whose subject matches `pattern` and that were published at
    /// least `age` ago (zero: all of them). Returns how many were dropped.
    pub fn expire_reports(&self, pattern: &str, age: Duration) -> Result<usize, Error> {
        let pattern = Pattern::new(pattern)?;
        self.on_publisher(|publisher, now| publisher.expire(&pattern, age, now))
    }

    /// Frees the memory of cached reports whose lifetime has run out. (Expired reports are
    /// never delivered in any case, and a background task purges them as they expire; this
    /// is for the original's `purgeReports`.)
    pub fn purge_reports(&self) -> Result<(), Error> {
        self.on_publisher(|publisher, now| {
            publisher.purge_expired(now);
        })
    }

    /// The subjects of this service's cached, unexpired reports, sorted.
    pub fn cached_subjects(&self) -> Result<Vec<String>, Error> {
        self.on_publisher(|publisher, now| {
            publisher
                .cached_subjects(now)
                .iter()
                .map(|s| s.to_string())
                .collect()
        })
    }

    /// Subscribes to the reports of `target` whose subject matches `pattern`.
    ///
    /// By name, the subscription covers every service of that name, present now or
    /// appearing later; by binding, that one service whenever it is visible. For each
    /// publisher the monitor receives [`ReportEvent::PublisherAvailable`], then the
    /// publisher's matching cached reports, then its live reports, with no gap and no
    /// duplicate; and [`ReportEvent::PublisherWithdrawn`] when it goes.
    ///
    /// When a publisher comes back (after a reconnect, say), the monitor subscribes again on
    /// its own and receives `PublisherAvailable` again, then the cached reports it has not
    /// received yet (those published while it was away), then live reports. Cached reports it
    /// already received are not delivered twice.
    ///
    /// A publisher in another process serves only subscribers it can see: a subscriber whose
    /// audience is `""` receives no reports from other processes.
    ///
    /// [`ReportEvent::PublisherAvailable`]: crate::ReportEvent::PublisherAvailable
    /// [`ReportEvent::PublisherWithdrawn`]: crate::ReportEvent::PublisherWithdrawn
    pub fn monitor_reports(
        &self,
        target: impl Into<Target>,
        pattern: &str,
    ) -> Result<ReportMonitor, Error> {
        let pattern = Pattern::new(pattern)?;
        let target = match target.into() {
            Target::Name(name) => {
                names::check_service_name(&name)?;
                MonitorTarget::Name(name)
            }
            Target::Binding(b) => MonitorTarget::Address(b.address_arc().clone()),
        };
        self.monitor(target, pattern)
    }

    /// Subscribes to the reports of every visible service, now or later, whose subject
    /// matches `pattern` (as [`monitor_reports`](Self::monitor_reports) does for the
    /// services of one name). Each publisher's reports come after its
    /// [`ReportEvent::PublisherAvailable`](crate::ReportEvent::PublisherAvailable).
    pub fn monitor_all_reports(&self, pattern: &str) -> Result<ReportMonitor, Error> {
        self.monitor(MonitorTarget::Every, Pattern::new(pattern)?)
    }

    fn monitor(&self, target: MonitorTarget, pattern: Pattern) -> Result<ReportMonitor, Error> {
        let rt = self.runtime()?;
        let queue = Arc::new(ReportQueue::new(rt.config.report_capacity));
        let monitor = Monitor::new(self.binding().clone(), target, pattern, queue.clone());
        let now = tokio::time::Instant::now();
        let id = rt.core.lock().add_monitor(monitor, now);
        Ok(ReportMonitor::new(id, queue, Arc::downgrade(&rt)))
    }

    /// Watches who subscribes to this service's reports: the current subscriptions first,
    /// then each one requested or withdrawn.
    pub fn watch_subscriptions(&self) -> Result<SubscriptionWatch, Error> {
        let rt = self.runtime()?;
        let capacity = rt.config.announcement_capacity;
        let rx = rt
            .core
            .lock()
            .watch_subscriptions(self.address(), capacity)
            .ok_or_else(|| self.withdrawn())?;
        Ok(SubscriptionWatch { rx })
    }

    pub(crate) fn withdraw_with(&self, reason: WithdrawReason) {
        if let Some(rt) = self.shared.runtime.upgrade() {
            let withdrawn = rt.core.lock().withdraw_local(self.address(), reason);
            if let Some(shared) = withdrawn {
                shared.end();
            }
        } else {
            self.shared.end();
        }
    }
}

/// The method every service answers with the sorted names of its exported methods, unless
/// it exports a method of that name itself (the name XML-RPC's introspection uses, so the
/// HTTP gateway's clients find it where they look). It is not listed among them.
pub const LIST_METHODS: &str = "system.listMethods";

/// The runtime's side of one local service: its methods, and the signal of its withdrawal.
pub(crate) struct ServiceShared {
    pub(crate) binding: Binding,
    runtime: Weak<RuntimeShared>,
    methods: RwLock<HashMap<Arc<str>, Handler>>,
    /// What answers the methods not in `methods` (none: 55); taken when the service ends.
    fallback: RwLock<Option<Handler>>,
    /// Dropped when the service is withdrawn: callers waiting on it and running handlers
    /// notice at once.
    liveness: Mutex<Option<watch::Sender<()>>>,
    liveness_rx: watch::Receiver<()>,
    /// Why a process this one is linked to would not announce the service, once one said.
    refusal: watch::Sender<Option<Arc<str>>>,
    inflight: Arc<Semaphore>,
    /// The runtime's settings that dispatching needs (copied: the service must not keep
    /// its runtime alive).
    max_in_progress: usize,
    value_limits: Limits,
    handle: tokio::runtime::Handle,
}

impl ServiceShared {
    fn exported_methods(&self) -> Vec<String> {
        let mut names: Vec<String> = self.methods.read().keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }
}

impl Methods for ServiceShared {
    fn binding(&self) -> &Binding {
        &self.binding
    }

    fn liveness(&self) -> watch::Receiver<()> {
        self.liveness_rx.clone()
    }

    fn refused(&self, why: &str) {
        self.refusal.send_replace(Some(why.into()));
    }

    fn end(&self) {
        self.liveness.lock().take();
        self.methods.write().clear();
        self.fallback.write().take();
    }

    fn dispatch(self: Arc<Self>, call: Call, responder: Responder) {
        let handler = self.methods.read().get(&*call.method).cloned();
        let Some(handler) = handler.or_else(|| self.fallback.read().clone()) else {
            let answer = if &*call.method == LIST_METHODS {
                Ok(Value::List(
                    self.exported_methods()
                        .into_iter()
                        .map(Value::from)
                        .collect(),
                ))
            } else {
                Err(Failure::method_unavailable(&call.method))
            };
            responder.respond(answer);
            return;
        };
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            responder.respond(Err(Failure::netsvc(
                codes::RESOURCE_UNAVAILABLE,
                format!(
                    "The service already has {} requests in progress.",
                    self.max_in_progress
                ),
            )));
            return;
        };
        let limits = self.value_limits;
        let checked = move |result: MethodResult| {
            result.and_then(|v| match check_depth(&v, limits.max_depth) {
                Ok(()) => Ok(v),
                Err(e) => Err(Failure::netsvc(
                    codes::RESPONSE_ENCODING_ERROR,
                    e.to_string(),
                )),
            })
        };
        let mut alive = self.liveness_rx.clone();
        let handle = self.handle.clone();
        let request = Request {
            method: call.method,
            args: call.args,
            sender: call.sender,
            user: call.user,
            grants: call.grants,
            conversation: call.id,
            service: ServiceHandle { shared: self },
        };
        match run_first_step(CatchUnwind(handler(request))) {
            FirstStep::Done(result) => {
                drop(permit);
                responder.respond(checked(result));
            }
            FirstStep::Waiting(outcome) => {
                handle.spawn(async move {
                    let _permit = permit;
                    tokio::select! {
                        biased;
                        result = outcome => responder.respond(checked(result)),
                        _ = alive.changed() => {}
                    }
                });
            }
        }
    }
}

/// How far a method got when polled once.
enum FirstStep {
    /// It answered without waiting for anything.
    Done(MethodResult),
    /// It waits for something: the rest runs in a task of its own.
    Waiting(CatchUnwind),
}

/// Polls a method's future once, with a no-op waker: most methods answer without waiting
/// for anything, and answering at once saves a task and two wake-ups per request. A future
/// that is pending is handed back to be moved into a task, whose waker it registers on its
/// next poll (it is boxed, so moving it is sound).
fn run_first_step(mut outcome: CatchUnwind) -> FirstStep {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match Pin::new(&mut outcome).poll(&mut cx) {
        Poll::Ready(result) => FirstStep::Done(result),
        Poll::Pending => FirstStep::Waiting(outcome),
    }
}

/// Turns a panic inside a handler into failure 57, so one bad request cannot take the
/// service down.
struct CatchUnwind(BoxFuture);

impl Future for CatchUnwind {
    type Output = MethodResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<MethodResult> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the method panicked".to_owned());
                Poll::Ready(Err(Failure::application_error(format!(
                    "The method panicked: {message}"
                ))))
            }
        }
    }
}

/// One request, as a method handler receives it.
#[derive(Debug)]
pub struct Request {
    pub(crate) method: Arc<str>,
    pub(crate) args: Vec<Value>,
    pub(crate) sender: Option<Binding>,
    pub(crate) user: Option<Arc<str>>,
    /// What the caller's link may do, if it came in on a link of this process logged in
    /// without the `link` right (see `core::local::Call`).
    pub(crate) grants: Option<Arc<Grants>>,
    pub(crate) conversation: RequestId,
    pub(crate) service: ServiceHandle,
}

impl Request {
    /// The method called.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The arguments.
    pub fn args(&self) -> &[Value] {
        &self.args
    }

    /// Takes the arguments.
    pub fn into_args(self) -> Vec<Value> {
        self.args
    }

    /// The calling service, if the call was made by one (calls made through
    /// [`Runtime::endpoint`](crate::Runtime::endpoint) have none).
    pub fn sender(&self) -> Option<&Binding> {
        self.sender.as_ref()
    }

    /// The user the caller logged in as, as the hub that checked its login says
    /// (docs/SECURITY.md): `None` for a caller in this process or on an exchange without
    /// users, and for an anonymous one. A hub writes it over whatever a peer without the
    /// `link` right sends, so on an exchange with users it cannot be forged.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The conversation id of this request: unique among the requests this runtime has
    /// handled, whichever process they came from.
    pub fn conversation_id(&self) -> u64 {
        self.conversation.raw()
    }

    /// The service handling the request, to publish or call from within the handler.
    pub fn service(&self) -> &ServiceHandle {
        &self.service
    }

    /// Fails with 56, in the original's words, unless there are `min..=max` arguments
    /// (`max == None`: at least `min`).
    pub fn expect_args(&self, min: usize, max: Option<usize>) -> Result<(), Failure> {
        let n = self.args.len();
        if n < min || max.is_some_and(|max| n > max) {
            return Err(Failure::argument_count(min, max, n));
        }
        Ok(())
    }

    /// Decodes the argument list into a typed value, usually a tuple: `let (a, b): (i64,
    /// String) = req.decode_args()?`. Fails with 56 if the arguments do not fit.
    pub fn decode_args<T: serde::de::DeserializeOwned>(&self) -> Result<T, Failure> {
        value::from_value(Value::List(self.args.clone()))
            .map_err(|e| Failure::parameters_incorrect(e.to_string()))
    }
}
