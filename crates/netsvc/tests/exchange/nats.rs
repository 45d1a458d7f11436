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
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| {
            [
                "/usr/sbin/nats-server",
                "/usr/bin/nats-server",
                "/usr/local/bin/nats-server",
            ]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .unwrap_or("nats-server")
            .to_owned()
        });
        let child = Command::new(&binary)
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
