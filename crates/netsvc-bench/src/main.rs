//! `netsvc-bench`: measures netsvc between real processes on loopback.
//!
//! ```text
//! netsvc-bench rr [--calls N] [--size BYTES]                 request round trip, 2 processes
//! netsvc-bench throughput [--subscribers K] [--size BYTES] [--messages M]
//!                                                           1 publisher -> hub -> K subscribers
//! ```
//!
//! The parent process spawns itself in the other roles (`netsvc-bench role ...`), so every
//! hop is a real socket between real processes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use netsvc::{
    ConnectionState, Exchange, Lifetime, ReportEvent, Retry, Runtime, RuntimeConfig,
    SubscriptionStatus, Value,
};
use tokio::io::{AsyncBufReadExt, BufReader};

fn arg(args: &[String], name: &str, default: usize) -> Result<usize> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context(format!("{name} needs a value"))?
            .parse()
            .context(format!("{name} must be a number")),
        None => Ok(default),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("rr") => rr(arg(&args, "--calls", 20_000)?, arg(&args, "--size", 128)?).await,
        Some("throughput") => {
            throughput(
                arg(&args, "--subscribers", 1)?,
                arg(&args, "--size", 16)?,
                arg(&args, "--messages", 200_000)?,
            )
            .await
        }
        Some("role") => role(&args[1..]).await,
        _ => bail!("usage: netsvc-bench rr|throughput [options] (see the source's doc comment)"),
    }
}

/// A child process of ours in another role; killed when dropped.
struct Peer(#[allow(dead_code)] tokio::process::Child);

/// Starts `netsvc-bench role ...` and returns it with the first line it prints; later lines
/// are echoed to our stdout.
async fn spawn(role: &[&str]) -> Result<(Peer, String)> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("role")
        .args(role)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("child did not start")??
        .context("child exited")?;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("{line}");
        }
    });
    Ok((Peer(child), first))
}

/// Connects a client runtime to `address` and waits until the registry is in.
async fn client(address: &str) -> Result<(Runtime, Exchange)> {
    client_with(address, RuntimeConfig::default()).await
}

async fn client_with(address: &str, config: RuntimeConfig) -> Result<(Runtime, Exchange)> {
    let rt = Runtime::with_config(config)?;
    let ex = Exchange::client(&rt).build()?;
    let mut links = ex.watch_connections();
    ex.connect(address, Retry::every(Duration::from_millis(50)))?;
    tokio::time::timeout(Duration::from_secs(10), async {
        while links.recv().await?.state != ConnectionState::Resynced {}
        Ok::<_, netsvc::RecvError>(())
    })
    .await??;
    Ok((rt, ex))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn rr(calls: usize, size: usize) -> Result<()> {
    let (_server, line) = spawn(&["echo-server"]).await?;
    let address = line
        .split_whitespace()
        .last()
        .context("address")?
        .to_owned();
    let (rt, _ex) = client(&address).await?;
    let ep = rt.endpoint("echo");
    let payload = Value::bytes(vec![7u8; size]);
    for _ in 0..2000 {
        ep.call("echo", vec![payload.clone()]).await?;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        ep.call("echo", vec![payload.clone()]).await?;
        samples.push(start.elapsed());
    }
    samples.sort();
    println!(
        "rr sequential: {calls} calls of {size} B: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us",
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        percentile(&samples, 0.999).as_secs_f64() * 1e6
    );
    let in_flight = 32;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let ep = ep.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..calls / in_flight {
                ep.call("echo", vec![payload.clone()]).await?;
            }
            Ok::<_, netsvc::Failure>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let done = calls / in_flight * in_flight;
    println!(
        "rr 32 in flight: {:.0} requests/s",
        done as f64 / start.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn throughput(subscribers: usize, size: usize, messages: usize) -> Result<()> {
    let (_hub, line) = spawn(&["hub"]).await?;
    let address = line
        .split_whitespace()
        .last()
        .context("address")?
        .to_owned();
    let (rt, _ex) = client(&address).await?;
    let publisher = rt.service("bench-pub").build()?;
    let mut subs = publisher.watch_subscriptions()?;
    let mut peers = Vec::new();
    let count = messages.to_string();
    for _ in 0..subscribers {
        peers.push(spawn(&["subscriber", &address, &count]).await?);
    }
    let mut subscribed = 0;
    while subscribed < subscribers {
        if subs.recv().await?.status == SubscriptionStatus::Requested {
            subscribed += 1;
        }
    }
    // A cached marker proves every subscription is in place end to end.
    publisher.publish("ready", 0, Lifetime::Forever)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let payload = Value::bytes(vec![1u8; size]);
    let start = Instant::now();
    for i in 0..messages {
        publisher.publish("bench", payload.clone(), Lifetime::None)?;
        if i % 1024 == 0 {
            tokio::task::yield_now().await;
        }
    }
    publisher.publish("done", 0, Lifetime::Forever)?;
    println!(
        "published {messages} x {size} B in {:.3} s ({:.0} msg/s)",
        start.elapsed().as_secs_f64(),
        messages as f64 / start.elapsed().as_secs_f64()
    );
    // Subscribers print their results and exit; give them time.
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(peers);
    Ok(())
}

async fn role(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("echo-server") => {
            let rt = Runtime::new();
            let ex = Exchange::server(&rt).build()?;
            let _svc = rt
                .service("echo")
                .export(
                    "echo",
                    |req| async move { Ok(Value::List(req.into_args())) },
                )
                .build()?;
            let address = ex.listen("127.0.0.1:0").await?;
            println!("listening {address}");
            std::future::pending::<()>().await;
        }
        Some("hub") => {
            let rt = Runtime::new();
            let ex = Exchange::server(&rt).build()?;
            let address = ex.listen("127.0.0.1:0").await?;
            println!("listening {address}");
            std::future::pending::<()>().await;
        }
        Some("subscriber") => {
            let address = args.get(1).context("hub address")?;
            let expected: usize = args.get(2).context("count")?.parse()?;
            // A queue deep enough that this measures the link, not the coalescing policy
            // for slow consumers.
            let mut config = RuntimeConfig::default();
            config.report_capacity = 1 << 22;
            let (rt, _ex) = client_with(address, config).await?;
            let me = rt.service("").build()?;
            let mut monitor = me.monitor_reports("bench-pub", "*")?;
            println!("ready");
            let (mut received, mut missed) = (0usize, 0u64);
            let mut first = None;
            loop {
                match monitor.recv().await {
                    Some(ReportEvent::Report(r)) if r.subject() == "bench" => {
                        first.get_or_insert_with(Instant::now);
                        received += 1;
                    }
                    Some(ReportEvent::Report(r)) if r.subject() == "done" => break,
                    Some(ReportEvent::Missed(n)) => missed += n,
                    Some(_) => {}
                    None => break,
                }
            }
            let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            println!(
                "subscriber: received {received} of {expected} ({} lost, {missed} coalesced locally) in {secs:.3} s: {:.0} msg/s",
                expected.saturating_sub(received),
                received as f64 / secs.max(1e-9)
            );
        }
        _ => bail!("unknown role"),
    }
    Ok(())
}
