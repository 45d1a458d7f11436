//! `netsvc cert`: a development CA and a hub certificate for given names, as `mkcert` makes
//! them for web developers, so that trying TLS does not start with an openssl recipe.
//!
//! The CA (`ca.pem`, `ca.key`) is made once and reused, so that clients that trust it keep
//! trusting the hub's later certificates. A certificate's files are replaced only when this
//! command made them (the CA signed the certificate), or with `--force`: an operator's own
//! files are never lost to a development tool.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::cli::{CertArgs, DEFAULT_ADDRESS};
use crate::exit;

/// A development CA's lifetime: long, since every client that trusts it would need the
/// new one.
const CA_DAYS: i64 = 3650;
/// A hub certificate's lifetime: mkcert's (825 days, the most that Apple's clients accept).
const CERT_DAYS: i64 = 825;

pub(crate) fn run(args: &CertArgs) -> anyhow::Result<u8> {
    let Some(first) = args.names.first() else {
        bail!("name the hosts the certificate is for: netsvc cert localhost 127.0.0.1");
    };
    for name in &args.names {
        check_name(name)?;
    }
    let dir = &args.out;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let (ca_pem, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (issuer, ca_subject, made_ca) = ca(&ca_pem, &ca_key)?;

    // `*.example.com` names its files `_wildcard.example.com`, as mkcert's do: no `*` in
    // a file name that a shell would expand.
    let stem = first.replacen('*', "_wildcard", 1);
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    if !args.force {
        refuse_foreign(&cert_path, &key_path, &ca_subject, &ca_pem)?;
    }

    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::new(args.names.clone())
        .with_context(|| format!("cannot make a certificate for {:?}", args.names))?;
    params.distinguished_name.push(DnType::CommonName, first);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "netsvc development certificate");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // Client auth as well: a hub that links to another (`--connect`) may present it.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    // A day back: a client whose clock is a little behind still accepts it.
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(CERT_DAYS);
    let key = KeyPair::generate().context("cannot make a key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the certificate")?;
    write_new(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_new(&cert_path, cert.pem().as_bytes(), false)?;

    let ca_said = if made_ca {
        format!(
            "made the development CA {} and {} (keep the key secret: whoever has it can \
             make certificates that these clients trust)",
            ca_pem.display(),
            ca_key.display()
        )
    } else {
        format!("signed by the development CA {} (reused)", ca_pem.display())
    };
    let host = if first.starts_with('*') {
        "HOST".to_owned()
    } else if first.contains(':') {
        format!("[{first}]")
    } else {
        first.clone()
    };
    let port = DEFAULT_ADDRESS.rsplit(':').next().unwrap_or("11111");
    println!(
        "made {} and {} for {}, valid until {}; {ca_said}\n\
         \n\
         Start a hub with them:\n  \
         netsvc exchange --listen 0.0.0.0:{port} --tls-cert {} --tls-key {}\n\
         and a client that trusts the CA:\n  \
         netsvc services --connect {host}:{port} --tls-ca {}",
        cert_path.display(),
        key_path.display(),
        args.names.join(", "),
        params.not_after.date(),
        cert_path.display(),
        key_path.display(),
        ca_pem.display(),
    );
    Ok(exit::OK)
}

/// A name a certificate can hold, and that can name a file.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.contains(['/', '\\', '\0'])
        || name.chars().any(char::is_whitespace)
        || name.starts_with('.')
    {
        bail!("{name:?} is not a host name or IP address");
    }
    Ok(())
}

/// The CA in `pem` and `key`, made if neither exists: the issuer, its subject (DER, to
/// recognise the certificates it signed), and whether it was made now.
fn ca(pem: &Path, key: &Path) -> anyhow::Result<(Issuer<'static, KeyPair>, Vec<u8>, bool)> {
    match (pem.exists(), key.exists()) {
        (true, true) => {
            let key_pem = std::fs::read_to_string(key)
                .with_context(|| format!("cannot read {}", key.display()))?;
            let ca_key = KeyPair::from_pem(&key_pem)
                .with_context(|| format!("{} is not a private key in PEM", key.display()))?;
            let cert_pem = std::fs::read_to_string(pem)
                .with_context(|| format!("cannot read {}", pem.display()))?;
            let subject = subject_of(cert_pem.as_bytes())
                .with_context(|| format!("{} is not a certificate in PEM", pem.display()))?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, ca_key).with_context(|| {
                format!(
                    "{} and {} are not a CA certificate and its key",
                    pem.display(),
                    key.display()
                )
            })?;
            Ok((issuer, subject, false))
        }
        (false, false) => {
            let now = OffsetDateTime::now_utc();
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, "netsvc development CA");
            params
                .distinguished_name
                .push(DnType::OrganizationName, "netsvc development certificate");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_before = now - Duration::days(1);
            params.not_after = now + Duration::days(CA_DAYS);
            let ca_key = KeyPair::generate().context("cannot make a key")?;
            let cert = params
                .self_signed(&ca_key)
                .context("cannot make the CA certificate")?;
            write_new(key, ca_key.serialize_pem().as_bytes(), true)?;
            write_new(pem, cert.pem().as_bytes(), false)?;
            let subject = subject_of(cert.pem().as_bytes())
                .context("cannot read the CA certificate just made")?;
            Ok((Issuer::new(params, ca_key), subject, true))
        }
        (true, false) => bail!(
            "{} exists but {} does not: a CA cannot sign without its key; give another --out, \
             or move {} away to make a new CA",
            pem.display(),
            key.display(),
            pem.display()
        ),
        (false, true) => bail!(
            "{} exists but {} does not: move {} away to make a new CA, or give another --out",
            key.display(),
            pem.display(),
            key.display()
        ),
    }
}

/// The subject (raw DER) of the first certificate in `pem`, or None if there is none.
fn subject_of(pem: &[u8]) -> Option<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.subject().as_raw().to_vec())
}

/// The issuer (raw DER) of the first certificate in `pem`.
fn issuer_of(pem: &[u8]) -> Option<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.issuer().as_raw().to_vec())
}

/// Refuses to replace a certificate this command did not make (one the CA did not sign),
/// or a key beside no such certificate.
fn refuse_foreign(cert: &Path, key: &Path, ca_subject: &[u8], ca: &Path) -> anyhow::Result<()> {
    let ours = match std::fs::read(cert) {
        Ok(pem) => issuer_of(&pem).as_deref() == Some(ca_subject),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => !key.exists(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", cert.display())),
    };
    if !ours {
        let foreign: PathBuf = if cert.exists() {
            cert.to_owned()
        } else {
            key.to_owned()
        };
        bail!(
            "{} exists and netsvc cert did not make it (no certificate signed by {} beside \
             it): not replacing it; move it away, give another --out, or give --force",
            foreign.display(),
            ca.display()
        );
    }
    Ok(())
}

/// Writes `data` to `path` as a new file (a former one removed first, so that a key file
/// never keeps a wider mode it had); keys are readable by their owner only.
fn write_new(path: &Path, data: &[u8], secret: bool) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
