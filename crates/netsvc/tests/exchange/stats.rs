//! What a runtime counts (`Runtime::stats`) and what a hub tells about itself through its
//! introspection service, seen from each side of real links.

use netsvc::stats::{RequestRole, RequestStats, Stats, SubscriptionRole};
use netsvc::{
    Exchange, INTROSPECTION_SERVICE, LIST_METHODS, Lifetime, ReportEvent, Runtime, Value,
};

use crate::util::{client, fast_config, visible, within};

fn requests<'a>(stats: &'a Stats, service: &str, role: RequestRole) -> &'a RequestStats {
    stats
        .requests
        .iter()
        .find(|r| r.service == service && r.role == role)
        .unwrap_or_else(|| panic!("no {role:?} requests of {service} in {stats:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_of_a_relayed_call_counts_it_and_the_hub_tells_its_stats() {
    let hrt = Runtime::new();
    let hex = Exchange::server(&hrt)
        .config(fast_config())
        .introspection(true)
        .build()
        .unwrap();
    let address = hex.listen("127.0.0.1:0").await.unwrap().to_string();

    let (srt, _sex) = client(&address);
    let echo = srt
        .service("echo")
        .export(
            "echo",
            |req| async move { Ok(Value::List(req.into_args())) },
        )
        .export("slow", |_| async move {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            Ok(Value::Bool(true))
        })
        .export("fail", |_| async move {
            Err::<Value, _>(netsvc::Failure::application_error("asked to"))
        })
        .build()
        .unwrap();
    let (crt, _cex) = client(&address);
    visible(&crt, "echo").await;
    let introspection = visible(&crt, INTROSPECTION_SERVICE).await;
    assert_eq!(introspection.process_identity(), hrt.process_identity());

    let endpoint = crt.endpoint("echo");
    for i in 0..3 {
        within(endpoint.call("echo", vec![Value::from(i)]))
            .await
            .unwrap();
    }
    let failure = within(endpoint.call("fail", vec![])).await.unwrap_err();
    assert_eq!(failure.error, 57);
    let methods = within(endpoint.call(LIST_METHODS, vec![])).await.unwrap();
    assert_eq!(
        methods,
        Value::List(vec![
            Value::from("echo"),
            Value::from("fail"),
            Value::from("slow")
        ])
    );

    // A caller that gives up: its call is counted as aborted, 48.
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(20),
        endpoint.call("slow", vec![]),
    )
    .await;
    assert!(gave_up.is_err(), "the slow call answered: {gave_up:?}");

    let called = crt.stats();
    let called = requests(&called, "echo", RequestRole::Called);
    assert_eq!(called.failures.get(&48), Some(&1), "{called:?}");
    // The three echoes and the method list answered; one failed with 57.
    assert_eq!(called.ok, 4);
    assert_eq!(called.failures.get(&57), Some(&1));
    assert_eq!(called.latency.count(), 6);

    let served = srt.stats();
    let served = requests(&served, "echo", RequestRole::Served);
    assert_eq!((served.ok, served.failed()), (4, 1));

    // Through the hub's own service: the hub relayed them all.
    let hub = crt.endpoint(INTROSPECTION_SERVICE);
    let stats: Stats = within(hub.call_as("stats", vec![])).await.unwrap();
    assert_eq!(stats.identity, hrt.process_identity());
    let relayed = requests(&stats, "echo", RequestRole::Relayed);
    // The abandoned call's CANCEL went before this request on the same link.
    assert_eq!((relayed.ok, relayed.failed()), (4, 2));
    assert_eq!(relayed.failures.get(&48), Some(&1), "{relayed:?}");
    assert_eq!(stats.links.len(), 2, "{stats:#?}");
    assert!(
        stats
            .links
            .iter()
            .all(|l| l.bytes_in > 0 && l.bytes_out > 0)
    );
    assert!(stats.links.iter().all(|l| !l.initiated_here));

    let info = within(hub.call("info", vec![])).await.unwrap();
    let info = info.as_map().unwrap();
    assert_eq!(info["identity"], Value::from(hrt.process_identity()));
    assert_eq!(info["links"].as_i64(), Some(2));
    assert_eq!(info["version"], Value::from(env!("CARGO_PKG_VERSION")));

    drop(echo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_counted_where_they_are_published_relayed_and_delivered() {
    let hrt = Runtime::new();
    let hex = Exchange::server(&hrt)
        .config(fast_config())
        .build()
        .unwrap();
    let address = hex.listen("127.0.0.1:0").await.unwrap().to_string();
    assert!(
        hrt.registry().lookup_name(INTROSPECTION_SERVICE).is_empty(),
        "the library hosts no introspection service unless asked"
    );

    let (prt, _pex) = client(&address);
    let clock = prt.service("clock").build().unwrap();
    let (srt, _sex) = client(&address);
    let watcher = srt.service("watcher").build().unwrap();
    let mut monitor = watcher.monitor_reports("clock", "tick.*").unwrap();
    within(async {
        loop {
            if let Some(ReportEvent::PublisherAvailable(_)) = monitor.recv().await {
                break;
            }
        }
    })
    .await;
    // The subscription must have reached the publisher before its reports are sent.
    let mut subscriptions = clock.watch_subscriptions().unwrap();
    within(subscriptions.recv()).await.unwrap();
    for i in 0..5 {
        clock.publish("tick.second", i, Lifetime::None).unwrap();
    }
    clock.publish("other", 0, Lifetime::None).unwrap();
    let mut seen = 0;
    within(async {
        while seen < 5 {
            if let Some(ReportEvent::Report(_)) = monitor.recv().await {
                seen += 1;
            }
        }
    })
    .await;

    let published = prt.stats();
    assert_eq!(published.reports.published, 6);
    let tick = published
        .subjects
        .iter()
        .find(|s| s.subject == "tick.second")
        .unwrap();
    assert_eq!((tick.publisher.as_str(), tick.reports), ("clock", 5));
    let delivered = srt.stats();
    assert_eq!(delivered.reports.received, 5);
    assert_eq!(delivered.reports.delivered, 5);
    let relayed = hrt.stats();
    assert_eq!(relayed.reports.received, 5, "{relayed:#?}");
    assert_eq!(relayed.reports.sent, 5, "{relayed:#?}");

    // The one subscription, as each of the three holds it.
    for (rt, role) in [
        (&prt, SubscriptionRole::Served),
        (&hrt, SubscriptionRole::Relayed),
        (&srt, SubscriptionRole::Subscribed),
    ] {
        let held = rt.subscriptions(10);
        assert_eq!(held.truncated, 0);
        let [one] = held.entries.as_slice() else {
            panic!("{role:?}: {held:#?}");
        };
        assert_eq!(one.role, role);
        assert_eq!(
            (one.publisher.as_str(), one.pattern.as_str()),
            ("clock", "tick.*")
        );
        assert_eq!(one.subscriber_address, watcher.address());
        assert!(one.link.is_some());
    }
    assert_eq!(hrt.subscriptions(0).truncated, 1);
}
