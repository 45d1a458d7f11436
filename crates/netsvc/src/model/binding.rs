//! Service bindings: the immutable description of one service as a registry knows it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use netsvc_proto::names::{self, NameError};

/// How far a service's existence is propagated.
///
/// Parsed from and displayed as the original's strings: `"*"` everywhere, `""` this process
/// only, anything else the name of an exchange group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Audience {
    /// `"*"`: visible through every exchange (the default).
    #[default]
    Everyone,
    /// `""`: never leaves the process.
    Process,
    /// A group name: visible only through exchanges of that group.
    Group(Arc<str>),
}

impl Audience {
    /// The audience as the original spelled it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Everyone => "*",
            Self::Process => "",
            Self::Group(g) => g,
        }
    }

    /// Whether a service with this audience may be exported through an exchange of `group`
    /// (`""` is the default group).
    pub fn admits(&self, group: &str) -> bool {
        match self {
            Self::Everyone => true,
            Self::Process => false,
            Self::Group(g) => &**g == group,
        }
    }
}

impl FromStr for Audience {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "*" => Ok(Self::Everyone),
            "" => Ok(Self::Process),
            group => {
                names::check_group_name(group)?;
                Ok(Self::Group(group.into()))
            }
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a service is in this process or was learned through an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// Hosted by this runtime.
    Local,
    /// Hosted by another process, reached through an exchange.
    Remote,
}

/// Whether a new service appears in the registry at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Visibility {
    /// Announced as soon as it is built (the default).
    #[default]
    Visible,
    /// Invisible to lookups and announcements until [`announce`](crate::ServiceHandle::announce).
    Hidden,
}

/// One service as a registry knows it: name, audience and identities.
///
/// Cheap to clone. Two bindings are equal when they have the same address. The service's
/// groups change over its life, so they are not part of the binding: ask the
/// [`Registry`](crate::Registry) for them.
#[derive(Clone)]
pub struct Binding(Arc<BindingInner>);

struct BindingInner {
    name: Arc<str>,
    audience: Audience,
    /// The agent identity is the address up to the `!` before the name: not allocated
    /// again (a registry sync makes a binding per service in the network).
    agent_len: usize,
    process_identity: Arc<str>,
    address: Arc<str>,
    location: Location,
    network_group: Option<Arc<str>>,
}

impl Binding {
    pub(crate) fn new(
        name: Arc<str>,
        audience: Audience,
        agent_identity: Arc<str>,
        process_identity: Arc<str>,
        location: Location,
        network_group: Option<Arc<str>>,
    ) -> Self {
        let address = super::identity::service_address(&agent_identity, &name);
        Self(Arc::new(BindingInner {
            name,
            audience,
            agent_len: agent_identity.len(),
            process_identity,
            address,
            location,
            network_group,
        }))
    }

    /// A binding whose address is already known to be `<agent>!<name>` with a non-empty
    /// agent (from a SERVICE frame): saves formatting it again for each of the many
    /// services a registry sync brings.
    pub(crate) fn with_address(
        address: Arc<str>,
        name: Arc<str>,
        audience: Audience,
        process_identity: Arc<str>,
        location: Location,
        network_group: Option<Arc<str>>,
    ) -> Self {
        let agent_len = address.len().saturating_sub(name.len() + 1);
        debug_assert!(agent_len > 0 && address[agent_len..].strip_prefix('!') == Some(&*name));
        Self(Arc::new(BindingInner {
            name,
            audience,
            agent_len,
            process_identity,
            address,
            location,
            network_group,
        }))
    }

    /// The service's name (may be empty: an anonymous service).
    pub fn service_name(&self) -> &str {
        &self.0.name
    }

    /// How far the service is propagated.
    pub fn audience(&self) -> &Audience {
        &self.0.audience
    }

    /// The agent identity: `"<n>@<process identity>"`, unique and stable for the service's life.
    pub fn agent_identity(&self) -> &str {
        self.0.address.get(..self.0.agent_len).unwrap_or_default()
    }

    /// The identity of the process (runtime) hosting the service.
    pub fn process_identity(&self) -> &str {
        &self.0.process_identity
    }

    /// The service address: `"<agent identity>!<name>"`. Unique; independent of routes.
    pub fn address(&self) -> &str {
        &self.0.address
    }

    pub(crate) fn address_arc(&self) -> &Arc<str> {
        &self.0.address
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.0.name
    }

    /// Local to this runtime, or remote.
    pub fn location(&self) -> Location {
        self.0.location
    }

    /// Whether the service is hosted by this runtime.
    pub fn is_local(&self) -> bool {
        self.0.location == Location::Local
    }

    /// For a remote service, the exchange group through which it was learned.
    pub fn network_group(&self) -> Option<&str> {
        self.0.network_group.as_deref()
    }
}

impl PartialEq for Binding {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.address == other.0.address
    }
}

impl Eq for Binding {}

impl std::hash::Hash for Binding {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.address.hash(state);
    }
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("name", &self.service_name())
            .field("address", &self.address())
            .field("audience", &self.audience().as_str())
            .field("location", &self.location())
            .finish()
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.address())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_parses_the_original_strings() {
        assert_eq!("*".parse::<Audience>().unwrap(), Audience::Everyone);
        assert_eq!("".parse::<Audience>().unwrap(), Audience::Process);
        let db: Audience = "database".parse().unwrap();
        assert!(db.admits("database") && !db.admits("") && !db.admits("other"));
        assert!(Audience::Everyone.admits("") && !Audience::Process.admits(""));
        assert!("a!b".parse::<Audience>().is_err());
        assert_eq!(db.to_string(), "database");
    }
}
