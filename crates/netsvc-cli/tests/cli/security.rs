//! TLS and logins through the real binary: a TLS hub with a users file, clients that log in
//! by password (from the environment) and token (from a file), the errors a wrong setting
//! gets, `netsvc passwd`, and a SIGHUP reload of the users file.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::util::*;

/// A CA and a server certificate for 127.0.0.1 that it signs, written into `dir`: returns
/// (ca, cert, key) paths.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    certificates_and_client(dir, "client.example").0
}

/// As [`certificates`], and a client certificate for the DNS name `client` that the CA
/// signs: ((ca, cert, key), (client cert, client key)).
pub(crate) fn certificates_and_client(
    dir: &Path,
    client: &str,
) -> ((PathBuf, PathBuf, PathBuf), (PathBuf, PathBuf)) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("cert");
    let paths = (dir.join("ca.pem"), dir.join("hub.pem"), dir.join("hub.key"));
    std::fs::write(&paths.0, ca.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    let client_key = KeyPair::generate().expect("key");
    let client_cert = CertificateParams::new(vec![client.to_owned()])
        .expect("params")
        .signed_by(&client_key, &ca)
        .expect("cert");
    let client_paths = (dir.join("client.pem"), dir.join("client.key"));
    std::fs::write(&client_paths.0, client_cert.pem()).expect("write");
    std::fs::write(&client_paths.1, client_key.serialize_pem()).expect("write");
    (paths, client_paths)
}

/// `netsvc passwd` on `password`: the hash it prints.
pub(crate) fn passwd(password: &str) -> String {
    let output = run_with_stdin(&["passwd"], format!("{password}\n").as_bytes());
    assert!(output.status.success(), "{}", stderr(&output));
    let hash = stdout(&output).trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    hash
}

fn users_file(hash: &str, carol_calls: &str) -> String {
    format!(
        r#"
[users.alice]
password_hash = "{hash}"
[users.alice.permissions]
provide = {{ allow = ["echo", "clock"] }}

[users.carol]
token = "carol-token-4417"
[users.carol.permissions]
call = {{ allow = ["{carol_calls}"] }}
"#
    )
}

#[test]
fn a_tls_hub_with_logins_serves_its_users_and_names_every_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = certificates(dir.path());
    let users = dir.path().join("users.toml");
    std::fs::write(&users, users_file(&passwd("alice-pw-3321"), "public*")).expect("write");
    let token = dir.path().join("carol.token");
    std::fs::write(&token, "carol-token-4417\n").expect("write");
    let (ca, cert, key, users, token) = (
        ca.to_str().unwrap_or_default(),
        cert.to_str().unwrap_or_default(),
        key.to_str().unwrap_or_default(),
        users.to_str().unwrap_or_default(),
        token.to_str().unwrap_or_default(),
    );

    let (mut hub, address) = hub_with(&["--tls-cert", cert, "--tls-key", key, "--users", users]);
    hub.wait_stderr("logins required");
    let alice = [("NETSVC_PASSWORD", "alice-pw-3321")];
    let login = ["--connect", &address, "--tls-ca", ca, "--user", "alice"];
    let mut demo_args = vec!["demo"];
    demo_args.extend_from_slice(&login);
    let mut demo = Proc::spawn_with(&demo_args, &alice);
    demo.wait_stderr("demo ready");

    // alice calls over TLS.
    let call = |extra: &[&str], env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = netsvc();
        cmd.arg("call")
            .args(extra)
            .args(args)
            .env_remove("NETSVC_PASSWORD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let output = cmd.output().expect("run netsvc");
        assert_no_panic(&output);
        output
    };
    let ok = call(&login, &alice, &["echo", "echo", "\"hi\""]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(stdout(&ok), "\"hi\"\n");

    // Plaintext to the TLS port: refused at once, with the flag that mends it.
    let plain = call(&["--connect", &address], &[], &["echo", "echo", "1"]);
    assert_eq!(plain.status.code(), Some(2));
    let text = stderr(&plain);
    assert!(
        text.contains("TLS only") && text.contains("--tls-ca"),
        "{text}"
    );

    // A wrong password: not authorised, and the password is nowhere.
    let wrong = call(
        &login,
        &[("NETSVC_PASSWORD", "guess-7777")],
        &["echo", "echo", "1"],
    );
    assert_eq!(wrong.status.code(), Some(2));
    let text = stderr(&wrong);
    assert!(text.contains("not authorised"), "{text}");
    assert!(!text.contains("guess-7777"), "{text}");
    // No credentials at all: told how to give them.
    let anonymous = call(
        &["--connect", &address, "--tls-ca", ca],
        &[],
        &["echo", "echo", "1"],
    );
    let text = stderr(&anonymous);
    assert!(
        text.contains("credentials required") && text.contains("--user"),
        "{text}"
    );

    // carol may call only public*: 49, and the service never ran.
    let carol = ["--connect", &address, "--tls-ca", ca, "--token-file", token];
    let refused = call(&carol, &[], &["echo", "echo", "1"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let failure = stderr(&refused);
    assert!(failure.contains("\"error\":49"), "{failure}");

    // A reload lets carol call echo, without restarting the hub.
    std::fs::write(users, users_file(&passwd("alice-pw-3321"), "echo")).expect("write");
    hub.signal("HUP");
    hub.wait_stderr("users reloaded");
    let allowed = call(&carol, &[], &["echo", "echo", "2"]);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert_eq!(stdout(&allowed), "2\n");

    // The demo's link survived the reload (alice's rights did not change), and no secret
    // reached the hub's log.
    demo.drain_stderr();
    assert!(
        !demo
            .stderr_seen
            .iter()
            .any(|l| l.contains("waiting for the exchange")),
        "{:?}",
        demo.stderr_seen
    );
    hub.signal("TERM");
    hub.wait_exit();
    for secret in ["alice-pw-3321", "guess-7777", "carol-token-4417"] {
        assert!(
            !hub.stderr_seen.iter().any(|l| l.contains(secret)),
            "{secret} in the hub's log"
        );
    }
}

#[test]
fn passwd_refuses_an_empty_password() {
    let output = run_with_stdin(&["passwd"], b"\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no password"),
        "{}",
        stderr(&output)
    );
}

/// One HTTP/1.1 exchange over TLS trusting `ca` (or nothing at all): the whole response
/// (the server closes after it), or the TLS error.
fn https(address: &str, ca: Option<&Path>, request: &str) -> Result<String, String> {
    https_as(address, ca, None, request)
}

/// As [`https`], presenting the client certificate and key `client` if given.
pub(crate) fn https_as(
    address: &str,
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
    request: &str,
) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject as _;
    use std::io::{Read as _, Write as _};
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        let cert = rustls::pki_types::CertificateDer::from_pem_file(ca).expect("CA");
        roots.add(cert).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => config
            .with_client_auth_cert(
                vec![rustls::pki_types::CertificateDer::from_pem_file(cert).expect("cert")],
                rustls::pki_types::PrivateKeyDer::from_pem_file(key).expect("key"),
            )
            .expect("a client certificate"),
        None => config.with_no_client_auth(),
    };
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let connection =
        rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let tcp = std::net::TcpStream::connect(address).expect("connect");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // Some servers close without a TLS close_notify; what arrived is the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[test]
fn a_tls_hub_serves_its_http_gateway_over_https_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = certificates(dir.path());
    let (ca, cert, key) = (
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    );
    let (mut hub, address) = hub_with(&[
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--http",
        "127.0.0.1:0",
    ]);
    let http = hub.wait_http("https");
    let mut demo = Proc::spawn(&["demo", "--connect", &address, "--tls-ca", ca]);
    demo.wait_stderr("demo ready");

    let body = r#"{"jsonrpc":"2.0","id":1,"method":"echo.echo","params":["over TLS"]}"#;
    let request = format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // The demo is linked; its services reach the hub's registry a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let answer = loop {
        let answer = https(&http, Some(Path::new(ca)), &request).expect("HTTPS call");
        if !answer.contains("Service Unavailable") || std::time::Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""result":"over TLS""#), "{answer}");

    // Plain HTTP to the HTTPS port is told so, in plain HTTP.
    let mut plain = std::net::TcpStream::connect(&http).expect("connect");
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    std::io::Write::write_all(&mut plain, b"GET /api/services HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut plain, &mut text);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("HTTPS only"), "{text}");

    // A client that does not trust the certificate fails its handshake; the others go on.
    let refused = https(&http, None, &request).expect_err("an untrusted certificate");
    assert!(refused.contains("certificate"), "{refused}");
    let again = https(&http, Some(Path::new(ca)), &request).expect("HTTPS call");
    assert!(again.contains(r#""result":"over TLS""#), "{again}");

    // Rotation: a certificate from another CA in the same files, SIGHUP, and new
    // connections get it.
    let other = tempfile::tempdir().expect("tempdir");
    let (new_ca, new_cert, new_key) = certificates(other.path());
    std::fs::copy(&new_cert, cert).expect("copy");
    std::fs::copy(&new_key, key).expect("copy");
    hub.signal("HUP");
    hub.wait_stderr("HTTPS certificate reloaded");
    let rotated = https(&http, Some(&new_ca), &request).expect("HTTPS with the new CA");
    assert!(rotated.contains(r#""result":"over TLS""#), "{rotated}");
    let stale = https(&http, Some(Path::new(ca)), &request).expect_err("the old CA");
    assert!(stale.contains("certificate"), "{stale}");
    drop(demo);
}

#[test]
fn netsvc_gateway_serves_https_with_its_own_certificate_and_sighup_reloads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = certificates(dir.path());
    let (_hub, address) = hub();
    let mut gateway = Proc::spawn(&[
        "gateway",
        "--connect",
        &address,
        "--http",
        "127.0.0.1:0",
        "--http-tls-cert",
        cert.to_str().unwrap(),
        "--http-tls-key",
        key.to_str().unwrap(),
    ]);
    let http = gateway.wait_http("https");
    gateway.wait_stderr("gateway linked to");
    let request = "GET /api/links HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let answer = https(&http, Some(&ca), request).expect("HTTPS");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // SIGHUP reloads the files and the gateway goes on.
    gateway.signal("HUP");
    gateway.wait_stderr("HTTPS certificate reloaded");
    let again = https(&http, Some(&ca), request).expect("HTTPS after SIGHUP");
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
}

#[test]
fn a_served_command_is_told_which_user_called_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        "[users.alice]\ntoken = \"alice-token-1\"\n[users.carol]\ntoken = \"carol-token-2\"\n",
    )
    .expect("write");
    let token = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).expect("write");
        path.to_str().unwrap_or_default().to_owned()
    };
    let (alice, carol) = (
        token("alice", "alice-token-1"),
        token("carol", "carol-token-2"),
    );
    let (mut hub, address) = hub_with(&["--users", users.to_str().unwrap_or_default()]);
    hub.wait_stderr("logins required");
    let mut serve = Proc::spawn(&[
        "serve",
        "--connect",
        &address,
        "--token-file",
        &alice,
        "who",
        "am",
        "--",
        "sh",
        "-c",
        "echo \"\\\"$NETSVC_USER\\\"\"",
    ]);
    serve.wait_stderr("serving who am");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let output = loop {
        let output = run(&[
            "call",
            "--connect",
            &address,
            "--token-file",
            &carol,
            "who",
            "am",
        ]);
        if output.status.success() || std::time::Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "\"carol\"");
}

#[test]
fn serve_and_publish_under_a_name_the_user_may_not_provide_say_so_and_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        "[users.alice]\ntoken = \"alice-token-1\"\n\
         [users.alice.permissions]\nprovide = { allow = [\"alice.*\"] }\n",
    )
    .expect("write");
    let token = dir.path().join("alice");
    std::fs::write(&token, "alice-token-1\n").expect("write");
    let token = token.to_str().unwrap_or_default();
    let (mut hub, address) = hub_with(&["--users", users.to_str().unwrap_or_default()]);
    hub.wait_stderr("logins required");
    let login = ["--connect", address.as_str(), "--token-file", token];

    let mut serve = vec!["serve"];
    serve.extend_from_slice(&login);
    serve.extend(["--reply", "1", "echo", "run"]);
    let mut served = Proc::spawn(&serve);
    let status = served.wait_exit();
    let said = served.stderr_seen.join("\n");
    assert_eq!(status.code(), Some(2), "{said}");
    assert!(
        said.contains("not serving echo") && said.contains("may not provide"),
        "{said}"
    );

    let mut publish = vec!["publish"];
    publish.extend_from_slice(&login);
    publish.extend(["--service", "weather", "weather.today", "\"sunny\""]);
    let output = run(&publish);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not publishing as weather"),
        "{}",
        stderr(&output)
    );

    // A name the user may provide is served as before.
    let mut allowed = vec!["serve"];
    allowed.extend_from_slice(&login);
    allowed.extend(["--reply", "1", "alice.echo", "run"]);
    let mut ok = Proc::spawn(&allowed);
    ok.wait_stderr("serving alice.echo run");
}

/// Runs `netsvc passwd` on a pseudo-terminal (Python's `pty`, a real terminal as far as the
/// command can tell), types `first` and `second` at its prompts, and returns (exit status,
/// everything the terminal showed).
fn passwd_on_a_terminal(first: &str, second: &str) -> (i32, String) {
    const SCRIPT: &str = r#"
import os, pty, select, sys, time
binary, first, second = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execv(binary, [binary, "passwd"])
seen = b""
def read(until=None, limit=15.0):
    global seen
    end = time.time() + limit
    while time.time() < end and (until is None or until not in seen):
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen += chunk
read(b"Password: ")
os.write(fd, first + b"\n")
read(b"Again: ")
os.write(fd, second + b"\n")
read(limit=15.0)
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", SCRIPT, BIN, first, second])
        .output()
        .expect("python3");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn passwd_on_a_terminal_asks_twice_and_shows_nothing_typed() {
    let (code, shown) = passwd_on_a_terminal("s3cret-pw-5150", "s3cret-pw-5150");
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("Password: ") && shown.contains("Again: "),
        "{shown}"
    );
    assert!(shown.contains("$argon2id$"), "{shown}");
    assert!(
        !shown.contains("s3cret-pw"),
        "the password was echoed: {shown}"
    );

    let (code, shown) = passwd_on_a_terminal("s3cret-pw-5150", "s3cret-pw-5151");
    assert_eq!(code, 2, "{shown}");
    assert!(
        shown.contains("differ") && !shown.contains("$argon2id$"),
        "{shown}"
    );
}
