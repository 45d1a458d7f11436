use std::collections::HashMap;

use netsvc::{
    AnnouncementKind, Location, RecvError, Runtime, RuntimeConfig, ServiceStatus, WithdrawReason,
};

use crate::util::{drain_announcements, next_announcement};

#[tokio::test]
async fn s07_creating_a_service_announces_it_and_dropping_withdraws_it() {
    let rt = Runtime::new();
    let mut watch = rt.registry().watch();
    let service = rt.service("alarm-monitor").build().unwrap();

    let available = next_announcement(&mut watch).await;
    assert_eq!(available.kind, AnnouncementKind::Available);
    assert_eq!(available.binding.service_name(), "alarm-monitor");
    assert_eq!(available.binding.location(), Location::Local);
    assert_eq!(available.binding.process_identity(), rt.process_identity());

    drop(service);
    let withdrawn = next_announcement(&mut watch).await;
    assert_eq!(
        withdrawn.kind,
        AnnouncementKind::Withdrawn(WithdrawReason::Owner)
    );
    assert_eq!(withdrawn.binding, available.binding);
    assert!(rt.registry().services().is_empty());
}

#[tokio::test]
async fn s08_services_with_the_same_name_coexist_and_the_endpoint_targets_the_first() {
    let rt = Runtime::new();
    let first = rt
        .service("db")
        .export("who", |_| async { Ok("first") })
        .build()
        .unwrap();
    let second = rt
        .service("db")
        .export("who", |_| async { Ok("second") })
        .build()
        .unwrap();
    let found = rt.registry().lookup_name("db");
    assert_eq!(
        found,
        vec![first.binding().clone(), second.binding().clone()]
    );
    let ep = rt.endpoint("db");
    assert_eq!(ep.binding().as_ref(), Some(first.binding()));
    assert_eq!(
        ep.call("who", vec![]).await.unwrap().as_str(),
        Some("first")
    );
    drop(first);
    // By name, the endpoint follows the registry: the next call goes to the survivor.
    assert_eq!(
        ep.call("who", vec![]).await.unwrap().as_str(),
        Some("second")
    );
}

#[tokio::test]
async fn s09_a_hidden_service_is_invisible_until_announced() {
    let rt = Runtime::new();
    let mut watch = rt.registry().watch();
    let hidden = rt.service("shy").hidden().build().unwrap();
    hidden.join_group("g").unwrap();
    assert!(rt.registry().lookup_name("shy").is_empty());
    assert!(rt.registry().lookup_address(hidden.address()).is_none());
    assert!(drain_announcements(&mut watch).is_empty());

    hidden.announce().unwrap();
    let a = next_announcement(&mut watch).await;
    assert_eq!(
        (a.kind, a.binding.service_name()),
        (AnnouncementKind::Available, "shy")
    );
    let g = next_announcement(&mut watch).await;
    assert_eq!(g.kind, AnnouncementKind::GroupJoined("g".into()));
    assert_eq!(rt.registry().lookup_group("g").len(), 1);
    hidden.announce().unwrap();
    assert!(
        drain_announcements(&mut watch).is_empty(),
        "announce is idempotent"
    );
}

#[tokio::test]
async fn s10_watch_name_replays_existing_services_and_never_reports_groups() {
    let rt = Runtime::new();
    let a = rt.service("worker").build().unwrap();
    let b = rt.service("worker").build().unwrap();
    let _other = rt.service("other").build().unwrap();
    let mut watch = rt.registry().watch_name("worker");
    let replay: Vec<_> = drain_announcements(&mut watch);
    assert_eq!(replay.len(), 2);
    assert!(replay.iter().all(|x| x.kind == AnnouncementKind::Available));
    assert_eq!(replay[0].binding, *a.binding());
    assert_eq!(replay[1].binding, *b.binding());

    a.join_group("g").unwrap();
    a.leave_group("g").unwrap();
    drop(b);
    let next = next_announcement(&mut watch).await;
    assert_eq!(
        next.kind,
        AnnouncementKind::Withdrawn(WithdrawReason::Owner)
    );
    assert!(drain_announcements(&mut watch).is_empty());
}

#[tokio::test]
async fn s11_watch_group_reports_a_member_leaving_when_it_is_destroyed() {
    let rt = Runtime::new();
    let member = rt.service("m").join_group("pool").build().unwrap();
    let mut watch = rt.registry().watch_group("pool");
    let joined = next_announcement(&mut watch).await;
    assert_eq!(joined.kind, AnnouncementKind::GroupJoined("pool".into()));
    let binding = member.binding().clone();
    drop(member);
    let left = next_announcement(&mut watch).await;
    assert_eq!(left.kind, AnnouncementKind::GroupLeft("pool".into()));
    assert_eq!(left.binding, binding);
    assert!(drain_announcements(&mut watch).is_empty());
}

#[tokio::test]
async fn s12_withdrawal_reports_every_group_left_before_the_service_withdrawn() {
    let rt = Runtime::new();
    let svc = rt.service("grouped").build().unwrap();
    for g in ["a", "b", "c"] {
        svc.join_group(g).unwrap();
    }
    let mut watch = rt.registry().watch();
    drain_announcements(&mut watch);
    drop(svc);
    let kinds: Vec<_> = drain_announcements(&mut watch)
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(kinds.len(), 4);
    assert!(
        kinds[..3]
            .iter()
            .all(|k| matches!(k, AnnouncementKind::GroupLeft(_)))
    );
    assert_eq!(kinds[3], AnnouncementKind::Withdrawn(WithdrawReason::Owner));
    assert!(rt.registry().groups().is_empty());
}

#[tokio::test]
async fn s13_watch_address_of_an_unknown_service_says_withdrawn_and_stays_quiet() {
    let rt = Runtime::new();
    let _unrelated = rt.service("x").build().unwrap();
    let (status, mut watch) = rt.registry().watch_address("1@nowhere:1!ghost");
    assert_eq!(status, ServiceStatus::Withdrawn);
    assert!(drain_announcements(&mut watch).is_empty());

    let svc = rt.service("present").join_group("g").build().unwrap();
    let (status, mut watch) = rt.registry().watch_address(svc.address());
    assert_eq!(status, ServiceStatus::Available);
    let replay = drain_announcements(&mut watch);
    assert_eq!(replay.len(), 2, "availability and its group");
    svc.leave_group("g").unwrap();
    assert_eq!(
        next_announcement(&mut watch).await.kind,
        AnnouncementKind::GroupLeft("g".into())
    );
}

#[tokio::test]
async fn lookups_by_name_group_address_and_all() {
    let rt = Runtime::new();
    let a = rt
        .service("a")
        .join_group("g1")
        .join_group("g2")
        .build()
        .unwrap();
    let b = rt.service("b").join_group("g2").build().unwrap();
    let reg = rt.registry();
    assert_eq!(
        reg.services(),
        vec![a.binding().clone(), b.binding().clone()]
    );
    assert_eq!(reg.lookup_group("g2").len(), 2);
    assert_eq!(reg.groups(), vec!["g1".to_owned(), "g2".to_owned()]);
    assert_eq!(reg.groups_of(a.address()), vec!["g1", "g2"]);
    assert_eq!(reg.lookup_address(b.address()).as_ref(), Some(b.binding()));
    // Joining twice and leaving a group one is not in change nothing.
    a.join_group("g1").unwrap();
    b.leave_group("g1").unwrap();
    a.join_group("").unwrap();
    assert_eq!(reg.groups_of(a.address()), vec!["g1", "g2"]);
}

#[tokio::test]
async fn bad_names_are_refused_with_a_clear_error() {
    let rt = Runtime::new();
    let err = rt.service("bad!name").build().unwrap_err();
    assert!(err.to_string().contains("forbidden character '!'"), "{err}");
    assert!(rt.service("x").audience("a b").build().is_err());
    let ok = rt.service("").build().unwrap();
    assert_eq!(ok.name(), "");
    assert!(ok.join_group("has space").is_err());
}

#[tokio::test]
async fn runtimes_are_separate_like_processes() {
    let a = Runtime::new();
    let b = Runtime::new();
    let sa = a.service("svc").build().unwrap();
    let sb = b.service("svc").build().unwrap();
    assert_ne!(sa.address(), sb.address());
    assert_ne!(sa.binding().agent_identity(), sb.binding().agent_identity());
    assert_eq!(a.registry().services().len(), 1);
    assert_eq!(b.registry().services().len(), 1);
    assert!(
        sa.address().starts_with(sa.binding().agent_identity()) && sa.address().ends_with("!svc")
    );
}

#[tokio::test]
async fn shutdown_withdraws_everything_with_reason_process_exit() {
    let rt = Runtime::new();
    let _a = rt.service("a").build().unwrap();
    let mut watch = rt.registry().watch_name("a");
    drain_announcements(&mut watch);
    rt.shutdown();
    assert_eq!(
        next_announcement(&mut watch).await.kind,
        AnnouncementKind::Withdrawn(WithdrawReason::ProcessExit)
    );
    assert!(rt.registry().services().is_empty());
}

#[tokio::test]
async fn a_watch_that_falls_behind_is_cut_off_with_lagged() {
    let mut config = RuntimeConfig::default();
    config.announcement_capacity = 4;
    let rt = Runtime::with_config(config).unwrap();
    let mut watch = rt.registry().watch();
    let services: Vec<_> = (0..10)
        .map(|i| rt.service(&format!("s{i}")).build().unwrap())
        .collect();
    let mut received = 0;
    let end = loop {
        match watch.try_recv() {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("a lagging watch must end, not stall"),
            Err(e) => break e,
        }
    };
    assert_eq!(received, 4, "what was queued is delivered first");
    assert_eq!(end, RecvError::Lagged);
    drop(services);
}

/// Changes race the watch: services are created and withdrawn on another thread while
/// watches start. Each watch's replay plus its changes must describe a consistent history:
/// per address, AVAILABLE then WITHDRAWN, each at most once, with nothing missed at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_have_no_gap_and_no_duplicate_when_changes_race_them() {
    let rt = Runtime::new();
    let churn = {
        let rt = rt.clone();
        tokio::spawn(async move {
            let mut alive = Vec::new();
            for i in 0..2000 {
                alive.push(rt.service("churn").build().unwrap());
                if i % 3 == 0 {
                    alive.remove(0);
                }
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            alive
        })
    };
    let mut watches = Vec::new();
    for _ in 0..20 {
        watches.push(rt.registry().watch_name("churn"));
        tokio::task::yield_now().await;
    }
    let survivors = churn.await.unwrap();
    for mut watch in watches {
        let mut state: HashMap<String, bool> = HashMap::new();
        for a in drain_announcements(&mut watch) {
            let address = a.binding.address().to_owned();
            match a.kind {
                AnnouncementKind::Available => {
                    assert!(state.insert(address, true).is_none(), "duplicate AVAILABLE");
                }
                AnnouncementKind::Withdrawn(_) => {
                    assert_eq!(
                        state.insert(address, false),
                        Some(true),
                        "WITHDRAWN without AVAILABLE"
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let present: Vec<_> = state
            .iter()
            .filter(|(_, up)| **up)
            .map(|(a, _)| a.clone())
            .collect();
        assert_eq!(
            present.len(),
            survivors.len(),
            "the watch ends in the registry's state"
        );
        for s in &survivors {
            assert_eq!(state.get(s.address()), Some(&true));
        }
    }
}
