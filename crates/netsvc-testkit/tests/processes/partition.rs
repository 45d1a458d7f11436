//! A link that stops delivering without closing: no FIN, no RST, the bytes simply stop, in
//! both directions (a partition, a NAT that forgot the connection, a frozen middlebox).
//! Only heartbeats can tell; both ends must declare the link dead within the heartbeat
//! bound, withdraw what they learned through it, fail what was in flight on it, and come
//! back once the network does.
//!
//! The fault is injected by a proxy inside the test (`proxy.rs`) rather than with network
//! namespaces (`ip netns`, veth), which need privileges CI machines often lack; the proxy
//! gives the endpoints exactly the same view: an open socket that goes quiet.

use std::time::{Duration, Instant};

use netsvc_testkit::field;
use serde_json::json;

use crate::inproc::tokio_runtime;
use crate::proxy::Proxy;
use crate::util::{RETRY, available, call, hub, node, service, withdrawn};

/// Heartbeat 200 ms (the node's default) x 4 misses, plus the 100 ms tick that checks it.
const BOUND: Duration = Duration::from_millis(900);
/// Allowance for a loaded machine on top of the bound.
const SLACK: Duration = Duration::from_millis(1100);

#[test]
fn a_link_that_stops_delivering_without_closing_is_declared_dead_on_both_sides() {
    let tokio = tokio_runtime();
    let (mut h, address) = hub("hub");
    let proxy = Proxy::start(tokio.handle(), &address);

    // A reaches the hub through the proxy; O directly.
    let mut a = node("behind-proxy");
    a.cmd("exchange client -", "exchange");
    a.cmd("watch", "ok");
    a.cmd(&format!("connect - {} {RETRY}", proxy.address()), "ok");
    let a_svc = service(&mut a, "a-svc", "*");
    let mut o = node("observer");
    o.cmd("exchange client -", "exchange");
    o.cmd("watch", "ok");
    o.cmd(&format!("connect - {address} {RETRY}"), "ok");
    let o_svc = service(&mut o, "o-svc", "*");
    available(&mut o, "a-svc");
    available(&mut a, "o-svc");
    available(&mut h, "a-svc");
    let ok = call(&mut o, "before", "a-svc", "echo", "[1]");
    assert_eq!(ok["value"], json!([1]), "{ok}");
    // A call that will be in flight across the partition (its own timeout is 30 s).
    o.send("call in-flight a-svc sleep 30 [20]");
    a.expect_event("sleeping", &[]);

    let cut = Instant::now();
    proxy.blackhole();

    // The hub's side: the link is declared dead, A's service withdrawn everywhere.
    assert_eq!(withdrawn(&mut h, &a_svc), "connection-lost");
    let hub_noticed = cut.elapsed();
    let down = h.expect_event(
        "connection",
        &[("state", json!("inactive")), ("peer", json!(a.process()))],
    );
    assert!(
        field(&down, "reason").starts_with("no frame from the peer"),
        "{down}"
    );
    assert_eq!(withdrawn(&mut o, &a_svc), "connection-lost");
    // The call in flight fails at once with 57, not after its 30 s.
    let failed = o.expect_event("failure", &[("id", json!("in-flight"))]);
    assert_eq!(failed["error"], 57, "{failed}");
    let call_failed = cut.elapsed();

    // A's side: the same, on its own.
    let a_down = a.expect_event("connection", &[("state", json!("inactive"))]);
    let a_noticed = cut.elapsed();
    assert!(
        field(&a_down, "reason").starts_with("no frame from the peer"),
        "{a_down}"
    );
    assert_eq!(withdrawn(&mut a, &o_svc), "connection-lost");
    println!(
        "blackholed link: the hub gave up after {} ms, A after {} ms (bound {} ms); the call \
         in flight failed with 57 after {} ms",
        hub_noticed.as_millis(),
        a_noticed.as_millis(),
        BOUND.as_millis(),
        call_failed.as_millis(),
    );
    assert!(hub_noticed < BOUND + SLACK, "{hub_noticed:?}");
    assert!(a_noticed < BOUND + SLACK, "{a_noticed:?}");

    // A reconnects (a fresh connection through the proxy works) and everything returns.
    let back = o.expect_event("available", &[("address", json!(a_svc))]);
    assert_eq!(field(&back, "process"), a.process());
    a.expect_event("available", &[("address", json!(o_svc))]);
    let ok = call(&mut o, "after", "a-svc", "echo", "[2]");
    assert_eq!(ok["value"], json!([2]), "{ok}");
    println!("back after {} ms", cut.elapsed().as_millis());
    // Nothing twice: A's service is known once at O.
    let registry = crate::util::services(&mut o);
    assert_eq!(registry["a-svc"], vec![a_svc]);
}

/// Two network namespaces joined by a veth pair, deleted (with the pair) when dropped.
struct Namespaces {
    names: [String; 2],
}

impl Namespaces {
    /// `ip netns` namespaces `a` (10.199.0.1) and `b` (10.199.0.2), or why not.
    fn create() -> Result<Self, String> {
        let id = std::process::id();
        let ns = Self {
            names: [format!("nsvc-a-{id}"), format!("nsvc-b-{id}")],
        };
        let [a, b] = &ns.names;
        let (va, vb) = (format!("nsva{id}"), format!("nsvb{id}"));
        for cmd in [
            format!("netns add {a}"),
            format!("netns add {b}"),
            format!("link add {va} type veth peer name {vb}"),
            format!("link set {va} netns {a}"),
            format!("link set {vb} netns {b}"),
            format!("-n {a} addr add 10.199.0.1/24 dev {va}"),
            format!("-n {b} addr add 10.199.0.2/24 dev {vb}"),
            format!("-n {a} link set lo up"),
            format!("-n {b} link set lo up"),
            format!("-n {a} link set {va} up"),
            format!("-n {b} link set {vb} up"),
        ] {
            ip(&cmd)?;
        }
        Ok(ns)
    }

    /// A command line that runs `NODE` inside namespace `i`.
    fn node(&self, i: usize, label: &str) -> netsvc_testkit::Node {
        netsvc_testkit::Node::spawn("ip", &["netns", "exec", &self.names[i], crate::util::NODE])
            .named(label)
    }

    /// Takes the veth pair down in both namespaces: packets stop, sockets stay open.
    fn cut(&self) {
        let id = std::process::id();
        ip(&format!("-n {} link set nsva{id} down", self.names[0])).unwrap();
        ip(&format!("-n {} link set nsvb{id} down", self.names[1])).unwrap();
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = ip(&format!("netns del {name}"));
        }
    }
}

fn ip(args: &str) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The same fault between real network namespaces: the hub in one, a client in the other,
/// a veth pair between them taken down under established connections (no FIN, no RST).
/// Needs `ip netns` (root or CAP_NET_ADMIN); skipped with a message where it is not allowed.
#[test]
fn a_veth_link_taken_down_between_namespaces_is_declared_dead_on_both_sides() {
    let ns = match Namespaces::create() {
        Ok(ns) => ns,
        Err(why) => {
            println!("SKIPPED: network namespaces are not available here ({why})");
            return;
        }
    };
    let mut h = ns.node(0, "hub-in-a");
    h.cmd("exchange server -", "exchange");
    h.cmd("watch", "ok");
    let listening = h.cmd("listen - 0.0.0.0:0", "listening");
    let port = field(&listening, "address")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    // The observer shares the hub's namespace (over its loopback); the client is across the veth.
    let mut o = ns.node(0, "observer-in-a");
    o.cmd("exchange client -", "exchange");
    o.cmd("watch", "ok");
    o.cmd(&format!("connect - 127.0.0.1:{port} {RETRY}"), "ok");
    let mut b = ns.node(1, "client-in-b");
    b.cmd("exchange client -", "exchange");
    b.cmd("watch", "ok");
    b.cmd(&format!("connect - 10.199.0.1:{port} {RETRY}"), "ok");
    let b_svc = service(&mut b, "b-svc", "*");
    let o_svc = service(&mut o, "o-svc", "*");
    available(&mut o, "b-svc");
    available(&mut b, "o-svc");
    let ok = call(&mut o, "before", "b-svc", "echo", "[1]");
    assert_eq!(ok["value"], json!([1]), "{ok}");

    let cut = Instant::now();
    ns.cut();
    assert_eq!(withdrawn(&mut h, &b_svc), "connection-lost");
    let hub_noticed = cut.elapsed();
    let down = h.expect_event(
        "connection",
        &[("state", json!("inactive")), ("peer", json!(b.process()))],
    );
    assert_eq!(withdrawn(&mut o, &b_svc), "connection-lost");
    let b_down = b.expect_event("connection", &[("state", json!("inactive"))]);
    let b_noticed = cut.elapsed();
    assert_eq!(withdrawn(&mut b, &o_svc), "connection-lost");
    println!(
        "veth down between namespaces: the hub gave up after {} ms ({}), the client after {} \
         ms ({}); bound {} ms",
        hub_noticed.as_millis(),
        field(&down, "reason"),
        b_noticed.as_millis(),
        field(&b_down, "reason"),
        BOUND.as_millis()
    );
    for reason in [field(&down, "reason"), field(&b_down, "reason")] {
        assert!(reason.starts_with("no frame from the peer"), "{reason}");
    }
    assert!(hub_noticed < BOUND + SLACK, "{hub_noticed:?}");
    assert!(b_noticed < BOUND + SLACK, "{b_noticed:?}");
}
