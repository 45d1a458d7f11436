//! W5 reconnect storm: 1,000 clients, each with a service in a group and 5 subscriptions;
//! the hub is killed with SIGKILL and restarted on the same port 1 s later. Per client: the
//! time from the hub being back until it is reconnected, and until it is resynced.
//!
//! netsvc: each client is a `Runtime` + client `Exchange` with the library's default
//! reconnect policy (`Retry::default()`, as the NATS clients use async-nats's default),
//! run once with the whole registry (every client told of every service) and once scoped
//! (`RegistrySync::Scoped`: each client told of `w5-pub`, the only name it uses),
//! a service `w5-c-<n>` in group `w5`, and 5 monitors by name on the service `w5-pub`
//! (subjects `t.0`..`t.4`, cached forever). While the hub is down the publisher caches a
//! new version of all 5; a client is resynced once it has its `ConnectionState::Resynced`
//! event and the new version on all 5 monitors. Duplicates: a version delivered twice.
//! Losses: a new version never delivered. The hub's registry must then hold exactly one
//! `w5-c-<n>` per client.
//!
//! NATS: 1,000 `async-nats` connections with 5 subscriptions each; a publisher sends on the
//! 5 subjects every 20 ms from the kill on (every 200 ms before, enough for each client to
//! see its subscriptions work). Reconnected: the client's `Connected` event; resynced: a
//! message published after the kill has reached all 5 subscriptions. Core NATS keeps no
//! values, so losses are the messages of the outage that never arrived. Beyond 1,000
//! clients the interval grows with the clients (40 ms at 2,000, 83 ms at 4,000), so that
//! the load processes receive at most 250,000 messages a second, as at 1,000: a publisher
//! fanning out to every client every 20 ms was a storm of its own that kept later clients
//! from being set up, which is the tool's cost, not the server's. The resync times then
//! carry up to one interval of resolution.
//!
//! The clients run as tasks in processes on CPU 1: 4, or one per 500 clients beyond 2,000, so
//! that no process's single thread carries more than 500 links' registry floods. Each
//! process starts its clients in waves of 100, a wave once the one before it is set up (or
//! has had 10 s): a few thousand clients connecting at once, each told of every service and
//! telling every other, is a storm of its own that the measure is not about. Before the
//! kill, the hub's registry must hold every client that was set up (netsvc), so that the
//! storm starts from a settled hub.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::future::join_all;
use netsvc::{
    ConnectionState, Exchange, Lifetime, ReportEvent, ReportMonitor, Retry, Runtime, RuntimeConfig,
    Value,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Target;
use crate::adapters::System;
use crate::adapters::nats as nats_adapter;
use crate::adapters::netsvc::{Registry, RegistryMode};
use crate::harness::{Env, HubOptions};
use crate::payload::{self, now_ns};
use crate::proc::{Commands, Cpu, emit, ready};
use crate::stats::percentile;

/// Subscriptions per client.
const SUBSCRIPTIONS: usize = 5;
/// How long before the kill its moment is announced to the client processes.
const KILL_NOTICE: Duration = Duration::from_millis(200);
/// NATS: the publisher's interval before the kill.
const NATS_SETUP_TICK: Duration = Duration::from_millis(200);
/// NATS: the most messages a second the publisher makes the load processes receive.
const NATS_MAX_DELIVERIES: usize = 250_000;

/// NATS: the publisher's interval from the kill on: 20 ms, longer beyond 1,000 clients (see
/// the module's comment).
fn nats_tick(clients: usize) -> Duration {
    let per_second = NATS_MAX_DELIVERIES / (clients * SUBSCRIPTIONS).max(1);
    Duration::from_millis((1000 / per_second.max(1)).max(20) as u64)
}
/// Client processes, for `clients` clients.
fn processes(clients: usize) -> usize {
    clients.div_ceil(500).max(4)
}
/// Clients a process starts at once (see the module's comment).
const WAVE: usize = 100;
/// How long a wave may take to be set up before the next one starts anyway.
const WAVE_PATIENCE: Duration = Duration::from_secs(10);
/// How long the hub's registry gets to hold every set-up client before the kill.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The publisher service (netsvc).
const PUBLISHER: &str = "w5-pub";
/// The group every client's service joins (netsvc).
const GROUP: &str = "w5";
/// How long the clients of one process get to connect, subscribe and receive their values.
const SETUP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the orchestrator waits for a client process's READY: its setup and a margin.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// `role w5-clients` arguments.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClientsArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    /// Clients in this process.
    #[arg(long)]
    pub(crate) count: usize,
    /// Number of the first client.
    #[arg(long)]
    pub(crate) first: usize,
}

/// One client's story.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Outcome {
    /// When the link was up again (ns since the epoch; 0: never).
    reconnected_ns: u64,
    /// When the client was resynced (0: never).
    resynced_ns: u64,
    duplicates: u64,
    lost: u64,
}

/// The figures of one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) system: System,
    /// netsvc: which services each client was told of.
    #[serde(default)]
    pub(crate) registry: Option<RegistryMode>,
    pub(crate) clients: usize,
    /// Clients that had connected, subscribed and received their values before the kill.
    pub(crate) set_up: usize,
    /// How long the hub was down (kill to accepting again), ms.
    pub(crate) outage_ms: f64,
    /// Reconnection times after the hub was back, ms: p50, p99, max (100%).
    pub(crate) reconnected_ms: [f64; 3],
    /// Resync times after the hub was back, ms: p50, p99, max (100%).
    pub(crate) resynced_ms: [f64; 3],
    /// Clients resynced within 3 s of the hub being back, percent.
    pub(crate) resynced_within_3s_pct: f64,
    /// Clients never resynced before the deadline.
    pub(crate) not_resynced: usize,
    pub(crate) duplicates: u64,
    pub(crate) lost: u64,
    /// The hub's registry before the kill and after the resync (netsvc).
    pub(crate) registry_before: Option<Registry>,
    pub(crate) registry_after: Option<Registry>,
}

/// Runs W5 against netsvc (its clients with `registry`) or NATS.
pub(crate) async fn run(
    env: &Env,
    system: System,
    clients: usize,
    registry: RegistryMode,
) -> Result<Run> {
    if !matches!(system, System::Netsvc | System::Nats) {
        bail!("W5 runs netsvc and NATS only");
    }
    // The hub holds a descriptor per client, and inherits this process's limit: a run
    // that would hit it fails late and obscurely (accept errors, clients never set up).
    // The workspace forbids unsafe code, so the limit is raised by whoever starts the tool
    // (`bench/run.sh` raises the soft limit to the hard one), and checked here.
    let needed = clients + FD_MARGIN;
    if let Some(limit) = open_files_limit()
        && limit < needed
    {
        bail!(
            "W5 with {clients} clients needs about {needed} open files in the hub, and the \
             limit is {limit}: raise it first (`ulimit -n {needed}`, up to `ulimit -Hn`)"
        );
    }
    let options = HubOptions {
        jetstream: false,
        addr: Some(crate::harness::free_addr()?),
    };
    let mut hub = env.start_hub(system, options.clone()).await?;
    let options = HubOptions {
        addr: Some(hub.addr.clone()),
        ..options
    };
    let target = Target::args(system, &hub.addr);
    let mut args = vec!["w5-pub".to_owned()];
    args.extend(target.iter().cloned());
    let mut publisher = env.role(Cpu::Load, &format!("{system}-w5-pub"), &args)?;
    publisher.expect("READY", Duration::from_secs(30)).await?;
    let storm_tick = nats_tick(clients);
    publisher
        .send(&format!(
            "GO {} {}",
            NATS_SETUP_TICK.as_millis(),
            storm_tick.as_millis()
        ))
        .await?;

    let mut procs = super::spawn_clients(
        env,
        system,
        "w5-clients",
        &Target::args_with(system, &hub.addr, registry),
        clients,
        processes(clients),
    )?;
    let mut set_up = 0;
    for p in &mut procs {
        let n: usize = p.expect("READY", READY_TIMEOUT).await?.parse()?;
        set_up += n;
    }
    let registry_before = if system == System::Netsvc {
        // A client is set up when it has its values, which its link can deliver before
        // the hub has (or after it has lost) the client's own service: wait until the hub
        // holds them all, or say how many it holds.
        let settle_by = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            let registry = hub_registry(hub.proc()?).await?;
            if registry.services >= set_up || tokio::time::Instant::now() >= settle_by {
                if registry.services < set_up {
                    eprintln!(
                        "!! {system} W5: the hub holds {} of the {set_up} set-up clients' services after {SETTLE_TIMEOUT:?}",
                        registry.services
                    );
                }
                break Some(registry);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    } else {
        None
    };

    // Every client process knows the moment of the kill before it happens: a link lost
    // before its process has read it would not count as the storm's, and that client as
    // never reconnected.
    let kill_ns = now_ns() + KILL_NOTICE.as_nanos() as u64;
    for p in &mut procs {
        p.send(&format!("KILL {kill_ns}")).await?;
    }
    for p in &mut procs {
        p.expect("ARMED", Duration::from_secs(10)).await?;
    }
    tokio::time::sleep(Duration::from_nanos(kill_ns.saturating_sub(now_ns()))).await;
    hub.kill().await;
    publisher.send("PUBLISH").await?;
    publisher.expect("DONE", Duration::from_secs(10)).await?;
    let restart_at = kill_ns + 1_000_000_000;
    tokio::time::sleep(Duration::from_nanos(restart_at.saturating_sub(now_ns()))).await;
    let mut hub = env.start_hub(system, options).await?;
    let back_ns = now_ns();

    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(if env.quick { 15 } else { 20 });
    for p in &mut procs {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if p.expect("DONE", left).await.is_err() {
            eprintln!("!! {system} W5: not every client resynced before the deadline");
        }
    }
    // Give late duplicates a chance to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // While every client is still connected.
    let registry_after = if system == System::Netsvc {
        Some(hub_registry(hub.proc()?).await?)
    } else {
        None
    };
    let mut outcomes = Vec::new();
    for p in &mut procs {
        p.send("END").await?;
        outcomes.extend(p.result::<Vec<Outcome>>(Duration::from_secs(30)).await?);
    }
    for p in &mut procs {
        p.finish(Duration::from_secs(5)).await;
    }
    publisher.finish(Duration::from_secs(2)).await;
    hub.kill().await;

    let since_back = |ns: u64| (ns.saturating_sub(back_ns)) as f64 / 1e6;
    let mut reconnected: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.reconnected_ns != 0)
        .map(|o| since_back(o.reconnected_ns))
        .collect();
    let mut resynced: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.resynced_ns != 0)
        .map(|o| since_back(o.resynced_ns))
        .collect();
    let n = outcomes.len();
    let not_resynced = n - resynced.len();
    let within = resynced.iter().filter(|&&ms| ms <= 3_000.0).count();
    let all_reconnected = reconnected.len() == n;
    let three = |v: &mut Vec<f64>, complete: bool| {
        // With clients missing, the 100% time is not reached at all.
        let max = if complete {
            percentile(v, 1.0)
        } else {
            f64::INFINITY
        };
        [percentile(v, 0.5), percentile(v, 0.99), max]
    };
    Ok(Run {
        system,
        registry: (system == System::Netsvc).then_some(registry),
        clients: n,
        set_up,
        outage_ms: back_ns.saturating_sub(kill_ns) as f64 / 1e6,
        reconnected_ms: three(&mut reconnected, all_reconnected),
        resynced_ms: three(&mut resynced, not_resynced == 0),
        resynced_within_3s_pct: 100.0 * within as f64 / n.max(1) as f64,
        not_resynced,
        duplicates: outcomes.iter().map(|o| o.duplicates).sum(),
        lost: outcomes.iter().map(|o| o.lost).sum(),
        registry_before,
        registry_after,
    })
}

async fn hub_registry(hub: &mut crate::proc::Proc) -> Result<Registry> {
    hub.send(&format!("COUNT w5-c- {GROUP}")).await?;
    Ok(serde_json::from_str(
        &hub.expect("COUNT", Duration::from_secs(10)).await?,
    )?)
}

/// Descriptors beyond one per client: the hub's listener, runtime and log, with room.
const FD_MARGIN: usize = 256;

/// This process's soft limit of open files (`Max open files` in `/proc/self/limits`), if
/// it can be read and is not unlimited.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&limits)
}

fn parse_open_files_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `role w5-pub`.
pub(crate) async fn pub_role(target: Target) -> Result<()> {
    match target.system {
        System::Netsvc => netsvc_publisher(&target.addr).await,
        System::Nats => nats_publisher(&target.addr).await,
        other => bail!("no W5 for {other}"),
    }
}

async fn netsvc_publisher(addr: &str) -> Result<()> {
    let (_rt, _ex, service) = {
        let (rt, ex) = crate::adapters::netsvc::connect_client(
            addr,
            RuntimeConfig::default(),
            Retry::default(),
            Duration::from_secs(30),
        )
        .await?;
        let service = rt.service(PUBLISHER).build()?;
        (rt, ex, service)
    };
    let publish_all = |version: u64| -> Result<()> {
        for k in 0..SUBSCRIPTIONS {
            service.publish(
                &format!("t.{k}"),
                Value::Bytes(payload::make(version, 64).into()),
                Lifetime::Forever,
            )?;
        }
        Ok(())
    };
    publish_all(1)?;
    let mut commands = Commands::new();
    ready("publisher");
    // The intervals of `GO` are NATS's.
    commands.expect("GO").await?;
    commands.expect("PUBLISH").await?;
    // The hub is down: this lands in the publisher's cache, to be delivered on resync.
    publish_all(2)?;
    println!("DONE");
    commands.wait_end().await
}

async fn nats_publisher(addr: &str) -> Result<()> {
    let client = nats_adapter::options().connect(addr).await?;
    let mut commands = Commands::new();
    ready("publisher");
    // `GO <setup ms> <storm ms>`: the intervals before and from the kill.
    let line = commands.expect("GO").await?;
    let mut ticks = line
        .split_whitespace()
        .map(|ms| ms.parse::<u64>().map(Duration::from_millis));
    let setup = ticks.next().context("GO <setup ms> <storm ms>")??;
    let storm = ticks.next().context("GO <setup ms> <storm ms>")??;
    let mut tick = tokio::time::interval(setup);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for k in 0..SUBSCRIPTIONS {
                    // While the server is away, publishes queue in the client or fail.
                    let _ = client.publish(format!("t.{k}"), payload::make(seq, 64)).await;
                }
                seq += 1;
            }
            line = commands.next() => match line? {
                Some(l) if l == "PUBLISH" => {
                    tick = tokio::time::interval(storm);
                    println!("DONE");
                }
                _ => return Ok(()),
            },
        }
    }
}

/// `role w5-clients`: `count` clients as tasks of this process.
pub(crate) async fn clients_role(args: ClientsArgs) -> Result<()> {
    let (end_tx, end_rx) = watch::channel(false);
    let kill_ns = Rc::new(Cell::new(u64::MAX));
    let ready_count = Rc::new(Cell::new(0usize));
    let waiting = Rc::new(RefCell::new(HashMap::new()));
    let done_count = Rc::new(Cell::new(0usize));
    let counters = Counters {
        ready: ready_count.clone(),
        waiting: waiting.clone(),
        done: done_count.clone(),
        kill_ns: kill_ns.clone(),
    };
    let started = tokio::time::Instant::now();
    let clients = (args.first..args.first + args.count).map(|i| {
        let (addr, end, counters) = (&args.target.addr, end_rx.clone(), counters.clone());
        let wave = (i - args.first) / WAVE;
        let ready = ready_count.clone();
        async move {
            // This client's wave starts once every earlier wave is set up, or after its
            // share of patience (a wave that cannot be set up does not stop the others).
            let patience = WAVE_PATIENCE.saturating_mul(u32::try_from(wave).unwrap_or(u32::MAX));
            let give_up = started + patience.min(SETUP_TIMEOUT);
            while ready.get() < wave * WAVE && tokio::time::Instant::now() < give_up {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let outcome = match args.target.system {
                System::Netsvc => netsvc_client(i, addr, args.target.registry, end, counters).await,
                System::Nats => nats_client(addr, end, counters).await,
                other => Err(anyhow::anyhow!("no W5 for {other}")),
            };
            outcome.unwrap_or_else(|e| {
                eprintln!("w5 client {i}: {e:#}");
                Outcome::default()
            })
        }
    });
    let control = async {
        let mut commands = Commands::new();
        let tick = Duration::from_millis(10);
        // Every client subscribed with its value in hand, or the setup deadline: a client
        // that never gets there is reported, and the storm goes ahead with the others.
        let setup_deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
        while ready_count.get() < args.count && tokio::time::Instant::now() < setup_deadline {
            tokio::time::sleep(tick).await;
        }
        if ready_count.get() < args.count {
            let waiting = waiting.borrow();
            let mut sample: Vec<_> = waiting.iter().take(5).collect();
            sample.sort();
            eprintln!(
                "w5-clients: only {} of {} clients set up after {SETUP_TIMEOUT:?}; for example {sample:?}",
                ready_count.get(),
                args.count
            );
        }
        ready(ready_count.get());
        let line = commands.expect("KILL").await?;
        kill_ns.set(line.parse().context("KILL <ns>")?);
        println!("ARMED");
        let all_done = async {
            while done_count.get() < args.count {
                tokio::time::sleep(tick).await;
            }
            println!("DONE");
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = all_done => {}
            _ = commands.next() => {}
        }
        let _ = end_tx.send(true);
        Ok::<_, anyhow::Error>(())
    };
    let (outcomes, control) = tokio::join!(join_all(clients), control);
    control?;
    emit("RESULT", &outcomes)
}

/// Shared between one process's clients.
#[derive(Debug, Clone)]
struct Counters {
    ready: Rc<Cell<usize>>,
    /// What each client not yet set up is still waiting for.
    waiting: Rc<RefCell<HashMap<usize, String>>>,
    done: Rc<Cell<usize>>,
    kill_ns: Rc<Cell<u64>>,
}

fn bump(c: &Cell<usize>) {
    c.set(c.get() + 1);
}

async fn netsvc_client(
    index: usize,
    addr: &str,
    registry: RegistryMode,
    mut end: watch::Receiver<bool>,
    counters: Counters,
) -> Result<Outcome> {
    let rt = Runtime::with_config(RuntimeConfig::default().with_registry_sync(registry.sync()))?;
    let ex = Exchange::client(&rt).build()?;
    let mut links = ex.watch_connections();
    ex.connect(addr, Retry::default())?;
    let service = rt
        .service(&format!("w5-c-{index}"))
        .join_group(GROUP)
        .build()?;
    let monitors = (0..SUBSCRIPTIONS)
        .map(|k| service.monitor_reports(PUBLISHER, &format!("t.{k}")))
        .collect::<Result<Vec<ReportMonitor>, _>>()?;
    let mut monitors: [ReportMonitor; SUBSCRIPTIONS] = monitors
        .try_into()
        .map_err(|_| anyhow::anyhow!("5 monitors"))?;
    let [m0, m1, m2, m3, m4] = &mut monitors;

    let mut outcome = Outcome::default();
    let mut first_resync = false;
    let mut down = false;
    let mut link_resynced_ns = 0u64;
    let mut v1 = [false; SUBSCRIPTIONS];
    let mut v2_ns = [0u64; SUBSCRIPTIONS];
    let mut is_ready = false;
    let mut is_done = false;
    counters
        .waiting
        .borrow_mut()
        .insert(index, format!("client {index}: nothing yet"));
    loop {
        let (k, event) = tokio::select! {
            e = m0.recv() => (0, e),
            e = m1.recv() => (1, e),
            e = m2.recv() => (2, e),
            e = m3.recv() => (3, e),
            e = m4.recv() => (4, e),
            link = links.recv() => {
                match link?.state {
                    // Links can also drop during set-up (a slow client cut off by the hub
                    // during the registry flood); only the kill starts the storm.
                    ConnectionState::Inactive if now_ns() > counters.kill_ns.get() => down = true,
                    ConnectionState::Active if down && outcome.reconnected_ns == 0 => {
                        outcome.reconnected_ns = now_ns();
                    }
                    ConnectionState::Resynced if down && link_resynced_ns == 0 => {
                        link_resynced_ns = now_ns();
                    }
                    ConnectionState::Resynced => first_resync = true,
                    _ => {}
                }
                (usize::MAX, None)
            }
            _ = end.changed() => break,
        };
        if let Some(ReportEvent::Report(r)) = event {
            let version = match r.value()? {
                Value::Bytes(b) => payload::parse(b).map_or(0, |h| h.seq),
                _ => 0,
            };
            match version {
                1 if !v1[k] => v1[k] = true,
                2 if v2_ns[k] == 0 => v2_ns[k] = now_ns(),
                // A version already delivered, delivered again.
                _ => outcome.duplicates += 1,
            }
        }
        if !is_ready && first_resync && v1.iter().all(|&v| v) {
            is_ready = true;
            bump(&counters.ready);
            counters.waiting.borrow_mut().remove(&index);
        } else if !is_ready {
            counters.waiting.borrow_mut().insert(
                index,
                format!("client {index}: resynced {first_resync}, values on t.0..t.4 {v1:?}"),
            );
        }
        if !is_done && link_resynced_ns != 0 && v2_ns.iter().all(|&t| t != 0) {
            is_done = true;
            outcome.resynced_ns = v2_ns.iter().copied().fold(link_resynced_ns, u64::max);
            bump(&counters.done);
        }
    }
    outcome.lost = v2_ns.iter().filter(|&&t| t == 0).count() as u64;
    Ok(outcome)
}

async fn nats_client(
    addr: &str,
    mut end: watch::Receiver<bool>,
    counters: Counters,
) -> Result<Outcome> {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = nats_adapter::options()
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(addr)
        .await?;
    let mut subs = Vec::new();
    for k in 0..SUBSCRIPTIONS {
        subs.push(client.subscribe(format!("t.{k}")).await?);
    }
    client.flush().await?;
    let mut subs: [async_nats::Subscriber; SUBSCRIPTIONS] = subs
        .try_into()
        .map_err(|_| anyhow::anyhow!("5 subscriptions"))?;
    let [s0, s1, s2, s3, s4] = &mut subs;
    use futures_util::StreamExt;

    let mut outcome = Outcome::default();
    let mut down = false;
    let mut last = [None::<u64>; SUBSCRIPTIONS];
    let mut back_ns = [0u64; SUBSCRIPTIONS];
    let mut is_ready = false;
    let mut is_done = false;
    loop {
        let (k, m) = tokio::select! {
            m = s0.next() => (0, m),
            m = s1.next() => (1, m),
            m = s2.next() => (2, m),
            m = s3.next() => (3, m),
            m = s4.next() => (4, m),
            e = events.recv() => {
                match e {
                    Some(async_nats::Event::Disconnected) if now_ns() > counters.kill_ns.get() => {
                        down = true;
                    }
                    Some(async_nats::Event::Connected) if down && outcome.reconnected_ns == 0 => {
                        outcome.reconnected_ns = now_ns();
                    }
                    _ => {}
                }
                continue;
            }
            _ = end.changed() => break,
        };
        let Some(m) = m else {
            bail!("subscription ended")
        };
        let Some(h) = payload::parse(&m.payload) else {
            continue;
        };
        match last[k] {
            Some(prev) if h.seq <= prev => outcome.duplicates += 1,
            Some(prev) => outcome.lost += h.seq - prev - 1,
            None => {}
        }
        last[k] = Some(last[k].map_or(h.seq, |p| p.max(h.seq)));
        if h.sent_ns > counters.kill_ns.get() && back_ns[k] == 0 {
            back_ns[k] = now_ns();
        }
        if !is_ready && last.iter().all(Option::is_some) {
            is_ready = true;
            bump(&counters.ready);
        }
        if !is_done && back_ns.iter().all(|&t| t != 0) {
            is_done = true;
            outcome.resynced_ns = back_ns
                .iter()
                .copied()
                .fold(outcome.reconnected_ns, u64::max);
            bump(&counters.done);
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Up to 2,000 clients keep the 4 processes of the published runs; beyond, no process
    /// carries more than 500.
    #[test]
    fn client_processes() {
        assert_eq!(processes(200), 4);
        assert_eq!(processes(1_000), 4);
        assert_eq!(processes(2_000), 4);
        assert_eq!(processes(2_001), 5);
        assert_eq!(processes(4_000), 8);
    }

    /// The NATS publisher keeps the load processes under 250,000 messages a second.
    #[test]
    fn nats_intervals() {
        assert_eq!(nats_tick(200), Duration::from_millis(20));
        assert_eq!(nats_tick(1_000), Duration::from_millis(20));
        assert_eq!(nats_tick(2_000), Duration::from_millis(40));
        assert_eq!(nats_tick(4_000), Duration::from_millis(83));
    }

    #[test]
    fn the_open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95000                95000                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), None);
        assert_eq!(parse_open_files_limit(""), None);
    }
}
