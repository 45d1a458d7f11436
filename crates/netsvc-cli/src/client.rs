//! Reaching an exchange from a client command, shared by services, call, publish, monitor
//! and `demo --connect`.
//!
//! The library's client connects in the background and retries for ever; a command line
//! tool must instead either get a usable link within a bounded time or say clearly that it
//! could not. "Usable" means synced: [`ConnectionState::Resynced`] fires once the peer's
//! whole registry has arrived, so a lookup right after [`connect`] sees every service the
//! hub knows, and a call to a missing service fails with 46 at once instead of racing the
//! registry sync.

use std::time::Duration;

use anyhow::{Context as _, bail};
use netsvc::{ConnectionState, Exchange, Retry, Runtime};

use crate::Exit;
use crate::cli::ConnectArgs;
use crate::output::status;
use crate::signals::Signals;

/// How often a client retries while waiting for the exchange, and later relinks after a
/// loss (the library keeps the link up on its own once connected).
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// How long a command's graceful exit waits for its link to flush and close.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A runtime linked and synced to an exchange.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) rt: Runtime,
    pub(crate) exchange: Exchange,
    /// The exchange's address as given.
    pub(crate) address: String,
}

impl Connection {
    /// Leaves cleanly: withdraws this process's services (peers hear "process exit") and
    /// waits for what is queued on the link to be sent before closing it.
    pub(crate) async fn close(self) {
        self.rt.shutdown();
        self.exchange.shutdown(CLOSE_GRACE).await;
    }
}

/// Connects a new runtime to the exchange and waits until the link is synced.
///
/// Fails after `args.retry` with an error naming the address; a stop signal meanwhile ends
/// the command with 130/143.
pub(crate) async fn connect(
    args: &ConnectArgs,
    signals: &mut Signals,
) -> anyhow::Result<Connection> {
    let rt = Runtime::with_config(netsvc::RuntimeConfig::default())?;
    let exchange = Exchange::client(&rt)
        .group(&args.group)
        .build()
        .with_context(|| format!("invalid exchange group {:?}", args.group))?;
    link(rt, exchange, &args.address, args.retry, signals).await
}

/// Links an existing client runtime to `address` and waits until the link is synced.
pub(crate) async fn link(
    rt: Runtime,
    exchange: Exchange,
    address: &str,
    wait: Duration,
    signals: &mut Signals,
) -> anyhow::Result<Connection> {
    // Watch before connecting so that no event can be missed.
    let mut events = exchange.watch_connections();
    exchange.connect(address, Retry::every(RETRY_EVERY))?;
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    let mut linked = false;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) if e.state == ConnectionState::Resynced => break,
                Ok(e) if e.state == ConnectionState::Active => {
                    tracing::debug!(peer = %e.peer_process, "link up; waiting for the registry");
                    linked = true;
                }
                Ok(e) => {
                    tracing::debug!(reason = ?e.reason, "link down before it was synced");
                }
                Err(e) => bail!("lost track of the exchange connection: {e}"),
            },
            () = &mut deadline => {
                exchange.shutdown(Duration::ZERO).await;
                bail!("{}", unreachable_message(address, wait, linked).await);
            }
            stop = signals.recv() => {
                return Err(Exit(stop.exit_code()).into());
            }
        }
    }
    tracing::info!(%address, "connected to the exchange");
    Ok(Connection {
        rt,
        exchange,
        address: address.to_owned(),
    })
}

/// Says on stderr when the link to the exchange is lost and when it is back, for the
/// commands that run until stopped (the library relinks on its own, silently). Stops when
/// the returned guard is dropped: drop it before closing, or the command's own exit would
/// be reported as a loss.
#[must_use = "reporting stops when the guard is dropped"]
pub(crate) fn report_link_changes(exchange: &Exchange, address: &str) -> LinkReporter {
    let mut events = exchange.watch_connections();
    let address = address.to_owned();
    LinkReporter(tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            match e.state {
                ConnectionState::Inactive => status(format_args!(
                    "lost the exchange at {address}: {}; relinking",
                    e.reason.as_deref().unwrap_or("link closed")
                )),
                ConnectionState::Resynced => status(format_args!("relinked to {address}")),
                _ => {}
            }
        }
    }))
}

/// See [`report_link_changes`].
#[derive(Debug)]
pub(crate) struct LinkReporter(tokio::task::JoinHandle<()>);

impl Drop for LinkReporter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why the exchange could not be used, as precisely as can be told.
///
/// The library retries silently (its reasons are debug logs), so after the wait one direct
/// connection attempt tells "nothing listens there" (with the system's reason) from
/// "something listens but the netsvc link was not established".
async fn unreachable_message(address: &str, waited: Duration, linked: bool) -> String {
    let secs = waited.as_secs_f64();
    if linked {
        return format!(
            "connected to the exchange at {address} but its registry did not arrive \
             within {secs:.1} s; try a longer --retry"
        );
    }
    let probe = tokio::time::timeout(Duration::from_secs(1), probe(address)).await;
    match probe {
        Ok(Ok(())) => format!(
            "the exchange at {address} accepts connections but no netsvc link was established \
             within {secs:.1} s (a different exchange group, a refusal, or not a netsvc \
             exchange? -v shows why)"
        ),
        Ok(Err(e)) => format!(
            "cannot reach the exchange at {address} (waited {secs:.1} s: {e}); is a hub \
             running? (netsvc exchange)"
        ),
        Err(_) => format!(
            "cannot reach the exchange at {address} (waited {secs:.1} s); is a hub running? \
             (netsvc exchange)"
        ),
    }
}

async fn probe(address: &str) -> std::io::Result<()> {
    match address.strip_prefix("unix:") {
        Some(path) => tokio::net::UnixStream::connect(path).await.map(drop),
        None => tokio::net::TcpStream::connect(address).await.map(drop),
    }
}
