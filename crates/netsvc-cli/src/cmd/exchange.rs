//! `netsvc exchange`: an exchange server (hub).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use netsvc::{Exchange, Retry, Runtime};

use crate::cli::{DEFAULT_ADDRESS, ExchangeArgs};
use crate::config::FileConfig;
use crate::output::status;
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
}

fn settings(args: ExchangeArgs, file: &FileConfig) -> Settings {
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
    Settings {
        listen,
        unix,
        group: args
            .group
            .or_else(|| file.group.clone())
            .unwrap_or_default(),
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
    }
}

pub(crate) async fn run(args: ExchangeArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let config = file.exchange_config()?;
    let settings = settings(args, &file);

    let rt = Runtime::with_config(netsvc::RuntimeConfig::default())?;
    let exchange = Exchange::server(&rt)
        .group(&settings.group)
        .config(config)
        .build()
        .with_context(|| format!("invalid exchange group {:?}", settings.group))?;

    for address in &settings.listen {
        let bound = exchange.listen(address).await?;
        if settings.default_listen {
            status(format_args!(
                "listening on {bound} (the default; --listen 0.0.0.0:11111 opens it to the network)"
            ));
        } else {
            status(format_args!("listening on {bound}"));
        }
    }
    if let Some(path) = &settings.unix {
        exchange.listen_unix(path).await?;
        status(format_args!("listening on unix:{}", path.display()));
    }
    for peer in &settings.connect {
        exchange.connect(peer, Retry::every(settings.retry))?;
        status(format_args!(
            "linking to {peer} (retrying every {:.1} s)",
            settings.retry.as_secs_f64()
        ));
    }
    if !settings.group.is_empty() {
        status(format_args!("exchange group {:?}", settings.group));
    }

    let stop = signals.recv().await;
    status(format_args!("{}: shutting down", stop.name()));
    // Withdraw first so that peers hear why, then flush and close every link.
    rt.shutdown();
    // The library removes its own Unix socket (and nothing that took its place) by then.
    exchange.shutdown(client::CLOSE_GRACE).await;
    status("exchange stopped");
    Ok(exit::OK)
}
