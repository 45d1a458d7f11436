//! A service in its own process, joined to a hub: `echo`, and `later`, which responds only
//! when a timer fires (a delayed response: the handler simply awaits).
//!
//! Run a hub (`cargo run --bin netsvc -- exchange`), then
//! `cargo run -p netsvc --example service`, then the `caller` example.
//! The hub address comes from `NETSVC_EXCHANGE` (default 127.0.0.1:11111).

use std::time::Duration;

use netsvc::{Exchange, Retry, Runtime, Value};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let hub = std::env::var("NETSVC_EXCHANGE").unwrap_or_else(|_| "127.0.0.1:11111".into());
    let rt = Runtime::new();
    let exchange = Exchange::client(&rt).build()?;
    exchange.connect(
        &hub,
        Retry::backoff(Duration::from_millis(100), Duration::from_secs(5)),
    )?;

    let _service = rt
        .service("example")
        .export(
            "echo",
            |req| async move { Ok(Value::List(req.into_args())) },
        )
        .export("later", |req| async move {
            let (seconds,): (f64,) = req.decode_args()?;
            // The response is delayed without blocking anything: other requests are served
            // meanwhile, and if the service is withdrawn first the caller gets failure 57.
            tokio::time::sleep(Duration::from_secs_f64(seconds.clamp(0.0, 60.0))).await;
            Ok(format!("answered after {seconds} s"))
        })
        .build()?;
    println!("service \"example\" running; Ctrl-C to stop");

    tokio::signal::ctrl_c().await?;
    rt.shutdown(); // withdraw, so that peers learn why
    exchange.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
