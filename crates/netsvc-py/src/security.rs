//! TLS and logins for Python exchanges: the keyword arguments of `ExchangeCore` and of its
//! `listen`, turned into the library's settings. Files are read here, so that a bad path
//! or a bad file is a `ValueError` naming it when the exchange is made, not a failure later.

use std::path::Path;

use netsvc::ExchangeBuilder;
use netsvc::security::{ClientTls, Credentials, ServerTls, Users};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// How an exchange links to the servers it connects to, and who may link to it.
#[derive(Debug, Default)]
pub(crate) struct LinkSecurity<'a> {
    /// CA (PEM) to trust for servers: connections are TLS.
    pub(crate) tls_ca: Option<&'a str>,
    /// This process's certificate and key (PEM) for servers that ask for one.
    pub(crate) tls_cert: Option<&'a str>,
    pub(crate) tls_key: Option<&'a str>,
    /// The name to expect in a server's certificate when it is not the host connected to.
    pub(crate) tls_server_name: Option<&'a str>,
    pub(crate) user: Option<&'a str>,
    pub(crate) password: Option<&'a str>,
    pub(crate) token: Option<&'a str>,
    /// A users file (TOML, docs/SECURITY.md): peers must log in.
    pub(crate) users: Option<&'a str>,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{what}: {e}"))
}

impl LinkSecurity<'_> {
    pub(crate) fn apply(&self, mut builder: ExchangeBuilder) -> PyResult<ExchangeBuilder> {
        match (self.tls_cert, self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(PyValueError::new_err(
                    "tls_cert and tls_key go together (a client certificate and its key)",
                ));
            }
            (Some(_), Some(_)) if self.tls_ca.is_none() => {
                return Err(PyValueError::new_err(
                    "a client certificate needs tls_ca (the CA that signs the server's)",
                ));
            }
            _ => {}
        }
        if let Some(ca) = self.tls_ca {
            let mut tls =
                ClientTls::from_ca_file(Path::new(ca)).map_err(|e| invalid("tls_ca", e))?;
            if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
                tls = tls
                    .with_client_cert_files(Path::new(cert), Path::new(key))
                    .map_err(|e| invalid("tls_cert/tls_key", e))?;
            }
            if let Some(name) = self.tls_server_name {
                tls = tls.with_server_name(name);
            }
            builder = builder.tls(tls);
        } else if self.tls_server_name.is_some() {
            return Err(PyValueError::new_err("tls_server_name needs tls_ca"));
        }
        let credentials = match (self.user, self.password, self.token) {
            (Some(user), Some(password), None) => Some(Credentials::password(user, password)),
            (None, None, Some(token)) => Some(Credentials::token(token)),
            (None, None, None) => None,
            (Some(_), None, None) => {
                return Err(PyValueError::new_err("user needs a password"));
            }
            (None, Some(_), None) => {
                return Err(PyValueError::new_err("password needs a user"));
            }
            _ => {
                return Err(PyValueError::new_err(
                    "log in with user and password, or with a token, not both",
                ));
            }
        };
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        if let Some(path) = self.users {
            let text =
                std::fs::read_to_string(path).map_err(|e| invalid(&format!("users {path}"), e))?;
            let users: Users =
                toml::from_str(&text).map_err(|e| invalid(&format!("users {path}"), e))?;
            builder = builder.users(users);
        }
        Ok(builder)
    }
}

/// A TLS listener's certificate, key and optional client CA (mTLS).
pub(crate) fn server_tls(
    cert: &str,
    key: &str,
    client_ca: Option<&str>,
    require_client_cert: bool,
) -> PyResult<ServerTls> {
    let tls = ServerTls::from_pem_files(Path::new(cert), Path::new(key))
        .map_err(|e| invalid("tls_cert/tls_key", e))?;
    match client_ca {
        Some(ca) => tls
            .with_client_ca_file(Path::new(ca), require_client_cert)
            .map_err(|e| invalid("client_ca", e)),
        None if require_client_cert => Err(PyValueError::new_err(
            "require_client_cert needs client_ca (the CA that signs client certificates)",
        )),
        None => Ok(tls),
    }
}
