//! The interest-scoped registry between cores over in-memory links: what a scoped client is
//! told of, names asked for late, watches that widen, hub restarts, services that move, and
//! the services a hub must show a scoped client for what it hands it.

use netsvc_proto::value::Value;

use crate::core::queue::EventReceiver;
use crate::core::testing::{Network, announcements};
use crate::model::announcement::{Announcement, AnnouncementKind, RegistryScope, WithdrawReason};
use crate::model::report::Lifetime;

/// (name, process) pairs, as [`Network::seen`] gives them.
fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(n, p)| ((*n).to_owned(), (*p).to_owned()))
        .collect()
}

/// What a watch has received since it was last read, kind by kind.
fn kinds(watch: &mut EventReceiver<Announcement>) -> Vec<AnnouncementKind> {
    announcements(watch).into_iter().map(|a| a.kind).collect()
}

/// A hub `h` (node 0), a scoped client `s` (node 1) and a whole-registry client `w` (node
/// 2), with services `x` and `y` on `w` and `own` on `s`.
fn hub_with_two_clients() -> Network {
    let mut net = Network::new(&["h", "s", "w"]);
    net.scope(1);
    net.service(1, "own", &[]);
    net.service(2, "x", &["g"]);
    net.service(2, "y", &[]);
    net.link(1, 0).expect("s links to h");
    net.link(2, 0).expect("w links to h");
    net.settle();
    net
}

#[test]
fn a_scoped_client_is_told_only_of_what_it_wants_and_the_others_of_everything() {
    let mut net = hub_with_two_clients();
    // Nothing asked for yet: the client sees its own service only, and is synced.
    assert_eq!(net.seen(1), pairs(&[("own", "s")]));
    assert!(net.resynced.contains(&1), "the scoped client is synced");
    // The hub and the whole-registry client see everything, the scoped client's too.
    let everything = pairs(&[("own", "s"), ("x", "w"), ("y", "w")]);
    assert_eq!(net.seen(0), everything);
    assert_eq!(net.seen(2), everything);

    let seq = net.core(1).want_name("x");
    assert!(
        net.core(1).interest_answered(seq).is_some(),
        "not answered yet"
    );
    net.settle();
    assert!(net.core(1).interest_answered(seq).is_none(), "answered");
    assert_eq!(net.seen(1), pairs(&[("own", "s"), ("x", "w")]));
    // Asking again costs nothing and is answered already.
    assert_eq!(net.core(1).want_name("x"), seq);

    // The whole registry, when asked for.
    net.core(1).want_all();
    net.settle();
    assert_eq!(net.seen(1), everything);
}

#[test]
fn a_name_looked_up_late_is_told_with_its_changes_and_its_withdrawal() {
    let mut net = hub_with_two_clients();
    net.core(1).want_name("late");
    net.settle();
    let mut watch = net.watch_scope(1, RegistryScope::Name("late".into()));
    // A service of another name appearing later is not told; one of the name is.
    net.service(2, "other", &[]);
    let late = net.service(2, "late", &[]);
    net.settle();
    assert_eq!(net.seen(1), pairs(&[("late", "w"), ("own", "s")]));
    net.withdraw(2, &late);
    net.settle();
    assert_eq!(
        kinds(&mut watch),
        [
            AnnouncementKind::Available,
            AnnouncementKind::Withdrawn(WithdrawReason::Owner)
        ]
    );
    assert_eq!(net.seen(1), pairs(&[("own", "s")]));
}

#[test]
fn a_watch_that_widens_sees_each_service_once() {
    let mut net = hub_with_two_clients();
    // A watch of a name starts from what is known (nothing), then gets the hub's answer
    // as a change.
    let mut by_name = net.watch_scope(1, RegistryScope::Name("x".into()));
    assert!(announcements(&mut by_name).is_empty());
    net.settle();
    let seen = announcements(&mut by_name);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].kind, AnnouncementKind::Available);
    assert_eq!(seen[0].binding.service_name(), "x");

    // A group widens to the whole registry: its member arrives as a join, and `x`, told
    // already, is not told again.
    let mut group = net.watch_scope(1, RegistryScope::Group("g".into()));
    net.settle();
    let joins = announcements(&mut group);
    assert_eq!(joins.len(), 1, "{joins:?}");
    assert_eq!(joins[0].binding.service_name(), "x");
    assert!(announcements(&mut by_name).is_empty(), "x told twice");
    assert_eq!(net.seen(1), pairs(&[("own", "s"), ("x", "w"), ("y", "w")]));
}

#[test]
fn a_hub_restart_brings_back_each_scoped_and_whole_client_its_own_view() {
    let mut net = Network::new(&["h", "s", "w", "h2"]);
    net.scope(1);
    net.service(1, "own", &[]);
    net.service(2, "x", &[]);
    net.service(2, "y", &[]);
    let s_wire = net.link(1, 0).expect("s links");
    let w_wire = net.link(2, 0).expect("w links");
    let mut watch = net.watch_scope(1, RegistryScope::Name("x".into()));
    net.settle();
    assert_eq!(announcements(&mut watch).len(), 1);
    // The hub goes; the clients reconnect to its successor (a fresh core).
    net.unlink(s_wire);
    net.unlink(w_wire);
    assert_eq!(net.seen(1), pairs(&[("own", "s")]));
    net.link(2, 3).expect("w links again");
    net.link(1, 3).expect("s links again");
    net.settle();
    assert_eq!(net.seen(1), pairs(&[("own", "s"), ("x", "w")]));
    assert_eq!(net.seen(2), pairs(&[("own", "s"), ("x", "w"), ("y", "w")]));
    // Withdrawn with the lost connection, available again: once each, nothing else.
    assert_eq!(
        kinds(&mut watch),
        [
            AnnouncementKind::Withdrawn(WithdrawReason::ConnectionLost),
            AnnouncementKind::Available,
        ]
    );
    // The new hub knows the scoped client's service as every other.
    assert_eq!(net.seen(3), pairs(&[("own", "s"), ("x", "w"), ("y", "w")]));
}

#[test]
fn a_service_that_moves_between_hubs_stays_visible_once() {
    // Two hubs joined; the scoped client on the first, the service's process on the second.
    let mut net = Network::new(&["h1", "h2", "s", "w"]);
    net.scope(2);
    net.link(1, 0).expect("hubs link");
    net.service(3, "x", &[]);
    let on_h2 = net.link(3, 1).expect("w on h2");
    net.link(2, 0).expect("s on h1");
    net.core(2).want_name("x");
    net.settle();
    assert_eq!(net.seen(2), pairs(&[("x", "w")]));
    // The service's process moves to the first hub.
    net.unlink(on_h2);
    net.link(3, 0).expect("w on h1");
    net.settle();
    assert_eq!(net.seen(2), pairs(&[("x", "w")]));
    let x = net.core(2).registry.lookup_name("x")[0].clone();
    let call = net.call(2, x.address(), vec![Value::from(7)]);
    net.settle();
    assert_eq!(call.outcome(), Ok(Value::List(vec![Value::from(7)])));
}

#[test]
fn a_scoped_client_is_shown_who_calls_and_subscribes_to_its_services() {
    let mut net = hub_with_two_clients();
    let own = net.core(1).registry.lookup_name("own")[0].clone();
    // A caller the scoped client never asked about: the hub tells it of the caller first,
    // so the request arrives with a sender it knows.
    let caller = net.service(2, "caller", &[]);
    let knows_caller = |net: &mut Network| {
        (net.core(1).registry)
            .lookup_address(caller.address())
            .is_some()
    };
    net.settle();
    assert!(!knows_caller(&mut net));
    let call = net.call_from(2, Some(&caller), own.address(), vec![Value::from(1)]);
    net.settle();
    assert_eq!(call.outcome(), Ok(Value::List(vec![Value::from(1)])));
    assert!(knows_caller(&mut net));

    // A subscriber it never asked about: a publisher serves only subscribers it can see,
    // so without the hub's help nothing would flow.
    let reports = net.monitor(2, "own", "*");
    net.settle();
    net.publish(1, &own, "temperature", 21, Lifetime::Forever);
    net.settle();
    assert_eq!(reports.take(), [("temperature".to_owned(), 21)]);

    // The caller goes: the scoped client hears of it, and forgets it.
    net.withdraw(2, &caller);
    net.settle();
    assert!(!knows_caller(&mut net));
}
