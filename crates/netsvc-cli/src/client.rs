//! Reaching an exchange from a client command, shared by services, call, publish, monitor,
//! serve and `demo --connect`.
//!
//! The library's [`Connector`] keeps trying, every `--retry` seconds, and knows why each
//! attempt failed. A command waits until the link is **synced** (the hub's whole registry
//! has arrived, so a lookup sees every service the hub knows and a call to a missing one
//! fails with 46 at once):
//!
//! - within `--wait` seconds ([`Wait`] with a limit: the default of the one-shot commands),
//!   failing with the cause the connector knows, and at once when that cause is final
//!   (another group, not a netsvc exchange, TLS, a refused login);
//! - or for as long as it takes (the default of the commands that run until stopped),
//!   saying once on stderr that it is waiting and why, and again only if the cause changes.
//!   A refused login ends this wait too: the library does not retry a first login that was
//!   refused (each retry would count against this address on the hub).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use netsvc::{
    ConnectError, ConnectionState, Connector, ConnectorStatus, Exchange, ExchangeConfig,
    LinkFailure, LinkPhase, RecvError, Retry, Runtime,
};

use crate::Exit;
use crate::cli::ConnectArgs;
use crate::output::status;
use crate::parse::Wait;
use crate::security::ClientSecurityArgs;
use crate::signals::Signals;

/// How long a command's graceful exit waits for its link to flush and close.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The longest handshake a client allows (the library's default).
const MAX_HANDSHAKE: Duration = Duration::from_secs(5);

/// Where and how a client links.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The exchange's address as given.
    pub(crate) address: String,
    /// The exchange group this client joins.
    pub(crate) group: String,
    /// The delay between attempts, and before relinking after a loss.
    pub(crate) retry: Duration,
    /// How long to wait for the first link.
    pub(crate) wait: Wait,
    /// TLS and credentials.
    pub(crate) security: ClientSecurityArgs,
}

impl Target {
    /// The target of a client command whose `--wait` defaults to `default_wait`.
    pub(crate) fn of(args: &ConnectArgs, default_wait: Wait) -> Self {
        Self {
            address: args.address.clone(),
            group: args.group.clone(),
            retry: args.retry,
            wait: args.wait.unwrap_or(default_wait),
            security: args.security.clone(),
        }
    }
}

/// A runtime linked and synced to an exchange.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) rt: Runtime,
    pub(crate) exchange: Exchange,
    pub(crate) connector: Connector,
    pub(crate) target: Target,
}

impl Connection {
    /// The exchange's address as given.
    pub(crate) fn address(&self) -> &str {
        &self.target.address
    }

    /// Leaves cleanly: withdraws this process's services (peers hear "process exit") and
    /// waits for what is queued on the link to be sent before closing it.
    pub(crate) async fn close(self) {
        self.rt.shutdown();
        self.exchange.shutdown(CLOSE_GRACE).await;
    }
}

/// A client exchange of `target`'s group for `rt`. With a bounded wait, a handshake may take
/// at most half of it, so that a server that accepts but never answers is reported as such
/// within the wait rather than as an attempt still under way.
pub(crate) fn client_exchange(rt: &Runtime, target: &Target) -> anyhow::Result<Exchange> {
    let mut config = ExchangeConfig::default();
    if let Some(limit) = target.wait.0 {
        config.handshake_timeout = (limit / 2).clamp(Duration::from_millis(100), MAX_HANDSHAKE);
    }
    let builder = Exchange::client(rt).group(&target.group).config(config);
    target
        .security
        .apply(builder)?
        .build()
        .with_context(|| format!("invalid exchange group {:?}", target.group))
}

/// Connects a new runtime to the exchange and waits until the link is synced.
pub(crate) async fn connect(target: Target, signals: &mut Signals) -> anyhow::Result<Connection> {
    let rt = Runtime::with_config(netsvc::RuntimeConfig::default())?;
    let exchange = client_exchange(&rt, &target)?;
    link(rt, exchange, target, signals).await
}

/// Links an existing client runtime to the target and waits until the link is synced, as
/// long as `target.wait` says. A stop signal meanwhile ends the command with 130/143.
pub(crate) async fn link(
    rt: Runtime,
    exchange: Exchange,
    target: Target,
    signals: &mut Signals,
) -> anyhow::Result<Connection> {
    let connector = exchange.connect(&target.address, Retry::every(target.retry))?;
    let outcome = match target.wait.0 {
        Some(limit) => tokio::select! {
            synced = connector.synced_within(limit) => synced
                .map_err(|e| anyhow::anyhow!(link_error(&e, &connector.status(), &target))),
            stop = signals.recv() => Err(Exit(stop.exit_code()).into()),
        },
        None => wait_forever(connector.clone(), &target, signals).await,
    };
    if let Err(e) = outcome {
        exchange.shutdown(Duration::ZERO).await;
        return Err(e);
    }
    tracing::info!(address = %target.address, "connected to the exchange");
    Ok(Connection {
        rt,
        exchange,
        connector,
        target,
    })
}

/// Waits until the connector is synced, saying on stderr why it is not yet.
async fn wait_forever(
    mut connector: Connector,
    target: &Target,
    signals: &mut Signals,
) -> anyhow::Result<()> {
    let mut said = None;
    loop {
        let now = connector.status();
        match now.phase {
            LinkPhase::Synced => break,
            LinkPhase::Stopped => {
                let why = now.last_failure.as_ref().map_or_else(
                    || "the connection was stopped".to_owned(),
                    |failure| cause(failure, target),
                );
                anyhow::bail!("no link to the exchange at {}: {why}", target.address)
            }
            _ => say_why(&now, target, &mut said),
        }
        tokio::select! {
            _ = connector.changed() => {}
            stop = signals.recv() => return Err(Exit(stop.exit_code()).into()),
        }
    }
    if said.is_some() {
        status(format_args!("linked to the exchange at {}", target.address));
    }
    Ok(())
}

/// Says why the last attempt failed, unless that has been said already.
fn say_why(now: &ConnectorStatus, target: &Target, said: &mut Option<String>) {
    let Some(failure) = &now.last_failure else {
        return;
    };
    let why = cause(failure, target);
    let key = without_numbers(&why);
    if said.as_deref() == Some(key.as_str()) {
        return;
    }
    if matches!(failure, LinkFailure::NotAuthorised(_)) {
        // The library spaces out the retries of a refused login (see `Exchange::connect`).
        status(format_args!(
            "waiting for the exchange at {}: {why}; retrying at longer intervals (up to 60 s)",
            target.address
        ));
    } else {
        status(format_args!(
            "waiting for the exchange at {}: {why}; retrying every {:.1} s",
            target.address,
            target.retry.as_secs_f64()
        ));
    }
    *said = Some(key);
}

/// `text` without its digits: what two descriptions of one cause have in common when the
/// peer's words carry a time, a count or a delay that differs on every attempt.
fn without_numbers(text: &str) -> String {
    text.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// Why an attempt failed, with what the user can do about it where that is clear.
pub(crate) fn cause(failure: &LinkFailure, target: &Target) -> String {
    match failure {
        LinkFailure::Refused(_) => format!("{failure}; is a hub running? (netsvc exchange)"),
        LinkFailure::GroupMismatch(_) => format!(
            "{failure}; this client asked for group {:?}: give the hub's group with -g/--group",
            target.group
        ),
        LinkFailure::HandshakeTimeout => {
            format!("{failure} (is it a netsvc exchange, and is it overloaded?)")
        }
        LinkFailure::NotNetsvc(_) => format!("{failure}; is {} the right address?", target.address),
        LinkFailure::NotAuthorised(_) if target.security.credentials().ok().flatten().is_none() => {
            format!("{failure}; log in with --user (and NETSVC_PASSWORD) or --token-file")
        }
        LinkFailure::NotAuthorised(_) => {
            format!("{failure}; check the user and password or token")
        }
        LinkFailure::Tls(_) if target.security.tls_ca.is_none() => {
            format!("{failure}; for a TLS hub give --tls-ca FILE")
        }
        _ => failure.to_string(),
    }
}

/// The error of a bounded wait that ended without a synced link.
fn link_error(error: &ConnectError, now: &ConnectorStatus, target: &Target) -> String {
    let mut text = format!("no link to the exchange at {}", error.address);
    if let Some(waited) = error.waited {
        let _ = write!(text, " within {:.1} s", waited.as_secs_f64());
    }
    let why = match (&error.cause, now.phase) {
        (Some(failure), _) => cause(failure, target),
        (None, _) if error.stopped => "the connection was stopped".to_owned(),
        (None, LinkPhase::Linked | LinkPhase::Synced) => {
            "linked, but the hub's registry did not arrive in time; try a longer --wait".to_owned()
        }
        (None, _) => "no attempt had completed yet (the connection or its handshake was still \
                      under way); try a longer --wait"
            .to_owned(),
    };
    let _ = write!(text, ": {why}");
    text
}

/// Says on stderr when the link to the exchange is lost, why it cannot be relinked yet
/// (once per cause), and when it is back, for the commands that run until stopped (the
/// library relinks on its own, silently). Stops when the returned guard is dropped: drop it
/// before closing, or the command's own exit would be reported as a loss.
#[must_use = "reporting stops when the guard is dropped"]
pub(crate) fn report_link_changes(conn: &Connection) -> LinkReporter {
    let mut events = conn.exchange.watch_connections();
    let mut connector = conn.connector.clone();
    let target = conn.target.clone();
    LinkReporter(tokio::spawn(async move {
        let mut lost = false;
        let mut said = None;
        loop {
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Ok(e) if e.state == ConnectionState::Inactive => {
                        status(format_args!(
                            "lost the exchange at {}: {}; relinking every {:.1} s",
                            target.address,
                            e.reason.as_deref().unwrap_or("link closed"),
                            target.retry.as_secs_f64()
                        ));
                        lost = true;
                        said = None;
                    }
                    Ok(_) | Err(RecvError::Lagged) => {}
                    Err(_) => return,
                },
                now = connector.changed() => match now.phase {
                    // Once stopped it never changes again.
                    LinkPhase::Stopped => return,
                    LinkPhase::Synced if lost => {
                        status(format_args!("relinked to {}", target.address));
                        lost = false;
                    }
                    LinkPhase::Connecting if lost => say_why(&now, &target, &mut said),
                    _ => {}
                },
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
