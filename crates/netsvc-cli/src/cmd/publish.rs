//! `netsvc publish`: reports from the command line or from stdin, as a named service.
//!
//! netsvc caches reports at their publisher (there is no broker-side retention), so the
//! command stays available as the service for as long as its reports should be seen by
//! late subscribers: the lifetime of a one-shot report (until interrupted for `forever`),
//! or until EOF when reading stdin.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::Context as _;
use netsvc::{Lifetime, ServiceHandle, Value, names};
use tokio::sync::mpsc;

use crate::cli::PublishArgs;
use crate::client::{self, Connection, Target};
use crate::exit;
use crate::output::status;
use crate::parse::{self, Wait};
use crate::signals::Signals;

pub(crate) async fn run(args: PublishArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    if args.service.is_empty() {
        anyhow::bail!("--service needs a name (anonymous services cannot be monitored)");
    }
    names::check_service_name(&args.service)
        .with_context(|| format!("invalid service name {:?}", args.service))?;
    let one_shot = match (&args.subject, &args.value) {
        (Some(subject), Some(value)) => {
            names::check_subject(subject)
                .with_context(|| format!("invalid subject {subject:?}"))?;
            let value = parse::value(value, args.strict, "VALUE")?;
            Some((subject.clone(), value))
        }
        _ => None,
    };

    // Reading stdin, it runs until EOF or a signal: it waits for the hub as long as it takes.
    let default_wait = if one_shot.is_some() {
        super::call::DEFAULT_WAIT
    } else {
        Wait(None)
    };
    let conn = client::connect(Target::of(&args.connect, default_wait), signals).await?;
    let reporter = client::report_link_changes(&conn);
    let service = conn.rt.service(&args.service).build()?;
    let handle = service.handle();
    // Give existing subscribers time to hear of the service and subscribe (the library
    // cannot tell a new publisher when that is done).
    // A hub with users may refuse the name (its reports would then reach no one).
    tokio::select! {
        () = tokio::time::sleep(args.settle) => {}
        stop = signals.recv() => {
            drop(reporter);
            conn.close().await;
            drop(service);
            return Ok(stop.exit_code());
        }
        why = service.refused() => {
            drop(reporter);
            conn.close().await;
            drop(service);
            anyhow::bail!("not publishing as {}: {why}", args.service);
        }
    }
    let code = match one_shot {
        Some((subject, value)) => {
            publish_once(&conn, &handle, &subject, value, args.lifetime, signals).await?
        }
        None => publish_stdin(&handle, args.lifetime, signals).await,
    };
    drop(reporter);
    // Close first: the runtime's shutdown withdraws the service as "process exit".
    conn.close().await;
    drop(service);
    Ok(code)
}

async fn publish_once(
    conn: &Connection,
    service: &ServiceHandle,
    subject: &str,
    value: Value,
    lifetime: Lifetime,
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    service.publish(subject, value, lifetime)?;
    match lifetime {
        Lifetime::None => {}
        Lifetime::For(d) => {
            status(format_args!(
                "published {subject} as {} through {}; available to late subscribers for {:.1} s (Ctrl-C ends it sooner)",
                service.name(),
                conn.address(),
                d.as_secs_f64()
            ));
            tokio::select! {
                () = tokio::time::sleep(d) => {}
                _ = signals.recv() => {}
            }
        }
        Lifetime::Forever => {
            status(format_args!(
                "published {subject} as {} through {}; available to late subscribers until interrupted",
                service.name(),
                conn.address()
            ));
            signals.recv().await;
        }
    }
    Ok(exit::OK)
}

/// One line of stdin: its number and its bytes (or the read error).
type Line = (usize, std::io::Result<Vec<u8>>);

/// Reads stdin on a plain thread: a blocking read must not hold up the async runtime, and
/// the thread is simply abandoned if the command ends before EOF.
fn read_stdin() -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel::<Line>(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        for number in 1.. {
            let mut buf = Vec::new();
            let line = match stdin.read_until(b'\n', &mut buf) {
                Ok(0) => return,
                Ok(_) => Ok(buf),
                Err(e) => Err(e),
            };
            let failed = line.is_err();
            if tx.blocking_send((number, line)).is_err() || failed {
                return;
            }
        }
    });
    rx
}

async fn publish_stdin(service: &ServiceHandle, lifetime: Lifetime, signals: &mut Signals) -> u8 {
    if std::io::stdin().is_terminal() {
        status(format_args!(
            "publishing as {}: type lines `SUBJECT JSON`, end with Ctrl-D",
            service.name()
        ));
    }
    let mut lines = read_stdin();
    let mut failed = 0usize;
    loop {
        let (number, line) = tokio::select! {
            line = lines.recv() => match line {
                Some(line) => line,
                None => break,
            },
            _ = signals.recv() => break,
        };
        let outcome = line
            .context("cannot read stdin")
            .and_then(|bytes| publish_line(service, &bytes, lifetime));
        if let Err(e) = outcome {
            eprintln!("error: line {number}: {e:#}");
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("error: {failed} line(s) could not be published");
        exit::FAILURE
    } else {
        exit::OK
    }
}

/// Publishes one `SUBJECT JSON` line. Blank lines and `#` comments are skipped.
fn publish_line(service: &ServiceHandle, bytes: &[u8], lifetime: Lifetime) -> anyhow::Result<()> {
    let text = std::str::from_utf8(bytes).context("not UTF-8")?.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(());
    }
    let (subject, json) = text
        .split_once(char::is_whitespace)
        .context("expected `SUBJECT JSON`")?;
    names::check_subject(subject).with_context(|| format!("invalid subject {subject:?}"))?;
    let value = parse::json_value(json.trim())?;
    service.publish(subject, value, lifetime)?;
    Ok(())
}
