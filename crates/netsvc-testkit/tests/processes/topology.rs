//! Clients and servers coming and going: start order, server crashes and restarts,
//! connection events, single-attempt clients, graceful exits.

use std::time::Duration;

use netsvc_testkit::{field, free_port};
use serde_json::json;

use crate::util::{
    available, call, client, count_about, hub, hub_at, node, service, services, withdrawn,
};

#[test]
fn s37_a_client_started_before_its_server_connects_once_the_server_is_up() {
    let address = format!("127.0.0.1:{}", free_port());
    let mut c = client("client", &address);
    let client_svc = service(&mut c, "client-svc", "*");
    // Nothing listens yet: the attempts fail, silently.
    c.expect_none(
        "connection event while no server exists",
        |e| e["event"] == "connection",
        Duration::from_millis(300),
    );

    let mut s = node("server");
    s.cmd("exchange server -", "exchange");
    s.cmd("watch", "ok");
    let server_svc = service(&mut s, "server-svc", "*");
    s.cmd(&format!("listen - {address}"), "listening");

    let seen = available(&mut c, "server-svc");
    assert_eq!(field(&seen, "address"), server_svc);
    assert_eq!(field(&seen, "location"), "remote");
    assert_eq!(field(&seen, "process"), s.process());
    let seen = available(&mut s, "client-svc");
    assert_eq!(field(&seen, "address"), client_svc);
    assert_eq!(field(&seen, "location"), "remote");
    assert_eq!(field(&seen, "process"), c.process());
}

/// The server of two clients is killed and replaced on the same port. The subscriber's
/// subscription (by name) resumes by itself: the publisher's cache is delivered again, minus
/// the reports the subscriber has already seen (netsvc skips those by sequence number,
/// PROTOCOL.md §11), so every report arrives exactly once.
#[test]
fn s38_a_killed_server_is_replaced_and_everything_comes_back_once() {
    let (mut h, address) = hub("hub");
    let mut a = client("publisher", &address);
    let on_a = service(&mut a, "on-a", "*");
    a.cmd("publish on-a mode -1 1", "published");
    let mut b = client("subscriber", &address);
    service(&mut b, "watcher", "*");
    b.cmd("monitor watcher on-a *", "ok");
    assert_eq!(field(&available(&mut b, "on-a"), "address"), on_a);
    b.expect_event("report", &[("subject", json!("mode")), ("value", json!(1))]);

    // The server dies abruptly: its clients lose the remote services.
    h.kill();
    assert_eq!(withdrawn(&mut b, &on_a), "connection-lost");
    b.expect_event(
        "publisher",
        &[("status", json!("withdrawn")), ("publisher", json!(on_a))],
    );
    a.expect_event("connection", &[("state", json!("inactive"))]);
    // Meanwhile the publisher moves on (cached, lifetime forever).
    a.cmd("publish on-a mode -1 2", "published");
    a.cmd("publish on-a flag -1 7", "published");

    // A new server on the same port: the clients reconnect by themselves.
    let (mut h2, again) = hub_at("hub-2", &address);
    assert_eq!(again, address);
    let back = b.expect_event("available", &[("address", json!(on_a))]);
    assert_eq!(field(&back, "process"), a.process());
    assert_eq!(field(&back, "location"), "remote");
    // The subscription resumed: the cache comes again, ...
    b.expect_event(
        "publisher",
        &[("status", json!("available")), ("publisher", json!(on_a))],
    );
    b.expect_event("report", &[("subject", json!("mode")), ("value", json!(2))]);
    b.expect_event("report", &[("subject", json!("flag")), ("value", json!(7))]);
    // ... and live reports flow.
    a.cmd("publish on-a mode 0 3", "published");
    b.expect_event("report", &[("subject", json!("mode")), ("value", json!(3))]);

    // Nothing twice: each report once, each service known once.
    b.settle(Duration::from_millis(300));
    let reports: Vec<(String, i64)> = b
        .history()
        .iter()
        .filter(|e| e["event"] == "report")
        .map(|e| (field(e, "subject").to_owned(), e["value"].as_i64().unwrap()))
        .collect();
    let expected = [("mode", 1), ("mode", 2), ("flag", 7), ("mode", 3)];
    assert_eq!(
        reports,
        expected.map(|(s, v)| (s.to_owned(), v)),
        "every report exactly once, in order"
    );
    assert_eq!(count_about(&b, "available", &on_a), 2);
    for n in [&mut b, &mut h2] {
        let registry = services(n);
        assert_eq!(registry["on-a"], vec![on_a.clone()], "{registry:?}");
        assert_eq!(registry["watcher"].len(), 1, "{registry:?}");
    }
    let at_a = services(&mut a);
    assert_eq!(at_a["watcher"].len(), 1, "{at_a:?}");
}

#[test]
fn s39_connection_events_carry_the_peer_and_only_follow_handshakes() {
    let address = format!("127.0.0.1:{}", free_port());
    let mut c = node("client");
    c.cmd("exchange client -", "exchange");
    c.cmd(&format!("connect - {address} 0.05"), "ok");
    c.expect_none(
        "connection event for a failed attempt",
        |e| e["event"] == "connection",
        Duration::from_millis(300),
    );

    let mut s = node("server");
    s.cmd("exchange server -", "exchange");
    s.cmd(&format!("listen - {address}"), "listening");
    let up = c.expect_event("connection", &[("state", json!("active"))]);
    assert_eq!(field(&up, "peer"), s.process());
    assert_eq!(field(&up, "peer_address"), address);
    assert_eq!(up["initiated_here"], true);
    assert_eq!(field(&up, "group"), "");
    let s_up = s.expect_event("connection", &[("state", json!("active"))]);
    assert_eq!(field(&s_up, "peer"), c.process());
    assert_eq!(s_up["initiated_here"], false);
    let synced = c.expect_event("connection", &[("state", json!("resynced"))]);
    assert_eq!(field(&synced, "peer"), s.process());

    s.kill();
    let down = c.expect_event("connection", &[("state", json!("inactive"))]);
    assert_eq!(field(&down, "peer"), s.process());
    assert!(!field(&down, "reason").is_empty(), "{down}");
    // The client goes on retrying every 50 ms: still no event for the failed attempts.
    c.expect_none(
        "connection event while the server is down",
        |e| e["event"] == "connection",
        Duration::from_millis(300),
    );
}

#[test]
fn s40_a_single_attempt_client_does_not_reconnect() {
    let (mut h, address) = hub("hub");
    let mut c = node("once");
    c.cmd("exchange client -", "exchange");
    c.cmd(&format!("connect - {address} -1"), "ok");
    c.expect_event("connection", &[("state", json!("active"))]);
    h.kill();
    c.expect_event("connection", &[("state", json!("inactive"))]);

    let (mut h2, _) = hub_at("hub-2", &address);
    service(&mut h2, "new-hub", "*");
    // The new server is reachable: a retrying client gets in and sees its service ...
    let mut probe = client("probe", &address);
    available(&mut probe, "new-hub");
    // ... but the single-attempt client stays away.
    c.expect_none(
        "reconnection of a single-attempt client",
        |e| e["event"] == "connection" && e["state"] == "active",
        Duration::from_millis(500),
    );
    assert!(!services(&mut c).contains_key("new-hub"));
}

#[test]
fn graceful_exit_withdraws_with_reason_process_exit() {
    let (mut h, address) = hub("hub");
    let mut leaving = client("leaving", &address);
    let leaving_svc = service(&mut leaving, "leaving", "*");
    let mut eof = client("eof", &address);
    let eof_svc = service(&mut eof, "at-eof", "*");
    let mut o = client("observer", &address);
    for n in [&mut h, &mut o] {
        available(n, "leaving");
        available(n, "at-eof");
    }

    // The `exit` command.
    leaving.send("exit");
    leaving.expect_event("bye", &[]);
    let status = leaving.wait_exit(Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(withdrawn(&mut o, &leaving_svc), "process-exit");
    assert_eq!(withdrawn(&mut h, &leaving_svc), "process-exit");

    // End of input does the same.
    eof.close_stdin();
    eof.expect_event("bye", &[]);
    let status = eof.wait_exit(Duration::from_secs(5));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(withdrawn(&mut o, &eof_svc), "process-exit");
    assert_eq!(withdrawn(&mut h, &eof_svc), "process-exit");
}

#[test]
fn requests_groups_and_withdrawals_cross_processes() {
    let (mut h, address) = hub("hub");
    let mut a = client("owner", &address);
    let svc = service(&mut a, "worker", "*");
    let mut o = client("observer", &address);
    available(&mut o, "worker");

    let r = call(
        &mut o,
        "1",
        "worker",
        "echo",
        r#"[1, "two", {"three": 3.5}]"#,
    );
    assert_eq!(r["value"], json!([1, "two", {"three": 3.5}]), "{r}");
    let r = call(&mut o, "2", "worker", "pid", "[]");
    assert_eq!(r["value"], a.pid(), "{r}");
    let f = call(&mut o, "3", &svc, "fail", "[]");
    assert_eq!(
        (&f["event"], &f["error"], &f["origin"], &f["details"]),
        (
            &json!("failure"),
            &json!(1),
            &json!("node"),
            &json!("asked to fail")
        ),
        "{f}"
    );
    let f = call(&mut o, "4", "worker", "nosuch", "[]");
    assert_eq!(f["error"], 55, "{f}");
    let f = call(&mut o, "5", "nobody", "echo", "[]");
    assert_eq!(f["error"], 46, "{f}");

    a.cmd("join worker pool", "ok");
    for n in [&mut o, &mut h] {
        n.expect_event(
            "group-joined",
            &[("address", json!(svc)), ("group", json!("pool"))],
        );
    }
    a.cmd("leave worker pool", "ok");
    o.expect_event(
        "group-left",
        &[("address", json!(svc)), ("group", json!("pool"))],
    );
    a.cmd("withdraw worker", "ok");
    assert_eq!(withdrawn(&mut o, &svc), "owner");
    assert_eq!(withdrawn(&mut h, &svc), "owner");
}

#[test]
fn unix_socket_links_work_between_processes() {
    let dir = std::env::temp_dir().join(format!("netsvc-testkit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hub.sock");
    let mut s = node("unix-server");
    s.cmd("exchange server -", "exchange");
    s.cmd(&format!("listen-unix - {}", path.display()), "ok");
    service(&mut s, "over-unix", "*");
    let mut c = client("unix-client", &format!("unix:{}", path.display()));
    let seen = available(&mut c, "over-unix");
    assert_eq!(field(&seen, "process"), s.process());
    let r = call(&mut c, "u", "over-unix", "echo", r#"["u"]"#);
    assert_eq!(r["value"], json!(["u"]), "{r}");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
