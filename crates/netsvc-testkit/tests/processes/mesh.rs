//! Several servers, exchange groups and audiences.

use std::collections::BTreeMap;
use std::time::Duration;

use netsvc_testkit::{Node, field};
use serde_json::json;

use crate::util::{
    RETRY, available, call, client, count_about, hub, node, service, service_names, withdrawn,
};

/// Three servers linked in a triangle (each connects to the next), a client on each: every
/// client sees the others' services exactly once, calls work, and when one server is killed
/// only its own client's service is withdrawn elsewhere.
#[test]
fn triangle_of_servers_no_duplicates_and_one_server_killed() {
    let mut servers: Vec<(Node, String)> = (0..3).map(|i| hub(&format!("server-{i}"))).collect();
    for i in 0..3 {
        let next = servers[(i + 1) % 3].1.clone();
        servers[i].0.cmd(&format!("connect - {next} {RETRY}"), "ok");
    }
    let mut clients: Vec<Node> = Vec::new();
    let mut addresses: Vec<String> = Vec::new();
    for (i, (_, address)) in servers.iter().enumerate() {
        let mut c = client(&format!("client-{i}"), address);
        addresses.push(service(&mut c, &format!("svc-{i}"), "*"));
        clients.push(c);
    }
    for i in 0..3 {
        for j in (0..3).filter(|j| *j != i) {
            let seen = available(&mut clients[i], &format!("svc-{j}"));
            assert_eq!(field(&seen, "address"), addresses[j]);
            assert_eq!(field(&seen, "process"), clients[j].process());
        }
    }
    // Exactly one "available" per service in each client's history, and no withdrawal.
    for c in &mut clients {
        c.settle(Duration::from_millis(300));
    }
    for c in &clients {
        for address in &addresses {
            assert_eq!(
                count_about(c, "available", address),
                1,
                "{} saw {address}: {:#?}",
                c.label(),
                c.history()
            );
        }
        assert_eq!(c.count(|e| e["event"] == "withdrawn"), 0, "{}", c.label());
    }
    // Calls between clients of different servers.
    for (i, c) in clients.iter_mut().enumerate() {
        let next = &addresses[(i + 1) % 3];
        let r = call(c, "across", next, "echo", "[\"tri\"]");
        assert_eq!(r["value"], json!(["tri"]), "{r}");
    }

    // Server 1 dies: its client's service is withdrawn at the others; nothing else changes.
    servers[1].0.kill();
    for i in [0, 2] {
        assert_eq!(withdrawn(&mut clients[i], &addresses[1]), "connection-lost");
    }
    for i in [0, 2] {
        let c = &mut clients[i];
        c.settle(Duration::from_millis(300));
        for j in [0, 2] {
            assert_eq!(
                count_about(c, "withdrawn", &addresses[j]),
                0,
                "{} lost svc-{j}",
                c.label()
            );
        }
        let j = 2 - i;
        let r = call(c, "after", &format!("svc-{j}"), "echo", "[\"after\"]");
        assert_eq!(r["value"], json!(["after"]), "{r}");
    }
}

/// One server with an exchange in the default group and one in "database"; services with
/// audience `*`, `-` (process only) and `database`.
#[test]
fn groups_and_audiences_decide_who_sees_what() {
    let mut s = node("server");
    s.cmd("exchange server -", "exchange");
    s.cmd("exchange server database", "exchange");
    s.cmd("watch", "ok");
    let default_address = field(&s.cmd("listen - 127.0.0.1:0", "listening"), "address").to_owned();
    let db_address = field(
        &s.cmd("listen database 127.0.0.1:0", "listening"),
        "address",
    )
    .to_owned();
    service(&mut s, "everyone", "*");
    service(&mut s, "local-only", "-");
    service(&mut s, "db-only", "database");

    let mut d = client("default-client", &default_address);
    let mut b = node("database-client");
    b.cmd("exchange client database", "exchange");
    b.cmd("watch", "ok");
    b.cmd(&format!("connect database {db_address} {RETRY}"), "ok");
    // Once resynced, a client has the whole registry it may see.
    d.expect_event("connection", &[("state", json!("resynced"))]);
    let synced = b.expect_event("connection", &[("state", json!("resynced"))]);
    assert_eq!(field(&synced, "group"), "database");
    assert_eq!(service_names(&mut d), ["everyone"]);
    assert_eq!(service_names(&mut b), ["db-only", "everyone"]);

    // The clients' own services: a "database" service of the database client reaches the
    // server only; "*" services cross between the groups through the server.
    service(&mut b, "b-db", "database");
    service(&mut b, "b-public", "*");
    service(&mut d, "d-db", "database"); // not admitted by a default-group exchange
    service(&mut d, "d-public", "*");
    available(&mut s, "b-db");
    available(&mut s, "b-public");
    available(&mut s, "d-public");
    available(&mut d, "b-public");
    available(&mut b, "d-public");
    // Each process forwards in order: whatever was to come before the markers has come.
    let seen: BTreeMap<&str, Vec<String>> = [
        ("server", service_names(&mut s)),
        ("default", service_names(&mut d)),
        ("database", service_names(&mut b)),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        seen["server"],
        [
            "b-db",
            "b-public",
            "d-public",
            "db-only",
            "everyone",
            "local-only"
        ]
    );
    assert_eq!(
        seen["default"],
        ["b-public", "d-db", "d-public", "everyone"]
    );
    assert_eq!(
        seen["database"],
        ["b-db", "b-public", "d-public", "db-only", "everyone"]
    );
    // Nobody but the server ever heard of its process-only service.
    for n in [&d, &b] {
        assert_eq!(n.count(|e| e["name"] == "local-only"), 0, "{}", n.label());
    }
}
