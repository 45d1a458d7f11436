//! `netsvc-bench`: netsvc side by side with nats-server, mosquitto and raw TCP, through the
//! same workloads, on loopback, in one run.
//!
//! ```text
//! netsvc-bench run [--quick] [--systems netsvc,nats,mqtt,tcp,tcp-direct]
//!                  [--workloads w1,w2,w4,w5,memory,gateway,ose] [--w1-cases 16x1,1024x16]
//!                  [--clients N] [--markdown FILE] [--json FILE] [--no-pin]
//!                  [--nats-server PATH] [--nats-config FILE] [--nats-port N]
//!                  [--mosquitto PATH] [--mosquitto-config FILE] [--mqtt-port N]
//!                  [--netsvc PATH] [--ose-probe PATH] [--gateway-rounds N] [--ose-rounds N]
//! ```
//!
//! The orchestrator spawns every process of a case itself: the hub on CPU 0 (`taskset -c 0`:
//! `netsvc-bench role netsvc-hub`, `role tcp-hub`, `nats-server` or `mosquitto`) and the
//! load on CPU 1 (`netsvc-bench role w1-pub`, `w1-sub`, ...), so every hop is a real socket
//! between real processes and every system gets the same layout. `bench/run.sh` installs
//! the peers, builds, runs and writes `bench/RESULTS.md`.
//!
//! To profile one role, set `NETSVC_BENCH_PROFILE_ROLE` to its name (`netsvc-hub`, `w1-pub`,
//! `w1-sub`, `w2-caller`, ...) and `NETSVC_BENCH_PROFILE_WRAPPER` to the command that wraps it
//! (`valgrind --tool=callgrind`); our hubs exit normally at the end of a case, so the
//! profiler gets to write its data.
//!
//! The `ose` workload (needs `--ose-probe`, skipped with a note without it) measures the
//! sequential round trip of `echo` to an original OSE process (`oseprobe -connect O -name
//! ose-echo`): from a native netsvc caller through `netsvc exchange --ose-listen O`, from a
//! thin OSE-protocol caller through the same hub's OSE port, and from that caller through the
//! original's own hub (`oseprobe -listen P`).
//!
//! Layout of the code: `adapters` (one per system, behind one trait), `workloads` (W1, W2,
//! W4, W5, memory, gateway, ose: orchestrator side and role side), `report` (tables and ratios), `proc`
//! (child processes and their line protocol), `harness` (hubs), `http` (the gateway workload's HTTP/1.1 client), `payload` and `stats`
//! (shared payload generator and HDR histograms).

mod adapters;
mod harness;
mod http;
mod payload;
mod proc;
mod report;
mod stats;
mod suite;
mod workloads;

use anyhow::Result;
use clap::{Parser, Subcommand};

use workloads::{Target, gateway, memory, ose, w1, w2, w4, w5};

#[derive(Debug, Parser)]
#[command(
    name = "netsvc-bench",
    about = "netsvc side by side with NATS, MQTT and raw TCP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the workloads against every system and writes the tables.
    Run(Box<suite::RunArgs>),
    /// What TLS costs: the W1 and W2 figures of a plain run and a `--tls` run (their
    /// `--json` files) side by side, as a Markdown table.
    TlsCost {
        /// The plain run's JSON.
        plain: std::path::PathBuf,
        /// The TLS run's JSON.
        tls: std::path::PathBuf,
    },
    /// One process of a case (spawned by `run`).
    #[command(hide = true)]
    Role {
        /// Hubs listen and clients connect with TLS, with the certificates in this
        /// directory (a `run --tls`).
        #[arg(long)]
        tls: Option<std::path::PathBuf>,
        #[command(subcommand)]
        role: Role,
    },
}

#[derive(Debug, Subcommand)]
enum Role {
    /// The netsvc hub: a runtime with a server exchange.
    NetsvcHub {
        #[arg(long)]
        listen: String,
        /// Link to this other hub too (the cross-hub workload).
        #[arg(long)]
        connect: Option<String>,
        /// Join this NATS cluster as the backbone to the other hubs (repeatable).
        #[arg(long)]
        nats: Vec<String>,
    },
    /// The raw TCP relay hub.
    TcpHub {
        #[arg(long)]
        listen: String,
    },
    /// A raw TCP echo server (4-byte length framing).
    TcpEcho {
        #[arg(long)]
        listen: String,
    },
    W1Pub(w1::PubArgs),
    W1Sub(Target),
    W2Server(Target),
    W2Caller(w2::CallerArgs),
    W4Pub(w4::W4Args),
    W4Sub(w4::W4Args),
    W5Pub(Target),
    W5Clients(w5::ClientsArgs),
    MemPub(Target),
    MemClients(memory::ClientsArgs),
    GwCaller(gateway::CallerArgs),
    OseCaller(ose::CallerArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // One thread per process: the hub has CPU 0 to itself, like single-threaded mosquitto and
    // nats-server with GOMAXPROCS = 1 (Go sizes it from the CPU affinity).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Run(args) => suite::run(*args).await,
            Command::TlsCost { plain, tls } => {
                let read = |path: &std::path::Path| -> Result<report::Results> {
                    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
                };
                println!("{}", report::tls_cost(&read(&plain)?, &read(&tls)?));
                Ok(())
            }
            Command::Role { tls, role } => {
                if let Some(dir) = tls {
                    adapters::use_tls(dir);
                }
                run_role(role).await
            }
        }
    })
}

async fn run_role(role: Role) -> Result<()> {
    match role {
        Role::NetsvcHub {
            listen,
            connect,
            nats,
        } => adapters::netsvc::hub_role(&listen, connect.as_deref(), &nats).await,
        Role::TcpHub { listen } => adapters::tcp::hub_role(&listen).await,
        Role::TcpEcho { listen } => {
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            proc::ready(listener.local_addr()?);
            adapters::tcp::echo_server(listener).await;
            Ok(())
        }
        Role::W1Pub(a) => w1::pub_role(a).await,
        Role::W1Sub(t) => w1::sub_role(t).await,
        Role::W2Server(t) => w2::server_role(t).await,
        Role::W2Caller(a) => w2::caller_role(a).await,
        Role::W4Pub(a) => w4::pub_role(a).await,
        Role::W4Sub(a) => w4::sub_role(a).await,
        Role::W5Pub(t) => w5::pub_role(t).await,
        Role::W5Clients(a) => w5::clients_role(a).await,
        Role::MemPub(t) => memory::pub_role(t).await,
        Role::MemClients(a) => memory::clients_role(a).await,
        Role::GwCaller(a) => gateway::caller_role(a).await,
        Role::OseCaller(a) => ose::caller_role(a).await,
    }
}
