//! TLS for links: the server's certificate (and the CA of client certificates, for mTLS),
//! the client's trusted CA (and its own certificate), and the handshakes over a TCP stream.
//!
//! rustls with the ring provider only, chosen explicitly: rustls's automatic provider
//! choice panics when a second provider is compiled in by some other dependency.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS setting could not be used: a file missing or unreadable, no certificate in a PEM
/// file, a key that does not fit the certificate, ...
#[derive(Debug, thiserror::Error)]
#[error("TLS: {message}")]
pub struct TlsError {
    kind: TlsErrorKind,
    message: String,
}

/// What was wrong with a TLS setting, for a caller that adds its own advice (a command
/// that can make a certificate, say) to the words of [`TlsError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The server's own certificate is X.509 version 1 (what `openssl x509 -req` makes
    /// without an extensions file): it has no subjectAltName, and webpki refuses it.
    CertificateVersion1,
    /// The private key is not the key of the certificate.
    KeyMismatch,
    /// The certificate is not a well-formed X.509 certificate, or one that cannot be used.
    BadCertificate,
    /// The private key cannot be used (malformed, or of a kind the provider lacks).
    BadKey,
    /// Anything else: a file that cannot be read, an empty PEM file, ...
    Other,
}

impl TlsError {
    fn new(what: impl Into<String>) -> Self {
        Self::of(TlsErrorKind::Other, what)
    }

    fn of(kind: TlsErrorKind, what: impl Into<String>) -> Self {
        Self {
            kind,
            message: what.into(),
        }
    }

    /// What was wrong.
    pub fn kind(&self) -> TlsErrorKind {
        self.kind
    }

    /// The same error with `path: ` before its words, once the file it is about is known.
    fn in_file(self, path: &Path) -> Self {
        Self {
            kind: self.kind,
            message: format!("{}: {}", path.display(), self.message),
        }
    }
}

/// Words for rustls's refusal of a server's own certificate and key. rustls words these as
/// a peer's (`invalid peer certificate: Other(OtherError(UnsupportedCertVersion))`), since
/// it checks them with the code that checks peers; here they are the server's own, and the
/// operator needs to know what to change.
fn own_certificate_error(error: &rustls::Error) -> TlsError {
    use rustls::{CertificateError as C, Error as E, InconsistentKeys as K};
    match error {
        E::InconsistentKeys(K::KeyMismatch) => TlsError::of(
            TlsErrorKind::KeyMismatch,
            "the private key is not this certificate's key (its public key differs from \
             the certificate's): give the key that was made with the certificate",
        ),
        E::InvalidCertificate(C::Other(other))
            if other.0.downcast_ref::<webpki::Error>()
                == Some(&webpki::Error::UnsupportedCertVersion) =>
        {
            TlsError::of(
                TlsErrorKind::CertificateVersion1,
                "the certificate is X.509 version 1 (what plain `openssl x509 -req` makes); \
                 TLS needs version 3 with a subjectAltName naming the server's hosts: see \
                 docs/SECURITY.md, *A certificate that works*",
            )
        }
        E::InvalidCertificate(C::BadEncoding) => TlsError::of(
            TlsErrorKind::BadCertificate,
            "the certificate is not a well-formed X.509 certificate",
        ),
        E::InvalidCertificate(C::Other(other)) => TlsError::of(
            TlsErrorKind::BadCertificate,
            format!("the certificate cannot be used: {other}"),
        ),
        E::InvalidCertificate(other) => TlsError::of(
            TlsErrorKind::BadCertificate,
            format!("the certificate cannot be used: {other:?}"),
        ),
        E::General(text) if text.contains("private key") => TlsError::of(
            TlsErrorKind::BadKey,
            format!(
                "the private key cannot be used ({text}): give an RSA, ECDSA or Ed25519 key \
                 in PEM (PKCS#8, PKCS#1 or SEC1)"
            ),
        ),
        other => TlsError::new(format!("certificate and key: {other}")),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::new(format!("{what}: no certificate in it")));
    }
    Ok(certs)
}

fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::new(format!("{what}: {e}")))
}

fn roots(pem: &[u8], what: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(pem, what)? {
        store
            .add(cert)
            .map_err(|e| TlsError::new(format!("{what}: {e}")))?;
    }
    Ok(Arc::new(store))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::new(format!("cannot read {}: {e}", path.display())))
}

/// A TLS listener's settings: its certificate chain and key, and optionally the CA that
/// signs client certificates (mTLS).
#[derive(Clone)]
pub struct ServerTls {
    cert_chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    client_ca: Option<(Arc<RootCertStore>, bool)>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("certificates", &self.cert_chain.len())
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The certificate chain and private key, in PEM.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let tls = Self {
            cert_chain: certificates(cert_chain, "certificate")?,
            key: Arc::new(private_key(key, "private key")?),
            client_ca: None,
        };
        tls.config()?; // the key must fit the certificate
        Ok(tls)
    }

    /// The certificate chain and private key, from PEM files. An error names the file it
    /// is about (the key's for a key that does not fit, the certificate's otherwise).
    pub fn from_pem_files(cert_chain: &Path, key: &Path) -> Result<Self, TlsError> {
        let key_pem = read(key)?;
        let cert_chain_der =
            certificates(&read(cert_chain)?, "certificate").map_err(|e| e.in_file(cert_chain))?;
        let tls = Self {
            cert_chain: cert_chain_der,
            key: Arc::new(private_key(&key_pem, "private key").map_err(|e| e.in_file(key))?),
            client_ca: None,
        };
        tls.config().map_err(|e| match e.kind {
            TlsErrorKind::KeyMismatch | TlsErrorKind::BadKey => e.in_file(key),
            _ => e.in_file(cert_chain),
        })?;
        Ok(tls)
    }

    /// Verifies client certificates against the CA certificates in `ca` (PEM): a client's
    /// certificate names can then log it in ([`User::certificate`](crate::security::User)).
    /// With `required`, a client without a valid certificate is refused in the TLS
    /// handshake; otherwise it may log in another way.
    pub fn with_client_ca(mut self, ca: &[u8], required: bool) -> Result<Self, TlsError> {
        self.client_ca = Some((roots(ca, "client CA")?, required));
        self.config()?;
        Ok(self)
    }

    /// [`with_client_ca`](Self::with_client_ca) from a PEM file.
    pub fn with_client_ca_file(self, ca: &Path, required: bool) -> Result<Self, TlsError> {
        let pem = read(ca)?;
        self.with_client_ca(&pem, required)
    }

    /// The rustls settings these make, offering the application protocols `alpn`
    /// (`b"http/1.1"`, say), for another TLS server of the process that presents the same
    /// certificate (the HTTP gateway). Built with the `ring` provider, as netsvc's own.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = (*self.config()?).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // HTTP makes many short connections, for which resuming a session saves a full
        // handshake each; unless a client certificate logs a user in, which must be
        // checked at every connection like the exchange's (see `config`).
        if self.client_ca.is_none() {
            config.session_storage = rustls::server::ServerSessionMemoryCache::new(256);
            config.send_tls13_tickets = 2;
        }
        Ok(Arc::new(config))
    }

    pub(crate) fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new(e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some((roots, required)) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
                let verifier = if *required {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::new(format!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| own_certificate_error(&e))?;
        // No session resumption: a resumed session skips the certificate checks, so a
        // client certificate that expired (or a CA rotated away) since the session began
        // would still log its user in. Links live long; a full handshake per link costs
        // nothing that matters.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }
}

/// A client's TLS settings: the CA certificates it trusts for servers, optionally its own
/// certificate (for a server that asks for one), and the name to expect in the server's
/// certificate when it is not the host of the address.
#[derive(Clone)]
pub struct ClientTls {
    roots: Arc<RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    server_name: Option<String>,
}

impl ClientTls {
    /// Whether it presents a client certificate (which may log a user in).
    pub(crate) fn has_identity(&self) -> bool {
        self.identity.is_some()
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts servers whose certificates the CA certificates in `ca` (PEM) sign.
    pub fn from_ca_pem(ca: &[u8]) -> Result<Self, TlsError> {
        Ok(Self {
            roots: roots(ca, "CA")?,
            identity: None,
            server_name: None,
        })
    }

    /// [`from_ca_pem`](Self::from_ca_pem) from a PEM file.
    pub fn from_ca_file(ca: &Path) -> Result<Self, TlsError> {
        Self::from_ca_pem(&read(ca)?)
    }

    /// Presents this certificate chain and key (PEM) when the server asks for one.
    pub fn with_client_cert(mut self, cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        self.identity = Some((
            certificates(cert_chain, "client certificate")?,
            Arc::new(private_key(key, "client key")?),
        ));
        self.config()?;
        Ok(self)
    }

    /// [`with_client_cert`](Self::with_client_cert) from PEM files.
    pub fn with_client_cert_files(self, cert_chain: &Path, key: &Path) -> Result<Self, TlsError> {
        let (cert, key) = (read(cert_chain)?, read(key)?);
        self.with_client_cert(&cert, &key)
    }

    /// Expects `name` in the server's certificate instead of the address's host.
    #[must_use]
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    pub(crate) fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new(e.to_string()))?
            .with_root_certificates(self.roots.clone());
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| TlsError::new(format!("client certificate and key: {e}")))?,
        };
        // No session resumption: every (re)connection checks the hub's certificate again,
        // so one that expired or was replaced since the last link is noticed at once.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }

    /// The name to verify the server's certificate against, for a connection to `host`.
    pub(crate) fn server_name(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        let name = self.server_name.as_deref().unwrap_or(host);
        // `[::1]` in an address is `::1` in a certificate.
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_owned())
            .map_err(|e| TlsError::new(format!("server name {name:?}: {e}")))
    }
}

/// The DNS names of a verified peer certificate chain's end certificate: what a user's
/// `certificate` is compared with. Also for a component that verified the chain itself
/// (the HTTP gateway's TLS listener) and passes the names to
/// [`Exchange::authenticate`](crate::Exchange::authenticate).
pub fn certificate_names(chain: Option<&[CertificateDer<'_>]>) -> Vec<String> {
    let Some(end) = chain.and_then(<[_]>::first) else {
        return Vec::new();
    };
    webpki::EndEntityCert::try_from(end)
        .map(|cert| cert.valid_dns_names().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Words for a failed TLS handshake, on the client's side: the usual causes said plainly.
pub(crate) fn describe_client_error(error: &std::io::Error) -> String {
    // rustls words an expired (or not yet valid) certificate with the time of the check,
    // so its text differs on every attempt; a client that keeps trying compares causes by
    // their words, and would report the same cause again each second.
    if let Some(rustls::Error::InvalidCertificate(invalid)) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        use rustls::CertificateError as C;
        match invalid {
            C::Expired => return "the server's certificate has expired".to_owned(),
            C::ExpiredContext { not_after, .. } => {
                return format!(
                    "the server's certificate has expired (not valid after {} UNIX time)",
                    not_after.as_secs()
                );
            }
            C::NotValidYet => return "the server's certificate is not valid yet".to_owned(),
            C::NotValidYetContext { not_before, .. } => {
                return format!(
                    "the server's certificate is not valid yet (not valid before {} UNIX \
                     time); check the clocks",
                    not_before.as_secs()
                );
            }
            _ => {}
        }
    }
    let text = error.to_string();
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        "the server did not answer in TLS: this port is probably plaintext netsvc (connect \
         without TLS)"
            .to_owned()
    } else if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        format!("the server's certificate is not trusted: {text}")
    } else {
        format!("TLS handshake failed: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate for localhost and its key, in PEM.
    fn certificate() -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_key_of_another_certificate_is_named_in_words() {
        let (cert, _) = certificate();
        let (_, other_key) = certificate();
        let error = ServerTls::from_pem(cert.as_bytes(), other_key.as_bytes())
            .expect_err("the key is not the certificate's");
        assert_eq!(error.kind(), TlsErrorKind::KeyMismatch);
        let text = error.to_string();
        assert!(text.contains("not this certificate's key"), "{text}");
        assert!(
            !text.contains("KeyMismatch") && !text.contains("peer"),
            "{text}"
        );
        let (cert, key) = certificate();
        assert!(ServerTls::from_pem(cert.as_bytes(), key.as_bytes()).is_ok());
    }
}
