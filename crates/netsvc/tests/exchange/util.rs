use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    ExchangeConfig::default().with_heartbeat(Duration::from_millis(100))
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

/// Polls `check` until it holds (for states reached through several events). The 5 ms
/// sleep only spaces the checks of a condition that must become true; it never stands in for
/// "long enough".
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
    listen_again(&ex, address).await;
    (rt, ex)
}

/// Listens on `address`, retrying (every 10 ms, until the deadline) while a listener this
/// test just closed may still hold the port.
pub(crate) async fn listen_again(ex: &Exchange, address: &str) {
    within(async {
        loop {
            match ex.listen(address).await {
                Ok(_) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
}

/// A service whose `never` method tells `started` when a request has reached it, and never
/// answers: a test knows its call is in flight, at the service, without waiting "long
/// enough".
pub(crate) fn never_answers(
    rt: &Runtime,
    name: &str,
) -> (Service, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let (tx, started) = tokio::sync::mpsc::unbounded_channel();
    let service = rt
        .service(name)
        .export("never", move |_| {
            let _ = tx.send(());
            std::future::pending::<Result<Value, netsvc::Failure>>()
        })
        .build()
        .unwrap();
    (service, started)
}

// ----- a TCP tap ---------------------------------------------------------------------------

/// A loopback TCP listener standing between a connector and its target, so that a test can
/// see each attempt the connector makes: how many connections it accepted, and how many have
/// ended (closed both ways: both ends are done with them). With a target it relays every
/// connection byte for byte to a new connection to the target; without one it closes each
/// connection at once, standing in for a server that is not up yet (unlike a refused TCP
/// connect, such a failed attempt can be seen from outside the client).
pub(crate) struct Tap {
    /// Where to connect instead of the target.
    pub(crate) address: String,
    state: Arc<TapState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct TapState {
    accepted: AtomicUsize,
    ended: AtomicUsize,
    /// For each relayed connection: the connector's address, and the address the target sees
    /// it come from.
    relayed: Mutex<Vec<(String, String)>>,
}

impl Tap {
    /// A tap in front of `target`, on an ephemeral port.
    pub(crate) async fn to(target: &str) -> Self {
        Self::on("127.0.0.1:0", Some(target)).await
    }

    /// A tap on `address` that closes every connection at once.
    pub(crate) async fn hanging_up_on(address: &str) -> Self {
        Self::on(address, None).await
    }

    async fn on(address: &str, target: Option<&str>) -> Self {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let state = Arc::new(TapState::default());
        let (shared, target) = (state.clone(), target.map(str::to_owned));
        let task = tokio::spawn(async move {
            let mut relays = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, from)) = accepted else { continue };
                        shared.accepted.fetch_add(1, Ordering::SeqCst);
                        let (shared, target) = (shared.clone(), target.clone());
                        relays.spawn(async move {
                            if let Some(target) = target
                                && let Ok(upstream) = tokio::net::TcpStream::connect(&target).await
                            {
                                let seen_as = upstream.local_addr().unwrap().to_string();
                                shared
                                    .relayed
                                    .lock()
                                    .unwrap()
                                    .push((from.to_string(), seen_as));
                                relay(client, upstream).await;
                            }
                            shared.ended.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    Some(_) = relays.join_next() => {}
                }
            }
        });
        Self {
            address,
            state,
            task,
        }
    }

    /// The connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// The connections that have ended so far.
    pub(crate) fn ended(&self) -> usize {
        self.state.ended.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections have been accepted.
    pub(crate) async fn accepted_at_least(&self, n: usize) {
        eventually(|| self.accepted() >= n).await;
    }

    /// Waits until `n` connections have ended.
    pub(crate) async fn ended_at_least(&self, n: usize) {
        eventually(|| self.ended() >= n).await;
    }

    /// Whether the tap relays the connection between `from` (the connector's address) and
    /// `seen_as` (where the target sees it come from).
    pub(crate) fn relays(&self, from: &str, seen_as: &str) -> bool {
        self.state
            .relayed
            .lock()
            .unwrap()
            .iter()
            .any(|(f, s)| f == from && s == seen_as)
    }

    /// Stops listening and drops every connection; the port is free when this returns.
    pub(crate) async fn close(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until both directions have ended, passing each end of stream on.
async fn relay(a: tokio::net::TcpStream, b: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let (mut a_read, mut a_write) = a.into_split();
    let (mut b_read, mut b_write) = b.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut a_read, &mut b_write).await;
        let _ = b_write.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut b_read, &mut a_write).await;
        let _ = a_write.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Waits until a connector made with [`netsvc::Retry::once`] has stopped, and returns why
/// its last attempt failed (if it failed). By then everything its attempt could report has
/// been reported: the connector stops only after its link's task has ended.
pub(crate) async fn gave_up(connector: &netsvc::Connector) -> Option<netsvc::LinkFailure> {
    let ended = within(connector.synced()).await;
    let error = ended.expect_err("a single attempt that ends is an error");
    assert!(error.stopped, "{error}");
    error.cause
}
