//! The runtime: one process's registry and services.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use netsvc_proto::value::Limits;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::announce::WithdrawReason;
use crate::core::Core;
use crate::endpoint::{Endpoint, Target};
use crate::error::Error;
use crate::registry::Registry;
use crate::service::ServiceBuilder;

/// Settings of a [`Runtime`]. Every queue and limit in netsvc has its bound here.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Default timeout of requests made through endpoints (default 60 s; `None`: wait as
    /// long as the service exists).
    pub request_timeout: Option<Duration>,
    /// How far a registry watch or subscription watch may fall behind before it is cut off
    /// (default 4096 events).
    pub announcement_capacity: usize,
    /// How many reports a subscription queues before it starts coalescing them by subject
    /// (default 1024).
    pub report_capacity: usize,
    /// How many requests one service handles at once before it refuses more with failure 51
    /// (default 10,000).
    pub max_requests_in_progress: usize,
    /// Limits on values carried in messages (default: nesting depth 64, 16 MiB encoded).
    pub value_limits: Limits,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            request_timeout: Some(Duration::from_secs(60)),
            announcement_capacity: 4096,
            report_capacity: 1024,
            max_requests_in_progress: 10_000,
            value_limits: Limits::default(),
        }
    }
}

/// One process's service registry and services: the root of netsvc.
///
/// A runtime has no global state: several runtimes in one program behave like separate
/// processes. It is a cheap handle; clones share the same runtime. Services keep it alive.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use netsvc::Runtime;
/// let a = Runtime::new();
/// let b = Runtime::new();
/// assert_ne!(a.process_identity(), b.process_identity());
/// let _svc = a.service("only-in-a").build()?;
/// assert!(b.registry().lookup_name("only-in-a").is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Runtime {
    shared: Arc<RuntimeShared>,
}

impl Runtime {
    /// A runtime with the default settings.
    ///
    /// # Panics
    /// Outside a tokio runtime; use [`Runtime::with_config`] to get an error instead.
    pub fn new() -> Self {
        match Self::with_config(RuntimeConfig::default()) {
            Ok(rt) => rt,
            Err(e) => panic!("{e}"),
        }
    }

    /// A runtime with these settings. Must be called from within a tokio runtime, whose
    /// tasks will run the services' handlers.
    pub fn with_config(config: RuntimeConfig) -> Result<Self, Error> {
        let handle = Handle::try_current().map_err(|_| Error::NoTokioRuntime)?;
        let identity = crate::identity::new_process_identity();
        let shared = Arc::new(RuntimeShared {
            core: Mutex::new(Core::new(identity.clone(), config.value_limits)),
            identity,
            config,
            handle: handle.clone(),
            agents: AtomicU64::new(0),
            conversations: AtomicU64::new(0),
            incarnation: random_u64(),
            exchange_groups: Mutex::new(HashSet::new()),
            sweeper: Arc::new(Notify::new()),
        });
        handle.spawn(sweep_expired_reports(
            Arc::downgrade(&shared),
            shared.sweeper.clone(),
        ));
        Ok(Self { shared })
    }

    pub(crate) fn shared(&self) -> &Arc<RuntimeShared> {
        &self.shared
    }

    /// This runtime's process identity.
    pub fn process_identity(&self) -> &str {
        &self.shared.identity
    }

    /// The settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }

    /// Starts building a service with this name (empty: anonymous).
    pub fn service(&self, name: &str) -> ServiceBuilder {
        ServiceBuilder::new(self.shared.clone(), name)
    }

    /// The registry.
    pub fn registry(&self) -> Registry {
        Registry {
            runtime: self.shared.clone(),
        }
    }

    /// An endpoint for calls that come from no service in particular (their requests have
    /// no sender).
    pub fn endpoint(&self, target: impl Into<Target>) -> Endpoint {
        Endpoint::new(self.shared.clone(), target.into(), None)
    }

    /// Withdraws every service of this runtime, as a process does when it exits.
    pub fn shutdown(&self) {
        let withdrawn = self
            .shared
            .core
            .lock()
            .withdraw_all(WithdrawReason::ProcessExit);
        for service in withdrawn {
            service.end();
        }
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

/// What the runtime's handles share.
pub(crate) struct RuntimeShared {
    pub(crate) core: Mutex<Core>,
    pub(crate) identity: Arc<str>,
    pub(crate) config: RuntimeConfig,
    pub(crate) handle: Handle,
    agents: AtomicU64,
    conversations: AtomicU64,
    pub(crate) sweeper: Arc<Notify>,
    /// Distinguishes this run of the process from earlier ones with the same identity.
    pub(crate) incarnation: u64,
    /// The groups that have an exchange in this runtime (at most one each).
    pub(crate) exchange_groups: Mutex<HashSet<Arc<str>>>,
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

impl RuntimeShared {
    pub(crate) fn next_agent_number(&self) -> u64 {
        self.agents.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn next_conversation(&self) -> u64 {
        self.conversations.fetch_add(1, Ordering::Relaxed) + 1
    }
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
