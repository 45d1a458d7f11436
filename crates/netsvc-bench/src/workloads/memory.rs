//! Hub memory: the hub's resident set size (VmRSS) with no clients, with 1,000 idle
//! connections, with a subscriber service on each (netsvc only: the others have no
//! services), then with 10 subscriptions on each (10,000 distinct subjects
//! `m.<client>.<k>`). Per idle connection: (RSS₁ − RSS₀) / connections; per service:
//! (RSSₛ − RSS₁) / connections; per subscription: (RSS₂ − RSSₛ) / subscriptions.
//!
//! Two things made RSS lie. Creating every service at once floods every link with about a
//! million SERVICE frames: link buffers grow, some are freed (and the allocator hands that
//! memory to the subscriptions, so RSS does not move) and some are kept (a link keeps write
//! buffers up to 256 KiB for its next burst), so what a phase measures depended on how the
//! previous burst happened to be batched. So the clients pace themselves: services are
//! created one at a time at [`SERVICE_PAUSE`] per process, subscriptions a connection at a
//! time at [`SUB_PAUSE`], slowly enough that the hub's links never queue much; the end
//! state is the same. And for netsvc the hub is `netsvc-memhub`, the same hub with a
//! counting allocator, and each phase also reads its live heap (bytes and blocks). A heap
//! figure is given as bytes, and as bytes plus [`BLOCK_OVERHEAD`] per block (what glibc
//! malloc adds to each block, rounded up). The verdicts take the larger of the RSS figure and
//! the heap figure with overhead: RSS that grew less than the live heap can only mean reused
//! memory.
//!
//! netsvc: each connection is a client `Runtime` + `Exchange`; its subscriptions are report
//! monitors on a publisher service `bench-pub` in another process (connected before the
//! baseline), so the hub holds them as relayed subscriptions. Run with the whole registry
//! (every process, the publisher's too, told of every service) and with the scoped one
//! (every process, the publisher's too, told of the names it uses: the subscribers are
//! told of `bench-pub`, and the publisher of each subscriber when it subscribes). The clients run as tasks in 4
//! processes on CPU 1.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::{Target, dispatch};
use crate::adapters::netsvc::{self as netsvc_adapter, Netsvc, RegistryMode};
use crate::adapters::{Adapter, System};
use crate::harness::{Env, Heap, HubOptions};
use crate::proc::{Commands, Cpu, Proc, ready, wait_quiet};

/// Subscriptions per connection.
pub(crate) const SUBS_PER_CONNECTION: usize = 10;
const PROCESSES: usize = 4;
/// Between two services created by one client process (4 processes: 100 services/s, each
/// announced on every link).
const SERVICE_PAUSE: Duration = Duration::from_millis(40);
/// Between the subscriptions of two connections of one client process.
const SUB_PAUSE: Duration = Duration::from_millis(10);
/// Bytes the allocator adds to each heap block, as counted on top of the requested bytes.
/// glibc malloc: an 8-byte size header, blocks rounded up to 16 bytes (a minimum of 32), so
/// 16 B is a fair average for the small blocks that per-connection and per-subscription
/// state is made of.
pub(crate) const BLOCK_OVERHEAD: u64 = 16;

/// `role mem-clients` arguments.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClientsArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    #[arg(long)]
    pub(crate) count: usize,
    #[arg(long)]
    pub(crate) first: usize,
}

/// The figures of one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) system: System,
    /// netsvc: which services each client was told of.
    #[serde(default)]
    pub(crate) registry: Option<RegistryMode>,
    pub(crate) connections: usize,
    pub(crate) subscriptions: usize,
    /// Hub RSS with no clients, KiB.
    pub(crate) rss0_kib: u64,
    /// With the idle connections, KiB.
    pub(crate) rss1_kib: u64,
    /// With one (subscriber) service per connection, KiB (netsvc; the others have none).
    pub(crate) rss_services_kib: u64,
    /// With the subscriptions too, KiB.
    pub(crate) rss2_kib: u64,
    /// Bytes per idle connection.
    pub(crate) per_connection_b: f64,
    /// Bytes per registered (subscriber) service.
    pub(crate) per_service_b: f64,
    /// Bytes per subscription.
    pub(crate) per_subscription_b: f64,
    /// netsvc: the hub's live heap at the four phases (empty, idle, services, subscribed).
    #[serde(default)]
    pub(crate) heap: Option<[Heap; 4]>,
}

/// A heap change spread over `n` units: bytes, and bytes plus the blocks' overhead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeapPer {
    pub(crate) bytes: f64,
    pub(crate) with_overhead: f64,
}

impl Run {
    /// The heap change from phase `from` to phase `to` (0 empty, 1 idle, 2 services,
    /// 3 subscribed), per `n`.
    pub(crate) fn heap_per(&self, from: usize, to: usize, n: usize) -> Option<HeapPer> {
        let heap = self.heap?;
        let (a, b) = (heap.get(from)?, heap.get(to)?);
        let bytes = b.bytes as f64 - a.bytes as f64;
        let blocks = b.blocks as f64 - a.blocks as f64;
        Some(HeapPer {
            bytes: bytes / n as f64,
            with_overhead: (bytes + blocks * BLOCK_OVERHEAD as f64) / n as f64,
        })
    }

    /// Bytes per idle connection for the verdict: RSS, or the heap with overhead if larger.
    pub(crate) fn verdict_per_connection_b(&self) -> f64 {
        let heap = self.heap_per(0, 1, self.connections);
        heap.map_or(self.per_connection_b, |h| {
            h.with_overhead.max(self.per_connection_b)
        })
    }

    /// Bytes per service for the verdict: RSS, or the heap with overhead if larger.
    pub(crate) fn verdict_per_service_b(&self) -> f64 {
        let heap = self.heap_per(1, 2, self.connections);
        heap.map_or(self.per_service_b, |h| {
            h.with_overhead.max(self.per_service_b)
        })
    }

    /// Bytes per subscription for the verdict: RSS, or the heap with overhead if larger
    /// (RSS that grew less than the live heap was reusing freed memory).
    pub(crate) fn verdict_per_subscription_b(&self) -> f64 {
        let heap = self.heap_per(2, 3, self.subscriptions);
        heap.map_or(self.per_subscription_b, |h| {
            h.with_overhead.max(self.per_subscription_b)
        })
    }
}

/// Runs the memory workload against one system (netsvc: its clients with `registry`).
pub(crate) async fn run(
    env: &Env,
    system: System,
    connections: usize,
    registry: RegistryMode,
) -> Result<Run> {
    if matches!(system, System::Tcp | System::TcpDirect) {
        bail!("no memory workload for raw TCP");
    }
    let settle = Duration::from_millis(if env.quick { 500 } else { 1500 });
    let mut hub = if system == System::Netsvc {
        env.start_netsvc_memhub().await?
    } else {
        env.start_hub(system, HubOptions::default()).await?
    };
    let counted = system == System::Netsvc;
    let mut heap = [Heap::default(); 4];
    let mut publisher = None;
    if system == System::Netsvc {
        // The publisher's process is one of the fleet: its registry is scoped too when
        // the clients' are.
        let mut args = vec!["mem-pub".to_owned()];
        args.extend(Target::args_with(system, &hub.addr, registry));
        let mut p = env.role(Cpu::Load, "netsvc-mem-pub", &args)?;
        p.expect("READY", Duration::from_secs(30)).await?;
        publisher = Some(p);
    }
    tokio::time::sleep(settle).await;
    let rss0 = hub.rss_kib()?;
    if counted {
        heap[0] = hub.heap().await?;
    }

    let client_target = Target::args_with(system, &hub.addr, registry);
    let mut procs = super::spawn_clients(
        env,
        system,
        "mem-clients",
        &client_target,
        connections,
        PROCESSES,
    )?;
    for p in &mut procs {
        p.expect("READY", Duration::from_secs(120)).await?;
    }
    tokio::time::sleep(settle).await;
    let rss1 = hub.rss_kib()?;
    if counted {
        heap[1] = hub.heap().await?;
    }

    // netsvc subscribes from a service, and every service is announced to every process:
    // create them first, so that the subscriptions' own cost is measured on its own.
    for p in &mut procs {
        p.send(&format!("SERVICE {}", SERVICE_PAUSE.as_millis()))
            .await?;
    }
    for p in &mut procs {
        p.expect("SERVICED", Duration::from_secs(120)).await?;
    }
    tokio::time::sleep(settle).await;
    // netsvc: the registry flood takes a while to drain with many clients.
    let pids: Vec<u32> = hub
        .pid()
        .into_iter()
        .chain(procs.iter().filter_map(Proc::pid))
        .collect();
    wait_quiet(&pids, Duration::from_secs(60)).await;
    let rss_services = hub.rss_kib()?;
    if counted {
        heap[2] = hub.heap().await?;
    }

    for p in &mut procs {
        p.send(&format!(
            "SUB {SUBS_PER_CONNECTION} {}",
            SUB_PAUSE.as_millis()
        ))
        .await?;
    }
    for p in &mut procs {
        p.expect("SUBSCRIBED", Duration::from_secs(120)).await?;
    }
    let subscriptions = connections * SUBS_PER_CONNECTION;
    if let Some(p) = publisher.as_mut() {
        // netsvc: wait until every subscription has reached the publisher through the hub.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            p.send("COUNT").await?;
            let n: usize = p.expect("COUNT", Duration::from_secs(10)).await?.parse()?;
            if n >= subscriptions {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("only {n} of {subscriptions} subscriptions reached the publisher");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(settle).await;
    wait_quiet(&pids, Duration::from_secs(60)).await;
    let rss2 = hub.rss_kib()?;
    if counted {
        heap[3] = hub.heap().await?;
    }

    for p in &mut procs {
        p.finish(Duration::from_secs(5)).await;
    }
    if let Some(p) = publisher.as_mut() {
        p.finish(Duration::from_secs(2)).await;
    }
    hub.stop().await;
    Ok(Run {
        system,
        registry: (system == System::Netsvc).then_some(registry),
        connections,
        subscriptions,
        rss0_kib: rss0,
        rss1_kib: rss1,
        rss_services_kib: rss_services,
        rss2_kib: rss2,
        per_connection_b: (rss1 as f64 - rss0 as f64) * 1024.0 / connections as f64,
        per_service_b: (rss_services as f64 - rss1 as f64) * 1024.0 / connections as f64,
        per_subscription_b: (rss2 as f64 - rss_services as f64) * 1024.0 / subscriptions as f64,
        heap: counted.then_some(heap),
    })
}

/// `role mem-pub` (netsvc): the publisher the subscriptions point at; answers `COUNT` with
/// the number of subscriptions it has.
pub(crate) async fn pub_role(target: Target) -> Result<()> {
    if target.system != System::Netsvc {
        bail!("mem-pub is for netsvc");
    }
    netsvc_adapter::use_registry(target.registry);
    let conn = Netsvc::connect(&target.addr).await?;
    let mut p = conn.publisher().await?;
    let mut commands = Commands::new();
    ready("publisher");
    while let Some(line) = commands.next().await? {
        if line == "COUNT" {
            println!("COUNT {}", p.current_subscriptions()?);
        }
    }
    Ok(())
}

/// `role mem-clients`.
pub(crate) async fn clients_role(args: ClientsArgs) -> Result<()> {
    netsvc_adapter::use_registry(args.target.registry);
    dispatch!(args.target.system, clients(&args))
}

async fn clients<A: Adapter>(args: &ClientsArgs) -> Result<()> {
    let mut conns = Vec::with_capacity(args.count);
    for chunk in (0..args.count).collect::<Vec<_>>().chunks(25) {
        let batch = chunk.iter().map(|_| A::connect(&args.target.addr));
        conns.extend(try_join_all(batch).await?);
    }
    let mut commands = Commands::new();
    ready(conns.len());
    // `SERVICE <pause ms>`, `SUB <count> <pause ms>`: see `SERVICE_PAUSE`.
    let pause = |arg: Option<&str>| -> Result<Duration> {
        Ok(Duration::from_millis(arg.unwrap_or("0").parse()?))
    };
    let line = commands.expect("SERVICE").await?;
    let service_pause = pause(line.split_whitespace().next())?;
    let mut guards = Vec::with_capacity(conns.len());
    for c in &conns {
        guards.push(c.hold(Vec::new()).await?);
        tokio::time::sleep(service_pause).await;
    }
    println!("SERVICED");
    let line = commands.expect("SUB").await?;
    let mut words = line.split_whitespace();
    let k: usize = words.next().unwrap_or("0").parse()?;
    let sub_pause = pause(words.next())?;
    for (i, (c, g)) in conns.iter().zip(guards.iter_mut()).enumerate() {
        let n = args.first + i;
        let subjects = (0..k).map(|j| format!("m.{n}.{j}")).collect();
        c.hold_more(g, subjects).await?;
        tokio::time::sleep(sub_pause).await;
    }
    println!("SUBSCRIBED");
    commands.wait_end().await?;
    drop(guards);
    Ok(())
}
