//! The gateway workload: a JSON-RPC echo through the HTTP gateway, 32 keep-alive HTTP/1.1
//! clients for a fixed time after a warm-up (requests per second, p50/p99 round trip), and
//! in the same round the same call on the native protocol with 32 in flight, and, when its
//! probe is given, the original OSE gateway.
//!
//! Layout, the same for netsvc and the original: the process that serves HTTP (and is the
//! hub) on CPU 0, the echo service in a process of its own and the load on CPU 1, so every
//! call crosses the gateway process and one exchange link to the service and back.
//!
//! - netsvc: `netsvc exchange --listen A --http H` (the real CLI binary) and `netsvc demo
//!   --connect A` (its service `echo`, method `echo`). Targets: JSON-RPC 1.0 on `POST
//!   /service/echo`, JSON-RPC 2.0 on `POST /jsonrpc` (method `echo.echo`), and native: a
//!   client runtime on the same hub calling `echo.echo` with the same string.
//! - The original (`--ose-probe PATH`, built elsewhere; this tool never builds it): `oseprobe
//!   -listen P -http H -name ose-gw` (exchange server and HTTP gateways) and `oseprobe
//!   -connect P -name ose-echo` (the echo service); JSON-RPC 1.0 on `POST /service/ose-echo`.
//!   Its replies are HTTP/1.0 with `Connection: Close`, so its clients connect anew for
//!   every request (the connect is inside each measured round trip, as for any client).
//!
//! Every reply is checked: the echoed string (which carries a sequence number) must come
//! back as the result, with no error.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use netsvc::{Retry, Value};
use serde::{Deserialize, Serialize};

use crate::harness::{Env, free_addr, wait_listening};
use crate::http;
use crate::proc::{Commands, Cpu, Proc, ready};
use crate::stats::Summary;

/// Concurrent HTTP clients, and calls in flight on the native protocol.
pub(crate) const CLIENTS: usize = 32;
/// The echoed string's length (W2's payload size).
pub(crate) const TEXT_LEN: usize = 128;

/// What a caller measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// netsvc's gateway, the original's JSON-RPC 1.0 form on `POST /service/echo`.
    GatewayJson1,
    /// netsvc's gateway, JSON-RPC 2.0 on `POST /jsonrpc`.
    GatewayJson2,
    /// The native protocol through the same hub to the same service.
    Native,
    /// The original OSE gateway, JSON-RPC 1.0 on `POST /service/ose-echo`.
    Original,
}

impl Kind {
    /// The label in result tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::GatewayJson1 => "netsvc gateway, JSON-RPC 1.0 `POST /service/echo`",
            Self::GatewayJson2 => "netsvc gateway, JSON-RPC 2.0 `POST /jsonrpc`",
            Self::Native => "netsvc native protocol, 32 in flight",
            Self::Original => "original OSE gateway, JSON-RPC 1.0 `POST /service/ose-echo`",
        }
    }
}

/// `role gw-caller` arguments.
#[derive(Debug, Clone, Args)]
pub(crate) struct CallerArgs {
    #[arg(long, value_enum)]
    pub(crate) kind: Kind,
    /// The HTTP server's (or, for `native`, the hub's) `HOST:PORT`.
    #[arg(long)]
    pub(crate) addr: String,
    /// The service called.
    #[arg(long)]
    pub(crate) service: String,
    #[arg(long)]
    pub(crate) warmup_ms: u64,
    #[arg(long)]
    pub(crate) secs: f64,
}

/// The figures of one target in one round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Run {
    /// Which round of the run (targets of one round ran back to back).
    pub(crate) round: usize,
    pub(crate) kind: Kind,
    pub(crate) rps: f64,
    pub(crate) latency: Summary,
    /// TCP connections the clients opened while measuring (32 when kept alive).
    pub(crate) connects: u64,
}

/// Where the run finds the programs.
#[derive(Debug, Clone)]
pub(crate) struct Programs {
    /// The `netsvc` CLI binary.
    pub(crate) netsvc: PathBuf,
    /// The original's probe, when given.
    pub(crate) ose_probe: Option<PathBuf>,
}

fn durations(env: &Env) -> (u64, f64) {
    if env.quick { (300, 1.0) } else { (1_000, 5.0) }
}

/// One round: every target once, back to back.
pub(crate) async fn run(env: &Env, programs: &Programs, round: usize) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    {
        let hub_addr = free_addr()?;
        let http_addr = free_addr()?;
        let mut hub = Proc::server(
            env.pin,
            Cpu::Hub,
            &programs.netsvc,
            &[
                "exchange".to_owned(),
                "--listen".to_owned(),
                hub_addr.clone(),
                "--http".to_owned(),
                http_addr.clone(),
            ],
            &env.workdir.join("netsvc-exchange.log"),
        )?;
        wait_listening(&http_addr, Duration::from_secs(10))
            .await
            .context("netsvc exchange --http did not start")?;
        let mut demo = Proc::server(
            env.pin,
            Cpu::Load,
            &programs.netsvc,
            &["demo".to_owned(), "--connect".to_owned(), hub_addr.clone()],
            &env.workdir.join("netsvc-demo.log"),
        )?;
        let outcome = async {
            wait_echo(&http_addr, "/service/echo").await?;
            for (kind, addr) in [
                (Kind::GatewayJson1, &http_addr),
                (Kind::GatewayJson2, &http_addr),
                (Kind::Native, &hub_addr),
            ] {
                runs.push(caller(env, kind, addr, "echo", round).await?);
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        demo.kill().await;
        hub.kill().await;
        outcome?;
    }
    if let Some(probe) = &programs.ose_probe {
        let port = |addr: &str| addr.rsplit(':').next().unwrap_or("").to_owned();
        let exchange_addr = free_addr()?;
        let http_addr = free_addr()?;
        // A safety net: the probes exit on their own well after the round would end.
        let exit_after = "600".to_owned();
        let mut gateway = Proc::server(
            env.pin,
            Cpu::Hub,
            probe,
            &[
                "-listen".to_owned(),
                port(&exchange_addr),
                "-http".to_owned(),
                port(&http_addr),
                "-name".to_owned(),
                "ose-gw".to_owned(),
                "-quiet".to_owned(),
                "-exit".to_owned(),
                exit_after.clone(),
            ],
            &env.workdir.join("ose-gateway.log"),
        )?;
        wait_listening(&exchange_addr, Duration::from_secs(10))
            .await
            .context("oseprobe -listen did not start")?;
        let mut service = Proc::server(
            env.pin,
            Cpu::Load,
            probe,
            &[
                "-connect".to_owned(),
                port(&exchange_addr),
                "-name".to_owned(),
                "ose-echo".to_owned(),
                "-quiet".to_owned(),
                "-exit".to_owned(),
                exit_after,
            ],
            &env.workdir.join("ose-echo.log"),
        )?;
        let outcome = async {
            wait_listening(&http_addr, Duration::from_secs(10)).await?;
            wait_echo(&http_addr, "/service/ose-echo").await?;
            caller(env, Kind::Original, &http_addr, "ose-echo", round).await
        }
        .await;
        service.kill().await;
        gateway.kill().await;
        runs.push(outcome?);
    }
    Ok(runs)
}

/// Waits (at most 30 s) until the gateway at `addr` echoes through `path`: the service is
/// known to it.
async fn wait_echo(addr: &str, path: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut client = http::Client::new(addr);
        let text = echo_text(0);
        let outcome = match client
            .post(path, "application/json", &json1_body(0, &text))
            .await
        {
            Ok(reply) => check_json1(&reply, 0, &text),
            Err(e) => Err(e),
        };
        let last = match outcome {
            Ok(()) => return Ok(()),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("no echo through {addr}{path} within 30 s; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn caller(env: &Env, kind: Kind, addr: &str, service: &str, round: usize) -> Result<Run> {
    let (warmup_ms, secs) = durations(env);
    let name = format!(
        "gw-caller-{}",
        serde_json::to_value(kind)?.as_str().unwrap_or("?")
    );
    let kind_arg = kind
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .context("kind has a name")?;
    let args = vec![
        "gw-caller".to_owned(),
        "--kind".to_owned(),
        kind_arg,
        "--addr".to_owned(),
        addr.to_owned(),
        "--service".to_owned(),
        service.to_owned(),
        "--warmup-ms".to_owned(),
        warmup_ms.to_string(),
        "--secs".to_owned(),
        secs.to_string(),
    ];
    let mut p = env.role(Cpu::Load, &name, &args)?;
    p.expect("READY", Duration::from_secs(30)).await?;
    p.send("GO").await?;
    let budget = Duration::from_secs_f64(warmup_ms as f64 / 1e3 + secs + 30.0);
    let mut run: Run = p.result(budget).await?;
    p.finish(Duration::from_secs(2)).await;
    run.round = round;
    Ok(run)
}

/// The string echoed by call `seq`: the number, then padding to [`TEXT_LEN`].
pub(crate) fn echo_text(seq: u64) -> String {
    let mut text = format!("{seq:020}-");
    while text.len() < TEXT_LEN {
        text.push('x');
    }
    text
}

fn json1_body(seq: u64, text: &str) -> Vec<u8> {
    format!(r#"{{"id":{seq},"method":"echo","params":["{text}"]}}"#).into_bytes()
}

fn json2_body(seq: u64, service: &str, text: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{seq},"method":"{service}.echo","params":["{text}"]}}"#)
        .into_bytes()
}

fn reply_json(reply: &http::Reply) -> Result<serde_json::Value> {
    ensure!(reply.status == 200, "HTTP status {}", reply.status);
    serde_json::from_slice(&reply.body)
        .with_context(|| format!("reply not JSON: {:?}", String::from_utf8_lossy(&reply.body)))
}

/// A JSON-RPC 1.0 reply (`result`, `error`, `id`) echoing `text` for call `seq`.
fn check_json1(reply: &http::Reply, seq: u64, text: &str) -> Result<()> {
    let json = reply_json(reply)?;
    ensure!(
        json["result"] == text && json["error"].is_null() && json["id"] == seq,
        "wrong reply {json}"
    );
    Ok(())
}

/// A JSON-RPC 2.0 reply echoing `text` for call `seq`.
fn check_json2(reply: &http::Reply, seq: u64, text: &str) -> Result<()> {
    let json = reply_json(reply)?;
    ensure!(
        json["jsonrpc"] == "2.0"
            && json["result"] == text
            && json.get("error").is_none()
            && json["id"] == seq,
        "wrong reply {json}"
    );
    Ok(())
}

/// One HTTP client's state.
struct HttpWorker {
    client: http::Client,
    /// This worker's next sequence number (workers count in disjoint strides).
    seq: u64,
}

/// `role gw-caller`.
pub(crate) async fn caller_role(args: CallerArgs) -> Result<()> {
    let mut commands = Commands::new();
    let (summary, rps, connects) = match args.kind {
        Kind::Native => native(&args, &mut commands).await?,
        Kind::GatewayJson1 | Kind::GatewayJson2 | Kind::Original => {
            through_http(&args, &mut commands).await?
        }
    };
    crate::proc::emit(
        "RESULT",
        &Run {
            round: 0,
            kind: args.kind,
            rps,
            latency: summary,
            connects,
        },
    )?;
    commands.wait_end().await
}

async fn through_http(args: &CallerArgs, commands: &mut Commands) -> Result<(Summary, f64, u64)> {
    let (path, json2) = match args.kind {
        Kind::GatewayJson2 => ("/jsonrpc".to_owned(), true),
        _ => (format!("/service/{}", args.service), false),
    };
    let service = args.service.as_str();
    let call = async |w: &mut HttpWorker| -> Result<u64> {
        let seq = w.seq;
        w.seq += CLIENTS as u64;
        let text = echo_text(seq);
        let body = if json2 {
            json2_body(seq, service, &text)
        } else {
            json1_body(seq, &text)
        };
        let start = Instant::now();
        let reply = w.client.post(&path, "application/json", &body).await?;
        let ns = start.elapsed().as_nanos() as u64;
        if json2 {
            check_json2(&reply, seq, &text)?;
        } else {
            check_json1(&reply, seq, &text)?;
        }
        Ok(ns)
    };
    let workers = || -> Vec<HttpWorker> {
        (0..CLIENTS as u64)
            .map(|i| HttpWorker {
                client: http::Client::new(&args.addr),
                seq: i,
            })
            .collect()
    };
    ready("gw-caller");
    commands.expect("GO").await?;
    // Warm-up on the same clients' connections as the measurement would use; the
    // measurement then opens its own, so that its connection count is its own.
    super::w2::in_flight(workers(), args.warmup_ms as f64 / 1e3, &call).await?;
    let mut measured = workers();
    for w in &mut measured {
        // Connected before the clock starts, as kept-alive clients are.
        w.client.connect().await?;
    }
    let connected: u64 = measured.iter().map(|w| w.client.connects).sum();
    let counts = std::cell::Cell::new(0u64);
    let (summary, rps) = super::w2::in_flight(measured, args.secs, async |w: &mut HttpWorker| {
        let before = w.client.connects;
        let ns = call(w).await?;
        counts.set(counts.get() + w.client.connects - before);
        Ok(ns)
    })
    .await?;
    Ok((summary, rps, connected + counts.get()))
}

async fn native(args: &CallerArgs, commands: &mut Commands) -> Result<(Summary, f64, u64)> {
    let (rt, _exchange) = crate::adapters::netsvc::connect_client(
        &args.addr,
        crate::adapters::netsvc::client_config(),
        Retry::every(Duration::from_millis(50)),
        Duration::from_secs(30),
    )
    .await?;
    let endpoint = rt.endpoint(args.service.as_str());
    tokio::time::timeout(Duration::from_secs(10), async {
        while !endpoint.is_available() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .context("echo service not visible")?;
    let call = async |seq: &mut u64| -> Result<u64> {
        let n = *seq;
        *seq += CLIENTS as u64;
        let text = echo_text(n);
        let start = Instant::now();
        let reply = endpoint
            .call("echo", vec![Value::String(text.clone())])
            .await?;
        let ns = start.elapsed().as_nanos() as u64;
        ensure!(
            reply.as_str() == Some(text.as_str()),
            "wrong reply {reply:?}"
        );
        Ok(ns)
    };
    let workers = || (0..CLIENTS as u64).collect::<Vec<u64>>();
    ready("gw-caller");
    commands.expect("GO").await?;
    super::w2::in_flight(workers(), args.warmup_ms as f64 / 1e3, &call).await?;
    let (summary, rps) = super::w2::in_flight(workers(), args.secs, &call).await?;
    // One exchange link carries every call.
    Ok((summary, rps, 1))
}
