//! TLS and logins on the command line (docs/SECURITY.md): the flags of a client command,
//! the hub's users file, and where secrets come from.
//!
//! A secret is never a flag's value (any user of the machine can read a command line with
//! `ps`): a password comes from `NETSVC_PASSWORD` or a file, a token from `NETSVC_TOKEN` or
//! a file.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use netsvc::security::{ClientTls, Credentials, ServerTls, Users};

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
fn first_line(path: &Path) -> anyhow::Result<String> {
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

/// The hub's TLS certificate and key, and the CA of client certificates.
pub(crate) fn server_tls(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    require_client_cert: bool,
) -> anyhow::Result<ServerTls> {
    let tls = ServerTls::from_pem_files(cert, key)?;
    Ok(match client_ca {
        Some(ca) => tls.with_client_ca_file(ca, require_client_cert)?,
        None => tls,
    })
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
