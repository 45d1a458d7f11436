//! Captured exchanges between two original OSE processes (vectors/ose-ose/), replayed
//! against the bridge in the original's place: as the exchange server an OSE client
//! connects to, and as the exchange client that connects to an OSE server. The bridge must
//! send what the original sent, frame by frame (see tests/support for what "the same"
//! means where identifiers differ).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use netsvc::failure::codes;
use netsvc::{Binding, Failure, Lifetime, Retry, Runtime, Value, args};
use netsvc_ose::bridge::{OseBridge, OseConfig, OseListener};
use netsvc_ose::message::subjects;
use support::{DEADLINE, Ids, Peer, check, nth_of, vector};
use tokio::net::TcpListener;

/// `{"count": N, "name": "ose-echo"}`, the probe's tick.
fn tick(count: i64) -> Value {
    let mut map = BTreeMap::new();
    map.insert("count".to_owned(), Value::from(count));
    map.insert("name".to_owned(), Value::from("ose-echo"));
    Value::Map(map)
}

/// The probe's service: `echo(x)` answers `x`; anything else fails with 55.
fn ose_echo(rt: &Runtime) -> netsvc::Service {
    rt.service("ose-echo")
        .export("echo", |req| async move {
            req.expect_args(1, Some(1))?;
            Ok::<_, Failure>(req.into_args().remove(0))
        })
        .build()
        .expect("ose-echo")
}

/// The bridge listening on a free port, with the probe's service hosted on the netsvc side.
async fn hub(config: OseConfig) -> (Runtime, netsvc::Service, OseListener) {
    let rt = Runtime::new();
    let service = ose_echo(&rt);
    let listener = OseBridge::new(&rt, config)
        .listen("127.0.0.1:0")
        .await
        .expect("listen");
    (rt, service, listener)
}

/// A recorded client of vector `name`, connected to `listener`, through its handshake and
/// the bridge's replay of `replayed` frames.
async fn recorded_client(
    listener: &OseListener,
    name: &str,
    replayed: usize,
) -> (Peer, Ids, support::Vector) {
    let v = vector(name);
    let mut ids = Ids::default();
    let mut peer = Peer::connect(listener.local_addr()).await;
    client_handshake(&mut peer, &mut ids, &v.client, &v.server, replayed).await;
    (peer, ids, v)
}

/// Plays the recorded client's handshake (its `$EP::ANNOUNCE`, then `ANNOUNCE-CLIENT`) and
/// checks the bridge's answers up to its replay of `replayed` frames.
async fn client_handshake(
    peer: &mut Peer,
    ids: &mut Ids,
    client: &[netsvc_ose::Envelope],
    server: &[netsvc_ose::Envelope],
    replayed: usize,
) {
    peer.send(&client[0]).await;
    peer.expect(ids, &server[0]).await;
    peer.send(&ids.frame(&client[1])).await;
    for recorded in &server[1..2 + replayed] {
        peer.expect(ids, recorded).await;
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_the_server_the_bridge_answers_a_recorded_client_as_the_original_did() {
    let (rt, service, listener) = hub(OseConfig::default()).await;
    // Cached before the client comes, as the probe's tick was.
    service
        .publish("ose.tick", tick(2), Lifetime::Forever)
        .unwrap();
    let (mut peer, mut ids, v) = recorded_client(&listener, "ose-ose/basic", 1).await;

    // The client's own service, then its call and its subscription.
    peer.send(&ids.frame(&v.client[2])).await;
    peer.send(&ids.frame(&v.client[3])).await;
    peer.send(&ids.frame(&v.client[4])).await;
    // The response and the cached report, in either order.
    peer.expect_unordered(&mut ids, &[&v.server[3], &v.server[4]])
        .await;
    // Live reports follow.
    service
        .publish("ose.tick", tick(3), Lifetime::Forever)
        .unwrap();
    let live = peer.expect(&mut ids, &v.server[5]).await;
    assert_eq!(support::payload(&live), tick(3));

    // The client's service stands in this runtime as a proxy, by its name.
    wait_until("the OSE client's service is imported", || {
        rt.registry().lookup_name("ose-echo").len() == 2
    })
    .await;
    // In the group of the OSE process it came from (its ANNOUNCE said `vm:5486`).
    let members = rt.registry().lookup_group("ose@vm:5486");
    assert_eq!(members.len(), 1, "{members:?}");
    assert_ne!(members[0].address(), service.address());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_is_the_originals_byte_for_byte() {
    let (_rt, _service, listener) = hub(OseConfig::default()).await;
    let (mut peer, mut ids, v) = recorded_client(&listener, "ose-ose/basic", 1).await;
    peer.send(&ids.frame(&v.client[2])).await;
    peer.send(&ids.frame(&v.client[3])).await;
    let response = peer.expect(&mut ids, &v.server[3]).await;
    // With the identifiers swapped back, the bridge's frame is the original's bytes.
    let mut as_recorded = response.clone();
    as_recorded.to = v.server[3].to.clone();
    as_recorded.from = v.server[3].from.clone();
    as_recorded.conversation = v.server[3].conversation.clone();
    assert_eq!(as_recorded.to_bytes(), v.server[3].to_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_method_fails_with_55_as_in_the_original() {
    let (_rt, _service, listener) = hub(OseConfig::default()).await;
    let (mut peer, mut ids, v) = recorded_client(&listener, "ose-ose/nosuch", 1).await;
    let request = nth_of(&v.client, subjects::REQUEST, 0);
    peer.send(&ids.frame(&request)).await;
    peer.expect(&mut ids, &nth_of(&v.server, subjects::FAILURE, 0))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_replayed_and_a_withdrawal_leaves_them_first() {
    let rt = Runtime::new();
    let service = ose_echo(&rt);
    service.join_group("grp1").unwrap();
    let listener = OseBridge::new(&rt, OseConfig::default())
        .listen("127.0.0.1:0")
        .await
        .unwrap();
    // SERVICE-AVAILABLE, then GROUP-AVAILABLE, both in the handshake's conversation.
    let (mut peer, mut ids, v) = recorded_client(&listener, "ose-ose/groups-withdraw", 2).await;
    drop(service);
    peer.expect(&mut ids, &v.server[4]).await; // GROUP-WITHDRAWN
    peer.expect(&mut ids, &v.server[5]).await; // SERVICE-WITHDRAWN
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_keep_alive_goes_back_round_as_in_the_original() {
    let (_rt, _service, listener) = hub(OseConfig::default()).await;
    let (mut peer, mut ids, v) = recorded_client(&listener, "ose-ose/keepalive", 1).await;
    let out = nth_of(&v.client, subjects::KEEP_ALIVE, 0);
    peer.send(&ids.frame(&out)).await;
    let live = peer.next_any().await.expect("the return");
    check(&mut ids, &nth_of(&v.server, subjects::KEEP_ALIVE, 0), &live);
}

/// The bridge as an exchange client of a recorded OSE server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_a_client_the_bridge_sends_what_the_original_client_sent() {
    let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rt = Runtime::new();
    let local = ose_echo(&rt);
    let connector = OseBridge::new(&rt, OseConfig::default()).connect(
        &server.local_addr().unwrap().to_string(),
        Retry::every(Duration::from_millis(100)),
    );
    let (stream, _) = server.accept().await.unwrap();
    let mut peer = Peer::new(stream);
    let v = vector("ose-ose/basic");
    let mut ids = Ids::default();
    // The client speaks first; the server answers; then the exchanges announce themselves.
    peer.expect(&mut ids, &v.client[0]).await;
    peer.send(&v.server[0]).await;
    peer.expect(&mut ids, &v.client[1]).await;
    peer.send(&ids.frame(&v.server[1])).await;
    peer.send(&ids.frame(&v.server[2])).await;
    // The client's replay: its own service, a reply in the handshake's conversation (seq 2).
    peer.expect(&mut ids, &v.client[2]).await;
    assert!(connector.established_within(DEADLINE).await);

    // The server's service is a proxy here; the local service calls it, as the probe did.
    let proxy = imported(&rt, &local).await;
    let endpoint = local.endpoint(&proxy).unwrap();
    let call = tokio::spawn(async move { endpoint.call("echo", args!["hello"]).await });
    let request = peer.expect(&mut ids, &v.client[3]).await;
    let mut response = ids.frame(&v.server[3]);
    response.conversation = request.conversation.clone();
    peer.send(&response).await;
    assert_eq!(call.await.unwrap().unwrap(), Value::from("hello"));

    // A subscription through the proxy goes to the OSE publisher, from the subscriber.
    let mut monitor = local.monitor_reports(&proxy, "ose.tick").unwrap();
    peer.expect(&mut ids, &v.client[4]).await;
    for recorded in &v.server[4..8] {
        peer.send(&ids.frame(recorded)).await;
    }
    for count in 2..6 {
        let report = tokio::time::timeout(DEADLINE, monitor.next_report())
            .await
            .expect("a report in time")
            .expect("a report");
        assert_eq!(report.subject(), "ose.tick");
        assert_eq!(report.value().unwrap(), &tick(count));
    }

    // A subscriber that goes while still subscribed is withdrawn once, and not announced
    // again by its subscription's end, which the runtime reports after its withdrawal.
    let watcher = rt.service("watcher").build().unwrap();
    let _watching = watcher.monitor_reports(&proxy, "ose.*").unwrap();
    let announced = peer.next_of(subjects::SERVICE_AVAILABLE).await;
    assert!(announced.content.starts_with(b"watcher\0"));
    assert_eq!(
        peer.next_of(subjects::SUBSCRIPTION_REQUESTED).await.header,
        "SubjectPattern: ose.*\n"
    );
    drop(watcher);
    assert_eq!(peer.next().await.subject, subjects::SERVICE_WITHDRAWN);
    let more = tokio::time::timeout(Duration::from_millis(300), peer.next()).await;
    assert!(more.is_err(), "after the withdrawal: {more:?}");
}

/// Sends the recorded client's own service (`frame`) and waits for its proxy: the proxy's
/// binding (the service of that name that is not `local`).
async fn import(
    peer: &mut Peer,
    ids: &Ids,
    frame: &netsvc_ose::Envelope,
    rt: &Runtime,
    local: &netsvc::Service,
) -> Binding {
    peer.send(&ids.frame(frame)).await;
    imported(rt, local).await
}

/// Waits for the proxy of the OSE side's `ose-echo`: the service of that name that is not
/// `local`.
async fn imported(rt: &Runtime, local: &netsvc::Service) -> Binding {
    let mut proxy = None;
    wait_until("the OSE service is imported", || {
        proxy = rt
            .registry()
            .lookup_name("ose-echo")
            .into_iter()
            .find(|b| b.address() != local.address());
        proxy.is_some()
    })
    .await;
    proxy.expect("a proxy")
}

/// A call into OSE ends however the OSE side goes away: 57 when its service is withdrawn
/// before it answers, and when the connection is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_into_ose_fail_with_57_when_the_service_or_the_peer_goes() {
    let (rt, service, listener) = hub(OseConfig::default()).await;
    let (mut peer, ids, v) = recorded_client(&listener, "ose-ose/groups-withdraw", 0).await;
    let caller = rt.service("").build().unwrap();
    let never_answered = |proxy: Binding| {
        let endpoint = caller.endpoint(&proxy).unwrap();
        tokio::spawn(async move { endpoint.call("echo", args!["never answered"]).await })
    };

    // The recorded client's service, then its withdrawal (the four fields as the server
    // recorded them the other way round).
    let proxy = import(&mut peer, &ids, &v.client[2], &rt, &service).await;
    let pending = never_answered(proxy);
    peer.next_of(subjects::REQUEST).await;
    let withdrawn = netsvc_ose::Envelope {
        subject: subjects::SERVICE_WITHDRAWN.into(),
        content: format!("$RELAY!{}!ose-echo", receiver_of(&v.client[2]))
            .into_bytes()
            .into(),
        ..ids.frame(&v.client[2])
    };
    peer.send(&withdrawn).await;
    let failure = pending.await.unwrap().unwrap_err();
    assert_eq!(failure.error, codes::APPLICATION_ERROR);
    assert!(failure.is_withdrawn(), "{failure:?}");

    // Again, and this time the connection goes.
    let proxy = import(&mut peer, &ids, &v.client[2], &rt, &service).await;
    let pending = never_answered(proxy);
    peer.next_of(subjects::REQUEST).await;
    drop(peer);
    let failure = pending.await.unwrap().unwrap_err();
    assert!(failure.is_withdrawn(), "{failure:?}");
    wait_until("the proxy is withdrawn with its connection", || {
        rt.registry().lookup_name("ose-echo").len() == 1
    })
    .await;
}

/// The receiver field of a recorded SERVICE-AVAILABLE.
fn receiver_of(frame: &netsvc_ose::Envelope) -> String {
    String::from_utf8_lossy(&frame.content)
        .split('\0')
        .nth(1)
        .expect("a receiver")
        .to_owned()
}

/// A peer that goes silent (stopped, its machine gone) is found out by the keep-alives
/// going unanswered, and its services withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_taken_for_dead() {
    let config = OseConfig {
        keep_alive: Duration::from_millis(200),
        dead_after: Duration::from_millis(800),
        ..OseConfig::default()
    };
    let (rt, service, listener) = hub(config).await;
    let (mut peer, ids, v) = recorded_client(&listener, "ose-ose/basic", 1).await;
    import(&mut peer, &ids, &v.client[2], &rt, &service).await;
    // The peer stops answering (it keeps the socket open: a stopped process).
    let started = tokio::time::Instant::now();
    peer.closed().await;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "closed too early"
    );
    wait_until("its service withdrawn", || {
        rt.registry().lookup_name("ose-echo").len() == 1
    })
    .await;
}

/// What a hostile or broken peer sends ends its connection; nothing else suffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_connection_and_nothing_else() {
    let config = OseConfig {
        max_frame: 4096,
        ..OseConfig::default()
    };
    let (rt, _service, listener) = hub(config).await;
    for bad in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"\xaa\xaa\x30\x33\x7f\xff\xff\xff",
        b"\xaa\xaa\x30\x33\x00\x00\x00\x08\x00\x00\x00\x01rest",
        b"\xaa\xaa\x30\x33\x00\x00\x00\x06\x00\x00\x00\x00ab",
    ] {
        let mut peer = Peer::connect(listener.local_addr()).await;
        peer.send_bytes(bad).await;
        peer.closed().await;
    }
    // A frame before the endpoint handshake that is not $EP::ANNOUNCE.
    let v = vector("ose-ose/basic");
    let mut peer = Peer::connect(listener.local_addr()).await;
    peer.send(&v.client[1]).await;
    peer.closed().await;
    // The bridge still serves.
    let mut ids = Ids::default();
    let mut peer = Peer::connect(listener.local_addr()).await;
    client_handshake(&mut peer, &mut ids, &v.client, &v.server, 1).await;
    assert_eq!(rt.registry().lookup_name("ose-echo").len(), 1);
}
