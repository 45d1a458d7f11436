//! W2 request/reply: one caller, one echo service, 128 B each way. First sequential calls
//! (closed loop; p50/p90/p99/p99.9/max round trip), then 32 calls in flight for a fixed time
//! (requests per second, and their latency).
//!
//! Layout: hub on CPU 0; the service process and the caller process on CPU 1. Direct TCP
//! has no hub: the caller talks to the echo process itself, the physical floor.

use std::cell::Cell;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use clap::Args;
use futures_util::future::try_join_all;
use serde::{Deserialize, Serialize};

use super::{Target, dispatch};
use crate::adapters::{Adapter, Caller, System};
use crate::harness::{Env, HubOptions};
use crate::payload;
use crate::proc::{Commands, Cpu, ready};
use crate::stats::{Latency, Summary};

/// Request and reply size.
pub(crate) const SIZE: usize = 128;
/// Calls in flight in the second phase.
pub(crate) const IN_FLIGHT: usize = 32;

/// Caller role arguments.
#[derive(Debug, Clone, Args)]
pub(crate) struct CallerArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    #[arg(long)]
    pub(crate) calls: u64,
    #[arg(long)]
    pub(crate) warmup_ms: u64,
    #[arg(long)]
    pub(crate) max_secs: f64,
    #[arg(long)]
    pub(crate) inflight_secs: f64,
}

/// The figures of one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) system: System,
    /// Sequential round trips.
    pub(crate) sequential: Summary,
    /// Round trips with 32 in flight.
    pub(crate) in_flight: Summary,
    /// Requests per second with 32 in flight.
    pub(crate) in_flight_rps: f64,
}

/// Runs W2 against one system.
pub(crate) async fn run(env: &Env, system: System) -> Result<Run> {
    let mut hub = env.start_hub(system, HubOptions::default()).await?;
    let run = measure(env, system, &hub.addr, &hub.addr, Duration::ZERO).await;
    hub.stop().await;
    run
}

/// W2 with the echo service connected to `service_addr` and the caller to `caller_addr`
/// (the same hub, or two hubs joined somehow: the cross-hub workload); the caller starts
/// `settle` after the service is up (for the service's subscription to reach other nodes).
pub(crate) async fn measure(
    env: &Env,
    system: System,
    service_addr: &str,
    caller_addr: &str,
    settle: Duration,
) -> Result<Run> {
    let mut args = vec!["w2-server".to_owned()];
    args.extend(Target::args(system, service_addr));
    let mut server = env.role(Cpu::Load, &format!("{system}-w2-server"), &args)?;
    server.expect("READY", Duration::from_secs(30)).await?;
    tokio::time::sleep(settle).await;
    let target = Target::args(system, caller_addr);

    let (calls, warmup_ms, max_secs, inflight_secs) = if env.quick {
        (5_000, 300, 5.0, 1.0)
    } else {
        (50_000, 2_000, 15.0, 5.0)
    };
    let mut args = vec!["w2-caller".to_owned()];
    args.extend(target.iter().cloned());
    args.extend([
        "--calls".to_owned(),
        calls.to_string(),
        "--warmup-ms".to_owned(),
        warmup_ms.to_string(),
        "--max-secs".to_owned(),
        max_secs.to_string(),
        "--inflight-secs".to_owned(),
        inflight_secs.to_string(),
    ]);
    let mut caller = env.role(Cpu::Load, &format!("{system}-w2-caller"), &args)?;
    caller.expect("READY", Duration::from_secs(30)).await?;
    caller.send("GO").await?;
    let budget = Duration::from_secs_f64(warmup_ms as f64 / 1e3 + max_secs + inflight_secs + 30.0);
    let run: Run = caller.result(budget).await?;
    caller.finish(Duration::from_secs(2)).await;
    server.finish(Duration::from_secs(2)).await;
    Ok(run)
}

/// `role w2-server`: serves the echo until stdin closes.
pub(crate) async fn server_role(target: Target) -> Result<()> {
    dispatch!(target.system, server(&target))
}

async fn server<A: Adapter>(target: &Target) -> Result<()> {
    let conn = A::connect(&target.addr).await?;
    let _guard = conn.serve_echo().await?;
    let mut commands = Commands::new();
    ready("server");
    commands.wait_end().await
}

/// One loop per worker state in `workers`, all at once, each calling `call` (which returns
/// one round trip's nanoseconds) until `secs` have passed: the merged latencies and the
/// requests per second. Shared by W2's in-flight phase and the gateway workload.
pub(crate) async fn in_flight<W, F>(workers: Vec<W>, secs: f64, call: F) -> Result<(Summary, f64)>
where
    F: AsyncFn(&mut W) -> Result<u64>,
{
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let call = &call;
    let loops = workers.into_iter().map(|mut worker| async move {
        let mut h = Latency::new();
        while Instant::now() < deadline {
            h.record_ns(call(&mut worker).await?);
        }
        Ok::<_, anyhow::Error>(h)
    });
    let histograms = try_join_all(loops).await?;
    let elapsed = start.elapsed().as_secs_f64();
    let mut merged = Latency::new();
    for h in &histograms {
        merged.merge(h);
    }
    let summary = merged.summary();
    Ok((summary, summary.count as f64 / elapsed))
}

/// `role w2-caller`.
pub(crate) async fn caller_role(args: CallerArgs) -> Result<()> {
    dispatch!(args.target.system, caller(&args))
}

async fn one_call<C: Caller>(c: &C, seq: &Cell<u64>) -> Result<u64> {
    let n = seq.get();
    seq.set(n + 1);
    let request = payload::make(n, SIZE);
    let start = Instant::now();
    let reply = c.call(request).await?;
    let ns = start.elapsed().as_nanos() as u64;
    ensure!(
        reply.len() == SIZE && payload::parse(&reply).is_some_and(|h| h.seq == n),
        "wrong reply"
    );
    Ok(ns)
}

async fn caller<A: Adapter>(args: &CallerArgs) -> Result<()> {
    let conn = A::connect(&args.target.addr).await?;
    let c = conn.caller().await?;
    let mut commands = Commands::new();
    ready("caller");
    commands.expect("GO").await?;
    let seq = Cell::new(0u64);

    let warm_until = Instant::now() + Duration::from_millis(args.warmup_ms);
    while Instant::now() < warm_until {
        one_call(&c, &seq).await?;
    }

    let mut sequential = Latency::new();
    let deadline = Instant::now() + Duration::from_secs_f64(args.max_secs);
    for _ in 0..args.calls {
        sequential.record_ns(one_call(&c, &seq).await?);
        if Instant::now() > deadline {
            break;
        }
    }

    let (in_flight, in_flight_rps) = in_flight(
        (0..IN_FLIGHT).map(|_| ()).collect(),
        args.inflight_secs,
        async |_: &mut ()| one_call(&c, &seq).await,
    )
    .await?;
    crate::proc::emit(
        "RESULT",
        &Run {
            system: args.target.system,
            sequential: sequential.summary(),
            in_flight_rps,
            in_flight,
        },
    )?;
    commands.wait_end().await
}
