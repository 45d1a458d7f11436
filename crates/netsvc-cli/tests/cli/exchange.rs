use std::net::TcpListener;
use std::time::Instant;

use crate::util::*;

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

#[test]
fn a_unix_socket_in_use_or_a_plain_file_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("hub.sock");
    let path = socket.to_str().expect("utf-8 path");
    let mut hub = Proc::spawn(&["exchange", "--unix", path]);
    hub.wait_stderr(&format!("listening on unix:{path}"));

    // A second hub on the same live socket is refused; the first keeps serving.
    let output = run(&["exchange", "--unix", path]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("in use"), "{}", stderr(&output));
    let unix = format!("unix:{path}");
    let output = run(&["services", "--connect", &unix]);
    assert!(output.status.success(), "{}", stderr(&output));

    // A file that is not a socket is refused and kept.
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep me").expect("write");
    let output = run(&["exchange", "--unix", file.to_str().expect("utf-8")]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");

    hub.signal("INT");
    assert_eq!(hub.wait_exit().code(), Some(0));
    assert!(!socket.exists(), "the hub removes its own socket");
}

/// A hub busy for a moment (here: stopped) while a crowd of clients reconnects holds their
/// connections in its accept queue instead of dropping them: with the 1,024 that tokio asks
/// the kernel for, the rest had their SYNs dropped and waited out TCP's 1 s retransmission,
/// then 3 s, although the hub was up (measured at 4,000 clients: back after 1.5 to 2.6 s
/// instead of within 0.5 s). The queue now goes to the kernel's cap (`somaxconn`, 4,096 by
/// default); 1,500 connections made while the hub cannot accept must all be made at once.
#[test]
fn a_hub_that_cannot_accept_for_a_moment_queues_a_crowd_of_connections() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    const CROWD: u64 = 1_500;
    // One descriptor per connection in this process, and some to spare.
    let limit = getrlimit(Resource::Nofile);
    let wanted = CROWD + 256;
    if limit.current.is_some_and(|soft| soft < wanted) {
        let raised = rustix::process::Rlimit {
            current: Some(limit.maximum.map_or(wanted, |hard| hard.min(wanted * 2))),
            maximum: limit.maximum,
        };
        setrlimit(Resource::Nofile, raised).expect("raise the open-files limit");
        let soft = getrlimit(Resource::Nofile).current;
        assert!(
            soft.is_none_or(|soft| soft >= wanted),
            "this test needs {wanted} open files; the hard limit allows {soft:?}"
        );
    }
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    assert!(
        somaxconn.is_none_or(|cap| cap >= CROWD),
        "net.core.somaxconn {somaxconn:?} caps every accept queue under {CROWD}"
    );

    let (hub, address) = hub();
    let addr: std::net::SocketAddr = address.parse().expect("the hub's address");
    hub.signal("STOP");
    let started = Instant::now();
    let mut crowd = Vec::new();
    for _ in 0..CROWD {
        // Loopback answers a queued SYN in microseconds; a dropped one waits a second.
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500)) {
            Ok(stream) => crowd.push(stream),
            Err(_) => break,
        }
    }
    let took = started.elapsed();
    hub.signal("CONT");
    assert_eq!(
        crowd.len() as u64,
        CROWD,
        "only {} of {CROWD} connections were queued while the hub was stopped ({took:?})",
        crowd.len()
    );
}
