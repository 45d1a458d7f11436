//! Publishes a counter every second, cached for 10 s, and logs who subscribes.
//!
//! Run with `cargo run -p netsvc --example publisher` (with a hub running), then the
//! `subscriber` example, as many times as you like.

use std::time::Duration;

use netsvc::{Exchange, Lifetime, Retry, Runtime, SubscriptionStatus};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let hub = std::env::var("NETSVC_EXCHANGE").unwrap_or_else(|_| "127.0.0.1:11111".into());
    let rt = Runtime::new();
    let exchange = Exchange::client(&rt).build()?;
    exchange.connect(
        &hub,
        Retry::backoff(Duration::from_millis(100), Duration::from_secs(5)),
    )?;
    let counter = rt.service("counter").build()?;

    let mut subscriptions = counter.watch_subscriptions()?;
    tokio::spawn(async move {
        while let Ok(event) = subscriptions.recv().await {
            let verb = match event.status {
                SubscriptionStatus::Requested => "subscribed to",
                SubscriptionStatus::Withdrawn => "unsubscribed from",
            };
            println!("{} {verb} {}", event.subscriber.address(), event.pattern);
        }
    });

    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    for n in 0u64.. {
        tokio::select! {
            _ = ticks.tick() => {
                counter.publish("counter.value", n, Lifetime::For(Duration::from_secs(10)))?;
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    rt.shutdown();
    exchange.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
