//! Everything in one process, no exchange: services, calls and their failures, reports with
//! a lifetime cache, and registry announcements.
//!
//! Run with `cargo run -p netsvc --example local`.

use std::time::Duration;

use netsvc::{AnnouncementKind, Failure, Lifetime, ReportEvent, Runtime, Value, args};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rt = Runtime::new();

    // Watch the registry: the current services first, then every change.
    let mut announcements = rt.registry().watch();
    tokio::spawn(async move {
        while let Ok(a) = announcements.recv().await {
            match a.kind {
                AnnouncementKind::Available => println!("+ {}", a.binding.service_name()),
                AnnouncementKind::Withdrawn(why) => {
                    println!("- {} ({why})", a.binding.service_name())
                }
                AnnouncementKind::GroupJoined(g) => {
                    println!("  {} joined {g}", a.binding.service_name())
                }
                AnnouncementKind::GroupLeft(g) => {
                    println!("  {} left {g}", a.binding.service_name())
                }
                _ => {}
            }
        }
    });

    let calculator = rt
        .service("calculator")
        .export("divide", |req| async move {
            let (a, b): (f64, f64) = req.decode_args()?;
            if b == 0.0 {
                return Err(Failure::new(1, "Division by zero", "calculator", ""));
            }
            Ok(a / b)
        })
        .join_group("maths")
        .build()?;

    let ep = rt.endpoint("calculator");
    println!("10 / 4 = {}", ep.call("divide", args![10.0, 4.0]).await?);
    for bad in [args![1.0, 0.0], args!["ten"], vec![]] {
        show(ep.call("divide", bad).await);
    }
    show(ep.call("multiply", vec![]).await);

    // Reports: the status is cached for a minute, so a subscriber who comes later gets it.
    calculator.publish("status", "ready", Lifetime::For(Duration::from_secs(60)))?;
    calculator.publish("load", 0.25, Lifetime::None)?; // nobody listening: gone
    let display = rt.service("display").build()?;
    let mut reports = display.monitor_reports("calculator", "*")?;
    calculator.publish("load", 0.5, Lifetime::None)?;
    for _ in 0..3 {
        match reports.recv().await {
            Some(ReportEvent::PublisherAvailable(b)) => println!("publisher {}", b.address()),
            Some(ReportEvent::Report(r)) => println!("report {} = {}", r.subject(), r.value()?),
            other => println!("{other:?}"),
        }
    }

    drop(calculator); // withdrawn: announced, and calls fail with 46 from now on
    show(ep.call("divide", args![1.0, 1.0]).await);
    tokio::time::sleep(Duration::from_millis(50)).await; // let the watcher print
    Ok(())
}

fn show(outcome: Result<Value, Failure>) {
    match outcome {
        Ok(value) => println!("value: {value}"),
        Err(failure) => println!("failure: {failure}"),
    }
}
