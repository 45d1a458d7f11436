//! Hubs joined through a real `nats-server` (feature `nats`, PROTOCOL.md §16): what a
//! message out of sequence on a link does. The multi-process tests of the backbone (a
//! three-node cluster, killed hubs and nodes) are in `netsvc-cli/tests/cli/nats.rs`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures_util::StreamExt as _;
use netsvc::exchange::NatsConfig;
use netsvc::{Exchange, Runtime, Value, WithdrawReason, args};

use crate::util::*;

/// The `nats-server` binary: `$NATS_SERVER`, else Debian's, else on the PATH.
fn nats_server_binary() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| {
        [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .unwrap_or("nats-server")
        .to_owned()
    })
}

/// A `nats-server` on a free loopback port, killed when dropped.
struct NatsServer {
    child: Child,
    url: String,
}

impl NatsServer {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is needed (apt-get install nats-server)");
        within(async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hub joined to the cluster at `url` under `prefix`, with fast heartbeats and beacons.
async fn nats_hub(url: &str, prefix: &str) -> (Runtime, Exchange) {
    let rt = Runtime::new();
    let ex = Exchange::server(&rt).config(fast_config()).build().unwrap();
    ex.join_nats(
        NatsConfig::new([url])
            .with_prefix(prefix)
            .with_beacon(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    (rt, ex)
}

/// Someone with rights on the hubs' subjects publishes one message that is not the next of
/// a link's sequence: the hub reading that link ends it (its peer's services withdrawn as
/// connection-lost, never a silent gap or a forged frame taken in), and the hubs open a
/// new link, after which calls cross again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_out_of_sequence_ends_the_link_and_the_hubs_link_again() {
    let nats = NatsServer::start().await;
    let spy = async_nats::connect(nats.url.as_str()).await.unwrap();
    let mut seen = spy.subscribe("gap-test.>").await.unwrap();
    let (rt_a, _ex_a) = nats_hub(&nats.url, "gap-test").await;
    let (rt_b, _ex_b) = nats_hub(&nats.url, "gap-test").await;
    let _echo = echo(&rt_a, "echo");
    let binding = visible(&rt_b, "echo").await;

    // One direction of the link, as a cluster user sees it go by.
    let subject = within(async {
        loop {
            let message = seen.next().await.unwrap();
            if message.subject.contains(".link.") {
                return message.subject.to_string();
            }
        }
    })
    .await;
    let withdrawal = withdrawal_of(&rt_b, binding.address());
    // Sequence number 1 again: long past on a link that has carried a handshake.
    let mut forged = BytesMut::new();
    forged.put_u8(0);
    forged.put_u64(1);
    forged.put_slice(b"\x00\x00\x00\x01\x03");
    spy.publish(subject, forged.freeze()).await.unwrap();
    spy.flush().await.unwrap();

    assert_eq!(withdrawal.reason().await, WithdrawReason::ConnectionLost);
    visible(&rt_b, "echo").await;
    let answer = within(rt_b.endpoint("echo").call("echo", args!["again"]))
        .await
        .unwrap();
    assert_eq!(answer, Value::List(vec!["again".into()]));
}

/// The next report on `monitor` (skipping publisher notices), its value.
async fn next_report(monitor: &mut netsvc::ReportMonitor) -> Value {
    within(async {
        loop {
            if let netsvc::ReportEvent::Report(r) = monitor.recv().await.unwrap() {
                return r.value().unwrap().clone();
            }
        }
    })
    .await
}

/// A report larger than the cluster's `max_payload` (1 MB by default) crosses it: the link
/// cuts its bytes into messages, and the far hub's subscriber gets the report whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_larger_than_the_clusters_max_payload_crosses_it_whole() {
    let nats = NatsServer::start().await;
    let (rt_a, _ex_a) = nats_hub(&nats.url, "big-test").await;
    let (rt_b, _ex_b) = nats_hub(&nats.url, "big-test").await;
    let publisher = rt_a.service("pub").build().unwrap();
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    publisher
        .publish("big", Value::Bytes(big.clone()), netsvc::Lifetime::Forever)
        .unwrap();
    visible(&rt_b, "pub").await;
    let subscriber = rt_b.service("sub").build().unwrap();
    let mut monitor = subscriber.monitor_reports("pub", "big").unwrap();
    assert_eq!(next_report(&mut monitor).await, Value::Bytes(big));
}

/// The NATS server restarted: the links over it are lost and opened again; the far hub has
/// the service once, calls cross again, and a report published after the restart arrives
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_nats_server_restarts_the_hubs_link_again_with_nothing_twice() {
    let mut nats = NatsServer::start().await;
    let (rt_a, _ex_a) = nats_hub(&nats.url, "restart-test").await;
    let (rt_b, _ex_b) = nats_hub(&nats.url, "restart-test").await;
    let publisher = echo(&rt_a, "pub");
    publisher
        .publish("t", Value::from(1), netsvc::Lifetime::Forever)
        .unwrap();
    let binding = visible(&rt_b, "pub").await;
    let subscriber = rt_b.service("sub").build().unwrap();
    let mut monitor = subscriber.monitor_reports("pub", "t").unwrap();
    assert_eq!(next_report(&mut monitor).await, Value::from(1));

    let withdrawal = withdrawal_of(&rt_b, binding.address());
    let port = nats.url.rsplit(':').next().unwrap().to_owned();
    let _ = nats.child.kill();
    let _ = nats.child.wait();
    assert_eq!(withdrawal.reason().await, WithdrawReason::ConnectionLost);
    nats.child = Command::new(nats_server_binary())
        .args(["-a", "127.0.0.1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let answer = within(async {
        loop {
            if let Ok(answer) = rt_b.endpoint("pub").call("echo", args!["back"]).await {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(answer, Value::List(vec!["back".into()]));
    let named: Vec<_> = rt_b.registry().lookup_name("pub");
    assert_eq!(named.len(), 1, "{named:?}");
    publisher
        .publish("t", Value::from(2), netsvc::Lifetime::Forever)
        .unwrap();
    // The cached 1 may come again with the new subscription (as after any relink); 2 once.
    let mut twos = 0;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if next_report(&mut monitor).await == Value::from(2) {
                twos += 1;
            }
        }
    })
    .await;
    assert_eq!(twos, 1);
}
