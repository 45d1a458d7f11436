//! Hostile and broken peers against a real exchange server: garbage, oversized and
//! truncated frames, unknown kinds, wrong versions, handshakes that never finish, stolen
//! identities, and a peer that stops reading before it misbehaves.
//!
//! For each one: the bad peer gets a CLOSE with a clear code and reason (or, if it closed
//! first, nothing), the hub logs a line naming it, the hub keeps serving a well-behaved
//! client connected throughout, and nothing of the bad peer remains afterwards (no link, no
//! service, and the socket is closed, so the link's task and buffers are gone).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use netsvc::failure::codes;
use netsvc::{Exchange, ExchangeConfig, Runtime, RuntimeConfig, Value, args};
use netsvc_proto::wire::{self, CloseCode, Frame, Text, frame};
use tokio::io::AsyncWriteExt;

use crate::util::{
    HANDSHAKE_TIMEOUT, RawPeer, capture_logs, client, config, echo, eventually, hello, hub,
    hub_with, linked_peers, log_line, visible, within,
};

/// A hub with an `echo` service and a well-behaved client with a service of its own.
struct Scene {
    hub_rt: Runtime,
    hub: Exchange,
    address: SocketAddr,
    good_rt: Runtime,
    _good_ex: Exchange,
    _services: Vec<netsvc::Service>,
}

impl Scene {
    async fn new() -> Self {
        Self::with(hub().await).await
    }

    async fn with((hub_rt, hub, address): (Runtime, Exchange, SocketAddr)) -> Self {
        capture_logs();
        let on_hub = echo(&hub_rt, "on-hub");
        let (good_rt, good_ex) = client(address);
        let good = echo(&good_rt, "good");
        visible(&good_rt, "on-hub").await;
        visible(&hub_rt, "good").await;
        Self {
            hub_rt,
            hub,
            address,
            good_rt,
            _good_ex: good_ex,
            _services: vec![on_hub, good],
        }
    }

    /// The well-behaved client is still linked, alone, and requests work both ways.
    async fn unharmed(&self) {
        let good = self.good_rt.process_identity().to_owned();
        eventually("only the good client linked", || {
            linked_peers(&self.hub) == [good.clone()]
        })
        .await;
        let r = within(
            "a call from the good client",
            self.good_rt
                .endpoint("on-hub")
                .call("echo", args!["still here"]),
        )
        .await;
        assert_eq!(r, Ok(Value::List(args!["still here"])));
        let r = within(
            "a call to the good client",
            self.hub_rt.endpoint("good").call("echo", args![1]),
        )
        .await;
        assert_eq!(r, Ok(Value::List(args![1])));
        let mut names: Vec<String> = self
            .hub_rt
            .registry()
            .services()
            .iter()
            .map(|b| b.service_name().to_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["good", "on-hub"], "nothing left of the bad peer");
    }

    async fn raw(&self) -> RawPeer {
        RawPeer::connect(self.address).await
    }
}

/// A frame with `body` after its length prefix.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.put_u32(u32::try_from(body.len()).unwrap());
    out.extend_from_slice(body);
    out
}

/// A raw peer announces a service on its link, as a client would.
async fn announce(peer: &mut RawPeer, process: &str, name: &str) {
    peer.send_frame(&Frame::Service(frame::Service {
        address: Text::from(format!("1@{process}!{name}")),
        name: Text::from(name),
        audience: Text::from("*"),
        groups: Vec::new(),
        version: 1,
        path: vec![Text::from(process)],
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_the_handshake_is_a_protocol_error() {
    let scene = Scene::new().await;
    let mut peer = scene.raw().await;
    let me = peer.local();
    peer.send(&framed(&[0xde, 0xad, 0xbe, 0xef, 0xc1])).await;
    let (code, reason) = peer.close_frame().await;
    assert_eq!(code, CloseCode::ProtocolError, "{reason}");
    let line = log_line(&[&me, "link not established"]).await;
    assert!(line.contains(&reason), "{line}");

    // Something that is not netsvc at all: "GET " would be a 1.2 GB frame, beyond any.
    let mut http = scene.raw().await;
    http.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (code, reason) = http.close_frame().await;
    assert_eq!(code, CloseCode::ProtocolError, "{reason}");
    assert_eq!(
        reason,
        "not a netsvc peer: it sent \"GET / HTTP/1.1\\r\\nHost: x\""
    );
    // An original OSE process, from its magic bytes.
    let mut ose = scene.raw().await;
    ose.send(&[0xaa, 0xaa, 0x30, 0x33, 0, 0, 0, 0x59]).await;
    let (code, reason) = ose.close_frame().await;
    assert_eq!(code, CloseCode::ProtocolError, "{reason}");
    assert!(reason.contains("original OSE exchange"), "{reason}");

    // A HELLO without the magic.
    let mut stranger = scene.raw().await;
    stranger
        .send(&framed(&[0x93, 0x01, 0xa3, b'f', b'o', b'o', 0x01]))
        .await;
    let (code, reason) = stranger.close_frame().await;
    assert_eq!(code, CloseCode::ProtocolError);
    assert!(reason.starts_with("not a netsvc peer"), "{reason}");
    scene.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_an_established_link_closes_it_and_withdraws_the_peer() {
    let scene = Scene::new().await;
    let mut peer = scene.raw().await;
    let me = peer.local();
    peer.open("rogue:1").await;
    announce(&mut peer, "rogue:1", "rogue-svc").await;
    visible(&scene.good_rt, "rogue-svc").await;
    // A well-formed frame whose body is not a frame.
    peer.send(&framed(&[0x92, 0x20, 0xc1])).await;
    let (code, reason) = peer.close_frame().await;
    assert_eq!(code, CloseCode::ProtocolError, "{reason}");
    assert!(
        reason.starts_with("protocol error: malformed frame"),
        "{reason}"
    );
    log_line(&["link down", "rogue:1", &me, &reason]).await;
    scene.unharmed().await;
    assert!(scene.good_rt.registry().lookup_name("rogue-svc").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_size_limit_is_refused_from_its_prefix_alone() {
    let mut small = config();
    small.max_frame = 64 * 1024;
    let scene = Scene::with(hub_with(small, RuntimeConfig::default()).await).await;

    // During the handshake: the limit is the HELLO limit (64 KiB here too).
    let mut early = scene.raw().await;
    let me = early.local();
    early.send(&(1u32 << 20).to_be_bytes()).await;
    let (code, reason) = early.close_frame().await;
    assert_eq!(code, CloseCode::FrameTooLarge, "{reason}");
    log_line(&[&me, "link not established", "1048576 bytes"]).await;

    // On a link: the prefix of a 64 KiB + 1 frame, and not one byte of its body.
    let mut peer = scene.raw().await;
    let me = peer.local();
    peer.open("big:1").await;
    peer.send(&(64u32 * 1024 + 1).to_be_bytes()).await;
    let (code, reason) = peer.close_frame().await;
    assert_eq!(code, CloseCode::FrameTooLarge, "{reason}");
    assert!(reason.contains("65537"), "{reason}");
    log_line(&["link down", "big:1", &me, "65537"]).await;
    scene.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_is_a_protocol_error_when_the_peer_stops_sending() {
    let scene = Scene::new().await;
    let mut request = BytesMut::new();
    wire::encode(
        &Frame::Request(frame::Request {
            conv: 1,
            to: Text::from("nowhere"),
            from: None,
            method: Text::from("echo"),
            timeout_ms: 0,
            args: Bytes::from_static(&[0x90]),
            user: None,
        }),
        &mut request,
    );
    let half = &request[..request.len() / 2];

    // On a link, then the peer shuts its sending side: the hub says why it gives up.
    let mut peer = scene.raw().await;
    let me = peer.local();
    peer.open("cut:1").await;
    peer.send(half).await;
    peer.stream.shutdown().await.unwrap();
    let (code, reason) = peer.close_frame().await;
    assert_eq!(code, CloseCode::ProtocolError, "{reason}");
    assert!(reason.contains("in the middle of a frame"), "{reason}");
    log_line(&["link down", "cut:1", &me, "in the middle of a frame"]).await;

    // A truncated HELLO, then the end: not established, nothing to answer.
    let mut early = scene.raw().await;
    let me = early.local();
    let mut hello_bytes = BytesMut::new();
    wire::encode(&Frame::Hello(hello("g", "cut:2")), &mut hello_bytes);
    early.send(&hello_bytes[..hello_bytes.len() - 3]).await;
    early.stream.shutdown().await.unwrap();
    let closed = early.closed().await;
    assert!(closed.frames.is_empty(), "{closed:?}");
    log_line(&[&me, "link not established", "closed during the handshake"]).await;
    scene.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_goes_silent_mid_frame_is_dropped_by_the_heartbeat() {
    let scene = Scene::new().await;
    let mut peer = scene.raw().await;
    let me = peer.local();
    // This peer promises a heartbeat every 100 ms: the hub gives up after 4 x 100 ms.
    let mut h = hello("g", "silent:1");
    h.heartbeat_ms = 100;
    peer.send_frame(&Frame::Hello(h)).await;
    peer.send(&[0, 0, 0, 50, 0x95]).await;
    let started = Instant::now();
    let (code, reason) = peer.close_frame().await;
    let took = started.elapsed();
    assert_eq!(code, CloseCode::HeartbeatTimeout, "{reason}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    log_line(&["link down", "silent:1", &me, "no frame from the peer"]).await;
    scene.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_frame_kind_closes_the_link() {
    let scene = Scene::new().await;
    let mut peer = scene.raw().await;
    let me = peer.local();
    peer.open("future:1").await;
    announce(&mut peer, "future:1", "future-svc").await;
    visible(&scene.hub_rt, "future-svc").await;
    // A well-formed frame of kind 0x7f with one field.
    peer.send(&framed(&[0x92, 0x7f, 0x01])).await;
    let (code, reason) = peer.close_frame().await;
    assert_eq!(code, CloseCode::ProtocolError, "{reason}");
    assert!(reason.contains("unknown frame kind 0x7f"), "{reason}");
    log_line(&["link down", "future:1", &me, "unknown frame kind 0x7f"]).await;
    scene.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_version_or_group_is_refused_before_the_hub_says_anything_else() {
    let scene = Scene::new().await;
    let mut peer = scene.raw().await;
    let me = peer.local();
    let mut v2 = hello("g", "v2:1");
    v2.version = 2;
    peer.send_frame(&Frame::Hello(v2)).await;
    let closed = peer.closed().await;
    assert!(
        closed.frames.is_empty(),
        "no HELLO for a refused peer: {closed:?}"
    );
    let (code, reason) = closed.close.unwrap();
    assert_eq!(code, CloseCode::VersionMismatch, "{reason}");
    assert!(reason.contains("protocol version 2"), "{reason}");
    log_line(&[&me, "link not established", "protocol version 2"]).await;

    let mut peer = scene.raw().await;
    peer.send_frame(&Frame::Hello(hello("elsewhere", "lost:1")))
        .await;
    let (code, reason) = peer.close_frame().await;
    assert_eq!(code, CloseCode::GroupMismatch, "{reason}");
    scene.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_never_completes_times_out() {
    let scene = Scene::new().await;
    // Connects and says nothing.
    let mut mute = scene.raw().await;
    let mute_address = mute.local();
    // Sends a HELLO a few bytes at a time, too slowly.
    let mut slow = scene.raw().await;
    let mut hello_bytes = BytesMut::new();
    wire::encode(&Frame::Hello(hello("g", "slow:1")), &mut hello_bytes);
    let started = Instant::now();
    let trickle = async {
        for chunk in hello_bytes.chunks(4) {
            if slow.stream.write_all(chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slow.close_frame().await
    };
    let (mute_close, slow_close) = tokio::join!(mute.close_frame(), trickle);
    let took = started.elapsed();
    for (code, reason) in [&mute_close, &slow_close] {
        assert_eq!(*code, CloseCode::HandshakeTimeout, "{reason}");
        assert!(reason.contains("not completed within 0.3 s"), "{reason}");
    }
    assert!(
        took >= HANDSHAKE_TIMEOUT && took < Duration::from_secs(3),
        "{took:?}"
    );
    log_line(&[&mute_address, "link not established", "handshake"]).await;
    scene.unharmed().await;
}

/// A reconnection storm mixes fast and slow peers: the hub handshakes each connection in a
/// task of its own, so peers that connect and never finish their handshake (64 silent ones
/// and one that sent half a HELLO, each held for a 30 s handshake timeout) do not delay a
/// client's handshake, which completes while they are all still waiting (within the 10 s
/// deadline of `eventually`, well before theirs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_that_never_complete_do_not_hold_the_others() {
    capture_logs();
    let long = config().with_handshake_timeout(Duration::from_secs(30));
    let (_hub_rt, hub, address) = hub_with(long, RuntimeConfig::default()).await;
    let mut silent = Vec::new();
    for _ in 0..64 {
        silent.push(RawPeer::connect(address).await);
    }
    let mut half = RawPeer::connect(address).await;
    let mut hello_bytes = BytesMut::new();
    wire::encode(&Frame::Hello(hello("g", "half:1")), &mut hello_bytes);
    half.send(&hello_bytes[..hello_bytes.len() / 2]).await;
    let (good_rt, _good_ex) = client(address);
    let good = good_rt.process_identity().to_owned();
    eventually("the client linked past the stalled handshakes", || {
        linked_peers(&hub) == [good.clone()]
    })
    .await;
    // Held open until the client has linked.
    drop((silent, half));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_claiming_another_identity_is_refused_and_the_real_one_keeps_its_link() {
    let scene = Scene::new().await;
    let good = scene.good_rt.process_identity().to_owned();
    let good_service = scene.hub_rt.registry().lookup_name("good")[0].clone();
    let mut withdrawals = scene.hub_rt.registry().watch_name("good");

    // The identity of a linked client.
    let mut impostor = scene.raw().await;
    let me = impostor.local();
    impostor.send_frame(&Frame::Hello(hello("g", &good))).await;
    let closed = impostor.closed().await;
    let (code, reason) = closed.close.clone().unwrap();
    assert_eq!(code, CloseCode::DuplicateLink, "{reason}");
    assert!(reason.contains(&good), "{reason}");
    // Nothing from the link it tried to take over reached it.
    assert!(
        closed.frames.iter().all(|f| matches!(f, Frame::Hello(_))),
        "{closed:?}"
    );
    log_line(&[&me, "link not established", "already linked to"]).await;

    // The hub's own identity.
    let mut mirror = scene.raw().await;
    mirror
        .send_frame(&Frame::Hello(hello("g", scene.hub_rt.process_identity())))
        .await;
    let (code, reason) = mirror.close_frame().await;
    assert_eq!(code, CloseCode::IdentityConflict, "{reason}");

    // An identity that cannot be one.
    let mut odd = scene.raw().await;
    odd.send_frame(&Frame::Hello(hello("g", "a!b"))).await;
    let (code, reason) = odd.close_frame().await;
    assert_eq!(code, CloseCode::ProtocolError, "{reason}");

    scene.unharmed().await;
    // The real client's service never flickered.
    let snapshot = withdrawals.recv().await.unwrap();
    assert_eq!(snapshot.binding, good_service);
    assert!(withdrawals.try_recv().unwrap().is_none(), "no withdrawal");
}

/// A peer fills the hub's send buffer (it asks for big responses and never reads them), then
/// sends garbage. The hub must still drop it promptly: trying to deliver a CLOSE to a peer
/// that does not read must not hold the link, its routes and its buffers for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_and_then_misbehaves_is_still_dropped() {
    let scene = Scene::new().await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small receive buffer, so that the hub's writes block early.
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(scene.address).await.unwrap();
    let mut peer = RawPeer::from_stream(stream);
    let me = peer.local();
    peer.open("glutton:1").await;
    announce(&mut peer, "glutton:1", "glutton-svc").await;
    visible(&scene.good_rt, "glutton-svc").await;
    let echo_address = scene.hub_rt.registry().lookup_name("on-hub")[0]
        .address()
        .to_owned();
    // 24 requests for 1 MiB responses: far more than the socket buffers hold.
    let big = netsvc::value::encode(
        &Value::List(vec![Value::bytes(vec![7u8; 1 << 20])]),
        &Default::default(),
    )
    .unwrap();
    for conv in 1..=24 {
        peer.send_frame(&Frame::Request(frame::Request {
            conv,
            to: Text::from(echo_address.as_str()),
            from: None,
            method: Text::from("echo"),
            timeout_ms: 0,
            args: Bytes::from(big.clone()),
            user: None,
        }))
        .await;
    }
    // Wait until the hub's writes to the glutton are stuck, with more queued behind them:
    // until its queue toward the glutton is over its soft limit (8 MiB), when the hub refuses
    // a request to the glutton's service at once with 51 (docs/ARCHITECTURE.md, "link
    // outbound"). The responses alone may not show it: the link's task takes everything
    // queued in one go, and what it holds while its write is stuck is not counted as queued.
    // So the hub also sends the glutton requests of 1 MiB (which it never answers: each
    // times out): they stay queued while the write ahead of them is stuck, which it is once
    // a few of the 24 MiB of responses have filled the socket buffers.
    let glutton = scene.hub_rt.registry().lookup_name("glutton-svc")[0].clone();
    let to_glutton = scene.hub_rt.endpoint(&glutton);
    let more = vec![Value::bytes(vec![9u8; 1 << 20])];
    within(
        "the hub's queue toward the glutton over its soft limit",
        async {
            loop {
                let call = to_glutton.call_with_timeout(
                    "any",
                    more.clone(),
                    Some(Duration::from_millis(10)),
                );
                if let Err(f) = call.await
                    && f.error == codes::RESOURCE_UNAVAILABLE
                {
                    return;
                }
            }
        },
    )
    .await;
    peer.send(&framed(&[0x91, 0x7f])).await;
    let started = Instant::now();
    // The hub drops the link although it could not even send its CLOSE.
    eventually("the glutton's link dropped", || {
        !linked_peers(&scene.hub).contains(&"glutton:1".to_owned())
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    log_line(&["link down", "glutton:1", &me, "unknown frame kind"]).await;
    eventually("the glutton's service withdrawn", || {
        scene
            .good_rt
            .registry()
            .lookup_name("glutton-svc")
            .is_empty()
    })
    .await;
    scene.unharmed().await;
    drop(peer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_beyond_the_limit_leave_the_others_alone() {
    let mut limited: ExchangeConfig = config();
    limited.max_connections = 1;
    let scene = Scene::with(hub_with(limited, RuntimeConfig::default()).await).await;
    let mut extra = scene.raw().await;
    let (code, reason) = extra.close_frame().await;
    assert_eq!(code, CloseCode::TooManyConnections, "{reason}");
    assert!(
        reason.contains("too many connections (limit 1)"),
        "{reason}"
    );
    scene.unharmed().await;
}
