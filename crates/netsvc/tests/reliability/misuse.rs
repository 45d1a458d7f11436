//! Misusing the API gets a typed error (an [`Error`], [`ExchangeError`] or a [`Failure`]
//! with a framework code), never a panic: forbidden characters in names, values nested too
//! deep or too large, operations on withdrawn services, calls to withdrawn services,
//! nonsensical lifetimes, retry delays and exchange settings.

use std::collections::BTreeMap;
use std::time::Duration;

use netsvc::failure::codes;
use netsvc::names::{MAX_NAME_LEN, NameError, NameKind};
use netsvc::value::ValueError;
use netsvc::{
    Error, Exchange, ExchangeError, Lifetime, Retry, Runtime, RuntimeConfig, Target, Value, args,
};

use crate::util::{client, config, echo, hub, visible, within};

fn nested(depth: usize) -> Value {
    (0..depth).fold(Value::None, |v, _| Value::List(vec![v]))
}

fn forbidden(err: &Error, kind: NameKind, ch: char) -> bool {
    matches!(err, Error::InvalidName(NameError::ForbiddenChar { kind: k, ch: c, .. }) if *k == kind && *c == ch)
}

fn noop() -> impl Fn(netsvc::Request) -> std::future::Ready<Result<Value, netsvc::Failure>> {
    |_| std::future::ready(Ok(Value::None))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_forbidden_characters_are_refused_with_the_character() {
    let rt = Runtime::new();
    for (name, ch) in [
        ("a!b", '!'),
        ("a*", '*'),
        ("a?", '?'),
        ("two words", ' '),
        ("tab\t", '\t'),
        ("bell\u{7}", '\u{7}'),
        ("nbsp\u{a0}", '\u{a0}'),
    ] {
        let err = rt.service(name).build().unwrap_err();
        assert!(forbidden(&err, NameKind::Service, ch), "{name:?}: {err}");
        assert!(err.to_string().contains("service name"), "{err}");
    }
    let long = "x".repeat(MAX_NAME_LEN + 1);
    assert!(matches!(
        rt.service(&long).build(),
        Err(Error::InvalidName(NameError::TooLong { .. }))
    ));
    // Audience, groups and methods, at build time and later.
    assert!(matches!(
        rt.service("s").audience("no group").build(),
        Err(Error::InvalidName(_))
    ));
    let err = rt.service("s").join_group("g!").build().unwrap_err();
    assert!(forbidden(&err, NameKind::Group, '!'), "{err}");
    let err = rt
        .service("s")
        .export("two words", noop())
        .build()
        .unwrap_err();
    assert!(forbidden(&err, NameKind::Method, ' '), "{err}");
    // None of those left a service behind.
    assert!(rt.registry().services().is_empty());

    let svc = rt.service("ok").build().unwrap();
    assert!(forbidden(
        &svc.join_group("*").unwrap_err(),
        NameKind::Group,
        '*'
    ));
    assert!(matches!(
        svc.export("", noop()),
        Err(Error::InvalidName(NameError::Empty {
            kind: NameKind::Method
        }))
    ));
    // Subjects and patterns.
    let err = svc.publish("a.*", 1, Lifetime::None).unwrap_err();
    assert!(forbidden(&err, NameKind::Subject, '*'), "{err}");
    assert!(matches!(
        svc.publish("", 1, Lifetime::None),
        Err(Error::InvalidName(NameError::Empty { .. }))
    ));
    assert!(forbidden(
        &svc.publish("line\nbreak", 1, Lifetime::None).unwrap_err(),
        NameKind::Subject,
        '\n'
    ));
    assert!(matches!(
        svc.monitor_reports("ok", ""),
        Err(Error::InvalidName(NameError::Empty {
            kind: NameKind::Pattern
        }))
    ));
    assert!(forbidden(
        &svc.monitor_reports("a!b", "*").unwrap_err(),
        NameKind::Service,
        '!'
    ));
    assert!(matches!(
        svc.expire_reports("\u{0}", Duration::ZERO),
        Err(Error::InvalidName(_))
    ));
    // Lookups with names no service can have simply find nothing.
    assert!(rt.registry().lookup_name("a!b").is_empty());
    assert!(rt.registry().lookup_address("").is_none());
    assert!(rt.registry().lookup_group("*").is_empty());
    // Calls to a name no service can have fail like any unknown service.
    let f = rt.endpoint("a!b").call("m", args![]).await.unwrap_err();
    assert_eq!(f.error, codes::SERVICE_UNAVAILABLE, "{f}");
    let f = rt.endpoint("").call("m", args![]).await.unwrap_err();
    assert_eq!(f.error, codes::SERVICE_UNAVAILABLE, "{f}");
    let f = rt
        .endpoint(svc.binding())
        .call("not a method", args![])
        .await
        .unwrap_err();
    assert_eq!(f.error, codes::METHOD_UNAVAILABLE, "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_nested_too_deep_or_too_large_are_refused_everywhere() {
    let (hub_rt, _hub, address) = hub().await;
    let limit = hub_rt.config().value_limits.max_depth;
    let deep = || nested(limit + 1);
    let svc = hub_rt
        .service("deep")
        .export("deep", move |_| async move {
            Ok::<_, netsvc::Failure>(nested(limit + 1))
        })
        .export("echo", |req| async move {
            Ok::<_, netsvc::Failure>(Value::List(req.into_args()))
        })
        .export("first", |req| async move {
            Ok::<_, netsvc::Failure>(req.into_args().swap_remove(0))
        })
        .build()
        .unwrap();
    // Publishing.
    assert_eq!(
        svc.publish("s", deep(), Lifetime::Forever),
        Err(Error::InvalidValue(ValueError::TooDeep { limit }))
    );
    assert!(svc.publish("s", nested(limit), Lifetime::Forever).is_ok());
    let huge = Value::bytes(vec![0u8; 16 * 1024 * 1024 + 1]);
    assert!(matches!(
        svc.publish_as("s", &BTreeMap::from([(vec![1u8], 1)]), Lifetime::None),
        Err(Error::InvalidValue(_))
    ));

    // Requests: arguments too deep or too large (42), results too deep (52), locally and
    // across the exchange.
    let (crt, _cex) = client(address);
    visible(&crt, "deep").await;
    for (rt, place) in [(&hub_rt, "local"), (&crt, "remote")] {
        let e = rt.endpoint("deep");
        let f = e.call("echo", vec![deep()]).await.unwrap_err();
        assert_eq!(f.error, codes::REQUEST_ENCODING_ERROR, "{place}: {f}");
        let f = within("deep result", e.call("deep", args![]))
            .await
            .unwrap_err();
        assert_eq!(f.error, codes::RESPONSE_ENCODING_ERROR, "{place}: {f}");
        let ok = e.call("echo", vec![nested(limit - 1)]).await;
        assert_eq!(ok, Ok(Value::List(vec![nested(limit - 1)])), "{place}");
        // An argument at the limit is within it, in-process and across links alike (the
        // list that carries the arguments is not counted against them).
        let ok = e.call("first", vec![nested(limit)]).await;
        assert_eq!(ok, Ok(nested(limit)), "{place}");
    }
    let f = crt
        .endpoint("deep")
        .call("echo", vec![huge.clone()])
        .await
        .unwrap_err();
    assert_eq!(f.error, codes::REQUEST_ENCODING_ERROR, "{f}");

    // A report over the size limit, with a subscriber in another process: the publish
    // fails as a whole; it is neither cached nor delivered to a subscriber in this process.
    let local_sub = hub_rt.service("local-sub").build().unwrap();
    let mut here = local_sub.monitor_reports("deep", "big.*").unwrap();
    let remote_sub = crt.service("remote-sub").build().unwrap();
    let mut there = remote_sub.monitor_reports("deep", "big.*").unwrap();
    let mut subscriptions = svc.watch_subscriptions().unwrap();
    within("the remote subscription", async {
        loop {
            let e = subscriptions.recv().await.unwrap();
            if e.subscriber.address() == remote_sub.address() {
                return;
            }
        }
    })
    .await;
    assert!(matches!(
        svc.publish("big.one", huge, Lifetime::Forever),
        Err(Error::InvalidValue(ValueError::TooLarge { .. }))
    ));
    assert_eq!(svc.cached_subjects().unwrap(), ["s"]);
    svc.publish("big.two", 2, Lifetime::None).unwrap();
    for (monitor, place) in [(&mut here, "here"), (&mut there, "there")] {
        let report = within(place, monitor.next_report()).await.unwrap();
        assert_eq!(
            report.subject(),
            "big.two",
            "{place}: the big one never came"
        );
    }

    // Decoding hostile input never recurses without bound.
    let bomb = vec![0x91u8; 1_000_000];
    assert!(matches!(
        netsvc::value::decode(&bomb, &Default::default()),
        Err(ValueError::TooDeep { .. })
    ));
    let json = "[".repeat(100_000);
    assert!(Value::from_json_str(&json).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_service_refuses_everything_and_calls_to_it_fail() {
    let (hub_rt, _hub, address) = hub().await;
    let svc = echo(&hub_rt, "gone");
    let handle = svc.handle();
    let binding = svc.binding().clone();
    let (crt, _cex) = client(address);
    let remote = visible(&crt, "gone").await;
    let other = crt.service("other").build().unwrap();
    let mut withdrawn = crt.registry().watch_address(remote.address()).1;
    svc.withdraw();

    let is_withdrawn = |r: Result<(), Error>| matches!(r, Err(Error::Withdrawn { address }) if address == binding.address());
    assert!(handle.is_withdrawn());
    assert!(is_withdrawn(
        handle.publish("s", 1, Lifetime::None).map(drop)
    ));
    assert!(is_withdrawn(
        handle.publish_paced("s", 1, Lifetime::None).await.map(drop)
    ));
    assert!(is_withdrawn(handle.monitor_reports("x", "*").map(drop)));
    assert!(is_withdrawn(handle.export("m", noop())));
    assert!(is_withdrawn(handle.endpoint("x").map(drop)));
    assert!(is_withdrawn(handle.join_group("g")));
    assert!(is_withdrawn(handle.leave_group("g")));
    assert!(is_withdrawn(handle.announce()));
    assert!(is_withdrawn(handle.watch_subscriptions().map(drop)));
    assert!(is_withdrawn(handle.cached_subjects().map(drop)));
    assert!(is_withdrawn(
        handle.expire_reports("*", Duration::ZERO).map(drop)
    ));
    assert!(is_withdrawn(handle.purge_reports()));
    assert!(is_withdrawn(
        handle.send_report(other.binding(), "s", 1).map(drop)
    ));
    handle.unexport("echo"); // harmless

    // Calling it: by binding, 57 (it was withdrawn); by name, 46 (there is none).
    let f = hub_rt
        .endpoint(&binding)
        .call("echo", args![])
        .await
        .unwrap_err();
    assert!(f.is_withdrawn(), "{f}");
    let f = hub_rt
        .endpoint("gone")
        .call("echo", args![])
        .await
        .unwrap_err();
    assert_eq!(f.error, codes::SERVICE_UNAVAILABLE, "{f}");
    // The same from another process, once the withdrawal has arrived ...
    within("remote withdrawal", async {
        while !matches!(
            withdrawn.recv().await.unwrap().kind,
            netsvc::AnnouncementKind::Withdrawn(_)
        ) {}
    })
    .await;
    let f = crt
        .endpoint(&remote)
        .call("echo", args![])
        .await
        .unwrap_err();
    assert!(f.is_withdrawn(), "{f}");
    let f = crt
        .endpoint("gone")
        .call("echo", args![])
        .await
        .unwrap_err();
    assert_eq!(f.error, codes::SERVICE_UNAVAILABLE, "{f}");
    // ... and monitoring it by binding is accepted: it simply never delivers.
    let mut monitor = other.monitor_reports(Target::Binding(remote), "*").unwrap();
    assert!(monitor.try_recv().is_none());
}

#[test]
fn nonsensical_lifetimes_and_retry_delays_are_refused_or_made_sensible() {
    for seconds in [-2, -5, i64::MIN] {
        assert!(
            matches!(
                Lifetime::from_seconds(seconds),
                Err(Error::InvalidLifetime(_))
            ),
            "{seconds}"
        );
    }
    assert!(matches!(
        Lifetime::from_seconds(i64::MAX),
        Err(Error::InvalidLifetime(_))
    ));
    // Retry delays: anything negative or not a number is a single attempt, anything huge
    // is "practically never".
    for seconds in [-1.0, f64::NAN, f64::NEG_INFINITY, f64::INFINITY] {
        assert_eq!(Retry::from_seconds(seconds), Retry::once(), "{seconds}");
    }
    assert_eq!(
        Retry::from_seconds(1e300),
        Retry::every(Duration::MAX),
        "a delay beyond Duration's range"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonsensical_publish_lifetimes_are_refused() {
    let rt = Runtime::new();
    let svc = rt.service("p").build().unwrap();
    for lifetime in [
        Lifetime::For(Duration::ZERO),
        Lifetime::For(Duration::MAX),
        Lifetime::For(Duration::from_secs(101 * 365 * 24 * 3600)),
    ] {
        let err = svc.publish("s", 1, lifetime).unwrap_err();
        assert!(
            matches!(err, Error::InvalidLifetime(_)),
            "{lifetime:?}: {err}"
        );
        let err = svc.publish_paced("s", 1, lifetime).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidLifetime(_)),
            "{lifetime:?}: {err}"
        );
    }
    assert!(
        svc.cached_subjects().unwrap().is_empty(),
        "nothing was cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_misuse_gets_exchange_errors() {
    let rt = Runtime::new();
    assert!(matches!(
        Exchange::server(&rt).group("bad group").build(),
        Err(ExchangeError::InvalidGroup(_))
    ));
    let client = Exchange::client(&rt).build().unwrap();
    assert!(matches!(
        client.listen("127.0.0.1:0").await,
        Err(ExchangeError::NotAServer)
    ));
    for bad in ["", "nohost", ":1", "host:99999", "unix:"] {
        assert!(
            matches!(
                client.connect(bad, Retry::once()),
                Err(ExchangeError::InvalidAddress(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        Exchange::client(&rt).build(),
        Err(ExchangeError::DuplicateGroup(_))
    ));
    let server = Exchange::server(&rt).group("s").build().unwrap();
    assert!(matches!(
        server.listen("256.0.0.1:0").await,
        Err(ExchangeError::Listen { .. })
    ));
    server.shutdown(Duration::from_millis(10)).await;
    assert!(matches!(
        server.listen("127.0.0.1:0").await,
        Err(ExchangeError::ShutDown)
    ));
    assert!(matches!(
        server.connect("127.0.0.1:1", Retry::once()),
        Err(ExchangeError::ShutDown)
    ));

    // Settings that cannot work are refused when the exchange is built.
    let mut zero_heartbeat = config();
    zero_heartbeat.heartbeat = Duration::ZERO;
    let mut no_handshake = config();
    no_handshake.handshake_timeout = Duration::ZERO;
    let mut inverted = config();
    inverted.queue_soft_limit = inverted.queue_hard_limit + 1;
    let mut tiny_frames = config();
    tiny_frames.max_frame = 16;
    for (what, bad) in [
        ("zero heartbeat", zero_heartbeat),
        ("zero handshake timeout", no_handshake),
        ("soft limit over hard limit", inverted),
        ("tiny frames", tiny_frames),
    ] {
        let rt = Runtime::new();
        let built = Exchange::server(&rt).config(bad).build();
        assert!(
            matches!(built, Err(ExchangeError::InvalidConfig(_))),
            "{what}: {built:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_settings_at_their_extremes_do_not_panic() {
    let mut extreme = RuntimeConfig::default();
    extreme.max_requests_in_progress = usize::MAX;
    extreme.report_capacity = 0;
    extreme.announcement_capacity = 0;
    let rt = Runtime::with_config(extreme).unwrap();
    let _svc = echo(&rt, "e");
    assert_eq!(
        rt.endpoint("e").call("echo", args![1]).await,
        Ok(Value::List(args![1]))
    );
    let mut none = RuntimeConfig::default();
    none.max_requests_in_progress = 0;
    let rt = Runtime::with_config(none).unwrap();
    let _svc = echo(&rt, "e");
    let f = rt.endpoint("e").call("echo", args![]).await.unwrap_err();
    assert_eq!(f.error, codes::RESOURCE_UNAVAILABLE, "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_on_a_unix_path_never_destroys_what_is_there() {
    let dir = std::env::temp_dir().join(format!("netsvc-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // A regular file is refused and left as it was.
    let file = dir.join("precious.txt");
    std::fs::write(&file, "the user's data").unwrap();
    let rt = Runtime::new();
    let ex = Exchange::server(&rt).build().unwrap();
    let refused = ex.listen_unix(&file).await.unwrap_err();
    assert!(refused.to_string().contains("not a socket"), "{refused}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "the user's data");

    // A socket another hub listens on is refused: that hub stays reachable.
    let path = dir.join("hub.sock");
    let first_rt = Runtime::new();
    let first = Exchange::server(&first_rt).group("first").build().unwrap();
    first.listen_unix(&path).await.unwrap();
    let second_rt = Runtime::new();
    let second = Exchange::server(&second_rt)
        .group("second")
        .build()
        .unwrap();
    let refused = second.listen_unix(&path).await.unwrap_err();
    assert!(refused.to_string().contains("in use"), "{refused}");
    std::os::unix::net::UnixStream::connect(&path).expect("the first hub still answers");

    // The first hub removes its own socket when it stops (shutdown returns once its
    // listeners have ended)...
    first.shutdown(Duration::from_secs(1)).await;
    assert!(
        !path.exists(),
        "the hub's own socket is removed at shutdown"
    );

    // ...but not a socket that has since replaced it; a stale one (nobody listening) is
    // taken over.
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale); // the file stays, nobody listens
    second.listen_unix(&path).await.unwrap();
    std::fs::remove_file(&path).unwrap();
    let usurper = std::os::unix::net::UnixListener::bind(&path).unwrap();
    second.shutdown(Duration::from_secs(1)).await;
    assert!(
        path.exists(),
        "a socket that replaced the hub's own was removed"
    );
    drop(usurper);
    std::fs::remove_dir_all(&dir).unwrap();
}
