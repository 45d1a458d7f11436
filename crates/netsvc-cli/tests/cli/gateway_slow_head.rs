//! The gateway's header-read timeout (`--header-timeout`), over plain HTTP and HTTPS: a
//! client that drips its request head a byte at a time is cut once the head has taken the
//! timeout, while whole requests, and keep-alive connections idle between requests, are
//! served as before.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::util::*;

/// The gateway's header-read timeout in these tests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a dripping client is given before the test calls it still connected: well past
/// the timeout, far below the idle timeout (which a dripping client never reaches).
const GIVE_UP: Duration = Duration::from_secs(15);

/// A byte every this long: far more often than the idle timeout would allow for.
const DRIP: Duration = Duration::from_millis(250);

/// A hub serving its gateway with the test's header timeout and `extra` flags; its HTTP
/// address.
fn gateway(extra: &[&str]) -> (Proc, String) {
    let mut args = vec![
        "exchange",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--header-timeout",
        "2",
        "--idle-timeout",
        "60",
    ];
    args.extend_from_slice(extra);
    let https = args.contains(&"--http-tls-cert");
    let mut hub = Proc::spawn(&args);
    let http = hub.wait_http(if https { "https" } else { "http" });
    (hub, http)
}

fn tcp(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect to the gateway");
    stream.set_read_timeout(Some(DRIP)).expect("read timeout");
    stream
}

/// Starts a request head and drips the rest of it, a byte per [`DRIP`]: how long until the
/// gateway closed the connection, or `None` if it was still open after [`GIVE_UP`].
fn drip_until_closed(stream: &mut (impl Read + Write)) -> Option<Duration> {
    let start = Instant::now();
    let sent = stream
        .write_all(b"GET /api/links HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .and_then(|()| stream.flush());
    if sent.is_err() {
        return Some(start.elapsed());
    }
    let mut buf = [0u8; 1024];
    while start.elapsed() < GIVE_UP {
        if stream
            .write_all(b"a")
            .and_then(|()| stream.flush())
            .is_err()
        {
            return Some(start.elapsed());
        }
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            // Whatever the gateway says before it closes (nothing, today).
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // Reset, or a TLS stream ended without close_notify: closed.
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

fn assert_cut_at_the_timeout(closed: Option<Duration>) {
    let Some(after) = closed else {
        panic!("a client dripping its request head still held its connection after {GIVE_UP:?}");
    };
    assert!(
        after >= HEADER_TIMEOUT - Duration::from_millis(500) && after < HEADER_TIMEOUT * 4,
        "the dripping client was cut after {after:?}, not after about {HEADER_TIMEOUT:?}"
    );
}

/// One `GET /api/links` on `stream`, kept alive; its status.
fn get_links(stream: &mut (impl Read + Write)) -> u16 {
    stream
        .write_all(b"GET /api/links HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write the request");
    stream.flush().expect("flush");
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    status
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status:?}"))
}

#[test]
fn a_request_head_dripped_over_http_is_cut_at_the_header_timeout() {
    let (_hub, http) = gateway(&[]);
    // A keep-alive connection, answered once, then idle for longer than the header timeout.
    let mut idle = tcp(&http);
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    assert_eq!(get_links(&mut idle), 200);

    let mut dripping = tcp(&http);
    assert_cut_at_the_timeout(drip_until_closed(&mut dripping));

    // Whole requests are served, on new connections and on the idle one: the timeout runs
    // from a head's first byte, not from the last answer.
    let mut fresh = tcp(&http);
    fresh
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    assert_eq!(get_links(&mut fresh), 200);
    assert_eq!(get_links(&mut idle), 200);
}

/// A CA and a server certificate for 127.0.0.1 that it signs, written into `dir`: returns
/// (ca, cert, key) paths.
fn certificates(dir: &Path) -> [String; 3] {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("cert");
    let paths = [dir.join("ca.pem"), dir.join("hub.pem"), dir.join("hub.key")];
    std::fs::write(&paths[0], ca.pem()).expect("write");
    std::fs::write(&paths[1], cert.pem()).expect("write");
    std::fs::write(&paths[2], key.serialize_pem()).expect("write");
    paths.map(|p| p.to_str().expect("UTF-8 path").to_owned())
}

/// A TLS connection to `address` that trusts `ca`, handshaken.
fn tls(address: &str, ca: &str) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(ca).expect("CA"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut tcp = TcpStream::connect(address).expect("connect to the gateway");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    while connection.is_handshaking() {
        connection.complete_io(&mut tcp).expect("TLS handshake");
    }
    rustls::StreamOwned::new(connection, tcp)
}

#[test]
fn a_request_head_dripped_over_https_is_cut_at_the_header_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [ca, cert, key] = certificates(dir.path());
    let (_hub, http) = gateway(&["--http-tls-cert", &cert, "--http-tls-key", &key]);

    let mut dripping = tls(&http, &ca);
    dripping.sock.set_read_timeout(Some(DRIP)).expect("timeout");
    assert_cut_at_the_timeout(drip_until_closed(&mut dripping));

    let mut whole = tls(&http, &ca);
    assert_eq!(get_links(&mut whole), 200);
}
