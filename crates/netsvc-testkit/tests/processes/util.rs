//! Helpers shared by the process tests.

use std::collections::BTreeMap;

use netsvc_testkit::{Event, Node, field};
use serde_json::json;

/// The node binary built with this package.
pub(crate) const NODE: &str = env!("CARGO_BIN_EXE_netsvc-node");

/// How often test clients retry and reconnect (seconds, as the `connect` command takes it).
pub(crate) const RETRY: &str = "0.1";

/// A node with no exchange yet (heartbeat 200 ms).
pub(crate) fn node(label: &str) -> Node {
    Node::spawn(NODE, &[]).named(label)
}

/// A node with a default-group server exchange listening on `address` (port 0: any free
/// port), watching its registry. Returns it and the address it listens on.
pub(crate) fn hub_at(label: &str, address: &str) -> (Node, String) {
    let mut hub = node(label);
    hub.cmd("exchange server -", "exchange");
    hub.cmd("watch", "ok");
    let listening = hub.cmd(&format!("listen - {address}"), "listening");
    let bound = field(&listening, "address").to_owned();
    (hub, bound)
}

/// A hub on a fresh port.
pub(crate) fn hub(label: &str) -> (Node, String) {
    hub_at(label, "127.0.0.1:0")
}

/// A node with a default-group client exchange, watching its registry, connecting to
/// `address` with a quick retry.
pub(crate) fn client(label: &str, address: &str) -> Node {
    let mut client = node(label);
    client.cmd("exchange client -", "exchange");
    client.cmd("watch", "ok");
    client.cmd(&format!("connect - {address} {RETRY}"), "ok");
    client
}

/// Creates a service on `node`; returns its address.
pub(crate) fn service(node: &mut Node, name: &str, audience: &str) -> String {
    let created = node.cmd(&format!("service {name} {audience}"), "service");
    field(&created, "address").to_owned()
}

/// Waits until `node` (which watches its registry) announces a service of that name as
/// available; returns the announcement.
pub(crate) fn available(node: &mut Node, name: &str) -> Event {
    node.expect_event("available", &[("name", json!(name))])
}

/// Waits until `node` announces the service at `address` as withdrawn; returns the reason.
pub(crate) fn withdrawn(node: &mut Node, address: &str) -> String {
    let event = node.expect_event("withdrawn", &[("address", json!(address))]);
    field(&event, "reason").to_owned()
}

/// The registry of `node` now: service name → addresses.
pub(crate) fn services(node: &mut Node) -> BTreeMap<String, Vec<String>> {
    let reply = node.cmd("services", "services");
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in reply["list"].as_array().into_iter().flatten() {
        by_name
            .entry(field(entry, "name").to_owned())
            .or_default()
            .push(field(entry, "address").to_owned());
    }
    by_name
}

/// The names in `node`'s registry now, sorted.
pub(crate) fn service_names(node: &mut Node) -> Vec<String> {
    services(node).into_keys().collect()
}

/// How many events of `kind` about the service at `address` `node` has received so far.
pub(crate) fn count_about(node: &Node, kind: &str, address: &str) -> usize {
    node.count(|e| e["event"] == kind && e["address"] == address)
}

/// Calls `method` of `target` from `node` and waits for the outcome event.
pub(crate) fn call(node: &mut Node, id: &str, target: &str, method: &str, args: &str) -> Event {
    node.send(&format!("call {id} {target} {method} 10 {args}"));
    node.expect(
        &format!("outcome of call {id}"),
        |e| {
            ((e["event"] == "result" || e["event"] == "failure") && e["id"] == id)
                || (e["event"] == "error" && e["command"] == "call")
        },
        netsvc_testkit::DEFAULT_TIMEOUT,
    )
}
