//! `netsvc monitor`: the reports of every service of a name, one JSON object per line.

use anyhow::Context as _;
use netsvc::{Binding, Pattern, Report, ReportEvent, names};
use serde::Serialize;

use crate::cli::MonitorArgs;
use crate::client::{self, Target};
use crate::exit;
use crate::output::{self, status};
use crate::parse::Wait;
use crate::signals::Signals;

#[derive(Debug, Serialize)]
struct ReportLine<'a> {
    event: &'static str,
    service: &'a str,
    publisher: &'a str,
    subject: &'a str,
    /// The subscription pattern it matched; null for a report sent to this subscriber
    /// alone that matched none.
    pattern: Option<&'a str>,
    value: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct PublisherLine<'a> {
    event: &'static str,
    service: &'a str,
    publisher: &'a str,
    process: &'a str,
}

#[derive(Debug, Serialize)]
struct MissedLine {
    event: &'static str,
    count: u64,
}

/// Whose reports to follow.
enum Publishers {
    Named(String),
    All,
}

pub(crate) async fn run(args: MonitorArgs, signals: &mut Signals) -> anyhow::Result<u8> {
    let (publishers, pattern) = match (args.all, &args.service, &args.pattern) {
        (true, Some(_), Some(_)) => anyhow::bail!(
            "--all follows every publisher: give only PATTERN, not SERVICE and PATTERN"
        ),
        // With --all the one positional argument is the pattern.
        (true, pattern, None) | (true, None, pattern) => (Publishers::All, pattern.clone()),
        (false, Some(service), pattern) => {
            names::check_service_name(service)
                .with_context(|| format!("invalid service name {service:?}"))?;
            if service.is_empty() {
                anyhow::bail!(
                    "a service name is required (anonymous services cannot be monitored); \
                     --all follows every publisher"
                );
            }
            (Publishers::Named(service.clone()), pattern.clone())
        }
        (false, None, _) => anyhow::bail!("give a SERVICE to monitor, or --all"),
    };
    let pattern = pattern.unwrap_or_else(|| "*".to_owned());
    Pattern::new(&pattern).with_context(|| format!("invalid pattern {pattern:?}"))?;
    if args.count == Some(0) {
        return Ok(exit::OK);
    }

    let conn = client::connect(Target::of(&args.connect, Wait(None)), signals).await?;
    // Subscriptions belong to a service: an anonymous one, which `services` hides.
    let subscriber = conn.rt.service("").build()?;
    let mut monitor = match &publishers {
        Publishers::Named(service) => {
            let monitor = subscriber.monitor_reports(service.as_str(), &pattern)?;
            if conn.rt.registry().lookup_name(service).is_empty() {
                status(format_args!(
                    "no service named {service:?} yet; waiting for one"
                ));
            }
            monitor
        }
        Publishers::All => subscriber.monitor_all_reports(&pattern)?,
    };
    let reporter = client::report_link_changes(&conn);
    let result = follow(&args, &mut monitor, signals).await;
    drop(reporter);
    conn.close().await;
    drop((monitor, subscriber));
    result
}

async fn follow(
    args: &MonitorArgs,
    monitor: &mut netsvc::ReportMonitor,
    signals: &mut Signals,
) -> anyhow::Result<u8> {
    let mut reports = 0u64;
    loop {
        let event = tokio::select! {
            event = monitor.recv() => event,
            _ = signals.recv() => return Ok(exit::OK),
        };
        match event {
            Some(ReportEvent::Report(report)) => {
                if print_report(&report)? {
                    reports += 1;
                    if args.count.is_some_and(|n| reports >= n) {
                        return Ok(exit::OK);
                    }
                }
            }
            Some(ReportEvent::PublisherAvailable(b)) => {
                publisher_notice(args, "publisher-available", &b)?;
            }
            Some(ReportEvent::PublisherWithdrawn(b)) => {
                publisher_notice(args, "publisher-withdrawn", &b)?;
            }
            Some(ReportEvent::Missed(count)) => {
                if args.events {
                    output::json_line(&MissedLine {
                        event: "missed",
                        count,
                    })?;
                } else {
                    status(format_args!(
                        "missed {count} reports (fell behind; older reports of the same subjects were replaced)"
                    ));
                }
            }
            Some(_) => {}
            None => anyhow::bail!("the subscription ended"),
        }
    }
}

/// Prints a report; false if its content could not be decoded (reported on stderr).
fn print_report(report: &Report) -> anyhow::Result<bool> {
    let value = match report.value() {
        Ok(v) => netsvc::value::json::to_json(v),
        Err(e) => {
            tracing::warn!(
                publisher = report.publisher().address(),
                subject = report.subject(),
                "skipping a report whose content cannot be decoded: {e}"
            );
            return Ok(false);
        }
    };
    output::json_line(&ReportLine {
        event: "report",
        service: report.publisher().service_name(),
        publisher: report.publisher().address(),
        subject: report.subject(),
        pattern: report.pattern().map(Pattern::as_str),
        value,
    })?;
    Ok(true)
}

fn publisher_notice(args: &MonitorArgs, event: &'static str, b: &Binding) -> anyhow::Result<()> {
    // With --all every visible service is a publisher, the anonymous helpers of clients
    // (this monitor's own subscriber among them) too: those are not worth a notice.
    if b.service_name().is_empty() {
        return Ok(());
    }
    if args.events {
        output::json_line(&PublisherLine {
            event,
            service: b.service_name(),
            publisher: b.address(),
            process: b.process_identity(),
        })
    } else {
        status(format_args!("{event}: {}", b.address()));
        Ok(())
    }
}
