//! netsvc runtimes inside the test process, beside the real node processes: load generators,
//! hundreds of clients, and subscribers whose every report is counted. Only the processes
//! the tests kill, freeze or measure need to be real; the rest is cheaper in here.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use netsvc::{AnnouncementKind, Exchange, ExchangeConfig, Retry, Runtime, RuntimeConfig};
use netsvc_testkit::Node;

use crate::util::NODE;

/// The heartbeat of in-process clients: the node's default, so that both ends of every
/// link detect silence within the same bound.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(200);

/// A tokio runtime for the in-process side of a test. Enter it (`let _g = tokio.enter();`)
/// before creating netsvc runtimes.
pub(crate) fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// An in-process client: its runtime and its exchange, connected to `address`.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) rt: Runtime,
    pub(crate) ex: Exchange,
}

pub(crate) fn exchange_config() -> ExchangeConfig {
    let mut config = ExchangeConfig::default();
    config.heartbeat = HEARTBEAT;
    config
}

/// A client connecting to `address` with a jittered backoff (20 ms up to 500 ms), so that
/// many clients losing their hub together do not come back in lock-step.
pub(crate) fn client(address: &str) -> Client {
    client_with(address, RuntimeConfig::default(), exchange_config())
}

/// [`client`] with another heartbeat.
pub(crate) fn client_beating(address: &str, heartbeat: Duration) -> Client {
    let mut config = exchange_config();
    config.heartbeat = heartbeat;
    client_with(address, RuntimeConfig::default(), config)
}

pub(crate) fn client_with(address: &str, rt: RuntimeConfig, config: ExchangeConfig) -> Client {
    let rt = Runtime::with_config(rt).unwrap();
    let ex = Exchange::client(&rt).config(config).build().unwrap();
    ex.connect(
        address,
        Retry::backoff(Duration::from_millis(20), Duration::from_millis(500)),
    )
    .unwrap();
    Client { rt, ex }
}

impl Client {
    /// Whether the client has a link up.
    pub(crate) fn linked(&self) -> bool {
        !self.ex.connections().is_empty()
    }

    /// The services this client sees: name → addresses, sorted.
    pub(crate) fn registry(&self) -> BTreeMap<String, Vec<String>> {
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for b in self.rt.registry().services() {
            by_name
                .entry(b.service_name().to_owned())
                .or_default()
                .push(b.address().to_owned());
        }
        for addresses in by_name.values_mut() {
            addresses.sort();
        }
        by_name
    }
}

/// Runs `fut` on the test's tokio runtime with a deadline.
pub(crate) fn block_within<T>(
    tokio: &tokio::runtime::Runtime,
    what: &str,
    limit: Duration,
    fut: impl Future<Output = T>,
) -> T {
    match tokio.block_on(tokio::time::timeout(limit, fut)) {
        Ok(v) => v,
        Err(_) => panic!("{what}: not within {limit:?}"),
    }
}

/// Polls `check` (every 10 ms) until it holds; panics with `what` after `limit`. Returns how
/// long it took.
pub(crate) fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

/// Waits until `rt` sees a service named `name`.
pub(crate) async fn visible(rt: &Runtime, name: &str) {
    let mut watch = rt.registry().watch_name(name);
    loop {
        if watch.recv().await.unwrap().kind == AnnouncementKind::Available {
            return;
        }
    }
}

/// The resident set size of process `pid`, in KiB (from `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// A hub node process listening on `address` (port 0: any free port), watching its
/// registry, with heartbeat `heartbeat` and a file descriptor limit of 20,000 (raised in
/// the shell that execs it, for tests with thousands of connections). Returns it and the
/// address it listens on.
pub(crate) fn hub_process(label: &str, address: &str, heartbeat: Duration) -> (Node, String) {
    let script = format!(
        "ulimit -n 20000 2>/dev/null || ulimit -n $(ulimit -Hn); exec \"$0\" --heartbeat-ms {}",
        heartbeat.as_millis()
    );
    let mut hub = Node::spawn("sh", &["-c", &script, NODE]).named(label);
    hub.cmd("exchange server -", "exchange");
    hub.cmd("watch", "ok");
    let listening = hub.cmd(&format!("listen - {address}"), "listening");
    let bound = netsvc_testkit::field(&listening, "address").to_owned();
    (hub, bound)
}
