//! What a runtime's handles and tasks share: the [`Core`] behind its one lock, and beside it
//! what every task needs but never changes (identity, settings, the tokio handle).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::Core;
use super::meters::Meters;
use crate::model::config::{RegistrySync, RuntimeConfig};
use crate::model::identity;
use crate::model::stats::Stats;

/// One runtime's shared half. The public `Runtime` is a handle on it; services, endpoints,
/// monitors and link tasks hold it too.
pub(crate) struct RuntimeShared {
    pub(crate) core: Mutex<Core>,
    /// The core's request meters, reached without its lock.
    pub(crate) meters: Arc<Meters>,
    pub(crate) identity: Arc<str>,
    pub(crate) config: RuntimeConfig,
    pub(crate) handle: Handle,
    agents: AtomicU64,
    /// Connections this runtime has opened, counted: each HELLO it sends as the connecting
    /// side carries the count (its `attempt` option), so that both ends of two links
    /// between the same processes agree on which is the older (PROTOCOL.md §6.3).
    attempts: AtomicU64,
    /// Wakes the expiry sweeper when a report expiring earlier than it planned is cached.
    pub(crate) sweeper: Arc<Notify>,
    /// Distinguishes this run of the process from earlier ones with the same identity.
    pub(crate) incarnation: u64,
    /// The groups that have an exchange in this runtime (at most one each).
    pub(crate) exchange_groups: Mutex<HashSet<Arc<str>>>,
}

impl RuntimeShared {
    /// A snapshot of the runtime's traffic. Only the core's part is taken under its lock:
    /// the request meters are read after it is released.
    pub(crate) fn stats(&self) -> Stats {
        let mut stats = self.core.lock().stats();
        stats.requests = self.meters.request_stats();
        stats
    }

    /// A runtime on the tokio runtime behind `handle`, with its expiry sweeper started.
    pub(crate) fn start(config: RuntimeConfig, handle: Handle) -> Arc<Self> {
        let identity = identity::new_process_identity();
        let mut core = Core::new(identity.clone(), config.value_limits);
        if config.registry_sync == RegistrySync::Scoped {
            core.scope_registry();
        }
        let shared = Arc::new(Self {
            meters: core.meters.clone(),
            core: Mutex::new(core),
            identity,
            config,
            handle: handle.clone(),
            agents: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            incarnation: random_u64(),
            exchange_groups: Mutex::new(HashSet::new()),
            sweeper: Arc::new(Notify::new()),
        });
        handle.spawn(sweep_expired_reports(
            Arc::downgrade(&shared),
            shared.sweeper.clone(),
        ));
        shared
    }

    /// The number of this runtime's next service (its agent identity is made from it).
    pub(crate) fn next_agent_number(&self) -> u64 {
        self.agents.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The number of the connection this runtime is opening now.
    pub(crate) fn next_attempt(&self) -> u64 {
        self.attempts.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A random number, as cheaply as the standard library offers one (no cryptographic promise
/// is needed: incarnations and retry jitter only have to differ).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

impl std::fmt::Debug for RuntimeShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Drop for RuntimeShared {
    fn drop(&mut self) {
        // Wake the sweeper so that it notices the runtime is gone and ends.
        self.sweeper.notify_one();
    }
}

/// Purges cached reports as they expire, so their memory is freed without waiting for a
/// later publish or subscription to touch them. Delivery never depends on it: expired
/// reports are filtered out exactly when read.
async fn sweep_expired_reports(runtime: Weak<RuntimeShared>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(rt) = runtime.upgrade() else { return };
            let now = tokio::time::Instant::now();
            rt.core.lock().purge_expired(now)
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}
