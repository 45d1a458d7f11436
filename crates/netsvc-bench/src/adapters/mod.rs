//! One adapter per system, all behind the same small trait, so that every workload runs the
//! same code against netsvc, NATS, MQTT and raw TCP.
//!
//! | operation | netsvc | NATS (`async-nats`) | MQTT (`rumqttc`, QoS 0) | raw TCP |
//! |---|---|---|---|---|
//! | publish | `publish_paced` on service `bench-pub` | `publish` | `publish` | length-prefixed frame |
//! | exact subscription | `monitor_reports("bench-pub", "bench")` | `subscribe("bench")` | `bench` | relay hub |
//! | catch-all | `*` | `>` | `#` | — |
//! | cached publish | `Lifetime::Forever` | JetStream KV put | retained | — |
//! | snapshot subscription | `monitor_reports(.., "*")` | KV `watch_with_history(">")` | `#` | — |
//! | request/reply | service `bench`, method `echo` | `request("bench")` | `bench/req` → `bench/resp` | echo frame |

pub(crate) mod mqtt;
pub(crate) mod nats;
pub(crate) mod netsvc;
pub(crate) mod tcp;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::payload::Header;

/// The directory of a `--tls` run's certificates (`ca.pem`, `hub.pem`, `hub.key`), once set
/// for this process: every hub it starts listens with TLS and every client connects with it.
static TLS: OnceLock<PathBuf> = OnceLock::new();

/// Makes this process use TLS with the certificates in `dir`.
pub(crate) fn use_tls(dir: PathBuf) {
    let _ = TLS.set(dir);
}

/// The certificates' directory, in a `--tls` run.
pub(crate) fn tls_dir() -> Option<&'static Path> {
    TLS.get().map(PathBuf::as_path)
}

/// Writes a CA and a hub certificate for 127.0.0.1 that it signs into `dir`.
pub(crate) fn make_certificates(dir: &Path) -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    std::fs::create_dir_all(dir)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?
        .signed_by(&key, &ca)?;
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    std::fs::write(dir.join("hub.pem"), cert.pem())?;
    std::fs::write(dir.join("hub.key"), key.serialize_pem())?;
    Ok(())
}

/// The subject (NATS), topic (MQTT) or report subject (netsvc) of the workloads.
pub(crate) const SUBJECT: &str = "bench";

/// The systems under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum System {
    /// netsvc: a `netsvc-bench role netsvc-hub` process and netsvc client runtimes.
    Netsvc,
    /// nats-server with the `async-nats` client.
    Nats,
    /// mosquitto with the `rumqttc` client, QoS 0.
    Mqtt,
    /// Raw TCP through a minimal relay hub (`role tcp-hub`): the same process layout with no
    /// framework, the floor for the hub's hop.
    Tcp,
    /// Raw TCP straight from the load process to the other (no hub): the physical floor.
    TcpDirect,
}

impl System {
    /// The name used on the command line and in the tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Netsvc => "netsvc",
            Self::Nats => "nats",
            Self::Mqtt => "mqtt",
            Self::Tcp => "tcp",
            Self::TcpDirect => "tcp-direct",
        }
    }

    /// The label in result tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Netsvc => "netsvc",
            Self::Nats => "nats-server",
            Self::Mqtt => "mosquitto",
            Self::Tcp => "raw TCP via relay",
            Self::TcpDirect => "raw TCP direct",
        }
    }
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a subscription selects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Filter<'a> {
    /// One subject.
    Exact(&'a str),
    /// Everything (netsvc `*`, NATS `>`, MQTT `#`).
    All,
}

/// One received message.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    /// The subject, when the subscription asked for subjects.
    pub(crate) subject: Option<String>,
    /// The header of the payload `payload::make` generated, read by the adapter from
    /// wherever its client library put the payload (no copy): `None` if it is not one.
    pub(crate) header: Option<Header>,
}

/// A client of one system, connected to its hub.
pub(crate) trait Adapter: Sized + Send + Sync + 'static {
    /// Publishes.
    type Pub: Publisher;
    /// Receives.
    type Sub: Subscription;
    /// Makes requests.
    type Caller: Caller;
    /// Keeps something alive (a service, subscriptions) while held.
    type Guard: Send + 'static;

    /// Connects to the hub at `addr` (`HOST:PORT`).
    fn connect(addr: &str) -> impl Future<Output = Result<Self>> + Send;

    /// A publisher.
    fn publisher(&self) -> impl Future<Output = Result<Self::Pub>> + Send;

    /// A subscription, in place at the hub when this returns (except for netsvc, where the
    /// publisher confirms with `Publisher::wait_subscribers`). `with_subjects` asks for the
    /// subject of each message.
    fn subscribe(
        &self,
        filter: Filter<'_>,
        with_subjects: bool,
    ) -> impl Future<Output = Result<Self::Sub>> + Send;

    /// A catch-all subscription that first delivers every cached value (W4).
    fn snapshot(&self) -> impl Future<Output = Result<Self::Sub>> + Send;

    /// Serves requests on `SUBJECT` by echoing the payload back, until the guard is dropped.
    fn serve_echo(&self) -> impl Future<Output = Result<Self::Guard>> + Send;

    /// A caller of the echo service, which must already be serving.
    fn caller(&self) -> impl Future<Output = Result<Self::Caller>> + Send;

    /// Holds one subscription per subject on this connection, without reading (memory).
    /// netsvc subscribes from a service, created here (even for no subjects).
    fn hold(&self, subjects: Vec<String>) -> impl Future<Output = Result<Self::Guard>> + Send;

    /// Adds subscriptions to what `hold` returned.
    fn hold_more(
        &self,
        guard: &mut Self::Guard,
        subjects: Vec<String>,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// The sending side of pub/sub.
pub(crate) trait Publisher: Send {
    /// Waits until `n` subscriptions reached this publisher (netsvc only; the others know
    /// their subscriptions are in place once `subscribe` returns).
    fn wait_subscribers(&mut self, n: usize) -> impl Future<Output = Result<()>> + Send {
        let _ = n;
        async { Ok(()) }
    }

    /// Publishes without caching. May wait for flow control; never drops on purpose.
    fn publish(&mut self, subject: &str, payload: Bytes)
    -> impl Future<Output = Result<()>> + Send;

    /// Publishes a value that late subscribers get (netsvc `Lifetime::Forever`, MQTT retained,
    /// NATS KV put).
    fn store(&mut self, subject: &str, payload: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// Waits until the hub has everything published so far (where the system can say).
    fn flush(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// The receiving side of pub/sub.
pub(crate) trait Subscription: Send {
    /// The next message; `None` when the subscription ended. Must be cancel-safe: workloads
    /// race it against commands and timers.
    fn next(&mut self) -> impl Future<Output = Result<Option<Msg>>> + Send;

    /// Messages the client library itself dropped or coalesced (netsvc `Missed`).
    fn missed(&self) -> u64 {
        0
    }
}

/// The calling side of request/reply; clones share the connection.
pub(crate) trait Caller: Clone + Send + Sync {
    /// One round trip. The payload's sequence number must be unique among calls in flight.
    fn call(&self, payload: Bytes) -> impl Future<Output = Result<Bytes>> + Send;
}

/// Aborts a background task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Calls in flight by the sequence number in their payload, for the adapters that correlate
/// replies themselves (MQTT, TCP).
#[derive(Debug, Default, Clone)]
pub(crate) struct Pending(Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>);

impl Pending {
    /// Registers a call; the returned receiver gets its reply.
    pub(crate) fn register(&self, payload: &[u8]) -> Result<oneshot::Receiver<Bytes>> {
        let seq = crate::payload::parse(payload)
            .context("payload too short")?
            .seq;
        let (tx, rx) = oneshot::channel();
        self.0.lock().insert(seq, tx);
        Ok(rx)
    }

    /// Hands a reply to its caller, if it is still waiting.
    pub(crate) fn complete(&self, reply: Bytes) {
        if let Some(h) = crate::payload::parse(&reply) {
            let waiter = self.0.lock().remove(&h.seq);
            if let Some(tx) = waiter {
                let _ = tx.send(reply);
            }
        }
    }

    /// Waits for a registered reply, at most 10 s.
    pub(crate) async fn wait(rx: oneshot::Receiver<Bytes>) -> Result<Bytes> {
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .context("no reply within 10 s")?
            .context("reply channel closed")
    }
}
