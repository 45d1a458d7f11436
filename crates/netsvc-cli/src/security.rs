//! TLS and logins on the command line (docs/SECURITY.md): the flags of a client command,
//! the hub's users file, and where secrets come from.
//!
//! A secret is never a flag's value (any user of the machine can read a command line with
//! `ps`): a password comes from `NETSVC_PASSWORD` or a file, a token from `NETSVC_TOKEN` or
//! a file.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use netsvc::security::{ClientTls, Credentials, ServerTls, TlsErrorKind, Users};

/// How a client command (or a hub's `--connect`) proves who it is and checks the server.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ClientSecurityArgs {
    /// Connect with TLS, trusting servers whose certificate this CA (PEM) signs.
    #[arg(long, value_name = "FILE", env = "NETSVC_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) to present, for a hub that asks for one (mTLS).
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// The name expected in the server's certificate, when it is not the address's host.
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub(crate) tls_server_name: Option<String>,
    /// Log in as this user; the password comes from NETSVC_PASSWORD or --password-file.
    #[arg(long, value_name = "NAME", env = "NETSVC_USER")]
    pub(crate) user: Option<String>,
    /// A file whose first line is the password of --user.
    #[arg(long, value_name = "FILE", requires = "user")]
    pub(crate) password_file: Option<PathBuf>,
    /// A file whose first line is a login token (or set NETSVC_TOKEN).
    #[arg(long, value_name = "FILE", conflicts_with = "user")]
    pub(crate) token_file: Option<PathBuf>,
}

impl ClientSecurityArgs {
    /// The TLS settings, if TLS was asked for.
    pub(crate) fn tls(&self) -> anyhow::Result<Option<ClientTls>> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let mut tls = ClientTls::from_ca_file(ca)?;
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.with_client_cert_files(cert, key)?;
        }
        if let Some(name) = &self.tls_server_name {
            tls = tls.with_server_name(name);
        }
        Ok(Some(tls))
    }

    /// The credentials, if any were given.
    pub(crate) fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        if let Some(user) = &self.user {
            let password = match &self.password_file {
                Some(file) => first_line(file)?,
                None => std::env::var("NETSVC_PASSWORD").map_err(|_| {
                    anyhow::anyhow!(
                        "--user {user:?} needs a password: set NETSVC_PASSWORD or give --password-file"
                    )
                })?,
            };
            return Ok(Some(Credentials::password(user, password)));
        }
        let token = match &self.token_file {
            Some(file) => Some(first_line(file)?),
            None => std::env::var("NETSVC_TOKEN").ok().filter(|t| !t.is_empty()),
        };
        Ok(token.map(Credentials::token))
    }

    /// `builder` with these settings.
    pub(crate) fn apply(
        &self,
        mut builder: netsvc::ExchangeBuilder,
    ) -> anyhow::Result<netsvc::ExchangeBuilder> {
        if let Some(tls) = self.tls()? {
            builder = builder.tls(tls);
        }
        if let Some(credentials) = self.credentials()? {
            builder = builder.credentials(credentials);
        }
        Ok(builder)
    }
}

/// The first line of a secret's file, without its line end; an empty one is an error.
pub(crate) fn first_line(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().to_owned();
    if line.is_empty() {
        bail!(
            "{} is empty: expected the secret on its first line",
            path.display()
        );
    }
    Ok(line)
}

/// Where a certificate that works comes from, after words about one that does not.
const MAKE_ONE: &str = "make one with `netsvc cert --out DIR NAME...` or see docs/SECURITY.md, \
                        *A certificate that works*";

/// A certificate that expires sooner than this is worth a warning at every start.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// The hub's TLS certificate and key, and the CA of client certificates. The certificate
/// is checked as clients will check it (names, validity), so that a hub does not start
/// with one that every client refuses without saying so.
pub(crate) fn server_tls(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    require_client_cert: bool,
) -> anyhow::Result<ServerTls> {
    let tls = ServerTls::from_pem_files(cert, key).map_err(|e| match e.kind() {
        TlsErrorKind::CertificateVersion1 => anyhow::anyhow!("{e}; or run `netsvc cert`"),
        _ => anyhow::Error::new(e),
    })?;
    check_own_certificate(cert, unix_now())?;
    Ok(match client_ca {
        Some(ca) => tls.with_client_ca_file(ca, require_client_cert)?,
        None => tls,
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A certificate time as people read it, in UTC: `2027-01-06 19:40 UTC`.
fn date(time: &x509_parser::time::ASN1Time) -> String {
    let t = time.to_datetime();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// The hub's own certificate (the first in `path`, which the TLS library has accepted),
/// checked at `now` (UNIX seconds): refuses one that has expired or is not valid yet, warns
/// of one that expires soon or names no host, and says which names it covers.
fn check_own_certificate(path: &Path, now: i64) -> anyhow::Result<()> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // rustls has read this file already; a certificate x509-parser cannot read is not worth
    // refusing for (rustls decides what clients get), only the checks are skipped.
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&pem) else {
        return Ok(());
    };
    let Ok(cert) = pem.parse_x509() else {
        return Ok(());
    };
    let validity = cert.validity();
    let (from, until) = (date(&validity.not_before), date(&validity.not_after));
    if validity.not_after.timestamp() < now {
        bail!(
            "{}: the certificate expired on {until} (it was valid from {from}); {MAKE_ONE}",
            path.display()
        );
    }
    if validity.not_before.timestamp() > now {
        bail!(
            "{}: the certificate is not valid yet: valid from {from} until {until}; check \
             this machine's clock, or {MAKE_ONE}",
            path.display()
        );
    }
    let days_left = (validity.not_after.timestamp() - now) / 86_400;
    if days_left < EXPIRY_WARNING_DAYS {
        // Not a status line: `-q` does not hide what will stop every client soon.
        eprintln!(
            "warning: {}: the certificate expires on {until}, in {days_left} days: renew it",
            path.display()
        );
    }
    let names = certificate_hosts(&cert);
    if names.is_empty() {
        eprintln!(
            "warning: {}: the certificate names no host (no subjectAltName DNS or IP \
             entry): every client will refuse it; {MAKE_ONE}",
            path.display()
        );
    } else {
        crate::output::status(format_args!(
            "TLS certificate for {}, valid until {until} ({})",
            names.join(", "),
            path.display()
        ));
    }
    Ok(())
}

/// The DNS names and IP addresses of a certificate's subjectAltName: what clients match the
/// host they connect to against (the subject's common name counts for none of them).
fn certificate_hosts(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => <[u8; 4]>::try_from(*ip)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*ip)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Reads and checks a users file (TOML; the format is docs/SECURITY.md's).
pub(crate) fn load_users(path: &Path) -> anyhow::Result<Users> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read users file {}", path.display()))?;
    let users: Users = toml::from_str(&text).map_err(|e| {
        let message = e.message().trim().replace('\n', " ");
        anyhow::anyhow!("invalid users file {}: {message}", path.display())
    })?;
    users
        .check()
        .map_err(|e| anyhow::anyhow!("invalid users file {}: {e}", path.display()))?;
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_file_parses_with_every_kind_of_rule() {
        let text = r#"
            allow_plaintext_passwords = false
            [anonymous]
            see = { allow = ["public*"] }
            call = { allow = ["public*"] }
            [users.alice]
            token = "t-1"
            [users.alice.permissions]
            provide = { allow = ["alice.*"] }
            subscribe = { allow = ["*"], deny = ["secret.*"] }
            link = true
            [users.station]
            uid = 1000
            certificate = "station.example"
        "#;
        let users: Users = toml::from_str(text).expect("parses");
        assert!(users.check().is_ok());
        assert!(users.users["alice"].permissions.link);
        assert_eq!(users.users["station"].uid, Some(1000));
        let typo = "[users.bob]\npasword_hash = \"x\"\n";
        assert!(toml::from_str::<Users>(typo).is_err());
    }
}
