//! The OSE workload: the sequential (closed loop, one call at a time) round trip of `echo`
//! with a 128-character string, to an original OSE process hosting `ose-echo`, through a
//! netsvc hub and through the original's own hub. Needs `--ose-probe PATH` (the original's
//! probe, built elsewhere; this tool never builds it).
//!
//! Three targets, each in a fresh set of processes, each with the hub on CPU 0 and the
//! service and the caller on CPU 1:
//!
//! - `netsvc-to-ose`: `netsvc exchange --listen A --ose-listen O` (the real CLI binary),
//!   `oseprobe -connect O -name ose-echo`, and a native netsvc client runtime on A calling
//!   `ose-echo.echo`: a netsvc caller to an original service through a netsvc hub.
//! - `ose-via-netsvc`: the same hub and service; the caller speaks the OSE protocol itself
//!   (a thin client on `netsvc_ose`'s sans-IO frames) to the hub's OSE port O.
//! - `ose-via-original`: `oseprobe -listen P -name ose-hub` as the hub, `oseprobe -connect
//!   P -name ose-echo`, and the same thin OSE caller on P: the original's own round trip.
//!
//! Every reply is checked: the echoed string (which carries a sequence number) must come
//! back as the result.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use netsvc::{Retry, Value};
use netsvc_gateway::codec::{XmlLimits, netrpc};
use netsvc_ose::ids::Ids;
use netsvc_ose::message::subjects;
use netsvc_ose::{Envelope, ExchangeRole, FrameDecoder, Message, Outbound};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::gateway::echo_text;
use crate::harness::{Env, free_addr, wait_listening};
use crate::proc::{Commands, Cpu, Proc, ready};
use crate::stats::{Latency, Summary};

/// The service the probe hosts.
const SERVICE: &str = "ose-echo";

/// What a caller measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// A native netsvc caller, through a netsvc hub, to the original's `ose-echo`.
    NetsvcToOse,
    /// An OSE-protocol caller, through a netsvc hub's OSE port, to the original's `ose-echo`.
    OseViaNetsvc,
    /// The same OSE-protocol caller through the original's hub to the original's `ose-echo`.
    OseViaOriginal,
}

impl Kind {
    /// The targets, in the order they run and are shown.
    pub(crate) const ALL: [Self; 3] = [Self::NetsvcToOse, Self::OseViaNetsvc, Self::OseViaOriginal];

    /// The label in result tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::NetsvcToOse => {
                "`netsvc-to-ose`: netsvc caller → netsvc hub → original `ose-echo`"
            }
            Self::OseViaNetsvc => {
                "`ose-via-netsvc`: OSE-protocol caller → netsvc hub (OSE port) → original `ose-echo`"
            }
            Self::OseViaOriginal => {
                "`ose-via-original`: OSE-protocol caller → original hub → original `ose-echo`"
            }
        }
    }

    fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// `role ose-caller` arguments.
#[derive(Debug, Clone, Args)]
pub(crate) struct CallerArgs {
    #[arg(long, value_enum)]
    pub(crate) kind: Kind,
    /// The hub's `HOST:PORT`: its native port for `netsvc-to-ose`, else its OSE port.
    #[arg(long)]
    pub(crate) addr: String,
    #[arg(long)]
    pub(crate) warmup_ms: u64,
    #[arg(long)]
    pub(crate) secs: f64,
}

/// The figures of one target in one round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Run {
    /// Which round of the run.
    pub(crate) round: usize,
    pub(crate) kind: Kind,
    /// Calls per second (one at a time).
    pub(crate) rps: f64,
    pub(crate) latency: Summary,
}

fn durations(env: &Env) -> (u64, f64) {
    if env.quick { (300, 1.0) } else { (1_000, 5.0) }
}

/// The port of a `HOST:PORT`.
fn port(addr: &str) -> String {
    addr.rsplit(':').next().unwrap_or("").to_owned()
}

/// A safety net: the probes exit on their own well after a target would end.
const PROBE_EXIT_SECS: &str = "600";

/// `oseprobe -connect PORT -name ose-echo`: the echo service on the load CPU.
fn echo_probe(env: &Env, probe: &Path, hub_port: &str, log: &str) -> Result<Proc> {
    Proc::server(
        env.pin,
        Cpu::Load,
        probe,
        &[
            "-connect".to_owned(),
            hub_port.to_owned(),
            "-name".to_owned(),
            SERVICE.to_owned(),
            "-quiet".to_owned(),
            "-exit".to_owned(),
            PROBE_EXIT_SECS.to_owned(),
        ],
        &env.workdir.join(log),
    )
}

/// One round: every target once, each in its own processes, back to back.
pub(crate) async fn run(env: &Env, netsvc: &Path, probe: &Path, round: usize) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for kind in [Kind::NetsvcToOse, Kind::OseViaNetsvc] {
        let hub_addr = free_addr()?;
        let ose_addr = free_addr()?;
        let mut hub = Proc::server(
            env.pin,
            Cpu::Hub,
            netsvc,
            &[
                "exchange".to_owned(),
                "--listen".to_owned(),
                hub_addr.clone(),
                "--ose-listen".to_owned(),
                ose_addr.clone(),
            ],
            &env.workdir
                .join(format!("ose-{}-exchange.log", kind.name())),
        )?;
        let outcome = async {
            wait_listening(&ose_addr, Duration::from_secs(10))
                .await
                .context("netsvc exchange --ose-listen did not start")?;
            let mut service = echo_probe(
                env,
                probe,
                &port(&ose_addr),
                &format!("ose-{}-echo.log", kind.name()),
            )?;
            let addr = if kind == Kind::NetsvcToOse {
                &hub_addr
            } else {
                &ose_addr
            };
            let outcome = caller(env, kind, addr, round).await;
            service.kill().await;
            outcome
        }
        .await;
        hub.kill().await;
        runs.push(outcome?);
    }
    let hub_addr = free_addr()?;
    let mut hub = Proc::server(
        env.pin,
        Cpu::Hub,
        probe,
        &[
            "-listen".to_owned(),
            port(&hub_addr),
            "-name".to_owned(),
            "ose-hub".to_owned(),
            "-quiet".to_owned(),
            "-exit".to_owned(),
            PROBE_EXIT_SECS.to_owned(),
        ],
        &env.workdir.join("ose-original-hub.log"),
    )?;
    let outcome = async {
        wait_listening(&hub_addr, Duration::from_secs(10))
            .await
            .context("oseprobe -listen did not start")?;
        let mut service = echo_probe(env, probe, &port(&hub_addr), "ose-original-echo.log")?;
        let outcome = caller(env, Kind::OseViaOriginal, &hub_addr, round).await;
        service.kill().await;
        outcome
    }
    .await;
    hub.kill().await;
    runs.push(outcome?);
    Ok(runs)
}

async fn caller(env: &Env, kind: Kind, addr: &str, round: usize) -> Result<Run> {
    let (warmup_ms, secs) = durations(env);
    let args = vec![
        "ose-caller".to_owned(),
        "--kind".to_owned(),
        kind.name(),
        "--addr".to_owned(),
        addr.to_owned(),
        "--warmup-ms".to_owned(),
        warmup_ms.to_string(),
        "--secs".to_owned(),
        secs.to_string(),
    ];
    let mut p = env.role(Cpu::Load, &format!("ose-caller-{}", kind.name()), &args)?;
    // The caller is ready once it sees the service (the probe retries its connection
    // every second).
    p.expect("READY", Duration::from_secs(40)).await?;
    p.send("GO").await?;
    let budget = Duration::from_secs_f64(warmup_ms as f64 / 1e3 + secs + 30.0);
    let mut run: Run = p.result(budget).await?;
    p.finish(Duration::from_secs(2)).await;
    run.round = round;
    Ok(run)
}

/// `role ose-caller`.
pub(crate) async fn caller_role(args: CallerArgs) -> Result<()> {
    let mut commands = Commands::new();
    let (latency, rps) = match args.kind {
        Kind::NetsvcToOse => native(&args, &mut commands).await?,
        Kind::OseViaNetsvc | Kind::OseViaOriginal => {
            let mut client = OseCaller::connect(&args.addr).await?;
            let mut seq = 0u64;
            sequential(&args, &mut commands, async || {
                seq += 1;
                client.echo(&echo_text(seq)).await
            })
            .await?
        }
    };
    crate::proc::emit(
        "RESULT",
        &Run {
            round: 0,
            kind: args.kind,
            rps,
            latency,
        },
    )?;
    commands.wait_end().await
}

/// Says READY, waits for GO, calls for the warm-up, then for the measured time: the
/// latencies and the calls per second. `call` returns one round trip's nanoseconds.
async fn sequential<F>(
    args: &CallerArgs,
    commands: &mut Commands,
    mut call: F,
) -> Result<(Summary, f64)>
where
    F: AsyncFnMut() -> Result<u64>,
{
    ready("ose-caller");
    commands.expect("GO").await?;
    let warm_until = Instant::now() + Duration::from_millis(args.warmup_ms);
    while Instant::now() < warm_until {
        call().await?;
    }
    let mut h = Latency::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.secs);
    while Instant::now() < deadline {
        h.record_ns(call().await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let summary = h.summary();
    Ok((summary, summary.count as f64 / elapsed))
}

async fn native(args: &CallerArgs, commands: &mut Commands) -> Result<(Summary, f64)> {
    let (rt, _exchange) = crate::adapters::netsvc::connect_client(
        &args.addr,
        crate::adapters::netsvc::client_config(),
        Retry::every(Duration::from_millis(50)),
        Duration::from_secs(30),
    )
    .await?;
    let endpoint = rt.endpoint(SERVICE);
    tokio::time::timeout(Duration::from_secs(30), async {
        while !endpoint.is_available() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .context("ose-echo not visible through the hub")?;
    let mut seq = 0u64;
    sequential(args, commands, async || {
        seq += 1;
        let text = echo_text(seq);
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
    })
    .await
}

/// A thin OSE-protocol client: the handshake, then one request at a time to `ose-echo`.
struct OseCaller {
    stream: TcpStream,
    decoder: FrameDecoder,
    ids: Ids,
    out: Outbound,
    /// `ose-echo`'s address relative to the hub.
    to: String,
    /// Where answers come back: an anonymous receiver of this process.
    from: String,
}

impl OseCaller {
    /// Connects (retrying for 10 s), shakes hands as an exchange client and waits (at most
    /// 30 s) for `ose-echo` to be announced.
    async fn connect(addr: &str) -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match TcpStream::connect(addr).await {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(e).with_context(|| format!("connect {addr}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        stream.set_nodelay(true)?;
        let ids = Ids::new(Ipv4Addr::LOCALHOST);
        let out = Outbound {
            endpoint: ids.endpoint(),
            exchange: "$E".to_owned(),
        };
        let from = format!("$RELAY!{}", ids.receiver());
        let mut caller = Self {
            stream,
            decoder: FrameDecoder::default(),
            ids,
            out,
            to: String::new(),
            from,
        };
        tokio::time::timeout(Duration::from_secs(30), caller.handshake())
            .await
            .context("no ose-echo announced within 30 s")??;
        Ok(caller)
    }

    async fn handshake(&mut self) -> Result<()> {
        let conversation = self.ids.conversation();
        let announce = self.out.endpoint_announce(&conversation);
        self.send(&announce).await?;
        loop {
            let envelope = self.next().await?;
            if envelope.subject == subjects::ENDPOINT_ANNOUNCE {
                break;
            }
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        let identity = format!("{host}:{}", std::process::id());
        let conversation = self.ids.conversation();
        let announce =
            self.out
                .exchange_announce(ExchangeRole::Client, &identity, &conversation, 0);
        self.send(&announce).await?;
        loop {
            let envelope = self.next().await?;
            if let Ok(Message::ServiceAvailable(record)) = Message::parse(&envelope)
                && record.name == SERVICE
            {
                self.to = record.relative_address();
                return Ok(());
            }
        }
    }

    async fn send(&mut self, envelope: &Envelope) -> Result<()> {
        self.stream.write_all(&envelope.to_bytes()).await?;
        Ok(())
    }

    /// The next frame from the hub.
    async fn next(&mut self) -> Result<Envelope> {
        loop {
            if let Some(envelope) = self.decoder.next_frame()? {
                return Ok(envelope);
            }
            if self.stream.read_buf(self.decoder.buffer_mut()).await? == 0 {
                bail!("the hub closed the OSE connection");
            }
        }
    }

    /// One `echo(text)`, checked: its round trip's nanoseconds.
    async fn echo(&mut self, text: &str) -> Result<u64> {
        let conversation = self.ids.conversation();
        let payload = netrpc::encode(&Value::List(vec![Value::String(text.to_owned())]));
        let request = self
            .out
            .request(&self.to, &self.from, "echo", &conversation, payload);
        let start = Instant::now();
        self.send(&request).await?;
        let reply = loop {
            let envelope = self.next().await?;
            if envelope.conversation != conversation {
                continue;
            }
            match envelope.subject.as_str() {
                subjects::RESPONSE => break envelope,
                subjects::FAILURE => bail!(
                    "echo failed: {}",
                    String::from_utf8_lossy(&envelope.content).replace('\0', " | ")
                ),
                _ => {}
            }
        };
        let ns = start.elapsed().as_nanos() as u64;
        let value = netrpc::decode(&reply.content, XmlLimits::DEFAULT)
            .map_err(|e| anyhow::anyhow!("reply not NET-RPC: {e}"))?;
        ensure!(
            value.as_str() == Some(text),
            "wrong reply {value:?} for {text:?}"
        );
        Ok(ns)
    }
}
