//! W1 throughput: one publisher to 1, 4 and 16 subscribers on one subject, 16 B and 1 KiB
//! payloads, fire and forget. Delivered messages per second and lost count.
//!
//! Layout: hub on CPU 0; the publisher and the K subscribers, each its own process, on CPU 1.
//! The publisher warms up with a tenth of the messages (flagged, not counted); once every
//! subscriber has drained the warm-up, it publishes `messages` (or for `max_secs`, whichever
//! comes first) and reports how many it sent; the subscribers then drain until they have
//! them all or stay idle for 2 s.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::{Target, dispatch};
use crate::adapters::{Adapter, Filter, Publisher, SUBJECT, Subscription, System};
use crate::harness::{Env, HubOptions};
use crate::payload::{self, SeqSet, WARMUP, now_ns};
use crate::proc::{Commands, Cpu, emit, ready};

/// One W1 case.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Case {
    /// Payload bytes.
    pub(crate) size: usize,
    /// Subscriber processes.
    pub(crate) subs: usize,
}

/// The cases of a run.
pub(crate) fn cases(quick: bool) -> Vec<Case> {
    let all: &[(usize, usize)] = if quick {
        &[(16, 1), (16, 16), (1024, 1)]
    } else {
        &[(16, 1), (16, 4), (16, 16), (1024, 1), (1024, 4), (1024, 16)]
    };
    all.iter()
        .map(|&(size, subs)| Case { size, subs })
        .collect()
}

/// Publisher role arguments.
#[derive(Debug, Clone, Args)]
pub(crate) struct PubArgs {
    #[command(flatten)]
    pub(crate) target: Target,
    #[arg(long)]
    pub(crate) size: usize,
    #[arg(long)]
    pub(crate) subs: usize,
    #[arg(long)]
    pub(crate) messages: u64,
    #[arg(long)]
    pub(crate) warmup_ms: u64,
    #[arg(long)]
    pub(crate) max_secs: f64,
}

/// What the publisher reports.
#[derive(Debug, Serialize, Deserialize)]
struct PubResult {
    sent: u64,
    warmup_sent: u64,
    start_ns: u64,
    end_ns: u64,
}

/// What each subscriber reports.
#[derive(Debug, Serialize, Deserialize)]
struct SubResult {
    received: u64,
    duplicates: u64,
    missed: u64,
    first_ns: u64,
    last_ns: u64,
}

/// The figures of one system in one case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) system: System,
    pub(crate) case: Case,
    /// Measured messages published.
    pub(crate) sent: u64,
    /// Publish rate (msg/s).
    pub(crate) published_per_s: f64,
    /// Deliveries counted by all subscribers (distinct sequence numbers).
    pub(crate) delivered: u64,
    /// Aggregate delivery rate: deliveries / (last delivery - first publish), msg/s.
    pub(crate) delivered_per_s: f64,
    /// The slowest subscriber's rate, msg/s.
    pub(crate) slowest_sub_per_s: f64,
    /// sent × subscribers − delivered.
    pub(crate) lost: u64,
    /// Copies received twice.
    pub(crate) duplicates: u64,
    /// Reports the client library coalesced (netsvc `Missed`).
    pub(crate) missed: u64,
    /// Seconds from the first publish to the last delivery.
    pub(crate) window_secs: f64,
}

struct Params {
    messages: u64,
    warmup_ms: u64,
    max_secs: f64,
}

fn params(quick: bool, case: Case) -> Params {
    let subs = case.subs as u64;
    if quick {
        Params {
            messages: (200_000 / subs).max(20_000),
            warmup_ms: 300,
            max_secs: 3.0,
        }
    } else {
        // Enough for a window of about 3 s at a million deliveries a second: a 1 s window
        // (the first version) moved by ±15% between runs of the same code.
        let (deliveries, per_publisher): (u64, u64) = if case.size <= 16 {
            (8_000_000, 3_000_000)
        } else {
            (4_000_000, 1_500_000)
        };
        Params {
            messages: (deliveries / subs).min(per_publisher),
            warmup_ms: 1_000,
            max_secs: 10.0,
        }
    }
}

/// Runs one case against one system.
pub(crate) async fn run(env: &Env, system: System, case: Case) -> Result<Run> {
    if system == System::TcpDirect && case.subs != 1 {
        bail!("direct TCP is one writer and one reader only");
    }
    let p = params(env.quick, case);
    let mut hub = env.start_hub(system, HubOptions::default()).await?;
    let target = Target::args(system, &hub.addr);
    let mut subs = Vec::new();
    for i in 0..case.subs {
        let mut args = vec!["w1-sub".to_owned()];
        args.extend(target.iter().cloned());
        subs.push(env.role(Cpu::Load, &format!("{system}-w1-sub{i}"), &args)?);
    }
    for s in &mut subs {
        s.expect("READY", Duration::from_secs(30)).await?;
    }
    let mut args = vec!["w1-pub".to_owned()];
    args.extend(target.iter().cloned());
    args.extend([
        "--size".to_owned(),
        case.size.to_string(),
        "--subs".to_owned(),
        case.subs.to_string(),
        "--messages".to_owned(),
        p.messages.to_string(),
        "--warmup-ms".to_owned(),
        p.warmup_ms.to_string(),
        "--max-secs".to_owned(),
        p.max_secs.to_string(),
    ]);
    let mut publisher = env.role(Cpu::Load, &format!("{system}-w1-pub"), &args)?;
    publisher.expect("READY", Duration::from_secs(60)).await?;
    // Warm-up, then wait until every subscriber has drained it, so the measured phase starts
    // with empty queues everywhere.
    publisher.send("GO").await?;
    let warm = publisher
        .expect(
            "WARM",
            Duration::from_secs_f64(p.warmup_ms as f64 / 1e3 + 60.0),
        )
        .await?;
    for s in &mut subs {
        s.send(&format!("WARM {warm}")).await?;
    }
    for s in &mut subs {
        s.expect("WARMED", Duration::from_secs(60)).await?;
    }
    publisher.send("MEASURE").await?;
    let pr: PubResult = publisher
        .result(Duration::from_secs_f64(p.max_secs + 60.0))
        .await?;
    for s in &mut subs {
        s.send(&format!("END {}", pr.sent)).await?;
    }
    let mut results = Vec::new();
    for s in &mut subs {
        results.push(s.result::<SubResult>(Duration::from_secs(40)).await?);
    }
    publisher.finish(Duration::from_secs(2)).await;
    for s in &mut subs {
        s.finish(Duration::from_secs(2)).await;
    }
    hub.stop().await;

    let delivered: u64 = results.iter().map(|r| r.received).sum();
    let last = results
        .iter()
        .map(|r| r.last_ns)
        .max()
        .unwrap_or(pr.start_ns);
    let window = last.saturating_sub(pr.start_ns).max(1) as f64 / 1e9;
    let slowest = results
        .iter()
        .map(|r| r.received as f64 / (r.last_ns.saturating_sub(pr.start_ns).max(1) as f64 / 1e9))
        .fold(f64::INFINITY, f64::min);
    Ok(Run {
        system,
        case,
        sent: pr.sent,
        published_per_s: pr.sent as f64
            / (pr.end_ns.saturating_sub(pr.start_ns).max(1) as f64 / 1e9),
        delivered,
        delivered_per_s: delivered as f64 / window,
        slowest_sub_per_s: if slowest.is_finite() { slowest } else { 0.0 },
        lost: (pr.sent * case.subs as u64).saturating_sub(delivered),
        duplicates: results.iter().map(|r| r.duplicates).sum(),
        missed: results.iter().map(|r| r.missed).sum(),
        window_secs: window,
    })
}

/// `role w1-pub`.
pub(crate) async fn pub_role(args: PubArgs) -> Result<()> {
    dispatch!(args.target.system, publisher(&args))
}

async fn publisher<A: Adapter>(args: &PubArgs) -> Result<()> {
    let conn = A::connect(&args.target.addr).await?;
    let mut p = conn.publisher().await?;
    p.wait_subscribers(args.subs).await?;
    let mut commands = Commands::new();
    ready("publisher");
    commands.expect("GO").await?;

    // Warm-up: a tenth of the messages, at most `warmup_ms`.
    let warm_until = Instant::now() + Duration::from_millis(args.warmup_ms);
    let warm_count = (args.messages / 10).max(1);
    let mut warmup_sent = 0u64;
    while warmup_sent < warm_count && Instant::now() < warm_until {
        for _ in 0..64 {
            p.publish(SUBJECT, payload::make(warmup_sent | WARMUP, args.size))
                .await?;
            warmup_sent += 1;
        }
    }
    p.flush().await?;
    println!("WARM {warmup_sent}");
    commands.expect("MEASURE").await?;

    let max = Duration::from_secs_f64(args.max_secs);
    let start_ns = now_ns();
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < args.messages {
        p.publish(SUBJECT, payload::make(sent, args.size)).await?;
        sent += 1;
        if sent.is_multiple_of(4096) && start.elapsed() > max {
            break;
        }
    }
    p.flush().await?;
    let end_ns = now_ns();
    emit(
        "RESULT",
        &PubResult {
            sent,
            warmup_sent,
            start_ns,
            end_ns,
        },
    )?;
    // Stay connected until the orchestrator is done: what is still queued must go out.
    commands.wait_end().await
}

/// `role w1-sub`.
pub(crate) async fn sub_role(target: Target) -> Result<()> {
    dispatch!(target.system, subscriber(&target))
}

async fn subscriber<A: Adapter>(target: &Target) -> Result<()> {
    let conn = A::connect(&target.addr).await?;
    let mut sub = conn.subscribe(Filter::Exact(SUBJECT), false).await?;
    let mut commands = Commands::new();
    ready("subscriber");

    let mut seen = SeqSet::default();
    let (mut first_ns, mut last_ns) = (0u64, 0u64);
    let mut expected: Option<u64> = None;
    let mut ended_ns = 0u64;
    // Warm-up: the last warm-up sequence number, once told, and when one last arrived.
    let mut warm_last: Option<u64> = None;
    let mut warm_seen = 0u64;
    let mut warm_ns = now_ns();
    let mut warmed = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        if expected.is_some_and(|n| seen.distinct >= n) {
            break;
        }
        tokio::select! {
            biased;
            m = sub.next() => {
                let Some(m) = m? else { break };
                let Some(h) = m.header else { continue };
                if h.is_warmup() {
                    warm_ns = now_ns();
                    warm_seen = warm_seen.max(h.seq & !WARMUP);
                    if !warmed && warm_last.is_some_and(|w| warm_seen >= w) {
                        warmed = true;
                        println!("WARMED");
                    }
                    continue;
                }
                last_ns = now_ns();
                if first_ns == 0 {
                    first_ns = last_ns;
                }
                seen.insert(h.seq);
            }
            line = commands.next(), if expected.is_none() => {
                let Some(line) = line? else { break };
                if let Some(n) = line.strip_prefix("WARM ") {
                    let last = n.parse::<u64>().unwrap_or(1).saturating_sub(1);
                    warm_last = Some(last);
                    if warm_seen >= last {
                        warmed = true;
                        println!("WARMED");
                    }
                    continue;
                }
                let n = line.strip_prefix("END ").and_then(|n| n.parse().ok());
                expected = Some(n.unwrap_or(0));
                ended_ns = now_ns();
            }
            _ = tick.tick() => {
                let now = now_ns();
                // Warm-up messages can be lost (or coalesced); a second of silence will do.
                if !warmed && warm_last.is_some() && now.saturating_sub(warm_ns) > 1_000_000_000 {
                    warmed = true;
                    println!("WARMED");
                }
                if expected.is_some()
                    && (now.saturating_sub(last_ns.max(ended_ns)) > 2_000_000_000
                        || now.saturating_sub(ended_ns) > 30_000_000_000)
                {
                    break;
                }
            }
        }
    }
    emit(
        "RESULT",
        &SubResult {
            received: seen.distinct,
            duplicates: seen.duplicates,
            missed: sub.missed(),
            first_ns,
            last_ns,
        },
    )
}
