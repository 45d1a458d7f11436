//! Every receiver is also a `futures::Stream`, with the same events as its `recv`, and one
//! lag contract: a watch cut off for lagging yields `Err(Lagged)` once, then ends.

use futures_util::StreamExt as _;
use netsvc::{
    AnnouncementKind, Lifetime, RecvError, ReportEvent, Runtime, RuntimeConfig, SubscriptionStatus,
};

use crate::util::within;

#[tokio::test]
async fn a_registry_watch_streams_its_snapshot_then_its_changes() {
    let rt = Runtime::new();
    let first = rt.service("first").build().unwrap();
    let mut watch = rt.registry().watch();
    let second = rt.service("second").build().unwrap();
    drop(first);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let a = within(watch.next()).await.unwrap().unwrap();
        seen.push((a.binding.service_name().to_owned(), a.kind));
    }
    assert_eq!(
        seen,
        [
            ("first".to_owned(), AnnouncementKind::Available),
            ("second".to_owned(), AnnouncementKind::Available),
            (
                "first".to_owned(),
                AnnouncementKind::Withdrawn(netsvc::WithdrawReason::Owner)
            ),
        ]
    );
    drop(second);
}

#[tokio::test]
async fn a_lagging_watch_stream_says_so_once_and_ends() {
    let rt = Runtime::with_config(RuntimeConfig::default().with_announcement_capacity(2)).unwrap();
    let watch = rt.registry().watch();
    let services: Vec<_> = (0..6)
        .map(|i| rt.service(&format!("s{i}")).build().unwrap())
        .collect();
    let items: Vec<_> = within(watch.collect::<Vec<_>>()).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items[..2].iter().all(Result::is_ok));
    assert_eq!(items[2], Err(RecvError::Lagged));
    drop(services);
}

#[tokio::test]
async fn report_monitors_and_subscription_watches_stream_too() {
    let rt = Runtime::new();
    let clock = rt.service("clock").build().unwrap();
    clock.publish("tick", 1, Lifetime::Forever).unwrap();
    let mut subscriptions = clock.watch_subscriptions().unwrap();
    let reader = rt.service("reader").build().unwrap();
    let mut monitor = reader.monitor_reports("clock", "*").unwrap();
    assert!(matches!(
        within(monitor.next()).await,
        Some(ReportEvent::PublisherAvailable(_))
    ));
    let Some(ReportEvent::Report(cached)) = within(monitor.next()).await else {
        panic!("the cached report comes next");
    };
    assert_eq!(cached.value().unwrap().as_i64(), Some(1));
    clock.publish("tick", 2, Lifetime::None).unwrap();
    let Some(ReportEvent::Report(live)) = within(monitor.next()).await else {
        panic!("then the live one");
    };
    assert_eq!(live.value().unwrap().as_i64(), Some(2));
    let event = within(subscriptions.next()).await.unwrap().unwrap();
    assert_eq!(event.status, SubscriptionStatus::Requested);
    assert_eq!(event.subscriber.service_name(), "reader");
    // The subscriber goes: its monitor's stream ends, after the withdrawal is told.
    drop(reader);
    let rest: Vec<ReportEvent> = within(monitor.collect::<Vec<_>>()).await;
    assert!(rest.is_empty(), "{rest:?}");
    let event = within(subscriptions.next()).await.unwrap().unwrap();
    assert_eq!(event.status, SubscriptionStatus::Withdrawn);
}
