//! Monitors the `counter` service's reports: the cached value arrives at once, then each new
//! one; the publisher coming and going is reported too.
//!
//! Run with `cargo run -p netsvc --example subscriber`.

use std::time::Duration;

use netsvc::{Exchange, ReportEvent, Retry, Runtime};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let hub = std::env::var("NETSVC_EXCHANGE").unwrap_or_else(|_| "127.0.0.1:11111".into());
    let rt = Runtime::new();
    let exchange = Exchange::client(&rt).build()?;
    exchange.connect(
        &hub,
        Retry::backoff(Duration::from_millis(100), Duration::from_secs(5)),
    )?;
    let me = rt.service("").build()?; // anonymous: a subscriber needs no name
    let mut reports = me.monitor_reports("counter", "counter.*")?;
    loop {
        tokio::select! {
            event = reports.recv() => match event {
                Some(ReportEvent::Report(r)) => println!("{} = {}", r.subject(), r.value()?),
                Some(ReportEvent::PublisherAvailable(b)) => println!("publisher up: {}", b.address()),
                Some(ReportEvent::PublisherWithdrawn(b)) => println!("publisher gone: {}", b.address()),
                Some(ReportEvent::Missed(n)) => println!("(missed {n} reports)"),
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}
