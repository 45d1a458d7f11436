//! `netsvc gateway`: a client process that serves HTTP for the services of an exchange;
//! also the HTTP server `netsvc exchange --http` starts (docs/GATEWAY.md).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use netsvc::Runtime;
use netsvc_gateway::{Gateway, GatewayConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cli::{GatewayArgs, HttpOptions};
use crate::client::{self, Target};
use crate::exit;
use crate::output::status;
use crate::parse::Wait;
use crate::signals::Signals;

/// How long requests in progress get to finish when the server stops; event streams never
/// finish, so after this the server is closed regardless.
const HTTP_GRACE: Duration = Duration::from_secs(2);

/// A running HTTP gateway.
#[derive(Debug)]
pub(crate) struct HttpServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), netsvc_gateway::GatewayError>>,
}

impl HttpServer {
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

/// Binds `address` and serves the gateway for `rt`'s services; says where on stderr.
pub(crate) async fn start(
    rt: &Runtime,
    address: &str,
    options: &HttpOptions,
) -> anyhow::Result<HttpServer> {
    let config = GatewayConfig::default()
        .with_exposure(options.expose.clone())
        .with_request_timeout(options.request_timeout)
        .with_max_body(options.max_body);
    let (stop, stopped) = oneshot::channel::<()>();
    let (bound, serve) = Gateway::new(rt.clone(), config)
        .bind(address, async move {
            let _ = stopped.await;
        })
        .await
        .with_context(|| format!("cannot serve HTTP on {address}"))?;
    say_where(bound);
    Ok(HttpServer {
        stop,
        task: tokio::spawn(serve),
    })
}

fn say_where(bound: SocketAddr) {
    if bound.ip().is_loopback() {
        status(format_args!("HTTP gateway on http://{bound}/"));
    } else {
        status(format_args!(
            "HTTP gateway on http://{bound}/ (open to the network: anyone who can reach it may \
             call the exposed services, with no login)"
        ));
    }
}

pub(crate) async fn run(args: GatewayArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    let rt = Runtime::with_config(netsvc::RuntimeConfig::default())?;
    // The port first, so that a port in use fails at once; until the link is up every
    // service is unknown (404).
    let server = start(&rt, &args.http, &args.options).await?;
    let target = Target::of(&args.connect, Wait(None));
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
    let stop = signals.recv().await;
    status(format_args!("{}: stopping the HTTP gateway", stop.name()));
    server.stop().await;
    drop(reporter);
    conn.close().await;
    Ok(exit::OK)
}
