//! Logins under pressure (docs/SECURITY.md, *Logins*): a burst of parallel wrong passwords
//! runs no more argon2 checks than the lock-out allows, one user's typos do not lock out the
//! other users behind the same address, and a throttled peer hears why and for how long,
//! promptly. Every login is a real HELLO over a loopback socket (TLS for the burst).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use netsvc::security::{Permissions, User, Users, hash_password};
use netsvc_proto::wire::{self, CloseCode, Decoder, Frame, Text, frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::security::{Pki, secure_hub, user};
use super::util::{all_logs, capture_logs, hello, log_line, within};

/// How the hub answered a login.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Its HELLO: logged in.
    Welcomed,
    /// CLOSE with this code and reason.
    Closed(CloseCode, String),
    /// The connection ended without a CLOSE.
    Ended,
}

/// `users` with a password each.
fn users(passwords: &[(&str, &str)]) -> Users {
    let mut users = Users::default();
    for (name, password) in passwords {
        users.users.insert(
            (*name).to_owned(),
            User {
                password_hash: Some(hash_password(password).unwrap()),
                ..user(Permissions::default())
            },
        );
    }
    users
}

/// Sends a client HELLO logging in as `name` with `password` over `stream`, and reads the
/// hub's answer.
async fn log_in<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    name: &str,
    password: &str,
) -> Answer {
    let mut hello = hello("g", &format!("{name}-client"));
    hello.options = vec![
        (Text::from("user"), Text::from(name)),
        (Text::from("password"), Text::from(password)),
    ];
    let mut out = BytesMut::new();
    wire::encode(&Frame::Hello(hello), &mut out);
    if stream.write_all(&out).await.is_err() {
        return Answer::Ended;
    }
    let mut buf = BytesMut::new();
    let decoder = Decoder::default();
    loop {
        match decoder.decode(&mut buf).unwrap() {
            Some((Frame::Hello(_), _)) => return Answer::Welcomed,
            Some((Frame::Close(frame::Close { code, reason }), _)) => {
                return Answer::Closed(code, reason.to_string());
            }
            Some((other, _)) => panic!("unexpected before the hub's answer: {other:?}"),
            None => {}
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Answer::Ended,
            Ok(_) => {}
        }
    }
}

/// A login over plaintext TCP (accepted from loopback): the answer, and this end's address
/// as the hub's logs name it.
async fn plain_login(address: SocketAddr, name: &str, password: &str) -> (Answer, String) {
    let stream = TcpStream::connect(address).await.unwrap();
    let local = stream.local_addr().unwrap().to_string();
    (log_in(stream, name, password).await, local)
}

/// A TLS client configuration trusting `pki`'s CA, with netsvc's provider.
fn tls_connector(pki: &Pki) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_login(
    address: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    name: &str,
    password: &str,
) -> Answer {
    let stream = TcpStream::connect(address).await.unwrap();
    let server = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    match tls.connect(server, stream).await {
        Ok(stream) => log_in(stream, name, password).await,
        Err(_) => Answer::Ended,
    }
}

/// The most failed logins one user may have from one address before it is throttled
/// (docs/SECURITY.md).
const PER_USER_AND_ADDRESS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_parallel_wrong_passwords_runs_no_more_checks_than_the_limit() {
    capture_logs();
    let (pki, _) = Pki::new();
    let users = users(&[("alice", "alice-pw-5521"), ("bob", "bob-pw-8834")]);
    let (_hub_rt, hub, address) = secure_hub(users, Some(&pki.server())).await;
    let tls = tls_connector(&pki);

    let burst: Vec<_> = (0..200)
        .map(|i| {
            let tls = tls.clone();
            tokio::spawn(
                async move { tls_login(address, tls, "alice", &format!("wrong-{i}")).await },
            )
        })
        .collect();
    let mut checked = 0;
    for attempt in burst {
        match within("a refusal", attempt).await.unwrap() {
            Answer::Closed(CloseCode::NotAuthorised, why)
                if why.starts_with("invalid user name or password") =>
            {
                checked += 1;
            }
            Answer::Closed(CloseCode::NotAuthorised, why) => {
                assert!(why.contains("too many"), "{why}");
            }
            other => panic!("not refused with CLOSE 5: {other:?}"),
        }
    }
    // Only a check tells a wrong password; and the hub counts the checks it ran.
    assert!(
        checked <= PER_USER_AND_ADDRESS,
        "{checked} attempts were checked"
    );
    let stats = hub.login_stats();
    assert!(
        stats.password_checks <= PER_USER_AND_ADDRESS as u64,
        "{stats:?}"
    );

    // Another user from the same address still logs in, over TLS as well.
    let answer = within("bob's login", tls_login(address, tls, "bob", "bob-pw-8834")).await;
    assert_eq!(answer, Answer::Welcomed);
}

#[tokio::test]
async fn one_users_typos_do_not_lock_out_the_others_behind_the_same_address() {
    capture_logs();
    let users = users(&[("carol", "carol-pw-1177"), ("dave", "dave-pw-6402")]);
    let (_hub_rt, _hub, address) = secure_hub(users, None).await;

    // Carol mistypes her password, more often than she may.
    let typos: Vec<_> = (0..PER_USER_AND_ADDRESS + 2)
        .map(|i| {
            tokio::spawn(async move { plain_login(address, "carol", &format!("typo-{i}")).await })
        })
        .collect();
    for typo in typos {
        let (answer, _) = within("a refusal", typo).await.unwrap();
        assert!(
            matches!(&answer, Answer::Closed(CloseCode::NotAuthorised, _)),
            "{answer:?}"
        );
    }

    // Dave, behind the same address, logs in.
    let (answer, _) = within("dave's login", plain_login(address, "dave", "dave-pw-6402")).await;
    assert_eq!(answer, Answer::Welcomed);

    // Carol, now with the right password, is told at once that she is throttled, and for
    // how long.
    let started = Instant::now();
    let (answer, carol) = within(
        "carol's login",
        plain_login(address, "carol", "carol-pw-1177"),
    )
    .await;
    let elapsed = started.elapsed();
    let Answer::Closed(CloseCode::NotAuthorised, why) = answer else {
        panic!("not refused with CLOSE 5: {answer:?}");
    };
    assert!(
        why.starts_with(
            "too many failed logins for user \"carol\" from this address; try again in "
        ),
        "{why}"
    );
    let seconds: u64 = why
        .rsplit("try again in ")
        .next()
        .and_then(|rest| rest.strip_suffix(" s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no delay in {why:?}"));
    assert!((1..=60).contains(&seconds), "{why}");
    assert!(
        elapsed < Duration::from_millis(500),
        "answered after {elapsed:?}"
    );

    // The hub logged the refusal (at the CLI's default level), naming user and address,
    // and never a password.
    let line = log_line(&["WARN", "login refused", "carol", &carol]).await;
    assert!(line.contains("too many failed logins"), "{line}");
    let log = all_logs();
    assert!(!log.contains("carol-pw-1177"), "a password in the log");
    assert!(!log.contains("typo-"), "a password in the log");
}

/// This process's resident memory in MiB (Linux), for the measurement below.
fn resident_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Not a check but a measurement, run by hand (alone, so that no other test's memory
/// counts): the resident memory of a process holding a TLS hub, before a burst of 200
/// parallel wrong passwords, once it has been answered, and after the hub has been idle.
/// `cargo test -p netsvc --test reliability -- --ignored --exact --nocapture
/// logins::resident_memory_around_a_burst_of_wrong_passwords`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints resident memory around a burst of logins"]
async fn resident_memory_around_a_burst_of_wrong_passwords() {
    let (pki, _) = Pki::new();
    let users = users(&[("erin", "erin-pw-3390")]);
    let (_hub_rt, _hub, address) = secure_hub(users, Some(&pki.server())).await;
    let tls = tls_connector(&pki);
    // One login first, so that what every hub has after its first login is in the baseline.
    let answer = tls_login(address, tls.clone(), "erin", "erin-pw-3390").await;
    assert_eq!(answer, Answer::Welcomed);
    let before = resident_mib();
    for round in 0..3 {
        let burst: Vec<_> = (0..200)
            .map(|i| {
                let tls = tls.clone();
                tokio::spawn(
                    async move { tls_login(address, tls, "erin", &format!("w-{i}")).await },
                )
            })
            .collect();
        for attempt in burst {
            let _ = attempt.await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!("after burst {round}: {:?} MiB", resident_mib());
    }
    let after = resident_mib();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let idle = resident_mib();
    println!(
        "resident MiB: before {before:?}, after three bursts {after:?}, after 15 s idle {idle:?}"
    );
    // Idle, the checks' memory is given back (a hub kept 600 MiB more for good before).
    if let (Some(before), Some(idle)) = (before, idle) {
        assert!(idle <= before + 16, "{idle} MiB idle, {before} MiB before");
    }
}
