//! How a client's connector treats a refused login: final before its first link (each retry
//! would count against the address on the server, which locks it out after a few), retried
//! at growing intervals after it (the user's rights may come back with the next reload).

use std::time::Duration;

use netsvc::exchange::{LinkFailure, LinkPhase};
use netsvc::security::{Credentials, Permissions, User, Users};
use netsvc::{Exchange, Retry, Runtime};

use super::util::within;

fn users(names: &[&str]) -> Users {
    let mut users = Users::default();
    for name in names {
        users.users.insert(
            (*name).into(),
            User {
                token: Some(format!("{name}-token")),
                permissions: Permissions::default(),
                ..User::default()
            },
        );
    }
    users
}

/// A client in group "g" logging in with `token`, retrying every 20 ms.
fn client(address: &str, token: &str) -> (Runtime, Exchange, netsvc::Connector) {
    let rt = Runtime::new();
    let ex = Exchange::client(&rt)
        .group("g")
        .config(super::util::config())
        .credentials(Credentials::token(token))
        .build()
        .unwrap();
    let link = ex
        .connect(address, Retry::every(Duration::from_millis(20)))
        .unwrap();
    (rt, ex, link)
}

#[tokio::test]
async fn a_refused_first_login_stops_the_connector_after_one_attempt() {
    let hub_rt = Runtime::new();
    let hub = Exchange::server(&hub_rt)
        .group("g")
        .config(super::util::config())
        .users(users(&["a"]))
        .build()
        .unwrap();
    let address = hub.listen("127.0.0.1:0").await.unwrap().to_string();

    let (_rt, _ex, link) = client(&address, "wrong-token");
    // Even a long limit ends at the refusal.
    let error = within("the refusal", link.synced_within(Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(
        matches!(error.cause, Some(LinkFailure::NotAuthorised(_))),
        "{error}"
    );
    let error = within("the stop", link.synced()).await.unwrap_err();
    assert!(error.stopped, "{error}");
    // Time for several retries at 20 ms: none was made.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = link.status();
    assert_eq!(status.phase, LinkPhase::Stopped);
    assert_eq!((status.attempts, status.failures), (1, 1));
}

#[tokio::test]
async fn a_login_refused_after_a_link_is_retried_at_growing_intervals() {
    let hub_rt = Runtime::new();
    let hub = Exchange::server(&hub_rt)
        .group("g")
        .config(super::util::config())
        .users(users(&["a"]))
        .build()
        .unwrap();
    let address = hub.listen("127.0.0.1:0").await.unwrap().to_string();
    let (_rt, _ex, mut link) = client(&address, "a-token");
    within("the link", link.synced()).await.unwrap();

    // a is removed: its link is closed, and its next login refused.
    assert_eq!(hub.set_users(users(&[])).unwrap(), 1);
    within("the refusal", async {
        while !matches!(
            link.status().last_failure,
            Some(LinkFailure::NotAuthorised(_))
        ) {
            link.changed().await;
        }
    })
    .await;
    let refused = link.status();
    // At 20 ms, 1.5 s would be some 70 more attempts; the login's backoff allows one more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = link.status();
    assert_ne!(later.phase, LinkPhase::Stopped);
    assert!(
        later.attempts <= refused.attempts + 1,
        "{refused:?} then {later:?}"
    );

    // a is back: the connector relinks on its own.
    hub.set_users(users(&["a"])).unwrap();
    within("the relink", link.synced()).await.unwrap();
}
