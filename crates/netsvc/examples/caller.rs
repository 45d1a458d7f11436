//! Calls the `example` service of the `service` example through the hub.
//!
//! Run with `cargo run -p netsvc --example caller` while the hub and the service run.

use std::time::Duration;

use netsvc::{Exchange, Retry, Runtime, args};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let hub = std::env::var("NETSVC_EXCHANGE").unwrap_or_else(|_| "127.0.0.1:11111".into());
    let rt = Runtime::new();
    let exchange = Exchange::client(&rt).build()?;
    let link = exchange.connect(&hub, Retry::every(Duration::from_millis(200)))?;
    // Wait until the hub's registry has arrived, so that "no such service" is an answer
    // and not a race. The error says which address and why, if it does not.
    link.synced_within(Duration::from_secs(5)).await?;

    let ep = rt
        .endpoint("example")
        .with_timeout(Some(Duration::from_secs(5)));
    println!("echo  -> {}", ep.call("echo", args!["hello", 42]).await?);
    println!("later -> {}", ep.call("later", args![0.5]).await?);
    match ep.call("later", args![10.0]).await {
        Ok(v) => println!("later -> {v}"),
        Err(failure) => println!("later -> failed: {failure}"),
    }
    match rt.endpoint("no-such-service").call("x", vec![]).await {
        Ok(v) => println!("?? {v}"),
        Err(failure) => println!("missing -> failed: {failure}"),
    }
    Ok(())
}
