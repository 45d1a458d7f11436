//! Hub memory: the hub's resident set size (VmRSS) with no clients, with 1,000 idle
//! connections, with a subscriber service on each (netsvc only: the others have no
//! services), then with 10 subscriptions on each (10,000 distinct subjects
//! `m.<client>.<k>`). Per idle connection: (RSS₁ − RSS₀) / connections; per service:
//! (RSSₛ − RSS₁) / connections; per subscription: (RSS₂ − RSSₛ) / subscriptions.
//!
//! netsvc: each connection is a client `Runtime` + `Exchange`; its subscriptions are report
//! monitors on a publisher service `bench-pub` in another process (connected before the
//! baseline), so the hub holds them as relayed subscriptions. The clients run as tasks in 4
//! processes on CPU 1.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::{Target, dispatch};
use crate::adapters::netsvc::Netsvc;
use crate::adapters::{Adapter, System};
use crate::harness::{Env, HubOptions};
use crate::proc::{Commands, Cpu, Proc, ready, wait_quiet};

/// Subscriptions per connection.
pub(crate) const SUBS_PER_CONNECTION: usize = 10;
const PROCESSES: usize = 4;

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
}

/// Runs the memory workload against one system.
pub(crate) async fn run(env: &Env, system: System, connections: usize) -> Result<Run> {
    if matches!(system, System::Tcp | System::TcpDirect) {
        bail!("no memory workload for raw TCP");
    }
    let settle = Duration::from_millis(if env.quick { 500 } else { 1500 });
    let mut hub = env.start_hub(system, HubOptions::default()).await?;
    let target = Target::args(system, &hub.addr);
    let mut publisher = None;
    if system == System::Netsvc {
        let mut args = vec!["mem-pub".to_owned()];
        args.extend(target.iter().cloned());
        let mut p = env.role(Cpu::Load, "netsvc-mem-pub", &args)?;
        p.expect("READY", Duration::from_secs(30)).await?;
        publisher = Some(p);
    }
    tokio::time::sleep(settle).await;
    let rss0 = hub.rss_kib()?;

    let mut procs = Vec::new();
    for (i, (first, count)) in super::client_batches(connections, PROCESSES)
        .into_iter()
        .enumerate()
    {
        let mut args = vec!["mem-clients".to_owned()];
        args.extend(target.iter().cloned());
        args.extend([
            "--count".to_owned(),
            count.to_string(),
            "--first".to_owned(),
            first.to_string(),
        ]);
        procs.push(env.role(Cpu::Load, &format!("{system}-mem-clients{i}"), &args)?);
    }
    for p in &mut procs {
        p.expect("READY", Duration::from_secs(120)).await?;
    }
    tokio::time::sleep(settle).await;
    let rss1 = hub.rss_kib()?;

    // netsvc subscribes from a service, and every service is announced to every process:
    // create them first, so that the subscriptions' own cost is measured on its own.
    for p in &mut procs {
        p.send("SERVICE").await?;
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

    for p in &mut procs {
        p.send(&format!("SUB {SUBS_PER_CONNECTION}")).await?;
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

    for p in &mut procs {
        p.finish(Duration::from_secs(5)).await;
    }
    if let Some(p) = publisher.as_mut() {
        p.finish(Duration::from_secs(2)).await;
    }
    hub.stop().await;
    Ok(Run {
        system,
        connections,
        subscriptions,
        rss0_kib: rss0,
        rss1_kib: rss1,
        rss_services_kib: rss_services,
        rss2_kib: rss2,
        per_connection_b: (rss1 as f64 - rss0 as f64) * 1024.0 / connections as f64,
        per_service_b: (rss_services as f64 - rss1 as f64) * 1024.0 / connections as f64,
        per_subscription_b: (rss2 as f64 - rss_services as f64) * 1024.0 / subscriptions as f64,
    })
}

/// `role mem-pub` (netsvc): the publisher the subscriptions point at; answers `COUNT` with
/// the number of subscriptions it has.
pub(crate) async fn pub_role(target: Target) -> Result<()> {
    if target.system != System::Netsvc {
        bail!("mem-pub is for netsvc");
    }
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
    commands.expect("SERVICE").await?;
    let mut guards = Vec::with_capacity(conns.len());
    for c in &conns {
        guards.push(c.hold(Vec::new()).await?);
    }
    println!("SERVICED");
    let line = commands.expect("SUB").await?;
    let k: usize = line.parse()?;
    for (i, (c, g)) in conns.iter().zip(guards.iter_mut()).enumerate() {
        let n = args.first + i;
        let subjects = (0..k).map(|j| format!("m.{n}.{j}")).collect();
        c.hold_more(g, subjects).await?;
    }
    println!("SUBSCRIBED");
    commands.wait_end().await?;
    drop(guards);
    Ok(())
}
