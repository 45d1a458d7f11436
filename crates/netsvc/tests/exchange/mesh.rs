use std::time::Duration;

use netsvc::{Exchange, Retry, Runtime, Value, args};

use crate::util::{
    client, echo, eventually, fast_config, gone, hub, hub_again, quick, seen, visible, within,
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
    let _everyone = srt.service("everyone").build().unwrap();
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
    // rest must not have arrived.
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
    wex.connect(&d_addr, Retry::once()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
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
    for rt in [&art, &brt, &crt] {
        eventually(|| seen(rt).len() == 3).await;
    }
    // Exactly one AVAILABLE per service in each client's history: no duplicates, no flaps.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for w in &mut watches {
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
        assert_eq!(available.len(), 3);
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
    // Both connect to each other, and A connects twice.
    aex.connect(&b_addr, quick()).unwrap();
    aex.connect(&b_addr, quick()).unwrap();
    bex.connect(&a_addr, quick()).unwrap();
    let _a = echo(&art, "a");
    let _b = echo(&brt, "b");
    visible(&brt, "a").await;
    visible(&art, "b").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(aex.connections().len(), 1, "{:?}", aex.connections());
    assert_eq!(bex.connections().len(), 1, "{:?}", bex.connections());
    // Both ends agree on which one.
    let a_side = &aex.connections()[0];
    let b_side = &bex.connections()[0];
    assert_ne!(a_side.initiated_here, b_side.initiated_here);
    assert_eq!(brt.registry().lookup_name("a").len(), 1);
    within(async {}).await;
}
