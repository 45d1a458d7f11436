//! Processes and the line protocol between the orchestrator and its children.
//!
//! The orchestrator (`netsvc-bench run`) spawns every other process of a case: the hub
//! (our own `role netsvc-hub` or `role tcp-hub`, or `nats-server` / `mosquitto`) pinned to
//! CPU 0, and the load roles (`role w1-sub`, `role w2-caller`, ...) pinned to CPU 1.
//!
//! A role talks on stdout in tagged lines: `READY <text>` once it is set up, `RESULT <json>`
//! with its figures, and whatever other tags a workload defines (`DONE`, `COUNT <json>`, ...).
//! Untagged lines are passed through to the orchestrator's stderr. The orchestrator sends
//! commands on the role's stdin, one per line (`GO`, `END 1000`, ...).

use std::fmt::Display;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Which CPU a process belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cpu {
    /// CPU 0: the hub or broker.
    Hub,
    /// CPU 1: publishers, subscribers, callers, services.
    Load,
}

impl Cpu {
    fn id(self) -> &'static str {
        match self {
            Self::Hub => "0",
            Self::Load => "1",
        }
    }
}

/// Whether `taskset` can pin processes to CPU 0 and CPU 1 here.
pub(crate) fn taskset_works() -> bool {
    ["0", "1"].iter().all(|cpu| {
        std::process::Command::new("taskset")
            .args(["-c", cpu, "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn command(pin: bool, cpu: Cpu, program: &Path, args: &[String]) -> Command {
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu.id()).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).kill_on_drop(true);
    cmd
}

/// A child process; killed when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<Lines<BufReader<ChildStdout>>>,
}

impl Proc {
    /// Starts one of our own roles: `<exe> role <args...>`, talking the line protocol.
    ///
    /// For profiling, `NETSVC_BENCH_PROFILE_ROLE=<role>` with `NETSVC_BENCH_PROFILE_WRAPPER=
    /// "valgrind --tool=callgrind"` (say) runs that role under the wrapper.
    pub(crate) fn role(
        pin: bool,
        cpu: Cpu,
        exe: &Path,
        name: &str,
        args: &[String],
    ) -> Result<Self> {
        let mut all = vec!["role".to_owned()];
        if let Some(dir) = crate::adapters::tls_dir() {
            all.extend(["--tls".to_owned(), dir.display().to_string()]);
        }
        all.extend_from_slice(args);
        let mut program = exe.to_path_buf();
        if let (Ok(role), Ok(wrapper)) = (
            std::env::var("NETSVC_BENCH_PROFILE_ROLE"),
            std::env::var("NETSVC_BENCH_PROFILE_WRAPPER"),
        ) && args.first() == Some(&role)
        {
            let mut words = wrapper.split_whitespace().map(str::to_owned);
            if let Some(first) = words.next() {
                let mut wrapped: Vec<String> = words.collect();
                wrapped.push(exe.display().to_string());
                wrapped.append(&mut all);
                all = wrapped;
                program = first.into();
            }
        }
        Self::program(pin, cpu, &program, name, &all)
    }

    /// Starts a program that talks the line protocol (a role, or `netsvc-memhub`).
    pub(crate) fn program(
        pin: bool,
        cpu: Cpu,
        program: &Path,
        name: &str,
        args: &[String],
    ) -> Result<Self> {
        let mut child = command(pin, cpu, program, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdin = child.stdin.take();
        let lines = child.stdout.take().map(|s| BufReader::new(s).lines());
        Ok(Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
        })
    }

    /// Starts a peer server (`nats-server`, `mosquitto`) with its output going to `log`.
    pub(crate) fn server(
        pin: bool,
        cpu: Cpu,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Self> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command(pin, cpu, program, args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self {
            name: program.display().to_string(),
            child,
            stdin: None,
            lines: None,
        })
    }

    /// The process id (with `taskset`, the same process: it execs the program).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends one command line.
    pub(crate) async fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("no stdin")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Waits for a line tagged `tag` and returns the rest of it; other lines are logged.
    pub(crate) async fn expect(&mut self, tag: &str, timeout: Duration) -> Result<String> {
        let name = self.name.clone();
        let lines = self.lines.as_mut().context("no stdout")?;
        let wait = async {
            loop {
                let Some(line) = lines.next_line().await? else {
                    bail!("{name} exited before {tag}");
                };
                let (head, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                if head == tag {
                    return Ok(rest.to_owned());
                }
                // Anything else (a late `DONE`, a log line) is shown and skipped.
                eprintln!("  [{name}] {line}");
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => bail!("{name}: no {tag} within {timeout:?}"),
        }
    }

    /// Waits for `RESULT <json>` and decodes it.
    pub(crate) async fn result<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T> {
        let json = self.expect("RESULT", timeout).await?;
        serde_json::from_str(&json).with_context(|| format!("{}: bad RESULT {json}", self.name))
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub(crate) async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Closes stdin (roles end on EOF) and waits up to `grace` for the exit, then kills.
    pub(crate) async fn finish(&mut self, grace: Duration) {
        self.stdin.take();
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.kill().await;
        }
    }

    /// The resident set size in KiB, from `/proc/PID/status`.
    pub(crate) fn rss_kib(&self) -> Result<u64> {
        let pid = self.pid().context("process has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")
    }
}

/// A process's CPU time so far (user + system, in clock ticks); 0 once it is gone.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime (fields 14 and 15 of stat) are the 12th and 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    ticks(11) + ticks(12)
}

/// Waits until none of `pids` uses more than about 2% of a CPU (its queues have drained),
/// at most `timeout`.
pub(crate) async fn wait_quiet(pids: &[u32], timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    let total = || pids.iter().map(|&p| cpu_ticks(p)).collect::<Vec<_>>();
    let mut last = total();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = total();
        let busy = now.iter().zip(&last).any(|(n, l)| n.saturating_sub(*l) > 1);
        if !busy || tokio::time::Instant::now() > deadline {
            return;
        }
        last = now;
    }
}

/// The role side of the protocol: commands from stdin, tagged lines to stdout.
#[derive(Debug)]
pub(crate) struct Commands(Lines<BufReader<tokio::io::Stdin>>);

impl Commands {
    /// Reads the commands sent to this process.
    pub(crate) fn new() -> Self {
        Self(BufReader::new(tokio::io::stdin()).lines())
    }

    /// The next command; `None` at EOF (the orchestrator is done with us). Cancel-safe.
    pub(crate) async fn next(&mut self) -> Result<Option<String>> {
        Ok(self.0.next_line().await?)
    }

    /// Waits for the command `word` and returns its argument text; fails on EOF or on
    /// another command.
    pub(crate) async fn expect(&mut self, word: &str) -> Result<String> {
        let line = self
            .next()
            .await?
            .with_context(|| format!("EOF before {word}"))?;
        let (head, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        if head != word {
            bail!("expected command {word}, got {line}");
        }
        Ok(rest.to_owned())
    }

    /// Waits until stdin closes (or any command arrives).
    pub(crate) async fn wait_end(&mut self) -> Result<()> {
        let _ = self.next().await?;
        Ok(())
    }
}

/// Prints `READY <text>`.
pub(crate) fn ready(text: impl Display) {
    println!("READY {text}");
}

/// Prints `<tag> <json>`.
pub(crate) fn emit<T: Serialize>(tag: &str, value: &T) -> Result<()> {
    println!("{tag} {}", serde_json::to_string(value)?);
    Ok(())
}
