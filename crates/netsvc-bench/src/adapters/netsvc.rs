//! netsvc: a client `Runtime` + `Exchange` connected to a `role netsvc-hub` process.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use netsvc::{
    Endpoint, Exchange, Lifetime, RegistrySync, ReportEvent, ReportMonitor, Retry, Runtime,
    RuntimeConfig, Service, SubscriptionStatus, SubscriptionWatch, Value,
};

use netsvc::security::{ClientTls, ServerTls};

use super::{Adapter, Caller, Filter, Msg, Publisher, SUBJECT, Subscription};

/// The service that publishes in W1, W4 and the memory workload.
pub(crate) const PUBLISHER: &str = "bench-pub";

/// The echo service of W2 (method `echo`).
pub(crate) const ECHO_SERVICE: &str = SUBJECT;

/// Which services a netsvc client is told of (`RegistrySync`), as the bench names it.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RegistryMode {
    /// Every service of the exchange (the library's default).
    #[default]
    Whole,
    /// Only the services of the names the client uses.
    Scoped,
}

impl RegistryMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Whole => "whole",
            Self::Scoped => "scoped",
        }
    }

    pub(crate) fn sync(self) -> RegistrySync {
        match self {
            Self::Whole => RegistrySync::Whole,
            Self::Scoped => RegistrySync::Scoped,
        }
    }
}

/// The registry of this role process's clients made through the [`Adapter`] (whose
/// `connect` takes an address only): set once by the role from its arguments.
static ADAPTER_REGISTRY: OnceLock<RegistryMode> = OnceLock::new();

/// Makes the clients this process connects through the adapter use `mode`.
pub(crate) fn use_registry(mode: RegistryMode) {
    let _ = ADAPTER_REGISTRY.set(mode);
}

/// A client runtime with queues deep enough that workloads measure links, not the
/// slow-consumer policy.
pub(crate) fn client_config() -> RuntimeConfig {
    RuntimeConfig::default()
        .with_registry_sync(ADAPTER_REGISTRY.get().copied().unwrap_or_default().sync())
        .with_report_capacity(1 << 22)
        .with_announcement_capacity(1 << 20)
}

/// `role netsvc-hub`: a runtime with a server exchange on `listen`, linked to the hub at
/// `connect` and to the hubs on the NATS cluster at `nats` if given. Answers
/// `COUNT PREFIX GROUP` on stdin with what its registry holds of the services named
/// `PREFIX*` and of the members of `GROUP` (see [`Registry`]).
pub(crate) async fn hub_role(listen: &str, connect: Option<&str>, nats: &[String]) -> Result<()> {
    let rt = Runtime::new();
    let ex = Exchange::server(&rt).build()?;
    let addr = match super::tls_dir() {
        Some(dir) => {
            let tls = ServerTls::from_pem_files(&dir.join("hub.pem"), &dir.join("hub.key"))?;
            ex.listen_tls(listen, &tls).await?
        }
        None => ex.listen(listen).await?,
    };
    if let Some(peer) = connect {
        ex.connect(peer, Retry::default())?;
    }
    let _backbone = match nats {
        [] => None,
        urls => Some(
            ex.join_nats(netsvc::exchange::NatsConfig::new(urls))
                .await?,
        ),
    };
    crate::proc::ready(addr);
    let mut commands = crate::proc::Commands::new();
    while let Some(line) = commands.next().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["COUNT", prefix, group] = words[..] {
            crate::proc::emit("COUNT", &count_registry(&rt, prefix, group))?;
        }
    }
    // Stdin closed: the orchestrator is gone; so are we.
    Ok(())
}

/// What a hub's registry holds of a workload's services.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Registry {
    /// Services whose names start with the prefix asked for.
    pub(crate) services: usize,
    /// Distinct names among them.
    pub(crate) distinct: usize,
    /// Members of the group asked for.
    pub(crate) group_members: usize,
    /// Bytes the hub has sent on each of its links since it came up, on average.
    #[serde(default)]
    pub(crate) bytes_out_per_link: u64,
}

fn count_registry(rt: &Runtime, prefix: &str, group: &str) -> Registry {
    let names: Vec<String> = rt
        .registry()
        .services()
        .iter()
        .map(|b| b.service_name().to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    let distinct = names.iter().collect::<std::collections::HashSet<_>>().len();
    let links = rt.stats().links;
    let bytes_out: u64 = links.iter().map(|l| l.bytes_out).sum();
    Registry {
        services: names.len(),
        distinct,
        group_members: rt.registry().lookup_group(group).len(),
        bytes_out_per_link: bytes_out / (links.len().max(1) as u64),
    }
}

/// Connects a client exchange and waits until the link is resynced (at most `timeout`).
pub(crate) async fn connect_client(
    addr: &str,
    config: RuntimeConfig,
    retry: Retry,
    timeout: Duration,
) -> Result<(Runtime, Exchange)> {
    let rt = Runtime::with_config(config)?;
    let mut builder = Exchange::client(&rt);
    if let Some(dir) = super::tls_dir() {
        builder = builder.tls(ClientTls::from_ca_file(&dir.join("ca.pem"))?);
    }
    let ex = builder.build()?;
    ex.connect(addr, retry)?
        .synced_within(timeout)
        .await
        .context("netsvc hub did not resync in time")?;
    Ok((rt, ex))
}

/// A connected netsvc client.
#[derive(Debug)]
pub(crate) struct Netsvc {
    rt: Runtime,
    _ex: Exchange,
}

/// Publishes as service `bench-pub`.
#[derive(Debug)]
pub(crate) struct NetsvcPub {
    service: Service,
    subscriptions: SubscriptionWatch,
    subscribed: usize,
}

/// A report monitor on `bench-pub`.
#[derive(Debug)]
pub(crate) struct NetsvcSub {
    _service: Service,
    monitor: ReportMonitor,
    with_subjects: bool,
    missed: u64,
}

/// Calls `bench.echo`.
#[derive(Debug, Clone)]
pub(crate) struct NetsvcCaller(Endpoint);

/// What keeps services and monitors alive.
#[derive(Debug)]
pub(crate) struct NetsvcGuard {
    service: Service,
    monitors: Vec<ReportMonitor>,
}

fn bytes_of(value: &Value) -> Result<Bytes> {
    match value {
        Value::Bytes(b) => Ok(Bytes::copy_from_slice(b)),
        other => bail!("expected bytes, got {other:?}"),
    }
}

impl Adapter for Netsvc {
    type Pub = NetsvcPub;
    type Sub = NetsvcSub;
    type Caller = NetsvcCaller;
    type Guard = NetsvcGuard;

    async fn connect(addr: &str) -> Result<Self> {
        let (rt, ex) = connect_client(
            addr,
            client_config(),
            Retry::every(Duration::from_millis(50)),
            Duration::from_secs(30),
        )
        .await?;
        Ok(Self { rt, _ex: ex })
    }

    async fn publisher(&self) -> Result<NetsvcPub> {
        let service = self.rt.service(PUBLISHER).build()?;
        let subscriptions = service.watch_subscriptions()?;
        Ok(NetsvcPub {
            service,
            subscriptions,
            subscribed: 0,
        })
    }

    async fn subscribe(&self, filter: Filter<'_>, with_subjects: bool) -> Result<NetsvcSub> {
        let service = self.rt.service("").build()?;
        let pattern = match filter {
            Filter::Exact(s) => s,
            Filter::All => "*",
        };
        let monitor = service.monitor_reports(PUBLISHER, pattern)?;
        Ok(NetsvcSub {
            _service: service,
            monitor,
            with_subjects,
            missed: 0,
        })
    }

    async fn snapshot(&self) -> Result<NetsvcSub> {
        self.subscribe(Filter::All, true).await
    }

    async fn serve_echo(&self) -> Result<NetsvcGuard> {
        let service = self
            .rt
            .service(ECHO_SERVICE)
            .export("echo", |req| async move {
                Ok(req.into_args().pop().unwrap_or_default())
            })
            .build()?;
        Ok(NetsvcGuard {
            service,
            monitors: Vec::new(),
        })
    }

    async fn caller(&self) -> Result<NetsvcCaller> {
        let endpoint = self.rt.endpoint(ECHO_SERVICE);
        tokio::time::timeout(Duration::from_secs(10), async {
            while !endpoint.is_available() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .context("echo service not visible")?;
        Ok(NetsvcCaller(endpoint))
    }

    async fn hold(&self, subjects: Vec<String>) -> Result<NetsvcGuard> {
        let service = self.rt.service("").build()?;
        let monitors = subjects
            .iter()
            .map(|s| service.monitor_reports(PUBLISHER, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetsvcGuard { service, monitors })
    }

    async fn hold_more(&self, guard: &mut NetsvcGuard, subjects: Vec<String>) -> Result<()> {
        for s in &subjects {
            let monitor = guard.service.monitor_reports(PUBLISHER, s)?;
            guard.monitors.push(monitor);
        }
        Ok(())
    }
}

impl NetsvcPub {
    /// Subscriptions requested minus withdrawn so far (reads what is queued, never waits).
    pub(crate) fn current_subscriptions(&mut self) -> Result<usize> {
        while let Some(event) = self.subscriptions.try_recv()? {
            self.count(event.status);
        }
        Ok(self.subscribed)
    }

    fn count(&mut self, status: SubscriptionStatus) {
        match status {
            SubscriptionStatus::Requested => self.subscribed += 1,
            SubscriptionStatus::Withdrawn => self.subscribed = self.subscribed.saturating_sub(1),
        }
    }
}

impl Publisher for NetsvcPub {
    async fn wait_subscribers(&mut self, n: usize) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(60), async {
            while self.subscribed < n {
                let event = self.subscriptions.recv().await?;
                self.count(event.status);
            }
            Ok::<_, anyhow::Error>(())
        })
        .await
        .context("subscriptions did not arrive")?
    }

    async fn publish(&mut self, subject: &str, payload: Bytes) -> Result<()> {
        self.service
            .publish_paced(subject, Value::Bytes(payload.into()), Lifetime::None)
            .await?;
        Ok(())
    }

    async fn store(&mut self, subject: &str, payload: Bytes) -> Result<()> {
        self.service
            .publish_paced(subject, Value::Bytes(payload.into()), Lifetime::Forever)
            .await?;
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

impl Subscription for NetsvcSub {
    async fn next(&mut self) -> Result<Option<Msg>> {
        loop {
            match self.monitor.recv().await {
                Some(ReportEvent::Report(r)) => {
                    return Ok(Some(Msg {
                        subject: self.with_subjects.then(|| r.subject().to_owned()),
                        header: match r.value()? {
                            Value::Bytes(b) => crate::payload::parse(b),
                            _ => None,
                        },
                    }));
                }
                Some(ReportEvent::Missed(n)) => self.missed += n,
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    fn missed(&self) -> u64 {
        self.missed
    }
}

impl Caller for NetsvcCaller {
    async fn call(&self, payload: Bytes) -> Result<Bytes> {
        let reply = self
            .0
            .call("echo", vec![Value::Bytes(payload.into())])
            .await?;
        bytes_of(&reply)
    }
}
