//! A hub's own TLS certificate through the real binary: the certificates people make with
//! the usual openssl recipe (version 1, no subjectAltName) and other mistakes (expired, the
//! wrong key) are refused or warned about in words, and `netsvc cert` makes a CA and a
//! certificate with which a real hub and a real client link.

use std::path::Path;
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use crate::util::*;

/// Runs openssl in `dir` with these words (no quoting), which must succeed.
fn openssl(dir: &Path, args: &str) {
    let output = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("run openssl (installed by .ci/run)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a certificate request for CN=localhost by openssl, in `dir`, as docs and
/// tutorials start: ca.pem, ca.key, hub.key, hub.csr.
fn openssl_ca_and_request(dir: &Path) {
    openssl(
        dir,
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 -subj /CN=dev-ca",
    );
    openssl(
        dir,
        "req -newkey rsa:2048 -nodes -keyout hub.key -out hub.csr -subj /CN=localhost",
    );
}

/// The CA signs the request into hub.pem, as in every tutorial: version 1 without an
/// extensions file.
const SIGN: &str =
    "x509 -req -in hub.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out hub.pem -days 30";

/// `netsvc exchange` with this certificate and key, which must refuse to start: its stderr.
fn refused(dir: &Path, cert: &str, key: &str) -> String {
    let (cert, key) = (dir.join(cert), dir.join(key));
    let output = run(&[
        "exchange",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap_or_default(),
        "--tls-key",
        key.to_str().unwrap_or_default(),
    ]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(!text.contains("listening on"), "{text}");
    text
}

#[test]
fn a_version_1_certificate_from_openssl_is_refused_in_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    openssl_ca_and_request(dir.path());
    // Plain `openssl x509 -req`: version 1, no extensions.
    openssl(dir.path(), SIGN);
    let text = refused(dir.path(), "hub.pem", "hub.key");
    assert!(
        text.contains("hub.pem") && text.contains("version 1") && text.contains("netsvc cert"),
        "{text}"
    );
    assert!(
        text.contains("A certificate that works") && text.contains("subjectAltName"),
        "{text}"
    );
    assert!(
        !text.contains("Other(") && !text.contains("peer"),
        "a debug string: {text}"
    );
}

#[test]
fn a_version_3_certificate_without_names_starts_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    openssl_ca_and_request(dir.path());
    // Version 3 (an extensions file), but no subjectAltName: clients match names there only.
    std::fs::write(dir.path().join("v3.ext"), "basicConstraints=CA:FALSE\n").expect("write");
    openssl(dir.path(), &format!("{SIGN} -extfile v3.ext"));
    let (cert, key) = (dir.path().join("hub.pem"), dir.path().join("hub.key"));
    let mut hub = Proc::spawn(&[
        "exchange",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap_or_default(),
        "--tls-key",
        key.to_str().unwrap_or_default(),
    ]);
    let warning = hub.wait_stderr("warning:");
    assert!(
        warning.contains("hub.pem")
            && warning.contains("names no host")
            && warning.contains("every client will refuse it"),
        "{warning}"
    );
    hub.wait_stderr("listening on ");
    // 30 days left: no expiry warning.
    hub.drain_stderr();
    assert!(
        !hub.stderr_seen.iter().any(|l| l.contains("expires")),
        "{:?}",
        hub.stderr_seen
    );
}

/// A CA, and a certificate for 127.0.0.1 that it signs with `params` changed by `change`,
/// written to ca.pem, hub.pem and hub.key in `dir`.
fn rcgen_certificate(dir: &Path, change: impl FnOnce(&mut CertificateParams)) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    change(&mut params);
    let cert = params.signed_by(&key, &ca).expect("cert");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("hub.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("hub.key"), key.serialize_pem()).expect("write");
}

#[test]
fn an_expired_certificate_is_refused_with_its_dates() {
    let dir = tempfile::tempdir().expect("tempdir");
    rcgen_certificate(dir.path(), |params| {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 3, 4);
    });
    let text = refused(dir.path(), "hub.pem", "hub.key");
    assert!(
        text.contains("hub.pem") && text.contains("expired on 2021-03-04"),
        "{text}"
    );
    assert!(text.contains("2020-01-01"), "{text}");
}

#[test]
fn a_certificate_not_valid_yet_is_refused_with_its_dates() {
    let dir = tempfile::tempdir().expect("tempdir");
    rcgen_certificate(dir.path(), |params| {
        params.not_before = rcgen::date_time_ymd(2200, 5, 6);
        params.not_after = rcgen::date_time_ymd(2201, 1, 1);
    });
    let text = refused(dir.path(), "hub.pem", "hub.key");
    assert!(
        text.contains("not valid yet") && text.contains("2200-05-06"),
        "{text}"
    );
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_in_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    rcgen_certificate(dir.path(), |_| {});
    std::fs::write(
        dir.path().join("other.key"),
        KeyPair::generate().expect("key").serialize_pem(),
    )
    .expect("write");
    let text = refused(dir.path(), "hub.pem", "other.key");
    assert!(
        text.contains("other.key") && text.contains("not this certificate's key"),
        "{text}"
    );
    assert!(!text.contains("KeyMismatch"), "{text}");
}

/// `netsvc cert` in `dir` for `names` (with `extra` flags first): its output.
fn cert(dir: &Path, extra: &[&str], names: &[&str]) -> std::process::Output {
    let mut args = vec!["cert", "--out", dir.to_str().unwrap_or_default()];
    args.extend_from_slice(extra);
    args.extend_from_slice(names);
    run(&args)
}

/// A hub with `dir`'s NAME.pem and NAME.key, and `netsvc services` trusting `dir`'s ca.pem
/// through it, which must link.
fn hub_and_client_link(dir: &Path, name: &str) {
    let (cert, key, ca) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
        dir.join("ca.pem"),
    );
    let (mut hub, address) = hub_with(&[
        "--tls-cert",
        cert.to_str().unwrap_or_default(),
        "--tls-key",
        key.to_str().unwrap_or_default(),
    ]);
    let output = run(&[
        "services",
        "--connect",
        &address,
        "--tls-ca",
        ca.to_str().unwrap_or_default(),
        "--json",
    ]);
    // Success is the TLS handshake with the name checked against the CA's certificate: a
    // client that refuses the certificate fails (security.rs covers that it would).
    assert!(output.status.success(), "{}", stderr(&output));
    hub.drain_stderr();
    assert!(
        hub.stderr_seen
            .iter()
            .any(|l| l.contains("TLS certificate for localhost, 127.0.0.1")),
        "{:?}",
        hub.stderr_seen
    );
    assert!(
        !hub.stderr_seen.iter().any(|l| l.contains("warning")),
        "{:?}",
        hub.stderr_seen
    );
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn netsvc_cert_makes_a_ca_and_a_certificate_a_hub_and_a_client_link_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("certs");
    let made = cert(&out, &[], &["localhost", "127.0.0.1", "hub.example"]);
    assert!(made.status.success(), "{}", stderr(&made));
    let said = stdout(&made);
    assert!(
        said.contains("netsvc exchange") && said.contains("--tls-ca") && said.contains("made"),
        "{said}"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&out.join("ca.key")), 0o600);
        assert_eq!(mode(&out.join("localhost.key")), 0o600);
    }
    hub_and_client_link(&out, "localhost");

    // A second run reuses the CA: clients that trust it trust the new certificate.
    let ca = std::fs::read(out.join("ca.pem")).expect("read");
    let ca_key = std::fs::read(out.join("ca.key")).expect("read");
    let again = cert(&out, &[], &["localhost", "127.0.0.1"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("reused"), "{}", stdout(&again));
    assert_eq!(std::fs::read(out.join("ca.pem")).expect("read"), ca);
    assert_eq!(std::fs::read(out.join("ca.key")).expect("read"), ca_key);
    hub_and_client_link(&out, "localhost");
}

#[test]
fn netsvc_cert_refuses_to_overwrite_a_file_it_did_not_make() {
    let dir = tempfile::tempdir().expect("tempdir");
    let foreign = dir.path().join("localhost.pem");
    std::fs::write(&foreign, "an operator's own certificate\n").expect("write");
    let output = cert(dir.path(), &[], &["localhost", "127.0.0.1"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("localhost.pem") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&foreign).expect("read"),
        "an operator's own certificate\n"
    );
    assert!(!dir.path().join("localhost.key").exists());

    // With --force it is replaced, by one that works.
    let forced = cert(dir.path(), &["--force"], &["localhost", "127.0.0.1"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    hub_and_client_link(dir.path(), "localhost");
}

#[test]
fn the_gateway_checks_its_own_https_certificate_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    rcgen_certificate(dir.path(), |params| {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 3, 4);
    });
    let (cert, key) = (dir.path().join("hub.pem"), dir.path().join("hub.key"));
    let hub = format!("127.0.0.1:{}", closed_port());
    let output = run(&[
        "gateway",
        "--http",
        "127.0.0.1:0",
        "--http-tls-cert",
        cert.to_str().unwrap_or_default(),
        "--http-tls-key",
        key.to_str().unwrap_or_default(),
        "--connect",
        &hub,
    ]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("hub.pem") && text.contains("expired on 2021-03-04"),
        "{text}"
    );
    assert!(!text.contains("HTTP gateway on"), "{text}");
}
