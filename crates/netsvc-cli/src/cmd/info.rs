//! `netsvc info`: what a hub says about itself through its introspection service
//! (`netsvc.exchange`): version, uptime, services, links, and requests by service with their
//! latencies. `netsvc methods NAME`: the methods a service exports, as it lists them.

use anyhow::{Context as _, bail};
use netsvc::stats::Stats;
use netsvc::{Binding, INTROSPECTION_SERVICE, LIST_METHODS, Value, names};

use crate::cli::{InfoArgs, MethodsArgs};
use crate::client::{self, Connection, Target};
use crate::signals::Signals;
use crate::{exit, output};

pub(crate) async fn run(args: InfoArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    let conn = client::connect(
        Target::of(&args.connect, super::call::DEFAULT_WAIT),
        signals,
    )
    .await?;
    let result = tokio::select! {
        result = report(&conn, &args) => result,
        stop = signals.recv() => Ok(stop.exit_code()),
    };
    conn.close().await;
    result
}

/// The introspection services to ask: the hub's own (the peer of our link), or with
/// `--all` every one visible.
fn hubs(conn: &Connection, all: bool) -> anyhow::Result<Vec<Binding>> {
    let found = conn.rt.registry().lookup_name(INTROSPECTION_SERVICE);
    if all {
        if found.is_empty() {
            bail!(
                "no hub visible through {} answers as {INTROSPECTION_SERVICE} (a hub started \
                 with --no-introspection, or one that does not allow you to see it)",
                conn.address()
            );
        }
        return Ok(found);
    }
    let peers: Vec<String> = conn
        .exchange
        .connections()
        .into_iter()
        .map(|c| c.peer_process)
        .collect();
    let own: Vec<Binding> = found
        .into_iter()
        .filter(|b| peers.iter().any(|p| p == b.process_identity()))
        .collect();
    if own.is_empty() {
        bail!(
            "the hub at {} hosts no {INTROSPECTION_SERVICE} service (started with \
             --no-introspection, or you may not see it); --all asks every hub visible",
            conn.address()
        );
    }
    Ok(own)
}

async fn report(conn: &Connection, args: &InfoArgs) -> anyhow::Result<u8> {
    for hub in hubs(conn, args.all)? {
        let endpoint = conn.rt.endpoint(&hub).with_timeout(args.timeout.0);
        let stats: Stats = endpoint
            .call_as("stats", Vec::new())
            .await
            .map_err(|f| anyhow::anyhow!("{f}"))
            .with_context(|| format!("asking the hub {} for its stats", hub.process_identity()))?;
        if args.json {
            output::json_line(&stats)?;
        } else {
            print_human(&stats)?;
        }
    }
    Ok(exit::OK)
}

fn print_human(stats: &Stats) -> anyhow::Result<()> {
    output::line(&format!(
        "hub {}  netsvc {}  up {}  services {} local, {} remote  links {}",
        stats.identity,
        stats.version,
        duration(stats.uptime_s),
        stats.services_local,
        stats.services_remote,
        stats.links.len()
    ))?;
    let r = &stats.reports;
    output::line(&format!(
        "reports: {} published, {} received, {} delivered, {} sent, {} coalesced, {} missed; \
         slow-consumer closes {}",
        r.published,
        r.received,
        r.delivered,
        r.sent,
        r.coalesced,
        r.missed,
        stats.slow_consumer_closes
    ))?;
    if !stats.links.is_empty() {
        output::line("")?;
        let header = [
            "LINK", "PEER", "REMOTE", "USER", "TLS", "AGE", "IN", "OUT", "QUEUED",
        ];
        let rows: Vec<Vec<String>> = stats
            .links
            .iter()
            .map(|l| {
                vec![
                    l.id.to_string(),
                    l.peer.clone(),
                    l.remote.clone(),
                    l.user.clone().unwrap_or_else(|| "-".to_owned()),
                    if l.tls { "yes" } else { "no" }.to_owned(),
                    duration(l.age_ms as f64 / 1000.0),
                    bytes(l.bytes_in),
                    bytes(l.bytes_out),
                    bytes(l.queued_bytes),
                ]
            })
            .collect();
        table(&header, &rows)?;
    }
    if !stats.requests.is_empty() {
        output::line("")?;
        let header = ["SERVICE", "ROLE", "OK", "FAILED", "P50", "P99"];
        let rows: Vec<Vec<String>> = stats
            .requests
            .iter()
            .map(|r| {
                vec![
                    r.service.clone(),
                    r.role.as_str().to_owned(),
                    r.ok.to_string(),
                    r.failed().to_string(),
                    micros(r.latency.quantile_us(0.5)),
                    micros(r.latency.quantile_us(0.99)),
                ]
            })
            .collect();
        table(&header, &rows)?;
    }
    Ok(())
}

fn table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let widths = output::widths(header, rows);
    let head: Vec<String> = header.iter().map(|s| (*s).to_owned()).collect();
    output::line(&output::aligned(&head, &widths))?;
    for row in rows {
        output::line(&output::aligned(row, &widths))?;
    }
    Ok(())
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{seconds:.1}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else {
        format!("{:.1}ms", us / 1000.0)
    }
}

pub(crate) async fn methods(args: MethodsArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    names::check_service_name(&args.service)
        .with_context(|| format!("invalid service name {:?}", args.service))?;
    let conn = client::connect(
        Target::of(&args.connect, super::call::DEFAULT_WAIT),
        signals,
    )
    .await?;
    let endpoint = conn
        .rt
        .endpoint(args.service.as_str())
        .with_timeout(args.timeout.0);
    let outcome = tokio::select! {
        outcome = endpoint.call(LIST_METHODS, Vec::new()) => outcome,
        stop = signals.recv() => {
            conn.close().await;
            return Ok(stop.exit_code());
        }
    };
    conn.close().await;
    let names = match outcome {
        Ok(Value::List(names)) => names,
        Ok(other) => bail!(
            "{} answered {LIST_METHODS} with {}, not a list of names",
            args.service,
            other.type_name()
        ),
        Err(failure) => {
            eprintln!("{failure}");
            return Ok(exit::FAILURE);
        }
    };
    if args.json {
        output::line(&netsvc::value::json::to_json(&Value::List(names)).to_string())?;
    } else {
        for name in names {
            match name.as_str() {
                Some(name) => output::line(name)?,
                None => output::line(&netsvc::value::json::to_json(&name).to_string())?,
            }
        }
    }
    Ok(exit::OK)
}
