use std::sync::Arc;
use std::time::Duration;

use netsvc::failure::codes;
use netsvc::{Failure, Runtime, RuntimeConfig, Value, args};
use tokio::sync::{Mutex, oneshot};

use crate::util::within;

fn echo_service(rt: &Runtime) -> netsvc::Service {
    rt.service("echo")
        .export(
            "echo",
            |req| async move { Ok(Value::List(req.into_args())) },
        )
        .export("f", |req| async move {
            // f(a, b=1): one or two arguments, like the original's Python example.
            req.expect_args(1, Some(2))?;
            Ok(Value::None)
        })
        .export("boom", |_| async move {
            if true {
                panic!("kaboom");
            }
            Ok(Value::None)
        })
        .export("abort", |_| async move {
            Err::<Value, _>(Failure::new(1, "Programming Error", "db", "x"))
        })
        .export("never", |_| {
            std::future::pending::<Result<Value, Failure>>()
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn s23_a_request_returns_the_value_of_the_method() {
    let rt = Runtime::new();
    let _svc = echo_service(&rt);
    let result = rt
        .endpoint("echo")
        .call("echo", args![1, "a<b", Value::None])
        .await;
    assert_eq!(
        result.unwrap(),
        Value::List(vec![1.into(), "a<b".into(), Value::None])
    );
}

#[tokio::test]
async fn s23_requests_carry_their_sender_and_a_fresh_conversation_id() {
    let rt = Runtime::new();
    let _who = rt
        .service("who")
        .export("ask", |req| async move {
            let sender = req
                .sender()
                .map(|b| b.address().to_owned())
                .unwrap_or_default();
            Ok(Value::List(vec![
                sender.into(),
                req.conversation_id().into(),
            ]))
        })
        .build()
        .unwrap();
    let caller = rt.service("caller").build().unwrap();
    let ep = caller.endpoint("who").unwrap();
    let first = ep.call("ask", vec![]).await.unwrap();
    let second = ep.call("ask", vec![]).await.unwrap();
    let list = |v: &Value| v.as_list().unwrap().to_vec();
    assert_eq!(list(&first)[0].as_str(), Some(caller.address()));
    assert_ne!(list(&first)[1], list(&second)[1]);
    let anonymous = rt.endpoint("who").call("ask", vec![]).await.unwrap();
    assert_eq!(list(&anonymous)[0].as_str(), Some(""));
}

#[tokio::test]
async fn s24_an_unexported_method_fails_with_55() {
    let rt = Runtime::new();
    let _svc = echo_service(&rt);
    let f = rt
        .endpoint("echo")
        .call("nosuch", vec![])
        .await
        .unwrap_err();
    assert_eq!(
        (f.error, f.description.as_str(), f.origin.as_str()),
        (55, "Method Unavailable", "netsvc")
    );
}

#[tokio::test]
async fn s25_a_wrong_argument_count_fails_with_56_in_the_original_words() {
    let rt = Runtime::new();
    let _svc = echo_service(&rt);
    let f = rt
        .endpoint("echo")
        .call("f", args![1, 2, 3])
        .await
        .unwrap_err();
    assert_eq!(f.error, codes::PARAMETERS_INCORRECT);
    assert_eq!(f.details, "Expected 1-2 arguments, received 3.");
    assert!(rt.endpoint("echo").call("f", args![1]).await.is_ok());
}

#[tokio::test]
async fn s26_a_panicking_method_fails_with_57_and_the_service_keeps_running() {
    let rt = Runtime::new();
    let _svc = echo_service(&rt);
    let ep = rt.endpoint("echo");
    let f = ep.call("boom", vec![]).await.unwrap_err();
    assert_eq!((f.error, f.origin.as_str()), (57, "netsvc"));
    assert!(f.details.contains("kaboom"), "{}", f.details);
    assert_eq!(
        ep.call("echo", args![1]).await.unwrap(),
        Value::List(vec![1.into()])
    );

    let f = ep.call("abort", vec![]).await.unwrap_err();
    assert_eq!(f, Failure::new(1, "Programming Error", "db", "x"));
}

#[tokio::test(start_paused = true)]
async fn s27_a_request_that_never_answers_times_out_with_47() {
    let rt = Runtime::new();
    let _svc = echo_service(&rt);
    let started = tokio::time::Instant::now();
    let f = rt
        .endpoint("echo")
        .with_timeout(Some(Duration::from_secs(60)))
        .call("never", vec![])
        .await
        .unwrap_err();
    assert_eq!((f.error, f.description.as_str()), (47, "Request Timeout"));
    assert_eq!(started.elapsed(), Duration::from_secs(60));
}

#[tokio::test]
async fn s27_the_default_timeout_comes_from_the_runtime() {
    let mut config = RuntimeConfig::default();
    config.request_timeout = Some(Duration::from_millis(20));
    let rt = Runtime::with_config(config).unwrap();
    let _svc = echo_service(&rt);
    let f = within(rt.endpoint("echo").call("never", vec![]))
        .await
        .unwrap_err();
    assert_eq!(f.error, codes::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn s28_withdrawal_before_the_response_fails_the_call_at_once_with_57() {
    let rt = Runtime::new();
    let svc = echo_service(&rt);
    let ep = rt.endpoint(svc.binding()).with_timeout(None);
    let pending = tokio::spawn(async move { ep.call("never", vec![]).await });
    tokio::task::yield_now().await;
    drop(svc);
    let f = within(pending).await.unwrap().unwrap_err();
    assert_eq!(f.error, codes::APPLICATION_ERROR);
    assert_eq!(f.details, "Service was withdrawn before response received.");
    assert!(f.is_withdrawn());
}

#[tokio::test]
async fn s28_a_call_to_a_service_already_gone_fails_with_57() {
    let rt = Runtime::new();
    let svc = echo_service(&rt);
    let binding = svc.binding().clone();
    drop(svc);
    let f = rt.endpoint(binding).call("echo", vec![]).await.unwrap_err();
    assert!(f.is_withdrawn());
}

#[tokio::test]
async fn s29_an_endpoint_for_a_missing_service_fails_with_46() {
    let rt = Runtime::new();
    let ep = rt.endpoint("missing");
    assert!(!ep.is_available());
    let f = ep.call("m", vec![]).await.unwrap_err();
    assert_eq!(
        (f.error, f.description.as_str()),
        (46, "Service Unavailable")
    );
}

/// The original allowed only the most recent request to be awaited (scenario 30); netsvc
/// has no such rule: many calls from one caller are in flight at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s30_many_calls_from_one_caller_are_in_flight_at_once() {
    let rt = Runtime::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = gate.clone();
    let _svc = rt
        .service("slow")
        .export("double", move |req| {
            let gate = g.clone();
            async move {
                let (n,): (i64,) = req.decode_args()?;
                // Every call waits until all of them are in flight.
                let _permit = gate
                    .acquire()
                    .await
                    .map_err(|e| Failure::application_error(e.to_string()))?;
                Ok(n * 2)
            }
        })
        .build()
        .unwrap();
    let caller = rt.service("caller").build().unwrap();
    let ep = caller.endpoint("slow").unwrap();
    let calls: Vec<_> = (0..500)
        .map(|i| {
            let ep = ep.clone();
            tokio::spawn(async move { ep.call("double", args![i]).await })
        })
        .collect();
    gate.add_permits(500);
    for (i, call) in calls.into_iter().enumerate() {
        let v = within(call).await.unwrap().unwrap();
        assert_eq!(v.as_i64(), Some(i as i64 * 2));
    }
}

/// Delayed responses (scenario 31): a method parks its request and responds later, when
/// something else resumes it, or fails it instead.
#[tokio::test]
async fn s31_a_method_can_respond_later_or_fail_later() {
    type Parked = Arc<Mutex<Vec<oneshot::Sender<Result<Value, Failure>>>>>;
    let parked: Parked = Arc::default();
    let p = parked.clone();
    let rt = Runtime::new();
    let _svc = rt
        .service("later")
        .export("wait", move |_| {
            let parked = p.clone();
            async move {
                let (tx, rx) = oneshot::channel();
                parked.lock().await.push(tx);
                rx.await
                    .map_err(|_| Failure::application_error("abandoned"))?
            }
        })
        .build()
        .unwrap();
    let ep = rt.endpoint("later");
    let first = tokio::spawn({
        let ep = ep.clone();
        async move { ep.call("wait", vec![]).await }
    });
    let second = tokio::spawn(async move { ep.call("wait", vec![]).await });
    while parked.lock().await.len() < 2 {
        tokio::task::yield_now().await;
    }
    let mut waiting = parked.lock().await;
    let cancel = waiting.pop().unwrap();
    let resume = waiting.pop().unwrap();
    drop(waiting);
    resume.send(Ok("resumed".into())).unwrap();
    cancel
        .send(Err(Failure::new(99, "Cancelled", "app", "")))
        .unwrap();
    assert_eq!(
        within(first).await.unwrap().unwrap().as_str(),
        Some("resumed")
    );
    assert_eq!(within(second).await.unwrap().unwrap_err().error, 99);
}

#[tokio::test]
async fn s32_calls_within_one_process_fail_with_46_and_55_like_remote_ones() {
    let rt = Runtime::new();
    let _db = rt
        .service("database")
        .export("q", |_| async { Ok(1) })
        .build()
        .unwrap();
    assert_eq!(
        rt.endpoint("database")
            .call("q", vec![])
            .await
            .unwrap()
            .as_i64(),
        Some(1)
    );
    assert_eq!(
        rt.endpoint("nodb")
            .call("q", vec![])
            .await
            .unwrap_err()
            .error,
        46
    );
    assert_eq!(
        rt.endpoint("database")
            .call("x", vec![])
            .await
            .unwrap_err()
            .error,
        55
    );
}

#[tokio::test]
async fn typed_arguments_and_results() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Point {
        x: i64,
        y: i64,
    }
    let rt = Runtime::new();
    let _geo = rt
        .service("geo")
        .export("mirror", |req| async move {
            let (p,): (Point,) = req.decode_args()?;
            netsvc::value::to_value(&Point { x: p.y, y: p.x })
                .map_err(|e| Failure::application_error(e.to_string()))
        })
        .build()
        .unwrap();
    let arg = netsvc::value::to_value(&Point { x: 1, y: 2 }).unwrap();
    let p: Point = rt
        .endpoint("geo")
        .call_as("mirror", vec![arg])
        .await
        .unwrap();
    assert_eq!(p, Point { x: 2, y: 1 });
    let f = rt
        .endpoint("geo")
        .call("mirror", args!["not a point"])
        .await
        .unwrap_err();
    assert_eq!(f.error, codes::PARAMETERS_INCORRECT);
}

#[tokio::test]
async fn a_request_flood_is_refused_with_51_not_queued_without_bound() {
    let mut config = RuntimeConfig::default();
    config.max_requests_in_progress = 3;
    let rt = Runtime::with_config(config).unwrap();
    let _svc = echo_service(&rt);
    let ep = rt.endpoint("echo").with_timeout(None);
    let stuck: Vec<_> = (0..3)
        .map(|_| {
            let ep = ep.clone();
            tokio::spawn(async move { ep.call("never", vec![]).await })
        })
        .collect();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let f = ep.call("echo", vec![]).await.unwrap_err();
    assert_eq!(f.error, codes::RESOURCE_UNAVAILABLE);
    for s in stuck {
        s.abort();
    }
}

#[tokio::test]
async fn values_nested_too_deep_are_refused() {
    let rt = Runtime::new();
    let _svc = echo_service(&rt);
    let deep = (0..100).fold(Value::None, |v, _| Value::List(vec![v]));
    let f = rt
        .endpoint("echo")
        .call("echo", vec![deep])
        .await
        .unwrap_err();
    assert_eq!(f.error, 42);
    assert!(f.details.contains("64"), "{}", f.details);
}

#[tokio::test]
async fn methods_can_be_exported_and_unexported_at_run_time() {
    let rt = Runtime::new();
    let svc = rt.service("dyn").build().unwrap();
    let ep = rt.endpoint("dyn");
    assert_eq!(ep.call("m", vec![]).await.unwrap_err().error, 55);
    svc.export("m", |_| async { Ok(true) }).unwrap();
    assert_eq!(svc.exported_methods(), vec!["m"]);
    assert_eq!(ep.call("m", vec![]).await.unwrap(), Value::Bool(true));
    svc.unexport("m");
    assert_eq!(ep.call("m", vec![]).await.unwrap_err().error, 55);
    let handle = svc.handle();
    drop(svc);
    assert!(handle.export("m", |_| async { Ok(1) }).is_err());
}
