//! Request floods: a service that cannot keep up, and a caller whose own link is congested.
//! Callers get failures (51) at once instead of requests piling up anywhere, every call ends
//! within its timeout, and the service is fine afterwards.

use std::time::{Duration, Instant};

use netsvc::failure::codes;
use netsvc::{ExchangeConfig, Failure, Retry, Runtime, RuntimeConfig, Value, args};
use tokio::task::JoinSet;

use crate::util::{client_with, config, hub, visible, within};

/// How long one call may overrun its timeout before the test calls it a hang.
const SLACK: Duration = Duration::from_millis(500);

/// Outcomes of a flood: (successes, failures by code, the slowest call).
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    failed: std::collections::BTreeMap<i32, usize>,
    slowest: Duration,
}

async fn flood(
    endpoint: &netsvc::Endpoint,
    calls: usize,
    args: Vec<Value>,
    timeout: Duration,
) -> Tally {
    let mut set = JoinSet::new();
    for _ in 0..calls {
        let endpoint = endpoint.clone();
        let args = args.clone();
        set.spawn(async move {
            let started = Instant::now();
            let outcome = endpoint
                .call_with_timeout("work", args, Some(timeout))
                .await;
            (outcome, started.elapsed())
        });
    }
    let mut tally = Tally::default();
    while let Some(joined) = set.join_next().await {
        let (outcome, took) = joined.unwrap();
        tally.slowest = tally.slowest.max(took);
        match outcome {
            Ok(_) => tally.ok += 1,
            Err(f) => *tally.failed.entry(f.error).or_default() += 1,
        }
    }
    tally
}

/// A service that takes 100 ms per request and accepts 32 at a time, behind a hub, flooded
/// with 3,000 concurrent requests from another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_against_a_slow_service_is_refused_at_once_not_queued() {
    let (_hub_rt, hub, address) = hub().await;
    let mut capped = RuntimeConfig::default();
    capped.max_requests_in_progress = 32;
    let (srt, _sex) = client_with(address, capped);
    let _slow = srt
        .service("slow")
        .export("work", |_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, Failure>(Value::from("done"))
        })
        .build()
        .unwrap();
    let (crt, _cex) = client_with(address, RuntimeConfig::default());
    visible(&crt, "slow").await;
    let endpoint = crt.endpoint("slow");

    let timeout = Duration::from_secs(3);
    let started = Instant::now();
    let tally = within("the flood", flood(&endpoint, 3000, args![], timeout)).await;
    println!(
        "flood of 3000 against 32 slots: {tally:?} in {:?}",
        started.elapsed()
    );
    assert!(tally.slowest <= timeout + SLACK, "{tally:?}");
    assert!(tally.ok >= 32, "{tally:?}");
    let refused = tally
        .failed
        .get(&codes::RESOURCE_UNAVAILABLE)
        .copied()
        .unwrap_or(0);
    assert_eq!(tally.ok + refused, 3000, "only successes and 51: {tally:?}");
    assert!(refused >= 1000, "most were refused at once: {tally:?}");

    // The service and the hub are fine afterwards.
    let after = within("a call after the flood", endpoint.call("work", args![])).await;
    assert_eq!(after, Ok(Value::from("done")));
    assert_eq!(hub.connections().len(), 2);
}

/// A caller floods a link with 64 KiB requests faster than it can send them: past the link's
/// soft limit its own requests fail with 51 at once, so its queue stays near that limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_flooding_its_own_link_gets_51_past_the_soft_limit() {
    let (_hub_rt, _hub, address) = hub().await;
    let (srt, _sex) = client_with(address, RuntimeConfig::default());
    let _svc = srt
        .service("sink")
        .export("work", |req| async move {
            Ok::<_, Failure>(Value::from(req.args().len()))
        })
        .build()
        .unwrap();
    let rt = Runtime::new();
    let mut small: ExchangeConfig = config();
    small.queue_soft_limit = 256 * 1024;
    small.queue_hard_limit = 4 * 1024 * 1024;
    let ex = netsvc::Exchange::client(&rt)
        .group("g")
        .config(small)
        .build()
        .unwrap();
    ex.connect(
        &address.to_string(),
        Retry::every(Duration::from_millis(20)),
    )
    .unwrap();
    visible(&rt, "sink").await;
    let endpoint = rt.endpoint("sink");
    let payload = args![Value::bytes(vec![1u8; 64 * 1024])];
    let timeout = Duration::from_secs(5);
    let tally = within("the flood", flood(&endpoint, 400, payload, timeout)).await;
    println!("400 x 64 KiB requests on a link with a 256 KiB soft limit: {tally:?}");
    let congested = tally
        .failed
        .get(&codes::RESOURCE_UNAVAILABLE)
        .copied()
        .unwrap_or(0);
    assert_eq!(tally.ok + congested, 400, "{tally:?}");
    assert!(congested > 0, "the soft limit refused some: {tally:?}");
    assert!(tally.ok > 0, "{tally:?}");
    assert!(tally.slowest <= timeout + SLACK, "{tally:?}");
    // The link survived (it was never over its hard limit) and works.
    let r = within("a call after", endpoint.call("work", args![1])).await;
    assert_eq!(r, Ok(Value::from(1)));
    assert_eq!(ex.connections().len(), 1);
}
