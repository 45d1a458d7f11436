//! Per-request logins on the HTTP gateway of a hub with a users file (`netsvc exchange
//! --users F --http ADDR`): each request logs in by Basic, Bearer or a session cookie and is
//! served with its user's permissions, exactly as on the native port (docs/SECURITY.md,
//! *Every door, every check*). Real hubs, real services, HTTP over loopback.

use std::io::BufReader;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

use crate::gateway::{Reply, SseReader, connect, read_reply, request, send};
use crate::security::passwd;
use crate::util::*;

pub(crate) const ADMIN_TOKEN: &str = "admin-token-5150";
pub(crate) const STATION_TOKEN: &str = "station-token-7781";
pub(crate) const STATION_PASSWORD: &str = "station-pw-7781";

pub(crate) fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `admin` may do everything; `station` may call only `echo`, see `echo`, `secret` (so
/// that a call of it reaches the hub, which refuses it) and the publisher `web`, not the
/// demo's `clock`, and receive only `public.*`. With `anonymous`, peers without a login may
/// call `echo` and see `echo` and `secret`.
pub(crate) fn write_users(dir: &Path, anonymous: bool) -> (String, String) {
    let users = dir.join("users.toml");
    let mut text = format!(
        r#"
[users.admin]
token = "{ADMIN_TOKEN}"

[users.station]
token = "{STATION_TOKEN}"
password_hash = "{}"
[users.station.permissions]
call = {{ allow = ["echo"] }}
see = {{ allow = ["echo", "secret", "web"] }}
subscribe = {{ allow = ["public.*"] }}
"#,
        passwd(STATION_PASSWORD)
    );
    if anonymous {
        text.push_str(
            r#"
[anonymous]
call = { allow = ["echo"] }
see = { allow = ["echo", "secret"] }
"#,
        );
    }
    std::fs::write(&users, text).expect("write the users file");
    let token = dir.join("admin.token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).expect("write the token");
    (
        users.to_str().expect("a UTF-8 path").to_owned(),
        token.to_str().expect("a UTF-8 path").to_owned(),
    )
}

/// A hub with `users`, HTTP on loopback and a publisher service `web`; the demo (`echo`)
/// and a service `secret`, both as admin. Returns (hub, exchange address, HTTP address, the
/// services' processes).
pub(crate) fn logins_hub(users: &str, token: &str) -> (Proc, String, String, Vec<Proc>) {
    let mut hub = Proc::spawn(&[
        "exchange",
        "--listen",
        "127.0.0.1:0",
        "--users",
        users,
        "--http",
        "127.0.0.1:0",
        "--publisher",
        "web",
    ]);
    let line = hub.wait_stderr("listening on ");
    let address = line.split_whitespace().nth(2).expect("address").to_owned();
    let http = hub.wait_http("http");
    let mut demo = Proc::spawn(&["demo", "--connect", &address, "--token-file", token]);
    demo.wait_stderr("demo ready");
    let mut secret = Proc::spawn(&[
        "serve",
        "--connect",
        &address,
        "--token-file",
        token,
        "secret",
        "run",
        "--",
        "cat",
    ]);
    secret.wait_stderr("serving secret run");
    // Admin sees everything: wait until the hub has both.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let names = service_names(&http, &bearer(ADMIN_TOKEN));
        if names.iter().any(|n| n == "echo") && names.iter().any(|n| n == "secret") {
            break;
        }
        assert!(Instant::now() < deadline, "services never came: {names:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (hub, address, http, vec![demo, secret])
}

pub(crate) fn service_names(http: &str, authorization: &str) -> Vec<String> {
    let reply = get(http, "/api/services", Some(authorization));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut names: Vec<String> = reply
        .json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

pub(crate) fn get(http: &str, path: &str, authorization: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    request(http, "GET", path, &headers, b"")
}

/// Calls `service.echo("hi")` (JSON-RPC 2.0) as `authorization`.
pub(crate) fn call(http: &str, service: &str, authorization: Option<&str>) -> Reply {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    let method = if service == "secret" { "run" } else { "echo" };
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": format!("{service}.{method}"), "params": ["hi"]});
    request(
        http,
        "POST",
        "/jsonrpc",
        &headers,
        body.to_string().as_bytes(),
    )
}

fn publish(http: &str, subject: &str, lifetime: &str) {
    let reply = request(
        http,
        "POST",
        &format!("/api/reports/web/{subject}?lifetime={lifetime}"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer(ADMIN_TOKEN)),
        ],
        b"1",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn http_requests_log_in_and_get_their_users_permissions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, token) = write_users(dir.path(), false);
    let (mut hub, _address, http, _services) = logins_hub(&users, &token);

    // No login, no [anonymous]: 401 with both challenges, for calls and the event stream.
    let reply = call(&http, "secret", None);
    assert_eq!(reply.status, 401, "{}", reply.body);
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("Basic realm=\"netsvc\"") && challenge.contains("Bearer"),
        "{challenge}"
    );
    assert_eq!(get(&http, "/api/events", None).status, 401);
    // The page's files need no login: the page logs in for the rest.
    assert_eq!(get(&http, "/", None).status, 200);

    // Station, by token and by password: echo works, secret is refused by the hub (49, in
    // a JSON-RPC error as every netsvc failure through the gateway).
    for authorization in [bearer(STATION_TOKEN), basic("station", STATION_PASSWORD)] {
        let echoed = call(&http, "echo", Some(&authorization)).json();
        assert_eq!(echoed["result"], "hi", "{echoed}");
        let refused = call(&http, "secret", Some(&authorization)).json();
        assert_eq!(refused["error"]["data"]["error"], 49, "{refused}");
    }
    // Admin may call secret.
    let answered = call(&http, "secret", Some(&bearer(ADMIN_TOKEN))).json();
    assert_eq!(answered["result"], json!(["hi"]), "{answered}");

    // The registry as station sees it: not the demo's clock, which admin sees.
    assert!(
        service_names(&http, &bearer(ADMIN_TOKEN))
            .iter()
            .any(|n| n == "clock")
    );
    let names = service_names(&http, &bearer(STATION_TOKEN));
    assert_eq!(names, ["echo", "secret"]);
    let mut events = connect(&http);
    send(
        &mut events,
        "GET",
        "/api/events",
        &[("Authorization", &bearer(STATION_TOKEN))],
        b"",
    );
    let mut events = SseReader::new(events);
    assert_eq!(events.status, 200);
    loop {
        let (kind, data) = events.next();
        if kind == "synced" {
            break;
        }
        assert_ne!(data["name"], "clock", "station is told of clock: {data}");
    }

    // Its links: only its own door's, never the other users' links to the hub.
    let links = get(&http, "/api/links", Some(&bearer(STATION_TOKEN))).json();
    let text = links.to_string();
    assert!(!text.contains("admin"), "{text}");
    assert_eq!(links.as_array().map(Vec::len), Some(1), "{text}");
    let metrics = get(&http, "/metrics", Some(&bearer(STATION_TOKEN)));
    assert_eq!(metrics.status, 200);
    assert!(!metrics.body.contains("clock"), "{}", metrics.body);

    // Reports: admin publishes on both sides of station's rights; station's stream gets
    // only public.*, cached and live.
    publish(&http, "private.cached", "-1");
    publish(&http, "public.cached", "-1");
    let mut stream = connect(&http);
    send(
        &mut stream,
        "GET",
        "/api/reports?service=web&pattern=%2A",
        &[("Authorization", &bearer(STATION_TOKEN))],
        b"",
    );
    let mut reports = SseReader::new(stream);
    assert_eq!(reports.status, 200);
    let mut subjects = Vec::new();
    while subjects.len() < 2 {
        let (kind, data) = reports.next();
        if kind == "report" {
            subjects.push(data["subject"].as_str().unwrap_or_default().to_owned());
            if subjects.len() == 1 {
                publish(&http, "private.live", "0");
                publish(&http, "public.live", "0");
            }
        }
    }
    assert_eq!(subjects, ["public.cached", "public.live"]);

    // A wrong password is refused (401), counted, and after ten the user name is throttled
    // at this address (429), while its token still logs in.
    let wrong = basic("station", "not-the-password");
    let threads: Vec<_> = (0..12)
        .map(|_| {
            let http = http.clone();
            let wrong = wrong.clone();
            std::thread::spawn(move || get(&http, "/api/services", Some(&wrong)).status)
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 401).count() <= 10,
        "{statuses:?}"
    );
    let throttled = get(
        &http,
        "/api/services",
        Some(&basic("station", STATION_PASSWORD)),
    );
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    assert!(
        throttled.body.contains("too many failed logins for user"),
        "{}",
        throttled.body
    );
    assert_eq!(
        get(&http, "/api/services", Some(&bearer(STATION_TOKEN))).status,
        200
    );
    hub.wait_stderr("HTTP login refused");
    hub.assert_clean_stderr();
}

#[test]
fn requests_without_a_login_get_the_anonymous_rights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, token) = write_users(dir.path(), true);
    let (_hub, _address, http, _services) = logins_hub(&users, &token);
    let echoed = call(&http, "echo", None).json();
    assert_eq!(echoed["result"], "hi", "{echoed}");
    let refused = call(&http, "secret", None).json();
    assert_eq!(refused["error"]["data"]["error"], 49, "{refused}");
    let reply = get(&http, "/api/services", None);
    assert_eq!(reply.status, 200);
    let names: Vec<Json> = reply.json().as_array().cloned().unwrap_or_default();
    assert!(
        names
            .iter()
            .all(|s| s["name"] == "echo" || s["name"] == "secret"),
        "{names:?}"
    );
    // Credentials that fail are still refused: anonymous is for no login at all.
    assert_eq!(
        get(&http, "/api/services", Some(&bearer("nope"))).status,
        401
    );
}

#[test]
fn the_dashboard_logs_in_with_a_session_cookie_and_a_reload_ends_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, _token) = write_users(dir.path(), false);
    let mut hub = Proc::spawn(&[
        "exchange",
        "--listen",
        "127.0.0.1:0",
        "--users",
        &users,
        "--http",
        "127.0.0.1:0",
    ]);
    let http = hub.wait_http("http");
    let login = request(
        &http,
        "POST",
        "/api/login",
        &[("Authorization", &basic("station", STATION_PASSWORD))],
        b"",
    );
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.json()["user"], "station");
    let cookie = login.header("set-cookie").unwrap_or_default().to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && !cookie.contains("Secure"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap_or_default().to_owned();
    let with_cookie = |path: &str| request(&http, "GET", path, &[("Cookie", &session)], b"");
    assert_eq!(with_cookie("/api/services").status, 200);
    // The event stream, which a browser cannot send an Authorization with.
    let mut events = connect(&http);
    send(
        &mut events,
        "GET",
        "/api/events",
        &[("Cookie", &session)],
        b"",
    );
    let events = SseReader::new(events);
    assert_eq!(events.status, 200);
    // A wrong login starts no session.
    let wrong = request(
        &http,
        "POST",
        "/api/login",
        &[("Authorization", &basic("station", "nope"))],
        b"",
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    // Station's door is open (its session used it); a reload that removes station ends
    // every session, and station no longer logs in, by token either.
    assert_eq!(
        get(&http, "/api/services", Some(&bearer(STATION_TOKEN))).status,
        200
    );
    let text = std::fs::read_to_string(&users).expect("read");
    let without_station = text
        .split("[users.station]")
        .next()
        .expect("the users before station")
        .to_owned();
    std::fs::write(&users, without_station).expect("write");
    hub.signal("HUP");
    hub.wait_stderr("users reloaded");
    assert_eq!(with_cookie("/api/services").status, 401);
    assert_eq!(
        get(&http, "/api/services", Some(&bearer(STATION_TOKEN))).status,
        401
    );
    // A logout ends a session too.
    let login = request(
        &http,
        "POST",
        "/api/login",
        &[("Authorization", &bearer(ADMIN_TOKEN))],
        b"",
    );
    let session = login
        .header("set-cookie")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        request(&http, "GET", "/api/stats", &[("Cookie", &session)], b"").status,
        200
    );
    let mut stream = connect(&http);
    send(
        &mut stream,
        "POST",
        "/api/logout",
        &[("Cookie", &session)],
        b"",
    );
    assert_eq!(read_reply(&mut BufReader::new(stream)).status, 200);
    assert_eq!(
        request(&http, "GET", "/api/stats", &[("Cookie", &session)], b"").status,
        401
    );
}

#[test]
fn a_hub_with_logins_refuses_plain_http_to_the_network() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, _) = write_users(dir.path(), false);
    let output = run(&[
        "exchange",
        "--listen",
        "127.0.0.1:0",
        "--users",
        &users,
        "--http",
        "0.0.0.0:0",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("passwords in clear") && text.contains("allow_plaintext_passwords"),
        "{text}"
    );
    // Unless the users file allows it, and then it says so.
    let mut allowed = std::fs::read_to_string(&users).expect("read");
    allowed.insert_str(0, "allow_plaintext_passwords = true\n");
    std::fs::write(&users, allowed).expect("write");
    let mut hub = Proc::spawn(&[
        "exchange",
        "--listen",
        "127.0.0.1:0",
        "--users",
        &users,
        "--http",
        "0.0.0.0:0",
    ]);
    hub.wait_stderr("takes passwords in clear from the network");
    hub.wait_http("http");
}

#[test]
fn a_client_certificate_logs_an_https_request_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ((ca, cert, key), (client_cert, client_key)) =
        crate::security::certificates_and_client(dir.path(), "station.example");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        r#"
[users.station]
certificate = "station.example"
[users.station.permissions]
call = { allow = ["echo"] }
"#,
    )
    .expect("write the users file");
    let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_owned();
    let mut hub = Proc::spawn(&[
        "exchange",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &path(&cert),
        "--tls-key",
        &path(&key),
        "--tls-client-ca",
        &path(&ca),
        "--users",
        &path(&users),
        "--http",
        "127.0.0.1:0",
    ]);
    let http = hub.wait_http("https");
    let ask = "GET /api/services HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let without = crate::security::https_as(&http, Some(&ca), None, ask).expect("HTTPS");
    assert!(without.starts_with("HTTP/1.1 401"), "{without}");
    let with = crate::security::https_as(&http, Some(&ca), Some((&client_cert, &client_key)), ask)
        .expect("HTTPS");
    assert!(with.starts_with("HTTP/1.1 200"), "{with}");
}
