//! W4 late join: 100,000 subjects `s.<n>` each with a cached 64 B value; a new subscriber
//! with a catch-all pattern receives all of them (timed from its subscribe call), then one
//! live update to `s.0` must arrive exactly once after the snapshot.
//!
//! netsvc: `Lifetime::Forever` and `monitor_reports("bench-pub", "*")`. MQTT: retained
//! messages and `#`. NATS: a JetStream KV bucket (history 1) and `watch_with_history(">")`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::{Target, dispatch};
use crate::adapters::{Adapter, Publisher, Subscription, System};
use crate::harness::{Env, HubOptions};
use crate::payload::{self, SeqSet, now_ns};
use crate::proc::{Commands, Cpu, emit, ready};

/// Bytes of each cached value.
pub(crate) const SIZE: usize = 64;

/// Role arguments (publisher and subscriber).
#[derive(Debug, Clone, Args)]
pub(crate) struct W4Args {
    #[command(flatten)]
    pub(crate) target: Target,
    #[arg(long)]
    pub(crate) subjects: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Loaded {
    publish_secs: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    secs: f64,
    distinct: u64,
    duplicates: u64,
    wrong_values: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Live {
    live: u64,
    live_latency_us: f64,
    extra: u64,
}

/// The figures of one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Run {
    pub(crate) system: System,
    pub(crate) subjects: u64,
    /// Time to publish and cache all values (publisher side).
    pub(crate) load_secs: f64,
    /// Time from the subscribe call to the last of the values.
    pub(crate) snapshot_secs: f64,
    /// Distinct subjects received in the snapshot.
    pub(crate) distinct: u64,
    /// Subjects received more than once during the snapshot.
    pub(crate) duplicates: u64,
    /// subjects − distinct.
    pub(crate) gaps: u64,
    /// Snapshot values that were not the cached version.
    pub(crate) wrong_values: u64,
    /// Copies of the live update received (1 is right).
    pub(crate) live: u64,
    /// Latency of the live update (µs, publish to receipt).
    pub(crate) live_latency_us: f64,
    /// Messages after the snapshot other than the live update.
    pub(crate) extra: u64,
}

/// Runs W4 against one system.
pub(crate) async fn run(env: &Env, system: System) -> Result<Run> {
    let subjects: u64 = if env.quick { 20_000 } else { 100_000 };
    let mut hub = env
        .start_hub(
            system,
            HubOptions {
                jetstream: system == System::Nats,
                addr: None,
            },
        )
        .await?;
    let mut args = Target::args(system, &hub.addr);
    args.extend(["--subjects".to_owned(), subjects.to_string()]);
    let with_role = |role: &str| {
        let mut a = vec![role.to_owned()];
        a.extend(args.iter().cloned());
        a
    };
    let mut publisher = env.role(Cpu::Load, &format!("{system}-w4-pub"), &with_role("w4-pub"))?;
    let loaded: Loaded =
        serde_json::from_str(&publisher.expect("READY", Duration::from_secs(120)).await?)?;
    let mut subscriber = env.role(Cpu::Load, &format!("{system}-w4-sub"), &with_role("w4-sub"))?;
    subscriber.expect("READY", Duration::from_secs(30)).await?;
    subscriber.send("GO").await?;
    let snapshot: Snapshot = serde_json::from_str(
        &subscriber
            .expect("SNAPSHOT", Duration::from_secs(90))
            .await?,
    )?;
    publisher.send("LIVE").await?;
    publisher.expect("DONE", Duration::from_secs(10)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    subscriber.send("END").await?;
    let live: Live = subscriber.result(Duration::from_secs(10)).await?;
    subscriber.finish(Duration::from_secs(2)).await;
    publisher.finish(Duration::from_secs(2)).await;
    hub.stop().await;
    Ok(Run {
        system,
        subjects,
        load_secs: loaded.publish_secs,
        snapshot_secs: snapshot.secs,
        distinct: snapshot.distinct,
        duplicates: snapshot.duplicates,
        gaps: subjects.saturating_sub(snapshot.distinct),
        wrong_values: snapshot.wrong_values,
        live: live.live,
        live_latency_us: live.live_latency_us,
        extra: live.extra,
    })
}

/// `role w4-pub`: caches version 1 of every subject, then on `LIVE` publishes version 2 of
/// `s.0`.
pub(crate) async fn pub_role(args: W4Args) -> Result<()> {
    dispatch!(args.target.system, publisher(&args))
}

async fn publisher<A: Adapter>(args: &W4Args) -> Result<()> {
    let conn = A::connect(&args.target.addr).await?;
    let mut p = conn.publisher().await?;
    let start = Instant::now();
    for n in 0..args.subjects {
        p.store(&format!("s.{n}"), payload::make(1, SIZE)).await?;
    }
    p.flush().await?;
    let mut commands = Commands::new();
    ready(serde_json::to_string(&Loaded {
        publish_secs: start.elapsed().as_secs_f64(),
    })?);
    commands.expect("LIVE").await?;
    p.store("s.0", payload::make(2, SIZE)).await?;
    p.flush().await?;
    println!("DONE");
    commands.wait_end().await
}

/// `role w4-sub`: the late joiner.
pub(crate) async fn sub_role(args: W4Args) -> Result<()> {
    dispatch!(args.target.system, subscriber(&args))
}

fn index(subject: Option<&str>) -> Option<u64> {
    subject?.strip_prefix("s.")?.parse().ok()
}

async fn subscriber<A: Adapter>(args: &W4Args) -> Result<()> {
    let conn = A::connect(&args.target.addr).await?;
    let mut commands = Commands::new();
    ready("late joiner");
    commands.expect("GO").await?;

    let start = Instant::now();
    let mut sub = conn.snapshot().await?;
    let mut seen = SeqSet::default();
    let mut wrong_values = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.distinct < args.subjects {
        let Ok(m) = tokio::time::timeout_at(deadline, sub.next()).await else {
            break;
        };
        let m = m?.context("subscription ended")?;
        let Some(i) = index(m.subject.as_deref()) else {
            continue;
        };
        if m.header.map(|h| h.seq) != Some(1) {
            wrong_values += 1;
        }
        seen.insert(i);
    }
    emit(
        "SNAPSHOT",
        &Snapshot {
            secs: start.elapsed().as_secs_f64(),
            distinct: seen.distinct,
            duplicates: seen.duplicates,
            wrong_values,
        },
    )?;

    let (mut live, mut live_latency_us, mut extra) = (0, 0.0, 0);
    loop {
        tokio::select! {
            m = sub.next() => {
                let Some(m) = m? else { break };
                let h = m.header;
                if index(m.subject.as_deref()) == Some(0) && h.is_some_and(|h| h.seq == 2) {
                    live += 1;
                    if let Some(h) = h {
                        live_latency_us = now_ns().saturating_sub(h.sent_ns) as f64 / 1e3;
                    }
                } else {
                    extra += 1;
                }
            }
            _ = commands.next() => break,
        }
    }
    emit(
        "RESULT",
        &Live {
            live,
            live_latency_us,
            extra,
        },
    )
}
