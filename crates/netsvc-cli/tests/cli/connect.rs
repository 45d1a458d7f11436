//! Reaching the exchange: waiting for it, relinking after a loss, and the causes printed
//! when a link cannot be made.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn clients_started_before_the_hub_wait_for_it_then_link() {
    let address = format!("127.0.0.1:{}", closed_port());
    let mut demo = Proc::spawn(&["demo", "--connect", &address]);
    let mut monitor = Proc::spawn(&["monitor", "--connect", &address, "--retry", "0.1", "clock"]);
    for p in [&mut demo, &mut monitor] {
        let line = p.wait_stderr(&format!("waiting for the exchange at {address}: "));
        assert!(line.contains("connection refused"), "{line}");
        assert!(
            line.contains("is a hub running? (netsvc exchange)"),
            "{line}"
        );
    }
    let _hub = hub_at(&address);
    demo.wait_stderr(&format!("linked to the exchange at {address}"));
    demo.wait_stderr("demo ready");
    monitor.wait_stderr(&format!("linked to the exchange at {address}"));
    let report = monitor.json_until("a clock report", |j| j["event"] == "report");
    assert_eq!(report["service"], "clock");

    let output = run(&["call", "--connect", &address, "echo", "echo", "\"hi\""]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "\"hi\"\n");

    // The wait was said once, not at each of the attempts (every 0.1 s for the monitor).
    for p in [&mut demo, &mut monitor] {
        p.drain_stderr();
        let waits = p
            .stderr_seen
            .iter()
            .filter(|l| l.contains("waiting for the exchange"))
            .count();
        assert_eq!(waits, 1, "{}", p.stderr_seen.join("\n"));
        p.assert_clean_stderr();
    }
}

#[test]
fn long_running_clients_relink_when_a_killed_hub_is_restarted() {
    let (mut hub, address) = hub();
    let mut demo = Proc::spawn(&["demo", "--connect", &address]);
    demo.wait_stderr("demo ready");
    let mut monitor = Proc::spawn(&["monitor", "--connect", &address, "clock"]);
    monitor.json_until("a clock report", |j| j["event"] == "report");
    let mut watch = Proc::spawn(&["services", "--watch", "--json", "--connect", &address]);
    watch.json_until("the clock", |j| j["name"] == "clock");
    let mut feed = Proc::spawn(&["publish", "--connect", &address, "--service", "feed"]);
    let mut clients = [&mut demo, &mut monitor, &mut watch, &mut feed];
    // Every client is linked once the watch has seen the demo; the feed says nothing
    // when it links, so wait for it to show up.
    wait_for_services(&address, &["feed"]);

    hub.signal("KILL");
    hub.wait_exit();
    for p in &mut clients {
        p.wait_stderr(&format!("lost the exchange at {address}"));
        // Nothing listens there now; they say why they cannot relink yet.
        let line = p.wait_stderr(&format!("waiting for the exchange at {address}: "));
        assert!(line.contains("connection refused"), "{line}");
    }
    let _hub = hub_at(&address);
    for p in &mut clients {
        p.wait_stderr(&format!("relinked to {address}"));
    }
    // Everything is back: the services, the subscription, the calls.
    let after = Instant::now();
    monitor.json_until("a report after the relink", |j| j["event"] == "report");
    assert!(after.elapsed() < DEADLINE);
    wait_for_services(&address, &["echo", "clock", "feed"]);
    let output = run(&["call", "--connect", &address, "echo", "echo", "2"]);
    assert_eq!(stdout(&output), "2\n", "{}", stderr(&output));
    for p in [&mut demo, &mut monitor, &mut watch, &mut feed] {
        p.assert_clean_stderr();
    }
}

/// The one `error:` line of a client that could not link, checking the exit code and that
/// it came within `within`.
fn link_error(args: &[&str], within: Duration) -> String {
    let started = Instant::now();
    let output = run(args);
    let elapsed = started.elapsed();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(
        err.starts_with("error: no link to the exchange at "),
        "{err}"
    );
    assert!(elapsed < within, "{args:?} took {elapsed:?}: {err}");
    err
}

#[test]
fn nothing_listening_is_a_refusal_named_after_the_wait() {
    let address = format!("127.0.0.1:{}", closed_port());
    let started = Instant::now();
    let err = link_error(
        &[
            "call",
            "--connect",
            &address,
            "--wait",
            "0.5",
            "echo",
            "echo",
        ],
        Duration::from_secs(4),
    );
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(
        err.starts_with(&format!(
            "error: no link to the exchange at {address} within 0.5 s: connection refused"
        )),
        "{err}"
    );
    assert!(err.contains("is a hub running? (netsvc exchange)"), "{err}");

    // The same for every command that connects, when given a --wait.
    for args in [
        &["services"][..],
        &["services", "--watch"],
        &["monitor", "clock"],
        &["monitor", "--all"],
        &["publish", "--service", "x", "s", "1"],
        &["publish", "--service", "x"],
        &["demo"],
        &["serve", "--reply", "1", "svc", "m"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--connect", &address, "--wait", "0.3"]);
        let err = link_error(&args, Duration::from_secs(4));
        assert!(err.contains(&address), "{args:?}: {err}");
        assert!(err.contains("connection refused"), "{args:?}: {err}");
    }
}

#[test]
fn another_group_fails_fast_naming_both_groups() {
    let (_hub, address) = hub_with(&["-g", "alpha"]);
    let err = link_error(
        &[
            "call",
            "--connect",
            &address,
            "-g",
            "beta",
            "--wait",
            "15",
            "echo",
            "echo",
        ],
        Duration::from_secs(5),
    );
    assert!(err.contains("group"), "{err}");
    assert!(err.contains("\"alpha\""), "{err}");
    assert!(err.contains("\"beta\""), "{err}");
    assert!(!err.contains("refused"), "{err}");

    // A long-running client keeps waiting, and says why.
    let mut monitor = Proc::spawn(&["monitor", "--connect", &address, "-g", "beta", "clock"]);
    let line = monitor.wait_stderr("waiting for the exchange at");
    assert!(
        line.contains("\"alpha\"") && line.contains("\"beta\""),
        "{line}"
    );
}

#[test]
fn an_http_server_is_not_a_netsvc_peer() {
    let address = fake_server(|mut stream| {
        let mut hello = [0u8; 512];
        let _ = stream.read(&mut hello);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        drain(&mut stream);
    });
    let err = link_error(
        &["services", "--connect", &address, "--wait", "15"],
        Duration::from_secs(5),
    );
    assert!(err.contains("not a netsvc peer"), "{err}");
    assert!(err.contains("HTTP/1.1 400 Bad Request"), "{err}");
    assert!(!err.contains("refused"), "{err}");
}

#[test]
fn an_original_ose_exchange_is_named() {
    let address = fake_server(|mut stream| {
        let mut frame = vec![0xaa, 0xaa, 0x30, 0x33, 0, 0, 0, 8];
        frame.extend_from_slice(b"OSEHELLO");
        let _ = stream.write_all(&frame);
        drain(&mut stream);
    });
    let err = link_error(
        &[
            "call",
            "--connect",
            &address,
            "--wait",
            "15",
            "echo",
            "echo",
        ],
        Duration::from_secs(5),
    );
    assert!(
        err.contains("this is an original OSE exchange, not a netsvc one"),
        "{err}"
    );
}

#[test]
fn a_server_that_never_answers_is_a_handshake_timeout_not_a_refusal() {
    let address = fake_server(|mut stream: TcpStream| drain(&mut stream));
    let started = Instant::now();
    let err = link_error(
        &["call", "--connect", &address, "--wait", "1", "echo", "echo"],
        Duration::from_secs(5),
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(err.contains("handshake"), "{err}");
    assert!(!err.contains("refused"), "{err}");
}

#[test]
fn an_address_without_a_port_means_11111() {
    let output = run(&["services", "--connect", "127.0.0.2", "--wait", "0.3"]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("127.0.0.2:11111"), "{text}");
}
