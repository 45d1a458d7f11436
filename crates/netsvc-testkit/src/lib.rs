//! Test harness for netsvc: drive real `netsvc-node` processes from a test.
//!
//! The `netsvc-node` binary of this crate is a scriptable netsvc process: commands go in on
//! its stdin, events come out on its stdout as one JSON object per line (see the binary's
//! documentation for the protocol). A [`Node`] spawns one, reads its events on a thread and
//! lets the test wait for them with deadlines:
//!
//! ```no_run
//! use netsvc_testkit::{DEFAULT_TIMEOUT, Node};
//! // In this crate's integration tests: env!("CARGO_BIN_EXE_netsvc-node").
//! let bin = "target/debug/netsvc-node";
//! let mut hub = Node::spawn(bin, &["--heartbeat-ms", "100"]).named("hub");
//! hub.cmd("exchange server -", "exchange");
//! let address = hub.cmd("listen - 127.0.0.1:0", "listening")["address"].clone();
//! let up = hub.expect("a link", |e| e["event"] == "connection", DEFAULT_TIMEOUT);
//! ```
//!
//! Everything is bounded: every wait has a deadline (a timeout panics with the node's recent
//! output and stderr), and dropping a [`Node`] kills its process.
//!
//! The harness uses only the standard library (threads and channels), so it works from
//! plain `#[test]` functions.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One event printed by a node: a JSON object with an `"event"` field.
pub type Event = serde_json::Value;

/// The default deadline of [`Node::expect_event`] and [`Node::cmd`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many of the latest events a failure message shows.
const RECENT_SHOWN: usize = 60;

/// A running `netsvc-node` process.
///
/// Events the node prints are kept in arrival order. [`expect`](Self::expect) returns the
/// first not-yet-consumed event matching a predicate and leaves the others in a backlog for
/// later waits; [`history`](Self::history) keeps every event ever received, for counting.
#[derive(Debug)]
pub struct Node {
    label: String,
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    events: Receiver<Event>,
    /// Received but not yet consumed by an `expect`.
    backlog: VecDeque<Event>,
    /// Every event received, in order.
    history: Vec<Event>,
    /// Whether the event stream has ended (the process closed its stdout).
    ended: bool,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The process identity the node announced when it started.
    process: String,
}

impl Node {
    /// Spawns the node binary at `bin` with `args` and waits for its `ready` event.
    ///
    /// # Panics
    /// If the process cannot be started or does not become ready within
    /// [`DEFAULT_TIMEOUT`].
    pub fn spawn(bin: impl AsRef<OsStr>, args: &[&str]) -> Self {
        let bin = bin.as_ref();
        let mut child = match Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!("cannot start {}: {e}", bin.to_string_lossy()),
        };
        let pid = child.id();
        let stdin = child.stdin.take();
        let (tx, events) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let event = serde_json::from_str(&line)
                        .unwrap_or_else(|_| serde_json::json!({"event": "unparsed", "line": line}));
                    if tx.send(event).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let buffer = stderr.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    buffer
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend_from_slice(&chunk[..n]);
                }
            });
        }
        let mut node = Self {
            label: format!("node[{pid}]"),
            child,
            pid,
            stdin,
            events,
            backlog: VecDeque::new(),
            history: Vec::new(),
            ended: false,
            stderr,
            process: String::new(),
        };
        let ready = node.expect_event("ready", &[]);
        node.process = ready["process"].as_str().unwrap_or_default().to_owned();
        node
    }

    /// Names the node in failure messages (for example "hub" or "client-a").
    #[must_use]
    pub fn named(mut self, label: &str) -> Self {
        self.label = format!("{label}[{}]", self.pid);
        self
    }

    /// The node's label, as failure messages show it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The node's netsvc process identity (as peers see it in connection events and service
    /// bindings).
    pub fn process(&self) -> &str {
        &self.process
    }

    /// Sends one command line.
    ///
    /// # Panics
    /// If the node's stdin is closed or the write fails.
    pub fn send(&mut self, line: &str) {
        let written = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{line}").and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("stdin was closed")),
        };
        if let Err(e) = written {
            self.fail(&format!("cannot send {line:?}: {e}"));
        }
    }

    /// Closes the node's stdin: the node shuts down gracefully as on `exit`.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends a command and waits for its reply: the first event of kind `reply` (for an `ok`
    /// reply, one for this command). Panics if the node reports an error for the command.
    pub fn cmd(&mut self, line: &str, reply: &str) -> Event {
        let command = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        self.send(line);
        let event = self.expect(
            &format!("reply {reply:?} to {line:?}"),
            |e| {
                let kind = e["event"].as_str().unwrap_or_default();
                (kind == reply && (reply != "ok" || e["command"] == command.as_str()))
                    || (kind == "error" && e["command"] == command.as_str())
            },
            DEFAULT_TIMEOUT,
        );
        if event["event"] == "error" {
            self.fail(&format!("command {line:?} failed: {event}"));
        }
        event
    }

    /// Waits (at most `timeout`) for the first unconsumed event matching `predicate`,
    /// consumes it and returns it. Events that do not match stay available to later waits.
    ///
    /// # Panics
    /// On timeout, or if the node's output ends first, with `description`, the node's recent
    /// output and its stderr.
    pub fn expect(
        &mut self,
        description: &str,
        mut predicate: impl FnMut(&Event) -> bool,
        timeout: Duration,
    ) -> Event {
        if let Some(i) = self.backlog.iter().position(&mut predicate)
            && let Some(event) = self.backlog.remove(i)
        {
            return event;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_event(deadline) {
                Some(event) if predicate(&event) => return event,
                Some(event) => self.backlog.push_back(event),
                None if self.ended => self.fail(&format!(
                    "the node's output ended while waiting for {description}"
                )),
                None => self.fail(&format!(
                    "no {description} within {:.1} s",
                    timeout.as_secs_f64()
                )),
            }
        }
    }

    /// Waits ([`DEFAULT_TIMEOUT`]) for an event of kind `kind` whose fields equal the given
    /// values (`("reason", json!("owner"))`).
    pub fn expect_event(&mut self, kind: &str, fields: &[(&str, Event)]) -> Event {
        self.expect_event_within(kind, fields, DEFAULT_TIMEOUT)
    }

    /// [`expect_event`](Self::expect_event) with a deadline.
    pub fn expect_event_within(
        &mut self,
        kind: &str,
        fields: &[(&str, Event)],
        timeout: Duration,
    ) -> Event {
        let mut description = format!("{kind:?} event");
        for (i, (key, value)) in fields.iter().enumerate() {
            let _ = write!(
                description,
                "{}{key}={value}",
                if i == 0 { " with " } else { ", " }
            );
        }
        self.expect(&description, |e| matches(e, kind, fields), timeout)
    }

    /// Asserts that no event matching `predicate` is pending or arrives within `period`
    /// (for things that must NOT happen). Other events are kept for later waits.
    ///
    /// # Panics
    /// If one does, with `description`.
    pub fn expect_none(
        &mut self,
        description: &str,
        mut predicate: impl FnMut(&Event) -> bool,
        period: Duration,
    ) {
        if let Some(event) = self.backlog.iter().find(|e| predicate(e)).cloned() {
            self.fail(&format!("unexpected {description}: {event}"));
        }
        let deadline = Instant::now() + period;
        while let Some(event) = self.next_event(deadline) {
            if predicate(&event) {
                self.fail(&format!("unexpected {description}: {event}"));
            }
            self.backlog.push_back(event);
        }
    }

    /// Collects whatever arrives within `period` into the backlog (and the history).
    pub fn settle(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        while let Some(event) = self.next_event(deadline) {
            self.backlog.push_back(event);
        }
    }

    /// Every event received so far, consumed or not, in arrival order.
    pub fn history(&self) -> &[Event] {
        &self.history
    }

    /// How many events received so far match `predicate` (consumed or not).
    pub fn count(&self, predicate: impl FnMut(&&Event) -> bool) -> usize {
        self.history.iter().filter(predicate).count()
    }

    /// The next event from the node, or `None` at the deadline or end of output.
    fn next_event(&mut self, deadline: Instant) -> Option<Event> {
        if self.ended {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(event) => {
                self.history.push(event.clone());
                Some(event)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                None
            }
        }
    }

    /// Sends a signal (`"KILL"`, `"STOP"`, `"CONT"`, …) with the `kill` command.
    ///
    /// # Panics
    /// If `kill` fails.
    pub fn signal(&mut self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .stdin(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => self.fail(&format!("kill -{signal} failed: {other:?}")),
        }
    }

    /// Kills the process with SIGKILL and waits for it to be gone (its sockets closed).
    pub fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.signal("KILL");
        if self.wait_exit(DEFAULT_TIMEOUT).is_none() {
            self.fail("the process survived SIGKILL");
        }
    }

    /// Freezes the process (SIGSTOP).
    pub fn stop(&mut self) {
        self.signal("STOP");
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn cont(&mut self) {
        self.signal("CONT");
    }

    /// Waits (at most `timeout`) for the process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// What the process wrote on stderr so far.
    pub fn stderr(&self) -> String {
        let buffer = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buffer).into_owned()
    }

    /// Panics with `message` and the node's recent output and stderr.
    fn fail(&mut self, message: &str) -> ! {
        let mut report = format!("{}: {message}\n", self.label);
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited: {status}"),
            Ok(None) => "running".to_owned(),
            Err(e) => format!("unknown ({e})"),
        };
        let _ = writeln!(report, "process: {status}");
        let skip = self.history.len().saturating_sub(RECENT_SHOWN);
        let _ = writeln!(
            report,
            "--- last {} of {} events ---",
            self.history.len() - skip,
            self.history.len()
        );
        for event in &self.history[skip..] {
            let _ = writeln!(report, "{event}");
        }
        let _ = writeln!(report, "--- stderr ---\n{}", self.stderr());
        panic!("{report}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether `event` is of kind `kind` and has each of `fields` with exactly that value.
pub fn matches(event: &Event, kind: &str, fields: &[(&str, Event)]) -> bool {
    event["event"] == kind && fields.iter().all(|(key, value)| &event[*key] == value)
}

/// The string field `key` of `event` (empty if absent).
pub fn field<'a>(event: &'a Event, key: &str) -> &'a str {
    event[key].as_str().unwrap_or_default()
}

/// A loopback TCP port that was free a moment ago (bound, then released), for a server
/// that is to be started later.
///
/// # Panics
/// If no port can be bound.
pub fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(address) => address.port(),
        Err(e) => panic!("cannot reserve a port: {e}"),
    }
}
