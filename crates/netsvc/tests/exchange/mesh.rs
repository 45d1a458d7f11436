use netsvc::{ConnectionState, ConnectionWatch, Exchange, Retry, Runtime, Service, Value, args};

use crate::util::{
    Tap, client, echo, eventually, fast_config, gave_up, gone, hub, hub_again, quick, seen,
    visible, within,
};

async fn server() -> (Runtime, Exchange, String) {
    hub().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s42_audience_decides_how_far_a_service_is_seen() {
    // A server process with two exchanges: the default group and "database".
    let srt = Runtime::new();
    let default = Exchange::server(&srt)
        .config(fast_config())
        .build()
        .unwrap();
    let database = Exchange::server(&srt)
        .group("database")
        .config(fast_config())
        .build()
        .unwrap();
    let d_addr = default.listen("127.0.0.1:0").await.unwrap().to_string();
    let db_addr = database.listen("127.0.0.1:0").await.unwrap().to_string();
    let _local = srt.service("local-only").audience("").build().unwrap();
    let _everyone = echo(&srt, "everyone");
    let _db = srt.service("db-only").audience("database").build().unwrap();

    let (crt, _cex) = client(&d_addr);
    let drt = Runtime::new();
    let dex = Exchange::client(&drt)
        .group("database")
        .config(fast_config())
        .build()
        .unwrap();
    dex.connect(&db_addr, quick()).unwrap();

    visible(&crt, "everyone").await;
    visible(&drt, "everyone").await;
    visible(&drt, "db-only").await;
    // Sync is complete on both links once both have seen everything they may see; the
    // rest must not have arrived. (The answer to a call to the server comes after whatever
    // the server had sent on that link before, links being FIFO, docs/PROTOCOL.md §1: so
    // would a service announced after the last one seen.)
    for rt in [&crt, &drt] {
        rt.endpoint("everyone").call("echo", vec![]).await.unwrap();
    }
    assert!(crt.registry().lookup_name("db-only").is_empty());
    assert!(crt.registry().lookup_name("local-only").is_empty());
    assert!(drt.registry().lookup_name("local-only").is_empty());
    // A group mismatch is refused at the handshake.
    let wrong = Runtime::new();
    let wex = Exchange::client(&wrong)
        .group("other")
        .config(fast_config())
        .build()
        .unwrap();
    let mut events = wex.watch_connections();
    let connector = wex.connect(&d_addr, Retry::once()).unwrap();
    // The connector's single attempt is refused because of the group, and then it gives up:
    // whatever it could have reported is in `events` by then.
    let cause = gave_up(&connector).await;
    assert!(
        matches!(&cause, Some(netsvc::LinkFailure::GroupMismatch(why)) if why.contains("\"other\"")),
        "{cause:?}"
    );
    assert!(events.try_recv().unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s43_front_end_sees_back_end_services_that_the_default_group_does_not() {
    // H: the default-group hub. P: the front end, a client of H and a "database" server.
    // B: a back end in group "database". O: another client of H.
    let (_hrt, _hex, h_addr) = hub().await;
    let prt = Runtime::new();
    let p_client = Exchange::client(&prt)
        .config(fast_config())
        .build()
        .unwrap();
    p_client.connect(&h_addr, quick()).unwrap();
    let p_server = Exchange::server(&prt)
        .group("database")
        .config(fast_config())
        .build()
        .unwrap();
    let db_addr = p_server.listen("127.0.0.1:0").await.unwrap().to_string();
    let _front = echo(&prt, "front-end");

    let brt = Runtime::new();
    let bex = Exchange::client(&brt)
        .group("database")
        .config(fast_config())
        .build()
        .unwrap();
    bex.connect(&db_addr, quick()).unwrap();
    let _back = brt
        .service("back-end")
        .audience("database")
        .export("query", |_| async { Ok("rows") })
        .build()
        .unwrap();
    let _shared = echo(&brt, "back-end-public");

    let (ort, _oex) = client(&h_addr);
    let b = visible(&prt, "back-end").await;
    assert_eq!(
        prt.endpoint(&b).call("query", vec![]).await.unwrap(),
        Value::from("rows")
    );
    // A "*" service of the back end crosses into the default group through P.
    visible(&ort, "back-end-public").await;
    visible(&ort, "front-end").await;
    assert!(ort.registry().lookup_name("back-end").is_empty());
    // The back end sees the front end (audience "*") through its own group.
    visible(&brt, "front-end").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s44_two_meshed_servers_share_their_clients_services() {
    let (art, _aex, a_addr) = server().await;
    let (brt, bex, b_addr) = server().await;
    bex.connect(&a_addr, quick()).unwrap();
    let (cart, _caex) = client(&a_addr);
    let (cbrt, _cbex) = client(&b_addr);
    let _on_ca = echo(&cart, "on-client-of-a");
    let _on_cb = echo(&cbrt, "on-client-of-b");
    let seen_in_b = visible(&cbrt, "on-client-of-a").await;
    visible(&cart, "on-client-of-b").await;
    assert_eq!(
        cbrt.endpoint(&seen_in_b)
            .call("echo", args![3])
            .await
            .unwrap(),
        Value::List(vec![3.into()])
    );
    // Services created in a server after the link is up also cross (unlike the original).
    let _late = echo(&art, "late-on-a");
    visible(&cbrt, "late-on-a").await;
    visible(&brt, "late-on-a").await;
}

/// Three servers linked in a triangle, a client on each: every client sees every other
/// service exactly once, requests work, and when one server dies only its own client's
/// services are withdrawn elsewhere; they come back when the client reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triangle_of_servers_no_loops_no_duplicates_and_failover() {
    let (art, aex, a_addr) = server().await;
    let (brt, bex, b_addr) = server().await;
    let (crt, cex, c_addr) = server().await;
    // A probe on each server, there before its links (see `settled`).
    let probes: Vec<_> = [&art, &brt, &crt]
        .iter()
        .enumerate()
        .map(|(i, rt)| probe(rt, &format!("probe-{i}")))
        .collect();
    let mut links: Vec<_> = [&aex, &bex, &cex]
        .iter()
        .map(|ex| ex.watch_connections())
        .collect();
    aex.connect(&b_addr, quick()).unwrap();
    bex.connect(&c_addr, quick()).unwrap();
    cex.connect(&a_addr, quick()).unwrap();
    let clients: Vec<_> = [&a_addr, &b_addr, &c_addr]
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let (rt, ex) = client(addr);
            let svc = echo(&rt, &format!("svc-{i}"));
            (rt, ex, svc)
        })
        .collect();
    let mut watches: Vec<_> = clients
        .iter()
        .map(|(rt, _, _)| rt.registry().watch())
        .collect();
    for (rt, _, _) in &clients {
        for i in 0..3 {
            visible(rt, &format!("svc-{i}")).await;
        }
    }
    // Each server sees the three services and the three probes.
    for rt in [&art, &brt, &crt] {
        eventually(|| seen(rt).len() == 6).await;
    }
    let client_rts: Vec<&Runtime> = clients.iter().map(|(rt, _, _)| rt).collect();
    settled([&art, &brt, &crt], &mut links, &client_rts).await;
    // Exactly one AVAILABLE per service (and probe) in each client's history: no
    // duplicates, no flaps.
    let services: std::collections::BTreeSet<String> = clients
        .iter()
        .map(|(_, _, svc)| svc.address().to_owned())
        .chain(probes.iter().map(|p| p.address().to_owned()))
        .collect();
    for (j, w) in watches.iter_mut().enumerate() {
        let mut available = std::collections::HashMap::<String, usize>::new();
        while let Ok(Some(a)) = w.try_recv() {
            if a.kind == netsvc::AnnouncementKind::Available {
                *available.entry(a.binding.address().to_owned()).or_default() += 1;
            }
            assert!(
                !matches!(a.kind, netsvc::AnnouncementKind::Withdrawn(_)),
                "nothing was withdrawn: {a:?}"
            );
        }
        assert_eq!(
            available
                .keys()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            services,
            "client {j}"
        );
        assert!(available.values().all(|n| *n == 1), "{available:?}");
    }
    // Calls between clients of different servers.
    let target = clients[2].2.binding().clone();
    let r = clients[0]
        .0
        .endpoint(&target)
        .call("echo", args!["tri"])
        .await
        .unwrap();
    assert_eq!(r, Value::List(vec!["tri".into()]));

    // Server B dies: svc-1 (its client's) is withdrawn everywhere, the others stay.
    drop(bex);
    brt.shutdown();
    gone(&clients[0].0, clients[1].2.address()).await;
    gone(&clients[2].0, clients[1].2.address()).await;
    assert_eq!(clients[0].0.registry().lookup_name("svc-2").len(), 1);
    let r = clients[0]
        .0
        .endpoint(&target)
        .call("echo", args!["after"])
        .await
        .unwrap();
    assert_eq!(r, Value::List(vec!["after".into()]));
    // B comes back: its client reconnects and svc-1 reappears everywhere, once.
    let (_nbrt, nbex) = hub_again(&b_addr).await;
    nbex.connect(&a_addr, quick()).unwrap();
    visible(&clients[0].0, "svc-1").await;
    visible(&clients[2].0, "svc-1").await;
    assert_eq!(clients[0].0.registry().lookup_name("svc-1").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_four_hubs_relays_requests_and_withdrawals() {
    let mut hubs = Vec::new();
    for _ in 0..4 {
        hubs.push(server().await);
    }
    for i in 1..4 {
        hubs[i].1.connect(&hubs[i - 1].2, quick()).unwrap();
    }
    let first = echo(&hubs[0].0, "far");
    let seen_far = visible(&hubs[3].0, "far").await;
    let r = hubs[3]
        .0
        .endpoint(&seen_far)
        .call("echo", args![4])
        .await
        .unwrap();
    assert_eq!(r, Value::List(vec![4.into()]));
    drop(first);
    gone(&hubs[3].0, seen_far.address()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s45_two_links_between_the_same_processes_leave_exactly_one() {
    let (art, aex, a_addr) = server().await;
    let (brt, bex, b_addr) = server().await;
    // Both connect to each other, and A connects twice; each connector through a tap of its
    // own, so that the test sees every attempt each one makes.
    let taps = [
        Tap::to(&b_addr).await,
        Tap::to(&b_addr).await,
        Tap::to(&a_addr).await,
    ];
    aex.connect(&taps[0].address, quick()).unwrap();
    aex.connect(&taps[1].address, quick()).unwrap();
    bex.connect(&taps[2].address, quick()).unwrap();
    let _a = echo(&art, "a");
    let _b = echo(&brt, "b");
    visible(&brt, "a").await;
    visible(&art, "b").await;
    // The link that survives is the one started by the lower process identity
    // (docs/PROTOCOL.md §6.3); wait until each end has that link, and only it, and both have
    // the same one (through the same tap connection).
    let a_initiates = art.process_identity() < brt.process_identity();
    let settled = || -> Option<usize> {
        let (a, b) = (aex.connections(), bex.connections());
        let ([a_side], [b_side]) = (&a[..], &b[..]) else {
            return None;
        };
        let (from, to) = if a_initiates {
            (a_side, b_side)
        } else {
            (b_side, a_side)
        };
        if !from.initiated_here || to.initiated_here {
            return None;
        }
        taps.iter()
            .position(|t| t.relays(&from.local_address, &to.peer_address))
    };
    eventually(|| settled().is_some()).await;
    let survivor = (aex.connections(), bex.connections());
    let through = settled().unwrap();
    // The two other connectors keep trying. Wait until each has made an attempt since, and
    // that attempt has ended (each tap serves one connector: more connections ended than had
    // been accepted when the link settled means one accepted since has ended).
    let since: Vec<usize> = taps.iter().map(Tap::accepted).collect();
    for (i, tap) in taps.iter().enumerate() {
        if i != through {
            tap.ended_at_least(since[i] + 1).await;
        }
    }
    // They were refused, and left the surviving link alone.
    assert_eq!(aex.connections(), survivor.0, "{:?}", aex.connections());
    assert_eq!(bex.connections(), survivor.1, "{:?}", bex.connections());
    assert_eq!(aex.connections().len(), 1, "{:?}", aex.connections());
    assert_eq!(bex.connections().len(), 1, "{:?}", bex.connections());
    // Both ends agree on which one.
    let a_side = &aex.connections()[0];
    let b_side = &bex.connections()[0];
    assert_ne!(a_side.initiated_here, b_side.initiated_here);
    assert_eq!(brt.registry().lookup_name("a").len(), 1);
    within(async {}).await;
}

/// A service for a server of the triangle: `ping` answers at once; `via(name)` pings the
/// service `name` from this server's process and answers once that has answered.
fn probe(rt: &Runtime, name: &str) -> Service {
    rt.service(name)
        .export("ping", |_| async { Ok(Value::None) })
        .export("via", |req| async move {
            let (target,): (String,) = req.decode_args()?;
            let endpoint = req
                .service()
                .endpoint(target)
                .map_err(|e| netsvc::Failure::application_error(e.to_string()))?;
            endpoint.call("ping", vec![]).await
        })
        .build()
        .unwrap()
}

/// Waits until nothing more can reach a triangle's clients about the services announced so
/// far, without waiting "long enough": by requests that can only complete once the frames
/// that could still change a client's view have been handled. `links` watches the servers'
/// links from before they were made; `clients[j]` is the client of `servers[j]`; each
/// server has a [`probe`] named `probe-<its index>`.
///
/// What server `sj` tells its client about a service of another server `si`'s client comes
/// from two links: `si`→`sj` (the direct route, sent by `si` when it learned the service)
/// and `sk`→`sj` (the third server's route, whose last change `sk` sends when it handles
/// `si`'s announcement: that route, two hops, is then `sk`'s shortest and stays so). Links
/// are FIFO and each process handles a link's frames in order (docs/PROTOCOL.md §1), so
/// once `si` has the service:
///
/// - a request from `si` to `sj` is handled by `sj` after what `si` had sent it;
/// - a request from `si` to `sk` is handled by `sk` after the announcement, and the request
///   `sk` then makes to `sj` is handled by `sj` after what `sk` had sent it;
/// - then, the answer to a request from `sj`'s client to `sj` reaches the client after
///   everything `sj` had told it.
///
/// Requests between neighbours go over their direct link: each probe was in its server's
/// registry before the server's links came up, so it is in what each link first carries;
/// once a neighbour's link is resynced (it has had that registry and its SYNCED) the probe's
/// route there is the direct link, one hop, the shortest there is.
async fn settled(servers: [&Runtime; 3], links: &mut [ConnectionWatch], clients: &[&Runtime]) {
    let peers: Vec<&str> = servers.iter().map(|rt| rt.process_identity()).collect();
    for events in links.iter_mut() {
        let mut resynced = std::collections::BTreeSet::new();
        within(async {
            while resynced.len() < 2 {
                let e = events.recv().await.unwrap();
                if e.state == ConnectionState::Resynced && peers.contains(&e.peer_process.as_str())
                {
                    resynced.insert(e.peer_process);
                }
            }
        })
        .await;
    }
    for (i, from_i) in servers.iter().enumerate() {
        for j in (0..3).filter(|j| *j != i) {
            let k = 3 - i - j;
            from_i
                .endpoint(format!("probe-{j}"))
                .call("ping", vec![])
                .await
                .unwrap();
            from_i
                .endpoint(format!("probe-{k}"))
                .call("via", args![format!("probe-{j}")])
                .await
                .unwrap();
        }
    }
    for (j, rt) in clients.iter().enumerate() {
        rt.endpoint(format!("probe-{j}"))
            .call("ping", vec![])
            .await
            .unwrap();
    }
}

/// Of two links started by the same process, both ends keep the same one (docs/PROTOCOL.md
/// §6.3): the connecting side numbers its connections in its HELLO, and the lower number
/// survives at both ends, whatever order each end registered them in. (Before, each end
/// kept the link it had registered first, and the accepting end registers after sending its
/// HELLO: the ends could keep different links and close both.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_links_started_by_one_process_leave_one_without_closing_both() {
    for round in 0..20 {
        let (_art, aex, _) = server().await;
        let (_brt, bex, b_addr) = server().await;
        let mut accepted = bex.watch_connections();
        aex.connect(&b_addr, quick()).unwrap();
        aex.connect(&b_addr, quick()).unwrap();
        eventually(|| {
            let (a, b) = (aex.connections(), bex.connections());
            matches!((&a[..], &b[..]), ([a], [b]) if a.local_address == b.peer_address)
        })
        .await;
        let survivor = bex.connections()[0].peer_address.clone();
        // The link that survives is one of the first two: the pair was never lost whole
        // (the losing connector keeps trying, and each later attempt is refused).
        let mut first_two = Vec::new();
        let mut closed = Vec::new();
        while let Some(e) = accepted.try_recv().unwrap() {
            match e.state {
                ConnectionState::Active if first_two.len() < 2 => {
                    first_two.push(e.peer_address.clone());
                }
                ConnectionState::Inactive => closed.push(e.peer_address.clone()),
                _ => {}
            }
        }
        assert!(
            first_two.contains(&survivor),
            "round {round}: both first links were closed ({closed:?}); {survivor} came later"
        );
        assert!(!closed.contains(&survivor), "round {round}");
    }
}
