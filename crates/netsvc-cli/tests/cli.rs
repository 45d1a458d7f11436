//! End-to-end tests of the `netsvc` binary: real processes, real sockets, ephemeral ports.
//!
//! Every process a test starts is killed when the test ends (pass or fail), and every wait
//! is bounded, so a broken build fails with the output collected so far instead of hanging.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_netsvc");

/// The longest any single expected thing may take (generous: CI machines are slow).
const DEADLINE: Duration = Duration::from_secs(20);

/// The binary, with a clean environment for the variables it reads.
fn netsvc() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(BIN);
    cmd.env_remove("RUST_LOG")
        .env_remove("NETSVC_EXCHANGE")
        .timeout(DEADLINE);
    cmd
}

/// Runs the binary to completion.
fn run(args: &[&str]) -> Output {
    let output = netsvc().args(args).output().expect("run netsvc");
    assert_no_panic(&output);
    output
}

fn assert_no_panic(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
        "the binary panicked:\n{stderr}"
    );
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_lines(text: &str) -> Vec<Json> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Reads a stream's lines on a thread, so the child can never block on a full pipe.
fn lines_of(stream: impl Read + Send + 'static) -> Receiver<String> {
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
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stderr line seen so far, for failure messages.
    stderr_seen: Vec<String>,
    /// How many of `stderr_seen` [`Proc::wait_stderr`] has looked at.
    stderr_checked: usize,
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        Self::spawn_with(args, &[])
    }

    fn spawn_with(args: &[&str], env: &[(&str, &str)]) -> Self {
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

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line containing `needle`, after those earlier waits returned,
    /// and returns it.
    fn wait_stderr(&mut self, needle: &str) -> String {
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
    fn next_stdout(&mut self) -> String {
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
    fn next_json(&mut self) -> Json {
        let line = self.next_stdout();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// Reads JSON lines until one satisfies `pred`, and returns it.
    fn json_until(&mut self, what: &str, pred: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            let j = self.next_json();
            if pred(&j) {
                return j;
            }
        }
        panic!("`netsvc {}`: never printed {what}", self.name);
    }

    fn drain_stderr(&mut self) {
        while let Ok(line) = self.stderr.try_recv() {
            self.stderr_seen.push(line);
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Waits for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
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

    fn assert_clean_stderr(&mut self) {
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
fn hub() -> (Proc, String) {
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
fn demo(address: &str) -> Proc {
    let mut demo = Proc::spawn(&["demo", "--connect", address]);
    demo.wait_stderr("demo ready");
    wait_for_services(address, &["echo", "clock"]);
    demo
}

/// The `services --json` lines of the hub at `address`.
fn services(address: &str) -> Vec<Json> {
    let output = run(&["services", "--json", "--connect", address]);
    assert!(output.status.success(), "services: {}", stderr(&output));
    json_lines(&stdout(&output))
}

/// Waits until every one of `names` is listed by the hub at `address`.
fn wait_for_services(address: &str, names: &[&str]) {
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

// ----- help ------------------------------------------------------------------------------

#[test]
fn every_command_has_help_with_an_example() {
    for command in [
        &[][..],
        &["exchange"],
        &["services"],
        &["call"],
        &["publish"],
        &["monitor"],
        &["demo"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let output = run(&args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let text = stdout(&output);
        assert!(
            text.contains("Examples:"),
            "{args:?} has no example:\n{text}"
        );
        assert!(text.contains("Usage:"), "{args:?}:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2_without_a_panic() {
    for args in [
        &["nosuchcommand"][..],
        &["call"],
        &["call", "--timeout", "soon", "echo", "echo"],
        &["publish", "--service", "x", "subject-without-value"],
        &["publish", "--service", "x", "--lifetime", "-2", "s", "1"],
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--connect",
            "127.0.0.1:1",
        ],
    ] {
        let output = run(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).starts_with("error:"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

// ----- exchange --------------------------------------------------------------------------

#[test]
fn exchange_listens_on_the_manual_port_by_default() {
    // The default port may be taken on this machine (a developer's own hub); then the error
    // must name it. Either way the default is 127.0.0.1:11111.
    let mut hub = Proc::spawn(&["exchange"]);
    let deadline = Instant::now() + DEADLINE;
    let line = loop {
        let line = hub.wait_stderr("127.0.0.1:11111");
        if line.contains("listening on") || line.contains("cannot listen") {
            break line;
        }
        assert!(Instant::now() < deadline);
    };
    if line.starts_with("listening on 127.0.0.1:11111") {
        assert!(
            line.contains("0.0.0.0:11111"),
            "says how to open it up: {line}"
        );
        hub.signal("TERM");
        assert_eq!(hub.wait_exit().code(), Some(0));
    } else {
        assert!(
            line.starts_with("error: cannot listen on 127.0.0.1:11111"),
            "{line}"
        );
        assert_eq!(hub.wait_exit().code(), Some(2));
    }
    hub.assert_clean_stderr();
}

#[test]
fn exchange_exits_0_on_sigterm_and_sigint_and_clients_are_told() {
    for signal in ["TERM", "INT"] {
        let (mut hub, address) = hub();
        let _demo = demo(&address);
        let mut watch = Proc::spawn(&["services", "--watch", "--json", "--connect", &address]);
        watch.json_until("the demo's services", |j| j["name"] == "clock");

        hub.signal(signal);
        assert_eq!(hub.wait_exit().code(), Some(0), "SIG{signal}");
        hub.wait_stderr("exchange stopped");
        // The client hears that the link went: everything it knew through it is withdrawn.
        let gone = watch.json_until("a withdrawal", |j| j["event"] == "withdrawn");
        assert_eq!(gone["reason"], "connection-lost", "{gone}");
        watch.wait_stderr("lost the exchange");
        hub.assert_clean_stderr();
    }
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr").to_string();
    let output = run(&["exchange", "--listen", &address]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("error: cannot listen on {address}: ")),
        "{err}"
    );
    assert!(err.contains("in use"), "{err}");
    // The library's message already includes the OS error; it is not repeated.
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}

#[test]
fn bad_config_key_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.toml");
    std::fs::write(
        &path,
        "listen = [\"127.0.0.1:0\"]\nlisen = [\"127.0.0.1:1\"]\n",
    )
    .expect("write");
    let output = run(&["exchange", "--config", path.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("lisen"), "{err}");
    assert!(err.contains(&format!("{}:2:", path.display())), "{err}");

    std::fs::write(&path, "[limits]\nheartbeat = 5\n").expect("write");
    let err = stderr(&run(&[
        "exchange",
        "--config",
        path.to_str().expect("utf-8"),
    ]));
    assert!(
        err.contains("heartbeat") && err.contains("hub.toml"),
        "{err}"
    );

    let missing = dir.path().join("missing.toml");
    let output = run(&["exchange", "--config", missing.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("missing.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn config_file_is_used_and_flags_override_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hub.toml");
    let socket = dir.path().join("hub.sock");
    std::fs::write(
        &path,
        format!(
            "listen = [\"127.0.0.1:0\"]\nunix = {:?}\ngroup = \"\"\nretry = 1.0\n\n[limits]\nheartbeat_ms = 200\nmax_connections = 50\n",
            socket.display().to_string()
        ),
    )
    .expect("write");
    let config = path.to_str().expect("utf-8");

    let mut hub = Proc::spawn(&["exchange", "--config", config]);
    hub.wait_stderr("listening on 127.0.0.1:");
    hub.wait_stderr(&format!("listening on unix:{}", socket.display()));
    // A client reaches it through the Unix socket from the file.
    let unix = format!("unix:{}", socket.display());
    let output = run(&["services", "--json", "--connect", &unix]);
    assert!(output.status.success(), "{}", stderr(&output));
    hub.signal("TERM");
    assert_eq!(hub.wait_exit().code(), Some(0));
    assert!(!socket.exists(), "the socket file is removed on shutdown");

    // --listen replaces the file's list.
    let port = closed_port();
    let mut hub = Proc::spawn(&[
        "exchange",
        "--config",
        config,
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let line = hub.wait_stderr("listening on 127.0.0.1:");
    assert_eq!(line, format!("listening on 127.0.0.1:{port}"));
}

#[test]
fn the_committed_example_config_is_valid() {
    // The example listens on the default port, which may be taken; only the parse matters:
    // a config error would say "invalid config file".
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/netsvc.example.toml");
    let mut hub = Proc::spawn(&["exchange", "--config", example]);
    let line = hub.wait_stderr("11111");
    assert!(!line.contains("invalid config"), "{line}");
}

// ----- services --------------------------------------------------------------------------

#[test]
fn services_lists_the_demo_as_json_and_columns() {
    let (_hub, address) = hub();
    let _demo = demo(&address);

    let listed = services(&address);
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (service, name) in listed.iter().zip(["clock", "echo"]) {
        let object = service.as_object().expect("an object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        let mut expected = vec![
            "address", "agent", "audience", "groups", "location", "name", "process",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected, "{service}");
        assert_eq!(service["name"], name);
        assert_eq!(service["audience"], "*");
        assert_eq!(service["groups"], serde_json::json!(["demo"]));
        assert_eq!(service["location"], "remote");
        let agent = service["agent"].as_str().expect("agent");
        let process = service["process"].as_str().expect("process");
        assert!(agent.ends_with(&format!("@{process}")), "{service}");
        assert_eq!(service["address"], format!("{agent}!{name}"));
    }

    let output = run(&["services", "--connect", &address]);
    assert!(output.status.success());
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("NAME"), "{text}");
    for column in [
        "AUDIENCE", "GROUPS", "LOCATION", "AGENT", "PROCESS", "ADDRESS",
    ] {
        let at = lines[0].find(column).expect(column);
        // Aligned: every row has a cell starting in this column.
        for row in &lines[1..] {
            assert_eq!(
                row.as_bytes()[at - 1],
                b' ',
                "column {column} misaligned:\n{text}"
            );
            assert_ne!(
                row.as_bytes()[at],
                b' ',
                "column {column} misaligned:\n{text}"
            );
        }
    }

    // A name filter.
    let output = run(&["services", "--json", "--connect", &address, "echo"]);
    let only = json_lines(&stdout(&output));
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["name"], "echo");
}

#[test]
fn services_watch_sees_the_demo_withdraw_gracefully() {
    let (_hub, address) = hub();
    let mut demo = demo(&address);
    let mut watch = Proc::spawn(&["services", "--watch", "--json", "--connect", &address]);
    let first = watch.next_json();
    let second = watch.next_json();
    let mut names = [first["name"].clone(), second["name"].clone()];
    names.sort_by_key(|n| n.as_str().map(str::to_owned));
    assert_eq!(names, [Json::from("clock"), Json::from("echo")]);
    assert_eq!(first["event"], "present");
    assert_eq!(first["groups"], serde_json::json!(["demo"]));

    // A newcomer is announced as it arrives.
    let mut publisher = Proc::spawn(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "newcomer",
        "--lifetime",
        "forever",
        "s",
        "1",
    ]);
    let arrived = watch.json_until("the newcomer", |j| j["name"] == "newcomer");
    assert_eq!(arrived["event"], "available");
    publisher.wait_stderr("available to late subscribers");
    publisher.signal("INT");
    assert_eq!(publisher.wait_exit().code(), Some(0));
    let left = watch.json_until("the newcomer leaving", |j| j["name"] == "newcomer");
    assert_eq!(left["event"], "withdrawn");

    // A service that arrives with groups is printed with them.
    let mut second = Proc::spawn(&["demo", "--connect", &address]);
    let echo = watch.json_until("a second echo", |j| j["name"] == "echo");
    assert_eq!(echo["event"], "available");
    assert_eq!(echo["groups"], serde_json::json!(["demo"]), "{echo}");
    watch.json_until("a second clock", |j| j["name"] == "clock");
    second.wait_stderr("demo ready");

    demo.signal("TERM");
    second.signal("TERM");
    assert_eq!(demo.wait_exit().code(), Some(0));
    assert_eq!(second.wait_exit().code(), Some(0));
    let mut gone = Vec::new();
    while gone.len() < 4 {
        let j = watch.json_until("a withdrawal", |j| j["event"] == "withdrawn");
        assert_eq!(j["reason"], "process-exit", "{j}");
        gone.push(j["name"].as_str().expect("name").to_owned());
    }
    gone.sort();
    assert_eq!(gone, ["clock", "clock", "echo", "echo"]);

    watch.signal("INT");
    assert_eq!(watch.wait_exit().code(), Some(0));
    watch.assert_clean_stderr();
    demo.assert_clean_stderr();
}

// ----- call ------------------------------------------------------------------------------

#[test]
fn call_prints_the_result_as_json() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let output = run(&["call", "--connect", &address, "echo", "echo", "\"hi\""]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "\"hi\"\n");

    // JSON arguments, and text that is not JSON taken as a string.
    let output = run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "echo",
        "1",
        "2.5",
        r#"{"a":[true,null]}"#,
        "hello",
        "{bad",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "[1,2.5,{\"a\":[true,null]},\"hello\",\"{bad\"]\n"
    );

    // Special forms of the JSON mapping survive the round trip.
    let output = run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "echo",
        r#"{"$duration":"PT1.5S"}"#,
    ]);
    assert_eq!(stdout(&output), "{\"$duration\":\"PT1.5S\"}\n");
}

#[test]
fn call_reads_the_exchange_from_the_environment() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let output = netsvc()
        .env("NETSVC_EXCHANGE", &address)
        .args(["call", "echo", "echo", "42"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "42\n");
}

fn failure_of(output: &Output) -> Json {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
    assert_eq!(stdout(output), "", "nothing on stdout for a failure");
    let err = stderr(output);
    let lines = json_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    let failure = lines.into_iter().next().expect("a line");
    let keys: Vec<&str> = failure
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["description", "details", "error", "origin"],
        "{failure}"
    );
    failure
}

#[test]
fn call_failures_are_four_fields_on_stderr_and_exit_1() {
    let (_hub, address) = hub();
    let _demo = demo(&address);

    let f = failure_of(&run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "fail",
        "7",
        "out of paper",
    ]));
    assert_eq!(f["error"], 7);
    assert_eq!(f["origin"], "demo");
    assert_eq!(f["details"], "out of paper");

    let f = failure_of(&run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "nosuchmethod",
    ]));
    assert_eq!(f["error"], 55);
    assert_eq!(f["origin"], "netsvc");

    let f = failure_of(&run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "sleep",
        "\"long\"",
    ]));
    assert_eq!(f["error"], 56);
}

#[test]
fn call_times_out_with_47() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let started = Instant::now();
    let f = failure_of(&run(&[
        "call",
        "--connect",
        &address,
        "--timeout",
        "0.5",
        "echo",
        "sleep",
        "30",
    ]));
    assert_eq!(f["error"], 47);
    assert_eq!(f["description"], "Request Timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn calling_a_missing_service_is_46_not_a_hang() {
    let (_hub, address) = hub();
    let started = Instant::now();
    let f = failure_of(&run(&[
        "call",
        "--connect",
        &address,
        "nosuchservice",
        "anything",
    ]));
    assert_eq!(f["error"], 46);
    assert_eq!(f["description"], "Service Unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_unreachable_exchange_is_named_after_a_bounded_wait() {
    let address = format!("127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let output = run(&[
        "call",
        "--connect",
        &address,
        "--retry",
        "0.5",
        "echo",
        "echo",
    ]);
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: cannot reach the exchange at {address} (waited 0.5 s"
        )),
        "{err}"
    );
    assert!(err.contains("netsvc exchange"), "{err}");
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");

    // The same for the other client commands.
    for args in [
        &["services"][..],
        &["monitor", "clock"],
        &["publish", "--service", "x", "s", "1"],
        &["demo"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--connect", &address, "--retry", "0.3"]);
        let output = run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(&address),
            "{args:?}: {}",
            stderr(&output)
        );
    }

    let output = run(&["call", "--connect", "no-port-here", "echo", "echo"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid exchange address"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn invalid_json_where_json_is_required_is_an_error() {
    // Input is checked before connecting: no hub is needed to get the error.
    let address = format!("127.0.0.1:{}", closed_port());
    let output = run(&[
        "call",
        "--connect",
        &address,
        "--strict",
        "echo",
        "echo",
        "1",
        "{bad",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.starts_with("error: argument 2: invalid JSON"), "{err}");

    // Valid JSON that is not a valid value (a misspelt special form) is never a string.
    let output = run(&[
        "call",
        "--connect",
        &address,
        "echo",
        "echo",
        r#"{"$dateime":"2026-01-01"}"#,
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("$dateime"), "{}", stderr(&output));

    let output = run(&[
        "publish",
        "--connect",
        &address,
        "--strict",
        "--service",
        "x",
        "s",
        "nojson",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid JSON"),
        "{}",
        stderr(&output)
    );

    let output = run(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "x",
        "bad*subject",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid subject"),
        "{}",
        stderr(&output)
    );

    let output = run(&["monitor", "--connect", &address, "clock", ""]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid pattern"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_interrupted_call_exits_130() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let mut call = Proc::spawn(&["call", "--connect", &address, "echo", "sleep", "30"]);
    // Let the request reach the service.
    std::thread::sleep(Duration::from_millis(500));
    call.signal("INT");
    assert_eq!(call.wait_exit().code(), Some(130));
    call.assert_clean_stderr();
}

// ----- publish and monitor ---------------------------------------------------------------

#[test]
fn monitor_prints_the_clock_reports() {
    let (_hub, address) = hub();
    let _demo = demo(&address);
    let output = run(&["monitor", "--connect", &address, "--count", "2", "clock"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let reports = json_lines(&stdout(&output));
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_eq!(r["event"], "report");
        assert_eq!(r["service"], "clock");
        assert_eq!(r["subject"], "system.time");
        assert_eq!(r["pattern"], "*");
        assert!(
            r["publisher"]
                .as_str()
                .expect("publisher")
                .ends_with("!clock"),
            "{r}"
        );
        assert!(
            r["value"]["$datetime"]
                .as_str()
                .expect("a date-time")
                .ends_with('Z'),
            "{r}"
        );
    }

    // With --events, publisher notices are JSON lines too; a pattern that matches nothing
    // gives notices only.
    let mut monitor = Proc::spawn(&[
        "monitor",
        "--connect",
        &address,
        "--events",
        "clock",
        "nothing.*",
    ]);
    let notice = monitor.next_json();
    assert_eq!(notice["event"], "publisher-available");
    assert_eq!(notice["service"], "clock");
    assert!(notice["process"].is_string());
}

#[test]
fn publish_with_a_lifetime_reaches_a_late_monitor() {
    let (_hub, address) = hub();
    let mut publisher = Proc::spawn(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "news",
        "--lifetime",
        "60",
        "headline",
        r#"{"text":"rain"}"#,
    ]);
    publisher.wait_stderr("available to late subscribers");

    let output = run(&[
        "monitor",
        "--connect",
        &address,
        "--count",
        "1",
        "news",
        "head*",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let reports = json_lines(&stdout(&output));
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["subject"], "headline");
    assert_eq!(reports[0]["pattern"], "head*");
    assert_eq!(reports[0]["value"], serde_json::json!({"text": "rain"}));

    // It stays for the lifetime; a signal ends it early and cleanly.
    publisher.signal("TERM");
    assert_eq!(publisher.wait_exit().code(), Some(0));
    publisher.assert_clean_stderr();
}

#[test]
fn publish_without_a_lifetime_reaches_a_running_monitor_and_exits() {
    let (_hub, address) = hub();
    let mut monitor = Proc::spawn(&["monitor", "--connect", &address, "--count", "1", "alerts"]);
    monitor.wait_stderr("waiting for one");
    let output = run(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "alerts",
        "disk.full",
        "/var",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = monitor.next_json();
    assert_eq!(report["subject"], "disk.full");
    assert_eq!(report["value"], "/var");
    assert_eq!(monitor.wait_exit().code(), Some(0));
}

#[test]
fn publish_from_stdin_reports_bad_lines_and_carries_on() {
    let (_hub, address) = hub();
    let mut monitor = Proc::spawn(&["monitor", "--connect", &address, "--count", "3", "feed"]);
    monitor.wait_stderr("waiting for one");
    let mut publisher = Proc::spawn(&[
        "publish",
        "--connect",
        &address,
        "--service",
        "feed",
        "--lifetime",
        "forever",
    ]);
    let mut stdin = publisher.stdin.take().expect("stdin");
    stdin
        .write_all(
            b"a.b 1\n\
              # a comment, and a blank line\n\
              \n\
              bad line\n\
              c.d {\"k\":[true]}\n\
              no-json-here\n\
              e.f \"text\"\n",
        )
        .expect("write");
    stdin.flush().expect("flush");

    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = monitor.next_json();
        seen.push((
            r["subject"].as_str().expect("subject").to_owned(),
            r["value"].clone(),
        ));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        [
            ("a.b".to_owned(), serde_json::json!(1)),
            ("c.d".to_owned(), serde_json::json!({"k": [true]})),
            ("e.f".to_owned(), serde_json::json!("text")),
        ]
    );
    // EOF ends it; the bad lines were named and make the exit code 1.
    drop(stdin);
    assert_eq!(publisher.wait_exit().code(), Some(1));
    let errors: Vec<&String> = publisher
        .stderr_seen
        .iter()
        .filter(|l| l.starts_with("error: line"))
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("error: line 4: invalid JSON"),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("error: line 6: expected `SUBJECT JSON`"),
        "{errors:?}"
    );
    publisher.assert_clean_stderr();
}

// ----- demo ------------------------------------------------------------------------------

#[test]
fn demo_embeds_its_own_exchange() {
    let mut demo = Proc::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let line = demo.wait_stderr("listening on ");
    let address = line.split_whitespace().nth(2).expect("address").to_owned();
    demo.wait_stderr("demo ready");
    wait_for_services(&address, &["echo", "clock"]);
    let output = run(&["call", "--connect", &address, "clock", "now"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let now: Json = serde_json::from_str(stdout(&output).trim()).expect("json");
    assert!(now["$datetime"].is_string(), "{now}");
    demo.signal("INT");
    assert_eq!(demo.wait_exit().code(), Some(0));
    demo.assert_clean_stderr();
}
