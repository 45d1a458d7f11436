use std::time::Duration;

use netsvc::{Lifetime, ReportEvent, Runtime, RuntimeConfig, SubscriptionStatus, Value};

use crate::util::{drain_events, next_event, reports_of, within};

fn is_available(e: &ReportEvent) -> bool {
    matches!(e, ReportEvent::PublisherAvailable(_))
}

#[tokio::test]
async fn s14_lifetime_none_reaches_current_subscribers_only() {
    let rt = Runtime::new();
    let publisher = rt.service("pub").build().unwrap();
    let early = rt.service("early").build().unwrap();
    let mut m = early.monitor_reports("pub", "*").unwrap();
    assert!(is_available(&next_event(&mut m).await));
    assert_eq!(publisher.publish("news", 1, Lifetime::None).unwrap(), 1);
    assert_eq!(
        reports_of(&[next_event(&mut m).await]),
        vec![("news".into(), 1)]
    );

    let late = rt.service("late").build().unwrap();
    let mut m2 = late.monitor_reports("pub", "*").unwrap();
    assert!(is_available(&next_event(&mut m2).await));
    assert!(drain_events(&mut m2).is_empty());
}

#[tokio::test(start_paused = true)]
async fn s15_a_report_cached_forever_reaches_a_subscriber_hours_later_until_cleared() {
    let rt = Runtime::new();
    let publisher = rt.service("pub").build().unwrap();
    publisher.publish("state", 1, Lifetime::Forever).unwrap();
    tokio::time::advance(Duration::from_secs(5 * 3600)).await;
    let sub = rt.service("sub").build().unwrap();
    let mut m = sub.monitor_reports("pub", "*").unwrap();
    let events = drain_events(&mut m);
    assert_eq!(reports_of(&events), vec![("state".into(), 1)]);

    // Lifetime none: delivered, and the cached value is gone.
    publisher.publish("state", 2, Lifetime::None).unwrap();
    assert_eq!(reports_of(&drain_events(&mut m)), vec![("state".into(), 2)]);
    assert!(publisher.cached_subjects().unwrap().is_empty());
    let mut m2 = sub.monitor_reports("pub", "*").unwrap();
    assert!(reports_of(&drain_events(&mut m2)).is_empty());
}

#[tokio::test(start_paused = true)]
async fn s16_a_report_with_a_lifetime_expires_exactly() {
    let rt = Runtime::new();
    let publisher = rt.service("pub").build().unwrap();
    let sub = rt.service("sub").build().unwrap();
    publisher
        .publish("t", 1, Lifetime::For(Duration::from_secs(60)))
        .unwrap();

    tokio::time::advance(Duration::from_secs(30)).await;
    let mut at30 = sub.monitor_reports("pub", "*").unwrap();
    assert_eq!(reports_of(&drain_events(&mut at30)), vec![("t".into(), 1)]);

    tokio::time::advance(Duration::from_millis(29_999)).await;
    let mut just_before = sub.monitor_reports("pub", "*").unwrap();
    assert_eq!(reports_of(&drain_events(&mut just_before)).len(), 1);

    tokio::time::advance(Duration::from_millis(1)).await;
    let mut at60 = sub.monitor_reports("pub", "*").unwrap();
    assert!(
        reports_of(&drain_events(&mut at60)).is_empty(),
        "expired at exactly t+60"
    );
    // The sweeper has freed it; purge_reports is there for the original's API.
    within(async {
        while !publisher.cached_subjects().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    publisher.purge_reports().unwrap();
}

#[tokio::test]
async fn s17_patterns_follow_the_original_glob_rules() {
    let rt = Runtime::new();
    let publisher = rt.service("pub").build().unwrap();
    let sub = rt.service("sub").build().unwrap();
    let mut system = sub.monitor_reports("pub", "system.*").unwrap();
    let mut abc = sub.monitor_reports("pub", "a?c").unwrap();
    for subject in ["system.time", "system.a.b", "system", "abc", "ac"] {
        publisher.publish(subject, 0, Lifetime::None).unwrap();
    }
    let subjects = |evs: Vec<ReportEvent>| -> Vec<String> {
        reports_of(&evs).into_iter().map(|(s, _)| s).collect()
    };
    assert_eq!(
        subjects(drain_events(&mut system)),
        vec!["system.time", "system.a.b"]
    );
    assert_eq!(subjects(drain_events(&mut abc)), vec!["abc"]);
}

#[tokio::test]
async fn s18_a_subscriber_with_two_matching_patterns_receives_two_copies() {
    let rt = Runtime::new();
    let publisher = rt.service("pub").build().unwrap();
    let sub = rt.service("sub").build().unwrap();
    let mut all = sub.monitor_reports("pub", "*").unwrap();
    let mut system = sub.monitor_reports("pub", "system.*").unwrap();
    assert_eq!(
        publisher.publish("system.time", 7, Lifetime::None).unwrap(),
        2
    );
    let a = drain_events(&mut all);
    let s = drain_events(&mut system);
    assert_eq!(reports_of(&a), vec![("system.time".into(), 7)]);
    assert_eq!(reports_of(&s), vec![("system.time".into(), 7)]);
    let pattern_of = |evs: &[ReportEvent]| match evs.last() {
        Some(ReportEvent::Report(r)) => r.pattern().map(|p| p.as_str().to_owned()),
        _ => None,
    };
    assert_eq!(pattern_of(&a).as_deref(), Some("*"));
    assert_eq!(pattern_of(&s).as_deref(), Some("system.*"));
}

#[tokio::test]
async fn s19_monitoring_by_name_catches_publishers_that_appear_later() {
    let rt = Runtime::new();
    let sub = rt.service("sub").build().unwrap();
    let mut m = sub.monitor_reports("publisher", "system.*").unwrap();
    assert!(drain_events(&mut m).is_empty());
    let p1 = rt.service("publisher").build().unwrap();
    p1.publish("system.load", 1, Lifetime::None).unwrap();
    let p2 = rt.service("publisher").build().unwrap();
    p2.publish("system.load", 2, Lifetime::None).unwrap();
    let events = drain_events(&mut m);
    assert!(matches!(&events[0], ReportEvent::PublisherAvailable(b) if b == p1.binding()));
    assert!(matches!(&events[2], ReportEvent::PublisherAvailable(b) if b == p2.binding()));
    assert_eq!(
        reports_of(&events),
        vec![("system.load".into(), 1), ("system.load".into(), 2)]
    );
}

#[tokio::test]
async fn s20_the_publisher_sees_subscriptions_and_can_report_to_one_subscriber() {
    let rt = Runtime::new();
    let publisher = rt.service("pub").build().unwrap();
    let mut subs = publisher.watch_subscriptions().unwrap();
    let alice = rt.service("alice").build().unwrap();
    let bob = rt.service("bob").build().unwrap();
    let mut ma = alice.monitor_reports("pub", "status.*").unwrap();
    let mut mb = bob.monitor_reports("pub", "*").unwrap();

    let first = within(subs.recv()).await.unwrap();
    assert_eq!(first.status, SubscriptionStatus::Requested);
    assert_eq!(&first.subscriber, alice.binding());
    assert_eq!(first.pattern.as_str(), "status.*");
    assert_eq!(
        &within(subs.recv()).await.unwrap().subscriber,
        bob.binding()
    );

    assert_eq!(
        publisher
            .send_report(alice.binding(), "status.x", 1)
            .unwrap(),
        1
    );
    // A subject none of alice's patterns match still reaches her, once, without a pattern.
    assert_eq!(
        publisher.send_report(alice.binding(), "other", 2).unwrap(),
        1
    );
    let got = drain_events(&mut ma);
    assert_eq!(
        reports_of(&got),
        vec![("status.x".into(), 1), ("other".into(), 2)]
    );
    match got.last() {
        Some(ReportEvent::Report(r)) => assert!(r.is_targeted() && r.pattern().is_none()),
        other => panic!("{other:?}"),
    }
    assert!(reports_of(&drain_events(&mut mb)).is_empty(), "only alice");
    assert!(
        publisher.cached_subjects().unwrap().is_empty(),
        "never cached"
    );

    let nobody = rt.service("nobody").build().unwrap();
    assert!(publisher.send_report(nobody.binding(), "x", 0).is_err());
}

#[tokio::test]
async fn s21_the_publisher_sees_withdrawn_for_each_pattern_of_a_subscriber_that_goes() {
    let rt = Runtime::new();
    let publisher = rt.service("pub").build().unwrap();
    let sub = rt.service("sub").build().unwrap();
    let _m1 = sub.monitor_reports("pub", "a.*").unwrap();
    let _m2 = sub.monitor_reports("pub", "b.*").unwrap();
    let mut subs = publisher.watch_subscriptions().unwrap();
    let replay: Vec<_> = [
        within(subs.recv()).await.unwrap(),
        within(subs.recv()).await.unwrap(),
    ]
    .into_iter()
    .map(|e| (e.status, e.pattern.as_str().to_owned()))
    .collect();
    assert_eq!(
        replay,
        vec![
            (SubscriptionStatus::Requested, "a.*".to_owned()),
            (SubscriptionStatus::Requested, "b.*".to_owned())
        ]
    );
    drop(sub);
    let mut withdrawn = [
        within(subs.recv()).await.unwrap(),
        within(subs.recv()).await.unwrap(),
    ];
    withdrawn.sort_by(|a, b| a.pattern.as_str().cmp(b.pattern.as_str()));
    assert!(
        withdrawn
            .iter()
            .all(|e| e.status == SubscriptionStatus::Withdrawn)
    );
    assert_eq!(withdrawn[0].pattern.as_str(), "a.*");
    assert_eq!(withdrawn[1].pattern.as_str(), "b.*");
}

#[tokio::test]
async fn s22_subscribers_see_their_publisher_come_and_go() {
    let rt = Runtime::new();
    let sub = rt.service("sub").build().unwrap();
    let mut m = sub.monitor_reports("pub", "*").unwrap();
    let publisher = rt.service("pub").build().unwrap();
    let binding = publisher.binding().clone();
    assert!(matches!(next_event(&mut m).await, ReportEvent::PublisherAvailable(b) if b == binding));
    drop(publisher);
    assert!(matches!(next_event(&mut m).await, ReportEvent::PublisherWithdrawn(b) if b == binding));
}

#[tokio::test]
async fn unsubscribing_by_dropping_the_monitor() {
    let rt = Runtime::new();
    let publisher = rt.service("pub").build().unwrap();
    let sub = rt.service("sub").build().unwrap();
    let mut subs = publisher.watch_subscriptions().unwrap();
    let m = sub.monitor_reports("pub", "*").unwrap();
    assert_eq!(
        within(subs.recv()).await.unwrap().status,
        SubscriptionStatus::Requested
    );
    drop(m);
    assert_eq!(
        within(subs.recv()).await.unwrap().status,
        SubscriptionStatus::Withdrawn
    );
    assert_eq!(publisher.publish("x", 1, Lifetime::None).unwrap(), 0);
}

#[tokio::test]
async fn monitoring_by_binding_follows_that_service_only() {
    let rt = Runtime::new();
    let p1 = rt.service("pub").build().unwrap();
    let p2 = rt.service("pub").build().unwrap();
    let sub = rt.service("sub").build().unwrap();
    let mut m = sub.monitor_reports(p2.binding(), "*").unwrap();
    p1.publish("x", 1, Lifetime::None).unwrap();
    p2.publish("x", 2, Lifetime::None).unwrap();
    assert_eq!(reports_of(&drain_events(&mut m)), vec![("x".into(), 2)]);
}

#[tokio::test]
async fn a_slow_subscriber_ends_with_the_latest_value_of_each_subject() {
    let mut config = RuntimeConfig::default();
    config.report_capacity = 8;
    let rt = Runtime::with_config(config).unwrap();
    let publisher = rt.service("pub").build().unwrap();
    let slow = rt.service("slow").build().unwrap();
    let mut m = slow.monitor_reports("pub", "*").unwrap();
    for i in 0..1000 {
        publisher
            .publish(&format!("s{}", i % 4), i, Lifetime::None)
            .unwrap();
    }
    let events = drain_events(&mut m);
    let missed: u64 = events
        .iter()
        .map(|e| {
            if let ReportEvent::Missed(n) = e {
                *n
            } else {
                0
            }
        })
        .sum();
    let reports = reports_of(&events);
    assert!(
        events.len() < 20,
        "the queue stayed bounded: {}",
        events.len()
    );
    assert_eq!(
        missed as usize + reports.len(),
        1000,
        "every report is delivered or counted"
    );
    for s in 0..4 {
        let last = reports
            .iter()
            .rev()
            .find(|(sub, _)| *sub == format!("s{s}"))
            .unwrap();
        assert_eq!(last.1, 996 + s, "latest value of s{s}");
    }
}

#[tokio::test]
async fn bad_subjects_patterns_and_lifetimes_are_refused() {
    let rt = Runtime::new();
    let p = rt.service("pub").build().unwrap();
    assert!(p.publish("", 1, Lifetime::None).is_err());
    assert!(p.publish("a*b", 1, Lifetime::None).is_err());
    assert!(p.publish("ok", 1, Lifetime::For(Duration::ZERO)).is_err());
    assert!(Lifetime::from_seconds(-2).is_err());
    assert!(p.monitor_reports("pub", "").is_err());
    let deep = (0..100).fold(Value::None, |v, _| Value::List(vec![v]));
    assert!(p.publish("ok", deep, Lifetime::None).is_err());
    let h = p.handle();
    drop(p);
    assert!(matches!(
        h.publish("ok", 1, Lifetime::None),
        Err(netsvc::Error::Withdrawn { .. })
    ));
}

/// A subscriber arriving while the publisher publishes as fast as it can: the cached value
/// it starts with and the live reports after it form one consecutive sequence, with no gap
/// and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_subscribers_get_the_cache_then_live_reports_with_no_gap_or_duplicate() {
    let mut config = RuntimeConfig::default();
    config.report_capacity = 1 << 20;
    let rt = Runtime::with_config(config).unwrap();
    let publisher = rt.service("counter").build().unwrap();
    let handle = publisher.handle();
    let total = 50_000;
    let writer = std::thread::spawn(move || {
        for i in 0..total {
            handle.publish("count", i, Lifetime::Forever).unwrap();
        }
    });
    let subs: Vec<_> = (0..8)
        .map(|i| rt.service(&format!("s{i}")).build().unwrap())
        .collect();
    let mut monitors = Vec::new();
    for s in &subs {
        monitors.push(s.monitor_reports("counter", "count").unwrap());
        std::thread::yield_now();
    }
    writer.join().unwrap();
    for mut m in monitors {
        let values: Vec<i64> = reports_of(&drain_events(&mut m))
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert!(!values.is_empty());
        for pair in values.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "gap or duplicate");
        }
        assert_eq!(*values.last().unwrap(), total - 1);
    }
}

#[tokio::test]
async fn a_cached_report_says_so_and_a_live_one_does_not() {
    let rt = Runtime::new();
    let publisher = rt.service("pub").build().unwrap();
    publisher.publish("state", 1, Lifetime::Forever).unwrap();
    let sub = rt.service("sub").build().unwrap();
    let mut m = sub.monitor_reports("pub", "*").unwrap();
    assert!(is_available(&next_event(&mut m).await));
    let ReportEvent::Report(cached) = next_event(&mut m).await else {
        panic!("expected the cached report");
    };
    assert!(cached.is_cached(), "{cached:?}");
    publisher.publish("state", 2, Lifetime::Forever).unwrap();
    let ReportEvent::Report(live) = next_event(&mut m).await else {
        panic!("expected the live report");
    };
    assert!(!live.is_cached(), "{live:?}");
}
