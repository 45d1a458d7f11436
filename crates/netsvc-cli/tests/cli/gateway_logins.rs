//! Per-request logins on the standalone gateway (`netsvc gateway --logins`): each HTTP
//! request's credentials log in a link of their own to the hub, which checks them and
//! applies that user's permissions (docs/GATEWAY.md, *Logins*). A real hub with a users
//! file, real services, a real gateway process, HTTP over loopback.

use std::time::{Duration, Instant};

use crate::gateway::request;
use crate::http_logins::{
    ADMIN_TOKEN, STATION_PASSWORD, STATION_TOKEN, basic, bearer, call, get, logins_hub,
    service_names, write_users,
};
use crate::security::certificates_and_client;
use crate::util::*;

/// `netsvc gateway --logins` in front of the hub at `address`, HTTP on loopback; returns
/// the process and its HTTP address.
fn logins_gateway(address: &str) -> (Proc, String) {
    let mut gateway = Proc::spawn(&[
        "gateway",
        "--logins",
        "--connect",
        address,
        "--http",
        "127.0.0.1:0",
    ]);
    let http = gateway.wait_http("http");
    (gateway, http)
}

/// Station (call `echo` only; see `echo`, `secret` and `web`) as `authorization`: `echo`
/// answers, `secret` is refused by the hub with 49, and the demo's `clock` is not listed.
fn assert_station(http: &str, authorization: &str) {
    let echoed = call(http, "echo", Some(authorization)).json();
    assert_eq!(echoed["result"], "hi", "{echoed}");
    let refused = call(http, "secret", Some(authorization)).json();
    assert_eq!(refused["error"]["data"]["error"], 49, "{refused}");
    assert_eq!(service_names(http, authorization), ["echo", "secret"]);
}

/// Admin sees everything, once the gateway's link for it has the hub's registry.
fn wait_admin_sees(http: &str, name: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let names = service_names(http, &bearer(ADMIN_TOKEN));
        if names.iter().any(|n| n == name) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "admin never saw {name}: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_standalone_gateway_logs_each_request_in_to_the_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, token) = write_users(dir.path(), false);
    let (_hub, address, _hub_http, _services) = logins_hub(&users, &token);
    let (mut gateway, http) = logins_gateway(&address);

    // No credentials and no [anonymous]: the hub refuses the link, the gateway says 401.
    let reply = call(&http, "echo", None);
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|c| c.contains("Basic")),
        "{:?}",
        reply.headers
    );
    assert_eq!(get(&http, "/api/services", None).status, 401);

    // Station by token and by password: its own rights, checked by the hub.
    assert_station(&http, &bearer(STATION_TOKEN));
    assert_station(&http, &basic("station", STATION_PASSWORD));

    // A wrong password is refused, and does not spoil the right one's link.
    let wrong = get(
        &http,
        "/api/services",
        Some(&basic("station", "not-the-password")),
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.header("www-authenticate").is_some());
    let wrong_token = call(&http, "echo", Some(&bearer("not-a-token")));
    assert_eq!(wrong_token.status, 401, "{}", wrong_token.body);
    assert_station(&http, &basic("station", STATION_PASSWORD));

    // The dashboard's session: the cookie of POST /api/login stands for station's link.
    let login = request(
        &http,
        "POST",
        "/api/login",
        &[("Authorization", &basic("station", STATION_PASSWORD))],
        b"",
    );
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.json()["user"], "station", "{}", login.body);
    let cookie = login
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let listed = request(&http, "GET", "/api/services", &[("Cookie", &cookie)], b"");
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(!listed.body.contains("clock"), "{}", listed.body);
    let refused = request(
        &http,
        "POST",
        "/api/login",
        &[("Authorization", &basic("station", "not-the-password"))],
        b"",
    );
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(refused.header("set-cookie").is_none());
    request(&http, "POST", "/api/logout", &[("Cookie", &cookie)], b"");
    let ended = request(&http, "GET", "/api/services", &[("Cookie", &cookie)], b"");
    assert_eq!(ended.status, 401, "{}", ended.body);

    // Two users at once, each with its own rights.
    wait_admin_sees(&http, "clock");
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let http = http.clone();
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    let answered = call(&http, "secret", Some(&bearer(ADMIN_TOKEN))).json();
                    assert_eq!(answered["result"], serde_json::json!(["hi"]), "{answered}");
                    assert!(service_names(&http, &bearer(ADMIN_TOKEN)).contains(&"clock".into()));
                } else {
                    assert_station(&http, &bearer(STATION_TOKEN));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a user's requests");
    }
    gateway.assert_clean_stderr();
}

#[test]
fn the_standalone_gateway_with_logins_refuses_plain_http_off_loopback() {
    let output = run(&[
        "gateway",
        "--logins",
        "--connect",
        "127.0.0.1:1",
        "--http",
        "0.0.0.0:0",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("passwords in clear"),
        "{}",
        stderr(&output)
    );
    assert_no_panic(&output);
}

#[test]
fn wrong_passwords_through_the_gateway_are_throttled_by_the_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, token) = write_users(dir.path(), false);
    let (_hub, address, _hub_http, _services) = logins_hub(&users, &token);
    let (mut gateway, http) = logins_gateway(&address);
    // Each wrong password reaches the hub (no link is kept for it), which counts it; past
    // its limit the hub refuses the user name unchecked, and the gateway says 429.
    let wrong = basic("station", "not-the-password");
    let deadline = Instant::now() + DEADLINE;
    let throttled = loop {
        let reply = get(&http, "/api/services", Some(&wrong));
        if reply.status == 429 {
            break reply;
        }
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert!(Instant::now() < deadline, "never throttled");
    };
    assert!(
        throttled.body.contains("too many failed logins"),
        "{}",
        throttled.body
    );
    // The token is another login: still good.
    assert_station(&http, &bearer(STATION_TOKEN));
    gateway.assert_clean_stderr();
}

#[test]
fn the_standalone_gateway_logs_in_to_a_tls_hub_with_its_own_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, token) = write_users(dir.path(), false);
    let ((ca, cert, key), _client) = certificates_and_client(dir.path(), "client.example");
    let [ca, cert, key] = [ca, cert, key].map(|p| p.to_str().expect("UTF-8").to_owned());
    let (_hub, address) = hub_with(&["--tls-cert", &cert, "--tls-key", &key, "--users", &users]);
    let as_admin = [
        "--connect",
        &address,
        "--tls-ca",
        &ca,
        "--token-file",
        &token,
    ];
    let mut demo = Proc::spawn(&[&["demo"][..], &as_admin].concat());
    demo.wait_stderr("demo ready");
    let mut secret =
        Proc::spawn(&[&["serve"][..], &as_admin, &["secret", "run", "--", "cat"]].concat());
    secret.wait_stderr("serving secret run");
    let mut gateway = Proc::spawn(&[
        "gateway",
        "--logins",
        "--connect",
        &address,
        "--tls-ca",
        &ca,
        "--http",
        "127.0.0.1:0",
    ]);
    let http = gateway.wait_http("http");
    wait_admin_sees(&http, "secret");
    wait_admin_sees(&http, "echo");
    // A password crosses to the hub only because the link is TLS (the library refuses it
    // in clear off loopback; here it is the gateway's --tls-ca that the link uses).
    assert_station(&http, &basic("station", STATION_PASSWORD));
    assert_station(&http, &bearer(STATION_TOKEN));
    assert_eq!(call(&http, "echo", None).status, 401);
    gateway.assert_clean_stderr();
}
