//! What a client learns from its `Connector`: when it is synced, how its attempts went, and
//! what it found when what answered was not a netsvc exchange of its group.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use netsvc::{Exchange, ExchangeConfig, LinkFailure, LinkPhase, Retry, Runtime};

use crate::util::{echo, fast_config, hub_again, listen_again, quick, visible, within};

/// A port that refuses connections now (bound, then released).
fn free_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A TCP server on a thread that answers every connection with `reply` (after reading a
/// little, as a server would) and closes it; `None`: accepts and says nothing, ever.
fn stranger(reply: Option<&'static [u8]>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            match reply {
                Some(reply) => {
                    let mut buf = [0; 64];
                    let _ = stream.read(&mut buf);
                    let _ = stream.write_all(reply);
                }
                None => held.push(stream),
            }
        }
    });
    address
}

fn client_of(
    address: &str,
    group: &str,
    config: ExchangeConfig,
) -> (Runtime, Exchange, netsvc::Connector) {
    let rt = Runtime::new();
    let ex = Exchange::client(&rt)
        .group(group)
        .config(config)
        .build()
        .unwrap();
    let connector = ex.connect(address, quick()).unwrap();
    (rt, ex, connector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_counts_its_failures_then_is_synced_again_after_every_loss() {
    let address = free_port();
    let (crt, _cex, mut connector) = client_of(&address, "", fast_config());
    // Nothing listens yet: attempts fail, and say why.
    let status = within(async {
        loop {
            let status = connector.changed().await;
            if status.failures >= 2 {
                return status;
            }
        }
    })
    .await;
    assert!(
        matches!(status.last_failure, Some(LinkFailure::Refused(_))),
        "{status:?}"
    );
    let short = connector
        .synced_within(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(!short.stopped && short.waited.is_some(), "{short}");
    assert!(short.to_string().contains(&address), "{short}");

    // The hub has its service before it listens: synced must mean the client sees it.
    let hrt = Runtime::new();
    let _svc = echo(&hrt, "on-hub");
    let hex = Exchange::server(&hrt)
        .config(fast_config())
        .build()
        .unwrap();
    listen_again(&hex, &address).await;
    within(connector.synced()).await.unwrap();
    assert!(connector.is_synced());
    assert_eq!(connector.status().last_failure, None);
    // Synced means the hub's registry is here.
    assert_eq!(crt.registry().lookup_name("on-hub").len(), 1);

    // The hub goes and comes back: the connector says so, and is synced again on its own.
    drop(hex);
    hrt.shutdown();
    within(async { while connector.changed().await.phase != LinkPhase::Connecting {} }).await;
    let (hrt, _hex) = hub_again(&address).await;
    let _svc = echo(&hrt, "back");
    within(connector.synced()).await.unwrap();
    visible(&crt, "back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_answers_instead_of_a_netsvc_exchange_of_the_group_is_named_at_once() {
    let limit = Duration::from_secs(20);
    let started = std::time::Instant::now();

    let http = stranger(Some(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    ));
    let (_rt, _ex, connector) = client_of(&http, "", fast_config());
    let error = connector.synced_within(limit).await.unwrap_err();
    assert!(
        matches!(&error.cause, Some(LinkFailure::NotNetsvc(why)) if why.contains("HTTP/1.1 400")),
        "{error}"
    );

    let ose = stranger(Some(&[0xaa, 0xaa, 0x30, 0x33, 0, 0, 0, 0x59, 0, 0, 0, 0]));
    let (_rt, _ex, connector) = client_of(&ose, "", fast_config());
    let error = connector.synced_within(limit).await.unwrap_err();
    assert_eq!(error.cause, Some(LinkFailure::OseExchange), "{error}");
    assert!(
        error.to_string().contains("original OSE exchange"),
        "{error}"
    );

    let hub_rt = Runtime::new();
    let hub = Exchange::server(&hub_rt).group("blue").build().unwrap();
    let blue = hub.listen("127.0.0.1:0").await.unwrap().to_string();
    let (_rt, _ex, connector) = client_of(&blue, "green", fast_config());
    let error = connector.synced_within(limit).await.unwrap_err();
    let Some(LinkFailure::GroupMismatch(why)) = &error.cause else {
        panic!("{error}");
    };
    assert!(
        why.contains("\"green\"") && why.contains("\"blue\""),
        "{why}"
    );
    // Each of these was told apart on the first answer, not at the limit.
    assert!(started.elapsed() < limit / 2, "{:?}", started.elapsed());

    // A server that accepts and never answers: a handshake timeout, not a refusal.
    let mute = stranger(None);
    let config = fast_config().with_handshake_timeout(Duration::from_millis(200));
    let (_rt, _ex, connector) = client_of(&mute, "", config);
    let error = connector
        .synced_within(Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(error.cause, Some(LinkFailure::HandshakeTimeout), "{error}");
    assert!(!error.to_string().contains("refused"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_attempt_that_fails_stops_and_synced_says_why() {
    let address = free_port();
    let rt = Runtime::new();
    let ex = Exchange::client(&rt).build().unwrap();
    let connector = ex.connect(&address, Retry::once()).unwrap();
    let error = within(connector.synced()).await.unwrap_err();
    assert!(error.stopped, "{error}");
    assert!(
        matches!(error.cause, Some(LinkFailure::Refused(_))),
        "{error}"
    );
    assert_eq!(connector.status().phase, LinkPhase::Stopped);
    assert_eq!(connector.status().attempts, 1);
}
