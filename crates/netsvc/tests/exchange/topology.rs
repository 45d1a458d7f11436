use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use netsvc::{
    AnnouncementKind, ConnectionState, Exchange, Location, Retry, Runtime, Value, WithdrawReason,
    args,
};

use crate::util::{
    Tap, client, connection, echo, eventually, fast_config, gave_up, gone, hub, hub_again,
    listen_again, never_answers, quick, seen, visible, withdrawal_of, within,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s37_a_client_started_before_its_server_connects_once_the_server_is_up() {
    // Reserve a port, then free it for the server to come later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "nothing listens there yet"
    );
    let (crt, _cex) = client(&address);
    let _client_svc = echo(&crt, "client-svc");
    // A few failed attempts: refused while nothing listens (which only the client can see),
    // then hung up on by a stand-in, which counts them. Two attempts there: the client has
    // failed and tried again.
    let not_up_yet = Tap::hanging_up_on(&address).await;
    not_up_yet.accepted_at_least(2).await;
    not_up_yet.close().await;
    let srt = Runtime::new();
    let sex = Exchange::server(&srt)
        .config(fast_config())
        .build()
        .unwrap();
    let _server_svc = echo(&srt, "server-svc");
    listen_again(&sex, &address).await;

    let remote = visible(&crt, "server-svc").await;
    assert_eq!(remote.location(), Location::Remote);
    assert_eq!(remote.process_identity(), srt.process_identity());
    assert_eq!(
        visible(&srt, "client-svc").await.process_identity(),
        crt.process_identity()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cross_the_exchange_both_ways_and_through_the_hub() {
    let (hrt, _hex, address) = hub().await;
    let _h = echo(&hrt, "on-hub");
    let (art, _aex) = client(&address);
    let (brt, _bex) = client(&address);
    let _a = echo(&art, "on-a");
    let caller = brt.service("caller").build().unwrap();

    visible(&art, "on-hub").await;
    visible(&hrt, "on-a").await;
    visible(&brt, "on-a").await;

    let r = art
        .endpoint("on-hub")
        .call("echo", args![1, "x"])
        .await
        .unwrap();
    assert_eq!(r, Value::List(vec![1.into(), "x".into()]));
    let r = hrt.endpoint("on-a").call("echo", args![2]).await.unwrap();
    assert_eq!(r, Value::List(vec![2.into()]));
    // Client to client, relayed by the hub.
    let ep = caller.endpoint("on-a").unwrap();
    let r = ep.call("who", vec![]).await.unwrap();
    let parts = r.as_list().unwrap();
    assert_eq!(parts[0].as_str(), Some(art.process_identity()));
    // s46: the sender the service sees is the caller's address, which it can look up.
    assert_eq!(parts[1].as_str(), Some(caller.address()));
    assert!(art.registry().lookup_address(caller.address()).is_some());

    let f = ep.call("nosuch", vec![]).await.unwrap_err();
    assert_eq!((f.error, f.origin.as_str()), (55, "netsvc"));
    // Many calls in flight across two hops.
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let ep = ep.clone();
            tokio::spawn(async move { ep.call("echo", args![i]).await })
        })
        .collect();
    for (i, c) in calls.into_iter().enumerate() {
        assert_eq!(
            within(c).await.unwrap().unwrap(),
            Value::List(vec![Value::from(i as i64)])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s38_when_the_server_dies_clients_see_withdrawals_and_then_the_services_come_back() {
    let (hrt, hex, address) = hub().await;
    let _h = echo(&hrt, "on-hub");
    let (art, _aex) = client(&address);
    let (brt, _bex) = client(&address);
    let a = echo(&art, "on-a");
    let from_a = visible(&brt, "on-a").await;
    let hub_svc = visible(&brt, "on-hub").await;
    assert_eq!(from_a.address(), a.address());

    // The hub goes away abruptly.
    let a_lost = withdrawal_of(&brt, from_a.address());
    drop(hex);
    drop(_h);
    hrt.shutdown();
    assert_eq!(a_lost.reason().await, WithdrawReason::ConnectionLost);
    gone(&brt, hub_svc.address()).await;

    // A new hub on the same port: everything comes back, with the same identities and
    // (route-independent) the same addresses.
    let (nrt, _nex) = hub_again(&address).await;
    let back = visible(&brt, "on-a").await;
    assert_eq!(back.address(), a.address());
    assert_eq!(back.agent_identity(), a.binding().agent_identity());
    assert_eq!(back.process_identity(), art.process_identity());
    assert_eq!(
        brt.endpoint(&back).call("echo", args![7]).await.unwrap(),
        Value::List(vec![7.into()])
    );
    // No duplicates anywhere.
    eventually(|| seen(&nrt).len() == 1).await;
    assert_eq!(brt.registry().lookup_name("on-a").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_fails_at_once_when_the_link_to_its_service_is_lost() {
    let (hrt, _hex, address) = hub().await;
    let (art, aex) = client(&address);
    let (_a, mut reached) = never_answers(&art, "slow");
    let target = visible(&hrt, "slow").await;
    let ep = hrt
        .endpoint(&target)
        .with_timeout(Some(Duration::from_secs(30)));
    let pending = tokio::spawn(async move { ep.call("never", vec![]).await });
    // In flight: the service has it.
    within(reached.recv()).await.unwrap();
    let started = tokio::time::Instant::now();
    drop(aex);
    let f = within(pending).await.unwrap().unwrap_err();
    assert_eq!(f.error, 57);
    assert!(f.is_withdrawn(), "{f}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_remote_service_fails_pending_calls_and_is_announced_with_its_reason() {
    let (hrt, _hex, address) = hub().await;
    let (art, _aex) = client(&address);
    let (svc, mut reached) = never_answers(&art, "temp");
    let target = visible(&hrt, "temp").await;
    let ep = hrt.endpoint(&target).with_timeout(None);
    let (_, mut watch) = hrt.registry().watch_address(target.address());
    let pending = tokio::spawn(async move { ep.call("never", vec![]).await });
    // Pending: the service has it.
    within(reached.recv()).await.unwrap();
    drop(svc);
    assert!(within(pending).await.unwrap().unwrap_err().is_withdrawn());
    let last = within(async {
        loop {
            let a = watch.recv().await.unwrap();
            if a.status() == Some(netsvc::ServiceStatus::Withdrawn) {
                return a;
            }
        }
    })
    .await;
    assert_eq!(
        last.kind,
        AnnouncementKind::Withdrawn(WithdrawReason::Owner)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s39_connection_events_carry_the_peer_and_only_follow_handshakes() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let crt = Runtime::new();
    let cex = Exchange::client(&crt)
        .config(fast_config())
        .build()
        .unwrap();
    let mut events = cex.watch_connections();
    cex.connect(&address, quick()).unwrap();
    // Failed attempts: refused while nothing listens, then hung up on by a stand-in that
    // counts them (two: the client has failed and tried again).
    let not_up_yet = Tap::hanging_up_on(&address).await;
    not_up_yet.accepted_at_least(2).await;
    not_up_yet.close().await;
    assert!(
        events.try_recv().unwrap().is_none(),
        "no event for failed attempts"
    );

    let srt = Runtime::new();
    let sex = Exchange::server(&srt)
        .config(fast_config())
        .build()
        .unwrap();
    let mut server_events = sex.watch_connections();
    listen_again(&sex, &address).await;
    // One connector makes its attempts one after the other, so an event of a failed attempt
    // would come before this one: the first event is the link to the server.
    let up = within(events.recv()).await.unwrap();
    assert_eq!(
        up.state,
        ConnectionState::Active,
        "no event for failed attempts"
    );
    assert_eq!(up.peer_process, srt.process_identity());
    assert_eq!(up.peer_address, address);
    assert!(up.initiated_here);
    let s_up = connection(&mut server_events, ConnectionState::Active).await;
    assert_eq!(s_up.peer_process, crt.process_identity());
    connection(&mut events, ConnectionState::Resynced).await;
    assert_eq!(cex.connections().len(), 1);

    drop(sex);
    let down = connection(&mut events, ConnectionState::Inactive).await;
    assert_eq!(down.peer_process, srt.process_identity());
    assert!(down.reason.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s40_a_single_attempt_client_does_not_reconnect() {
    let (hrt, hex, address) = hub().await;
    let crt = Runtime::new();
    let cex = Exchange::client(&crt)
        .config(fast_config())
        .build()
        .unwrap();
    let mut events = cex.watch_connections();
    let connector = cex.connect(&address, Retry::once()).unwrap();
    connection(&mut events, ConnectionState::Active).await;
    drop(hex);
    hrt.shutdown();
    connection(&mut events, ConnectionState::Inactive).await;
    // The connector's status moves before the event is told: it no longer says synced.
    assert_ne!(connector.status().phase, netsvc::LinkPhase::Synced);
    let (nrt, _nex) = hub_again(&address).await;
    let _svc = echo(&nrt, "new-hub");
    // The connector ends instead of reconnecting; nothing connects to the new hub after
    // that.
    assert_eq!(
        gave_up(&connector).await,
        None,
        "the link ended, no attempt failed"
    );
    assert!(cex.connections().is_empty());
    assert!(crt.registry().lookup_name("new-hub").is_empty());
    assert!(events.try_recv().unwrap().is_none(), "no new link");

    // And a single attempt at nothing fails without an event.
    let dead = Exchange::client(&Runtime::new()).build().unwrap();
    let mut dead_events = dead.watch_connections();
    let connector = dead.connect("127.0.0.1:1", Retry::once()).unwrap();
    let cause = gave_up(&connector).await;
    assert!(
        matches!(cause, Some(netsvc::LinkFailure::Refused(_))),
        "{cause:?}"
    );
    assert_eq!(connector.status().attempts, 1);
    assert!(dead_events.try_recv().unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s41_a_refused_client_counts_a_failed_attempt_and_retries() {
    let refusals = Arc::new(AtomicUsize::new(0));
    let r = refusals.clone();
    let srt = Runtime::new();
    let sex = Exchange::server(&srt)
        .config(fast_config())
        .authorise(move |_peer| r.fetch_add(1, Ordering::SeqCst) >= 3)
        .build()
        .unwrap();
    let address = sex.listen("127.0.0.1:0").await.unwrap().to_string();
    let _svc = echo(&srt, "guarded");
    let crt = Runtime::new();
    let cex = Exchange::client(&crt)
        .config(fast_config())
        .build()
        .unwrap();
    let mut events = cex.watch_connections();
    cex.connect(&address, quick()).unwrap();
    connection(&mut events, ConnectionState::Active).await;
    assert!(refusals.load(Ordering::SeqCst) >= 4);
    visible(&crt, "guarded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_changes_propagate_and_withdrawal_leaves_groups_first() {
    let (hrt, _hex, address) = hub().await;
    let (art, _aex) = client(&address);
    let svc = art.service("member").join_group("pool").build().unwrap();
    visible(&hrt, "member").await;
    let mut watch = hrt.registry().watch_group("pool");
    let joined = within(watch.recv()).await.unwrap();
    assert_eq!(joined.kind, AnnouncementKind::GroupJoined("pool".into()));
    svc.join_group("extra").unwrap();
    eventually(|| hrt.registry().groups_of(svc.address()) == vec!["pool", "extra"]).await;
    svc.leave_group("pool").unwrap();
    let left = within(watch.recv()).await.unwrap();
    assert_eq!(left.kind, AnnouncementKind::GroupLeft("pool".into()));
    svc.join_group("pool").unwrap();
    assert_eq!(
        within(watch.recv()).await.unwrap().kind,
        AnnouncementKind::GroupJoined("pool".into())
    );
    let (_, mut whole) = hrt.registry().watch_address(svc.address());
    while whole.try_recv().unwrap().is_some() {}
    drop(svc);
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        kinds.push(within(whole.recv()).await.unwrap().kind);
    }
    assert!(matches!(kinds[0], AnnouncementKind::GroupLeft(_)));
    assert!(matches!(kinds[1], AnnouncementKind::GroupLeft(_)));
    assert_eq!(kinds[2], AnnouncementKind::Withdrawn(WithdrawReason::Owner));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_sockets_carry_the_same_protocol() {
    let dir = std::env::temp_dir().join(format!("netsvc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hub.sock");
    let srt = Runtime::new();
    let sex = Exchange::server(&srt).build().unwrap();
    sex.listen_unix(&path).await.unwrap();
    let _svc = echo(&srt, "over-unix");
    let crt = Runtime::new();
    let cex = Exchange::client(&crt).build().unwrap();
    cex.connect(&format!("unix:{}", path.display()), quick())
        .unwrap();
    let b = visible(&crt, "over-unix").await;
    assert_eq!(
        crt.endpoint(&b).call("echo", args!["u"]).await.unwrap(),
        Value::List(vec!["u".into()])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn one_exchange_per_group_and_clients_do_not_listen() {
    let rt = Runtime::new();
    let _a = Exchange::client(&rt).build().unwrap();
    assert!(Exchange::server(&rt).build().is_err());
    let db = Exchange::client(&rt).group("database").build().unwrap();
    assert!(db.listen("127.0.0.1:0").await.is_err());
    assert!(Exchange::client(&rt).group("bad group").build().is_err());
    assert!(db.connect("no-port", quick()).is_err());
    drop(db);
    assert!(Exchange::server(&rt).group("database").build().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_withdraws_with_reason_process_exit() {
    let (hrt, _hex, address) = hub().await;
    let (art, aex) = client(&address);
    let svc = echo(&art, "leaving");
    let b = visible(&hrt, "leaving").await;
    let (_, mut watch) = hrt.registry().watch_address(b.address());
    while watch.try_recv().unwrap().is_some() {}
    art.shutdown();
    aex.shutdown(Duration::from_secs(2)).await;
    let last = within(watch.recv()).await.unwrap();
    assert_eq!(
        last.kind,
        AnnouncementKind::Withdrawn(WithdrawReason::ProcessExit)
    );
    drop(svc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_shows_every_service_leave_and_come_back_exactly_once() {
    // Several clients with a service in two groups, and an observer watching the whole
    // registry; the hub dies and a new one takes its port. Each service must be seen
    // leaving its groups (in reverse order), withdrawn, then available with its groups
    // again, once, and every registry must hold each service once afterwards.
    const CLIENTS: usize = 12;
    let (hrt, hex, address) = hub().await;
    let clients: Vec<_> = (0..CLIENTS).map(|_| client(&address)).collect();
    let services: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, (rt, _))| {
            rt.service(&format!("storm-{i}"))
                .join_group("g1")
                .join_group("g2")
                .export("ping", |_| async { Ok(Value::None) })
                .build()
                .unwrap()
        })
        .collect();
    let (ort, _oex) = client(&address);
    eventually(|| ort.registry().lookup_group("g2").len() == CLIENTS).await;
    let mut watch = ort.registry().watch();

    drop(hex);
    hrt.shutdown();
    let (nrt, _nex) = hub_again(&address).await;
    for (rt, _) in &clients {
        eventually(|| rt.registry().lookup_group("g2").len() == CLIENTS).await;
    }
    eventually(|| ort.registry().lookup_group("g2").len() == CLIENTS).await;
    eventually(|| nrt.registry().lookup_group("g2").len() == CLIENTS).await;
    // Anything late would show up here. What the observer hears of a service comes from its
    // client's link to the hub, then the hub's link to the observer; a call from the observer
    // to the service comes back along those links, after everything sent on them before
    // (links are FIFO, docs/PROTOCOL.md §1).
    for service in &services {
        within(ort.endpoint(service.binding()).call("ping", vec![]))
            .await
            .unwrap();
    }

    let mut events: std::collections::HashMap<String, Vec<AnnouncementKind>> =
        std::collections::HashMap::new();
    while let Some(a) = watch.try_recv().unwrap() {
        events
            .entry(a.binding.address().to_owned())
            .or_default()
            .push(a.kind);
    }
    let g = |name: &str| -> Arc<str> { name.into() };
    for service in &services {
        assert_eq!(
            events.get(service.address()).map(Vec::as_slice),
            Some(
                &[
                    AnnouncementKind::Available,
                    AnnouncementKind::GroupJoined(g("g1")),
                    AnnouncementKind::GroupJoined(g("g2")),
                    AnnouncementKind::GroupLeft(g("g2")),
                    AnnouncementKind::GroupLeft(g("g1")),
                    AnnouncementKind::Withdrawn(WithdrawReason::ConnectionLost),
                    AnnouncementKind::Available,
                    AnnouncementKind::GroupJoined(g("g1")),
                    AnnouncementKind::GroupJoined(g("g2")),
                ][..]
            ),
            "announcements of {}",
            service.address()
        );
    }
    for rt in clients.iter().map(|(rt, _)| rt).chain([&ort, &nrt]) {
        let members = rt.registry().lookup_group("g1");
        let mut addresses: Vec<_> = members.iter().map(|b| b.address().to_owned()).collect();
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), CLIENTS);
        assert_eq!(members.len(), CLIENTS);
        for i in 0..CLIENTS {
            assert_eq!(rt.registry().lookup_name(&format!("storm-{i}")).len(), 1);
        }
    }
}
