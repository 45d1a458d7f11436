//! Hubs joined through a real NATS cluster (`netsvc exchange --nats`): three `nats-server`
//! processes clustered over routes on loopback, a hub on each node and no TCP link between
//! the hubs. Services appear at every hub once, calls and reports cross the cluster, a
//! killed hub's services are withdrawn everywhere within the links' heartbeat bound, and a
//! killed NATS node's hub moves to another node and links again.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// The `nats-server` binary: `$NATS_SERVER`, else on the PATH, else Debian's.
fn nats_server_binary() -> String {
    if let Ok(path) = std::env::var("NATS_SERVER") {
        return path;
    }
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("nats-server"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain(std::iter::once("/usr/sbin/nats-server".into()))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .expect("nats-server is needed (apt-get install nats-server; .ci/run installs it)")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A `GET` on a node's monitoring port: the body, or `None` while it does not answer.
fn monitoring(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
}

/// One node of the test cluster.
struct Node {
    client: u16,
    child: Child,
}

impl Node {
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster of `n` nodes routed to each other, every node ready and routed to all others.
fn cluster(n: usize) -> Vec<Node> {
    let binary = nats_server_binary();
    let ports: Vec<(u16, u16, u16)> = (0..n)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let routes: Vec<String> = ports
        .iter()
        .map(|(_, cluster, _)| format!("nats://127.0.0.1:{cluster}"))
        .collect();
    let nodes: Vec<(Node, u16)> = ports
        .iter()
        .enumerate()
        .map(|(i, &(client, cluster, monitor))| {
            let others: Vec<&str> = routes
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, r)| r.as_str())
                .collect();
            let child = Command::new(&binary)
                .args(["-a", "127.0.0.1", "-p", &client.to_string()])
                .args(["-m", &monitor.to_string()])
                .args(["--cluster_name", "netsvc-test", "--name", &format!("n{i}")])
                .args(["--cluster", &format!("nats://127.0.0.1:{cluster}")])
                .args(["--routes", &others.join(",")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nats-server");
            (Node { client, child }, monitor)
        })
        .collect();
    // Ready (`/healthz`) and routed to every other node (`/routez`).
    let deadline = Instant::now() + DEADLINE;
    for (node, monitor) in &nodes {
        loop {
            let healthy = monitoring(*monitor, "/healthz").is_some_and(|b| b.contains("ok"));
            let routed = monitoring(*monitor, "/routez")
                .and_then(|b| serde_json::from_str::<Json>(&b).ok())
                .and_then(|j| j["num_routes"].as_u64())
                .is_some_and(|routes| routes as usize >= n - 1);
            if healthy && routed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server on port {} never joined its cluster",
                node.client
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    nodes.into_iter().map(|(node, _)| node).collect()
}

/// A hub joined to the cluster through `urls` (the first is its node), and its address.
fn hub_on(urls: &[String]) -> (Proc, String) {
    let mut args = vec![];
    for url in urls {
        args.extend(["--nats", url.as_str()]);
    }
    let (mut hub, address) = hub_with(&args);
    hub.wait_stderr("through the NATS cluster");
    (hub, address)
}

/// How many services of `name` the hub at `address` lists.
fn count(address: &str, name: &str) -> usize {
    services(address)
        .iter()
        .filter(|s| s["name"] == name)
        .count()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn hubs_on_a_nats_cluster_share_services_calls_and_reports_and_lose_a_dead_hub() {
    let nodes = cluster(3);
    let (hub_a, a) = hub_on(&[nodes[0].url()]);
    let (_hub_b, b) = hub_on(&[nodes[1].url()]);
    let (_hub_c, c) = hub_on(&[nodes[2].url()]);
    let _demo = demo(&a);

    // Every hub sees the demo's services, each once.
    for hub in [&b, &c] {
        wait_for_services(hub, &["echo", "clock"]);
        assert_eq!(count(hub, "echo"), 1, "at {hub}: {:?}", services(hub));
    }
    // A call from a client of hub C to the service on hub A.
    let output = run(&["call", "--connect", &c, "echo", "echo", "\"across\""]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "\"across\"\n");
    // Reports published on hub A reach a monitor on hub B.
    let output = run(&["monitor", "--connect", &b, "--count", "2", "clock"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let reports = json_lines(&stdout(&output));
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(
        reports.iter().all(|r| r["subject"] == "system.time"),
        "{reports:?}"
    );

    // Hub A dies without a word: the others withdraw its services once its links fall
    // silent (a heartbeat bound of a few seconds), and a call to it fails, never hangs.
    hub_a.signal("KILL");
    for hub in [&b, &c] {
        wait_until(&format!("echo withdrawn at {hub}"), || {
            count(hub, "echo") == 0
        });
    }
    let output = run(&[
        "call",
        "--connect",
        &c,
        "--wait",
        "1",
        "echo",
        "echo",
        "\"gone\"",
    ]);
    assert!(
        !output.status.success(),
        "a call to a dead hub's service succeeded"
    );
}

#[test]
fn a_hub_whose_nats_node_dies_moves_to_another_and_links_again() {
    let mut nodes = cluster(3);
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    let (_hub_a, a) = hub_on(&[urls[0].clone()]);
    // Hub B knows every node, its own first.
    let (_hub_b, b) = hub_on(&[urls[1].clone(), urls[2].clone(), urls[0].clone()]);
    let _demo = demo(&b);
    wait_for_services(&a, &["echo", "clock"]);

    // Hub B's node dies: its NATS client reconnects to another node, its links over the
    // cluster are lost (their sequence has a gap, or falls silent) and opened again, and
    // hub A has the demo's services again, once each.
    let node = nodes.remove(1);
    drop(node);
    // Until then a call may fail (the link it went out on was lost), never hang.
    wait_until("a call from hub A to hub B after hub B's node died", || {
        let output = run(&[
            "call",
            "--connect",
            &a,
            "--wait",
            "2",
            "echo",
            "echo",
            "\"again\"",
        ]);
        output.status.success() && stdout(&output) == "\"again\"\n"
    });
    assert_eq!(count(&a, "echo"), 1, "{:?}", services(&a));
    assert_eq!(count(&a, "clock"), 1, "{:?}", services(&a));
}

#[test]
fn an_unusable_nats_url_is_refused_at_start() {
    let output = run(&[
        "exchange",
        "--listen",
        "127.0.0.1:0",
        "--nats",
        "nats://:::1",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("error: cannot join the NATS cluster: nats://:::1"),
        "{err}"
    );
}
