use std::time::Duration;

use netsvc::{Exchange, Lifetime, ReportEvent, Runtime, SubscriptionStatus};

use crate::util::{client, echo, fast_config, gone, hub, hub_again, quick, visible, within};

/// Collects the reports of `monitor` until `n` have arrived, as (subject, int) pairs.
async fn reports(monitor: &mut netsvc::ReportMonitor, n: usize) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    within(async {
        while out.len() < n {
            if let ReportEvent::Report(r) = monitor.recv().await.unwrap() {
                out.push((r.subject().to_owned(), r.value().unwrap().as_i64().unwrap()));
            }
        }
    })
    .await;
    out
}

/// Asserts that the very next event of `monitor` is the report `subject` = `value`, with
/// nothing (no other report, no notification) queued before it. Published after some event
/// on the path to `monitor` (same publisher, same links: FIFO, docs/PROTOCOL.md §1), such a
/// sentinel proves that the event has had every consequence it could have on `monitor`.
async fn next_is(monitor: &mut netsvc::ReportMonitor, subject: &str, value: i64) {
    match within(monitor.recv()).await {
        Some(ReportEvent::Report(r))
            if r.subject() == subject && r.value().unwrap().as_i64() == Some(value) => {}
        other => panic!("expected the report {subject} = {value} next, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_cross_the_hub_with_the_cache_first_and_no_gap() {
    let (hrt, _hex, address) = hub().await;
    let (prt, _pex) = client(&address);
    let publisher = prt.service("clock").build().unwrap();
    publisher
        .publish("system.time", 1, Lifetime::Forever)
        .unwrap();
    publisher
        .publish("system.load", 5, Lifetime::Forever)
        .unwrap();
    publisher.publish("other", 9, Lifetime::Forever).unwrap();

    let (srt, _sex) = client(&address);
    let sub = srt.service("watcher").build().unwrap();
    let mut m = sub.monitor_reports("clock", "system.*").unwrap();
    match within(m.recv()).await.unwrap() {
        ReportEvent::PublisherAvailable(b) => assert_eq!(b.address(), publisher.address()),
        other => panic!("{other:?}"),
    }
    let mut cached = reports(&mut m, 2).await;
    cached.sort();
    assert_eq!(
        cached,
        vec![("system.load".into(), 5), ("system.time".into(), 1)]
    );
    publisher
        .publish("system.time", 2, Lifetime::Forever)
        .unwrap();
    publisher.publish("other", 10, Lifetime::None).unwrap();
    assert_eq!(reports(&mut m, 1).await, vec![("system.time".into(), 2)]);

    // The hub's own subscriber too.
    let hub_sub = hrt.service("hub-watcher").build().unwrap();
    let mut hm = hub_sub.monitor_reports("clock", "*").unwrap();
    let mut got = reports(&mut hm, 2).await;
    got.sort();
    assert_eq!(
        got,
        vec![("system.load".into(), 5), ("system.time".into(), 2)]
    );

    // The publisher sees each remote subscription with the subscriber's binding.
    let mut subs = publisher.watch_subscriptions().unwrap();
    let first = within(subs.recv()).await.unwrap();
    assert_eq!(first.status, SubscriptionStatus::Requested);
    let mut subscribers = vec![
        first.subscriber.address().to_owned(),
        within(subs.recv())
            .await
            .unwrap()
            .subscriber
            .address()
            .to_owned(),
    ];
    subscribers.sort();
    let mut expected = vec![sub.address().to_owned(), hub_sub.address().to_owned()];
    expected.sort();
    assert_eq!(subscribers, expected);
    drop(m);
    let withdrawn = within(subs.recv()).await.unwrap();
    assert_eq!(withdrawn.status, SubscriptionStatus::Withdrawn);
    assert_eq!(withdrawn.subscriber.address(), sub.address());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_copy_per_link_fans_out_to_every_subscriber_and_pattern() {
    let (_hrt, _hex, address) = hub().await;
    let (prt, _pex) = client(&address);
    let publisher = prt.service("feed").build().unwrap();
    let (srt, _sex) = client(&address);
    let mut monitors = Vec::new();
    for i in 0..5 {
        let s = srt.service(&format!("s{i}")).build().unwrap();
        monitors.push((s.monitor_reports("feed", "*").unwrap(), s));
    }
    // One subscriber with two matching patterns gets two copies.
    let twice = srt.service("twice").build().unwrap();
    let mut t1 = twice.monitor_reports("feed", "a.*").unwrap();
    let mut t2 = twice.monitor_reports("feed", "*.b").unwrap();
    let mut subs = publisher.watch_subscriptions().unwrap();
    for _ in 0..7 {
        within(subs.recv()).await.unwrap();
    }
    // The subscriptions are requested; wait until they are in place end to end by
    // publishing a cached marker and waiting for it everywhere.
    publisher.publish("a.b", 1, Lifetime::Forever).unwrap();
    for (m, _) in &mut monitors {
        assert_eq!(reports(m, 1).await, vec![("a.b".into(), 1)]);
    }
    assert_eq!(reports(&mut t1, 1).await, vec![("a.b".into(), 1)]);
    assert_eq!(reports(&mut t2, 1).await, vec![("a.b".into(), 1)]);
    for i in 2..100 {
        publisher.publish("a.b", i, Lifetime::None).unwrap();
    }
    for (m, _) in &mut monitors {
        let values: Vec<i64> = reports(m, 98).await.into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, (2..100).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_resume_after_the_hub_restarts_and_the_cache_comes_once() {
    let (hrt, hex, address) = hub().await;
    let (prt, _pex) = client(&address);
    let publisher = prt.service("state").build().unwrap();
    publisher.publish("mode", 1, Lifetime::Forever).unwrap();
    let (srt, _sex) = client(&address);
    let sub = srt.service("watcher").build().unwrap();
    let mut by_name = sub.monitor_reports("state", "*").unwrap();
    assert_eq!(reports(&mut by_name, 1).await, vec![("mode".into(), 1)]);
    let b = visible(&srt, "state").await;
    let mut by_binding = sub.monitor_reports(&b, "*").unwrap();
    assert_eq!(reports(&mut by_binding, 1).await, vec![("mode".into(), 1)]);

    drop(hex);
    hrt.shutdown();
    gone(&srt, publisher.address()).await;
    // While the hub is away the publisher moves on.
    publisher.publish("mode", 2, Lifetime::Forever).unwrap();
    publisher.publish("flag", 7, Lifetime::Forever).unwrap();
    let (_nrt, _nex) = hub_again(&address).await;
    for m in [&mut by_name, &mut by_binding] {
        let mut events = Vec::new();
        within(async {
            loop {
                let e = m.recv().await.unwrap();
                let done = matches!(&e, ReportEvent::Report(r) if r.subject() == "mode");
                events.push(e);
                if events
                    .iter()
                    .filter(|e| matches!(e, ReportEvent::Report(_)))
                    .count()
                    == 2
                    && done
                {
                    break;
                }
                if events
                    .iter()
                    .filter(|e| matches!(e, ReportEvent::Report(_)))
                    .count()
                    == 2
                {
                    break;
                }
            }
        })
        .await;
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ReportEvent::PublisherWithdrawn(_)))
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, ReportEvent::PublisherAvailable(_)))
        );
        let mut got: Vec<(String, i64)> = events
            .iter()
            .filter_map(|e| match e {
                ReportEvent::Report(r) => {
                    Some((r.subject().to_owned(), r.value().unwrap().as_i64().unwrap()))
                }
                _ => None,
            })
            .collect();
        got.sort();
        assert_eq!(got, vec![("flag".into(), 7), ("mode".into(), 2)]);
    }
    // Nothing more: the cache came once. A live report published now travels the same path
    // as the cached ones did (the publisher's link, the hub, the subscriber's link), after
    // them; it must be the next event of both monitors.
    publisher.publish("mode", 3, Lifetime::None).unwrap();
    next_is(&mut by_name, "mode", 3).await;
    next_is(&mut by_binding, "mode", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s47_a_process_only_service_can_call_out_but_not_subscribe_remotely() {
    let (_hrt, _hex, address) = hub().await;
    let (qrt, _qex) = client(&address);
    let q = echo(&qrt, "q");
    q.publish("news", 1, Lifetime::Forever).unwrap();
    let (prt, _pex) = client(&address);
    let private = prt.service("private").audience("").build().unwrap();
    let b = visible(&prt, "q").await;
    let ep = private.endpoint(&b).unwrap();
    assert!(ep.call("echo", vec![]).await.is_ok());
    let mut m = private.monitor_reports("q", "*").unwrap();
    assert!(matches!(
        within(m.recv()).await,
        Some(ReportEvent::PublisherAvailable(_))
    ));
    // The subscription went toward q first; a call to q follows it on every link there, and
    // its answer follows whatever came back for it (from q's process, or from the hub, which
    // cannot see `private` either): links are FIFO, docs/PROTOCOL.md §1. Once the call has
    // returned, any report for `private` is in its monitor.
    assert!(ep.call("echo", vec![]).await.is_ok());
    assert!(
        m.try_recv().is_none(),
        "no report reaches a subscriber the publisher cannot see"
    );
    // Nor a live one, which would come back the same way, before the answer to a call.
    q.publish("news", 2, Lifetime::None).unwrap();
    assert!(ep.call("echo", vec![]).await.is_ok());
    assert!(
        m.try_recv().is_none(),
        "no live report reaches a subscriber the publisher cannot see"
    );
}

/// A SUBSCRIBE the publisher's process does not serve is acknowledged as refused
/// (docs/PROTOCOL.md §11), and the subscriber's process does not install it: so when another
/// service of the same process subscribes to the same publisher and is served, the
/// publisher's live reports, which now reach that process, still do not reach the
/// process-only subscriber. (Before SUBSCRIBED carried `refused`, they did.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_only_subscriber_gets_no_report_when_a_neighbour_is_served() {
    let (_hrt, _hex, address) = hub().await;
    let (qrt, _qex) = client(&address);
    let q = echo(&qrt, "q");
    q.publish("news", 1, Lifetime::Forever).unwrap();
    let (prt, _pex) = client(&address);
    let private = prt.service("private").audience("").build().unwrap();
    let ep = private.endpoint(&visible(&prt, "q").await).unwrap();
    let mut m = private.monitor_reports("q", "*").unwrap();
    assert!(ep.call("echo", vec![]).await.is_ok());
    assert!(matches!(
        m.try_recv(),
        Some(ReportEvent::PublisherAvailable(_))
    ));
    assert!(m.try_recv().is_none());
    // A service of the same process that q's process can see subscribes to q, and is served.
    let neighbour = prt.service("neighbour").build().unwrap();
    visible(&qrt, "neighbour").await;
    let mut n = neighbour.monitor_reports("q", "*").unwrap();
    assert_eq!(reports(&mut n, 1).await, vec![("news".into(), 1)]);
    assert!(ep.call("echo", vec![]).await.is_ok());
    assert!(m.try_recv().is_none(), "the cached report is not delivered");
    // A live report, which reaches the process for the neighbour; whatever the process
    // delivers of it is delivered before it handles the answer to a later call to q.
    q.publish("news", 2, Lifetime::None).unwrap();
    assert_eq!(reports(&mut n, 1).await, vec![("news".into(), 2)]);
    assert!(ep.call("echo", vec![]).await.is_ok());
    let leaked = m.try_recv();
    assert!(
        leaked.is_none(),
        "no report reaches a subscriber the publisher cannot see: {leaked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_reports_reach_a_remote_subscriber_only() {
    let (_hrt, _hex, address) = hub().await;
    let (prt, _pex) = client(&address);
    let publisher = prt.service("pub").build().unwrap();
    let (srt, _sex) = client(&address);
    let alice = srt.service("alice").build().unwrap();
    let bob = srt.service("bob").build().unwrap();
    let mut ma = alice.monitor_reports("pub", "x.*").unwrap();
    let mut mb = bob.monitor_reports("pub", "*").unwrap();
    let mut subs = publisher.watch_subscriptions().unwrap();
    let mut alice_binding = None;
    for _ in 0..2 {
        let e = within(subs.recv()).await.unwrap();
        if e.subscriber.service_name() == "alice" {
            alice_binding = Some(e.subscriber);
        }
    }
    // Make sure both subscriptions are in place.
    publisher.publish("x.ready", 0, Lifetime::Forever).unwrap();
    reports(&mut ma, 1).await;
    reports(&mut mb, 1).await;
    publisher
        .send_report(&alice_binding.unwrap(), "private", 42)
        .unwrap();
    let got = within(async {
        loop {
            if let ReportEvent::Report(r) = ma.recv().await.unwrap() {
                return r;
            }
        }
    })
    .await;
    assert!(got.is_targeted() && got.pattern().is_none());
    assert_eq!(got.value().unwrap().as_i64(), Some(42));
    // A live report for both, on the same path as the targeted one (the publisher's link,
    // the hub, the subscribers' link) and after it: bob's next event is that report, so the
    // targeted one did not reach him; alice's too, so she got the targeted one only once.
    publisher.publish("x.after", 1, Lifetime::None).unwrap();
    next_is(&mut mb, "x.after", 1).await;
    next_is(&mut ma, "x.after", 1).await;
}

/// A small link queue between a fast publisher and the hub: `publish` coalesces (the
/// subscriber ends with the latest value), `publish_paced` waits and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn congested_links_coalesce_unless_the_publisher_paces_itself() {
    let (_hrt, _hex, address) = hub().await;
    let mut small = fast_config();
    small.queue_soft_limit = 2048;
    let prt = Runtime::new();
    let pex = Exchange::client(&prt).config(small).build().unwrap();
    pex.connect(&address, quick()).unwrap();
    let publisher = prt.service("fast").build().unwrap();
    let mut config = netsvc::RuntimeConfig::default();
    config.report_capacity = 1 << 20;
    let srt = Runtime::with_config(config).unwrap();
    let sex = Exchange::client(&srt)
        .config(fast_config())
        .build()
        .unwrap();
    sex.connect(&address, quick()).unwrap();
    let sub = srt.service("sub").build().unwrap();
    let mut m = sub.monitor_reports("fast", "*").unwrap();
    publisher.publish("ready", 0, Lifetime::Forever).unwrap();
    assert_eq!(reports(&mut m, 1).await, vec![("ready".into(), 0)]);

    let n = 20_000;
    for i in 1..=n {
        publisher
            .publish_paced("count", i, Lifetime::None)
            .await
            .unwrap();
    }
    let values: Vec<i64> = reports(&mut m, n as usize)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        values,
        (1..=n).collect::<Vec<_>>(),
        "paced: every report, in order"
    );

    for i in 1..=n {
        publisher.publish("burst", i, Lifetime::None).unwrap();
    }
    publisher.publish("end", 0, Lifetime::Forever).unwrap();
    let mut last_burst = 0;
    let mut received = 0;
    let mut missed = 0;
    // Every report is either delivered or counted as missed (the count may come just after
    // the end marker, with the batch that carried it).
    within(async {
        while received + missed < n {
            match m.recv().await.unwrap() {
                ReportEvent::Report(r) if r.subject() == "burst" => {
                    let v = r.value().unwrap().as_i64().unwrap();
                    assert!(v > last_burst, "in order");
                    last_burst = v;
                    received += 1;
                }
                ReportEvent::Missed(count) => missed += count as i64,
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(received + missed, n);
    assert_eq!(last_burst, n, "the latest value always arrives");
    println!("unpaced burst: {received} of {n} delivered, {missed} coalesced and reported missed");
}

/// Backpressure crosses the hub: while a subscriber's process stops reading, the hub stops
/// reading the publisher's link, the publisher's own link fills, and `publish_paced` waits.
/// Nothing is coalesced anywhere, although far more than every queue's soft limit (and the
/// kernel's socket buffers) is published meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_publisher_waits_for_a_stalled_subscriber_behind_the_hub() {
    // Default heartbeats: the frozen subscriber must not be taken for dead.
    let mut small = netsvc::ExchangeConfig::default();
    small.queue_soft_limit = 64 * 1024;
    small.backpressure_limit = Duration::from_secs(30);
    let hrt = Runtime::new();
    let hex = Exchange::server(&hrt)
        .config(small.clone())
        .build()
        .unwrap();
    let address = hex.listen("127.0.0.1:0").await.unwrap().to_string();
    let prt = Runtime::new();
    let pex = Exchange::client(&prt).config(small).build().unwrap();
    pex.connect(&address, quick()).unwrap();
    let publisher = prt.service("fast").build().unwrap();

    // The subscriber's runtime runs on a thread of its own, which the test can freeze.
    let n: i64 = 20_000;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (freeze_tx, freeze_rx) = std::sync::mpsc::channel::<Duration>();
    let subscriber = std::thread::spawn(move || {
        let tokio_rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio_rt.block_on(async move {
            let mut config = netsvc::RuntimeConfig::default();
            config.report_capacity = 1 << 20;
            let srt = Runtime::with_config(config).unwrap();
            let sex = Exchange::client(&srt).build().unwrap();
            sex.connect(&address, quick()).unwrap();
            let sub = srt.service("slow").build().unwrap();
            let mut m = sub.monitor_reports("fast", "*").unwrap();
            reports(&mut m, 1).await;
            ready_tx.send(()).unwrap();
            // Stop everything this runtime does (its link task included) for a while.
            std::thread::sleep(freeze_rx.recv().unwrap());
            let (mut last, mut missed) = (0, 0);
            within(async {
                while last < n {
                    match m.recv().await.unwrap() {
                        ReportEvent::Report(r) if r.subject() == "count" => {
                            let v = r.value().unwrap().as_list().unwrap()[0].as_i64().unwrap();
                            assert_eq!(v, last + 1, "every report, in order");
                            last = v;
                        }
                        ReportEvent::Missed(count) => missed += count,
                        _ => {}
                    }
                }
            })
            .await;
            missed
        })
    });
    publisher.publish("ready", 0, Lifetime::Forever).unwrap();
    within(ready_rx).await.unwrap();
    freeze_tx.send(Duration::from_millis(1500)).unwrap();
    let padding = netsvc::Value::Bytes(vec![0; 1024]);
    let started = std::time::Instant::now();
    for i in 1..=n {
        let report = netsvc::Value::List(vec![i.into(), padding.clone()]);
        publisher
            .publish_paced("count", report, Lifetime::None)
            .await
            .unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "20 MiB cannot all have been queued while the subscriber was frozen"
    );
    let missed = tokio::task::spawn_blocking(move || subscriber.join().unwrap())
        .await
        .unwrap();
    assert_eq!(missed, 0, "nothing coalesced on the way");
}

/// Routing caches where a subject's reports go (at the hub and in each subscriber's
/// process): subscriptions that come and go in the middle of a stream on one subject must
/// still be served from the next report on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_joining_and_leaving_a_running_stream_are_served_at_once() {
    let (_hrt, _hex, address) = hub().await;
    let (prt, _pex) = client(&address);
    let publisher = prt.service("ticker").build().unwrap();
    let (srt, _sex) = client(&address);
    let sub = srt.service("sub").build().unwrap();
    visible(&srt, "ticker").await;
    let mut first = sub.monitor_reports("ticker", "tick").unwrap();
    let mut n = 0;
    // Publishes until `monitor` has a report of this run (the subscription may still be on
    // its way); returns the value it got. A running stream, polled for a report that must
    // come: the 5 ms pause only spaces the publications.
    async fn next_tick(
        publisher: &netsvc::Service,
        n: &mut i64,
        monitor: &mut netsvc::ReportMonitor,
    ) -> i64 {
        within(async {
            loop {
                *n += 1;
                publisher.publish("tick", *n, Lifetime::None).unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                while let Some(event) = monitor.try_recv() {
                    if let ReportEvent::Report(r) = event {
                        return r.value().unwrap().as_i64().unwrap();
                    }
                }
            }
        })
        .await
    }
    next_tick(&publisher, &mut n, &mut first).await;
    // A second subscriber in the same process, then one in another process, join the
    // stream already flowing on "tick".
    let sub2 = srt.service("sub2").build().unwrap();
    let mut second = sub2.monitor_reports("ticker", "t*").unwrap();
    next_tick(&publisher, &mut n, &mut second).await;
    let (ort, _oex) = client(&address);
    let other = ort.service("other").build().unwrap();
    visible(&ort, "ticker").await;
    let mut third = other.monitor_reports("ticker", "tick").unwrap();
    next_tick(&publisher, &mut n, &mut third).await;
    // The first leaves; the others go on receiving every report from then on.
    drop(first);
    next_tick(&publisher, &mut n, &mut second).await;
    let from = n;
    for i in from + 1..=from + 20 {
        publisher.publish("tick", i, Lifetime::None).unwrap();
    }
    n = from + 20;
    for monitor in [&mut second, &mut third] {
        let mut got = Vec::new();
        within(async {
            while got.last() != Some(&n) {
                if let ReportEvent::Report(r) = monitor.recv().await.unwrap() {
                    let v = r.value().unwrap().as_i64().unwrap();
                    if v > from {
                        got.push(v);
                    }
                }
            }
        })
        .await;
        assert_eq!(got, (from + 1..=n).collect::<Vec<_>>());
    }
}
