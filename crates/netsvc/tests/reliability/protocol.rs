//! What PROTOCOL.md promises a peer, checked from a raw peer's side: unknown WITHDRAW
//! reasons, the peer's announced frame limit, and the connection limit counting handshakes.

use std::time::Duration;

use netsvc::failure::codes;
use netsvc::{
    AnnouncementKind, ExchangeConfig, Lifetime, RegistrySync, RuntimeConfig, Value, WithdrawReason,
};
use netsvc_proto::wire::{self, CloseCode, Frame, Role, Text, frame};

use crate::util::{
    RawPeer, client, client_with, config, eventually, hello, hub, hub_with, linked_peers, visible,
    within,
};

/// A raw client that opens a link in group `g` announcing `max_frame`, then announces one
/// service of its own.
async fn raw_client(
    address: std::net::SocketAddr,
    process: &str,
    max_frame: u32,
    service: &str,
) -> RawPeer {
    let mut peer = RawPeer::connect(address).await;
    let mut h = hello("g", process);
    h.max_frame = max_frame;
    peer.send_frame(&Frame::Hello(h)).await;
    match peer.next_frame().await {
        Some(Frame::Hello(_)) => {}
        other => panic!("expected the hub's HELLO, got {other:?}"),
    }
    peer.send_frame(&Frame::Service(frame::Service {
        address: Text::from(format!("1@{process}!{service}")),
        name: Text::from(service),
        audience: Text::from("*"),
        groups: Vec::new(),
        version: 1,
        path: vec![Text::from(process)],
    }))
    .await;
    peer.send_frame(&Frame::Synced).await;
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_withdraw_reason_reads_as_withdrawn_by_its_owner() {
    let (hrt, _hex, address) = hub().await;
    let mut peer = raw_client(address, "odd:1", 1 << 20, "odd").await;
    let odd = visible(&hrt, "odd").await;
    let (_, mut watch) = hrt.registry().watch_address(odd.address());
    peer.send_frame(&Frame::Withdraw(frame::Withdraw {
        address: Text::from(odd.address()),
        reason: 200,
    }))
    .await;
    let reason = within("the withdrawal", async {
        loop {
            if let AnnouncementKind::Withdrawn(reason) = watch.recv().await.unwrap().kind {
                return reason;
            }
        }
    })
    .await;
    assert_eq!(reason, WithdrawReason::Owner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_larger_than_the_peers_frame_limit_is_sent_to_it() {
    const LIMIT: u32 = 2048;
    let (hrt, hex, address) = hub().await;
    let big = "x".repeat(4096);
    let answer = big.clone();
    let _on_hub = hrt
        .service("on-hub")
        .export("big", move |_| {
            let answer = answer.clone();
            async move { Ok(Value::from(answer)) }
        })
        .build()
        .unwrap();
    let publisher = hrt.service("news").build().unwrap();
    // A normal client, to check that requests relayed toward the small peer fail too.
    let (crt, _cex) = client(address);
    let mut peer = raw_client(address, "small:1", LIMIT, "small").await;
    let small = visible(&hrt, "small").await;
    visible(&crt, "small").await;
    let news = visible(&hrt, "news").await;

    // A request from the hub, and one relayed by the hub, too large for the peer.
    let direct = hrt.endpoint(&small);
    let call = direct.call("echo", vec![Value::from(big.clone())]);
    let f = within("the direct call", call).await.unwrap_err();
    assert_eq!(f.error, codes::REQUEST_ENCODING_ERROR, "{f}");
    assert!(f.details.contains("frame limit"), "{f}");
    let relayed = crt.endpoint("small");
    let call = relayed.call("echo", vec![Value::from(big.clone())]);
    let f = within("the relayed call", call).await.unwrap_err();
    assert_eq!(f.error, codes::REQUEST_ENCODING_ERROR, "{f}");

    // A response too large for the peer becomes a failure.
    peer.send_frame(&Frame::Request(frame::Request {
        conv: 7,
        to: Text::from(hrt.registry().lookup_name("on-hub")[0].address()),
        from: None,
        method: Text::from("big"),
        timeout_ms: 0,
        args: bytes::Bytes::from_static(&[0x90]),
        user: None,
    }))
    .await;
    // A report too large for the peer is counted as missed, not sent.
    peer.send_frame(&Frame::Subscribe(frame::Subscribe {
        sid: 1,
        publisher: Text::from(news.address()),
        subscriber: Text::from("1@small:1!small"),
        pattern: Text::from("*"),
    }))
    .await;
    let mut failure = None;
    let mut subscribed = false;
    while failure.is_none() || !subscribed {
        match peer.next_frame().await {
            Some(Frame::Failure(frame::Failure {
                conv: 7,
                error,
                details,
                ..
            })) => failure = Some((error, details.to_string())),
            Some(Frame::Subscribed(frame::Subscribed { sid: 1, refused })) => {
                assert!(!refused, "the raw peer is visible to the hub");
                subscribed = true;
            }
            Some(_) => {}
            None => panic!("the hub closed the link"),
        }
    }
    let (error, details) = failure.unwrap();
    assert_eq!(error, codes::RESPONSE_ENCODING_ERROR, "{details}");
    assert!(details.contains("frame limit"), "{details}");
    publisher
        .publish("big", Value::from(big.clone()), Lifetime::None)
        .unwrap();
    publisher.publish("small", 1, Lifetime::None).unwrap();
    // Every frame the peer receives fits its limit; the big report is missed, the small
    // one arrives.
    let mut raw = bytes::BytesMut::new();
    let decoder = wire::Decoder::new(LIMIT as usize);
    let mut missed = 0;
    let mut got_small = false;
    within("the reports", async {
        use tokio::io::AsyncReadExt;
        while !(got_small && missed > 0) {
            while let Some((frame, _)) = decoder.decode(&mut raw).expect("frames within the limit")
            {
                match frame {
                    Frame::Report(frame::Report { subject, .. }) => {
                        assert_eq!(subject.as_str(), "small");
                        got_small = true;
                    }
                    Frame::Missed(frame::Missed { count, .. }) => missed += count,
                    _ => {}
                }
            }
            let n = peer.stream.read_buf(&mut raw).await.unwrap();
            assert!(n > 0, "the hub closed the link");
        }
    })
    .await;
    assert_eq!(missed, 1);
    assert!(linked_peers(&hex).contains(&"small:1".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_still_in_the_handshake_count_against_the_limit() {
    let mut limited: ExchangeConfig = config();
    limited.max_connections = 3;
    // Long enough that the half-open connections below are still waiting when the fourth
    // arrives.
    limited.handshake_timeout = Duration::from_secs(30);
    let (_hrt, hex, address) = hub_with(limited, RuntimeConfig::default()).await;
    let mut half_open = Vec::new();
    for _ in 0..3 {
        half_open.push(RawPeer::connect(address).await);
    }
    // The fourth is refused at once, not after the handshake timeout.
    let mut extra = RawPeer::connect(address).await;
    let (code, reason) = within("the refusal", extra.close_frame()).await;
    assert_eq!(code, CloseCode::TooManyConnections, "{reason}");
    assert!(
        reason.contains("too many connections (limit 3)"),
        "{reason}"
    );
    // Once they go, a real client gets in.
    drop(half_open);
    let (crt, _cex) = client(address);
    let _svc = crt.service("late").build().unwrap();
    let late = crt.process_identity().to_owned();
    eventually("the late client's link", || {
        linked_peers(&hex) == [late.clone()]
    })
    .await;
}

/// A scoped client asks for the scope in its HELLO and says what it wants with INTEREST; a
/// hub that offers the scope and then never answers holds a call by name no longer than
/// the library's patience (10 s), even a call without a timeout: it then fails with 46.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_never_answers_an_interest_holds_no_call() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let scoped = RuntimeConfig::default().with_registry_sync(RegistrySync::Scoped);
    let (rt, _ex) = client_with(address, scoped);
    let (stream, _) = within("the client's connection", listener.accept())
        .await
        .unwrap();
    let mut hub = RawPeer::from_stream(stream);
    let Some(Frame::Hello(asked)) = hub.next_frame().await else {
        panic!("expected the client's HELLO");
    };
    let scope = (Text::from("registry"), Text::from("scoped"));
    assert!(asked.options.contains(&scope), "{:?}", asked.options);
    let mut answer = hello("g", "silent:1");
    answer.role = Role::Server;
    answer.options.push(scope);
    // Patient with the client's silence far beyond the 10 s: the link stays up, so only the
    // patience can end the wait.
    answer.heartbeat_ms = 10_000;
    hub.send_frame(&Frame::Hello(answer)).await;
    hub.send_frame(&Frame::Synced).await;
    // The client's registry and SYNCED, then what it wants so far: nothing.
    loop {
        match hub.next_frame().await {
            Some(Frame::Interest(i)) => {
                assert!(!i.all && i.names.is_empty(), "{i:?}");
                break;
            }
            Some(Frame::Service(_) | Frame::Synced | Frame::Heartbeat) => {}
            other => panic!("expected INTEREST, got {other:?}"),
        }
    }
    let caller = rt.clone();
    let call = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let outcome = caller
            .endpoint("x")
            .with_timeout(None)
            .call("echo", vec![])
            .await;
        (outcome, started.elapsed())
    });
    loop {
        match hub.next_frame().await {
            Some(Frame::Interest(i)) if i.names.iter().any(|n| n.as_str() == "x") => break,
            Some(Frame::Interest(i)) => panic!("INTEREST without x: {i:?}"),
            Some(_) => {}
            None => panic!("the client closed the link"),
        }
    }
    let (outcome, waited) = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call ends")
        .unwrap();
    let failure = outcome.expect_err("no service x");
    assert_eq!(failure.error, codes::SERVICE_UNAVAILABLE, "{failure}");
    assert!(waited >= Duration::from_secs(9), "waited only {waited:?}");
}
