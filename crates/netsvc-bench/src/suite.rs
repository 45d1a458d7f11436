//! `netsvc-bench run`: every workload against every available system, interleaved per case
//! so that background noise hits all systems alike, then the report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use crate::adapters::System;
use crate::adapters::netsvc::RegistryMode;
use crate::harness::{Env, PeerServer};
use crate::report::Results;
use crate::workloads::{gateway, memory, ose, record, w1, w2, w4, w5, xhub};

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    W1,
    W2,
    W4,
    W5,
    Memory,
    /// JSON-RPC echo through the HTTP gateway, beside the native protocol and the original.
    Gateway,
    /// Sequential echo to an original OSE process, through netsvc's hub and the original's
    /// (needs `--ose-probe`; skipped without it).
    Ose,
    /// W2 with caller and service on two hubs: linked over TCP, joined through a NATS
    /// cluster, and plain NATS across two nodes (netsvc and nats-server; not with --tls).
    Xhub,
}

/// `run` arguments.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Fewer cases and smaller counts (under 2 minutes).
    #[arg(long)]
    quick: bool,
    /// Systems to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "netsvc,nats,mqtt,tcp,tcp-direct"
    )]
    systems: Vec<System>,
    /// Workloads to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "w1,w2,xhub,w4,w5,memory,gateway,ose"
    )]
    workloads: Vec<Workload>,
    /// Don't pin with taskset even where it works.
    #[arg(long)]
    no_pin: bool,
    /// nats-server binary (skipped if missing).
    #[arg(long, default_value = "/usr/sbin/nats-server")]
    nats_server: PathBuf,
    /// nats-server configuration.
    #[arg(long, default_value = "bench/nats.conf")]
    nats_config: PathBuf,
    /// The port in the nats-server configuration.
    #[arg(long, default_value_t = 14222)]
    nats_port: u16,
    /// mosquitto binary (skipped if missing).
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
    /// mosquitto configuration.
    #[arg(long, default_value = "bench/mosquitto.conf")]
    mosquitto_config: PathBuf,
    /// The port in the mosquitto configuration.
    #[arg(long, default_value_t = 11883)]
    mqtt_port: u16,
    /// W1 cases to run instead of the default ones, as SIZExSUBSCRIBERS (e.g. 16x1,1024x16).
    #[arg(long, value_delimiter = ',', value_parser = parse_case)]
    w1_cases: Option<Vec<w1::Case>>,
    /// W5 clients and memory connections (default 1,000; 200 with --quick).
    #[arg(long)]
    clients: Option<usize>,
    /// The registries of netsvc's clients in W5 and the memory workload, each run in turn:
    /// `whole` (every client told of every service, the default) and `scoped`
    /// (`RegistrySync::Scoped`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "whole,scoped"
    )]
    registry: Vec<RegistryMode>,
    /// Write the tables here (Markdown).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write the raw figures here (JSON).
    #[arg(long)]
    json: Option<PathBuf>,
    /// The `netsvc` CLI binary of the gateway workload (default: next to this binary).
    #[arg(long)]
    netsvc: Option<PathBuf>,
    /// The original OSE gateway's probe (`oseprobe`, built outside this project against the
    /// original library; never part of it): the gateway workload measures the original too
    /// when given, and the ose workload needs it.
    #[arg(long, env = "NETSVC_BENCH_OSE_PROBE")]
    ose_probe: Option<PathBuf>,
    /// Rounds of the gateway workload (default 3; 1 with --quick).
    #[arg(long)]
    gateway_rounds: Option<usize>,
    /// Rounds of the ose workload (default 3; 1 with --quick).
    #[arg(long)]
    ose_rounds: Option<usize>,
    /// TLS on every link (netsvc and NATS only; the others are skipped): the run makes a CA
    /// and a hub certificate for 127.0.0.1.
    #[arg(long)]
    tls: bool,
}

/// `systems` with netsvc once per registry mode (the others once, with a mode that they
/// ignore).
fn netsvc_twice(modes: &[RegistryMode], systems: &[System]) -> Vec<(System, RegistryMode)> {
    systems
        .iter()
        .flat_map(|&s| match s {
            System::Netsvc => modes.iter().map(|&m| (s, m)).collect::<Vec<_>>(),
            _ => vec![(s, RegistryMode::Whole)],
        })
        .collect()
}

/// How a run is named: netsvc with its registry mode.
pub(crate) fn label(system: System, registry: RegistryMode) -> String {
    match system {
        System::Netsvc => format!("{} ({} registry)", system.label(), registry.name()),
        _ => system.label().to_owned(),
    }
}

fn parse_case(text: &str) -> Result<w1::Case, String> {
    let (size, subs) = text.split_once('x').ok_or("expected SIZExSUBSCRIBERS")?;
    Ok(w1::Case {
        size: size.parse().map_err(|e| format!("{e}"))?,
        subs: subs.parse().map_err(|e| format!("{e}"))?,
    })
}

fn peer(program: &Path, config: &Path, port: u16, notes: &mut Vec<String>) -> Option<PeerServer> {
    if !program.exists() {
        notes.push(format!(
            "{} not found: its peer is skipped",
            program.display()
        ));
        return None;
    }
    if !config.exists() {
        notes.push(format!(
            "{} not found: its peer is skipped",
            config.display()
        ));
        return None;
    }
    Some(PeerServer {
        program: program.to_path_buf(),
        config: std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf()),
        port,
    })
}

/// Runs the suite.
pub(crate) async fn run(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    let mut results = Results {
        quick: args.quick,
        ..Results::default()
    };
    let notes = &mut results.notes;
    let pin = !args.no_pin && crate::proc::taskset_works();
    if !pin {
        notes.push("processes are NOT pinned (taskset unavailable or --no-pin): hub and load share both CPUs".to_owned());
    }
    let workdir = std::env::temp_dir().join(format!("netsvc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&workdir)?;
    if args.tls {
        let dir = workdir.join("tls");
        crate::adapters::make_certificates(&dir)?;
        crate::adapters::use_tls(dir);
        notes.push(
            "TLS on every link (netsvc: rustls with ring; nats-server: its Go TLS; async-nats: \
             rustls); mosquitto and raw TCP skipped"
                .to_owned(),
        );
    }
    let env = Env {
        exe: std::env::current_exe()?,
        pin,
        quick: args.quick,
        nats: peer(&args.nats_server, &args.nats_config, args.nats_port, notes),
        mqtt: peer(
            &args.mosquitto,
            &args.mosquitto_config,
            args.mqtt_port,
            notes,
        ),
        workdir: workdir.clone(),
    };
    results.pinned = pin;
    let systems: Vec<System> = args
        .systems
        .iter()
        .copied()
        .filter(|s| env.available(*s))
        .collect();
    results.systems.clone_from(&systems);
    let has = |s: System| systems.contains(&s);
    let clients = args.clients.unwrap_or(if args.quick { 200 } else { 1_000 });
    eprintln!(
        "netsvc-bench: {} run, systems {:?}, pinned: {pin}, scratch {}",
        if args.quick { "quick" } else { "full" },
        systems.iter().map(|s| s.name()).collect::<Vec<_>>(),
        workdir.display()
    );

    for workload in &args.workloads {
        let t = Instant::now();
        match workload {
            Workload::W1 => {
                let cases = args
                    .w1_cases
                    .clone()
                    .unwrap_or_else(|| w1::cases(args.quick));
                for case in cases {
                    for &s in &systems {
                        if s == System::TcpDirect && case.subs != 1 {
                            continue;
                        }
                        let what = format!("W1 {} B 1:{} {}", case.size, case.subs, s.label());
                        eprintln!("== {what}");
                        if let Some(r) =
                            record(&what, w1::run(&env, s, case).await, &mut results.notes)
                        {
                            eprintln!(
                                "   delivered {:.0} msg/s, sent {}, lost {}",
                                r.delivered_per_s, r.sent, r.lost
                            );
                            results.w1.push(r);
                        }
                    }
                }
            }
            Workload::W2 => {
                for &s in &systems {
                    let what = format!("W2 {}", s.label());
                    eprintln!("== {what}");
                    if let Some(r) = record(&what, w2::run(&env, s).await, &mut results.notes) {
                        eprintln!(
                            "   p50 {:.1} µs, p99 {:.1} µs, {:.0} req/s in flight",
                            r.sequential.p50_us, r.sequential.p99_us, r.in_flight_rps
                        );
                        results.w2.push(r);
                    }
                }
            }
            Workload::W4 => {
                for s in [System::Netsvc, System::Mqtt, System::Nats] {
                    if !has(s) {
                        continue;
                    }
                    let what = format!("W4 {}", s.label());
                    eprintln!("== {what}");
                    if let Some(r) = record(&what, w4::run(&env, s).await, &mut results.notes) {
                        eprintln!(
                            "   snapshot of {} in {:.3} s, gaps {}, live {}",
                            r.distinct, r.snapshot_secs, r.gaps, r.live
                        );
                        results.w4.push(r);
                    }
                }
                let _ = std::fs::remove_dir_all(workdir.join("jetstream"));
            }
            Workload::W5 => {
                for (s, registry) in netsvc_twice(&args.registry, &[System::Netsvc, System::Nats]) {
                    if !has(s) {
                        continue;
                    }
                    let what = format!("W5 {} ({clients} clients)", label(s, registry));
                    eprintln!("== {what}");
                    let outcome = w5::run(&env, s, clients, registry).await;
                    if let Some(r) = record(&what, outcome, &mut results.notes) {
                        eprintln!(
                            "   resynced p50 {:.0} ms, 100% {:.0} ms, not resynced {}",
                            r.resynced_ms[0], r.resynced_ms[2], r.not_resynced
                        );
                        results.w5.push(r);
                    }
                }
            }
            Workload::Gateway => {
                let programs = gateway::Programs {
                    netsvc: args
                        .netsvc
                        .clone()
                        .unwrap_or_else(|| env.exe.with_file_name("netsvc")),
                    ose_probe: args.ose_probe.clone(),
                };
                if crate::adapters::tls_dir().is_some() {
                    results
                        .notes
                        .push("gateway workload skipped: it has no TLS variant".to_owned());
                } else if !programs.netsvc.exists() {
                    results.notes.push(format!(
                        "gateway workload skipped: {} not found (cargo build --release -p netsvc-cli)",
                        programs.netsvc.display()
                    ));
                } else {
                    if let Some(p) = &programs.ose_probe
                        && !p.exists()
                    {
                        bail!("--ose-probe {}: no such file", p.display());
                    }
                    let rounds = args
                        .gateway_rounds
                        .unwrap_or(if args.quick { 1 } else { 3 });
                    for round in 1..=rounds {
                        let what = format!("gateway round {round}/{rounds}");
                        eprintln!("== {what}");
                        if let Some(runs) = record(
                            &what,
                            gateway::run(&env, &programs, round).await,
                            &mut results.notes,
                        ) {
                            for r in &runs {
                                eprintln!(
                                    "   {}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs",
                                    r.kind.label(),
                                    r.rps,
                                    r.latency.p50_us,
                                    r.latency.p99_us
                                );
                            }
                            results.gateway.extend(runs);
                        }
                    }
                }
            }
            Workload::Xhub => {
                if args.tls || !has(System::Netsvc) || !has(System::Nats) {
                    continue;
                }
                for layout in [
                    xhub::Layout::TcpLinked,
                    xhub::Layout::NatsLinked,
                    xhub::Layout::NatsCluster,
                ] {
                    let what = format!("across hubs: {}", layout.label());
                    eprintln!("== {what}");
                    if let Some(r) =
                        record(&what, xhub::run(&env, layout).await, &mut results.notes)
                    {
                        eprintln!(
                            "   p50 {:.1} µs, p99 {:.1} µs, {:.0} req/s in flight",
                            r.w2.sequential.p50_us, r.w2.sequential.p99_us, r.w2.in_flight_rps
                        );
                        results.xhub.push(r);
                    }
                }
            }
            Workload::Ose => {
                let netsvc = args
                    .netsvc
                    .clone()
                    .unwrap_or_else(|| env.exe.with_file_name("netsvc"));
                if crate::adapters::tls_dir().is_some() {
                    results
                        .notes
                        .push("ose workload skipped: it has no TLS variant".to_owned());
                } else if !netsvc.exists() {
                    results.notes.push(format!(
                        "ose workload skipped: {} not found (cargo build --release -p netsvc-cli)",
                        netsvc.display()
                    ));
                } else if let Some(probe) = &args.ose_probe {
                    if !probe.exists() {
                        bail!("--ose-probe {}: no such file", probe.display());
                    }
                    let rounds = args.ose_rounds.unwrap_or(if args.quick { 1 } else { 3 });
                    for round in 1..=rounds {
                        let what = format!("ose round {round}/{rounds}");
                        eprintln!("== {what}");
                        if let Some(runs) = record(
                            &what,
                            ose::run(&env, &netsvc, probe, round).await,
                            &mut results.notes,
                        ) {
                            for r in &runs {
                                eprintln!(
                                    "   {:?}: {:.0} calls/s, p50 {:.1} µs, p99 {:.1} µs",
                                    r.kind, r.rps, r.latency.p50_us, r.latency.p99_us
                                );
                            }
                            results.ose.extend(runs);
                        }
                    }
                } else {
                    results.notes.push(
                        "ose workload skipped: it needs the original's probe (--ose-probe PATH or NETSVC_BENCH_OSE_PROBE)"
                            .to_owned(),
                    );
                }
            }
            Workload::Memory => {
                let systems = [System::Netsvc, System::Nats, System::Mqtt];
                for (s, registry) in netsvc_twice(&args.registry, &systems) {
                    if !has(s) {
                        continue;
                    }
                    let what = format!("memory {} ({clients} connections)", label(s, registry));
                    eprintln!("== {what}");
                    let outcome = memory::run(&env, s, clients, registry).await;
                    if let Some(r) = record(&what, outcome, &mut results.notes) {
                        eprintln!(
                            "   {:.0} B per idle connection, {:.0} B per subscription",
                            r.per_connection_b, r.per_subscription_b
                        );
                        results.memory.push(r);
                    }
                }
            }
        }
        eprintln!("-- {workload:?} took {:.1} s", t.elapsed().as_secs_f64());
    }
    results.elapsed_secs = started.elapsed().as_secs_f64();
    let md = results.markdown();
    match &args.markdown {
        Some(path) => std::fs::write(path, &md)?,
        None => println!("{md}"),
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    }
    eprintln!("netsvc-bench: done in {:.1} s", results.elapsed_secs);
    Ok(())
}
