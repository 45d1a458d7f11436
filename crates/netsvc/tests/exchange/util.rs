use std::future::Future;
use std::time::Duration;

use netsvc::{
    AnnouncementKind, Binding, ConnectionEvent, ConnectionState, ConnectionWatch, Exchange,
    ExchangeConfig, Retry, Runtime, Service, Value, WithdrawReason,
};

pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

pub(crate) async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .expect("event did not arrive before the deadline")
}

/// A fast retry for tests.
pub(crate) fn quick() -> Retry {
    Retry::every(Duration::from_millis(20))
}

/// Exchange settings that detect dead peers quickly.
pub(crate) fn fast_config() -> ExchangeConfig {
    let mut config = ExchangeConfig::default();
    config.heartbeat = Duration::from_millis(100);
    config
}

/// A runtime with a server exchange listening on an ephemeral loopback port.
pub(crate) async fn hub() -> (Runtime, Exchange, String) {
    let rt = Runtime::new();
    let ex = Exchange::server(&rt).config(fast_config()).build().unwrap();
    let address = ex.listen("127.0.0.1:0").await.unwrap().to_string();
    (rt, ex, address)
}

/// A runtime with a client exchange connected to `address`.
pub(crate) fn client(address: &str) -> (Runtime, Exchange) {
    let rt = Runtime::new();
    let ex = Exchange::client(&rt).config(fast_config()).build().unwrap();
    ex.connect(address, quick()).unwrap();
    (rt, ex)
}

/// Waits until `rt` sees a service named `name` (returns its binding).
pub(crate) async fn visible(rt: &Runtime, name: &str) -> Binding {
    let mut watch = rt.registry().watch_name(name);
    within(async {
        loop {
            let a = watch.recv().await.unwrap();
            if a.kind == AnnouncementKind::Available {
                return a.binding;
            }
        }
    })
    .await
}

/// Waits until `rt` no longer sees the service at `address`.
pub(crate) async fn gone(rt: &Runtime, address: &str) {
    let (_, watch) = rt.registry().watch_address(address);
    if rt.registry().lookup_address(address).is_some() {
        Withdrawal(watch).reason().await;
    }
}

/// A watch armed before a service is withdrawn, to learn why it was.
pub(crate) struct Withdrawal(netsvc::RegistryWatch);

/// Arms a [`Withdrawal`] for the service at `address`.
pub(crate) fn withdrawal_of(rt: &Runtime, address: &str) -> Withdrawal {
    Withdrawal(rt.registry().watch_address(address).1)
}

impl Withdrawal {
    pub(crate) async fn reason(mut self) -> WithdrawReason {
        within(async {
            loop {
                if let AnnouncementKind::Withdrawn(reason) = self.0.recv().await.unwrap().kind {
                    return reason;
                }
            }
        })
        .await
    }
}

/// Waits for the next connection event in `state`.
pub(crate) async fn connection(
    events: &mut ConnectionWatch,
    state: ConnectionState,
) -> ConnectionEvent {
    within(async {
        loop {
            let e = events.recv().await.unwrap();
            if e.state == state {
                return e;
            }
        }
    })
    .await
}

/// A service exporting `echo` (its arguments back), `who` (its process identity and the
/// caller's address) and `never` (no answer).
pub(crate) fn echo(rt: &Runtime, name: &str) -> Service {
    let identity = rt.process_identity().to_owned();
    rt.service(name)
        .export(
            "echo",
            |req| async move { Ok(Value::List(req.into_args())) },
        )
        .export("who", move |req| {
            let identity = identity.clone();
            async move {
                let sender = req
                    .sender()
                    .map(|b| b.address().to_owned())
                    .unwrap_or_default();
                Ok(Value::List(vec![identity.into(), sender.into()]))
            }
        })
        .export("never", |_| {
            std::future::pending::<Result<Value, netsvc::Failure>>()
        })
        .build()
        .unwrap()
}

/// Every service `rt` sees, as sorted (name, process) pairs.
pub(crate) fn seen(rt: &Runtime) -> Vec<(String, String)> {
    let mut all: Vec<_> = rt
        .registry()
        .services()
        .iter()
        .map(|b| (b.service_name().to_owned(), b.process_identity().to_owned()))
        .collect();
    all.sort();
    all
}

/// Polls `check` until it holds (for states reached through several events).
pub(crate) async fn eventually(mut check: impl FnMut() -> bool) {
    within(async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A new hub on `address` (a restarted one), retrying while the previous listener of this
/// test process (whose exchange was just dropped) still holds the port.
pub(crate) async fn hub_again(address: &str) -> (Runtime, Exchange) {
    let rt = Runtime::new();
    let ex = Exchange::server(&rt).config(fast_config()).build().unwrap();
    within(async {
        loop {
            match ex.listen(address).await {
                Ok(_) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    (rt, ex)
}
