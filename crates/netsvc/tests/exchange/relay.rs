//! Requests relayed by a hub that also makes calls of its own over the same links.

use std::time::Duration;

use netsvc::{Endpoint, Failure, Value, args};

use crate::util::{client, hub, visible, within};

/// Calls `echo` with `count` distinct arguments, `parallel` at a time, and returns every
/// (argument, outcome) pair.
async fn echo_many(
    endpoint: Endpoint,
    tag: &'static str,
    count: usize,
    parallel: usize,
) -> Vec<(Value, Result<Value, Failure>)> {
    let mut outcomes = Vec::new();
    for batch in (0..count).collect::<Vec<_>>().chunks(parallel) {
        let calls: Vec<_> = batch
            .iter()
            .map(|i| {
                let endpoint = endpoint.clone();
                let arg = Value::from(format!("{tag}-{i}"));
                tokio::spawn(async move {
                    let outcome = endpoint.call("echo", vec![arg.clone()]).await;
                    (arg, outcome)
                })
            })
            .collect();
        for call in calls {
            outcomes.push(within(call).await.unwrap());
        }
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_relays_and_calls_over_one_link_hands_every_reply_to_its_own_caller() {
    let (hrt, _hex, address) = hub().await;
    let (srt, _sex) = client(&address);
    let _echo = srt
        .service("echo")
        .export("echo", |req| async move {
            // Long enough for many calls to be pending on the hub's link at once.
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok(Value::List(req.into_args()))
        })
        .build()
        .unwrap();
    let (crt, _cex) = client(&address);
    visible(&hrt, "echo").await;
    visible(&crt, "echo").await;

    // The hub calls out over its link to the service while relaying the other client's
    // calls over the same link.
    let own = tokio::spawn(echo_many(hrt.endpoint("echo"), "hub", 400, 40));
    let relayed = tokio::spawn(echo_many(crt.endpoint("echo"), "client", 400, 40));
    for (arg, outcome) in own.await.unwrap().into_iter().chain(relayed.await.unwrap()) {
        assert_eq!(outcome, Ok(Value::List(vec![arg])), "a reply went astray");
    }
    // And the link is still in order afterwards.
    let r = crt.endpoint("echo").call("echo", args![1]).await.unwrap();
    assert_eq!(r, Value::List(vec![1.into()]));
}
