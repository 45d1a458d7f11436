//! The `netsvc exchange` config file (TOML). Every key is documented in `docs/CLI.md` and
//! shown in `netsvc.example.toml`; unknown keys are errors, so a typo cannot be silently
//! ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use netsvc::ExchangeConfig;
use serde::Deserialize;

/// The file's contents. Every key is optional; the command line overrides it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// TCP addresses to listen on.
    pub(crate) listen: Option<Vec<String>>,
    /// A Unix socket path to listen on.
    pub(crate) unix: Option<PathBuf>,
    /// The exchange group.
    pub(crate) group: Option<String>,
    /// Other exchange servers to link to.
    pub(crate) connect: Option<Vec<String>>,
    /// Seconds between attempts to reach a `connect` peer.
    pub(crate) retry: Option<f64>,
    /// Limits of the exchange.
    #[serde(default)]
    pub(crate) limits: Limits,
    /// A users file: peers must log in (docs/SECURITY.md).
    pub(crate) users: Option<PathBuf>,
    /// The file mode of the Unix socket, in octal digits (e.g. "660").
    pub(crate) unix_mode: Option<String>,
    /// TLS on the TCP listeners.
    pub(crate) tls: Option<TlsFile>,
    /// How this hub links to its `connect` peers.
    #[serde(default)]
    pub(crate) peer: PeerFile,
    /// Whether the hub hosts its introspection service `netsvc.exchange` (default true).
    pub(crate) introspection: Option<bool>,
    /// The HTTP gateway, when `--http` is not given.
    pub(crate) http: Option<HttpFile>,
    /// The OSE dialect: original OSE processes on a listener of their own, OSE servers to
    /// join.
    #[serde(default)]
    pub(crate) ose: OseFile,
    /// A NATS cluster as the backbone to the other hubs of the group.
    #[serde(default)]
    pub(crate) nats: NatsFile,
}

/// `[nats]`: the NATS cluster this hub joins as its backbone to the other hubs of its
/// exchange group (docs/SCALING.md, *Hubs on a NATS cluster*), and how it logs in there.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NatsFile {
    /// The cluster's URLs (any one suffices to join; several for failover).
    pub(crate) urls: Option<Vec<String>>,
    /// The first token of the hub's subjects (default `netsvc`).
    pub(crate) prefix: Option<String>,
    /// A NATS user, with `password_file`.
    pub(crate) user: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
    /// A NATS token, read from this file.
    pub(crate) token_file: Option<PathBuf>,
}

/// `[ose]`: where original OSE processes connect (`listen`), which OSE exchange servers
/// the hub joins (`connect`), and how their liveness is checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OseFile {
    pub(crate) listen: Option<Vec<String>>,
    pub(crate) connect: Option<Vec<String>>,
    /// Seconds between this side's keep-alive round trips.
    pub(crate) keep_alive: Option<f64>,
    /// Seconds of silence after which an OSE peer is taken for dead.
    pub(crate) dead_after: Option<f64>,
    /// Seconds an OSE peer's call into netsvc may take (0: no limit).
    pub(crate) call_timeout: Option<f64>,
    /// With users: the user whose permissions apply to everything the OSE peers do.
    pub(crate) user: Option<String>,
    /// The addresses and networks OSE peers may connect from.
    pub(crate) allow: Option<Vec<String>>,
}

impl OseFile {
    /// The bridge's settings: the file's, else the defaults, in the hub's exchange group.
    pub(crate) fn config(&self, group: &str) -> anyhow::Result<netsvc_ose::bridge::OseConfig> {
        let seconds = |key: &str, value: f64| {
            Duration::try_from_secs_f64(value)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    anyhow::anyhow!("[ose] {key}: {value} is not a positive number of seconds")
                })
        };
        let mut config = netsvc_ose::bridge::OseConfig {
            group: group.to_owned(),
            ..Default::default()
        };
        if let Some(value) = self.keep_alive {
            config.keep_alive = seconds("keep_alive", value)?;
        }
        if let Some(value) = self.dead_after {
            config.dead_after = seconds("dead_after", value)?;
        }
        if config.dead_after <= config.keep_alive {
            bail!(
                "[ose] dead_after ({:?}) must be longer than keep_alive ({:?}), or live peers are taken for dead",
                config.dead_after,
                config.keep_alive
            );
        }
        match self.call_timeout {
            Some(0.0) => config.call_timeout = None,
            Some(value) => config.call_timeout = Some(seconds("call_timeout", value)?),
            None => {}
        }
        if let Some(allow) = &self.allow {
            config.allow = Some(ose_allow(allow).map_err(|e| anyhow::anyhow!("[ose] allow: {e}"))?);
        }
        Ok(config)
    }
}

/// Addresses and networks (`10.0.0.0/8`) from which OSE peers may connect.
pub(crate) fn ose_allow(texts: &[String]) -> Result<Vec<netsvc_ose::bridge::IpPrefix>, String> {
    texts.iter().map(|t| t.parse()).collect()
}

/// `[http]`: the HTTP gateway the hub serves, as `--http` and its flags say. Used only when
/// the command line has no `--http`; then every key missing here takes the flag's default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpFile {
    pub(crate) listen: String,
    pub(crate) expose: Option<String>,
    pub(crate) request_timeout: Option<f64>,
    pub(crate) max_body: Option<usize>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) idle_timeout: Option<f64>,
    pub(crate) header_timeout: Option<f64>,
    pub(crate) publishers: Option<Vec<String>>,
    pub(crate) tls_cert: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
}

impl HttpFile {
    /// The gateway's settings: these keys over the flags' defaults.
    pub(crate) fn options(
        &self,
        defaults: crate::cli::HttpOptions,
    ) -> anyhow::Result<crate::cli::HttpOptions> {
        use crate::parse;
        let seconds = |key: &str, v: f64| {
            parse::positive_seconds(&v.to_string())
                .map_err(|e| anyhow::anyhow!("[http] {key}: {e}"))
        };
        let mut options = defaults;
        if let Some(expose) = &self.expose {
            options.expose =
                parse::exposure(expose).map_err(|e| anyhow::anyhow!("[http] expose: {e}"))?;
        }
        if let Some(v) = self.request_timeout {
            options.request_timeout = seconds("request_timeout", v)?;
        }
        if let Some(v) = self.idle_timeout {
            options.idle_timeout = seconds("idle_timeout", v)?;
        }
        if let Some(v) = self.header_timeout {
            options.header_timeout = seconds("header_timeout", v)?;
        }
        if let Some(v) = self.max_body {
            options.max_body = v;
        }
        if let Some(v) = self.max_connections {
            options.max_connections = v;
        }
        if let Some(names) = &self.publishers {
            options.publishers = names
                .iter()
                .map(|n| {
                    parse::service_name(n).map_err(|e| anyhow::anyhow!("[http] publishers: {e}"))
                })
                .collect::<anyhow::Result<_>>()?;
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                options.http_tls_cert = Some(cert.clone());
                options.http_tls_key = Some(key.clone());
            }
            (None, None) => {}
            _ => bail!("[http] tls_cert and tls_key go together"),
        }
        Ok(options)
    }
}

/// `[tls]`: the listeners' certificate, and the CA of client certificates.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client_ca: Option<PathBuf>,
    #[serde(default)]
    pub(crate) require_client_cert: bool,
}

/// `[peer]`: TLS and a login toward the `connect` peers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PeerFile {
    pub(crate) tls_ca: Option<PathBuf>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) user: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
}

/// `[limits]`: the tunables of [`ExchangeConfig`], in plain units.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limits {
    pub(crate) heartbeat_ms: Option<u64>,
    pub(crate) heartbeat_misses: Option<u32>,
    pub(crate) handshake_timeout_ms: Option<u64>,
    pub(crate) max_frame: Option<usize>,
    pub(crate) queue_soft_limit: Option<usize>,
    pub(crate) queue_hard_limit: Option<usize>,
    pub(crate) max_connections: Option<usize>,
}

impl FileConfig {
    /// Reads and checks a config file. Errors name the file and, for a bad key or value,
    /// the key and its line.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| {
            // toml's Display is a multi-line snippet; keep to one line: file:line:column.
            let position = e
                .span()
                .map(|span| {
                    let (line, column) = line_column(text, span.start);
                    format!(":{line}:{column}")
                })
                .unwrap_or_default();
            let message = e.message().trim().replace('\n', " ");
            anyhow::anyhow!(
                "invalid config file {}{position}: {message}",
                path.display()
            )
        })?;
        config
            .check()
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        if let Some(retry) = self.retry
            && !(0.0..3.2e9).contains(&retry)
        {
            bail!("retry = {retry}: expected a non-negative number of seconds");
        }
        if let Some(mode) = &self.unix_mode {
            crate::parse::file_mode(mode).map_err(|e| anyhow::anyhow!("unix_mode: {e}"))?;
        }
        if self.peer.password_file.is_some() && self.peer.user.is_none() {
            bail!("peer.password_file needs peer.user");
        }
        let l = &self.limits;
        for (key, value) in [
            ("limits.heartbeat_ms", l.heartbeat_ms),
            ("limits.handshake_timeout_ms", l.handshake_timeout_ms),
            ("limits.heartbeat_misses", l.heartbeat_misses.map(u64::from)),
            ("limits.max_frame", l.max_frame.map(|v| v as u64)),
            (
                "limits.queue_soft_limit",
                l.queue_soft_limit.map(|v| v as u64),
            ),
            (
                "limits.queue_hard_limit",
                l.queue_hard_limit.map(|v| v as u64),
            ),
            (
                "limits.max_connections",
                l.max_connections.map(|v| v as u64),
            ),
        ] {
            if value == Some(0) {
                bail!("{key} = 0: expected a positive number");
            }
        }
        Ok(())
    }

    /// The exchange settings: the library's defaults, with the file's limits applied.
    pub(crate) fn exchange_config(&self) -> anyhow::Result<ExchangeConfig> {
        let mut config = ExchangeConfig::default();
        let l = &self.limits;
        if let Some(ms) = l.heartbeat_ms {
            config.heartbeat = Duration::from_millis(ms);
        }
        if let Some(n) = l.heartbeat_misses {
            config.heartbeat_misses = n;
        }
        if let Some(ms) = l.handshake_timeout_ms {
            config.handshake_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = l.max_frame {
            config.max_frame = n;
        }
        if let Some(n) = l.queue_soft_limit {
            config.queue_soft_limit = n;
        }
        if let Some(n) = l.queue_hard_limit {
            config.queue_hard_limit = n;
        }
        if let Some(n) = l.max_connections {
            config.max_connections = n;
        }
        if config.queue_soft_limit > config.queue_hard_limit {
            bail!(
                "limits.queue_soft_limit ({}) is above limits.queue_hard_limit ({})",
                config.queue_soft_limit,
                config.queue_hard_limit
            );
        }
        Ok(config)
    }
}

/// The 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<FileConfig> {
        FileConfig::parse(text, Path::new("hub.toml"))
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../netsvc.example.toml");
        let config = parse(text).unwrap();
        config.exchange_config().unwrap();
        assert_eq!(config.listen.unwrap(), vec!["127.0.0.1:11111".to_owned()]);
    }

    #[test]
    fn unknown_keys_are_named_with_the_file() {
        let e = parse("listen = []\nlisen = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hub.toml:2:1"), "{e}");
        assert!(e.contains("lisen"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse("[limits]\nheartbeat = 5\n").unwrap_err().to_string();
        assert!(e.contains("heartbeat") && e.contains("hub.toml:2"), "{e}");
    }

    #[test]
    fn limits_map_onto_the_exchange_config() {
        let config = parse("[limits]\nheartbeat_ms = 250\nmax_connections = 7\n").unwrap();
        let ex = config.exchange_config().unwrap();
        assert_eq!(ex.heartbeat, Duration::from_millis(250));
        assert_eq!(ex.max_connections, 7);
        let e = parse("[limits]\nmax_frame = 0\n").unwrap_err();
        assert!(format!("{e:#}").contains("limits.max_frame"), "{e:#}");
        let bad = parse("[limits]\nqueue_soft_limit = 10\nqueue_hard_limit = 5\n").unwrap();
        assert!(bad.exchange_config().is_err());
        assert!(parse("retry = -1.0\n").is_err());
        assert!(parse("listen = \"127.0.0.1:1\"\n").is_err());
    }
}
