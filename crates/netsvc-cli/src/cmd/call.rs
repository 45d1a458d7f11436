//! `netsvc call`: one request, its result on stdout or its failure on stderr.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use netsvc::{Failure, Value, names};

use crate::cli::CallArgs;
use crate::client::{self, Target};
use crate::parse::{self, Wait};
use crate::signals::Signals;
use crate::{exit, output};

/// How long a one-shot command waits for the exchange unless `--wait` says.
pub(crate) const DEFAULT_WAIT: Wait = Wait(Some(std::time::Duration::from_secs(5)));

pub(crate) async fn run(args: CallArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    // A service address (`1@host:42!echo`, as `services` prints it) names one instance of
    // a name; a name, the first in the registry.
    let address = args.service.contains('!');
    let name = args
        .service
        .rsplit_once('!')
        .map_or(args.service.as_str(), |(_, name)| name);
    names::check_service_name(name)
        .with_context(|| format!("invalid service name {:?}", args.service))?;
    names::check_method_name(&args.method)
        .with_context(|| format!("invalid method name {:?}", args.method))?;
    let values = match &args.args_file {
        Some(path) => args_from(path)?,
        None => args
            .args
            .iter()
            .enumerate()
            .map(|(i, text)| parse::value(text, args.strict, &format!("argument {}", i + 1)))
            .collect::<anyhow::Result<Vec<Value>>>()?,
    };

    let conn = client::connect(Target::of(&args.connect, DEFAULT_WAIT), signals).await?;
    // A runtime endpoint needs no service of our own: the request simply has no sender.
    let target = if address {
        // The link is synced: the registry holds every service the hub may show us.
        match conn.rt.registry().lookup_address(&args.service) {
            Some(binding) => netsvc::Target::from(binding),
            None => {
                conn.close().await;
                print_failure(&Failure::service_unavailable(format!(
                    "No service at address {:?}.",
                    args.service
                )));
                return Ok(exit::FAILURE);
            }
        }
    } else {
        netsvc::Target::from(args.service.as_str())
    };
    let endpoint = conn.rt.endpoint(target).with_timeout(args.timeout.0);
    let outcome = tokio::select! {
        outcome = endpoint.call(&args.method, values) => outcome,
        stop = signals.recv() => {
            // Dropping the call tells the service the request is abandoned.
            conn.close().await;
            return Ok(stop.exit_code());
        }
    };
    conn.close().await;
    match outcome {
        Ok(result) => {
            output::line(&netsvc::value::json::to_json(&result).to_string())?;
            Ok(exit::OK)
        }
        Err(failure) => {
            print_failure(&failure);
            Ok(exit::FAILURE)
        }
    }
}

/// The arguments from `--args FILE` (`-`: stdin): a JSON array.
fn args_from(path: &Path) -> anyhow::Result<Vec<Value>> {
    let (text, source) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the arguments from stdin")?;
        (text, "stdin".to_owned())
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the arguments from {}", path.display()))?;
        (text, path.display().to_string())
    };
    parse::json_args(&text, &source)
}

/// A failure's four fields as one JSON line on stderr.
fn print_failure(failure: &Failure) {
    match serde_json::to_string(failure) {
        Ok(json) => eprintln!("{json}"),
        Err(_) => eprintln!("{failure}"),
    }
}
