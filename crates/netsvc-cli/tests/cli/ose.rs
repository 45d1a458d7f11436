//! The OSE dialect end to end: a hub process with an OSE port, native processes on its
//! native port, and an OSE process played from the frames a real one (the original OSE
//! probe) sent to a netsvc hub (vectors/ose-netsvc/hub-server in netsvc-ose).

#[path = "../../../netsvc-ose/tests/support/mod.rs"]
mod support;

use netsvc_ose::Envelope;
use netsvc_ose::message::subjects;
use support::{Peer, nth_of, vector};

use crate::util::*;

/// A hub with an OSE port: the hub, its native address, its OSE address.
fn ose_hub(extra: &[&str]) -> (Proc, String, String) {
    let mut args = vec!["--ose-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let (mut hub, address) = hub_with(&args);
    let line = hub.wait_stderr("listening for OSE peers on ");
    let ose = line
        .split("listening for OSE peers on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an address")
        .to_owned();
    (hub, address, ose)
}

/// The receiver a live SERVICE-AVAILABLE gives `name`, read from frames until it comes.
async fn receiver_of(peer: &mut Peer, name: &str) -> String {
    loop {
        let frame = peer.next().await;
        if frame.subject != subjects::SERVICE_AVAILABLE {
            continue;
        }
        let content = String::from_utf8_lossy(&frame.content).into_owned();
        let mut fields = content.split('\0');
        if fields.next() == Some(name) {
            return fields.next().expect("a receiver").to_owned();
        }
    }
}

/// The recorded probe's `subject` frame, addressed as an answer to `incoming` (a frame from
/// the hub, whose endpoint id is `hub_endpoint`).
fn answer_to(
    frames: &[Envelope],
    subject: &str,
    incoming: &Envelope,
    hub_endpoint: &str,
) -> Envelope {
    let mut frame = nth_of(frames, subject, 0);
    frame.to = support::strip(&incoming.from, hub_endpoint);
    frame.conversation = incoming.conversation.clone();
    frame
}

/// Runs the `netsvc` command on a thread of its own, while the test plays the OSE side.
fn run_aside(args: Vec<String>) -> tokio::task::JoinHandle<std::process::Output> {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    })
}

/// Waits until no service `name` is listed by the hub at `address`.
fn wait_gone(address: &str, name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while services(address).iter().any(|s| s["name"] == name) {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} outlived its process"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A command line, `HUB` standing for the hub's address.
fn words(line: &str, address: &str) -> Vec<String> {
    line.split(' ')
        .map(|w| if w == "HUB" { address } else { w }.to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ose_process_and_native_processes_use_each_others_services_through_a_hub() {
    let (_hub, address, ose) = ose_hub(&[]);
    let _demo = demo(&address);
    let v = vector("ose-netsvc/hub-server");
    let mut peer = Peer::connect(ose.parse().unwrap()).await;

    // The handshake, and the hub's replay: the demo's services among them.
    peer.send(&v.client[0]).await;
    let announce = peer.next().await;
    assert_eq!(announce.subject, subjects::ENDPOINT_ANNOUNCE);
    peer.send(&v.client[1]).await;
    let answer = peer.next().await;
    assert_eq!(answer.subject, subjects::ANNOUNCE_SERVER);
    assert_eq!(answer.conversation, v.client[1].conversation);
    let echo = receiver_of(&mut peer, "echo").await;
    let hub_endpoint = announce.from;

    // The OSE process's own service, then its call of the native echo.
    peer.send(&v.client[2]).await;
    let mut request = nth_of(&v.client, subjects::REQUEST, 0);
    request.to = format!("$RELAY!{echo}!echo");
    peer.send(&request).await;
    let response = peer.next_of(subjects::RESPONSE).await;
    assert_eq!(response.conversation, request.conversation);
    assert_eq!(response.sequence, 1);
    assert_eq!(
        &response.content[..],
        b"<scalar type=\"xsd:string\">hi</scalar>\n"
    );

    // Its service is listed on the native side, and a native call reaches it.
    wait_for_services(&address, &["ose-echo"]);
    let call = run_aside(words(
        "call --connect HUB ose-echo echo \"hello\"",
        &address,
    ));
    let incoming = peer.next_of(subjects::REQUEST).await;
    assert_eq!(incoming.header, "MethodName: echo\n");
    assert_eq!(
        &incoming.content[..],
        b"<array>\n<scalar type=\"xsd:string\">hello</scalar>\n</array>\n"
    );
    assert!(
        incoming
            .from
            .starts_with(&format!("{hub_endpoint}!$RELAY!"))
    );
    // The probe's recorded answer, sent to this request.
    peer.send(&answer_to(
        &v.client,
        subjects::RESPONSE,
        &incoming,
        &hub_endpoint,
    ))
    .await;
    let output = call.await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "\"hello\"");

    // The original's failure reaches the native caller with its four fields.
    let call = run_aside(words("call --connect HUB ose-echo nosuch", &address));
    let incoming = peer.next_of(subjects::REQUEST).await;
    assert_eq!(incoming.header, "MethodName: nosuch\n");
    peer.send(&answer_to(
        &v.client,
        subjects::FAILURE,
        &incoming,
        &hub_endpoint,
    ))
    .await;
    let output = call.await.unwrap();
    assert!(!output.status.success());
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(text.contains("55") && text.contains("oseprobe"), "{text}");

    // A native monitor subscribes through the hub; the OSE side's reports reach it.
    let monitor = run_aside(words(
        "monitor --connect HUB --count 1 ose-echo ose.*",
        &address,
    ));
    let subscription = peer.next_of(subjects::SUBSCRIPTION_REQUESTED).await;
    assert_eq!(subscription.header, "SubjectPattern: ose.*\n");
    // A report starts a conversation of its own: the recorded one's is kept.
    let mut report = nth_of(&v.client, subjects::REPORT, 0);
    report.to = support::strip(&subscription.from, &hub_endpoint);
    report.header = "SubjectName: ose.tick\nSubjectPattern: ose.*\n".into();
    peer.send(&report).await;
    let output = monitor.await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let reports = json_lines(&stdout(&output));
    assert_eq!(reports[0]["subject"], "ose.tick");
    assert_eq!(reports[0]["value"]["name"], "ose-echo");

    // The OSE process goes: its service goes with it.
    drop(peer);
    wait_gone(&address, "ose-echo");
}

#[test]
fn an_ose_process_on_the_native_port_is_told_where_to_go() {
    let (mut hub, address, _ose) = ose_hub(&[]);
    let v = vector_bytes("ose-netsvc/hub-server");
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    std::io::Write::write_all(&mut stream, &v).unwrap();
    drain(&mut stream);
    hub.wait_stderr("a hub serves OSE processes on a port of their own");
}

#[test]
fn the_ose_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("netsvc.toml");
    std::fs::write(&config, "[ose]\nkeep_alive = 30\ndead_after = 10\n").unwrap();
    let output = run(&["exchange", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("dead_after"),
        "{}",
        stderr(&output)
    );
}

/// The raw bytes a recorded OSE client sent.
fn vector_bytes(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../netsvc-ose/vectors")
        .join(name)
        .join("c2s.bin");
    std::fs::read(path).expect("a captured stream")
}

/// Plays the recorded OSE server's side of the handshake to a connecting hub, with the
/// recorded service `ose-echo`.
async fn serve_handshake(peer: &mut Peer, server: &[Envelope]) {
    let announce = peer.next().await;
    assert_eq!(announce.subject, subjects::ENDPOINT_ANNOUNCE);
    assert_eq!(announce.to, "");
    peer.send(&server[0]).await;
    let hello = peer.next().await;
    assert_eq!(hello.subject, subjects::ANNOUNCE_CLIENT);
    assert_eq!((hello.to.as_str(), hello.sequence), ("$E", 0));
    for recorded in &server[1..3] {
        let mut frame = recorded.clone();
        frame.conversation = hello.conversation.clone();
        peer.send(&frame).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_joins_an_ose_server_and_rejoins_after_a_loss() {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ose = server.local_addr().unwrap().to_string();
    let (_hub, address) = hub_with(&["--ose-connect", &ose, "--retry", "0.2"]);
    let v = vector("ose-netsvc/hub-client");
    let (stream, _) = server.accept().await.unwrap();
    let mut peer = Peer::new(stream);
    serve_handshake(&mut peer, &v.server).await;
    wait_for_services(&address, &["ose-echo"]);

    // A native call of the OSE server's service, answered with the recorded response.
    let call = run_aside(words(
        "call --connect HUB ose-echo echo \"hello\"",
        &address,
    ));
    let request = peer.next_of(subjects::REQUEST).await;
    let hub_endpoint = request.from.split('!').next().unwrap().to_owned();
    peer.send(&answer_to(
        &v.server,
        subjects::RESPONSE,
        &request,
        &hub_endpoint,
    ))
    .await;
    let output = call.await.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "\"hello\"");

    // The OSE server goes; its service goes; the hub comes back by itself and so does it.
    drop(peer);
    wait_gone(&address, "ose-echo");
    let (stream, _) = tokio::time::timeout(support::DEADLINE, server.accept())
        .await
        .expect("the hub reconnects")
        .unwrap();
    let mut peer = Peer::new(stream);
    serve_handshake(&mut peer, &v.server).await;
    wait_for_services(&address, &["ose-echo"]);
}

/// A users file for a hub with an OSE port: `admin` (a token) may do anything but relay;
/// the OSE peers act as `ose-peers`, which may see `echo`, call `clock` and provide
/// `ose.*`. Returns (users file, admin's token file).
fn ose_users(dir: &std::path::Path) -> (String, String) {
    let users = dir.join("users.toml");
    std::fs::write(
        &users,
        r#"
[users.admin]
token = "admin-token-5150"

[users.ose-peers.permissions]
see = { allow = ["echo"] }
call = { allow = ["clock"] }
provide = { allow = ["ose.*"] }
"#,
    )
    .expect("write the users file");
    let token = dir.join("admin.token");
    std::fs::write(&token, "admin-token-5150\n").expect("write the token");
    (
        users.to_str().expect("a UTF-8 path").to_owned(),
        token.to_str().expect("a UTF-8 path").to_owned(),
    )
}

#[test]
fn a_hub_with_logins_refuses_an_ose_port_that_names_no_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, _) = ose_users(dir.path());
    // (The HTTP gateway names no user: each request logs in, see http_logins.rs.)
    let output = run(&[
        "exchange",
        "--listen",
        "127.0.0.1:0",
        "--users",
        &users,
        "--ose-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("no logins of its own") && text.contains("--ose-user"),
        "{text}"
    );
    // A user that the file does not have is refused too.
    let output = run(&[
        "exchange",
        "--listen",
        "127.0.0.1:0",
        "--users",
        &users,
        "--ose-listen",
        "127.0.0.1:0",
        "--ose-user",
        "nobody",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("nobody"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ose_port_of_a_hub_with_logins_acts_as_its_named_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (users, token) = ose_users(dir.path());
    // The hub says "the OSE peers act as user ..." before it listens for them.
    let (_hub, address, ose) = ose_hub(&["--users", &users, "--ose-user", "ose-peers"]);
    let mut demo = Proc::spawn(&["demo", "--connect", &address, "--token-file", &token]);
    demo.wait_stderr("demo ready");
    let v = vector("ose-netsvc/hub-server");
    let mut peer = Peer::connect(ose.parse().expect("an address")).await;
    peer.send(&v.client[0]).await;
    let announce = peer.next().await;
    assert_eq!(announce.subject, subjects::ENDPOINT_ANNOUNCE);
    peer.send(&v.client[1]).await;
    assert_eq!(peer.next().await.subject, subjects::ANNOUNCE_SERVER);

    // It is told of echo and of nothing else the demo and the hub offer.
    let echo = loop {
        let frame = peer.next().await;
        if frame.subject != subjects::SERVICE_AVAILABLE {
            continue;
        }
        let content = String::from_utf8_lossy(&frame.content).into_owned();
        let mut fields = content.split('\0');
        let name = fields.next().unwrap_or_default().to_owned();
        assert_eq!(name, "echo", "the OSE peer may see only echo");
        break fields.next().expect("a receiver").to_owned();
    };

    // Its own service may not take a name outside `ose.*`, and its call of echo (which it
    // may see but not call) fails.
    peer.send(&v.client[2]).await;
    let mut request = nth_of(&v.client, subjects::REQUEST, 0);
    request.to = format!("$RELAY!{echo}!echo");
    peer.send(&request).await;
    let answer = loop {
        let frame = peer.next().await;
        if frame.subject == subjects::RESPONSE || frame.subject == subjects::FAILURE {
            break frame;
        }
    };
    assert_eq!(answer.subject, subjects::FAILURE, "{answer:?}");
    assert_eq!(answer.conversation, request.conversation);
    let failure = String::from_utf8_lossy(&answer.content).into_owned();
    assert!(failure.contains("49"), "{failure}");
    let listed = run(&[
        "services",
        "--connect",
        &address,
        "--token-file",
        &token,
        "--json",
    ]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let names: Vec<String> = json_lines(&stdout(&listed))
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(names.iter().any(|n| n == "echo"), "{names:?}");
    assert!(!names.iter().any(|n| n == "ose-echo"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ose_port_accepts_peers_only_from_the_allowed_addresses() {
    // Loopback is not in 10.0.0.0/8: closed before anything is read.
    let (_hub, _address, ose) = ose_hub(&["--ose-allow", "10.0.0.0/8"]);
    let mut refused = tokio::net::TcpStream::connect(&ose).await.expect("connect");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut refused, &mut byte),
    )
    .await
    .expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // Loopback allowed: the handshake goes on.
    let (_hub, _address, ose) = ose_hub(&["--ose-allow", "10.0.0.0/8", "--ose-allow", "127.0.0.1"]);
    let v = vector("ose-netsvc/hub-server");
    let mut peer = Peer::connect(ose.parse().expect("an address")).await;
    peer.send(&v.client[0]).await;
    assert_eq!(peer.next().await.subject, subjects::ENDPOINT_ANNOUNCE);
}
