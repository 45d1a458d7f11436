//! `netsvc gateway`: a client process that serves HTTP for the services of an exchange;
//! also the HTTP server `netsvc exchange --http` starts (docs/GATEWAY.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use netsvc::Runtime;
use netsvc_gateway::{Gateway, GatewayConfig, RemoteHub};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cli::{GatewayArgs, HttpOptions};
use crate::client::{self, Target};
use crate::exit;
use crate::output::status;
use crate::parse::Wait;
use crate::security;
use crate::signals::Signals;
use netsvc::security::ServerTls;

/// How long requests in progress get to finish when the server stops; event streams never
/// finish, so after this the server is closed regardless.
const HTTP_GRACE: Duration = Duration::from_secs(2);

/// A running HTTP gateway.
#[derive(Debug)]
pub(crate) struct HttpServer {
    gateway: Gateway,
    /// `--http-tls-cert` and `--http-tls-key`, to read again on SIGHUP.
    own_tls: Option<(PathBuf, PathBuf)>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), netsvc_gateway::GatewayError>>,
}

impl HttpServer {
    /// On SIGHUP: an HTTPS server reads its own certificate files again, or takes the
    /// hub's `reloaded` certificate if it serves that one. Says what it did.
    /// Serves until SIGINT or SIGTERM, reloading its own HTTPS certificate at each SIGHUP.
    async fn serve_until_stopped(&self, signals: &mut Signals) -> crate::signals::Stop {
        loop {
            match signals.recv_or_hangup().await {
                Some(stop) => return stop,
                None if self.own_tls.is_some() => self.reload_tls(None),
                None => status("SIGHUP: no HTTPS certificate to reload"),
            }
        }
    }

    pub(crate) fn reload_tls(&self, reloaded: Option<&ServerTls>) {
        let tls = match &self.own_tls {
            Some((cert, key)) => match security::server_tls(cert, key, None, false) {
                Ok(tls) => tls,
                Err(e) => {
                    status(format_args!(
                        "HTTPS certificate not reloaded, the old one stays: {e:#}"
                    ));
                    return;
                }
            },
            None => match reloaded {
                Some(tls) => tls.clone(),
                None => return,
            },
        };
        match self.gateway.reload_tls(&tls) {
            Ok(true) => status("HTTPS certificate reloaded; new connections get it"),
            Ok(false) => {}
            Err(e) => status(format_args!(
                "HTTPS certificate not reloaded, the old one stays: {e}"
            )),
        }
    }

    /// The hub's users were reloaded: sessions end, doors open anew.
    pub(crate) fn users_reloaded(&self) {
        self.gateway.users_reloaded();
    }

    /// Stops accepting, gives requests in progress [`HTTP_GRACE`], then closes the rest.
    pub(crate) async fn stop(self) {
        // The server may be gone already (its error is reported then).
        let _ = self.stop.send(());
        let mut task = self.task;
        match tokio::time::timeout(HTTP_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => status(format_args!("HTTP gateway: {e}")),
            Ok(Err(e)) => status(format_args!("HTTP gateway task: {e}")),
            Err(_) => task.abort(),
        }
    }
}

/// Whom the HTTP requests log in to, if anyone.
#[derive(Debug)]
pub(crate) enum Logins<'a> {
    /// Nobody: every request acts as the gateway's runtime.
    None,
    /// The users of the hub of this process (`netsvc exchange --users --http`).
    InProcess(&'a netsvc::Exchange),
    /// A hub of another process, each request in a link of its own (`netsvc gateway
    /// --logins`).
    Remote(RemoteHub),
}

/// Binds `address` and serves the gateway for `rt`'s services; says where on stderr. HTTPS
/// with `--http-tls-cert`, else with `fallback_tls` (the hub's certificate) if there is one.
pub(crate) async fn start(
    rt: &Runtime,
    address: &str,
    options: &HttpOptions,
    fallback_tls: Option<&ServerTls>,
    logins: Logins<'_>,
) -> anyhow::Result<HttpServer> {
    let mut config = GatewayConfig::default()
        .with_exposure(options.expose.clone())
        .with_request_timeout(options.request_timeout)
        .with_max_body(options.max_body);
    let tls = match (&options.http_tls_cert, &options.http_tls_key) {
        (Some(cert), Some(key)) => Some(security::server_tls(cert, key, None, false)?),
        _ => fallback_tls.cloned(),
    };
    let https = tls.is_some();
    if let Some(tls) = tls {
        config = config.with_tls(tls);
    }
    config = config
        .with_connection_limits(options.max_connections, options.idle_timeout)
        .with_header_read_timeout(options.header_timeout);
    for name in &options.publishers {
        config = config.with_publisher(name);
    }
    let own_tls = options
        .http_tls_cert
        .clone()
        .zip(options.http_tls_key.clone());
    let with_logins = !matches!(logins, Logins::None);
    let gateway = match logins {
        Logins::InProcess(exchange) => Gateway::with_logins(rt.clone(), exchange.clone(), config),
        Logins::Remote(hub) => Gateway::with_remote_logins(rt.clone(), hub, config)?,
        Logins::None => Gateway::new(rt.clone(), config),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let (bound, serve) = gateway
        .clone()
        .bind(address, async move {
            let _ = stopped.await;
        })
        .await
        .with_context(|| format!("cannot serve HTTP on {address}"))?;
    say_where(bound, https, with_logins);
    Ok(HttpServer {
        gateway,
        own_tls,
        stop,
        task: tokio::spawn(serve),
    })
}

fn say_where(bound: SocketAddr, https: bool, logins: bool) {
    let scheme = if https { "https" } else { "http" };
    if logins {
        status(format_args!(
            "HTTP gateway on {scheme}://{bound}/ (each request logs in: Basic, Bearer, or the \
             page's login)"
        ));
    } else if bound.ip().is_loopback() {
        status(format_args!("HTTP gateway on {scheme}://{bound}/"));
    } else {
        status(format_args!(
            "HTTP gateway on {scheme}://{bound}/ (open to the network: anyone who can reach it \
             may call the exposed services, with no login)"
        ));
    }
}

pub(crate) async fn run(args: GatewayArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    // SIGHUP reloads the HTTPS certificate rather than ending the process.
    signals.install_hangup()?;
    let rt = Runtime::with_config(netsvc::RuntimeConfig::default())?;
    let target = Target::of(&args.connect, Wait(None));
    if args.logins {
        return run_with_logins(rt, args, target, signals).await;
    }
    // The port first, so that a port in use fails at once; until the link is up every
    // service is unknown (404).
    let server = start(&rt, &args.http, &args.options, None, Logins::None).await?;
    let exchange = client::client_exchange(&rt, &target)?;
    let conn = match client::link(rt, exchange, target, signals).await {
        Ok(conn) => conn,
        Err(e) => {
            server.stop().await;
            return Err(e);
        }
    };
    let reporter = client::report_link_changes(&conn);
    status(format_args!("gateway linked to {}", conn.address()));
    let stop = server.serve_until_stopped(signals).await;
    status(format_args!("{}: stopping the HTTP gateway", stop.name()));
    server.stop().await;
    drop(reporter);
    conn.close().await;
    Ok(exit::OK)
}

/// `netsvc gateway --logins`: no link of the gateway's own (it would serve nobody); each
/// request logs in to the hub in a link of its own, with its own credentials.
async fn run_with_logins(
    rt: Runtime,
    args: GatewayArgs,
    target: Target,
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    let https = args.options.http_tls_cert.is_some();
    if !https && !args.http_plaintext_passwords && !all_loopback(&args.http).await? {
        anyhow::bail!(
            "the HTTP gateway on {} would take passwords in clear from the network: give it \
             HTTPS (--http-tls-cert and --http-tls-key), listen on a loopback address, or give \
             --http-plaintext-passwords",
            args.http
        );
    }
    if target.security.user.is_some() || target.security.token_file.is_some() {
        status("--logins: the gateway has no login of its own; --user/--token-file are not used");
    }
    let mut hub = RemoteHub::new(&target.address)
        .group(&target.group)
        .retry(target.retry)
        .plaintext_passwords(args.http_plaintext_passwords);
    if let Some(tls) = target.security.tls()? {
        hub = hub.tls(tls);
    }
    let server = start(&rt, &args.http, &args.options, None, Logins::Remote(hub)).await?;
    status(format_args!(
        "gateway logs each HTTP request in to {}",
        target.address
    ));
    let stop = server.serve_until_stopped(signals).await;
    status(format_args!("{}: stopping the HTTP gateway", stop.name()));
    server.stop().await;
    rt.shutdown();
    Ok(exit::OK)
}

/// Whether every address `address` resolves to is a loopback one.
async fn all_loopback(address: &str) -> anyhow::Result<bool> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .with_context(|| format!("cannot serve HTTP on {address}"))?
        .collect();
    Ok(resolved.iter().all(|a| a.ip().is_loopback()))
}
