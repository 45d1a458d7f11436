//! `netsvc exchange`: an exchange server (hub).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use netsvc::{Exchange, Retry, Runtime};
use netsvc_ose::bridge::OseBridge;

use crate::cli::{DEFAULT_ADDRESS, ExchangeArgs};
use crate::config::{FileConfig, TlsFile};
use crate::output::status;
use crate::parse;
use crate::security::{self, ClientSecurityArgs};
use crate::signals::Signals;
use crate::{client, exit};

/// Seconds between attempts to reach a mesh peer when neither flag nor file says.
const DEFAULT_RETRY: Duration = Duration::from_secs(5);

/// The settings, after the command line has overridden the file.
#[derive(Debug)]
struct Settings {
    listen: Vec<String>,
    unix: Option<PathBuf>,
    group: String,
    connect: Vec<String>,
    retry: Duration,
    /// Whether the listen address is the built-in default (then say how to open it up).
    default_listen: bool,
    tls: Option<TlsFile>,
    users: Option<PathBuf>,
    unix_mode: Option<u32>,
    peer: ClientSecurityArgs,
    introspection: bool,
    /// Where original OSE processes connect, the OSE servers to join, and how.
    ose_listen: Vec<String>,
    ose_connect: Vec<String>,
    ose: netsvc_ose::bridge::OseConfig,
    /// With users: who the OSE peers act as (docs/SECURITY.md, *Doors*). HTTP requests
    /// log in each (docs/GATEWAY.md, *Logins*).
    ose_user: Option<String>,
    /// The NATS cluster joined as the backbone to the other hubs, if any.
    nats: Option<netsvc::exchange::NatsConfig>,
}

fn settings(args: ExchangeArgs, file: FileConfig) -> anyhow::Result<Settings> {
    let mut listen = if args.listen.is_empty() {
        file.listen.clone().unwrap_or_default()
    } else {
        args.listen
    };
    let unix = args.unix.or_else(|| file.unix.clone());
    let default_listen = listen.is_empty() && unix.is_none();
    if default_listen {
        listen.push(DEFAULT_ADDRESS.to_owned());
    }
    let group = args
        .group
        .or_else(|| file.group.clone())
        .unwrap_or_default();
    Ok(Settings {
        listen,
        unix,
        ose: {
            let mut ose = file.ose.config(&group)?;
            if !args.ose_allow.is_empty() {
                ose.allow = Some(
                    crate::config::ose_allow(&args.ose_allow)
                        .map_err(|e| anyhow::anyhow!("--ose-allow: {e}"))?,
                );
            }
            ose
        },
        group,
        connect: if args.connect.is_empty() {
            file.connect.clone().unwrap_or_default()
        } else {
            args.connect
        },
        retry: args
            .retry
            .or_else(|| file.retry.map(Duration::from_secs_f64))
            .unwrap_or(DEFAULT_RETRY),
        default_listen,
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFile {
                cert,
                key,
                client_ca: args.tls_client_ca,
                require_client_cert: args.require_client_cert,
            }),
            _ => file.tls,
        },
        users: args.users.or(file.users),
        unix_mode: match (args.unix_mode, &file.unix_mode) {
            (Some(mode), _) => Some(mode),
            (None, Some(text)) => Some(parse::file_mode(text).map_err(anyhow::Error::msg)?),
            (None, None) => None,
        },
        introspection: !args.no_introspection && file.introspection.unwrap_or(true),
        ose_listen: if args.ose_listen.is_empty() {
            file.ose.listen.clone().unwrap_or_default()
        } else {
            args.ose_listen
        },
        ose_connect: if args.ose_connect.is_empty() {
            file.ose.connect.clone().unwrap_or_default()
        } else {
            args.ose_connect
        },
        ose_user: args.ose_user.or_else(|| file.ose.user.clone()),
        nats: nats_config(&args.nats, args.nats_prefix, &file.nats)?,
        peer: ClientSecurityArgs {
            tls_ca: args.peer_tls_ca.or(file.peer.tls_ca),
            token_file: args.peer_token_file.or(file.peer.token_file),
            user: file.peer.user,
            password_file: file.peer.password_file,
            ..ClientSecurityArgs::default()
        },
    })
}

/// The NATS backbone's settings: the flags' URLs and prefix over the file's `[nats]`.
fn nats_config(
    urls: &[String],
    prefix: Option<String>,
    file: &crate::config::NatsFile,
) -> anyhow::Result<Option<netsvc::exchange::NatsConfig>> {
    let urls = if urls.is_empty() {
        file.urls.clone().unwrap_or_default()
    } else {
        urls.to_vec()
    };
    if urls.is_empty() {
        return Ok(None);
    }
    let mut config = netsvc::exchange::NatsConfig::new(urls);
    if let Some(prefix) = prefix.or_else(|| file.prefix.clone()) {
        config = config.with_prefix(prefix);
    }
    match (&file.user, &file.password_file, &file.token_file) {
        (Some(user), Some(password), None) => {
            config = config.with_user_password(user, security::first_line(password)?);
        }
        (None, None, Some(token)) => config = config.with_token(security::first_line(token)?),
        (None, None, None) => {}
        _ => anyhow::bail!(
            "[nats]: give either `user` with `password_file`, or `token_file`, not both"
        ),
    }
    Ok(Some(config))
}

pub(crate) async fn run(args: ExchangeArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    signals.install_hangup()?;
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let config = file.exchange_config()?;
    // The flags' gateway, else the file's `[http]`.
    let (http, http_options) = match (&args.http, &file.http) {
        (None, Some(section)) => (
            Some(section.listen.clone()),
            section.options(args.http_options.clone())?,
        ),
        _ => (args.http.clone(), args.http_options.clone()),
    };
    let settings = settings(args, file)?;
    let ose_door = ose_user(&settings)?;
    let tls = match &settings.tls {
        Some(t) => Some(security::server_tls(
            &t.cert,
            &t.key,
            t.client_ca.as_deref(),
            t.require_client_cert,
        )?),
        None => None,
    };

    let rt = Runtime::with_config(netsvc::RuntimeConfig::default())?;
    let mut builder = Exchange::server(&rt)
        .group(&settings.group)
        .config(config)
        .introspection(settings.introspection);
    if let Some(path) = &settings.users {
        builder = builder.users(security::load_users(path)?);
    }
    let exchange = settings
        .peer
        .apply(builder)?
        .build()
        .with_context(|| format!("invalid exchange group {:?}", settings.group))?;

    for address in &settings.listen {
        let bound = match &tls {
            Some(tls) => exchange.listen_tls(address, tls).await?,
            None => exchange.listen(address).await?,
        };
        let bound = match &tls {
            Some(_) => format!("{bound} (TLS)"),
            None => bound.to_string(),
        };
        if settings.default_listen {
            status(format_args!(
                "listening on {bound} (the default; --listen 0.0.0.0:11111 opens it to the network)"
            ));
        } else {
            status(format_args!("listening on {bound}"));
        }
    }
    if let Some(path) = &settings.unix {
        exchange.listen_unix_mode(path, settings.unix_mode).await?;
        status(format_args!("listening on unix:{}", path.display()));
    }
    for peer in &settings.connect {
        let connector = exchange.connect(peer, Retry::every(settings.retry))?;
        status(format_args!(
            "linking to {peer} (retrying every {:.1} s)",
            settings.retry.as_secs_f64()
        ));
        tokio::spawn(warn_if_refused(connector));
    }
    // Kept for the process's life: its tasks run until the exchange stops.
    let _backbone = match &settings.nats {
        Some(nats) => {
            let urls = nats.urls().join(",");
            // Its error names the URLs already.
            let backbone = exchange.join_nats(nats.clone()).await?;
            status(format_args!(
                "linking to the group's hubs through the NATS cluster at {urls}"
            ));
            Some(backbone)
        }
        None => None,
    };
    if !settings.group.is_empty() {
        status(format_args!("exchange group {:?}", settings.group));
    }

    if let Some(path) = &settings.users {
        status(format_args!(
            "logins required (users from {}; SIGHUP reloads it)",
            path.display()
        ));
    }
    // With users, the OSE peers act as a user of the users file, through a door: a runtime
    // of their own, linked to the hub like any logged-in peer.
    let ose_door = open_door(&exchange, ose_door, "the OSE peers").await?;
    // Kept for as long as the hub runs: dropping them stops accepting and joining; the OSE
    // connections already up end with the process.
    let (mut ose_listeners, mut ose_connectors) = (Vec::new(), Vec::new());
    if !settings.ose_listen.is_empty() || !settings.ose_connect.is_empty() {
        let ose_rt = ose_door.as_ref().map_or(&rt, |door| door.runtime());
        let bridge = OseBridge::new(ose_rt, settings.ose.clone());
        for address in &settings.ose_listen {
            let listener = bridge
                .listen(address)
                .await
                .with_context(|| format!("listening for OSE peers on {address}"))?;
            status(format_args!(
                "listening for OSE peers on {} (the original OSE exchange protocol)",
                listener.local_addr()
            ));
            ose_listeners.push(listener);
        }
        for address in &settings.ose_connect {
            ose_connectors.push(bridge.connect(address, Retry::every(settings.retry)));
            status(format_args!(
                "joining the OSE exchange at {address} (retrying every {:.1} s)",
                settings.retry.as_secs_f64()
            ));
        }
    }
    let http = match &http {
        Some(address) => {
            // With users, each HTTP request logs in and is served through its user's door.
            let logins = match &settings.users {
                Some(path) => {
                    let https = tls.is_some() || http_options.http_tls_cert.is_some();
                    check_http_passwords(address, https, path).await?;
                    super::gateway::Logins::InProcess(&exchange)
                }
                None => super::gateway::Logins::None,
            };
            Some(super::gateway::start(&rt, address, &http_options, tls.as_ref(), logins).await?)
        }
        None => None,
    };
    let stop = loop {
        match signals.recv_or_hangup().await {
            Some(stop) => break stop,
            None => reload(&exchange, &settings, http.as_ref()),
        }
    };
    status(format_args!("{}: shutting down", stop.name()));
    // No more OSE peers; those connected hear the services go, then the close.
    drop((ose_listeners, ose_connectors));
    if let Some(door) = &ose_door {
        door.runtime().shutdown();
    }
    if let Some(http) = http {
        http.stop().await;
    }
    // Withdraw first so that peers hear why, then flush and close every link.
    rt.shutdown();
    // The library removes its own Unix socket (and nothing that took its place) by then.
    exchange.shutdown(client::CLOSE_GRACE).await;
    status("exchange stopped");
    Ok(exit::OK)
}

/// The user the OSE peers act as, when the hub has users. Every way into a hub obeys the
/// users file, and the OSE protocol has no logins: with users, an OSE port that names no
/// user refuses to start, and a user named without users is a mistake.
fn ose_user(settings: &Settings) -> anyhow::Result<Option<&str>> {
    let used = !settings.ose_listen.is_empty() || !settings.ose_connect.is_empty();
    match (&settings.users, used, settings.ose_user.as_deref()) {
        (Some(_), true, None) => anyhow::bail!(
            "the OSE port has no logins of its own: with --users, name the user whose \
             permissions apply to it (--ose-user NAME or [ose] user = \"NAME\")"
        ),
        (None, _, Some(user)) => anyhow::bail!(
            "the OSE port acts as user {user:?} only with --users (there are no users to act as)"
        ),
        (Some(_), true, Some(user)) => Ok(Some(user)),
        _ => Ok(None),
    }
}

/// With users, HTTP requests may carry passwords (Basic): a hub refuses to serve them over
/// plain HTTP to the network unless the users file says `allow_plaintext_passwords`, as
/// its native port refuses such logins (docs/SECURITY.md, *Logins*).
async fn check_http_passwords(
    address: &str,
    https: bool,
    users: &std::path::Path,
) -> anyhow::Result<()> {
    if https {
        return Ok(());
    }
    let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host(address)
        .await
        .with_context(|| format!("cannot serve HTTP on {address}"))?
        .collect();
    if resolved.iter().all(|a| a.ip().is_loopback()) {
        return Ok(());
    }
    if security::load_users(users)?.allow_plaintext_passwords {
        status(format_args!(
            "HTTP on {address} takes passwords in clear from the network \
             (allow_plaintext_passwords = true in {})",
            users.display()
        ));
        return Ok(());
    }
    anyhow::bail!(
        "the HTTP gateway on {address} would take passwords in clear from the network: \
         give it HTTPS (--tls-cert and --tls-key, or --http-tls-cert and --http-tls-key), \
         listen on a loopback address, or set allow_plaintext_passwords = true in the users \
         file"
    )
}

/// Opens the door for `user` (if any) and waits until its link is synced, so that what
/// goes through it starts with the registry its user may see.
async fn open_door(
    exchange: &Exchange,
    user: Option<&str>,
    who: &str,
) -> anyhow::Result<Option<netsvc::Door>> {
    let Some(user) = user else { return Ok(None) };
    let door = exchange
        .door(user)
        .with_context(|| format!("{who} cannot act as user {user:?}"))?;
    door.connector()
        .synced_within(DOOR_READY)
        .await
        .with_context(|| format!("{who} cannot act as user {user:?}"))?;
    status(format_args!("{who} act as user {user:?}"));
    Ok(Some(door))
}

/// How long a door may take to link to its own hub at start.
const DOOR_READY: Duration = Duration::from_secs(10);

/// SIGHUP: the users file and the TLS certificate again. What does not load is reported
/// and the settings in force stay.
fn reload(exchange: &Exchange, settings: &Settings, http: Option<&super::gateway::HttpServer>) {
    if settings.users.is_none() && settings.tls.is_none() {
        status("SIGHUP: no users file or certificate to reload");
    }
    if let Some(path) = &settings.users {
        match security::load_users(path).and_then(|users| Ok(exchange.set_users(users)?)) {
            Ok(closed) => {
                // HTTP sessions end, and each user's door opens anew under the new rights
                // (before saying so: what follows the message is under the new users).
                if let Some(http) = http {
                    http.users_reloaded();
                }
                status(format_args!(
                    "users reloaded from {}; {closed} links closed to log in again",
                    path.display()
                ));
            }
            Err(e) => status(format_args!("users not reloaded, the old ones stay: {e:#}")),
        }
    }
    if let Some(t) = &settings.tls {
        let loaded = security::server_tls(
            &t.cert,
            &t.key,
            t.client_ca.as_deref(),
            t.require_client_cert,
        )
        .and_then(|tls| {
            exchange.reload_tls(&tls)?;
            Ok(tls)
        });
        match loaded {
            Ok(tls) => {
                status(format_args!(
                    "certificate reloaded from {}; new connections get it",
                    t.cert.display()
                ));
                if let Some(http) = http {
                    http.reload_tls(Some(&tls));
                }
            }
            Err(e) => {
                status(format_args!(
                    "certificate not reloaded, the old one stays: {e:#}"
                ));
                // An HTTPS certificate of its own is reloaded all the same.
                if let Some(http) = http {
                    http.reload_tls(None);
                }
            }
        }
    } else if let Some(http) = http {
        http.reload_tls(None);
    }
}

/// Warns when a mesh peer refuses this hub's first login, once: with credentials its
/// connector then stops for good (retrying would get this address locked out); without,
/// it goes on trying (the peer may refuse by address, or let anonymous peers in later).
async fn warn_if_refused(mut connector: netsvc::Connector) {
    let mut status = connector.status();
    loop {
        if status.phase == netsvc::LinkPhase::Synced {
            return;
        }
        if let Some(failure @ netsvc::LinkFailure::NotAuthorised(_)) = &status.last_failure {
            let peer = connector.address();
            if status.phase == netsvc::LinkPhase::Stopped {
                tracing::warn!("{peer}: {failure}; not retrying (fix the credentials and restart)");
            } else {
                tracing::warn!(
                    "{peer}: {failure}; this hub presents no credentials, and keeps trying"
                );
            }
            return;
        }
        if status.phase == netsvc::LinkPhase::Stopped {
            return;
        }
        status = connector.changed().await;
    }
}
