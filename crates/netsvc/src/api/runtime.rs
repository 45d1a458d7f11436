//! The runtime: one process's registry and services.

use crate::model::stats::{Stats, Subscriptions};
use std::sync::Arc;

use tokio::runtime::Handle;

use super::endpoint::{Endpoint, Target};
use super::registry::Registry;
use super::service::ServiceBuilder;
use crate::core::shared::RuntimeShared;
use crate::model::announcement::WithdrawReason;
use crate::model::config::RuntimeConfig;
use crate::model::error::Error;

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
        Ok(Self {
            shared: RuntimeShared::start(config, handle),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<RuntimeShared> {
        &self.shared
    }

    /// This runtime's process identity.
    pub fn process_identity(&self) -> &str {
        &self.shared.identity
    }

    /// The settings it was made with.
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

    /// What this runtime has done so far: requests by service, role and outcome with their
    /// latencies, reports in and out, each link's traffic. Counts only grow; two snapshots
    /// give rates.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The report subscriptions held here (at most `limit`; the rest are counted in
    /// [`Subscriptions::truncated`]): those this runtime's publishers serve, those its
    /// monitors hold on remote publishers, and, on a hub, those it relays.
    pub fn subscriptions(&self, limit: usize) -> Subscriptions {
        self.shared.core.lock().subscriptions(limit)
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
