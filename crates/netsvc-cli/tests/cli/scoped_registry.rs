//! The scoped registry across a real hub restart: a few hundred clients (runtimes of this
//! test process, each its own netsvc process identity with its own socket) on a `netsvc
//! exchange` hub that is SIGKILLed and started again on the same port. Every client must
//! get back exactly its registry: a scoped one the services of the names it watches, a
//! whole one every service, with no duplicate, no stale entry and, on each watch, one
//! withdrawal and one return per service.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use netsvc::{
    Announcement, AnnouncementKind, Exchange, ExchangeConfig, RegistrySync, RegistryWatch, Retry,
    Runtime, RuntimeConfig, Service, WithdrawReason,
};

use crate::util::{hub, hub_at};

const CLIENTS: usize = 240;
/// Service names: each is offered by `CLIENTS / NAMES` clients.
const NAMES: usize = 40;
const PER_NAME: usize = CLIENTS / NAMES;
/// Every sixth client keeps the whole registry.
fn scoped(i: usize) -> bool {
    !i.is_multiple_of(6)
}

/// The `n`th service name (the hub's own services have other names).
fn name(n: usize) -> String {
    format!("name-{n}")
}

struct Client {
    scoped: bool,
    rt: Runtime,
    _exchange: Exchange,
    _service: Service,
    /// The names it watches, with their watches.
    watches: Vec<(String, RegistryWatch)>,
    /// Everything each watch received, by name.
    seen: HashMap<String, Vec<Announcement>>,
}

impl Client {
    /// Whether its registry holds exactly what it should: for a scoped client its own
    /// service and `PER_NAME` of each name it watches, for a whole one every service.
    fn complete(&self) -> bool {
        let whole_registry_right = || {
            // Every client's service once (the hub's own services besides).
            let mut ours: Vec<String> = (self.rt.registry().services().into_iter())
                .filter(|b| b.service_name().starts_with("name-"))
                .map(|b| b.address().to_owned())
                .collect();
            let listed = ours.len();
            ours.sort_unstable();
            ours.dedup();
            listed == CLIENTS && ours.len() == CLIENTS
        };
        let right_size = match self.scoped {
            true => self.rt.stats().services_remote == (self.watches.len() * PER_NAME) as u64,
            false => whole_registry_right(),
        };
        right_size
            && self.watches.iter().all(|(name, _)| {
                let found = self.rt.registry().lookup_name(name);
                let mut addresses: Vec<&str> = found.iter().map(|b| b.address()).collect();
                addresses.sort_unstable();
                addresses.dedup();
                found.len() == PER_NAME && addresses.len() == PER_NAME
            })
    }

    /// What it holds, for a failure message.
    fn describe(&self) -> String {
        let kind = if self.scoped { "scoped" } else { "whole" };
        let found: Vec<String> = self
            .watches
            .iter()
            .map(|(n, _)| format!("{n}: {}", self.rt.registry().lookup_name(n).len()))
            .collect();
        let stats = self.rt.stats();
        format!(
            "{kind} {} with {} remote services, {found:?}, links {}",
            stats.identity,
            stats.services_remote,
            stats.links.len()
        )
    }

    fn drain(&mut self) {
        for (name, watch) in &mut self.watches {
            while let Ok(Some(a)) = watch.try_recv() {
                self.seen.entry(name.clone()).or_default().push(a);
            }
        }
    }
}

/// Waits until every client is `done`; a failure names those that are not.
async fn wait_until(
    what: &str,
    within: Duration,
    clients: &[Client],
    done: impl Fn(&Client) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let behind: Vec<&Client> = clients.iter().filter(|c| !done(c)).collect();
        if behind.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let shown: Vec<String> = behind.iter().take(5).map(|c| c.describe()).collect();
            panic!(
                "{what}: {} clients not within {within:?}, among them {shown:#?}",
                behind.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_and_whole_clients_get_back_exactly_their_registry_after_a_hub_restart() {
    let (mut hub, address) = tokio::task::block_in_place(hub);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let sync = if scoped(i) {
            RegistrySync::Scoped
        } else {
            RegistrySync::Whole
        };
        let rt = Runtime::with_config(RuntimeConfig::default().with_registry_sync(sync))
            .expect("a runtime");
        let exchange = Exchange::client(&rt)
            .config(ExchangeConfig::default().with_heartbeat(Duration::from_millis(250)))
            .build()
            .expect("an exchange");
        let service = rt.service(&name(i % NAMES)).build().expect("a service");
        let watches = [(i + 1) % NAMES, (i + 7) % NAMES]
            .iter()
            .map(|n| {
                let name = name(*n);
                let watch = rt.registry().watch_name(&name);
                (name, watch)
            })
            .collect();
        exchange
            .connect(&address, Retry::reconnect())
            .expect("a connector");
        clients.push(Client {
            scoped: scoped(i),
            rt,
            _exchange: exchange,
            _service: service,
            watches,
            seen: HashMap::new(),
        });
    }
    let minute = Duration::from_secs(60);
    wait_until("registry complete", minute, &clients, Client::complete).await;
    // A scoped client was told of what it watches only: 12 of the 239 other services.
    let scoped_remote = clients
        .iter()
        .find(|c| c.scoped)
        .map(|c| c.rt.stats().services_remote);
    assert_eq!(scoped_remote, Some((2 * PER_NAME) as u64));

    tokio::task::block_in_place(|| {
        hub.signal("KILL");
        hub.wait_exit();
    });
    wait_until("remote services gone", minute, &clients, |c| {
        c.rt.stats().services_remote == 0
    })
    .await;
    let _hub = tokio::task::block_in_place(|| hub_at(&address));
    let restarted = "registry complete after the restart";
    wait_until(restarted, minute, &clients, Client::complete).await;

    // On every watch: each service of the name available, withdrawn with the connection,
    // available again; nothing twice, nothing else.
    for client in &mut clients {
        client.drain();
        for (name, seen) in &client.seen {
            let mut by_address: HashMap<&str, Vec<AnnouncementKind>> = HashMap::new();
            for a in seen {
                by_address
                    .entry(a.binding.address())
                    .or_default()
                    .push(a.kind.clone());
            }
            assert_eq!(by_address.len(), PER_NAME, "{name}: {seen:?}");
            for (address, kinds) in by_address {
                assert_eq!(
                    kinds,
                    [
                        AnnouncementKind::Available,
                        AnnouncementKind::Withdrawn(WithdrawReason::ConnectionLost),
                        AnnouncementKind::Available,
                    ],
                    "{address} as a {} client saw it",
                    if client.scoped { "scoped" } else { "whole" }
                );
            }
        }
    }
}
