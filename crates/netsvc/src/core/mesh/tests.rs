//! Routing between cores over in-memory links, deterministically: topologies, duplicate
//! links, reroutes, withdrawal order, relayed conversations and subscriptions across hops.

use netsvc_proto::value::Value;

use crate::core::testing::{Network, announcements};
use crate::model::announcement::{AnnouncementKind, WithdrawReason};
use crate::model::report::Lifetime;

const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

/// Every node of `network` sees exactly the services `expected`.
fn everyone_sees(network: &mut Network, nodes: usize, expected: &[(&str, &str)]) {
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, p)| ((*n).to_owned(), (*p).to_owned()))
        .collect();
    for (node, name) in NAMES.iter().enumerate().take(nodes) {
        assert_eq!(network.seen(node), expected, "as node {name} sees it");
    }
}

#[test]
fn every_topology_shows_each_service_once_and_falls_quiet() {
    let topologies: [(&str, &[(usize, usize)]); 4] = [
        ("chain", &[(0, 1), (1, 2), (2, 3)]),
        ("ring", &[(0, 1), (1, 2), (2, 3), (3, 0)]),
        ("star", &[(1, 0), (2, 0), (3, 0)]),
        (
            "full mesh",
            &[(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)],
        ),
    ];
    for (name, wires) in topologies {
        let mut net = Network::new(&NAMES[..4]);
        for (node, process) in NAMES.iter().enumerate().take(4) {
            net.service(node, &format!("svc-{process}"), &[]);
        }
        for &(from, to) in wires {
            assert!(net.link(from, to).is_some(), "{name}: {from}-{to}");
        }
        // Panics if announcements keep going round a loop.
        net.settle();
        everyone_sees(
            &mut net,
            4,
            &[
                ("svc-a", "a"),
                ("svc-b", "b"),
                ("svc-c", "c"),
                ("svc-d", "d"),
            ],
        );
        // Every end of every link has declared its peer synced.
        assert_eq!(net.resynced.len(), 2 * wires.len(), "{name}");
        // A call from one end of the network to the other finds its way.
        let far = net.core(3).registry.lookup_name("svc-a")[0].clone();
        let call = net.call(3, far.address(), vec![Value::from(name)]);
        net.settle();
        assert_eq!(
            call.outcome(),
            Ok(Value::List(vec![Value::from(name)])),
            "{name}"
        );
    }
}

#[test]
fn a_second_link_between_two_processes_leaves_exactly_one() {
    let mut net = Network::new(&NAMES[..2]);
    net.service(0, "svc-a", &[]);
    net.service(1, "svc-b", &[]);
    assert!(net.link(0, 1).is_some());
    net.settle();
    // Started by b, whose identity is the higher: refused, whoever asks.
    assert!(net.link(1, 0).is_none());
    // Started by a again: the older of two links started by one process survives.
    assert!(net.link(0, 1).is_none());
    net.settle();
    everyone_sees(&mut net, 2, &[("svc-a", "a"), ("svc-b", "b")]);
}

#[test]
fn losing_one_of_two_routes_moves_calls_and_subscriptions_to_the_other_unseen() {
    // a - b - c, and a - c directly.
    let mut net = Network::new(&NAMES[..3]);
    let clock = net.service(2, "clock", &[]);
    net.link(0, 1);
    net.link(1, 2);
    let direct = net.link(0, 2).expect("a link");
    net.settle();
    net.publish(2, &clock, "time", 1, Lifetime::Forever);
    let reports = net.monitor(0, "clock", "*");
    net.settle();
    assert_eq!(reports.take(), [("time".to_owned(), 1)]);
    let mut watch = net.watch(0);
    announcements(&mut watch);

    net.unlink(direct);
    net.settle();
    // The service is still there for a, by way of b: no announcement at all.
    assert_eq!(announcements(&mut watch), []);
    assert_eq!(
        net.seen(0),
        [
            ("".to_owned(), "a".to_owned()),
            ("clock".to_owned(), "c".to_owned())
        ]
    );
    let call = net.call(0, clock.address(), vec![Value::from(7)]);
    net.settle();
    assert_eq!(call.outcome(), Ok(Value::List(vec![Value::from(7)])));
    // The subscription moved: the cached report is not delivered again, live ones arrive.
    assert_eq!(reports.take(), []);
    net.publish(2, &clock, "time", 2, Lifetime::Forever);
    net.settle();
    assert_eq!(reports.take(), [("time".to_owned(), 2)]);
}

#[test]
fn cutting_a_link_withdraws_only_what_no_other_route_reaches() {
    let mut net = Network::new(&NAMES[..3]);
    net.service(1, "on-b", &[]);
    net.service(2, "on-c", &[]);
    net.link(0, 1);
    let far = net.link(1, 2).expect("a link");
    net.settle();
    let mut watch = net.watch(0);
    announcements(&mut watch);
    net.unlink(far);
    net.settle();
    let seen: Vec<(String, AnnouncementKind)> = announcements(&mut watch)
        .into_iter()
        .map(|a| (a.binding.service_name().to_owned(), a.kind))
        .collect();
    assert_eq!(
        seen,
        [(
            "on-c".to_owned(),
            AnnouncementKind::Withdrawn(WithdrawReason::ConnectionLost)
        )]
    );
    assert_eq!(net.seen(0), [("on-b".to_owned(), "b".to_owned())]);
}

#[test]
fn a_withdrawal_leaves_each_group_before_the_service_goes_everywhere() {
    let mut net = Network::new(&NAMES[..3]);
    let svc = net.service(0, "member", &["first", "second"]);
    net.link(0, 1);
    net.link(1, 2);
    net.settle();
    let mut watch = net.watch(2);
    announcements(&mut watch);
    net.withdraw(0, &svc);
    net.settle();
    let seen: Vec<AnnouncementKind> = announcements(&mut watch)
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(
        seen,
        [
            AnnouncementKind::GroupLeft("second".into()),
            AnnouncementKind::GroupLeft("first".into()),
            AnnouncementKind::Withdrawn(WithdrawReason::Owner),
        ]
    );
}

#[test]
fn replies_find_their_callers_when_a_hub_relays_and_calls_on_one_link() {
    // a calls the service on c through the hub b, while b calls it too, over the same link.
    let mut net = Network::new(&NAMES[..3]);
    let echo = net.service(2, "echo", &[]);
    net.link(0, 1);
    net.link(2, 1);
    net.settle();
    let mut calls = Vec::new();
    for i in 0..200i64 {
        let (node, arg) = if i % 2 == 0 { (0, i) } else { (1, -i) };
        calls.push((arg, net.call(node, echo.address(), vec![Value::from(arg)])));
    }
    net.settle();
    for (arg, call) in calls {
        assert_eq!(call.outcome(), Ok(Value::List(vec![Value::from(arg)])));
    }
}

#[test]
fn a_subscription_two_hops_away_gets_the_cache_first_then_each_live_report_once() {
    let mut net = Network::new(&NAMES[..3]);
    let news = net.service(2, "news", &[]);
    net.link(0, 1);
    net.link(1, 2);
    net.settle();
    net.publish(2, &news, "a", 1, Lifetime::Forever);
    net.publish(2, &news, "b", 2, Lifetime::None);
    let far = net.monitor(0, "news", "*");
    let near = net.monitor(1, "news", "a");
    net.settle();
    assert_eq!(far.take(), [("a".to_owned(), 1)]);
    assert_eq!(near.take(), [("a".to_owned(), 1)]);
    net.publish(2, &news, "a", 3, Lifetime::Forever);
    net.publish(2, &news, "b", 4, Lifetime::None);
    net.settle();
    assert_eq!(far.take(), [("a".to_owned(), 3), ("b".to_owned(), 4)]);
    assert_eq!(near.take(), [("a".to_owned(), 3)]);
    // Ended at the far end: the hub passes the end on, and the publisher serves only the hub's.
    net.core(0).unsubscribe(far.id);
    net.settle();
    net.publish(2, &news, "a", 5, Lifetime::Forever);
    net.settle();
    assert_eq!(near.take(), [("a".to_owned(), 5)]);
    assert_eq!(far.take(), []);
}
