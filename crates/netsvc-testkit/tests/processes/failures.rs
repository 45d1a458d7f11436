//! Processes that die or freeze: requests in flight, heartbeats.

use std::time::{Duration, Instant};

use netsvc_testkit::field;
use serde_json::json;

use crate::util::{available, call, client, hub, service, withdrawn};

/// The bound on how long failures may take to be noticed in these tests.
const QUICKLY: Duration = Duration::from_secs(3);

#[test]
fn a_request_in_flight_fails_with_57_quickly_when_the_service_process_is_killed() {
    let (mut h, address) = hub("hub");
    let mut a = client("service", &address);
    service(&mut a, "slow", "*");
    let mut b = client("caller", &address);
    available(&mut b, "slow");
    available(&mut h, "slow");
    // Sanity: the service answers across two hops.
    let ok = call(&mut b, "warm-up", "slow", "echo", "[1]");
    assert_eq!(ok["value"], json!([1]), "{ok}");

    // Two long calls, one from another client (two hops), one from the hub (one hop).
    b.send("call from-client slow sleep 60 [30]");
    h.send("call from-hub slow sleep 60 [30]");
    a.expect_event("sleeping", &[]);
    a.expect_event("sleeping", &[]);

    let killed = Instant::now();
    a.kill();
    let failure = b.expect_event("failure", &[("id", json!("from-client"))]);
    let client_latency = killed.elapsed();
    let hub_failure = h.expect_event("failure", &[("id", json!("from-hub"))]);
    let hub_latency = killed.elapsed();
    println!(
        "failure 57 after SIGKILL: {} ms at the other client (node measured the whole call: \
         {} ms), {} ms at the hub",
        client_latency.as_millis(),
        failure["ms"],
        hub_latency.as_millis(),
    );
    for f in [&failure, &hub_failure] {
        assert_eq!(f["error"], 57, "{f}");
        assert_eq!(field(f, "origin"), "netsvc", "{f}");
        assert!(
            field(f, "details").starts_with(netsvc::failure::WITHDRAWN_DETAILS),
            "{f}"
        );
    }
    assert!(client_latency < QUICKLY, "{client_latency:?}");
    assert!(hub_latency < QUICKLY, "{hub_latency:?}");
}

#[test]
fn a_frozen_client_is_dropped_within_the_heartbeat_bound_and_returns_when_resumed() {
    let (mut h, address) = hub("hub");
    let mut a = client("frozen", &address);
    let frozen = service(&mut a, "frozen", "*");
    let mut o = client("observer", &address);
    assert_eq!(field(&available(&mut o, "frozen"), "address"), frozen);
    assert_eq!(field(&available(&mut h, "frozen"), "address"), frozen);

    let stopped = Instant::now();
    a.stop();
    assert_eq!(withdrawn(&mut h, &frozen), "connection-lost");
    let detected = stopped.elapsed();
    assert_eq!(withdrawn(&mut o, &frozen), "connection-lost");
    let seen_by_observer = stopped.elapsed();
    println!(
        "SIGSTOP detected by the hub after {} ms (heartbeat 200 ms x 4 misses), \
         withdrawal seen by another client after {} ms",
        detected.as_millis(),
        seen_by_observer.as_millis(),
    );
    assert!(detected < QUICKLY, "{detected:?}");

    // Resumed, the client finds its link dead, reconnects, and its service is back.
    let resumed = Instant::now();
    a.cont();
    let back = o.expect_event("available", &[("address", json!(frozen))]);
    assert_eq!(field(&back, "process"), a.process());
    h.expect_event("available", &[("address", json!(frozen))]);
    println!(
        "after SIGCONT the service was back after {} ms",
        resumed.elapsed().as_millis()
    );
    let ok = call(&mut o, "after", "frozen", "echo", "[\"back\"]");
    assert_eq!(ok["value"], json!(["back"]), "{ok}");
}
