//! `netsvc call`: one request, its result on stdout or its failure on stderr.

use anyhow::Context as _;
use netsvc::{Failure, Value, names};

use crate::cli::CallArgs;
use crate::signals::Signals;
use crate::{client, exit, output, parse};

pub(crate) async fn run(args: CallArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    names::check_service_name(&args.service)
        .with_context(|| format!("invalid service name {:?}", args.service))?;
    names::check_method_name(&args.method)
        .with_context(|| format!("invalid method name {:?}", args.method))?;
    let values = args
        .args
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse::value(text, args.strict).with_context(|| format!("argument {}", i + 1))
        })
        .collect::<anyhow::Result<Vec<Value>>>()?;

    let conn = client::connect(&args.connect, signals).await?;
    // A runtime endpoint needs no service of our own: the request simply has no sender.
    let endpoint = conn
        .rt
        .endpoint(args.service.as_str())
        .with_timeout(args.timeout.0);
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

/// A failure's four fields as one JSON line on stderr.
fn print_failure(failure: &Failure) {
    match serde_json::to_string(failure) {
        Ok(json) => eprintln!("{json}"),
        Err(_) => eprintln!("{failure}"),
    }
}
