//! `netsvc-node`: a scriptable netsvc process for multi-process tests.
//!
//! The process hosts one [`netsvc::Runtime`] on a two-worker tokio runtime. It reads commands
//! from stdin, one per line, as whitespace-separated words (a trailing JSON argument takes the
//! rest of the line), and writes events to stdout, one JSON object per line, flushed per
//! line. Every event has an `"event"` field naming its kind.
//!
//! At start it prints `{"event":"ready","process":…,"pid":…,"heartbeat_ms":…}`. A command
//! that fails prints `{"event":"error","command":…,"line":…,"message":…}` and the node
//! carries on. End of input or the `exit` command shuts down gracefully (services withdrawn
//! with reason "process exit", every exchange closed with a 2 s grace), prints
//! `{"event":"bye"}` and exits with status 0.
//!
//! Flags: `--heartbeat-ms N` (default 200) sets the heartbeat of every exchange created.
//!
//! Commands (a `GROUP` of `-` is the default group `""`):
//!
//! | command | reply |
//! |---|---|
//! | `exchange ROLE GROUP` (ROLE `client` or `server`) | `exchange`; then a `connection` event per link change |
//! | `listen GROUP ADDR` | `listening` with the bound `address` |
//! | `listen-unix GROUP PATH` | `ok` |
//! | `connect GROUP ADDR RETRY_SECS` (negative: a single attempt) | `ok` |
//! | `service NAME AUDIENCE` (`*`, `-` for `""`, or a group) | `service` with its `address` |
//! | `withdraw NAME`, `join NAME GROUP`, `leave NAME GROUP` | `ok` |
//! | `publish NAME SUBJECT LIFETIME JSON` (0 none, -1 forever, N seconds) | `published` with `deliveries` |
//! | `monitor NAME TARGET PATTERN` | `ok`; then `report`, `publisher` and `missed` events |
//! | `call ID TARGET METHOD TIMEOUT_SECS JSON_ARGS` (timeout ≤ 0: none) | later, `result` or `failure` |
//! | `watch` | `ok`; then `available`, `withdrawn`, `group-joined`, `group-left` events |
//! | `services` | `services` with the registry's `list` |
//! | `pid` | `pid` with `pid` and `process` |
//! | `exit` | `bye` |
//!
//! A `TARGET` containing `!` is a service address (looked up in the registry); otherwise it
//! is a service name. The services created by `service` export `echo` (the arguments back, as
//! a list), `sleep` (one argument, seconds; prints a `sleeping` event, then answers
//! `"slept"`), `fail` (failure 1 "Failed" from origin "node") and `pid` (the process id).

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use netsvc::value::json::to_json;
use netsvc::{
    Announcement, AnnouncementKind, ConnectionEvent, ConnectionState, Exchange, ExchangeConfig,
    Failure, Lifetime, Location, ReportEvent, Retry, Runtime, Service, Target, Value,
    WithdrawReason,
};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

/// How long `exit` waits for each exchange's links to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Writes one event line to stdout and flushes it. Errors (the reader has gone) are ignored:
/// the node ends when its input does.
fn emit(event: &Json) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{event}");
    let _ = out.flush();
}

/// The command line options.
#[derive(Debug)]
struct Options {
    heartbeat: Duration,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Self {
            heartbeat: Duration::from_millis(200),
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--heartbeat-ms" => {
                    let ms = args.next().context("--heartbeat-ms needs a value")?;
                    let ms: u64 = ms
                        .parse()
                        .with_context(|| format!("invalid --heartbeat-ms {ms:?}"))?;
                    if ms == 0 {
                        bail!("--heartbeat-ms must be positive");
                    }
                    options.heartbeat = Duration::from_millis(ms);
                }
                other => bail!("unknown argument {other:?} (accepted: --heartbeat-ms N)"),
            }
        }
        Ok(options)
    }
}

/// A cursor over one command line: words, then optionally the rest of the line.
#[derive(Debug)]
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(line: &'a str) -> Self {
        Self { rest: line.trim() }
    }

    /// The next word; fails naming the missing argument.
    fn word(&mut self, what: &str) -> anyhow::Result<&'a str> {
        let rest = self.rest.trim_start();
        if rest.is_empty() {
            bail!("missing argument: {what}");
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, rest) = rest.split_at(end);
        self.rest = rest;
        Ok(word)
    }

    /// The rest of the line (which must not be empty).
    fn rest(&mut self, what: &str) -> anyhow::Result<&'a str> {
        let rest = std::mem::take(&mut self.rest).trim();
        if rest.is_empty() {
            bail!("missing argument: {what}");
        }
        Ok(rest)
    }

    /// Fails if words are left over.
    fn end(&self) -> anyhow::Result<()> {
        let rest = self.rest.trim();
        if rest.is_empty() {
            Ok(())
        } else {
            bail!("unexpected extra arguments: {rest:?}")
        }
    }
}

/// `-` stands for the empty string (the default group, or the process-only audience).
fn dash_is_empty(word: &str) -> &str {
    if word == "-" { "" } else { word }
}

/// Whether the main loop goes on after a command.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Exit,
}

/// The node: its runtime, exchanges and services.
#[derive(Debug)]
struct Node {
    rt: Runtime,
    heartbeat: Duration,
    exchanges: HashMap<String, Exchange>,
    services: HashMap<String, Service>,
}

impl Node {
    fn new(options: &Options) -> anyhow::Result<Self> {
        let rt = Runtime::with_config(netsvc::RuntimeConfig::default())?;
        Ok(Self {
            rt,
            heartbeat: options.heartbeat,
            exchanges: HashMap::new(),
            services: HashMap::new(),
        })
    }

    /// Runs one command line.
    async fn execute(&mut self, line: &str) -> anyhow::Result<Flow> {
        let mut words = Words::new(line);
        let command = words.word("command")?;
        match command {
            "exchange" => self.exchange(&mut words)?,
            "listen" => self.listen(&mut words).await?,
            "listen-unix" => self.listen_unix(&mut words).await?,
            "connect" => self.connect(&mut words)?,
            "service" => self.service(&mut words)?,
            "withdraw" => self.withdraw(&mut words)?,
            "join" => self.join(&mut words)?,
            "leave" => self.leave(&mut words)?,
            "publish" => self.publish(&mut words)?,
            "monitor" => self.monitor(&mut words)?,
            "call" => self.call(&mut words)?,
            "watch" => self.watch(&words)?,
            "services" => self.services(&words)?,
            "pid" => self.pid(&words)?,
            "exit" => {
                words.end()?;
                return Ok(Flow::Exit);
            }
            other => bail!("unknown command {other:?}"),
        }
        Ok(Flow::Continue)
    }

    fn ok(command: &str) {
        emit(&json!({"event": "ok", "command": command}));
    }

    fn exchange_of(&self, group: &str) -> anyhow::Result<&Exchange> {
        self.exchanges
            .get(group)
            .with_context(|| format!("no exchange for group {group:?}"))
    }

    fn service_named(&self, name: &str) -> anyhow::Result<&Service> {
        self.services
            .get(name)
            .with_context(|| format!("no service {name:?} in this node"))
    }

    /// A target by name, or by address if the word contains `!`.
    fn target(&self, word: &str) -> anyhow::Result<Target> {
        if word.contains('!') {
            let binding = self
                .rt
                .registry()
                .lookup_address(word)
                .with_context(|| format!("no service at address {word:?}"))?;
            Ok(Target::Binding(binding))
        } else {
            Ok(Target::from(word))
        }
    }

    /// `exchange ROLE GROUP`: creates an exchange and prints its connection events.
    fn exchange(&mut self, words: &mut Words<'_>) -> anyhow::Result<()> {
        let role = words.word("role")?;
        let group = dash_is_empty(words.word("group")?).to_owned();
        words.end()?;
        if self.exchanges.contains_key(&group) {
            bail!("this node already has an exchange for group {group:?}");
        }
        let mut config = ExchangeConfig::default();
        config.heartbeat = self.heartbeat;
        let builder = match role {
            "client" => Exchange::client(&self.rt),
            "server" => Exchange::server(&self.rt),
            other => bail!("unknown role {other:?} (client or server)"),
        };
        let exchange = builder.group(&group).config(config).build()?;
        let mut events = exchange.watch_connections();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                emit(&connection_json(&event));
            }
        });
        self.exchanges.insert(group.clone(), exchange);
        emit(&json!({"event": "exchange", "role": role, "group": group}));
        Ok(())
    }

    /// `listen GROUP ADDR`.
    async fn listen(&mut self, words: &mut Words<'_>) -> anyhow::Result<()> {
        let group = dash_is_empty(words.word("group")?);
        let address = words.word("address")?;
        words.end()?;
        let bound = self.exchange_of(group)?.listen(address).await?;
        emit(&json!({"event": "listening", "group": group, "address": bound.to_string()}));
        Ok(())
    }

    /// `listen-unix GROUP PATH`.
    async fn listen_unix(&mut self, words: &mut Words<'_>) -> anyhow::Result<()> {
        let group = dash_is_empty(words.word("group")?);
        let path = words.word("path")?;
        words.end()?;
        self.exchange_of(group)?.listen_unix(path).await?;
        Self::ok("listen-unix");
        Ok(())
    }

    /// `connect GROUP ADDR RETRY_SECS`.
    fn connect(&mut self, words: &mut Words<'_>) -> anyhow::Result<()> {
        let group = dash_is_empty(words.word("group")?);
        let address = words.word("address")?;
        let retry = words.word("retry seconds")?;
        words.end()?;
        let retry: f64 = retry
            .parse()
            .with_context(|| format!("invalid retry seconds {retry:?}"))?;
        self.exchange_of(group)?
            .connect(address, Retry::from_seconds(retry))?;
        Self::ok("connect");
        Ok(())
    }

    /// `service NAME AUDIENCE`: a service exporting `echo`, `sleep`, `fail` and `pid`.
    fn service(&mut self, words: &mut Words<'_>) -> anyhow::Result<()> {
        let name = words.word("name")?.to_owned();
        let audience = dash_is_empty(words.word("audience")?);
        words.end()?;
        if self.services.contains_key(&name) {
            bail!("this node already has a service {name:?}");
        }
        let sleeper = name.clone();
        let service = self
            .rt
            .service(&name)
            .audience(audience)
            .export("echo", |req| async move {
                Ok::<_, Failure>(Value::List(req.into_args()))
            })
            .export("sleep", move |req| {
                let service = sleeper.clone();
                async move {
                    let seconds = req
                        .args()
                        .first()
                        .and_then(Value::as_f64)
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .ok_or_else(|| {
                            Failure::parameters_incorrect("sleep takes a number of seconds")
                        })?;
                    emit(&json!({"event": "sleeping", "service": service, "seconds": seconds}));
                    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                    Ok::<_, Failure>(Value::from("slept"))
                }
            })
            .export("fail", |_req| async {
                Err::<Value, _>(Failure::new(1, "Failed", "node", "asked to fail"))
            })
            .export("pid", |_req| async {
                Ok::<_, Failure>(Value::from(std::process::id()))
            })
            .build()?;
        emit(&json!({"event": "service", "name": name, "address": service.address()}));
        self.services.insert(name, service);
        Ok(())
    }

    /// `withdraw NAME`.
    fn withdraw(&mut self, words: &mut Words<'_>) -> anyhow::Result<()> {
        let name = words.word("name")?;
        words.end()?;
        let service = self
            .services
            .remove(name)
            .with_context(|| format!("no service {name:?} in this node"))?;
        service.withdraw();
        Self::ok("withdraw");
        Ok(())
    }

    /// `join NAME GROUP`.
    fn join(&mut self, words: &mut Words<'_>) -> anyhow::Result<()> {
        let name = words.word("name")?;
        let group = words.word("group")?;
        words.end()?;
        self.service_named(name)?.join_group(group)?;
        Self::ok("join");
        Ok(())
    }

    /// `leave NAME GROUP`.
    fn leave(&mut self, words: &mut Words<'_>) -> anyhow::Result<()> {
        let name = words.word("name")?;
        let group = words.word("group")?;
        words.end()?;
        self.service_named(name)?.leave_group(group)?;
        Self::ok("leave");
        Ok(())
    }

    /// `publish NAME SUBJECT LIFETIME JSON`.
    fn publish(&mut self, words: &mut Words<'_>) -> anyhow::Result<()> {
        let name = words.word("name")?;
        let subject = words.word("subject")?;
        let lifetime = words.word("lifetime")?;
        let content = Value::from_json_str(words.rest("JSON content")?)?;
        let lifetime: i64 = lifetime
            .parse()
            .with_context(|| format!("invalid lifetime {lifetime:?}"))?;
        let lifetime = Lifetime::from_seconds(lifetime)?;
        let deliveries = self
            .service_named(name)?
            .publish(subject, content, lifetime)?;
        emit(&json!({"event": "published", "deliveries": deliveries}));
        Ok(())
    }

    /// `monitor NAME TARGET PATTERN`: prints every report event of the subscription.
    fn monitor(&mut self, words: &mut Words<'_>) -> anyhow::Result<()> {
        let name = words.word("name")?.to_owned();
        let target = words.word("target")?;
        let pattern = words.word("pattern")?;
        words.end()?;
        let target = self.target(target)?;
        let mut monitor = self
            .service_named(&name)?
            .monitor_reports(target, pattern)?;
        tokio::spawn(async move {
            while let Some(event) = monitor.recv().await {
                emit(&report_json(&name, &event));
            }
        });
        Self::ok("monitor");
        Ok(())
    }

    /// `call ID TARGET METHOD TIMEOUT_SECS JSON_ARGS`: the call runs in its own task.
    fn call(&mut self, words: &mut Words<'_>) -> anyhow::Result<()> {
        let id = words.word("id")?.to_owned();
        let target = words.word("target")?;
        let method = words.word("method")?.to_owned();
        let timeout = words.word("timeout seconds")?;
        let args = words.rest("JSON argument list")?;
        let timeout: f64 = timeout
            .parse()
            .with_context(|| format!("invalid timeout {timeout:?}"))?;
        let timeout = (timeout > 0.0)
            .then(|| Duration::try_from_secs_f64(timeout))
            .transpose()
            .with_context(|| format!("invalid timeout {timeout}"))?;
        let args = match Value::from_json_str(args)? {
            Value::List(args) => args,
            other => bail!("the arguments must be a JSON array, not {other}"),
        };
        let endpoint = self.rt.endpoint(self.target(target)?);
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = endpoint.call_with_timeout(&method, args, timeout).await;
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            emit(&match outcome {
                Ok(value) => {
                    json!({"event": "result", "id": id, "value": to_json(&value), "ms": ms})
                }
                Err(f) => json!({
                    "event": "failure",
                    "id": id,
                    "error": f.error,
                    "description": f.description,
                    "origin": f.origin,
                    "details": f.details,
                    "ms": ms,
                }),
            });
        });
        Ok(())
    }

    /// `watch`: prints the registry (snapshot first), then every change.
    fn watch(&mut self, words: &Words<'_>) -> anyhow::Result<()> {
        words.end()?;
        let mut watch = self.rt.registry().watch();
        tokio::spawn(async move {
            loop {
                match watch.recv().await {
                    Ok(announcement) => emit(&announcement_json(&announcement)),
                    Err(e) => {
                        emit(
                            &json!({"event": "error", "command": "watch", "message": e.to_string()}),
                        );
                        return;
                    }
                }
            }
        });
        Self::ok("watch");
        Ok(())
    }

    /// `services`: the registry now.
    fn services(&self, words: &Words<'_>) -> anyhow::Result<()> {
        words.end()?;
        let list: Vec<Json> = self
            .rt
            .registry()
            .services()
            .iter()
            .map(|b| {
                json!({
                    "name": b.service_name(),
                    "address": b.address(),
                    "process": b.process_identity(),
                    "location": location_str(b.location()),
                })
            })
            .collect();
        emit(&json!({"event": "services", "list": list}));
        Ok(())
    }

    /// `pid`.
    fn pid(&self, words: &Words<'_>) -> anyhow::Result<()> {
        words.end()?;
        emit(&json!({
            "event": "pid",
            "pid": std::process::id(),
            "process": self.rt.process_identity(),
        }));
        Ok(())
    }

    /// Leaves as a well-behaved process does: services withdrawn (reason "process exit"),
    /// then every exchange closed after sending what it has queued.
    async fn shutdown(mut self) {
        self.rt.shutdown();
        let mut closing = tokio::task::JoinSet::new();
        for (_, exchange) in self.exchanges.drain() {
            closing.spawn(async move { exchange.shutdown(SHUTDOWN_GRACE).await });
        }
        while closing.join_next().await.is_some() {}
        self.services.clear();
    }
}

fn location_str(location: Location) -> &'static str {
    match location {
        Location::Local => "local",
        Location::Remote => "remote",
    }
}

fn connection_json(event: &ConnectionEvent) -> Json {
    let state = match event.state {
        ConnectionState::Active => "active",
        ConnectionState::Resynced => "resynced",
        ConnectionState::Inactive => "inactive",
        _ => "unknown",
    };
    json!({
        "event": "connection",
        "state": state,
        "group": event.group,
        "peer": event.peer_process,
        "peer_address": event.peer_address,
        "initiated_here": event.initiated_here,
        "reason": event.reason,
    })
}

fn announcement_json(announcement: &Announcement) -> Json {
    let b = &announcement.binding;
    let mut event = json!({
        "name": b.service_name(),
        "address": b.address(),
        "process": b.process_identity(),
        "location": location_str(b.location()),
    });
    let (kind, extra) = match &announcement.kind {
        AnnouncementKind::Available => ("available", None),
        AnnouncementKind::Withdrawn(reason) => {
            let reason = match reason {
                WithdrawReason::Owner => "owner",
                WithdrawReason::ProcessExit => "process-exit",
                WithdrawReason::ConnectionLost => "connection-lost",
                _ => "other",
            };
            ("withdrawn", Some(("reason", reason)))
        }
        AnnouncementKind::GroupJoined(group) => ("group-joined", Some(("group", &**group))),
        AnnouncementKind::GroupLeft(group) => ("group-left", Some(("group", &**group))),
        _ => ("unknown", None),
    };
    event["event"] = json!(kind);
    if let Some((key, value)) = extra {
        event[key] = json!(value);
    }
    event
}

fn report_json(monitor: &str, event: &ReportEvent) -> Json {
    match event {
        ReportEvent::Report(report) => {
            let (value, error) = match report.value() {
                Ok(v) => (to_json(v), None),
                Err(e) => (Json::Null, Some(e.to_string())),
            };
            json!({
                "event": "report",
                "monitor": monitor,
                "publisher": report.publisher().address(),
                "subject": report.subject(),
                "value": value,
                "targeted": report.is_targeted(),
                "error": error,
            })
        }
        ReportEvent::PublisherAvailable(b) => json!({
            "event": "publisher",
            "monitor": monitor,
            "status": "available",
            "publisher": b.address(),
        }),
        ReportEvent::PublisherWithdrawn(b) => json!({
            "event": "publisher",
            "monitor": monitor,
            "status": "withdrawn",
            "publisher": b.address(),
        }),
        ReportEvent::Missed(count) => json!({
            "event": "missed",
            "monitor": monitor,
            "count": count,
        }),
        _ => json!({"event": "unknown-report-event", "monitor": monitor}),
    }
}

/// Reads stdin lines on a plain thread (so that a pending read never holds up the exit) and
/// hands them to the main loop; the channel closes at end of input.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

async fn run(options: Options) -> anyhow::Result<()> {
    let mut node = Node::new(&options)?;
    emit(&json!({
        "event": "ready",
        "process": node.rt.process_identity(),
        "pid": std::process::id(),
        "heartbeat_ms": u64::try_from(options.heartbeat.as_millis()).unwrap_or(u64::MAX),
    }));
    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match node.execute(trimmed).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => break,
            Err(e) => {
                let command = trimmed.split_whitespace().next().unwrap_or_default();
                emit(&json!({
                    "event": "error",
                    "command": command,
                    "line": trimmed,
                    "message": format!("{e:#}"),
                }));
            }
        }
    }
    node.shutdown().await;
    emit(&json!({"event": "bye"}));
    Ok(())
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("netsvc-node: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow!(e))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netsvc-node: cannot start tokio: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(options));
    // Tasks still running (watchers, calls) are abandoned, not awaited.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netsvc-node: {e:#}");
            emit(&json!({"event": "fatal", "message": format!("{e:#}")}));
            ExitCode::FAILURE
        }
    }
}
