//! The orchestrator's environment: where the binaries are, pinning, and starting hubs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::adapters::System;
use crate::proc::{Cpu, Proc};

/// A peer server binary and its committed configuration.
#[derive(Debug, Clone)]
pub(crate) struct PeerServer {
    /// The program (`/usr/sbin/nats-server`, `/usr/sbin/mosquitto`).
    pub(crate) program: PathBuf,
    /// Its configuration file (`bench/nats.conf`, `bench/mosquitto.conf`).
    pub(crate) config: PathBuf,
    /// The port the configuration listens on (127.0.0.1).
    pub(crate) port: u16,
}

/// Everything a workload needs to start processes.
#[derive(Debug)]
pub(crate) struct Env {
    /// This binary, spawned again in roles.
    pub(crate) exe: PathBuf,
    /// Whether processes are pinned with `taskset`.
    pub(crate) pin: bool,
    /// Smaller counts and fewer cases.
    pub(crate) quick: bool,
    /// nats-server, when available.
    pub(crate) nats: Option<PeerServer>,
    /// mosquitto, when available.
    pub(crate) mqtt: Option<PeerServer>,
    /// Scratch space: server logs, the JetStream store.
    pub(crate) workdir: PathBuf,
}

/// How to start a hub.
#[derive(Debug, Clone, Default)]
pub(crate) struct HubOptions {
    /// nats-server with JetStream (W4).
    pub(crate) jetstream: bool,
    /// Listen here instead of a fresh port (restarts in W5). Peer servers always use their
    /// configured port.
    pub(crate) addr: Option<String>,
}

/// A hub's live heap, from its counting allocator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Heap {
    /// Bytes requested from the allocator and not freed.
    pub(crate) bytes: u64,
    /// Live blocks.
    pub(crate) blocks: u64,
}

/// A running hub (or, for direct TCP, just the rendezvous address).
#[derive(Debug)]
pub(crate) struct Hub {
    /// `127.0.0.1:PORT`.
    pub(crate) addr: String,
    proc: Option<Proc>,
    /// One of our roles (not a peer server).
    own: bool,
}

impl Hub {
    /// The hub's resident set size (KiB).
    pub(crate) fn rss_kib(&self) -> Result<u64> {
        self.proc.as_ref().context("no hub process")?.rss_kib()
    }

    /// The hub's live heap (`netsvc-memhub` only).
    pub(crate) async fn heap(&mut self) -> Result<Heap> {
        let p = self.proc()?;
        p.send("HEAP").await?;
        let json = p.expect("HEAP", Duration::from_secs(10)).await?;
        serde_json::from_str(&json).with_context(|| format!("bad HEAP answer {json}"))
    }

    /// The hub's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// The hub process, for workload commands (netsvc hub: `COUNT`).
    pub(crate) fn proc(&mut self) -> Result<&mut Proc> {
        self.proc.as_mut().context("no hub process")
    }

    /// Stops the hub: our own roles end when their stdin closes (so a profiler wrapping
    /// them can write its data); peer servers are killed.
    pub(crate) async fn stop(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            if self.own {
                p.finish(Duration::from_secs(10)).await;
            } else {
                p.kill().await;
            }
        }
        self.proc = None;
    }

    /// SIGKILL, as in a crash.
    pub(crate) async fn kill(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.kill().await;
        }
        self.proc = None;
    }
}

/// A nats-server monitoring endpoint's JSON (`GET` over HTTP/1.0, read to the end), or
/// `None` while it does not answer.
async fn monitoring_json(addr: &str, path: &str) -> Option<serde_json::Value> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response);
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// A free port on 127.0.0.1 (free now; bound again a moment later by a child).
pub(crate) fn free_addr() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// Waits until something accepts TCP connections on `addr`.
pub(crate) async fn wait_listening(addr: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("nothing listening on {addr} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

impl Env {
    /// Starts one of our roles on a CPU.
    pub(crate) fn role(&self, cpu: Cpu, name: &str, args: &[String]) -> Result<Proc> {
        Proc::role(self.pin, cpu, &self.exe, name, args)
    }

    /// Whether this system can run here (its server is installed).
    pub(crate) fn available(&self, system: System) -> bool {
        match system {
            System::Nats => self.nats.is_some(),
            // A `--tls` run has TLS for netsvc and NATS only.
            System::Mqtt => self.mqtt.is_some() && crate::adapters::tls_dir().is_none(),
            System::Tcp | System::TcpDirect => crate::adapters::tls_dir().is_none(),
            System::Netsvc => true,
        }
    }

    /// Starts `netsvc-memhub` (the netsvc hub with a heap counter, built next to this binary)
    /// on CPU 0 and waits until it accepts connections.
    pub(crate) async fn start_netsvc_memhub(&self) -> Result<Hub> {
        let program = self.exe.with_file_name("netsvc-memhub");
        let mut p = Proc::program(
            self.pin,
            Cpu::Hub,
            &program,
            "netsvc-memhub",
            &["--listen".to_owned(), free_addr()?],
        )?;
        let addr = p.expect("READY", Duration::from_secs(10)).await?;
        wait_listening(&addr, Duration::from_secs(10))
            .await
            .context("netsvc-memhub did not start")?;
        Ok(Hub {
            addr,
            proc: Some(p),
            own: true,
        })
    }

    /// Starts the hub of `system` on CPU 0 and waits until it accepts connections.
    /// A netsvc hub role with these extra arguments (`--connect ADDR`, `--nats URL`), on a
    /// fresh port.
    pub(crate) async fn start_netsvc_hub_with(&self, extra: &[String]) -> Result<Hub> {
        let mut args = vec!["netsvc-hub".to_owned(), "--listen".to_owned(), free_addr()?];
        args.extend(extra.iter().cloned());
        let mut p = self.role(Cpu::Hub, "netsvc-hub", &args)?;
        let addr = p.expect("READY", Duration::from_secs(10)).await?;
        Ok(Hub {
            addr,
            proc: Some(p),
            own: true,
        })
    }

    /// A cluster of `nodes` nats-servers routed to each other, on fresh ports (the committed
    /// configuration, with the cluster's flags), each ready and routed to all others. The
    /// hubs' addresses are their client ports.
    pub(crate) async fn start_nats_cluster(&self, nodes: usize) -> Result<Vec<Hub>> {
        let nats = self.nats.as_ref().context("nats-server not available")?;
        let ports: Vec<(String, String, String)> = (0..nodes)
            .map(|_| Ok((free_addr()?, free_addr()?, free_addr()?)))
            .collect::<Result<_>>()?;
        let port = |addr: &str| addr.rsplit(':').next().unwrap_or_default().to_owned();
        let mut hubs = Vec::with_capacity(nodes);
        for (i, (client, cluster, monitor)) in ports.iter().enumerate() {
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, (_, c, _))| format!("nats://{c}"))
                .collect();
            let args: Vec<String> = [
                "-c",
                &nats.config.display().to_string(),
                "-a",
                "127.0.0.1",
                "-p",
                &port(client),
                "-m",
                &port(monitor),
                "--cluster_name",
                "netsvc-bench",
                "--name",
                &format!("n{i}"),
                "--cluster",
                &format!("nats://{cluster}"),
                "--routes",
                &routes.join(","),
            ]
            .map(str::to_owned)
            .to_vec();
            let log = self.workdir.join(format!("nats-node-{i}.log"));
            let p = Proc::server(self.pin, Cpu::Hub, &nats.program, &args, &log)?;
            hubs.push(Hub {
                addr: client.clone(),
                proc: Some(p),
                own: false,
            });
        }
        for ((client, _, monitor), _) in ports.iter().zip(&hubs) {
            wait_listening(client, Duration::from_secs(10)).await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while monitoring_json(monitor, "/routez")
                .await
                .and_then(|j| j["num_routes"].as_u64())
                .is_none_or(|routes| (routes as usize) < nodes - 1)
            {
                if tokio::time::Instant::now() > deadline {
                    bail!("nats-server at {client} did not join its cluster");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(hubs)
    }

    pub(crate) async fn start_hub(&self, system: System, options: HubOptions) -> Result<Hub> {
        let listen = match &options.addr {
            Some(a) => a.clone(),
            None => free_addr()?,
        };
        let (addr, proc) = match system {
            System::Netsvc | System::Tcp => {
                let role = if system == System::Netsvc {
                    "netsvc-hub"
                } else {
                    "tcp-hub"
                };
                let mut p = self.role(
                    Cpu::Hub,
                    role,
                    &[role.to_owned(), "--listen".to_owned(), listen],
                )?;
                let addr = p.expect("READY", Duration::from_secs(10)).await?;
                (addr, Some(p))
            }
            System::TcpDirect => (listen, None),
            System::Nats => {
                let nats = self.nats.as_ref().context("nats-server not available")?;
                let config = match crate::adapters::tls_dir() {
                    Some(dir) => {
                        // The committed configuration and a TLS block.
                        let mut text = std::fs::read_to_string(&nats.config)?;
                        text.push_str(&format!(
                            "\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
                            dir.join("hub.pem").display(),
                            dir.join("hub.key").display()
                        ));
                        let path = self.workdir.join("nats-tls.conf");
                        std::fs::write(&path, text)?;
                        path
                    }
                    None => nats.config.clone(),
                };
                let mut args = vec![
                    "-c".to_owned(),
                    config.display().to_string(),
                    "-a".to_owned(),
                    "127.0.0.1".to_owned(),
                    "-p".to_owned(),
                    nats.port.to_string(),
                ];
                if options.jetstream {
                    let store = self.workdir.join("jetstream");
                    let _ = std::fs::remove_dir_all(&store);
                    args.extend([
                        "-js".to_owned(),
                        "-sd".to_owned(),
                        store.display().to_string(),
                    ]);
                }
                let log = self.workdir.join("nats-server.log");
                let p = Proc::server(self.pin, Cpu::Hub, &nats.program, &args, &log)?;
                (format!("127.0.0.1:{}", nats.port), Some(p))
            }
            System::Mqtt => {
                let mqtt = self.mqtt.as_ref().context("mosquitto not available")?;
                let args = vec!["-c".to_owned(), mqtt.config.display().to_string()];
                let log = self.workdir.join("mosquitto.log");
                let p = Proc::server(self.pin, Cpu::Hub, &mqtt.program, &args, &log)?;
                (format!("127.0.0.1:{}", mqtt.port), Some(p))
            }
        };
        if proc.is_some() {
            wait_listening(&addr, Duration::from_secs(10))
                .await
                .with_context(|| format!("{system} hub did not start"))?;
        }
        Ok(Hub {
            addr,
            proc,
            own: matches!(system, System::Netsvc | System::Tcp),
        })
    }
}
