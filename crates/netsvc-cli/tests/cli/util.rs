//! The harness: the binary, background processes killed on drop, bounded waits.

use std::io::{BufRead as _, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_netsvc");

/// The longest any single expected thing may take (generous: CI machines are slow).
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// The binary, with a clean environment for the variables it reads.
pub(crate) fn netsvc() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(BIN);
    cmd.env_remove("RUST_LOG")
        .env_remove("NETSVC_EXCHANGE")
        .timeout(DEADLINE);
    cmd
}

/// Runs the binary to completion.
pub(crate) fn run(args: &[&str]) -> Output {
    let output = netsvc().args(args).output().expect("run netsvc");
    assert_no_panic(&output);
    output
}

pub(crate) fn assert_no_panic(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
        "the binary panicked:\n{stderr}"
    );
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub(crate) fn json_lines(text: &str) -> Vec<Json> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// A port nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Reads a stream's lines on a thread, so the child can never block on a full pipe.
pub(crate) fn lines_of(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A background process, killed when dropped.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: Receiver<String>,
    pub(crate) stderr: Receiver<String>,
    /// Every stderr line seen so far, for failure messages.
    pub(crate) stderr_seen: Vec<String>,
    /// How many of `stderr_seen` [`Proc::wait_stderr`] has looked at.
    pub(crate) stderr_checked: usize,
}

impl Proc {
    pub(crate) fn spawn(args: &[&str]) -> Self {
        Self::spawn_with(args, &[])
    }

    pub(crate) fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NETSVC_EXCHANGE")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netsvc");
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        Self {
            name: args.join(" "),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
            stderr_checked: 0,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`, after those earlier waits returned,
    /// and returns it.
    pub(crate) fn wait_stderr(&mut self, needle: &str) -> String {
        while let Some(line) = self.stderr_seen.get(self.stderr_checked).cloned() {
            self.stderr_checked += 1;
            if line.contains(needle) {
                return line;
            }
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    self.stderr_checked = self.stderr_seen.len();
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "`netsvc {}`: no stderr line with {needle:?} ({e:?}); stderr so far:\n{}",
                    self.name,
                    self.stderr_seen.join("\n")
                ),
            }
        }
    }

    /// The next stdout line.
    pub(crate) fn next_stdout(&mut self) -> String {
        match self.stdout.recv_timeout(DEADLINE) {
            Ok(line) => line,
            Err(e) => {
                self.drain_stderr();
                panic!(
                    "`netsvc {}`: no stdout line ({e:?}); stderr:\n{}",
                    self.name,
                    self.stderr_seen.join("\n")
                )
            }
        }
    }

    /// The next stdout line as JSON.
    pub(crate) fn next_json(&mut self) -> Json {
        let line = self.next_stdout();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// Reads JSON lines until one satisfies `pred`, and returns it.
    pub(crate) fn json_until(&mut self, what: &str, pred: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            let j = self.next_json();
            if pred(&j) {
                return j;
            }
        }
        panic!("`netsvc {}`: never printed {what}", self.name);
    }

    pub(crate) fn drain_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_recv() {
            self.stderr_seen.push(line);
        }
    }

    /// Waits for the `HTTP gateway on SCHEME://ADDR/` line; returns ADDR.
    pub(crate) fn wait_http(&mut self, scheme: &str) -> String {
        let prefix = format!("HTTP gateway on {scheme}://");
        let line = self.wait_stderr(&prefix);
        line.split(&prefix)
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no {scheme} address in {line:?}"))
            .to_owned()
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits for the process to exit.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Collect what it said on the way out.
                std::thread::sleep(Duration::from_millis(50));
                self.drain_stderr();
                return status;
            }
            if Instant::now() > deadline {
                self.drain_stderr();
                panic!(
                    "`netsvc {}` did not exit; stderr:\n{}",
                    self.name,
                    self.stderr_seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn assert_clean_stderr(&mut self) {
        self.drain_stderr();
        let all = self.stderr_seen.join("\n");
        assert!(
            !all.contains("panicked") && !all.contains("stack backtrace"),
            "`netsvc {}` panicked:\n{all}",
            self.name
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hub on an ephemeral port, and its address.
pub(crate) fn hub() -> (Proc, String) {
    let mut hub = Proc::spawn(&["exchange", "--listen", "127.0.0.1:0"]);
    let line = hub.wait_stderr("listening on ");
    let address = line
        .split_whitespace()
        .nth(2)
        .expect("an address after `listening on`")
        .to_owned();
    (hub, address)
}

/// The demo services, joined to the hub at `address`; returns once both are visible there.
pub(crate) fn demo(address: &str) -> Proc {
    let mut demo = Proc::spawn(&["demo", "--connect", address]);
    demo.wait_stderr("demo ready");
    wait_for_services(address, &["echo", "clock"]);
    demo
}

/// The `services --json` lines of the hub at `address`.
pub(crate) fn services(address: &str) -> Vec<Json> {
    let output = run(&["services", "--json", "--connect", address]);
    assert!(output.status.success(), "services: {}", stderr(&output));
    json_lines(&stdout(&output))
}

/// Waits until every one of `names` is listed by the hub at `address`.
pub(crate) fn wait_for_services(address: &str, names: &[&str]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let listed = services(address);
        if names.iter().all(|n| listed.iter().any(|s| s["name"] == *n)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "services {names:?} never appeared at {address}; listed: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) use serde_json::Value as Json;

/// The `requests` entry of `service` in `role` of a stats object (`netsvc info --json`,
/// `/api/stats`).
pub(crate) fn requests_in<'a>(stats: &'a Json, service: &str, role: &str) -> &'a Json {
    stats["requests"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["service"] == service && r["role"] == role)
        })
        .unwrap_or_else(|| panic!("no {role} {service} requests in {stats}"))
}

/// A hub started with these extra arguments on an ephemeral port, and its address.
pub(crate) fn hub_with(extra: &[&str]) -> (Proc, String) {
    let mut args = vec!["exchange", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut hub = Proc::spawn(&args);
    let line = hub.wait_stderr("listening on ");
    let address = line
        .split_whitespace()
        .nth(2)
        .expect("an address after `listening on`")
        .to_owned();
    (hub, address)
}

/// A hub listening on exactly `address` (a port that was free, or that a killed hub held).
pub(crate) fn hub_at(address: &str) -> Proc {
    let mut hub = Proc::spawn(&["exchange", "--listen", address]);
    hub.wait_stderr(&format!("listening on {address}"));
    hub
}

/// A TCP server on an ephemeral port that hands every connection to `serve` on a thread
/// of its own; returns its address. The threads end with the test binary.
pub(crate) fn fake_server(serve: fn(std::net::TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || serve(stream));
        }
    });
    address
}

/// Reads what the peer sends until it closes, for at most [`DEADLINE`].
pub(crate) fn drain(stream: &mut std::net::TcpStream) {
    let _ = stream.set_read_timeout(Some(DEADLINE));
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
    }
}

/// Runs the binary with `input` on its stdin.
pub(crate) fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let output = netsvc()
        .args(args)
        .write_stdin(input.to_vec())
        .output()
        .expect("run netsvc");
    assert_no_panic(&output);
    output
}
